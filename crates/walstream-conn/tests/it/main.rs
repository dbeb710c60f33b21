//! walstream-conn integration tests against real PostgreSQL servers from
//! walstream-test-support (every configured major version).

mod backup;
mod config;
mod connect;
mod copy_in;
mod fake_server;
mod replication;

use std::future::Future;

use walstream_conn::{Client, Config, Error};
use walstream_test_support::Cluster;

thread_local! {
    /// One runtime per test thread: clients keep their sockets across `run` calls.
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
}

/// Runs `f` on this test thread's runtime.
pub fn run<F: Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(f))
}

/// Parses a connection string (test-authored, so a parse failure is a test bug).
pub fn config(s: &str) -> Config {
    s.parse()
        .unwrap_or_else(|e| panic!("bad test conninfo {s:?}: {e}"))
}

/// Connects with `conninfo` plus extra `key=value` settings.
pub fn connect(conninfo: &str) -> Result<Client, Error> {
    run(Client::connect(&config(conninfo)))
}

/// Prints the server log when a test is about to fail, for diagnosis.
pub fn log_tail(cluster: &Cluster) -> String {
    let log = cluster.log_contents();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
