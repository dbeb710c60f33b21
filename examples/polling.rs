//! Polls the stream with a timeout, doing other work between events, and stops after a
//! number of transactions with a graceful shutdown.
//!
//! `cargo run -p walstream --example polling -- 'host=localhost user=repl dbname=app' 10`
use std::time::Duration;

use walstream::{Config, EventKind, LogicalStream};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let conninfo = args
        .next()
        .unwrap_or_else(|| env("WALSTREAM_CONNINFO", "host=localhost dbname=postgres"));
    let max_transactions: usize = args.next().map_or(Ok(10), |s| s.parse())?;
    let config: Config = conninfo.parse()?;
    let mut stream = LogicalStream::builder(config, env("WALSTREAM_SLOT", "walstream_example"))
        .publication(env("WALSTREAM_PUBLICATION", "walstream_example"))
        .status_interval(Duration::from_secs(1))
        .start()
        .await?;
    let mut transactions = 0;
    while transactions < max_transactions {
        match tokio::time::timeout(Duration::from_secs(1), stream.next_event()).await {
            Err(_) => eprintln!(
                "(idle; slot confirmed up to {})",
                stream.feedback().flushed()
            ),
            Ok(event) => {
                let Some(event) = event? else { break };
                if let EventKind::Commit(c) = event.kind() {
                    transactions += 1;
                    println!(
                        "transaction {transactions} committed, ends at {}",
                        c.end_lsn
                    );
                }
                event.ack();
            }
        }
    }
    // Final feedback, CopyDone, clean close.
    stream.shutdown().await?;
    Ok(())
}
