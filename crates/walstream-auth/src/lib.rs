//! Sans-IO client authentication for PostgreSQL: cleartext, MD5 and SCRAM-SHA-256 with and
//! without channel binding.
//!
//! # Design
//!
//! Nothing here reads a socket. Each method is a value you feed server bytes into and read
//! client bytes out of; the connection layer (`walstream-conn`) frames them into
//! `PasswordMessage`, `SASLInitialResponse` and `SASLResponse`. SCRAM is a chain of
//! consuming states ([`ScramClient`] → [`ScramContinue`]) so a step cannot be repeated or
//! skipped. Keys are wiped on drop, the server signature is compared in constant time, and
//! the PBKDF2 iteration count a server may ask for is bounded by [`ScramLimits`].
//!
//! Errors ([`AuthError`]) keep server misbehaviour (malformed messages, bad signatures,
//! hostile parameters) apart from client configuration problems and API misuse.
//!
//! The channel-binding *policy* belongs to the connection, which knows whether TLS is in use;
//! [`negotiate`] and [`select_mechanism`] turn the server's mechanism list, the
//! `tls-server-end-point` hash (from `walstream-tls`) and the policy into a decision.
//!
//! # Quick start
//!
//! ```
//! use walstream_auth::{ChannelBindingPolicy, ScramClient};
//!
//! // AuthenticationSASL listed these mechanisms; no TLS, so no certificate hash.
//! let offered = ["SCRAM-SHA-256"];
//! let client = ScramClient::negotiate("pencil", &offered, None, ChannelBindingPolicy::Prefer)?
//!     .with_nonce("rOprNGfwEbeRWgbNEkqO")?; // tests only; the default nonce is random
//! // Send client.mechanism() and client.initial_message() in SASLInitialResponse, then:
//! let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
//!                      s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
//! let client = client.update(server_first)?;
//! // Send client.client_final_message() in SASLResponse, then check AuthenticationSASLFinal:
//! let result = client.finish(b"v=not-the-right-signature");
//! assert!(result.is_err());
//! # Ok::<(), walstream_auth::AuthError>(())
//! ```
//!
//! For `AuthenticationMD5Password` use [`md5_response`]; for cleartext send
//! [`Password::as_bytes`].
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod error;
mod mechanism;
mod password;
mod scram;

pub use error::AuthError;
pub use mechanism::{
    ChannelBinding, ChannelBindingPolicy, Mechanism, ParseChannelBindingPolicyError, negotiate,
    select_mechanism,
};
pub use password::{Password, md5_response};
pub use scram::{ScramClient, ScramContinue, ScramLimits};
