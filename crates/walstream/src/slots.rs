//! Replication slot management: create (temporary, two-phase, failover, snapshot
//! export/use/nothing, if-not-exists), drop (optionally waiting), alter, read, and list with
//! lag.
//!
//! [`SlotManager`] keeps one `replication=database` connection for a series of commands —
//! needed for temporary slots (they live as long as the connection that created them) and
//! for [`SnapshotAction::Use`] (the snapshot is used by the connection's transaction). The
//! free functions ([`create_slot`], [`drop_slot`], [`list_slots`], ...) open a connection
//! for one command. See the [manual](crate::manual#slots).
use walstream_conn::{
    Client, Config, CreateSlotOptions, CreatedSlot, ReadSlot, ReplicationMode, SlotKind,
    SnapshotAction,
};
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
    /// `pg_current_wal_lsn() - confirmed_flush_lsn` in bytes: how far the consumer's
    /// acknowledgements are behind the server (`None` on a standby or for physical slots).
    pub lag_bytes: Option<u64>,
    /// `pg_current_wal_lsn() - restart_lsn` in bytes: how much WAL the slot holds back from
    /// removal (`None` on a standby or when the slot has no `restart_lsn`).
    pub restart_lag_bytes: Option<u64>,
    /// Whether the slot decodes prepared transactions (logical slots).
    pub two_phase: bool,
    /// Whether the slot is synchronized to standbys (PostgreSQL 17+; `false` before).
    pub failover: bool,
    /// `wal_status`: `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
}

/// What [`SlotManager::alter`] changes (PostgreSQL 17+; `two_phase` 18+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AlterSlot {
    /// Synchronize the slot to standbys (17+).
    pub failover: Option<bool>,
    /// Decode prepared transactions (18+).
    pub two_phase: Option<bool>,
}

impl AlterSlot {
    /// Sets `failover`.
    #[must_use]
    pub fn failover(mut self, on: bool) -> Self {
        self.failover = Some(on);
        self
    }

    /// Sets `two_phase`.
    #[must_use]
    pub fn two_phase(mut self, on: bool) -> Self {
        self.two_phase = Some(on);
        self
    }
}

/// A `replication=database` connection for slot commands.
///
/// Temporary slots it creates live until it is closed or dropped. With
/// [`SnapshotAction::Use`], [`create`](Self::create) first opens a `REPEATABLE READ, READ ONLY`
/// transaction on this connection and the slot's snapshot becomes that transaction's: read
/// the data consistent with the slot through [`client`](Self::client), then
/// [`commit`](Self::commit).
#[derive(Debug)]
pub struct SlotManager {
    client: Client,
}

/// SQLSTATE `duplicate_object`: the slot already exists.
const DUPLICATE_OBJECT: &str = "42710";

impl SlotManager {
    /// Connects with `config` (the replication mode is set for you).
    pub async fn connect(config: &Config) -> Result<Self, Error> {
        let mut config = config.clone();
        config.set_replication(ReplicationMode::Logical);
        Ok(Self {
            client: Client::connect(&config).await?,
        })
    }

    /// The server's major version.
    pub fn server_major_version(&self) -> Option<u32> {
        self.client.server_major_version()
    }

    /// The connection, e.g. to read inside the snapshot of a slot created with
    /// [`SnapshotAction::Use`].
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Creates a slot with `CREATE_REPLICATION_SLOT` in the server version's syntax.
    ///
    /// `two_phase` needs PostgreSQL 15+ here (14 has no keyword for it), `failover` 17+:
    /// older servers get [`ErrorKind::Connection`] with the connection layer's "unsupported"
    /// error, before anything is sent. With [`SnapshotAction::Use`] a `REPEATABLE READ`
    /// transaction is opened first (see the type's docs); with
    /// [`SnapshotAction::Export`] the snapshot's name is in
    /// [`CreatedSlot::snapshot_name`] and lives until this connection runs another command.
    pub async fn create(
        &mut self,
        name: &str,
        options: &CreateSlotOptions,
    ) -> Result<CreatedSlot, Error> {
        let uses_snapshot = matches!(
            options.kind,
            SlotKind::Logical {
                snapshot: SnapshotAction::Use,
                ..
            }
        );
        if uses_snapshot {
            self.client
                .simple_query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
        }
        match self.client.create_replication_slot(name, options).await {
            Ok(created) => Ok(created),
            Err(e) => {
                if uses_snapshot && self.client.is_usable() {
                    let _ = self.client.simple_query("ROLLBACK").await;
                }
                Err(e.into())
            }
        }
    }

    /// Like [`create`](Self::create), but `Ok(None)` if a slot of that name already exists
    /// (whatever its options).
    pub async fn create_if_not_exists(
        &mut self,
        name: &str,
        options: &CreateSlotOptions,
    ) -> Result<Option<CreatedSlot>, Error> {
        match self.create(name, options).await {
            Ok(c) => Ok(Some(c)),
            Err(e)
                if e.db_error()
                    .is_some_and(|d| d.code().code() == DUPLICATE_OBJECT) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Ends the transaction a [`SnapshotAction::Use`] creation opened.
    pub async fn commit(&mut self) -> Result<(), Error> {
        self.client.simple_query("COMMIT").await?;
        Ok(())
    }

    /// Drops a slot; with `wait`, waits until no walsender uses it instead of failing.
    pub async fn drop_slot(&mut self, name: &str, wait: bool) -> Result<(), Error> {
        self.client.drop_replication_slot(name, wait).await?;
        Ok(())
    }

    /// Changes a slot's `failover` (PostgreSQL 17+) and `two_phase` (18+) settings with
    /// `ALTER_REPLICATION_SLOT`.
    pub async fn alter(&mut self, name: &str, change: AlterSlot) -> Result<(), Error> {
        self.client
            .alter_replication_slot(name, change.failover, change.two_phase)
            .await?;
        Ok(())
    }

    /// `READ_REPLICATION_SLOT` (PostgreSQL 15+): a physical slot's `restart_lsn` and its
    /// timeline, `None` if no slot has that name. The server refuses the command for logical
    /// slots; use [`info`](Self::info) for those.
    pub async fn read(&mut self, name: &str) -> Result<Option<ReadSlot>, Error> {
        Ok(self.client.read_replication_slot(name).await?)
    }

    /// One slot from `pg_replication_slots` with its lag (any kind, any version).
    pub async fn info(&mut self, name: &str) -> Result<Option<SlotInfo>, Error> {
        Ok(self.query_slots(Some(name)).await?.pop())
    }

    /// Every slot of the server with its lag, by name.
    pub async fn list(&mut self) -> Result<Vec<SlotInfo>, Error> {
        self.query_slots(None).await
    }

    async fn query_slots(&mut self, name: Option<&str>) -> Result<Vec<SlotInfo>, Error> {
        let major = self.client.server_major_version().unwrap_or(0);
        let failover = if major >= 17 {
            "failover::text"
        } else {
            "'false'"
        };
        let filter = match name {
            Some(n) => format!(
                "WHERE slot_name = {}",
                walstream_conn::quote_literal(n, self.client.standard_conforming_strings())?
            ),
            None => String::new(),
        };
        let rows = self
            .client
            .simple_query(&format!(
                "SELECT slot_name, plugin, slot_type, database, temporary::text, \
                 active::text, restart_lsn::text, confirmed_flush_lsn::text, \
                 CASE WHEN pg_is_in_recovery() OR confirmed_flush_lsn IS NULL THEN NULL \
                 ELSE (pg_current_wal_lsn() - confirmed_flush_lsn)::text END, \
                 CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN NULL \
                 ELSE (pg_current_wal_lsn() - restart_lsn)::text END, \
                 two_phase::text, {failover}, wal_status \
                 FROM pg_replication_slots {filter} ORDER BY slot_name"
            ))
            .await?;
        let bad =
            |what: &str| Error::new(ErrorKind::Protocol, format!("pg_replication_slots: {what}"));
        let lsn = |s: Option<&str>| -> Result<Option<Lsn>, Error> {
            s.map(|t| t.parse().map_err(|_| bad("invalid LSN")))
                .transpose()
        };
        let bytes = |s: Option<&str>| -> Result<Option<u64>, Error> {
            // A numeric difference; negative (a slot ahead of the server's position, as
            // after a promotion) counts as no lag.
            s.map(|t| match t.parse::<i128>() {
                Ok(v) => Ok(u64::try_from(v.max(0)).unwrap_or(u64::MAX)),
                Err(_) => Err(bad("invalid lag")),
            })
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
                    lag_bytes: bytes(r.get(8))?,
                    restart_lag_bytes: bytes(r.get(9))?,
                    two_phase: r.get(10) == Some("true"),
                    failover: r.get(11) == Some("true"),
                    wal_status: r.get(12).map(str::to_owned),
                })
            })
            .collect()
    }

    /// Closes the connection (temporary slots it created are dropped by the server).
    pub async fn close(self) {
        self.client.close().await;
    }
}

/// Creates a replication slot with `CREATE_REPLICATION_SLOT` on a connection of its own
/// (so a temporary slot would vanish at once: use [`SlotManager`] for those).
pub async fn create_slot(
    config: &Config,
    name: &str,
    options: &CreateSlotOptions,
) -> Result<CreatedSlot, Error> {
    if options.temporary {
        return Err(Error::new(
            ErrorKind::Usage,
            "a temporary slot lives only as long as its connection: create it with a SlotManager",
        ));
    }
    let mut m = SlotManager::connect(config).await?;
    let created = m.create(name, options).await;
    m.close().await;
    created
}

/// Creates a permanent slot unless one of that name exists (`Ok(None)` then).
pub async fn create_slot_if_not_exists(
    config: &Config,
    name: &str,
    options: &CreateSlotOptions,
) -> Result<Option<CreatedSlot>, Error> {
    if options.temporary {
        return Err(Error::new(
            ErrorKind::Usage,
            "a temporary slot lives only as long as its connection: create it with a SlotManager",
        ));
    }
    let mut m = SlotManager::connect(config).await?;
    let created = m.create_if_not_exists(name, options).await;
    m.close().await;
    created
}

/// Drops a replication slot; with `wait`, waits until it is no longer active.
pub async fn drop_slot(config: &Config, name: &str, wait: bool) -> Result<(), Error> {
    let mut m = SlotManager::connect(config).await?;
    let r = m.drop_slot(name, wait).await;
    m.close().await;
    r
}

/// Changes a slot's `failover` (17+) / `two_phase` (18+) settings.
pub async fn alter_slot(config: &Config, name: &str, change: AlterSlot) -> Result<(), Error> {
    let mut m = SlotManager::connect(config).await?;
    let r = m.alter(name, change).await;
    m.close().await;
    r
}

/// One slot with its lag, `None` if it does not exist.
pub async fn slot_info(config: &Config, name: &str) -> Result<Option<SlotInfo>, Error> {
    let mut m = SlotManager::connect(config).await?;
    let r = m.info(name).await;
    m.close().await;
    r
}

/// Lists the server's replication slots with their lag.
pub async fn list_slots(config: &Config) -> Result<Vec<SlotInfo>, Error> {
    let mut m = SlotManager::connect(config).await?;
    let r = m.list().await;
    m.close().await;
    r
}
