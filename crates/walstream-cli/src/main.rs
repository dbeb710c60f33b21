//! `walstream`: stream PostgreSQL logical replication from the command line.
//!
//! Subcommands: `demo` (a throwaway server with changes streamed live), `tail` (a logical slot
//! to stdout or a file), `slot` (create, drop, list, read, alter), `record` and `decode`
//! (capture files), `verifybackup` (a base backup against its manifest). See docs/cli.md in the repository.
#![forbid(unsafe_code)]
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod basebackup;
mod conn;
mod decode;
mod demo;
mod error;
mod output;
mod receivewal;
mod slot;
mod stream;
mod tail;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

/// Stream PostgreSQL logical replication: tail slots, manage them, record and decode streams.
#[derive(Debug, Parser)]
#[command(name = "walstream", version, propagate_version = true)]
#[command(after_help = "\
Examples:
  walstream demo                                   # throwaway server, changes streamed live
  walstream tail -d 'host=db user=rep dbname=app' --slot s1 --publication p1 --create-slot
  walstream slot list -d 'host=db user=rep dbname=app'
  walstream decode changes.cap --format pretty
  walstream basebackup -d 'host=db user=repl' -D /backups/b1 -P
  walstream receivewal -d 'host=db user=repl' -D /archive/wal -S archiver --create-slot --if-not-exists
  walstream verifybackup /backups/b1

Exit codes: 0 success, 1 other failure, 2 usage, 3 connection, 4 authentication, 5 server error.
Logging: -v (info), -vv (debug), -vvv (trace), -q (errors only); RUST_LOG overrides.")]
struct Cli {
    /// More log output on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a throwaway PostgreSQL server, run a workload, stream its changes live.
    Demo(demo::DemoArgs),
    /// Stream a logical slot as JSON lines (or readable lines, raw bytes) to stdout or a file.
    Tail(tail::TailArgs),
    /// Create, drop, list, read or alter replication slots.
    Slot(slot::SlotArgs),
    /// Write a slot's raw replication stream to a capture file.
    Record(tail::RecordArgs),
    /// Decode a capture file offline (no server needed).
    Decode(decode::DecodeArgs),
    /// Verify a plain-format base backup against its backup_manifest.
    Verifybackup(verify::VerifyArgs),
    /// Take a base backup (like pg_basebackup): plain or tar, WAL fetched or streamed.
    Basebackup(basebackup::BasebackupArgs),
    /// Stream WAL into segment files (like pg_receivewal), following timeline switches.
    Receivewal(receivewal::ReceiveWalArgs),
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Runs `fut` on a current-thread tokio runtime.
fn block_on<F: Future<Output = Result<(), CliError>>>(fut: F) -> Result<(), CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the async runtime", &e))?
        .block_on(fut)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result: Result<(), CliError> = match &cli.command {
        Command::Decode(args) => decode::run(args),
        Command::Demo(args) => block_on(demo::run(args)),
        Command::Verifybackup(args) => verify::run(args),
        Command::Basebackup(args) => block_on(basebackup::run(args)),
        Command::Receivewal(args) => block_on(receivewal::run(args)),
        Command::Tail(args) => block_on(tail::tail(args)),
        Command::Record(args) => block_on(tail::record(args)),
        Command::Slot(args) => block_on(slot::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::debug!(?err, "failed");
            eprintln!("walstream: {err}");
            err.category().exit_code()
        }
    }
}
