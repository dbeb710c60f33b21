//! Opening the byte stream to a server: TCP (with keepalives) or a Unix socket, upgraded to
//! TLS when negotiated.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::{Config, Target, TargetAddr};
use crate::error::{Error, ErrorKind};

/// The transport under a connection.
#[derive(Debug)]
pub(crate) enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
    TlsTcp(Box<walstream_tls::TlsStream<TcpStream>>),
    /// Placeholder while the stream is moved into the TLS handshake.
    Taken,
}

fn taken() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "transport unavailable after a failed TLS handshake",
    )
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Self::TlsTcp(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Self::Taken => Poll::Ready(Err(taken())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Self::TlsTcp(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Self::Taken => Poll::Ready(Err(taken())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
            Self::TlsTcp(s) => Pin::new(&mut **s).poll_flush(cx),
            Self::Taken => Poll::Ready(Err(taken())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Self::TlsTcp(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Self::Taken => Poll::Ready(Ok(())),
        }
    }
}

/// Opens a TCP or Unix-socket connection to `target`, applying keepalive settings.
pub(crate) async fn open(
    config: &Config,
    target: &Target,
    timeout: Option<Duration>,
) -> Result<Transport, Error> {
    let fut = open_inner(config, target);
    match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                format!("connecting to {} timed out", describe(target)),
            )
        })?,
        None => fut.await,
    }
}

async fn open_inner(config: &Config, target: &Target) -> Result<Transport, Error> {
    match &target.addr {
        TargetAddr::Tcp {
            host,
            hostaddr,
            port,
        } => {
            let addrs: Vec<SocketAddr> = match hostaddr {
                Some(ip) => vec![SocketAddr::new(*ip, *port)],
                None => tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|e| {
                        Error::with_source(
                            ErrorKind::Connect,
                            format!("could not resolve host \"{host}\""),
                            e,
                        )
                    })?
                    .collect(),
            };
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        configure_tcp(config, &s)?;
                        return Ok(Transport::Tcp(s));
                    }
                    Err(e) => last = Some((addr, e)),
                }
            }
            Err(match last {
                Some((addr, e)) => Error::with_source(
                    ErrorKind::Connect,
                    format!("connection to {host} ({addr}) failed"),
                    e,
                ),
                None => Error::new(
                    ErrorKind::Connect,
                    format!("host \"{host}\" resolved to no address"),
                ),
            })
        }
        TargetAddr::Unix { path, .. } => {
            let s = connect_unix(path).await.map_err(|e| {
                Error::with_source(
                    ErrorKind::Connect,
                    format!("connection to socket \"{}\" failed", path.display()),
                    e,
                )
            })?;
            Ok(Transport::Unix(s))
        }
    }
}

async fn connect_unix(path: &std::path::Path) -> io::Result<UnixStream> {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        if let Some(name) = path.as_os_str().as_bytes().strip_prefix(b"@") {
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            let std = std::os::unix::net::UnixStream::connect_addr(&addr)?;
            std.set_nonblocking(true)?;
            return UnixStream::from_std(std);
        }
    }
    UnixStream::connect(path).await
}

fn configure_tcp(config: &Config, s: &TcpStream) -> Result<(), Error> {
    let sock = socket2::SockRef::from(s);
    let io_err = |e| Error::with_source(ErrorKind::Connect, "could not set socket options", e);
    sock.set_nodelay(true).map_err(io_err)?;
    let ka = config.keepalives();
    if ka.enabled {
        let mut k = socket2::TcpKeepalive::new();
        if let Some(idle) = ka.idle {
            k = k.with_time(idle);
        }
        #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
        {
            if let Some(interval) = ka.interval {
                k = k.with_interval(interval);
            }
            if let Some(count) = ka.count {
                k = k.with_retries(count);
            }
        }
        sock.set_tcp_keepalive(&k).map_err(io_err)?;
    } else {
        sock.set_keepalive(false).map_err(io_err)?;
    }
    #[cfg(target_os = "linux")]
    if let Some(t) = config.tcp_user_timeout() {
        sock.set_tcp_user_timeout(Some(t)).map_err(io_err)?;
    }
    Ok(())
}

/// A short human description of a target for error messages.
pub(crate) fn describe(target: &Target) -> String {
    match &target.addr {
        TargetAddr::Tcp {
            host,
            hostaddr: Some(ip),
            port,
        } if host != &ip.to_string() => {
            format!("{host} ({ip}), port {port}")
        }
        TargetAddr::Tcp { host, port, .. } => format!("{host}, port {port}"),
        TargetAddr::Unix { path, .. } => format!("socket \"{}\"", path.display()),
    }
}
