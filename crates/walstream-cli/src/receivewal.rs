//! `walstream receivewal`: stream WAL into segment files like `pg_receivewal`, through
//! walstream-backup's [`WalReceiver`].
use std::path::PathBuf;
use std::time::Duration;

use walstream_backup::{ReceiveError, ReceiveErrorKind, WalReceiver, WalReceiverOptions};
use walstream_conn::{CreateSlotOptions, ReplicationMode};
use walstream_proto::Lsn;

use crate::error::{Category, CliError};

/// Arguments of `walstream receivewal`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  walstream receivewal -d 'host=db user=rep' -D /archive/wal
  walstream receivewal -d 'host=db user=rep' -D /archive/wal -S archiver --create-slot --if-not-exists
  walstream receivewal -d postgresql://rep@db -D wal --endpos 0/5000000 --no-loop
  walstream receivewal -d 'host=db user=rep application_name=sync1' -D wal -S sync1 --synchronous

Writes WAL segment files named by timeline and segment number, the current one as
<name>.partial until complete; saves timeline history files and follows timeline switches.
A restart resumes from the files in DIR (no gap, completed segments never rewritten), else from
the slot's position (PostgreSQL 15+), else from the server's current position. The server needs
wal_level = replica or logical, max_wal_senders > 0 and a role with REPLICATION (pg_hba.conf:
a `replication` entry). A lost connection is retried every 5 s (--retry-interval) unless
--no-loop; Ctrl-C or
SIGTERM flushes what was received, sends a final status update and exits 0.")]
pub(crate) struct ReceiveWalArgs {
    /// Connection string: `host=db user=rep` or `postgresql://rep@db` (unset parts come from
    /// PGHOST, PGUSER, ... and ~/.pgpass; the database name is not used).
    #[arg(short = 'd', long = "dbname", value_name = "CONNINFO")]
    conninfo: Option<String>,
    /// The directory the segment files are written to (created if missing).
    #[arg(short = 'D', long, value_name = "DIR")]
    directory: PathBuf,
    /// Stream through this physical replication slot (the server keeps WAL until it is
    /// reported flushed here).
    #[arg(short = 'S', long)]
    slot: Option<String>,
    /// Create the slot (physical, reserving WAL) before streaming.
    #[arg(long, requires = "slot")]
    create_slot: bool,
    /// With --create-slot: use the slot if it already exists.
    #[arg(long, requires = "create_slot")]
    if_not_exists: bool,
    /// Stop once WAL up to this LSN is written and flushed, and exit 0.
    #[arg(short = 'E', long, value_name = "LSN", value_parser = parse_lsn)]
    endpos: Option<Lsn>,
    /// Fsync after every message and report the flush at once (for a synchronous standby,
    /// with application_name in -d listed in synchronous_standby_names).
    #[arg(long)]
    synchronous: bool,
    /// Seconds between status updates to the server (0: only when it asks).
    #[arg(short = 's', long, value_name = "SECS", default_value_t = 10)]
    status_interval: u64,
    /// Also fsync the partial segment this many seconds after a write (default: only
    /// completed segments and on stop).
    #[arg(long, value_name = "SECS")]
    fsync_interval: Option<u64>,
    /// Exit on a lost connection instead of retrying.
    #[arg(short = 'n', long)]
    no_loop: bool,
    /// Seconds to wait before reconnecting after a lost connection (like pg_receivewal's 5).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 5,
        conflicts_with = "no_loop"
    )]
    retry_interval: u64,
}

fn parse_lsn(s: &str) -> Result<Lsn, String> {
    s.parse::<Lsn>()
        .map_err(|_| format!("not an LSN: {s:?} (e.g. 0/3000060)"))
}

/// Runs `walstream receivewal`.
pub(crate) async fn run(args: &ReceiveWalArgs) -> Result<(), CliError> {
    let config = crate::conn::config(args.conninfo.as_deref(), ReplicationMode::Physical)?;
    if let (Some(slot), true, false) = (&args.slot, args.create_slot, args.if_not_exists) {
        // Strict creation: an existing slot is an error unless --if-not-exists.
        let mut client =
            crate::conn::connect(args.conninfo.as_deref(), ReplicationMode::Physical).await?;
        client
            .create_replication_slot(slot, &CreateSlotOptions::physical(true))
            .await
            .map_err(|e| CliError::from(e).context("creating the slot"))?;
        tracing::info!(slot, "created replication slot");
        client.close().await;
    }
    let mut options = WalReceiverOptions::new(&args.directory)
        .status_interval(Duration::from_secs(args.status_interval))
        .synchronous(args.synchronous);
    if let Some(slot) = &args.slot {
        options = options.slot(slot).create_slot(args.if_not_exists);
    }
    if let Some(end) = args.endpos {
        options = options.endpos(end);
    }
    if let Some(secs) = args.fsync_interval {
        options = options.fsync_interval(Duration::from_secs(secs));
    }
    let mut receiver = WalReceiver::new(config, options);
    let handle = receiver.handle();
    let mut stop = crate::stream::shutdown_on_signals();
    {
        let handle = handle.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            if stop.wait_for(|s| *s).await.is_ok() {
                handle.stop();
            }
        });
    }
    loop {
        match receiver.run().await {
            Ok(outcome) => {
                tracing::info!(
                    reason = ?outcome.reason,
                    flushed = ?outcome.flushed.map(|l| l.to_string()),
                    timeline = ?outcome.timeline.map(|t| t.0),
                    segments = outcome.segments_completed,
                    "receivewal stopped"
                );
                return Ok(());
            }
            Err(e) if e.is_transient() && !args.no_loop => {
                tracing::warn!("{e}; retrying in {} s", args.retry_interval);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                    () = tokio::time::sleep(Duration::from_secs(args.retry_interval)) => {}
                }
            }
            Err(e) => return Err(cli_error(e)),
        }
    }
}

/// One line with the SQLSTATE and the next step.
fn cli_error(e: ReceiveError) -> CliError {
    let kind = e.kind();
    let hint = match kind {
        ReceiveErrorKind::SlotMissing => Some(
            "the slot does not exist: add --create-slot --if-not-exists, or run `walstream slot \
             create --physical --reserve-wal`",
        ),
        ReceiveErrorKind::ServerConfig => Some(
            "physical replication needs wal_level = replica (or logical) and max_wal_senders > 0 \
             in postgresql.conf, then a restart",
        ),
        ReceiveErrorKind::WalRemoved => Some(
            "the server already recycled that WAL: stream through a slot (-S with --create-slot) \
             so it keeps WAL until received, or start again in an empty directory",
        ),
        ReceiveErrorKind::Protocol if e.local_error().is_some() => Some(
            "the WAL does not continue the files in -D: were they written from another server \
             or timeline? use an empty directory",
        ),
        // A failed connection attempt keeps the connection layer's hint (server running?).
        ReceiveErrorKind::Connection
            if e.conn_error()
                .is_none_or(|c| c.kind() != walstream_conn::ErrorKind::Connect) =>
        {
            Some(
                "the connection was lost; run without --no-loop to retry, a restart resumes from the \
             files",
            )
        }
        _ => None,
    };
    let context = e.context().to_owned();
    let mut err = match e.into_conn_error() {
        Ok(conn) => CliError::from(conn).context(&context),
        Err(e) => {
            let category = match kind {
                ReceiveErrorKind::Usage => Category::Usage,
                ReceiveErrorKind::Local => Category::Other,
                ReceiveErrorKind::Connection => Category::Connection,
                _ => Category::Server,
            };
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let text = s.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = s.source();
            }
            CliError::new(category, message)
        }
    };
    if let Some(h) = hint {
        err = err.hint(h);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_arguments() {
        assert_eq!(parse_lsn("0/3000060"), Ok(Lsn(0x0300_0060)));
        assert!(parse_lsn("3000060").unwrap_err().contains("0/3000060"));
    }
}
