//! The error type of the TLS layer.

use std::io;
use std::path::PathBuf;

/// Why a TLS configuration could not be built, a handshake failed, or a certificate hash
/// could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// [`SslMode::Disable`](crate::SslMode::Disable) was asked for a TLS configuration.
    #[error("sslmode=disable: TLS is not used")]
    Disabled,
    /// A combination of options libpq rejects, e.g. `sslrootcert=system` with a mode weaker
    /// than `verify-full`, or `sslnegotiation=direct` with a mode weaker than `require`.
    #[error("invalid TLS options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: &'static str,
    },
    /// `verify-ca` / `verify-full` without a root certificate file.
    #[error(
        "root certificate file {path:?} does not exist; either provide the file, use the \
         system's trusted roots with sslrootcert=system, or change sslmode to disable \
         server certificate verification"
    )]
    RootCertMissing {
        /// The path that was looked for (`None` when no home directory is known).
        path: Option<PathBuf>,
    },
    /// A certificate or key file could not be read or parsed.
    #[error("could not read {what} from {path:?}: {reason}")]
    File {
        /// What the file should contain, e.g. `"root certificates"`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// A client certificate was found but its private key file is missing.
    #[error("certificate present, but not private key file {path:?}")]
    ClientKeyMissing {
        /// The key file that was looked for.
        path: PathBuf,
    },
    /// The private key file is readable by group or others (libpq refuses these too).
    #[error(
        "private key file {path:?} has group or world access (mode {mode:o}); it should be \
         u=rw (0600) or less"
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `sslrootcert=system` but the system store yielded no certificate.
    #[error("could not load the system's trusted root certificates: {reason}")]
    SystemRoots {
        /// Why.
        reason: String,
    },
    /// The host name cannot be used as a TLS server name.
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),
    /// rustls rejected the configuration or the handshake.
    #[error("TLS error: {0}")]
    Rustls(#[from] rustls::Error),
    /// Building the certificate verifier failed.
    #[error("could not build certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// I/O error during the handshake.
    #[error("I/O error during TLS handshake: {0}")]
    Io(#[from] io::Error),
    /// Direct TLS negotiation finished without the server selecting the `postgresql` ALPN
    /// protocol.
    #[error("direct SSL connection was established without ALPN protocol negotiation")]
    AlpnMissing,
    /// The server presented no certificate (no channel binding possible).
    #[error("the server presented no certificate")]
    NoPeerCertificate,
    /// The server certificate could not be parsed far enough to find its signature algorithm.
    #[error("malformed server certificate: {reason}")]
    MalformedCertificate {
        /// What was wrong.
        reason: &'static str,
    },
    /// The certificate's signature algorithm does not name a single hash function
    /// (e.g. Ed25519, RSASSA-PSS), so `tls-server-end-point` is undefined (PostgreSQL's server
    /// refuses these too).
    #[error("server certificate signature algorithm {oid} has no tls-server-end-point hash")]
    UnsupportedSignatureAlgorithm {
        /// The algorithm OID in dotted form.
        oid: String,
    },
}
