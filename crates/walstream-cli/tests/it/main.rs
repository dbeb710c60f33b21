//! The `walstream` binary against throwaway PostgreSQL clusters (every configured major).

mod basebackup;
mod demo;
mod errors;
mod receivewal;
mod tail;
mod user_types;
mod verify;

use std::path::Path;
use std::process::{Command, Output};

use walstream_test_support::Cluster;

/// The binary under test.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walstream"));
    // The tests' own PG* variables must not leak into the connection settings.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs the binary with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run walstream: {e}"))
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success, showing stderr and the server log otherwise.
pub fn assert_ok(out: &Output, cluster: Option<&Cluster>) {
    if !out.status.success() {
        let log = cluster.map(Cluster::log_contents).unwrap_or_default();
        let tail: Vec<&str> = log.lines().collect();
        panic!(
            "walstream failed ({}):\nstderr:\n{}\nserver log tail:\n{}",
            out.status,
            stderr(out),
            tail[tail.len().saturating_sub(30)..].join("\n")
        );
    }
}

/// A bin directory as a string argument.
pub fn path_arg(p: &Path) -> String {
    p.display().to_string()
}
