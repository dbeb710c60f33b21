//! The tokio side: running the handshake and reading the peer certificate hash.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
pub use tokio_rustls::client::TlsStream;

use crate::options::ALPN_POSTGRESQL;
use crate::{TlsError, tls_server_end_point};

/// Converts a host name or IP address literal into a rustls server name.
///
/// # Errors
///
/// [`TlsError::InvalidServerName`] when `host` is neither a DNS name nor an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::InvalidServerName(host.to_owned()))
}

/// Runs the TLS handshake over `stream` (after the server answered `S` to `SSLRequest`, or
/// immediately for direct negotiation).
///
/// # Errors
///
/// [`TlsError::Io`] for I/O and handshake failures (rustls reports certificate problems as
/// `io::Error`s wrapping a [`rustls::Error`]).
pub async fn connect_tls<S>(
    stream: S,
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Ok(TlsConnector::from(config)
        .connect(server_name, stream)
        .await?)
}

/// Checks that the server selected the `postgresql` ALPN protocol, as libpq requires after a
/// direct TLS handshake.
///
/// # Errors
///
/// [`TlsError::AlpnMissing`] otherwise.
pub fn check_direct_alpn<S>(stream: &TlsStream<S>) -> Result<(), TlsError> {
    match stream.get_ref().1.alpn_protocol() {
        Some(p) if p == ALPN_POSTGRESQL => Ok(()),
        _ => Err(TlsError::AlpnMissing),
    }
}

/// The `tls-server-end-point` hash of the server's leaf certificate, for
/// `SCRAM-SHA-256-PLUS`.
///
/// # Errors
///
/// [`TlsError::NoPeerCertificate`] if the server sent none, else as
/// [`tls_server_end_point`].
pub fn peer_end_point_hash<S>(stream: &TlsStream<S>) -> Result<Vec<u8>, TlsError> {
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
        .ok_or(TlsError::NoPeerCertificate)?;
    tls_server_end_point(leaf)
}
