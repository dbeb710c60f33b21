//! TLS for walstream: rustls client configurations with libpq's `sslmode` semantics, and the
//! `tls-server-end-point` certificate hash for SCRAM channel binding.
//!
//! # Design
//!
//! libpq's SSL parameters ([`TlsOptions`]: `sslmode`, `sslrootcert`, `sslcert`, `sslkey`,
//! `sslsni`, `sslnegotiation`) map to one [`rustls::ClientConfig`] built with the pure-Rust
//! *ring* provider (no C toolchain, no aws-lc). The mapping follows libpq exactly, including
//! its surprises: `require` without a root certificate encrypts without authenticating the
//! server, and `require` *with* a root certificate file behaves like `verify-ca`. Every
//! verifier that weakens checking has `danger` in its name ([`DangerNoVerification`],
//! [`DangerVerifyCaIgnoreHostname`], [`Verification::DangerNone`]).
//!
//! Channel binding needs a hash of the server certificate whose algorithm depends on the
//! certificate's signature algorithm (RFC 5929 §4.1). [`tls_server_end_point`] finds it with
//! a tiny bounded DER reader (no X.509 crate, no panics on malformed input).
//!
//! The tokio side is thin: [`connect_tls`] runs the handshake on any `AsyncRead +
//! AsyncWrite` stream, [`peer_end_point_hash`] reads the hash afterwards. The PostgreSQL
//! `SSLRequest` exchange itself belongs to the connection layer.
//!
//! # Quick start
//!
//! ```no_run
//! use walstream_tls::{RootCert, SslMode, TlsOptions, connect_tls, peer_end_point_hash, server_name};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let options = TlsOptions::new(SslMode::VerifyFull)
//!     .with_root_cert(RootCert::File("/etc/walstream/ca.pem".into()));
//! let config = options.client_config()?;
//! let tcp = tokio::net::TcpStream::connect("db.example.com:5432").await?;
//! // ... send SSLRequest on `tcp` and read the server's 'S' here ...
//! let tls = connect_tls(tcp, server_name("db.example.com")?, config).await?;
//! let cert_hash = peer_end_point_hash(&tls)?; // for SCRAM-SHA-256-PLUS
//! # let _ = cert_hash; Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod endpoint;
mod error;
mod mode;
mod options;
mod stream;
mod verify;

pub use endpoint::{EndPointHash, end_point_hash_algorithm, tls_server_end_point};
pub use error::TlsError;
pub use mode::{ParseModeError, SslMode, SslNegotiation};
pub use options::{
    ALPN_POSTGRESQL, DefaultFiles, RootCert, TlsOptions, Verification, crypto_provider,
};
pub use stream::{TlsStream, check_direct_alpn, connect_tls, peer_end_point_hash, server_name};
pub use verify::{DangerNoVerification, DangerVerifyCaIgnoreHostname};

/// Re-export of the rustls version this crate builds on, for callers that need its types.
pub use rustls;
