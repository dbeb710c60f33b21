//! Initial snapshot, then the stream: every row of the published tables as a Debezium
//! read record (`op = "r"`), then every change committed after the snapshot, with no row
//! missed or seen twice at the hand-off.
//!
//! The snapshot needs a slot that does not exist yet (the slot is created with an exported
//! snapshot). On the first run this example creates `walstream_example_snapshot` and copies
//! the tables; on later runs the slot exists, so it resumes streaming from it instead.
//!
//! Setup (see the README's "Running the examples"; the example's own slot is created for
//! you), then:
//! `WALSTREAM_CONNINFO='host=localhost user=repl dbname=app' cargo run -p walstream --example initial-snapshot`
//!
//! Drop the slot when done: `SELECT pg_drop_replication_slot('walstream_example_snapshot')`.
use std::time::{SystemTime, UNIX_EPOCH};

use walstream::{Config, DebeziumEncoder, DebeziumOptions, EventKind, LogicalStream, slot_info};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conninfo = std::env::args()
        .nth(1)
        .unwrap_or_else(|| env("WALSTREAM_CONNINFO", "host=localhost dbname=postgres"));
    let config: Config = conninfo.parse()?;
    let slot = env("WALSTREAM_SLOT", "walstream_example_snapshot");
    let database = config
        .effective_dbname()
        .unwrap_or_else(|| "postgres".to_owned());

    // A new slot gets a snapshot; an existing one is resumed (its snapshot was taken on the
    // run that created it).
    let snapshot = slot_info(&config, &slot).await?.is_none();
    let mut stream = LogicalStream::builder(config, slot.as_str())
        .publication(env("WALSTREAM_PUBLICATION", "walstream_example"))
        .initial_snapshot(snapshot)
        .cancellation_token(ctrl_c_token())
        .start()
        .await?;
    eprintln!(
        "{} slot {slot}; Ctrl-C stops",
        if snapshot {
            "snapshot, then streaming from new"
        } else {
            "streaming from existing"
        }
    );

    let mut debezium = DebeziumEncoder::new(DebeziumOptions::new("example", database));
    while let Some(event) = stream.next_event().await? {
        match event.kind() {
            EventKind::Read(read) => {
                if let Some(row) = read.row() {
                    let record = debezium.encode_read(row, event.lsn(), read.last, now_ms())?;
                    println!("{}", record.value);
                }
            }
            EventKind::SnapshotComplete(done) => eprintln!(
                "snapshot complete: {} rows from {} tables, consistent at {}",
                done.rows, done.tables, done.consistent_point
            ),
            EventKind::Resumed(r) => eprintln!(
                "reconnected at {}; dropping partial transactions {:?}",
                r.at, r.discarded
            ),
            _ => {
                for record in debezium.encode(&event)? {
                    println!("{}", record.value);
                }
            }
        }
        // Printing is all this consumer does: once printed, the event is processed.
        event.ack();
    }
    eprintln!(
        "stopped; acknowledged up to {}",
        stream.feedback().acknowledged()
    );
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A token cancelled on Ctrl-C: the stream then shuts down gracefully.
fn ctrl_c_token() -> walstream::CancellationToken {
    let token = walstream::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        t.cancel();
    });
    token
}
