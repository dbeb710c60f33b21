//! Replication slot helpers: create, drop, list with lag.
use walstream_conn::{Client, Config, CreateSlotOptions, CreatedSlot, ReplicationMode};
use walstream_proto::Lsn;

use crate::error::{Error, ErrorKind};

/// A replication slot as `pg_replication_slots` describes it, with its lag.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotInfo {
    /// The slot's name.
    pub name: String,
    /// The output plugin (`None` for physical slots).
    pub plugin: Option<String>,
    /// `logical` or `physical`.
    pub slot_type: String,
    /// The database of a logical slot.
    pub database: Option<String>,
    /// Whether the slot is temporary.
    pub temporary: bool,
    /// Whether a walsender is using the slot now.
    pub active: bool,
    /// The oldest WAL the slot still needs.
    pub restart_lsn: Option<Lsn>,
    /// What the consumer has confirmed (logical slots).
    pub confirmed_flush_lsn: Option<Lsn>,
    /// `pg_current_wal_lsn() - confirmed_flush_lsn` in bytes (`None` on a standby or for
    /// physical slots).
    pub lag_bytes: Option<u64>,
}

async fn connect(config: &Config) -> Result<Client, Error> {
    let mut config = config.clone();
    config.set_replication(ReplicationMode::Logical);
    Ok(Client::connect(&config).await?)
}

/// Creates a replication slot with `CREATE_REPLICATION_SLOT` (temporary slots live only as
/// long as the connection that made them, so this helper is for permanent slots; use
/// `walstream_conn::Client::create_replication_slot` to keep the connection).
pub async fn create_slot(
    config: &Config,
    name: &str,
    options: &CreateSlotOptions,
) -> Result<CreatedSlot, Error> {
    let mut client = connect(config).await?;
    let created = client.create_replication_slot(name, options).await?;
    client.close().await;
    Ok(created)
}

/// Drops a replication slot; with `wait`, waits until it is no longer active.
pub async fn drop_slot(config: &Config, name: &str, wait: bool) -> Result<(), Error> {
    let mut client = connect(config).await?;
    client.drop_replication_slot(name, wait).await?;
    client.close().await;
    Ok(())
}

/// Lists the server's replication slots with their lag.
pub async fn list_slots(config: &Config) -> Result<Vec<SlotInfo>, Error> {
    let mut client = connect(config).await?;
    let rows = client
        .simple_query(
            "SELECT slot_name, plugin, slot_type, database, temporary::text, active::text, \
             restart_lsn::text, confirmed_flush_lsn::text, \
             CASE WHEN pg_is_in_recovery() OR confirmed_flush_lsn IS NULL THEN NULL \
             ELSE (pg_current_wal_lsn() - confirmed_flush_lsn)::text END \
             FROM pg_replication_slots ORDER BY slot_name",
        )
        .await?;
    client.close().await;
    let bad = |what: &str| Error::new(ErrorKind::Protocol, format!("pg_replication_slots: {what}"));
    let lsn = |s: Option<&str>| -> Result<Option<Lsn>, Error> {
        s.map(|t| t.parse().map_err(|_| bad("invalid LSN")))
            .transpose()
    };
    rows.iter()
        .map(|r| {
            Ok(SlotInfo {
                name: r.get(0).ok_or_else(|| bad("no slot_name"))?.to_owned(),
                plugin: r.get(1).map(str::to_owned),
                slot_type: r.get(2).unwrap_or_default().to_owned(),
                database: r.get(3).map(str::to_owned),
                temporary: r.get(4) == Some("true"),
                active: r.get(5) == Some("true"),
                restart_lsn: lsn(r.get(6))?,
                confirmed_flush_lsn: lsn(r.get(7))?,
                lag_bytes: r
                    .get(8)
                    .map(|t| t.parse::<u64>().map_err(|_| bad("invalid lag")))
                    .transpose()?,
            })
        })
        .collect()
}
