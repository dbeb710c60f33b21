//! The PostgreSQL connection used by walstream: libpq-compatible configuration, a sans-IO
//! connection state machine and a thin tokio driver.
//!
//! # Design
//!
//! The protocol lives in [`Connection`], a sans-IO state machine (quinn's vocabulary:
//! `handle_input`, `poll_transmit`, `poll_event`, `poll_timeout`, `handle_timeout`) that
//! covers TLS negotiation, startup, authentication, simple queries and COPY BOTH without
//! touching a socket or a clock. [`Client`] is the thin tokio driver around it: it opens TCP
//! or Unix sockets, runs the TLS handshake when the core asks for it, walks the host list,
//! and gives every control command a deadline. The replication commands
//! ([`Client::identify_system`] and friends) build SQL text and parse result rows; the
//! streaming phase is a [`ReplicationStream`] yielding walstream-proto's
//! [`ReplicationMessage`](walstream_proto::ReplicationMessage)s. Commands that answer with
//! result sets and COPY OUT phases — `BASE_BACKUP`, `COPY ... TO STDOUT` — are streamed
//! item by item by a [`CopyOutStream`] ([`Client::base_backup`], [`Client::copy_out`]) with
//! an idle timeout instead of a deadline. Commands that read data from the client —
//! `COPY ... FROM STDIN`, `UPLOAD_MANIFEST` — get a [`CopyIn`] writer ([`Client::copy_in`]).
//!
//! Protocol 3.0 is requested by default, like libpq 18; `max_protocol_version=3.2` asks
//! PostgreSQL 18 for protocol 3.2 (longer cancel keys) and falls back to 3.0 when an older
//! server answers `NegotiateProtocolVersion`.
//!
//! Server notices and ignored password files are logged through [`tracing`] (passwords
//! never are); notices are also kept for [`Client::take_notices`].
//!
//! # Quick start
//!
//! ```no_run
//! use walstream_conn::{Client, Config};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config: Config = "host=localhost user=repl dbname=app replication=database".parse()?;
//! let mut client = Client::connect(&config).await?;
//! let system = client.identify_system().await?;
//! println!("system {} on timeline {} at {}", system.system_id, system.timeline, system.xlog_pos);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod client;
mod config;
mod copy_in;
mod copy_out;
mod error;
pub mod machine;
mod nap;
mod pgpass;
mod replication;
mod stream;
#[cfg(test)]
mod test_server;
mod transport;

pub use client::{CancelToken, Client, DEFAULT_COMMAND_TIMEOUT, ResultSet, Row};
pub use config::{
    AuthMethod, Config, ConfigError, DEFAULT_PORT, DEFAULT_SOCKET_DIRS, GssEncMode,
    KeepaliveConfig, LoadBalanceHosts, PasswordLookup, PasswordSource, ReplicationMode,
    RequireAuth, RootCert, ServerStatus, SessionQuery, SessionQueryError, SessionRejection,
    SessionVerdict, SslMode, SslNegotiation, SslSettings, Target, TargetAddr, TargetSessionAttrs,
};
pub use copy_in::CopyIn;
pub use copy_out::{CopyOutItem, CopyOutStream};
pub use error::{DbError, Error, ErrorKind};
pub use machine::{CompletedAuth, Connection, Event, Phase, StartupSettings, TlsRequest};
pub use pgpass::{PassFile, PassFileWarning};
pub use replication::{
    CreateSlotOptions, CreatedSlot, IdentifySystem, ReadSlot, SlotKind, SnapshotAction,
    TimelineHistory, create_slot_command, quote_ident, quote_literal, start_logical_command,
    start_physical_command,
};
pub use stream::{FeedbackLsns, FeedbackSchedule, NextTimeline, ReplicationStream};
