//! The PostgreSQL connection used by walstream: libpq-compatible configuration, a sans-IO
//! connection state machine and a thin tokio driver.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![deny(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]

mod config;
mod pgpass;

pub use config::Config;
