//! Throwaway PostgreSQL clusters for walstream's integration tests.
//!
//! The design idea: every integration test talks to a *real* server, started from scratch for
//! that test, on a free port, with its own data directory, unix-socket directory and TLS
//! certificates, and torn down when the [`Cluster`] value is dropped (also when the test
//! panics). Nothing is shared between tests, so they run in parallel.
//!
//! Which PostgreSQL installations the suite runs against is chosen by the environment variable
//! `WALSTREAM_PG_BINDIRS` (a list of `bin` directories separated by `:` or `,`); without it the
//! machine's own PostgreSQL is used. See [`servers`].
//!
//! Every cluster has one role per authentication method (see [`Role`]), for normal *and*
//! replication connections, and TLS material made by the suite (see [`TlsFiles`]).
//!
//! # Quick start
//!
//! ```no_run
//! use walstream_test_support::{for_each_server, Cluster, ClusterOptions, Role};
//!
//! // Runs the body once per configured PostgreSQL major version.
//! for_each_server(|install| {
//!     let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
//!     cluster.execute("CREATE TABLE t (id int primary key)").unwrap();
//!     let url = cluster.url(Role::Scram);
//!     // ... connect with walstream to `url` ...
//!     # let _ = url;
//! });
//! ```
//!
//! Tests that need a feature of a newer major report the skip honestly with
//! [`skip_unless`], which prints `SKIPPED: ...` past the test harness's output capture.
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI does), `initdb`, `pg_ctl`
//! and the server run as the `postgres` operating-system user (created when absent), and the
//! cluster's directories are created under `/tmp` and handed to that user.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod cluster;
mod error;
mod install;
mod os;
mod proxy;
mod roles;
mod tls;

pub use cluster::{
    Cluster, ClusterOptions, HOST, ReplicationSlot, StatReplication, parse_lsn, wait_for,
};
pub use error::Error;
pub use install::{BINDIRS_VAR, PgInstall, for_each_server, servers, skip_unless};
pub use os::chown_to_server;
pub use proxy::{ConnectionPlan, Direction, Fault, FaultProxy, FiredFault, ProxyHandle, Trigger};
pub use roles::{Role, passwords};
pub use tls::TlsFiles;
