//! Shared helpers: clusters, connection settings through the proxy, the results log.

use std::future::Future;
use std::io::Write as _;

use walstream::Config;
use walstream_test_support::{Cluster, ClusterOptions, FaultProxy, PgInstall, Role};

/// Runs `f` on a fresh two-thread tokio runtime.
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// A cluster for fault tests: small `logical_decoding_work_mem` (large transactions are
/// streamed), `wal_sender_timeout` as given, and the oracle's schema.
pub(crate) fn cluster(install: &PgInstall, wal_sender_timeout: &str) -> Cluster {
    let c = Cluster::start(
        install,
        ClusterOptions::new()
            .setting("logical_decoding_work_mem", "64kB")
            .setting("wal_sender_timeout", wal_sender_timeout),
    )
    .unwrap_or_else(|e| panic!("starting PostgreSQL {}: {e}", install.version));
    c.execute(
        "CREATE TABLE acct (id int PRIMARY KEY, val text NOT NULL); \
         CREATE TABLE txlog (k int PRIMARY KEY); \
         CREATE PUBLICATION ws_pub FOR TABLE acct, txlog;",
    )
    .expect("schema");
    c
}

/// Connection settings for `cluster` that go through `proxy` (TCP, no TLS, SCRAM role).
pub(crate) fn proxied_conninfo(cluster: &Cluster, proxy: &FaultProxy) -> String {
    let direct = cluster.conninfo(Role::Scram);
    let proxied = direct.replace(
        &format!("port={}", cluster.port()),
        &format!("port={}", proxy.port()),
    );
    assert_ne!(direct, proxied, "conninfo has no port to replace: {direct}");
    format!("{proxied} sslmode=disable connect_timeout=5")
}

/// [`proxied_conninfo`] parsed.
pub(crate) fn proxied_config(cluster: &Cluster, proxy: &FaultProxy) -> Config {
    proxied_conninfo(cluster, proxy)
        .parse()
        .expect("test conninfo parses")
}

/// Appends one line to the file named by `WALSTREAM_FAULT_REPORT` (the matrix in
/// `docs/reliability.md` is built from these lines), and prints it.
pub(crate) fn report(line: &str) {
    eprintln!("FAULT-RESULT {line}");
    if let Some(path) = std::env::var_os("WALSTREAM_FAULT_REPORT") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// The tail of the server log, for failure messages.
pub(crate) fn log_tail(cluster: &Cluster) -> String {
    let log = cluster.log_contents();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
