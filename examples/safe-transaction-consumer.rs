//! Buffers each transaction's changes until its commit, applies them in order, and
//! acknowledges only after applying: nothing is lost on a crash, and a transaction
//! interrupted by a connection loss is never half-applied.
//!
//! `cargo run -p walstream --example safe-transaction-consumer -- 'host=localhost user=repl dbname=app'`
use walstream::{Config, Event, EventKind, LogicalStream};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Stands in for writing to your database or queue; must be durable when it returns.
fn apply(changes: &[Event]) -> Result<(), Box<dyn std::error::Error>> {
    for c in changes {
        println!("  apply {}", c.to_json_line()?);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conninfo = std::env::args()
        .nth(1)
        .unwrap_or_else(|| env("WALSTREAM_CONNINFO", "host=localhost dbname=postgres"));
    let config: Config = conninfo.parse()?;
    let mut stream = LogicalStream::builder(config, env("WALSTREAM_SLOT", "walstream_example"))
        .publication(env("WALSTREAM_PUBLICATION", "walstream_example"))
        .start()
        .await?;
    let mut buffer: Vec<Event> = Vec::new();
    while let Some(event) = stream.next_event().await? {
        match event.kind() {
            // A (re-)started transaction: drop anything left from one cut off by a reconnect.
            EventKind::Begin(_) => buffer.clear(),
            EventKind::Insert(_)
            | EventKind::Update(_)
            | EventKind::Delete(_)
            | EventKind::Truncate(_) => buffer.push(event),
            EventKind::Commit(c) => {
                println!("transaction {:?} ({} changes)", event.xid(), buffer.len());
                apply(&buffer)?;
                buffer.clear();
                // Only now is the transaction durable on our side: acknowledge its end LSN.
                event.ack();
                println!("acknowledged {}", c.end_lsn);
            }
            _ => {}
        }
    }
    Ok(())
}
