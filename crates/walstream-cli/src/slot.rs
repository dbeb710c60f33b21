//! `walstream slot create|drop|list|read|alter`.
use std::fmt::Write as _;

use serde_json::{Value as Json, json};
use walstream_conn::{Client, CreateSlotOptions, ReplicationMode, SnapshotAction};

use crate::error::{Category, CliError};

/// Arguments of `walstream slot`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  walstream slot create -d 'host=db user=rep dbname=app' s1
  walstream slot create -d ... s1 --two-phase --if-not-exists
  walstream slot create -d 'host=db user=rep' standby1 --physical --reserve-wal
  walstream slot list -d 'host=db user=rep dbname=app'
  walstream slot list -d ... --json | jq '.[] | select(.lag_bytes > 1e9)'
  walstream slot read -d ... s1
  walstream slot alter -d ... s1 --failover true      # PostgreSQL 17+
  walstream slot drop -d ... s1")]
pub(crate) struct SlotArgs {
    /// Connection string (key=value or postgresql:// URI; PG* variables fill the rest).
    #[arg(short = 'd', long = "dbname", value_name = "CONNINFO", global = true)]
    pub(crate) conninfo: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: SlotCommand,
}

/// The slot subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SlotCommand {
    /// Create a slot (logical pgoutput by default).
    #[command(
        after_help = "Example:\n  walstream slot create -d 'host=db user=rep dbname=app' s1 --if-not-exists"
    )]
    Create {
        /// Slot name.
        name: String,
        /// A physical slot instead of a logical one.
        #[arg(long)]
        physical: bool,
        /// Physical: reserve WAL now rather than at first use.
        #[arg(long, requires = "physical")]
        reserve_wal: bool,
        /// Logical: the output plugin.
        #[arg(long, default_value = "pgoutput", conflicts_with = "physical")]
        plugin: String,
        /// Logical: enable decoding of prepared transactions (PostgreSQL 15+).
        #[arg(long, conflicts_with = "physical")]
        two_phase: bool,
        /// Synchronize to standbys (PostgreSQL 17+).
        #[arg(long)]
        failover: bool,
        /// Succeed if the slot exists already.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Drop a slot.
    #[command(
        after_help = "Example:\n  walstream slot drop -d 'host=db user=rep dbname=app' s1 --wait"
    )]
    Drop {
        /// Slot name.
        name: String,
        /// Wait until the slot is no longer active instead of failing.
        #[arg(long)]
        wait: bool,
        /// Succeed if the slot does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// List slots: type, plugin, active, restart and confirmed LSNs, lag in bytes.
    #[command(
        after_help = "Example:\n  walstream slot list -d 'host=db user=rep dbname=app' --json"
    )]
    List,
    /// Show one slot.
    #[command(after_help = "Example:\n  walstream slot read -d 'host=db user=rep dbname=app' s1")]
    Read {
        /// Slot name.
        name: String,
    },
    /// Change a slot's failover (PostgreSQL 17+) or two-phase (18+) setting.
    #[command(
        after_help = "Example:\n  walstream slot alter -d 'host=db user=rep dbname=app' s1 --failover true"
    )]
    Alter {
        /// Slot name.
        name: String,
        /// Synchronize to standbys.
        #[arg(long, value_name = "BOOL")]
        failover: Option<bool>,
        /// Decode prepared transactions.
        #[arg(long, value_name = "BOOL")]
        two_phase: Option<bool>,
    },
}

/// The columns of `slot list`, in order.
const COLUMNS: [&str; 10] = [
    "slot_name",
    "slot_type",
    "plugin",
    "database",
    "active",
    "temporary",
    "restart_lsn",
    "confirmed_flush_lsn",
    "lag_bytes",
    "wal_status",
];

const LIST_SQL: &str = "SELECT slot_name, slot_type, plugin, database, active::text, \
    temporary::text, restart_lsn::text, confirmed_flush_lsn::text, \
    ((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END) \
      - coalesce(confirmed_flush_lsn, restart_lsn))::bigint::text, \
    wal_status FROM pg_replication_slots";

pub(crate) async fn run(args: &SlotArgs) -> Result<(), CliError> {
    let conninfo = args.conninfo.as_deref();
    match &args.command {
        SlotCommand::Create {
            name,
            physical,
            reserve_wal,
            plugin,
            two_phase,
            failover,
            if_not_exists,
        } => {
            let mode = if *physical {
                ReplicationMode::Physical
            } else {
                ReplicationMode::Logical
            };
            let mut client = crate::conn::connect(conninfo, mode).await?;
            let opts = if *physical {
                CreateSlotOptions::physical(*reserve_wal)
            } else {
                CreateSlotOptions::logical(plugin.clone())
                    .snapshot(SnapshotAction::Nothing)
                    .two_phase(*two_phase)
            }
            .failover(*failover);
            match client.create_replication_slot(name, &opts).await {
                Ok(created) => {
                    let obj = json!({
                        "slot_name": created.slot_name,
                        "consistent_point": created.consistent_point.map(|l| l.to_string()),
                        "output_plugin": created.output_plugin,
                        "created": true,
                    });
                    print_object(&obj, args.json);
                }
                Err(e) if *if_not_exists && e.code().is_some_and(|c| c.to_string() == "42710") => {
                    print_object(&json!({"slot_name": name, "created": false}), args.json);
                }
                Err(e) => return Err(e.into()),
            }
            client.close().await;
        }
        SlotCommand::Drop {
            name,
            wait,
            if_exists,
        } => {
            let mut client = crate::conn::connect(conninfo, ReplicationMode::Logical).await?;
            match client.drop_replication_slot(name, *wait).await {
                Ok(()) => print_object(&json!({"slot_name": name, "dropped": true}), args.json),
                Err(e) if *if_exists && e.code().is_some_and(|c| c.to_string() == "42704") => {
                    print_object(&json!({"slot_name": name, "dropped": false}), args.json);
                }
                Err(e) => return Err(e.into()),
            }
            client.close().await;
        }
        SlotCommand::List => {
            let mut client = crate::conn::connect(conninfo, ReplicationMode::Off).await?;
            let rows = list(&mut client, None).await?;
            client.close().await;
            if args.json {
                println!("{}", Json::Array(rows));
            } else {
                print!("{}", table(&rows));
            }
        }
        SlotCommand::Read { name } => {
            let mut client = crate::conn::connect(conninfo, ReplicationMode::Off).await?;
            let rows = list(&mut client, Some(name)).await?;
            client.close().await;
            let Some(row) = rows.into_iter().next() else {
                return Err(CliError::new(
                    Category::Server,
                    format!("replication slot \"{name}\" does not exist"),
                )
                .hint("create it with `walstream slot create`, or see `walstream slot list`"));
            };
            print_object(&row, args.json);
        }
        SlotCommand::Alter {
            name,
            failover,
            two_phase,
        } => {
            if failover.is_none() && two_phase.is_none() {
                return Err(CliError::usage("nothing to change")
                    .hint("give --failover true|false and/or --two-phase true|false"));
            }
            let mut client = crate::conn::connect(conninfo, ReplicationMode::Logical).await?;
            client
                .alter_replication_slot(name, *failover, *two_phase)
                .await?;
            client.close().await;
            print_object(&json!({"slot_name": name, "altered": true}), args.json);
        }
    }
    Ok(())
}

/// Rows of `pg_replication_slots` as JSON objects (all slots, or the one named).
async fn list(client: &mut Client, name: Option<&str>) -> Result<Vec<Json>, CliError> {
    let sql = match name {
        Some(n) => format!(
            "{LIST_SQL} WHERE slot_name = {}",
            walstream_conn::quote_literal(n, client.standard_conforming_strings())?
        ),
        None => format!("{LIST_SQL} ORDER BY slot_name"),
    };
    let rows = client.simple_query(&sql).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let mut obj = serde_json::Map::new();
            for (i, col) in COLUMNS.iter().enumerate() {
                let v = row.get(i);
                let value = match (*col, v) {
                    (_, None) => Json::Null,
                    ("active" | "temporary", Some(t)) => Json::Bool(t == "true"),
                    ("lag_bytes", Some(t)) => t.parse::<i64>().map_or(Json::Null, Json::from),
                    (_, Some(t)) => Json::String(t.to_owned()),
                };
                obj.insert((*col).to_owned(), value);
            }
            Json::Object(obj)
        })
        .collect())
}

fn cell(v: &Json) -> String {
    match v {
        Json::Null => "-".to_owned(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An aligned text table of slot rows.
fn table(rows: &[Json]) -> String {
    let headers = [
        "slot",
        "type",
        "plugin",
        "database",
        "active",
        "temp",
        "restart_lsn",
        "confirmed_lsn",
        "lag_bytes",
        "wal_status",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| COLUMNS.iter().map(|c| cell(&r[*c])).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, items: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = items
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &mut headers.iter().copied());
    for row in &cells {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    if cells.is_empty() {
        out.push_str("(no replication slots)\n");
    }
    out
}

/// Prints one object as `key: value` lines or JSON.
fn print_object(obj: &Json, json: bool) {
    if json {
        println!("{obj}");
        return;
    }
    if let Json::Object(map) = obj {
        for (k, v) in map {
            println!("{k}: {}", cell(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_shows_nulls() {
        let rows = vec![json!({
            "slot_name": "s1", "slot_type": "logical", "plugin": "pgoutput",
            "database": "app", "active": false, "temporary": false,
            "restart_lsn": "0/1A2B3C", "confirmed_flush_lsn": "0/1A2B80",
            "lag_bytes": 1024, "wal_status": "reserved"
        })];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("slot  type     plugin"), "{t}");
        assert!(
            lines[1].contains("0/1A2B80") && lines[1].contains("1024"),
            "{t}"
        );
        assert!(table(&[]).contains("no replication slots"));
        assert_eq!(cell(&Json::Null), "-");
    }
}
