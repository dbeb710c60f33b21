//! Prints Debezium-compatible change events (topic, key, value) for every change.
//!
//! `cargo run -p walstream --example debezium-json -- 'host=localhost user=repl dbname=app'`
//! Set `WALSTREAM_DEBEZIUM_SCHEMA=1` for schema+payload output.
use walstream::{Config, DebeziumEncoder, DebeziumOptions, LogicalStream};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conninfo = std::env::args()
        .nth(1)
        .unwrap_or_else(|| env("WALSTREAM_CONNINFO", "host=localhost dbname=postgres"));
    let config: Config = conninfo.parse()?;
    let database = config.dbname().unwrap_or("postgres").to_owned();
    let mut options = DebeziumOptions::new("walstream", database);
    options.include_schema = env("WALSTREAM_DEBEZIUM_SCHEMA", "0") == "1";
    options.transaction_metadata = true;
    let mut encoder = DebeziumEncoder::new(options);
    let mut stream = LogicalStream::builder(config, env("WALSTREAM_SLOT", "walstream_example"))
        .publication(env("WALSTREAM_PUBLICATION", "walstream_example"))
        .messages(true)
        .start()
        .await?;
    while let Some(event) = stream.next_event().await? {
        for record in encoder.encode(&event)? {
            println!(
                "{}\t{}\t{}",
                record.topic,
                record.key.as_deref().unwrap_or("null"),
                record.value
            );
        }
        event.ack();
    }
    Ok(())
}
