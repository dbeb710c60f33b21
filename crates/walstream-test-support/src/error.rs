//! The harness's error type.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a harness operation failed.
///
/// Every variant carries enough text (the command, its output, the server log) to diagnose a
/// failure from a CI log alone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system or process-spawning operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An external program (initdb, pg_ctl, psql, ...) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")]
    Command {
        /// The command line, for humans.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// What it printed on stdout.
        stdout: String,
        /// What it printed on stderr (for psql: the server's error message).
        stderr: String,
    },
    /// The server did not start; the log tail explains why.
    #[error("PostgreSQL in {data_dir} did not start: {reason}\n--- server log (tail) ---\n{log}")]
    Start {
        /// The cluster's data directory.
        data_dir: PathBuf,
        /// A short reason.
        reason: String,
        /// The last lines of the server log.
        log: String,
    },
    /// Generating the suite's TLS certificates failed.
    #[error("generating TLS material: {0}")]
    Tls(#[from] rcgen::Error),
    /// A condition did not become true in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the harness waited.
        timeout: Duration,
    },
    /// Output of the server could not be understood.
    #[error("unexpected output from {what}: {output:?}")]
    Parse {
        /// What produced the output.
        what: String,
        /// The output itself.
        output: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The standard-error text of a failed command (psql's error message), if this is one.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            Self::Command { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}
