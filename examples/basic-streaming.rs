//! Prints every event as a JSON line and acknowledges it.
//!
//! Setup (see the README's "Running the examples"), then:
//! `WALSTREAM_CONNINFO='host=localhost user=repl dbname=app' cargo run -p walstream --example basic-streaming`
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
    let mut stream = LogicalStream::builder(config, env("WALSTREAM_SLOT", "walstream_example"))
        .publication(env("WALSTREAM_PUBLICATION", "walstream_example"))
        .messages(true)
        .cancellation_token(ctrl_c_token())
        .start()
        .await?;
    eprintln!(
        "streaming with pgoutput protocol {:?}; Ctrl-C stops",
        stream.proto_version()
    );
    while let Some(event) = stream.next_event().await? {
        println!("{}", event.to_json_line()?);
        // Printing is all this consumer does: once printed, the event is processed.
        event.ack();
    }
    eprintln!(
        "stopped; acknowledged up to {}",
        stream.feedback().acknowledged()
    );
    Ok(())
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
