//! Replication commands
//! ([protocol-replication](https://www.postgresql.org/docs/current/protocol-replication.html)):
//! building the command text (identifier and literal quoting, version-dependent syntax) and
//! parsing the result rows.

use bytes::Bytes;
use walstream_proto::{Lsn, TimelineId};

use crate::client::{Client, Row};
use crate::error::{Error, ErrorKind};

/// The result of `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifySystem {
    /// The unique system identifier (a decimal 64-bit number, kept as text as sent).
    pub system_id: String,
    /// The current timeline.
    pub timeline: TimelineId,
    /// The current WAL flush location.
    pub xlog_pos: Lsn,
    /// The database connected to (`None` on a physical replication connection).
    pub dbname: Option<String>,
}

/// The result of `TIMELINE_HISTORY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineHistory {
    /// File name of the history file, e.g. `00000002.history`.
    pub filename: String,
    /// Contents of the history file.
    pub content: Bytes,
}

/// What a new logical slot does with its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotAction {
    /// Export it for use by other sessions (the server's default).
    #[default]
    Export,
    /// Use it in the current transaction (the command must run inside one).
    Use,
    /// Do not create one.
    Nothing,
}

/// The kind of slot to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotKind {
    /// A physical slot.
    Physical {
        /// Reserve WAL immediately instead of at first connection.
        reserve_wal: bool,
    },
    /// A logical slot.
    Logical {
        /// Output plugin, e.g. `pgoutput`.
        plugin: String,
        /// Snapshot handling.
        snapshot: SnapshotAction,
        /// Enable decoding of prepared transactions.
        two_phase: bool,
    },
}

/// Options of `CREATE_REPLICATION_SLOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSlotOptions {
    /// The slot kind and its options.
    pub kind: SlotKind,
    /// Drop the slot when the session ends.
    pub temporary: bool,
    /// Synchronize the slot to standbys (PostgreSQL 17+).
    pub failover: bool,
}

impl CreateSlotOptions {
    /// A permanent logical slot using `plugin`, exporting its snapshot.
    pub fn logical(plugin: impl Into<String>) -> Self {
        Self {
            kind: SlotKind::Logical {
                plugin: plugin.into(),
                snapshot: SnapshotAction::Export,
                two_phase: false,
            },
            temporary: false,
            failover: false,
        }
    }

    /// A permanent physical slot.
    pub fn physical(reserve_wal: bool) -> Self {
        Self {
            kind: SlotKind::Physical { reserve_wal },
            temporary: false,
            failover: false,
        }
    }

    /// Makes the slot temporary.
    #[must_use]
    pub fn temporary(mut self) -> Self {
        self.temporary = true;
        self
    }

    /// Sets the snapshot action (logical slots).
    #[must_use]
    pub fn snapshot(mut self, action: SnapshotAction) -> Self {
        if let SlotKind::Logical { snapshot, .. } = &mut self.kind {
            *snapshot = action;
        }
        self
    }

    /// Enables two-phase decoding (logical slots).
    #[must_use]
    pub fn two_phase(mut self, enabled: bool) -> Self {
        if let SlotKind::Logical { two_phase, .. } = &mut self.kind {
            *two_phase = enabled;
        }
        self
    }

    /// Enables failover synchronization (PostgreSQL 17+).
    #[must_use]
    pub fn failover(mut self, enabled: bool) -> Self {
        self.failover = enabled;
        self
    }
}

/// The result of `CREATE_REPLICATION_SLOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    /// The slot's name.
    pub slot_name: String,
    /// The WAL location at which the slot became consistent (`None` for a physical slot
    /// without reserved WAL).
    pub consistent_point: Option<Lsn>,
    /// The exported snapshot's name, if one was exported.
    pub snapshot_name: Option<String>,
    /// The output plugin (logical slots).
    pub output_plugin: Option<String>,
}

/// The result of `READ_REPLICATION_SLOT` for an existing slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSlot {
    /// `physical` (logical slots are reported without data by the server).
    pub slot_type: String,
    /// The slot's `restart_lsn`, if set.
    pub restart_lsn: Option<Lsn>,
    /// The timeline of `restart_lsn`, if set.
    pub restart_tli: Option<TimelineId>,
}

/// Quotes an identifier: `"name"` with `"` doubled.
pub fn quote_ident(name: &str) -> Result<String, Error> {
    if name.contains('\0') {
        return Err(Error::new(
            ErrorKind::InvalidState,
            "identifier contains a NUL byte",
        ));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Quotes a string literal: `'value'` with `'` doubled; when the server reports
/// `standard_conforming_strings=off`, `E'...'` with backslashes doubled too.
pub fn quote_literal(value: &str, standard_conforming_strings: bool) -> Result<String, Error> {
    if value.contains('\0') {
        return Err(Error::new(
            ErrorKind::InvalidState,
            "string literal contains a NUL byte",
        ));
    }
    let doubled = value.replace('\'', "''");
    Ok(if standard_conforming_strings {
        format!("'{doubled}'")
    } else {
        format!("E'{}'", doubled.replace('\\', "\\\\"))
    })
}

/// Builds the `CREATE_REPLICATION_SLOT` command for a server of major version `major`.
pub fn create_slot_command(
    name: &str,
    opts: &CreateSlotOptions,
    major: u32,
) -> Result<String, Error> {
    let mut sql = format!("CREATE_REPLICATION_SLOT {}", quote_ident(name)?);
    if opts.temporary {
        sql.push_str(" TEMPORARY");
    }
    if opts.failover && major < 17 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "FAILOVER slots need PostgreSQL 17 or later",
        ));
    }
    if major >= 15 {
        let mut options = Vec::new();
        match &opts.kind {
            SlotKind::Physical { reserve_wal } => {
                sql.push_str(" PHYSICAL");
                if *reserve_wal {
                    options.push("RESERVE_WAL true".to_owned());
                }
            }
            SlotKind::Logical {
                plugin,
                snapshot,
                two_phase,
            } => {
                sql.push_str(" LOGICAL ");
                sql.push_str(&quote_ident(plugin)?);
                options.push(format!(
                    "SNAPSHOT '{}'",
                    match snapshot {
                        SnapshotAction::Export => "export",
                        SnapshotAction::Use => "use",
                        SnapshotAction::Nothing => "nothing",
                    }
                ));
                if *two_phase {
                    options.push("TWO_PHASE true".to_owned());
                }
            }
        }
        if opts.failover {
            options.push("FAILOVER true".to_owned());
        }
        if !options.is_empty() {
            sql.push_str(" (");
            sql.push_str(&options.join(", "));
            sql.push(')');
        }
    } else {
        match &opts.kind {
            SlotKind::Physical { reserve_wal } => {
                sql.push_str(" PHYSICAL");
                if *reserve_wal {
                    sql.push_str(" RESERVE_WAL");
                }
            }
            SlotKind::Logical {
                plugin,
                snapshot,
                two_phase,
            } => {
                sql.push_str(" LOGICAL ");
                sql.push_str(&quote_ident(plugin)?);
                if *two_phase {
                    // PostgreSQL 14's replication grammar has no TWO_PHASE keyword (two-phase
                    // slots there are created with pg_create_logical_replication_slot()).
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        "CREATE_REPLICATION_SLOT ... TWO_PHASE needs PostgreSQL 15 or later",
                    ));
                }
                sql.push_str(match snapshot {
                    SnapshotAction::Export => " EXPORT_SNAPSHOT",
                    SnapshotAction::Use => " USE_SNAPSHOT",
                    SnapshotAction::Nothing => " NOEXPORT_SNAPSHOT",
                });
            }
        }
    }
    Ok(sql)
}

/// Builds `START_REPLICATION SLOT s LOGICAL lsn (options)`.
pub fn start_logical_command(
    slot: &str,
    start: Lsn,
    options: &[(&str, &str)],
    standard_conforming_strings: bool,
) -> Result<String, Error> {
    let mut sql = format!(
        "START_REPLICATION SLOT {} LOGICAL {start}",
        quote_ident(slot)?
    );
    if !options.is_empty() {
        let parts = options
            .iter()
            .map(|(k, v)| {
                Ok(format!(
                    "{} {}",
                    quote_ident(k)?,
                    quote_literal(v, standard_conforming_strings)?
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        sql.push_str(" (");
        sql.push_str(&parts.join(", "));
        sql.push(')');
    }
    Ok(sql)
}

/// Builds `START_REPLICATION [SLOT s] PHYSICAL lsn [TIMELINE t]`.
pub fn start_physical_command(
    slot: Option<&str>,
    start: Lsn,
    timeline: Option<TimelineId>,
) -> Result<String, Error> {
    let mut sql = "START_REPLICATION".to_owned();
    if let Some(s) = slot {
        sql.push_str(" SLOT ");
        sql.push_str(&quote_ident(s)?);
    }
    sql.push_str(&format!(" PHYSICAL {start}"));
    if let Some(t) = timeline {
        sql.push_str(&format!(" TIMELINE {t}"));
    }
    Ok(sql)
}

fn col<'a>(row: &'a Row, idx: usize, what: &'static str) -> Result<&'a str, Error> {
    row.try_get(idx)
        .map_err(|e| e.context(format!("{what}: missing column {idx}")))?
        .ok_or_else(|| Error::protocol(format!("{what}: column {idx} is NULL")))
}

fn opt_col<'a>(row: &'a Row, idx: usize, what: &'static str) -> Result<Option<&'a str>, Error> {
    row.try_get(idx)
        .map_err(|e| e.context(format!("{what}: missing column {idx}")))
}

fn parse_lsn(s: &str, what: &'static str) -> Result<Lsn, Error> {
    s.parse()
        .map_err(|e| Error::with_source(ErrorKind::Protocol, format!("{what}: invalid LSN"), e))
}

fn parse_tli(s: &str, what: &'static str) -> Result<TimelineId, Error> {
    s.parse::<u32>().map(TimelineId).map_err(|e| {
        Error::with_source(ErrorKind::Protocol, format!("{what}: invalid timeline"), e)
    })
}

fn one_row(rows: Vec<Row>, what: &'static str) -> Result<Row, Error> {
    let mut it = rows.into_iter();
    match (it.next(), it.next()) {
        (Some(r), None) => Ok(r),
        _ => Err(Error::protocol(format!("{what}: expected exactly one row"))),
    }
}

impl Client {
    fn require_major(&self, min: u32, what: &str) -> Result<(), Error> {
        match self.server_major_version() {
            Some(v) if v >= min => Ok(()),
            Some(v) => Err(Error::new(
                ErrorKind::Unsupported,
                format!("{what} needs PostgreSQL {min} or later (server is {v})"),
            )),
            None => Err(Error::new(
                ErrorKind::Unsupported,
                "server did not report its version",
            )),
        }
    }

    /// Whether the server reports `standard_conforming_strings=on` (assumed when unknown).
    pub fn standard_conforming_strings(&self) -> bool {
        self.parameter("standard_conforming_strings") != Some("off")
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<IdentifySystem, Error> {
        const W: &str = "IDENTIFY_SYSTEM";
        let row = one_row(self.simple_query("IDENTIFY_SYSTEM").await?, W)?;
        Ok(IdentifySystem {
            system_id: col(&row, 0, W)?.to_owned(),
            timeline: parse_tli(col(&row, 1, W)?, W)?,
            xlog_pos: parse_lsn(col(&row, 2, W)?, W)?,
            dbname: opt_col(&row, 3, W)?.map(str::to_owned),
        })
    }

    /// `SHOW name`: the current value of a server setting.
    pub async fn show(&mut self, name: &str) -> Result<String, Error> {
        let sql = format!("SHOW {}", quote_ident(name)?);
        let row = one_row(self.simple_query(&sql).await?, "SHOW")?;
        Ok(col(&row, 0, "SHOW")?.to_owned())
    }

    /// `TIMELINE_HISTORY tli`.
    pub async fn timeline_history(
        &mut self,
        timeline: TimelineId,
    ) -> Result<TimelineHistory, Error> {
        const W: &str = "TIMELINE_HISTORY";
        let row = one_row(
            self.simple_query(&format!("TIMELINE_HISTORY {timeline}"))
                .await?,
            W,
        )?;
        let filename = col(&row, 0, W)?.to_owned();
        let content = row
            .raw(1)
            .cloned()
            .ok_or_else(|| Error::protocol("TIMELINE_HISTORY: content is NULL"))?;
        Ok(TimelineHistory { filename, content })
    }

    /// `CREATE_REPLICATION_SLOT`, in the syntax of the server's version.
    pub async fn create_replication_slot(
        &mut self,
        name: &str,
        opts: &CreateSlotOptions,
    ) -> Result<CreatedSlot, Error> {
        const W: &str = "CREATE_REPLICATION_SLOT";
        let major = self.server_major_version().ok_or_else(|| {
            Error::new(ErrorKind::Unsupported, "server did not report its version")
        })?;
        let sql = create_slot_command(name, opts, major)?;
        let row = one_row(self.simple_query(&sql).await?, W)?;
        Ok(CreatedSlot {
            slot_name: col(&row, 0, W)?.to_owned(),
            consistent_point: opt_col(&row, 1, W)?.map(|s| parse_lsn(s, W)).transpose()?,
            snapshot_name: opt_col(&row, 2, W)?.map(str::to_owned),
            output_plugin: opt_col(&row, 3, W)?.map(str::to_owned),
        })
    }

    /// `DROP_REPLICATION_SLOT name [WAIT]`.
    pub async fn drop_replication_slot(&mut self, name: &str, wait: bool) -> Result<(), Error> {
        let mut sql = format!("DROP_REPLICATION_SLOT {}", quote_ident(name)?);
        if wait {
            sql.push_str(" WAIT");
        }
        self.simple_query(&sql).await.map(drop)
    }

    /// `ALTER_REPLICATION_SLOT name (FAILOVER b, TWO_PHASE b)` (PostgreSQL 17+; `two_phase`
    /// 18+). Fails before sending anything on older servers.
    pub async fn alter_replication_slot(
        &mut self,
        name: &str,
        failover: Option<bool>,
        two_phase: Option<bool>,
    ) -> Result<(), Error> {
        self.require_major(17, "ALTER_REPLICATION_SLOT")?;
        if two_phase.is_some() {
            self.require_major(18, "ALTER_REPLICATION_SLOT ... TWO_PHASE")?;
        }
        let mut options = Vec::new();
        if let Some(f) = failover {
            options.push(format!("FAILOVER {f}"));
        }
        if let Some(t) = two_phase {
            options.push(format!("TWO_PHASE {t}"));
        }
        if options.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "ALTER_REPLICATION_SLOT needs at least one option",
            ));
        }
        let sql = format!(
            "ALTER_REPLICATION_SLOT {} ({})",
            quote_ident(name)?,
            options.join(", ")
        );
        self.simple_query(&sql).await.map(drop)
    }

    /// `READ_REPLICATION_SLOT name` (PostgreSQL 15+): `None` if the slot does not exist.
    pub async fn read_replication_slot(&mut self, name: &str) -> Result<Option<ReadSlot>, Error> {
        const W: &str = "READ_REPLICATION_SLOT";
        self.require_major(15, W)?;
        let row = one_row(
            self.simple_query(&format!("READ_REPLICATION_SLOT {}", quote_ident(name)?))
                .await?,
            W,
        )?;
        let Some(slot_type) = opt_col(&row, 0, W)? else {
            return Ok(None);
        };
        Ok(Some(ReadSlot {
            slot_type: slot_type.to_owned(),
            restart_lsn: opt_col(&row, 1, W)?.map(|s| parse_lsn(s, W)).transpose()?,
            restart_tli: opt_col(&row, 2, W)?.map(|s| parse_tli(s, W)).transpose()?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's", true).unwrap(), "'it''s'");
        assert_eq!(quote_literal("a\\b'c", false).unwrap(), "E'a\\\\b''c'");
        assert_eq!(quote_literal("a\\b", true).unwrap(), "'a\\b'");
        assert!(quote_ident("a\0").is_err());
        assert!(quote_literal("a\0", true).is_err());
    }

    #[test]
    fn create_slot_syntax_by_version() {
        let l = CreateSlotOptions::logical("pgoutput")
            .temporary()
            .snapshot(SnapshotAction::Nothing)
            .two_phase(true);
        assert_eq!(
            create_slot_command("s", &l, 15).unwrap(),
            "CREATE_REPLICATION_SLOT \"s\" TEMPORARY LOGICAL \"pgoutput\" (SNAPSHOT 'nothing', TWO_PHASE true)"
        );
        assert_eq!(
            create_slot_command(
                "s",
                &CreateSlotOptions::logical("pgoutput").snapshot(SnapshotAction::Nothing),
                14
            )
            .unwrap(),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL \"pgoutput\" NOEXPORT_SNAPSHOT"
        );
        let e = create_slot_command(
            "s",
            &CreateSlotOptions::logical("pgoutput").two_phase(true),
            14,
        );
        assert_eq!(e.unwrap_err().kind(), ErrorKind::Unsupported);
        assert!(create_slot_command("s", &l, 14).is_err());
        assert_eq!(
            create_slot_command("p", &CreateSlotOptions::physical(true), 16).unwrap(),
            "CREATE_REPLICATION_SLOT \"p\" PHYSICAL (RESERVE_WAL true)"
        );
        assert_eq!(
            create_slot_command("p", &CreateSlotOptions::physical(true), 14).unwrap(),
            "CREATE_REPLICATION_SLOT \"p\" PHYSICAL RESERVE_WAL"
        );
        assert_eq!(
            create_slot_command("p", &CreateSlotOptions::physical(false), 15).unwrap(),
            "CREATE_REPLICATION_SLOT \"p\" PHYSICAL"
        );
        let f = CreateSlotOptions::logical("pgoutput").failover(true);
        assert_eq!(
            create_slot_command("s", &f, 16).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        assert!(
            create_slot_command("s", &f, 17)
                .unwrap()
                .ends_with("(SNAPSHOT 'export', FAILOVER true)")
        );
    }

    #[test]
    fn start_commands() {
        let lsn: Lsn = "0/16B3748".parse().unwrap();
        assert_eq!(
            start_logical_command(
                "s",
                lsn,
                &[("proto_version", "1"), ("publication_names", "p'x")],
                true
            )
            .unwrap(),
            "START_REPLICATION SLOT \"s\" LOGICAL 0/16B3748 (\"proto_version\" '1', \"publication_names\" 'p''x')"
        );
        assert_eq!(
            start_logical_command("s", lsn, &[("publication_names", "a\\b")], false).unwrap(),
            "START_REPLICATION SLOT \"s\" LOGICAL 0/16B3748 (\"publication_names\" E'a\\\\b')"
        );
        assert_eq!(
            start_logical_command("s", lsn, &[], true).unwrap(),
            "START_REPLICATION SLOT \"s\" LOGICAL 0/16B3748"
        );
        assert_eq!(
            start_physical_command(Some("p"), lsn, Some(TimelineId(2))).unwrap(),
            "START_REPLICATION SLOT \"p\" PHYSICAL 0/16B3748 TIMELINE 2"
        );
        assert_eq!(
            start_physical_command(None, lsn, None).unwrap(),
            "START_REPLICATION PHYSICAL 0/16B3748"
        );
    }
}
