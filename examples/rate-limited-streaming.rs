//! Processes at most N changes per second. The stream does not read ahead while the consumer
//! waits, so TCP flow control slows the server's walsender down instead of buffering
//! without bound. While throttled, the example sends status updates itself every 5 s.
//!
//! `cargo run -p walstream --example rate-limited-streaming -- 'host=localhost user=repl dbname=app' 100`
use std::time::Duration;

use walstream::{Config, LogicalStream};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let conninfo = args
        .next()
        .unwrap_or_else(|| env("WALSTREAM_CONNINFO", "host=localhost dbname=postgres"));
    let per_second: u32 = args.next().map_or(Ok(100), |s| s.parse())?;
    let config: Config = conninfo.parse()?;
    let mut stream = LogicalStream::builder(config, env("WALSTREAM_SLOT", "walstream_example"))
        .publication(env("WALSTREAM_PUBLICATION", "walstream_example"))
        .start()
        .await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut feedback_tick = tokio::time::interval(Duration::from_secs(5));
    while let Some(event) = stream.next_event().await? {
        if event.kind().row_change().is_some() {
            tick.tick().await;
            println!("{}", event.to_json_line()?);
        }
        event.ack();
        // While throttled, report progress regularly ourselves.
        if tokio::time::timeout(Duration::ZERO, feedback_tick.tick())
            .await
            .is_ok()
        {
            stream.send_feedback().await?;
        }
    }
    Ok(())
}
