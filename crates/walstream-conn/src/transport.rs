//! Opening the byte stream to a server: TCP (with keepalives) or a Unix socket, upgraded to
//! TLS when negotiated.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{Instant, Sleep};

use crate::config::{Config, Target, TargetAddr};
use crate::error::{Error, ErrorKind};
use crate::nap::{self, Nap};

/// The transport under a connection: a socket, possibly wrapped in TLS, with the optional
/// batching of reads during streaming (see [`Transport::set_batching`]).
#[derive(Debug)]
pub(crate) struct Transport {
    kind: Kind,
    /// The latency budget of batched reads (zero: never batch).
    window: Duration,
    /// Batched reads, while enabled.
    batch: Option<Box<Batch>>,
}

#[derive(Debug)]
enum Kind {
    Plain(Sock),
    Tls(Box<walstream_tls::TlsStream<Sock>>),
    /// Placeholder while the stream is moved into the TLS handshake.
    Taken,
}

/// A TCP or Unix socket that can leave tokio's reactor while a batch accumulates.
///
/// Parked, the socket is a plain non-blocking std socket that is in no epoll set: data the
/// server sends is queued by the kernel without waking this process at all (tokio's reactor
/// is edge-triggered and would otherwise wake once per arriving segment, even while nobody
/// waits for the socket). A parked socket is read and written directly; an operation that
/// would block puts it back into the reactor first (unless it is a `try_only` read), so a
/// parked socket never misses a wake-up.
#[derive(Debug)]
pub(crate) struct Sock {
    state: SockState,
    /// Reads that would block return `Pending` without registering (the caller polls with
    /// a no-op waker and handles `Pending` itself).
    try_only: bool,
}

#[derive(Debug)]
enum SockState {
    Tcp(TcpStream),
    Unix(UnixStream),
    ParkedTcp(std::net::TcpStream),
    ParkedUnix(std::os::unix::net::UnixStream),
    /// A conversion failed; the socket is gone.
    Lost,
}

fn taken() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "transport unavailable after a failed TLS handshake",
    )
}

fn lost() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "socket lost while moving it in or out of the reactor",
    )
}

impl Sock {
    fn new(state: SockState) -> Self {
        Self {
            state,
            try_only: false,
        }
    }

    /// Takes the socket out of the reactor (no-op when parked).
    fn park(&mut self) -> io::Result<()> {
        self.state = match std::mem::replace(&mut self.state, SockState::Lost) {
            SockState::Tcp(s) => SockState::ParkedTcp(s.into_std()?),
            SockState::Unix(s) => SockState::ParkedUnix(s.into_std()?),
            other => other,
        };
        Ok(())
    }

    /// Puts the socket back into the reactor of the current runtime (no-op when registered).
    fn unpark(&mut self) -> io::Result<()> {
        if !matches!(
            self.state,
            SockState::ParkedTcp(_) | SockState::ParkedUnix(_)
        ) {
            return Ok(());
        }
        // `from_std` panics outside a runtime: report that as an error instead.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "the connection was used outside a tokio runtime",
            ));
        }
        self.state = match std::mem::replace(&mut self.state, SockState::Lost) {
            SockState::ParkedTcp(s) => SockState::Tcp(TcpStream::from_std(s)?),
            SockState::ParkedUnix(s) => SockState::Unix(UnixStream::from_std(s)?),
            other => other,
        };
        Ok(())
    }

    fn is_tcp(&self) -> bool {
        matches!(self.state, SockState::Tcp(_) | SockState::ParkedTcp(_))
    }
}

/// The most one read from a parked socket takes (the part of the caller's buffer it reads
/// into is zeroed first: safe code cannot read into uninitialised memory).
const PARKED_READ_MAX: usize = 64 * 1024;

/// Reads from a parked socket into `buf` (initialising the part it reads into).
fn read_parked(s: &mut impl Read, buf: &mut ReadBuf<'_>) -> io::Result<()> {
    let n = buf.remaining().min(PARKED_READ_MAX);
    let dst = buf.initialize_unfilled_to(n);
    loop {
        match s.read(dst) {
            Ok(n) => {
                buf.advance(n);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl AsyncRead for Sock {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = match &mut this.state {
            SockState::Tcp(s) => return Pin::new(s).poll_read(cx, buf),
            SockState::Unix(s) => return Pin::new(s).poll_read(cx, buf),
            SockState::ParkedTcp(s) => read_parked(s, buf),
            SockState::ParkedUnix(s) => read_parked(s, buf),
            SockState::Lost => return Poll::Ready(Err(lost())),
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if this.try_only {
                    return Poll::Pending;
                }
                this.unpark()?;
                Pin::new(this).poll_read(cx, buf)
            }
            r => Poll::Ready(r),
        }
    }
}

impl AsyncWrite for Sock {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = match &mut this.state {
            SockState::Tcp(s) => return Pin::new(s).poll_write(cx, buf),
            SockState::Unix(s) => return Pin::new(s).poll_write(cx, buf),
            SockState::ParkedTcp(s) => s.write(buf),
            SockState::ParkedUnix(s) => s.write(buf),
            SockState::Lost => return Poll::Ready(Err(lost())),
        };
        match r {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                // Wait for room the ordinary way.
                this.unpark()?;
                Pin::new(this).poll_write(cx, buf)
            }
            r => Poll::Ready(r),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            SockState::Tcp(s) => Pin::new(s).poll_flush(cx),
            SockState::Unix(s) => Pin::new(s).poll_flush(cx),
            SockState::ParkedTcp(_) | SockState::ParkedUnix(_) => Poll::Ready(Ok(())),
            SockState::Lost => Poll::Ready(Err(lost())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            SockState::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            SockState::Unix(s) => Pin::new(s).poll_shutdown(cx),
            SockState::ParkedTcp(s) => Poll::Ready(s.shutdown(std::net::Shutdown::Write)),
            SockState::ParkedUnix(s) => Poll::Ready(s.shutdown(std::net::Shutdown::Write)),
            SockState::Lost => Poll::Ready(Ok(())),
        }
    }
}

/// Batched reads (see [`Transport::set_batching`]).
#[derive(Debug)]
struct Batch {
    state: BatchState,
    /// When the last read that returned data finished (in `Idle`).
    last_data: Option<Instant>,
    /// How long `Sleeping` sleeps: the latency budget over TCP, [`UNIX_NAP`] (or the budget
    /// if shorter) over a Unix-domain socket.
    nap: Duration,
    /// The timer of `Sleeping`, created on first use and reset for every batch.
    sleep: Option<Timer>,
}

/// The timer of a batch: tokio's (1 ms resolution) or a sub-millisecond [`Nap`].
#[derive(Debug)]
enum Timer {
    Tokio(Pin<Box<Sleep>>),
    Nap(Nap),
}

/// How long a reader batching over a Unix-domain socket lets messages accumulate.
///
/// There the limit is the server's send buffer: a walsender's Unix socket holds ~208 KiB of
/// kernel memory, ~770 bytes of it per small message, i.e. fewer than 300 narrow-row messages
/// — less than half a millisecond of a busy walsender's output. A reader that sleeps longer
/// blocks the walsender on a full socket (measured with tokio's 1 ms timer: 88k instead of
/// 298k rows/s; with 250 µs naps 0.93× pg_recvlogical's rate), one that naps this long
/// reads ~100 messages per wake-up and the walsender, never waking a waiting reader, runs
/// faster (narrow rows: 1.16× the rows/s of reading every message as it arrives, 1.18×
/// pg_recvlogical's at 0.89× its CPU per row).
pub(crate) const UNIX_NAP: Duration = Duration::from_micros(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchState {
    /// Registered: every arriving message wakes the reader (a slow stream stays here).
    Idle,
    /// Parked, reading what the kernel holds without waiting.
    Draining,
    /// Parked, the kernel queue was drained: wait for the timer, then read everything that
    /// arrived meanwhile.
    Sleeping,
}

impl Kind {
    fn sock(&mut self) -> Option<&mut Sock> {
        match self {
            Self::Plain(s) => Some(s),
            Self::Tls(t) => Some(t.get_mut().0),
            Self::Taken => None,
        }
    }

    fn park(&mut self) -> io::Result<()> {
        self.sock().map_or(Ok(()), Sock::park)
    }

    fn unpark(&mut self) -> io::Result<()> {
        self.sock().map_or(Ok(()), Sock::unpark)
    }

    fn poll_read_inner(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Self::Taken => Poll::Ready(Err(taken())),
        }
    }

    /// Reads what is available without waiting: `Ok(None)` when nothing is.
    fn try_read(&mut self, buf: &mut ReadBuf<'_>) -> io::Result<Option<usize>> {
        let before = buf.filled().len();
        if let Some(s) = self.sock() {
            s.try_only = true;
        }
        let r = self.poll_read_inner(&mut Context::from_waker(Waker::noop()), buf);
        if let Some(s) = self.sock() {
            s.try_only = false;
        }
        match r {
            Poll::Ready(Ok(())) => Ok(Some(buf.filled().len() - before)),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(None),
        }
    }
}

impl Transport {
    fn new(kind: Kind, window: Duration) -> Self {
        Self {
            kind,
            window,
            batch: None,
        }
    }

    /// A placeholder while the stream is moved into the TLS handshake.
    pub(crate) fn taken() -> Self {
        Self::new(Kind::Taken, Duration::ZERO)
    }

    /// The plain TCP socket, for the TLS handshake; `Err(self)` for anything else.
    pub(crate) fn into_tcp(self) -> Result<(Sock, Duration), Self> {
        match self.kind {
            Kind::Plain(s) if s.is_tcp() && self.batch.is_none() => Ok((s, self.window)),
            kind => Err(Self { kind, ..self }),
        }
    }

    /// The transport over an established TLS session.
    pub(crate) fn tls(stream: walstream_tls::TlsStream<Sock>, window: Duration) -> Self {
        Self::new(Kind::Tls(Box::new(stream)), window)
    }

    /// Changes the latency budget of batched reads (zero disables batching).
    pub(crate) fn set_batch_window(&mut self, window: Duration) -> io::Result<()> {
        self.window = window;
        if window.is_zero() && self.batch.is_some() {
            self.disable_batching()?;
        }
        Ok(())
    }

    /// Batched reads while streaming: once messages arrive faster than one per latency
    /// budget, the socket leaves the reactor and is read once per budget (or at once again
    /// while a read fills the whole buffer), so the process wakes once per batch instead of
    /// once per message. A budget without data returns to the ordinary wake-per-arrival
    /// mode. Over a Unix-domain socket the reader naps for [`UNIX_NAP`] instead of a whole
    /// budget (the server's socket buffer fills sooner; see there). Does nothing when the
    /// budget is zero.
    pub(crate) fn enable_batching(&mut self) {
        let Some(tcp) = self.kind.sock().map(|s| s.is_tcp()) else {
            return;
        };
        if self.window.is_zero() || self.batch.is_some() {
            return;
        }
        let nap = if tcp {
            self.window
        } else if nap::available() {
            self.window.min(UNIX_NAP)
        } else {
            // No sub-millisecond timer: a 1 ms sleep would block the server (see UNIX_NAP).
            return;
        };
        self.batch = Some(Box::new(Batch {
            state: BatchState::Idle,
            last_data: None,
            nap,
            sleep: None,
        }));
    }

    /// Ends batched reads: the socket is back in the reactor.
    pub(crate) fn disable_batching(&mut self) -> io::Result<()> {
        self.batch = None;
        self.kind.unpark()
    }

    /// Whether reads are batched now (the socket may be parked).
    #[cfg(test)]
    pub(crate) fn is_parked(&mut self) -> bool {
        self.kind
            .sock()
            .is_some_and(|s| matches!(s.state, SockState::ParkedTcp(_) | SockState::ParkedUnix(_)))
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(batch) = this.batch.as_mut() else {
            return this.kind.poll_read_inner(cx, buf);
        };
        let plain = matches!(this.kind, Kind::Plain(_));
        let offered = buf.remaining().min(PARKED_READ_MAX);
        // After data: a plain read that did not fill the buffer drained the kernel queue (a
        // TLS read returns one record at a time, so TLS reads on until nothing is left).
        let next_after = |n: usize| {
            if plain && n < offered {
                BatchState::Sleeping
            } else {
                BatchState::Draining
            }
        };
        loop {
            match batch.state {
                BatchState::Idle => {
                    let before = buf.filled().len();
                    ready!(this.kind.poll_read_inner(cx, buf))?;
                    let n = buf.filled().len() - before;
                    if n > 0 {
                        let now = Instant::now();
                        if batch
                            .last_data
                            .is_some_and(|t| now.saturating_duration_since(t) < batch.nap)
                        {
                            // Messages arrive faster than one per nap: batch them.
                            this.kind.park()?;
                            batch.state = next_after(n);
                            if batch.state == BatchState::Sleeping {
                                reset_sleep(batch);
                            }
                        }
                        batch.last_data = Some(now);
                    }
                    return Poll::Ready(Ok(()));
                }
                BatchState::Draining => match this.kind.try_read(buf)? {
                    Some(n) => {
                        if n > 0 && next_after(n) == BatchState::Sleeping {
                            batch.state = BatchState::Sleeping;
                            reset_sleep(batch);
                        }
                        return Poll::Ready(Ok(()));
                    }
                    None => {
                        // Drained: the next read waits for the budget.
                        this.kind.park()?;
                        batch.state = BatchState::Sleeping;
                        reset_sleep(batch);
                    }
                },
                BatchState::Sleeping => {
                    match batch.sleep.as_mut() {
                        Some(Timer::Tokio(sleep)) => ready!(sleep.as_mut().poll(cx)),
                        Some(Timer::Nap(nap)) => ready!(nap.poll(cx)),
                        None => {}
                    }
                    match this.kind.try_read(buf)? {
                        Some(n) => {
                            batch.state = if n == 0 {
                                BatchState::Idle
                            } else {
                                next_after(n)
                            };
                            if batch.state == BatchState::Sleeping {
                                reset_sleep(batch);
                            }
                            return Poll::Ready(Ok(()));
                        }
                        None => {
                            // A whole nap without data: back to waking per arrival.
                            this.kind.unpark()?;
                            batch.state = BatchState::Idle;
                            batch.last_data = None;
                        }
                    }
                }
            }
        }
    }
}

/// Starts the sleep of `Sleeping`: one nap from now.
fn reset_sleep(batch: &mut Batch) {
    let nap = batch.nap;
    match batch.sleep.as_mut() {
        Some(Timer::Tokio(s)) => s.as_mut().reset(Instant::now() + nap),
        Some(Timer::Nap(n)) => n.reset(std::time::Instant::now() + nap),
        // Below tokio's 1 ms resolution (a Unix socket's nap, or a TCP budget under 1 ms).
        None if nap < Duration::from_millis(1) && nap::available() => {
            batch.sleep = Some(Timer::Nap(Nap::until(std::time::Instant::now() + nap)));
        }
        None => {
            let sleep = tokio::time::sleep_until(Instant::now() + nap);
            batch.sleep = Some(Timer::Tokio(Box::pin(sleep)));
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().kind {
            Kind::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Kind::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Kind::Taken => Poll::Ready(Err(taken())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().kind {
            Kind::Plain(s) => Pin::new(s).poll_flush(cx),
            Kind::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
            Kind::Taken => Poll::Ready(Err(taken())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().kind {
            Kind::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Kind::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Kind::Taken => Poll::Ready(Ok(())),
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
                        return Ok(Transport::new(
                            Kind::Plain(Sock::new(SockState::Tcp(s))),
                            config.stream_batch_latency(),
                        ));
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
            Ok(Transport::new(
                Kind::Plain(Sock::new(SockState::Unix(s))),
                config.stream_batch_latency(),
            ))
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A burst of small writes, then (after `pause`) one more message, then EOF: the reader
    /// must get every byte in order, park during the burst, and notice the end.
    async fn burst_then_tail<W>(mut writer: W, mut t: Transport, pause: Duration)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        const MESSAGES: usize = 2000;
        let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
        let sent = tokio::spawn(async move {
            let mut all = Vec::new();
            for i in 0..MESSAGES {
                let msg = format!("message {i:06} {}\n", "x".repeat(80));
                writer.write_all(msg.as_bytes()).await.unwrap();
                all.extend_from_slice(msg.as_bytes());
            }
            // The reader has drained the burst; let a budget pass without data.
            wait.await.unwrap();
            tokio::time::sleep(pause).await;
            writer.write_all(b"tail\n").await.unwrap();
            all.extend_from_slice(b"tail\n");
            writer.shutdown().await.unwrap();
            drop(writer);
            all
        });
        t.enable_batching();
        let mut got = Vec::new();
        let mut parked = false;
        let mut go_on = Some(go_on);
        let burst_len = MESSAGES * 96;
        loop {
            // Small reads: a read that fills the buffer reads on at once.
            let mut buf = vec![0u8; 4096];
            let n = t.read(&mut buf).await.unwrap();
            parked |= t.is_parked();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.len() >= burst_len {
                if let Some(tx) = go_on.take() {
                    tx.send(()).unwrap();
                }
            }
        }
        let all = sent.await.unwrap();
        assert_eq!(all.len(), burst_len + 5);
        assert!(got == all, "bytes lost or reordered");
        assert!(parked, "a burst is read with the socket out of the reactor");
        // Disabling puts the socket back.
        t.disable_batching().unwrap();
        assert!(!t.is_parked());
    }

    // A generous budget: "faster than one message per budget" must hold even when the
    // machine is loaded; the pause is several budgets.
    const BUDGET: Duration = Duration::from_millis(300);
    const PAUSE: Duration = Duration::from_millis(1000);

    #[tokio::test]
    async fn batched_reads_over_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let t = Transport::new(
            Kind::Plain(Sock::new(SockState::Tcp(client.unwrap()))),
            BUDGET,
        );
        burst_then_tail(server.unwrap().0, t, PAUSE).await;
    }

    #[tokio::test]
    async fn batched_reads_over_a_unix_socket() {
        let (client, server) = UnixStream::pair().unwrap();
        let t = Transport::new(Kind::Plain(Sock::new(SockState::Unix(client))), BUDGET);
        burst_then_tail(server, t, PAUSE).await;
    }

    #[tokio::test]
    async fn a_reset_is_noticed_while_parked() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut t = Transport::new(
            Kind::Plain(Sock::new(SockState::Tcp(client.unwrap()))),
            BUDGET,
        );
        t.enable_batching();
        let server = server.unwrap().0;
        let mut w = server;
        w.write_all(b"one\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(t.read(&mut buf).await.unwrap(), 4);
        w.write_all(b"two\n").await.unwrap();
        assert_eq!(t.read(&mut buf).await.unwrap(), 4);
        assert!(t.is_parked(), "two reads within the budget: batching");
        // An abortive close (RST): linger 0.
        let std = w.into_std().unwrap();
        socket2::SockRef::from(&std)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(std);
        let e = loop {
            match t.read(&mut buf).await {
                Ok(0) => panic!("a reset must be an error, not EOF"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    }

    #[tokio::test]
    async fn writes_to_a_parked_socket_go_through() {
        let (client, mut server) = UnixStream::pair().unwrap();
        let mut t = Transport::new(Kind::Plain(Sock::new(SockState::Unix(client))), BUDGET);
        t.enable_batching();
        t.kind.park().unwrap();
        // More than the socket buffer: the parked write would block and waits in the
        // reactor instead.
        let big = vec![7u8; 4 << 20];
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            got
        });
        t.write_all(&big).await.unwrap();
        t.shutdown().await.unwrap();
        drop(t);
        assert_eq!(reader.await.unwrap(), big);
    }
}
