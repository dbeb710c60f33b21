//! Deserializes inserted and updated rows into a Rust struct with serde.
//!
//! Expects the README's example table:
//! `CREATE TABLE walstream_example (id bigint PRIMARY KEY, name text, score double precision,
//! tags text[], doc jsonb, big text)`.
//!
//! `cargo run -p walstream --example typed-deserialization -- 'host=localhost user=repl dbname=app'`
use serde::Deserialize;
use walstream::{Config, EventKind, LogicalStream, Toasted};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // printed with Debug
struct Item {
    id: i64,
    name: Option<String>,
    score: Option<f64>,
    tags: Option<Vec<String>>,
    doc: Option<serde_json::Value>,
    /// A TOASTable column: an update that does not touch it does not send it.
    big: Toasted<Option<String>>,
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
    while let Some(event) = stream.next_event().await? {
        if let EventKind::Insert(change) | EventKind::Update(change) = event.kind() {
            if change.table() == "walstream_example" {
                if let Some(row) = &change.new {
                    match row.deserialize::<Item>() {
                        Ok(item) => println!("{} {item:?}", event.kind_name()),
                        // The error names the column and the expected type.
                        Err(e) => eprintln!("cannot read row: {e}"),
                    }
                }
            }
        }
        event.ack();
    }
    Ok(())
}
