//! The managed initial snapshot: every published table copied in the snapshot a new slot
//! exported, handed out as [`EventKind::Read`] events before the slot's changes.
//!
//! How the hand-off stays exact:
//!
//! 1. `CREATE_REPLICATION_SLOT ... LOGICAL pgoutput (SNAPSHOT 'export')` on the replication
//!    connection returns the slot's *consistent point* and the name of a snapshot that sees
//!    exactly the transactions committed before it. The replication connection then stays
//!    open and idle: the snapshot lives only until it runs another command.
//! 2. A second, ordinary connection runs `BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`
//!    and `SET TRANSACTION SNAPSHOT '<name>'`, lists the publications' tables
//!    (`pg_publication_tables`) and copies each with `COPY (SELECT ...) TO STDOUT` (text
//!    format), row by row into the channel the stream reads from (bounded: the copy waits
//!    for the consumer).
//! 3. Once every table is read, the same replication connection runs `START_REPLICATION`
//!    from the slot, which sends exactly the transactions that commit after the consistent
//!    point. No row is missed or seen twice.
//!
//! What the copy applies of a publication (PostgreSQL 15+): row filters (ORed across the
//! publications that publish a table, none if one publishes it unfiltered — the server's
//! rule) and column lists. Partitioned tables are read as the publication lists them: the
//! root (with `publish_via_partition_root`, reading all partitions through it) or each leaf.
//! Not applied: the publication's `publish` operations (a publication without `insert`
//! still has its tables copied, as PostgreSQL's own table sync does).
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use walstream_conn::{Client, Config, CopyOutItem, ReplicationMode, quote_ident, quote_literal};
use walstream_proto::pgoutput::{Column, ColumnValue, Relation, ReplicaIdentity, TupleData};
use walstream_proto::{Lsn, Oid};

use crate::error::{Error, ErrorKind};
use crate::event::{Event, EventKind, RowChange, SnapshotComplete, SnapshotRead};

/// Rows queued between the copy and the consumer.
pub(crate) const CHANNEL_ROWS: usize = 256;

/// What the snapshot task needs.
#[derive(Debug)]
pub(crate) struct SnapshotJob {
    /// Settings for the ordinary (non-replication) connection.
    pub(crate) config: Config,
    pub(crate) slot: String,
    pub(crate) publications: Vec<String>,
    pub(crate) snapshot_name: String,
    pub(crate) consistent_point: Lsn,
}

/// A published table as the copy reads it.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotTable {
    pub(crate) relation: Arc<Relation>,
    /// `p` for a partitioned table (read with its partitions), else a plain table.
    pub(crate) partitioned: bool,
    /// The row filter (15+), already combined across publications.
    pub(crate) filter: Option<String>,
}

impl SnapshotTable {
    /// `COPY (SELECT cols FROM [ONLY] t [WHERE filter]) TO STDOUT`.
    pub(crate) fn copy_sql(&self) -> Result<String, Error> {
        let rel = &self.relation;
        let cols = rel
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Result<Vec<_>, _>>()?
            .join(", ");
        let only = if self.partitioned { "" } else { "ONLY " };
        let mut sql = format!(
            "COPY (SELECT {cols} FROM {only}{}.{}",
            quote_ident(&rel.namespace)?,
            quote_ident(&rel.name)?
        );
        if let Some(f) = &self.filter {
            sql.push_str(" WHERE ");
            sql.push_str(f);
        }
        sql.push_str(") TO STDOUT");
        Ok(sql)
    }
}

/// Runs the snapshot: rows go to `tx` (then a [`SnapshotComplete`] event); returns when
/// everything was sent, or fails. Dropping the receiver stops it.
pub(crate) async fn run(job: SnapshotJob, tx: mpsc::Sender<Event>) -> Result<(), Error> {
    let mut config = job.config.clone();
    config.set_replication(ReplicationMode::Off);
    let mut db = Client::connect(&config).await?;
    let scs = db.standard_conforming_strings();
    db.simple_query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    db.simple_query(&format!(
        "SET TRANSACTION SNAPSHOT {}",
        quote_literal(&job.snapshot_name, scs)?
    ))
    .await?;
    // A slow consumer keeps a COPY running for long: no server-side statement timeout.
    db.simple_query("SET LOCAL statement_timeout = 0").await?;
    let major = db.server_major_version().unwrap_or(0);
    let tables = published_tables(&mut db, &job.publications, major, scs).await?;
    let closed = || Error::new(ErrorKind::Usage, "the snapshot's consumer went away");
    let mut pending: Option<Event> = None;
    let mut rows = 0u64;
    for table in &tables {
        let sql = table.copy_sql()?;
        let ncols = table.relation.columns.len();
        let mut lines = CopyTextLines::default();
        let mut copy = db.copy_out(&sql).await?;
        // A filtered scan may find nothing for a long time; TCP keepalives still notice a
        // dead server.
        copy.set_idle_timeout(None);
        while let Some(item) = copy.next().await? {
            let CopyOutItem::CopyData(data) = item else {
                continue;
            };
            lines.push(&data);
            while let Some(line) = lines.next_line() {
                let tuple = decode_copy_row(&line, ncols)?;
                rows += 1;
                let ev = read_event(job.consistent_point, &table.relation, tuple);
                if let Some(prev) = pending.replace(ev) {
                    tx.send(prev).await.map_err(|_| closed())?;
                }
            }
        }
        lines.finish()?;
    }
    if let Some(mut last) = pending {
        if let EventKind::Read(r) = &mut last.kind {
            r.last = true;
        }
        tx.send(last).await.map_err(|_| closed())?;
    }
    db.simple_query("COMMIT").await?;
    db.close().await;
    let done = Event {
        lsn: job.consistent_point,
        xid: None,
        commit_lsn: None,
        commit_time: None,
        kind: EventKind::SnapshotComplete(SnapshotComplete {
            consistent_point: job.consistent_point,
            slot: job.slot,
            tables: tables.len(),
            rows,
        }),
        ack: None,
    };
    tx.send(done).await.map_err(|_| closed())?;
    Ok(())
}

fn read_event(at: Lsn, relation: &Arc<Relation>, tuple: TupleData) -> Event {
    Event {
        lsn: at,
        xid: None,
        commit_lsn: None,
        commit_time: None,
        kind: EventKind::Read(SnapshotRead {
            change: RowChange::new(Arc::clone(relation), None, Some(tuple), None),
            last: false,
        }),
        ack: None,
    }
}

/// `'a', 'b'` for an `IN (...)` list.
fn literal_list(names: &[String], scs: bool) -> Result<String, Error> {
    Ok(names
        .iter()
        .map(|n| quote_literal(n, scs))
        .collect::<Result<Vec<_>, _>>()?
        .join(", "))
}

fn bad(what: &str) -> Error {
    Error::protocol(format!("snapshot catalog query: {what}"))
}

/// The tables of `publications` with their columns, as `pgoutput` would describe them.
pub(crate) async fn published_tables(
    db: &mut Client,
    publications: &[String],
    major: u32,
    scs: bool,
) -> Result<Vec<SnapshotTable>, Error> {
    let pubs = literal_list(publications, scs)?;
    let found = db
        .simple_query(&format!(
            "SELECT pubname FROM pg_publication WHERE pubname IN ({pubs})"
        ))
        .await?;
    if found.len() != publications.len() {
        let missing: Vec<&str> = publications
            .iter()
            .map(String::as_str)
            .filter(|p| !found.iter().any(|r| r.get(0) == Some(*p)))
            .collect();
        return Err(Error::new(
            ErrorKind::Usage,
            format!("publication(s) not found: {}", missing.join(", ")),
        ));
    }
    let with_filters = major >= 15;
    let filter_cols = if with_filters {
        "bool_or(pt.rowfilter IS NULL)::text, \
         string_agg('(' || pt.rowfilter || ')', ' OR ' ORDER BY pt.pubname)"
    } else {
        "'true', NULL"
    };
    let tables = db
        .simple_query(&format!(
            "SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident, {filter_cols} \
             FROM pg_publication_tables pt \
             JOIN pg_namespace n ON n.nspname = pt.schemaname \
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename \
             WHERE pt.pubname IN ({pubs}) \
             GROUP BY c.oid, n.nspname, c.relname, c.relkind, c.relreplident \
             ORDER BY n.nspname, c.relname"
        ))
        .await?;
    let mut out = Vec::with_capacity(tables.len());
    for t in &tables {
        let oid: u32 = t
            .get(0)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("relation oid"))?;
        let namespace = t.get(1).ok_or_else(|| bad("schema"))?.to_owned();
        let name = t.get(2).ok_or_else(|| bad("table"))?.to_owned();
        let partitioned = t.get(3) == Some("p");
        let ident = t
            .get(4)
            .and_then(|s| s.bytes().next())
            .ok_or_else(|| bad("replica identity"))?;
        let unfiltered = t.get(5) != Some("false");
        let filter = if unfiltered {
            None
        } else {
            t.get(6).map(str::to_owned)
        };
        let published = if with_filters {
            format!(
                "AND ((a.attgenerated = '' AND EXISTS (SELECT 1 FROM pg_publication_tables pt \
                 WHERE pt.pubname IN ({pubs}) AND pt.schemaname = n.nspname \
                 AND pt.tablename = c.relname AND pt.attnames IS NULL)) \
                 OR EXISTS (SELECT 1 FROM pg_publication_tables pt \
                 WHERE pt.pubname IN ({pubs}) AND pt.schemaname = n.nspname \
                 AND pt.tablename = c.relname AND a.attname = ANY(pt.attnames)))"
            )
        } else {
            "AND a.attgenerated = ''".to_owned()
        };
        let cols = db
            .simple_query(&format!(
                "SELECT a.attname, a.atttypid, a.atttypmod, \
                 (c.relreplident = 'f' OR EXISTS (SELECT 1 FROM pg_index i \
                 WHERE i.indrelid = a.attrelid AND a.attnum = ANY(i.indkey) \
                 AND ((c.relreplident = 'd' AND i.indisprimary) \
                 OR (c.relreplident = 'i' AND i.indisreplident))))::text \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped {published} \
                 ORDER BY a.attnum"
            ))
            .await?;
        let columns = cols
            .iter()
            .map(|r| {
                Ok(Column {
                    flags: if r.get(3) == Some("true") {
                        Column::FLAG_KEY
                    } else {
                        0
                    },
                    name: r.get(0).ok_or_else(|| bad("column name"))?.to_owned(),
                    type_oid: Oid(r
                        .get(1)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad("column type"))?),
                    type_modifier: r
                        .get(2)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad("column type modifier"))?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        out.push(SnapshotTable {
            relation: Arc::new(Relation {
                oid: Oid(oid),
                namespace,
                name,
                replica_identity: ReplicaIdentity(ident),
                columns,
            }),
            partitioned,
            filter,
        });
    }
    Ok(out)
}

/// Splits COPY text data into lines (rows), across `CopyData` boundaries.
///
/// PostgreSQL sends one row per `CopyData`, but the format does not depend on it: a row ends
/// at a newline byte (newlines inside values are escaped as `\n`).
#[derive(Debug, Default)]
pub(crate) struct CopyTextLines {
    buf: BytesMut,
}

impl CopyTextLines {
    /// Adds received data.
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete line, without its newline.
    pub(crate) fn next_line(&mut self) -> Option<Bytes> {
        let end = memchr_newline(&self.buf)?;
        let mut line = self.buf.split_to(end + 1);
        line.truncate(end);
        Some(line.freeze())
    }

    /// Checks that no partial line is left at the end of the COPY.
    pub(crate) fn finish(&self) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::protocol("COPY data ended inside a row"))
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Decodes one COPY text row (tab-separated, `\N` for NULL, backslash escapes) into tuple
/// data of `ncols` text values.
pub(crate) fn decode_copy_row(line: &[u8], ncols: usize) -> Result<TupleData, Error> {
    let mut values = Vec::with_capacity(ncols);
    if ncols > 0 {
        for field in line.split(|&c| c == b'\t') {
            values.push(if field == b"\\N" {
                ColumnValue::Null
            } else {
                ColumnValue::Text(unescape(field)?)
            });
        }
    } else if !line.is_empty() {
        return Err(Error::protocol(
            "COPY row has values for a table without columns",
        ));
    }
    if values.len() != ncols {
        return Err(Error::protocol(format!(
            "COPY row has {} columns, the table {}",
            values.len(),
            ncols
        )));
    }
    TupleData::from_values(&values)
        .map_err(|e| Error::with_source(ErrorKind::Protocol, "COPY row too large", e))
}

/// Undoes COPY text escaping: `\b \f \n \r \t \v \\`, octal `\ooo`, hex `\xhh`, and `\c` for
/// any other `c`.
fn unescape(field: &[u8]) -> Result<Bytes, Error> {
    if !field.contains(&b'\\') {
        return Ok(Bytes::copy_from_slice(field));
    }
    let mut out = Vec::with_capacity(field.len());
    let mut it = field.iter().copied().peekable();
    while let Some(c) = it.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(e) = it.next() else {
            return Err(Error::protocol("COPY value ends with a lone backslash"));
        };
        match e {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match it.peek() {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            it.next();
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v & 0xff).unwrap_or(0));
            }
            b'x' if it.peek().is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u8;
                for _ in 0..2 {
                    match it.peek().and_then(|d| char::from(*d).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + u8::try_from(d).unwrap_or(0);
                            it.next();
                        }
                        None => break,
                    }
                }
                out.push(v);
            }
            other => out.push(other),
        }
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(t: &TupleData) -> Vec<Option<Vec<u8>>> {
        t.iter()
            .map(|v| match v {
                ColumnValue::Text(b) => Some(b.to_vec()),
                ColumnValue::Null => None,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn rows_split_across_and_within_copy_data() {
        let mut l = CopyTextLines::default();
        l.push(b"1\ta\n2\t");
        assert_eq!(l.next_line().as_deref(), Some(&b"1\ta"[..]));
        assert_eq!(l.next_line(), None);
        assert!(l.finish().is_err());
        l.push(b"b\n");
        assert_eq!(l.next_line().as_deref(), Some(&b"2\tb"[..]));
        assert!(l.finish().is_ok());
    }

    #[test]
    fn decodes_nulls_and_escapes() {
        let t = decode_copy_row(b"1\t\\N\ta\\tb\\nc\\\\d\\101\\x41\\q\t", 4).unwrap();
        assert_eq!(
            texts(&t),
            [
                Some(b"1".to_vec()),
                None,
                Some(b"a\tb\nc\\dAAq".to_vec()),
                Some(Vec::new())
            ]
        );
        // A literal "\N" value is escaped as "\\N".
        let t = decode_copy_row(b"\\\\N", 1).unwrap();
        assert_eq!(texts(&t), [Some(b"\\N".to_vec())]);
    }

    #[test]
    fn rejects_wrong_shapes() {
        assert!(decode_copy_row(b"1\t2", 1).is_err());
        assert!(decode_copy_row(b"1", 2).is_err());
        assert!(decode_copy_row(b"a\\", 1).is_err());
        assert!(decode_copy_row(b"", 0).unwrap().is_empty());
        assert!(decode_copy_row(b"x", 0).is_err());
        // An empty line is one empty string for a one-column table.
        assert_eq!(texts(&decode_copy_row(b"", 1).unwrap()), [Some(Vec::new())]);
    }

    fn simple_relation() -> Arc<Relation> {
        let col = |name: &str, oid, flags| Column {
            flags,
            name: name.into(),
            type_oid: Oid(oid),
            type_modifier: -1,
        };
        Arc::new(Relation {
            oid: Oid(16384),
            namespace: "public".into(),
            name: "t".into(),
            replica_identity: ReplicaIdentity(b'd'),
            columns: vec![col("id", 23, 1), col("v", 25, 0)],
        })
    }

    #[test]
    fn read_and_resumed_events_render_as_json_and_debezium() {
        let rel = simple_relation();
        let tuple = decode_copy_row(b"7\tx\\ty", 2).unwrap();
        let ev = read_event(Lsn(0x500), &rel, tuple);
        assert_eq!(ev.kind_name(), "read");
        assert_eq!(ev.relation().map(|r| r.name.as_str()), Some("t"));
        assert!(ev.ack_handle().is_none());
        assert_eq!(
            ev.to_json_line().unwrap(),
            r#"{"kind":"read","lsn":"0/500","xid":null,"commit_lsn":null,"schema":"public","table":"t","new":{"id":7,"v":"x\ty"},"old":null,"unchanged":[]}"#
        );
        let mut enc = crate::DebeziumEncoder::new(crate::DebeziumOptions::new("srv", "app"));
        let recs = enc.encode_at(&ev, 1).unwrap();
        assert_eq!(recs.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&recs[0].value).unwrap();
        assert_eq!(v["op"], "r");
        assert_eq!(v["source"]["snapshot"], "true");
        assert_eq!(v["after"]["id"], 7);

        let fb = crate::LsnFeedback::new(Lsn(0x40));
        let mut d = crate::LogicalDecoder::new(crate::DecodeOptions::new(2), fb);
        d.reset_for_resume();
        d.reset_for_resume();
        let ev = d.poll_event().expect("a Resumed event");
        assert!(d.poll_event().is_none(), "repeated resets give one event");
        assert_eq!(
            ev.to_json_line().unwrap(),
            r#"{"kind":"resumed","lsn":"0/40","xid":null,"commit_lsn":null,"at":"0/40","discarded":[]}"#
        );
    }

    #[test]
    fn copy_sql_quotes_and_filters() {
        let rel = Relation {
            oid: Oid(1),
            namespace: "my schema".into(),
            name: "T\"x".into(),
            replica_identity: ReplicaIdentity(b'd'),
            columns: vec![Column {
                flags: 1,
                name: "id".into(),
                type_oid: Oid(23),
                type_modifier: -1,
            }],
        };
        let t = SnapshotTable {
            relation: Arc::new(rel),
            partitioned: false,
            filter: Some("(id > 5)".into()),
        };
        assert_eq!(
            t.copy_sql().unwrap(),
            "COPY (SELECT \"id\" FROM ONLY \"my schema\".\"T\"\"x\" WHERE (id > 5)) TO STDOUT"
        );
        let p = SnapshotTable {
            partitioned: true,
            filter: None,
            ..t
        };
        assert!(p.copy_sql().unwrap().contains("FROM \"my schema\""));
    }
}
