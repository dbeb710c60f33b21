//! Runs the stream in a spawned task as a `futures` Stream, sends events over a channel to a
//! worker that acknowledges through the shared feedback object, and stops on Ctrl-C.
//!
//! `cargo run -p walstream --example tokio-spawn-streaming -- 'host=localhost user=repl dbname=app'`
use futures_util::StreamExt as _;
use walstream::{Config, LogicalStream};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conninfo = std::env::args()
        .nth(1)
        .unwrap_or_else(|| env("WALSTREAM_CONNINFO", "host=localhost dbname=postgres"));
    let config: Config = conninfo.parse()?;
    let stream = LogicalStream::builder(config, env("WALSTREAM_SLOT", "walstream_example"))
        .publication(env("WALSTREAM_PUBLICATION", "walstream_example"))
        .start()
        .await?;
    let token = stream.cancellation_token();
    let feedback = stream.feedback().clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);

    // The producer: the stream moves into its own task (it is Send).
    let producer = tokio::spawn(async move {
        let mut events = stream.into_stream();
        while let Some(event) = events.next().await {
            if tx.send(event).await.is_err() {
                break;
            }
        }
    });

    // The worker: processes events and acknowledges commit end LSNs.
    let worker = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("stream failed: {e}");
                    break;
                }
            };
            println!("{} at {}", event.kind_name(), event.lsn());
            if let Some(end) = event.ack_lsn() {
                feedback.ack(end);
            }
        }
    });

    tokio::signal::ctrl_c().await?;
    token.cancel(); // graceful: final feedback, CopyDone, close
    producer.await?;
    worker.await?;
    Ok(())
}
