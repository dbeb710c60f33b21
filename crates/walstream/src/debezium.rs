//! Debezium-compatible JSON change events (see `docs/debezium.md` in the repository).
//!
//! [`DebeziumEncoder`] turns [`Event`]s into the records Debezium's PostgreSQL connector would
//! write with Kafka Connect's `JsonConverter`: the envelope (`before`, `after`, `source`, `op`,
//! `ts_ms`, `transaction`), Debezium's default type mapping, its placeholder for unavailable
//! TOAST values, optional transaction metadata records, and optionally the Connect schema
//! (`{"schema": …, "payload": …}`).
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use walstream_proto::pgoutput::{Column, Relation};
use walstream_proto::{Lsn, Oid, PgTimestamp, TypeKind, TypeRegistry, Value, Xid};

use crate::event::{Event, EventKind, OldRow};
use crate::jsonl::json_str;
use crate::row::{Field, Row, RowError};

/// Debezium's placeholder for values the server did not send (unchanged TOAST).
pub const UNAVAILABLE_VALUE_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// Days between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_DAYS: i64 = 10_957;
/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;
/// Debezium's average month: 365.25 / 12 = 30.4375 days, in microseconds.
const MONTH_US: i64 = 2_629_800_000_000;

/// How `numeric` (and `money`) values are written (`decimal.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DecimalMode {
    /// Debezium's default: Kafka Connect `Decimal` — the unscaled value as big-endian two's
    /// complement bytes, base64 in JSON, the scale in the schema; `numeric` without a declared
    /// scale becomes `io.debezium.data.VariableScaleDecimal` `{"scale": n, "value": base64}`.
    /// NaN and infinities (not representable) are `null`.
    #[default]
    Precise,
    /// The exact decimal text, e.g. `"12.340"` (`"NaN"` and `"Infinity"` as text).
    String,
    /// A JSON number (nearest double); NaN and infinities as the strings `"NaN"`,
    /// `"Infinity"`, `"-Infinity"`.
    Double,
}

/// How `bytea` values are written (`binary.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BinaryMode {
    /// Debezium's default `bytes`: Connect bytes, which `JsonConverter` writes as base64.
    #[default]
    Bytes,
    /// Lowercase hex text (`hex`).
    Hex,
}

/// How `interval` values are written (`interval.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IntervalMode {
    /// Debezium's default `numeric`: `io.debezium.time.MicroDuration`, microseconds, with a
    /// month counted as 30.4375 days.
    #[default]
    Numeric,
    /// `io.debezium.time.Interval`: ISO 8601 duration text, e.g. `"P1Y2M3DT4H5M6.78S"`.
    String,
}

/// Options of a [`DebeziumEncoder`]. Start from [`DebeziumOptions::new`] and set fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DebeziumOptions {
    /// The logical server name (`topic.prefix`): `source.name` and the topic prefix.
    pub server_name: String,
    /// The database name (`source.db`).
    pub database: String,
    /// `source.version`; defaults to walstream's version.
    pub version: String,
    /// `decimal.handling.mode`.
    pub decimal_mode: DecimalMode,
    /// `binary.handling.mode`.
    pub binary_mode: BinaryMode,
    /// `interval.handling.mode`.
    pub interval_mode: IntervalMode,
    /// `unavailable.value.placeholder`: written for unchanged TOAST columns (as base64 of its
    /// bytes in `bytea` columns).
    pub unavailable_value_placeholder: String,
    /// Write `{"schema": …, "payload": …}` (Connect `schemas.enable=true`) instead of the
    /// payload alone.
    pub include_schema: bool,
    /// `provide.transaction.metadata`: add the `transaction` block to change events and emit
    /// BEGIN/END records to the `<server>.transaction` topic.
    pub transaction_metadata: bool,
}

impl DebeziumOptions {
    /// Options with Debezium's defaults for server `server_name` and database `database`.
    pub fn new(server_name: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            server_name: server_name.into(),
            database: database.into(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            decimal_mode: DecimalMode::default(),
            binary_mode: BinaryMode::default(),
            interval_mode: IntervalMode::default(),
            unavailable_value_placeholder: UNAVAILABLE_VALUE_PLACEHOLDER.to_owned(),
            include_schema: false,
            transaction_metadata: false,
        }
    }
}

/// One output record: the Kafka topic it belongs to, its key and its value (JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebeziumRecord {
    /// `<server>.<schema>.<table>` for changes, `<server>.transaction` for transaction
    /// metadata, `<server>.message` for logical decoding messages.
    pub topic: String,
    /// The key: the replica identity columns of the row (`null` when the table has none).
    pub key: Option<String>,
    /// The value: the change event envelope.
    pub value: String,
}

#[derive(Debug, Clone)]
struct TxnState {
    xid: Xid,
    id: String,
    commit_time: PgTimestamp,
    total: u64,
    per_table: Vec<(String, u64)>,
}

/// Renders events as Debezium change events. Feed it every event of the stream in order (it
/// tracks transactions for `source.sequence` and the transaction metadata).
#[derive(Debug)]
pub struct DebeziumEncoder {
    opts: DebeziumOptions,
    txn: Option<TxnState>,
    last_commit: Option<Lsn>,
    /// The type registry of the rows being encoded (user-defined types in the schema).
    types: Option<Arc<TypeRegistry>>,
}

/// What a change record describes.
struct Change<'a> {
    op: &'static str,
    relation: &'a Relation,
    before: Option<RowImage<'a>>,
    after: Option<&'a Row>,
    lsn: Lsn,
    xid: Option<Xid>,
    commit_time: Option<PgTimestamp>,
    snapshot: &'static str,
}

#[derive(Clone, Copy)]
enum RowImage<'a> {
    Full(&'a Row),
    Key(&'a Row),
}

impl DebeziumEncoder {
    /// An encoder with `options`.
    pub fn new(options: DebeziumOptions) -> Self {
        Self {
            opts: options,
            txn: None,
            last_commit: None,
            types: None,
        }
    }

    /// The options.
    pub fn options(&self) -> &DebeziumOptions {
        &self.opts
    }

    /// The records for `event`, stamped with the current time as `ts_ms`.
    pub fn encode(&mut self, event: &Event) -> Result<Vec<DebeziumRecord>, RowError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.encode_at(event, now)
    }

    /// The records for `event` with `now_ms` (milliseconds since the Unix epoch) as `ts_ms`.
    ///
    /// Insert → `c`; Update → `u` (an update that changed the replica identity key under
    /// `REPLICA IDENTITY DEFAULT` becomes `d` for the old key then `c`, as Debezium does);
    /// Delete → `d`; Truncate → one `t` per table; Message → `m`; snapshot Read → `r` (as
    /// [`encode_read`](Self::encode_read)); Begin/Commit → BEGIN/END transaction records when
    /// transaction metadata is on; other events → nothing.
    pub fn encode_at(
        &mut self,
        event: &Event,
        now_ms: i64,
    ) -> Result<Vec<DebeziumRecord>, RowError> {
        let mut out = Vec::new();
        let base = |op, relation, before, after| Change {
            op,
            relation,
            before,
            after,
            lsn: event.lsn(),
            xid: event.xid(),
            commit_time: event.commit_time(),
            snapshot: "false",
        };
        match event.kind() {
            EventKind::Begin(b) => {
                let st = TxnState {
                    xid: b.xid,
                    id: format!("{}:{}", b.xid.0, b.final_lsn.0),
                    commit_time: b.commit_time,
                    total: 0,
                    per_table: Vec::new(),
                };
                if self.opts.transaction_metadata {
                    out.push(self.txn_record(&st, false));
                }
                self.txn = Some(st);
            }
            EventKind::Commit(c) => {
                if let Some(st) = self.txn.take() {
                    if self.opts.transaction_metadata {
                        out.push(self.txn_record(&st, true));
                    }
                }
                self.last_commit = Some(c.end_lsn);
            }
            EventKind::StreamCommit(c) => self.last_commit = Some(c.end_lsn),
            EventKind::CommitPrepared(c) => self.last_commit = Some(c.end_lsn),
            EventKind::Insert(c) => {
                if let Some(new) = &c.new {
                    out.push(self.change(base("c", &c.relation, None, Some(new)), now_ms)?);
                }
            }
            EventKind::Read(r) => {
                if let Some(row) = r.row() {
                    out.push(self.encode_read(row, event.lsn(), r.last, now_ms)?);
                }
            }
            EventKind::Update(c) => {
                let Some(new) = &c.new else {
                    return Ok(out);
                };
                match &c.old {
                    Some(OldRow::Key(k)) => {
                        let before = Some(RowImage::Key(k));
                        out.push(self.change(base("d", &c.relation, before, None), now_ms)?);
                        out.push(self.change(base("c", &c.relation, None, Some(new)), now_ms)?);
                    }
                    Some(OldRow::Full(o)) => {
                        let before = Some(RowImage::Full(o));
                        out.push(self.change(base("u", &c.relation, before, Some(new)), now_ms)?);
                    }
                    None => {
                        out.push(self.change(base("u", &c.relation, None, Some(new)), now_ms)?);
                    }
                }
            }
            EventKind::Delete(c) => {
                let before = c.old.as_ref().map(|o| match o {
                    OldRow::Key(r) => RowImage::Key(r),
                    OldRow::Full(r) => RowImage::Full(r),
                });
                out.push(self.change(base("d", &c.relation, before, None), now_ms)?);
            }
            EventKind::Truncate(t) => {
                for rel in &t.relations {
                    out.push(self.change(base("t", rel, None, None), now_ms)?);
                }
            }
            EventKind::Message(m) => {
                let mut v = String::with_capacity(256);
                v.push('{');
                v.push_str("\"op\":\"m\",\"ts_ms\":");
                let _ = write!(v, "{now_ms}");
                v.push_str(",\"source\":");
                let xid = if m.is_transactional() {
                    event.xid()
                } else {
                    None
                };
                self.write_source(&mut v, "", "", m.lsn, xid, event.commit_time(), "false");
                v.push_str(",\"message\":{\"prefix\":");
                json_str(&mut v, &m.prefix);
                v.push_str(",\"content\":");
                json_str(&mut v, &BASE64.encode(&m.content));
                v.push_str("}}");
                out.push(DebeziumRecord {
                    topic: format!("{}.message", self.opts.server_name),
                    key: None,
                    value: v,
                });
            }
            _ => {}
        }
        Ok(out)
    }

    /// A snapshot read (`op = "r"`) record for `row`, read in a snapshot consistent with
    /// `lsn`; `last` marks the last row of the snapshot (`source.snapshot = "last"`).
    pub fn encode_read(
        &mut self,
        row: &Row,
        lsn: Lsn,
        last: bool,
        now_ms: i64,
    ) -> Result<DebeziumRecord, RowError> {
        let change = Change {
            op: "r",
            relation: row.relation(),
            before: None,
            after: Some(row),
            lsn,
            xid: None,
            commit_time: None,
            snapshot: if last { "last" } else { "true" },
        };
        let saved = self.txn.take();
        let rec = self.change(change, now_ms);
        self.txn = saved;
        rec
    }

    fn txn_record(&self, st: &TxnState, end: bool) -> DebeziumRecord {
        let mut v = String::with_capacity(128);
        v.push_str("{\"status\":");
        v.push_str(if end { "\"END\"" } else { "\"BEGIN\"" });
        v.push_str(",\"id\":");
        json_str(&mut v, &st.id);
        v.push_str(",\"ts_ms\":");
        write_ms(&mut v, Some(st.commit_time));
        if end {
            let _ = write!(v, ",\"event_count\":{},\"data_collections\":[", st.total);
            for (i, (name, n)) in st.per_table.iter().enumerate() {
                if i > 0 {
                    v.push(',');
                }
                v.push_str("{\"data_collection\":");
                json_str(&mut v, name);
                let _ = write!(v, ",\"event_count\":{n}}}");
            }
            v.push_str("]}");
        } else {
            v.push_str(",\"event_count\":null,\"data_collections\":null}");
        }
        let key = format!("{{\"id\":{}}}", quoted(&st.id));
        let topic = format!("{}.transaction", self.opts.server_name);
        if self.opts.include_schema {
            DebeziumRecord {
                topic,
                key: Some(format!(
                    "{{\"schema\":{{\"type\":\"struct\",\"fields\":[{{\"type\":\"string\",\"optional\":false,\"field\":\"id\"}}],\"optional\":false,\"name\":\"io.debezium.connector.common.TransactionMetadataKey\",\"version\":1}},\"payload\":{key}}}"
                )),
                value: format!("{{\"schema\":{TXN_VALUE_SCHEMA},\"payload\":{v}}}"),
            }
        } else {
            DebeziumRecord {
                topic,
                key: Some(key),
                value: v,
            }
        }
    }

    fn change(&mut self, c: Change<'_>, now_ms: i64) -> Result<DebeziumRecord, RowError> {
        let rel = c.relation;
        let table = format!("{}.{}", rel.namespace, rel.name);
        self.types = c
            .after
            .or(match c.before {
                Some(RowImage::Full(r) | RowImage::Key(r)) => Some(r),
                None => None,
            })
            .and_then(Row::types)
            .cloned();
        // Transaction ordering (only for events inside the open transaction).
        let txn_block = match &mut self.txn {
            Some(st) if self.opts.transaction_metadata && Some(st.xid) == c.xid => {
                st.total += 1;
                let n = match st.per_table.iter_mut().find(|(t, _)| *t == table) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        st.per_table.push((table.clone(), 1));
                        1
                    }
                };
                Some(format!(
                    "{{\"id\":{},\"total_order\":{},\"data_collection_order\":{n}}}",
                    quoted(&st.id),
                    st.total
                ))
            }
            _ => None,
        };
        let commit_time = c
            .commit_time
            .or_else(|| self.txn.as_ref().map(|t| t.commit_time));

        let mut p = String::with_capacity(512);
        p.push_str("{\"before\":");
        match c.before {
            Some(RowImage::Full(r)) => self.write_row(&mut p, r, false)?,
            Some(RowImage::Key(r)) => self.write_row(&mut p, r, true)?,
            None => p.push_str("null"),
        }
        p.push_str(",\"after\":");
        match c.after {
            Some(r) => self.write_row(&mut p, r, false)?,
            None => p.push_str("null"),
        }
        p.push_str(",\"source\":");
        self.write_source(
            &mut p,
            &rel.namespace,
            &rel.name,
            c.lsn,
            c.xid,
            commit_time,
            c.snapshot,
        );
        p.push_str(",\"op\":");
        json_str(&mut p, c.op);
        let _ = write!(p, ",\"ts_ms\":{now_ms},\"transaction\":");
        p.push_str(txn_block.as_deref().unwrap_or("null"));
        p.push('}');

        let key_row = c.after.or(match c.before {
            Some(RowImage::Full(r) | RowImage::Key(r)) => Some(r),
            None => None,
        });
        let key = match key_row {
            Some(r) if rel.columns.iter().any(Column::is_key) => {
                let mut k = String::with_capacity(64);
                k.push('{');
                let mut first = true;
                for (col, field) in r.iter() {
                    if !col.is_key() {
                        continue;
                    }
                    if !first {
                        k.push(',');
                    }
                    first = false;
                    json_str(&mut k, &col.name);
                    k.push(':');
                    self.write_field(&mut k, col, &field?);
                }
                k.push('}');
                Some(k)
            }
            _ => None,
        };

        let topic = format!("{}.{}.{}", self.opts.server_name, rel.namespace, rel.name);
        if !self.opts.include_schema {
            return Ok(DebeziumRecord {
                topic,
                key,
                value: p,
            });
        }
        let prefix = format!("{}.{}.{}", self.opts.server_name, rel.namespace, rel.name);
        let key = key.map(|k| {
            let mut s = String::with_capacity(256);
            s.push_str("{\"schema\":");
            self.write_struct_schema(&mut s, rel, true, &format!("{prefix}.Key"), None, false);
            s.push_str(",\"payload\":");
            s.push_str(&k);
            s.push('}');
            s
        });
        let mut v = String::with_capacity(2048 + p.len());
        v.push_str("{\"schema\":{\"type\":\"struct\",\"fields\":[");
        let row_name = format!("{prefix}.Value");
        self.write_struct_schema(&mut v, rel, false, &row_name, Some("before"), true);
        v.push(',');
        self.write_struct_schema(&mut v, rel, false, &row_name, Some("after"), true);
        v.push(',');
        v.push_str(SOURCE_SCHEMA);
        v.push_str(",{\"type\":\"string\",\"optional\":false,\"field\":\"op\"},{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ms\"},");
        v.push_str(TXN_BLOCK_SCHEMA);
        v.push_str("],\"optional\":false,\"name\":");
        json_str(&mut v, &format!("{prefix}.Envelope"));
        v.push_str(",\"version\":1},\"payload\":");
        v.push_str(&p);
        v.push('}');
        Ok(DebeziumRecord {
            topic,
            key,
            value: v,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn write_source(
        &self,
        out: &mut String,
        schema: &str,
        table: &str,
        lsn: Lsn,
        xid: Option<Xid>,
        commit_time: Option<PgTimestamp>,
        snapshot: &str,
    ) {
        out.push_str("{\"version\":");
        json_str(out, &self.opts.version);
        out.push_str(",\"connector\":\"postgresql\",\"name\":");
        json_str(out, &self.opts.server_name);
        out.push_str(",\"ts_ms\":");
        write_ms(out, commit_time);
        out.push_str(",\"snapshot\":");
        json_str(out, snapshot);
        out.push_str(",\"db\":");
        json_str(out, &self.opts.database);
        out.push_str(",\"sequence\":");
        let prev = match self.last_commit {
            Some(l) => format!("\"{}\"", l.0),
            None => "null".to_owned(),
        };
        json_str(out, &format!("[{prev},\"{}\"]", lsn.0));
        out.push_str(",\"schema\":");
        json_str(out, schema);
        out.push_str(",\"table\":");
        json_str(out, table);
        out.push_str(",\"txId\":");
        match xid {
            Some(x) => {
                let _ = write!(out, "{}", x.0);
            }
            None => out.push_str("null"),
        }
        let _ = write!(out, ",\"lsn\":{},\"xmin\":null}}", lsn.0);
    }

    /// A row object; for a key-only image, non-key columns are `null`.
    fn write_row(&self, out: &mut String, row: &Row, key_only: bool) -> Result<(), RowError> {
        out.push('{');
        for (i, (col, field)) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(out, &col.name);
            out.push(':');
            if key_only && !col.is_key() {
                out.push_str("null");
                continue;
            }
            self.write_field(out, col, &field?);
        }
        out.push('}');
        Ok(())
    }

    fn write_field(&self, out: &mut String, col: &Column, field: &Field) {
        match field {
            Field::Null => out.push_str("null"),
            Field::UnchangedToast => {
                let ph = &self.opts.unavailable_value_placeholder;
                let bytes_typed = col.type_oid == Oid::BYTEA
                    && self.opts.binary_mode == BinaryMode::Bytes
                    || col.type_oid == Oid::NUMERIC
                        && self.opts.decimal_mode == DecimalMode::Precise
                        && numeric_scale(col.type_modifier).is_some();
                if bytes_typed {
                    json_str(out, &BASE64.encode(ph.as_bytes()));
                } else {
                    json_str(out, ph);
                }
            }
            Field::Value(v) => self.write_value(out, col.type_modifier, v),
        }
    }

    fn write_value(&self, out: &mut String, typmod: i32, v: &Value) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int2(_)
            | Value::Int4(_)
            | Value::Int8(_)
            | Value::Oid(_)
            | Value::Xid(_)
            | Value::Xid8(_)
            | Value::Float4(_)
            | Value::Float8(_) => v.write_json(out),
            Value::Numeric(n) => match self.opts.decimal_mode {
                DecimalMode::String => json_str(out, &n.to_string()),
                DecimalMode::Double => write_double(out, n.to_f64()),
                DecimalMode::Precise => {
                    if n.is_nan() || n.is_infinite() {
                        out.push_str("null");
                        return;
                    }
                    let text = n.to_string();
                    match numeric_scale(typmod) {
                        Some(scale) => {
                            json_str(out, &BASE64.encode(unscaled_bytes(&text, Some(scale))))
                        }
                        None => {
                            let scale = text.split_once('.').map_or(0, |(_, f)| f.len());
                            let _ = write!(out, "{{\"scale\":{scale},\"value\":");
                            json_str(out, &BASE64.encode(unscaled_bytes(&text, None)));
                            out.push('}');
                        }
                    }
                }
            },
            Value::Money(m) => {
                let Some(cents) = m.cents() else {
                    json_str(out, &m.to_string());
                    return;
                };
                let text = format!(
                    "{}{}.{:02}",
                    if cents < 0 { "-" } else { "" },
                    cents.unsigned_abs() / 100,
                    cents.unsigned_abs() % 100
                );
                match self.opts.decimal_mode {
                    DecimalMode::String => json_str(out, &text),
                    DecimalMode::Double => {
                        let _ = write!(out, "{}", text.parse::<f64>().unwrap_or(0.0));
                    }
                    DecimalMode::Precise => {
                        json_str(out, &BASE64.encode(unscaled_bytes(&text, Some(2))));
                    }
                }
            }
            Value::Bytea(b) => match self.opts.binary_mode {
                BinaryMode::Bytes => json_str(out, &BASE64.encode(b)),
                BinaryMode::Hex => {
                    let mut s = String::with_capacity(b.len() * 2);
                    for byte in b.iter() {
                        let _ = write!(s, "{byte:02x}");
                    }
                    json_str(out, &s);
                }
            },
            Value::Date(d) => {
                if d.is_infinite() {
                    out.push_str("null");
                } else {
                    let _ = write!(out, "{}", i64::from(d.0) + PG_EPOCH_DAYS);
                }
            }
            Value::Time(t) => {
                if time_precision(typmod) <= 3 {
                    let _ = write!(out, "{}", t.0 / 1000);
                } else {
                    let _ = write!(out, "{}", t.0);
                }
            }
            Value::Timestamp(ts) => match ts.to_unix_micros() {
                Some(us) if !ts.is_infinite() => {
                    if time_precision(typmod) <= 3 {
                        let _ = write!(out, "{}", us.div_euclid(1000));
                    } else {
                        let _ = write!(out, "{us}");
                    }
                }
                _ => out.push_str("null"),
            },
            Value::TimeTz(t) => {
                let us = (t.time.0 - i64::from(t.offset_seconds) * 1_000_000).rem_euclid(DAY_US);
                let secs = us / 1_000_000;
                let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
                push_fraction(&mut s, us % 1_000_000);
                s.push('Z');
                json_str(out, &s);
            }
            Value::Interval(i) => match self.opts.interval_mode {
                IntervalMode::Numeric => {
                    let us = i64::from(i.months)
                        .saturating_mul(MONTH_US)
                        .saturating_add(i64::from(i.days).saturating_mul(DAY_US))
                        .saturating_add(i.micros);
                    let _ = write!(out, "{us}");
                }
                IntervalMode::String => {
                    let mut s = String::new();
                    let _ = i.write_iso8601(&mut s);
                    json_str(out, &s);
                }
            },
            Value::Bit(b) if b.len() == 1 => {
                out.push_str(if b.bit(0) == Some(true) {
                    "true"
                } else {
                    "false"
                });
            }
            Value::Array(a) => self.write_array(out, typmod, a.elements(), a.dims()),
            // json/jsonb/xml/uuid/enum/text/timestamptz/inet/...: strings (timestamptz as
            // ISO 8601 UTC via the text form).
            Value::TimestampTz(ts) if ts.is_infinite() => out.push_str("null"),
            Value::TimestampTz(_) => v.write_json(out),
            other => json_str(out, &crate::de::text_form(other)),
        }
    }

    fn write_array(
        &self,
        out: &mut String,
        typmod: i32,
        elements: &[Value],
        dims: &[walstream_proto::ArrayDim],
    ) {
        out.push('[');
        match dims.split_first() {
            None => {}
            Some((first, [])) => {
                for (i, e) in elements.iter().take(first.len).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write_value(out, typmod, e);
                }
            }
            Some((first, rest)) => {
                let chunk: usize = rest.iter().map(|d| d.len).product();
                for i in 0..first.len {
                    if i > 0 {
                        out.push(',');
                    }
                    let start = i.saturating_mul(chunk);
                    let sub = elements
                        .get(start..start.saturating_add(chunk))
                        .unwrap_or(&[]);
                    self.write_array(out, typmod, sub, rest);
                }
            }
        }
        out.push(']');
    }

    /// The Connect schema of a row struct (all columns, or the key columns).
    fn write_struct_schema(
        &self,
        out: &mut String,
        rel: &Relation,
        key_only: bool,
        name: &str,
        field: Option<&str>,
        optional: bool,
    ) {
        out.push_str("{\"type\":\"struct\",\"fields\":[");
        let mut first = true;
        for col in &rel.columns {
            if key_only && !col.is_key() {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            self.write_column_schema(
                out,
                col.type_oid,
                col.type_modifier,
                !col.is_key(),
                Some(&col.name),
            );
        }
        let _ = write!(out, "],\"optional\":{optional},\"name\":");
        json_str(out, name);
        if let Some(f) = field {
            out.push_str(",\"field\":");
            json_str(out, f);
        }
        out.push('}');
    }

    fn write_column_schema(
        &self,
        out: &mut String,
        oid: Oid,
        typmod: i32,
        optional: bool,
        field: Option<&str>,
    ) {
        let mut logical: Option<&str> = None;
        let mut params = String::new();
        // User-defined types: a domain has its base type's schema (the domain's own type
        // modifier is not sent: `numeric` domains are variable-scale), an array of a user type
        // is an array; an enum whose labels are known is Debezium's `io.debezium.data.Enum`
        // string with the labels as `allowed` (array items of an enum are not optional, as
        // Debezium declares them); ranges and the rest are strings.
        let mut oid = oid;
        for _ in 0..16 {
            match self.types.as_ref().and_then(|t| t.get(oid)) {
                Some(TypeKind::Domain { base }) => oid = base,
                Some(TypeKind::Enum) => {
                    if let Some(labels) = self.types.as_ref().and_then(|t| t.enum_labels(oid)) {
                        out.push_str("{\"type\":\"string\",\"optional\":");
                        out.push_str(if optional { "true" } else { "false" });
                        out.push_str(
                            ",\"name\":\"io.debezium.data.Enum\",\"version\":1,\"parameters\":{\"allowed\":",
                        );
                        json_str(out, &labels.join(","));
                        out.push('}');
                        finish_field(out, field);
                        return;
                    }
                    break;
                }
                Some(TypeKind::Array { element }) => {
                    let labelled_enum = self.types.as_ref().is_some_and(|t| {
                        crate::types::enum_of(t, element)
                            .is_some_and(|e| t.enum_labels(e).is_some())
                    });
                    out.push_str("{\"type\":\"array\",\"items\":");
                    self.write_column_schema(out, element, -1, !labelled_enum, None);
                    let _ = write!(out, ",\"optional\":{optional}");
                    finish_field(out, field);
                    return;
                }
                _ => break,
            }
        }
        let ty: &str = match oid {
            Oid::BOOL => "boolean",
            Oid::INT2 => "int16",
            Oid::INT4 => "int32",
            Oid::INT8 | Oid::OID | Oid::XID | Oid::XID8 => "int64",
            Oid::FLOAT4 => "float",
            Oid::FLOAT8 => "double",
            Oid::NUMERIC | Oid::MONEY => match self.opts.decimal_mode {
                DecimalMode::String => "string",
                DecimalMode::Double => "double",
                DecimalMode::Precise => {
                    let fixed = if oid == Oid::MONEY {
                        Some((2, None))
                    } else {
                        numeric_scale(typmod).map(|s| (s, numeric_precision(typmod)))
                    };
                    match fixed {
                        Some((scale, precision)) => {
                            logical = Some("org.apache.kafka.connect.data.Decimal");
                            let _ = write!(params, "{{\"scale\":\"{scale}\"");
                            if let Some(p) = precision {
                                let _ = write!(params, ",\"connect.decimal.precision\":\"{p}\"");
                            }
                            params.push('}');
                            "bytes"
                        }
                        None => {
                            out.push_str("{\"type\":\"struct\",\"fields\":[{\"type\":\"int32\",\"optional\":false,\"field\":\"scale\"},{\"type\":\"bytes\",\"optional\":false,\"field\":\"value\"}],");
                            let _ = write!(
                                out,
                                "\"optional\":{optional},\"name\":\"io.debezium.data.VariableScaleDecimal\",\"version\":1,\"doc\":\"Variable scaled decimal\""
                            );
                            finish_field(out, field);
                            return;
                        }
                    }
                }
            },
            Oid::BYTEA => match self.opts.binary_mode {
                BinaryMode::Bytes => "bytes",
                BinaryMode::Hex => "string",
            },
            Oid::JSON | Oid::JSONB => {
                logical = Some("io.debezium.data.Json");
                "string"
            }
            Oid::XML => {
                logical = Some("io.debezium.data.Xml");
                "string"
            }
            Oid::UUID => {
                logical = Some("io.debezium.data.Uuid");
                "string"
            }
            Oid::DATE => {
                logical = Some("io.debezium.time.Date");
                "int32"
            }
            Oid::TIME if time_precision(typmod) <= 3 => {
                logical = Some("io.debezium.time.Time");
                "int32"
            }
            Oid::TIME => {
                logical = Some("io.debezium.time.MicroTime");
                "int64"
            }
            Oid::TIMESTAMP if time_precision(typmod) <= 3 => {
                logical = Some("io.debezium.time.Timestamp");
                "int64"
            }
            Oid::TIMESTAMP => {
                logical = Some("io.debezium.time.MicroTimestamp");
                "int64"
            }
            Oid::TIMESTAMPTZ => {
                logical = Some("io.debezium.time.ZonedTimestamp");
                "string"
            }
            Oid::TIMETZ => {
                logical = Some("io.debezium.time.ZonedTime");
                "string"
            }
            Oid::INTERVAL => match self.opts.interval_mode {
                IntervalMode::Numeric => {
                    logical = Some("io.debezium.time.MicroDuration");
                    "int64"
                }
                IntervalMode::String => {
                    logical = Some("io.debezium.time.Interval");
                    "string"
                }
            },
            Oid::BIT if typmod == 1 => "boolean",
            other => match array_element(other) {
                Some(elem) => {
                    out.push_str("{\"type\":\"array\",\"items\":");
                    self.write_column_schema(out, elem, typmod, true, None);
                    let _ = write!(out, ",\"optional\":{optional}");
                    finish_field(out, field);
                    return;
                }
                None => "string",
            },
        };
        let _ = write!(out, "{{\"type\":\"{ty}\",\"optional\":{optional}");
        if let Some(name) = logical {
            let _ = write!(out, ",\"name\":\"{name}\",\"version\":1");
        }
        if !params.is_empty() {
            let _ = write!(out, ",\"parameters\":{params}");
        }
        finish_field(out, field);
    }
}

fn finish_field(out: &mut String, field: Option<&str>) {
    if let Some(f) = field {
        out.push_str(",\"field\":");
        json_str(out, f);
    }
    out.push('}');
}

fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    json_str(&mut q, s);
    q
}

fn write_ms(out: &mut String, t: Option<PgTimestamp>) {
    match t.and_then(PgTimestamp::to_unix_micros) {
        Some(us) => {
            let _ = write!(out, "{}", us.div_euclid(1000));
        }
        None => out.push_str("null"),
    }
}

fn write_double(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("\"NaN\"");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        Value::Float8(f).write_json(out);
    }
}

/// Appends `.ffffff` with trailing zeros trimmed (nothing for zero).
fn push_fraction(s: &mut String, micros: i64) {
    if micros != 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
}

/// The declared fractional-second precision of `time`/`timestamp` (6 when not declared).
fn time_precision(typmod: i32) -> i32 {
    if typmod < 0 { 6 } else { typmod }
}

/// The declared scale of a `numeric(p, s)` column (`None` for plain `numeric`).
fn numeric_scale(typmod: i32) -> Option<u32> {
    if typmod < 4 {
        return None;
    }
    // The low 11 bits hold the scale, sign-extended (PostgreSQL 15+ allows negative scales,
    // which are treated like an undeclared scale here).
    let scale = (((typmod - 4) & 0x7ff) ^ 0x400) - 0x400;
    u32::try_from(scale).ok()
}

/// The declared precision of a `numeric(p, s)` column.
fn numeric_precision(typmod: i32) -> Option<u32> {
    if typmod < 4 {
        return None;
    }
    u32::try_from(((typmod - 4) >> 16) & 0xffff).ok()
}

/// Big-endian two's-complement bytes (Java `BigInteger.toByteArray`) of the decimal `text`
/// scaled to `scale` digits (its own scale when `None`).
fn unscaled_bytes(text: &str, scale: Option<u32>) -> Vec<u8> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let mut all: String = format!("{int}{frac}");
    if let Some(s) = scale.and_then(|s| usize::try_from(s).ok()) {
        if s > frac.len() {
            all.extend(std::iter::repeat_n('0', s - frac.len()));
        } else {
            all.truncate(int.len() + s);
        }
    }
    // Magnitude in base 256, big-endian.
    let mut mag: Vec<u8> = vec![0];
    for d in all.bytes().filter(u8::is_ascii_digit) {
        let mut carry = u32::from(d - b'0');
        for byte in mag.iter_mut().rev() {
            let x = u32::from(*byte) * 10 + carry;
            let [lo, ..] = x.to_le_bytes();
            *byte = lo;
            carry = x >> 8;
        }
        while carry > 0 {
            let [lo, ..] = carry.to_le_bytes();
            mag.insert(0, lo);
            carry >>= 8;
        }
    }
    let is_zero = mag.iter().all(|b| *b == 0);
    let mut bytes = if negative && !is_zero {
        // Two's complement over one extra byte, then strip redundant sign bytes.
        let mut v = vec![0u8];
        v.extend_from_slice(&mag);
        for b in &mut v {
            *b = !*b;
        }
        for b in v.iter_mut().rev() {
            let (x, overflow) = b.overflowing_add(1);
            *b = x;
            if !overflow {
                break;
            }
        }
        v
    } else {
        let mut v = vec![0u8];
        v.extend_from_slice(&mag);
        v
    };
    while let [first, second, ..] = bytes.as_slice() {
        let redundant =
            (*first == 0 && second & 0x80 == 0) || (*first == 0xff && second & 0x80 != 0);
        if !redundant {
            break;
        }
        bytes.remove(0);
    }
    bytes
}

/// The element type of a built-in array type.
fn array_element(oid: Oid) -> Option<Oid> {
    const ARRAYS: &[(Oid, Oid)] = &[
        (Oid::BOOL_ARRAY, Oid::BOOL),
        (Oid::BYTEA_ARRAY, Oid::BYTEA),
        (Oid::CHAR_ARRAY, Oid::CHAR),
        (Oid::NAME_ARRAY, Oid::NAME),
        (Oid::INT2_ARRAY, Oid::INT2),
        (Oid::INT4_ARRAY, Oid::INT4),
        (Oid::TEXT_ARRAY, Oid::TEXT),
        (Oid::XID_ARRAY, Oid::XID),
        (Oid::BPCHAR_ARRAY, Oid::BPCHAR),
        (Oid::VARCHAR_ARRAY, Oid::VARCHAR),
        (Oid::INT8_ARRAY, Oid::INT8),
        (Oid::FLOAT4_ARRAY, Oid::FLOAT4),
        (Oid::FLOAT8_ARRAY, Oid::FLOAT8),
        (Oid::OID_ARRAY, Oid::OID),
        (Oid::MACADDR_ARRAY, Oid::MACADDR),
        (Oid::INET_ARRAY, Oid::INET),
        (Oid::TIMESTAMP_ARRAY, Oid::TIMESTAMP),
        (Oid::DATE_ARRAY, Oid::DATE),
        (Oid::TIME_ARRAY, Oid::TIME),
        (Oid::TIMESTAMPTZ_ARRAY, Oid::TIMESTAMPTZ),
        (Oid::INTERVAL_ARRAY, Oid::INTERVAL),
        (Oid::NUMERIC_ARRAY, Oid::NUMERIC),
        (Oid::TIMETZ_ARRAY, Oid::TIMETZ),
        (Oid::BIT_ARRAY, Oid::BIT),
        (Oid::VARBIT_ARRAY, Oid::VARBIT),
        (Oid::UUID_ARRAY, Oid::UUID),
        (Oid::PG_LSN_ARRAY, Oid::PG_LSN),
        (Oid::JSONB_ARRAY, Oid::JSONB),
        (Oid::JSON_ARRAY, Oid::JSON),
        (Oid::XML_ARRAY, Oid::XML),
        (Oid::CIDR_ARRAY, Oid::CIDR),
        (Oid::MACADDR8_ARRAY, Oid::MACADDR8),
        (Oid::MONEY_ARRAY, Oid::MONEY),
        (Oid::XID8_ARRAY, Oid::XID8),
    ];
    ARRAYS.iter().find(|(a, _)| *a == oid).map(|(_, e)| *e)
}

/// The Connect schema of `source`.
const SOURCE_SCHEMA: &str = concat!(
    "{\"type\":\"struct\",\"fields\":[",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"version\"},",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"connector\"},",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"name\"},",
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"ts_ms\"},",
    "{\"type\":\"string\",\"optional\":true,\"name\":\"io.debezium.data.Enum\",\"version\":1,",
    "\"parameters\":{\"allowed\":\"true,last,false,incremental\"},\"default\":\"false\",\"field\":\"snapshot\"},",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"db\"},",
    "{\"type\":\"string\",\"optional\":true,\"field\":\"sequence\"},",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"schema\"},",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"table\"},",
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"txId\"},",
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"lsn\"},",
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"xmin\"}",
    "],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.Source\",\"field\":\"source\"}"
);

/// The Connect schema of the envelope's `transaction` block.
const TXN_BLOCK_SCHEMA: &str = concat!(
    "{\"type\":\"struct\",\"fields\":[",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"id\"},",
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"total_order\"},",
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"data_collection_order\"}",
    "],\"optional\":true,\"name\":\"event.block\",\"version\":1,\"field\":\"transaction\"}"
);

/// The Connect schema of a transaction metadata (BEGIN/END) value.
const TXN_VALUE_SCHEMA: &str = concat!(
    "{\"type\":\"struct\",\"fields\":[",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"status\"},",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"id\"},",
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ms\"},",
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"event_count\"},",
    "{\"type\":\"array\",\"items\":{\"type\":\"struct\",\"fields\":[",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"data_collection\"},",
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"event_count\"}",
    "],\"optional\":false},\"optional\":true,\"field\":\"data_collections\"}",
    "],\"optional\":false,\"name\":\"io.debezium.connector.common.TransactionMetadataValue\",\"version\":1}"
);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value as Json, json};
    use walstream_proto::pgoutput::{
        Begin, Delete, Insert, LogicalMessage, OldTuple, PgoutputMessage, RelationMessage,
        ReplicaIdentity, Truncate, TruncateOptions, Update,
    };
    use walstream_proto::{Lsn, Oid, PgTimestamp, Xid};

    use super::*;
    use crate::decoder::tests::{bytes, commit};
    use crate::row::tests::tuple;
    use crate::{DecodeOptions, LogicalDecoder, LsnFeedback};

    /// 2024-01-02T03:04:05.678Z in PostgreSQL microseconds.
    const COMMIT_TIME: i64 = 757_479_845_678_000;
    const NOW: i64 = 1_700_000_000_000;

    fn relation(cols: &[(&str, Oid, i32, bool)]) -> Arc<Relation> {
        Arc::new(Relation {
            oid: Oid(16384),
            namespace: "public".into(),
            name: "t".into(),
            replica_identity: ReplicaIdentity::DEFAULT,
            columns: cols
                .iter()
                .map(|&(n, t, m, key)| Column {
                    flags: u8::from(key),
                    name: n.into(),
                    type_oid: t,
                    type_modifier: m,
                })
                .collect(),
        })
    }

    fn simple() -> Arc<Relation> {
        relation(&[("id", Oid::INT4, -1, true), ("v", Oid::TEXT, -1, false)])
    }

    fn begin() -> PgoutputMessage {
        PgoutputMessage::Begin(Begin {
            final_lsn: Lsn(0x180),
            commit_time: PgTimestamp(COMMIT_TIME),
            xid: Xid(700),
        })
    }

    /// Runs `msgs` (inside one transaction unless `bare`) through the decoder and encoder.
    fn run(
        enc: &mut DebeziumEncoder,
        rel: &Arc<Relation>,
        msgs: Vec<PgoutputMessage>,
    ) -> Vec<DebeziumRecord> {
        run_with(TypeRegistry::new(), enc, rel, msgs)
    }

    /// [`run`] with a type registry for user-defined types.
    fn run_with(
        types: TypeRegistry,
        enc: &mut DebeziumEncoder,
        rel: &Arc<Relation>,
        msgs: Vec<PgoutputMessage>,
    ) -> Vec<DebeziumRecord> {
        let mut d =
            LogicalDecoder::new(DecodeOptions::new(1), LsnFeedback::new(Lsn(0))).with_types(types);
        let mut all = vec![
            begin(),
            PgoutputMessage::Relation(RelationMessage {
                xid: None,
                relation: Arc::clone(rel),
            }),
        ];
        all.extend(msgs);
        all.push(commit(0x180, 0x1b0));
        let mut out = Vec::new();
        for (i, m) in all.iter().enumerate() {
            let lsn = Lsn(0x100 + 0x10 * u64::try_from(i).unwrap());
            d.handle_xlog_data(lsn, lsn, bytes(m)).unwrap();
            while let Some(e) = d.poll_event() {
                out.extend(enc.encode_at(&e, NOW).unwrap());
            }
        }
        out
    }

    fn opts() -> DebeziumOptions {
        let mut o = DebeziumOptions::new("srv", "app");
        o.version = "9.9.9".into();
        o
    }

    fn insert(vals: &[Option<&str>]) -> PgoutputMessage {
        PgoutputMessage::Insert(Insert {
            xid: None,
            relation_id: Oid(16384),
            new: tuple(vals),
        })
    }

    const SOURCE: &str = r#""source":{"version":"9.9.9","connector":"postgresql","name":"srv","ts_ms":1704164645678,"snapshot":"false","db":"app","sequence":"[null,\"288\"]","schema":"public","table":"t","txId":700,"lsn":288,"xmin":null}"#;

    #[test]
    fn golden_create() {
        let recs = run(
            &mut DebeziumEncoder::new(opts()),
            &simple(),
            vec![insert(&[Some("1"), Some("a")])],
        );
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].topic, "srv.public.t");
        assert_eq!(recs[0].key.as_deref(), Some(r#"{"id":1}"#));
        assert_eq!(
            recs[0].value,
            format!(
                r#"{{"before":null,"after":{{"id":1,"v":"a"}},{SOURCE},"op":"c","ts_ms":{NOW},"transaction":null}}"#
            )
        );
    }

    #[test]
    fn golden_update_full_default_and_key_change() {
        let full = PgoutputMessage::Update(Update {
            xid: None,
            relation_id: Oid(16384),
            old: Some(OldTuple::Full(tuple(&[Some("1"), Some("a")]))),
            new: tuple(&[Some("1"), Some("b")]),
        });
        let recs = run(&mut DebeziumEncoder::new(opts()), &simple(), vec![full]);
        assert_eq!(
            recs[0].value,
            format!(
                r#"{{"before":{{"id":1,"v":"a"}},"after":{{"id":1,"v":"b"}},{SOURCE},"op":"u","ts_ms":{NOW},"transaction":null}}"#
            )
        );
        // REPLICA IDENTITY DEFAULT, key unchanged, TOASTed column untouched.
        let plain = PgoutputMessage::Update(Update {
            xid: None,
            relation_id: Oid(16384),
            old: None,
            new: tuple(&[Some("1"), Some("\u{0}toast")]),
        });
        let recs = run(&mut DebeziumEncoder::new(opts()), &simple(), vec![plain]);
        assert_eq!(
            recs[0].value,
            format!(
                r#"{{"before":null,"after":{{"id":1,"v":"__debezium_unavailable_value"}},{SOURCE},"op":"u","ts_ms":{NOW},"transaction":null}}"#
            )
        );
        // Key changed: delete of the old key, then create.
        let rekey = PgoutputMessage::Update(Update {
            xid: None,
            relation_id: Oid(16384),
            old: Some(OldTuple::Key(tuple(&[Some("1"), None]))),
            new: tuple(&[Some("2"), Some("b")]),
        });
        let mut o = opts();
        o.unavailable_value_placeholder = "?".into();
        let recs = run(&mut DebeziumEncoder::new(o), &simple(), vec![rekey]);
        let ops: Vec<Json> = recs
            .iter()
            .map(|r| serde_json::from_str::<Json>(&r.value).unwrap())
            .collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(ops[0]["op"], "d");
        assert_eq!(ops[0]["before"], json!({"id": 1, "v": null}));
        assert_eq!(recs[0].key.as_deref(), Some(r#"{"id":1}"#));
        assert_eq!(ops[1]["op"], "c");
        assert_eq!(ops[1]["after"], json!({"id": 2, "v": "b"}));
        assert_eq!(recs[1].key.as_deref(), Some(r#"{"id":2}"#));
    }

    #[test]
    fn golden_delete_truncate_message() {
        let del = PgoutputMessage::Delete(Delete {
            xid: None,
            relation_id: Oid(16384),
            old: OldTuple::Key(tuple(&[Some("5"), None])),
        });
        let trunc = PgoutputMessage::Truncate(Truncate {
            xid: None,
            options: TruncateOptions::default(),
            relation_ids: vec![Oid(16384)],
        });
        let msg = PgoutputMessage::Message(LogicalMessage {
            xid: None,
            flags: 1,
            lsn: Lsn(0x130),
            prefix: "audit".into(),
            content: bytes::Bytes::from_static(b"hello"),
        });
        let recs = run(
            &mut DebeziumEncoder::new(opts()),
            &simple(),
            vec![del, trunc, msg],
        );
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs[0].value,
            format!(
                r#"{{"before":{{"id":5,"v":null}},"after":null,{SOURCE},"op":"d","ts_ms":{NOW},"transaction":null}}"#
            )
        );
        assert_eq!(recs[0].key.as_deref(), Some(r#"{"id":5}"#));
        let t: Json = serde_json::from_str(&recs[1].value).unwrap();
        assert_eq!(t["op"], "t");
        assert_eq!((&t["before"], &t["after"]), (&Json::Null, &Json::Null));
        assert_eq!(t["source"]["lsn"], 0x130);
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[2].topic, "srv.message");
        assert_eq!(
            recs[2].value,
            format!(
                r#"{{"op":"m","ts_ms":{NOW},"source":{{"version":"9.9.9","connector":"postgresql","name":"srv","ts_ms":1704164645678,"snapshot":"false","db":"app","sequence":"[null,\"304\"]","schema":"","table":"","txId":700,"lsn":304,"xmin":null}},"message":{{"prefix":"audit","content":"aGVsbG8="}}}}"#
            )
        );
    }

    #[test]
    fn golden_read_and_sequence_after_commit() {
        let mut enc = DebeziumEncoder::new(opts());
        let row = Row::new(simple(), tuple(&[Some("3"), Some("z")]));
        let r = enc.encode_read(&row, Lsn(0x500), true, NOW).unwrap();
        let v: Json = serde_json::from_str(&r.value).unwrap();
        assert_eq!(v["op"], "r");
        assert_eq!(v["source"]["snapshot"], "last");
        assert_eq!(v["source"]["txId"], Json::Null);
        assert_eq!(v["after"], json!({"id": 3, "v": "z"}));
        // A second transaction's sequence names the first one's commit end.
        run(&mut enc, &simple(), vec![]);
        let recs = run(&mut enc, &simple(), vec![insert(&[Some("1"), None])]);
        let v: Json = serde_json::from_str(&recs[0].value).unwrap();
        assert_eq!(v["source"]["sequence"], "[\"432\",\"288\"]");
    }

    #[test]
    fn golden_transaction_metadata() {
        let mut o = opts();
        o.transaction_metadata = true;
        let recs = run(
            &mut DebeziumEncoder::new(o),
            &simple(),
            vec![
                insert(&[Some("1"), Some("a")]),
                insert(&[Some("2"), Some("b")]),
            ],
        );
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[0].topic, "srv.transaction");
        assert_eq!(
            recs[0].value,
            r#"{"status":"BEGIN","id":"700:384","ts_ms":1704164645678,"event_count":null,"data_collections":null}"#
        );
        assert_eq!(recs[0].key.as_deref(), Some(r#"{"id":"700:384"}"#));
        let second: Json = serde_json::from_str(&recs[2].value).unwrap();
        assert_eq!(
            second["transaction"],
            json!({"id": "700:384", "total_order": 2, "data_collection_order": 2})
        );
        assert_eq!(
            recs[3].value,
            r#"{"status":"END","id":"700:384","ts_ms":1704164645678,"event_count":2,"data_collections":[{"data_collection":"public.t","event_count":2}]}"#
        );
    }

    fn numeric_typmod(p: i32, s: i32) -> i32 {
        (p << 16 | s) + 4
    }

    fn types_relation() -> Arc<Relation> {
        relation(&[
            ("i2", Oid::INT2, -1, true),
            ("i8", Oid::INT8, -1, false),
            ("f8", Oid::FLOAT8, -1, false),
            ("nan", Oid::FLOAT8, -1, false),
            ("b", Oid::BOOL, -1, false),
            ("n_fixed", Oid::NUMERIC, numeric_typmod(10, 2), false),
            ("n_neg", Oid::NUMERIC, numeric_typmod(10, 2), false),
            ("n_pad", Oid::NUMERIC, numeric_typmod(10, 2), false),
            ("n_var", Oid::NUMERIC, -1, false),
            ("n_big", Oid::NUMERIC, -1, false),
            ("money", Oid::MONEY, -1, false),
            ("bytes", Oid::BYTEA, -1, false),
            ("d", Oid::DATE, -1, false),
            ("t3", Oid::TIME, 3, false),
            ("t6", Oid::TIME, -1, false),
            ("ts3", Oid::TIMESTAMP, 3, false),
            ("ts6", Oid::TIMESTAMP, -1, false),
            ("tstz", Oid::TIMESTAMPTZ, -1, false),
            ("ttz", Oid::TIMETZ, -1, false),
            ("iv", Oid::INTERVAL, -1, false),
            ("u", Oid::UUID, -1, false),
            ("j", Oid::JSONB, -1, false),
            ("bit1", Oid::BIT, 1, false),
            ("vb", Oid::VARBIT, -1, false),
            ("arr", Oid::INT4_ARRAY, -1, false),
            ("grid", Oid::TEXT_ARRAY, -1, false),
            ("ip", Oid::INET, -1, false),
            ("toast_b", Oid::BYTEA, -1, false),
        ])
    }

    fn types_row() -> Vec<Option<&'static str>> {
        vec![
            Some("7"),
            Some("-9000000000"),
            Some("1.5"),
            Some("NaN"),
            Some("t"),
            Some("12.34"),
            Some("-1.00"),
            Some("128.00"),
            Some("3.14159"),
            Some("123456789012345678901234567890"),
            Some("$1,234.50"),
            Some("\\x0102ff"),
            Some("1970-01-02"),
            Some("01:00:00.123"),
            Some("01:00:00.123456"),
            Some("1970-01-01 00:00:01.5"),
            Some("1970-01-01 00:00:01.5"),
            Some("2024-01-02 03:04:05.5+02"),
            Some("03:04:05.5+05:30"),
            Some("1 mon 2 days 00:00:03"),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Some(r#"{"a": 1}"#),
            Some("1"),
            Some("101"),
            Some("{1,NULL,3}"),
            Some("{{a,b},{c,d}}"),
            Some("10.0.0.1/8"),
            Some("\u{0}toast"),
        ]
    }

    #[test]
    fn golden_default_type_mapping() {
        let recs = run(
            &mut DebeziumEncoder::new(opts()),
            &types_relation(),
            vec![insert(&types_row())],
        );
        let v: Json = serde_json::from_str(&recs[0].value).unwrap();
        assert_eq!(
            v["after"],
            json!({
                "i2": 7,
                "i8": -9_000_000_000_i64,
                "f8": 1.5,
                "nan": "NaN",
                "b": true,
                "n_fixed": "BNI=",
                "n_neg": "nA==",
                "n_pad": "MgA=",
                "n_var": {"scale": 5, "value": "BMsv"},
                "n_big": {"scale": 0, "value": "AY7pD/bDc+DuTj8K0g=="},
                "money": "AeI6",
                "bytes": "AQL/",
                "d": 1,
                "t3": 3_600_123,
                "t6": 3_600_123_456_i64,
                "ts3": 1500,
                "ts6": 1_500_000,
                "tstz": "2024-01-02T01:04:05.5Z",
                "ttz": "21:34:05.5Z",
                "iv": 2_802_603_000_000_i64,
                "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "j": "{\"a\": 1}",
                "bit1": true,
                "vb": "101",
                "arr": [1, null, 3],
                "grid": [["a", "b"], ["c", "d"]],
                "ip": "10.0.0.1/8",
                "toast_b": "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==",
            })
        );
        assert_eq!(recs[0].key.as_deref(), Some(r#"{"i2":7}"#));
    }

    #[test]
    fn golden_alternative_modes() {
        let mut o = opts();
        o.decimal_mode = DecimalMode::String;
        o.binary_mode = BinaryMode::Hex;
        o.interval_mode = IntervalMode::String;
        let recs = run(
            &mut DebeziumEncoder::new(o),
            &types_relation(),
            vec![insert(&types_row())],
        );
        let v: Json = serde_json::from_str(&recs[0].value).unwrap();
        let a = &v["after"];
        assert_eq!(a["n_fixed"], "12.34");
        assert_eq!(a["n_var"], "3.14159");
        assert_eq!(a["money"], "1234.50");
        assert_eq!(a["bytes"], "0102ff");
        assert_eq!(a["iv"], "P1M2DT3S");
        assert_eq!(a["toast_b"], "__debezium_unavailable_value");
        let mut o = opts();
        o.decimal_mode = DecimalMode::Double;
        let recs = run(
            &mut DebeziumEncoder::new(o),
            &types_relation(),
            vec![insert(&types_row())],
        );
        let v: Json = serde_json::from_str(&recs[0].value).unwrap();
        assert_eq!(v["after"]["n_fixed"], 12.34);
        assert_eq!(v["after"]["n_neg"], -1.0);
        assert_eq!(v["after"]["money"], 1234.5);
    }

    #[test]
    fn golden_schema_and_payload() {
        let mut o = opts();
        o.include_schema = true;
        let recs = run(
            &mut DebeziumEncoder::new(o),
            &types_relation(),
            vec![insert(&types_row())],
        );
        let v: Json = serde_json::from_str(&recs[0].value).unwrap();
        assert_eq!(v["payload"]["op"], "c");
        let schema = &v["schema"];
        assert_eq!(schema["name"], "srv.public.t.Envelope");
        let fields = schema["fields"].as_array().unwrap();
        let names: Vec<&str> = fields
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["before", "after", "source", "op", "ts_ms", "transaction"]
        );
        let after = fields[1]["fields"].as_array().unwrap();
        let by_name = |n: &str| after.iter().find(|f| f["field"] == n).unwrap().clone();
        assert_eq!(
            by_name("i2"),
            json!({"type": "int16", "optional": false, "field": "i2"})
        );
        assert_eq!(
            by_name("i8"),
            json!({"type": "int64", "optional": true, "field": "i8"})
        );
        assert_eq!(
            by_name("n_fixed"),
            json!({"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
                   "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "10"},
                   "field": "n_fixed"})
        );
        assert_eq!(
            by_name("n_var")["name"],
            "io.debezium.data.VariableScaleDecimal"
        );
        assert_eq!(by_name("d")["name"], "io.debezium.time.Date");
        assert_eq!(by_name("t3")["name"], "io.debezium.time.Time");
        assert_eq!(by_name("t6")["name"], "io.debezium.time.MicroTime");
        assert_eq!(by_name("ts3")["name"], "io.debezium.time.Timestamp");
        assert_eq!(by_name("ts6")["name"], "io.debezium.time.MicroTimestamp");
        assert_eq!(by_name("tstz")["name"], "io.debezium.time.ZonedTimestamp");
        assert_eq!(by_name("ttz")["name"], "io.debezium.time.ZonedTime");
        assert_eq!(by_name("iv")["name"], "io.debezium.time.MicroDuration");
        assert_eq!(by_name("u")["name"], "io.debezium.data.Uuid");
        assert_eq!(by_name("j")["name"], "io.debezium.data.Json");
        assert_eq!(by_name("bit1")["type"], "boolean");
        assert_eq!(
            by_name("arr"),
            json!({"type": "array", "items": {"type": "int32", "optional": true}, "optional": true, "field": "arr"})
        );
        assert_eq!(fields[2]["name"], "io.debezium.connector.postgresql.Source");
        let key: Json = serde_json::from_str(recs[0].key.as_deref().unwrap()).unwrap();
        assert_eq!(key["schema"]["name"], "srv.public.t.Key");
        assert_eq!(key["payload"], json!({"i2": 7}));
    }

    #[test]
    fn golden_enum_schemas() {
        let (mood, moods, dmood, dmoods, bare) = (
            Oid(16_500),
            Oid(16_501),
            Oid(16_502),
            Oid(16_503),
            Oid(16_504),
        );
        let mut types = TypeRegistry::new();
        types.register_enum(mood, vec!["sad".into(), "happy".into(), "a \"b\"".into()]);
        types.register(moods, TypeKind::Array { element: mood });
        types.register(dmood, TypeKind::Domain { base: mood });
        types.register(dmoods, TypeKind::Array { element: dmood });
        // Registered without labels (a registry built by hand).
        types.register(bare, TypeKind::Enum);
        let rel = relation(&[
            ("id", Oid::INT4, -1, true),
            ("e", mood, -1, false),
            ("ea", moods, -1, false),
            ("de", dmood, -1, false),
            ("dea", dmoods, -1, false),
            ("b", bare, -1, false),
        ]);
        let mut o = opts();
        o.include_schema = true;
        let row = [
            Some("1"),
            Some("happy"),
            Some("{sad,\"a \\\"b\\\"\"}"),
            Some("sad"),
            Some("{}"),
            Some("x"),
        ];
        let recs = run_with(
            types,
            &mut DebeziumEncoder::new(o),
            &rel,
            vec![insert(&row)],
        );
        let v: Json = serde_json::from_str(&recs[0].value).unwrap();
        assert_eq!(
            v["payload"]["after"],
            json!({"id": 1, "e": "happy", "ea": ["sad", "a \"b\""], "de": "sad", "dea": [], "b": "x"})
        );
        let after = v["schema"]["fields"][1]["fields"].as_array().unwrap();
        let by_name = |n: &str| after.iter().find(|f| f["field"] == n).unwrap().clone();
        let enum_schema = json!({"type": "string", "optional": false, "name": "io.debezium.data.Enum",
                                 "version": 1, "parameters": {"allowed": "sad,happy,a \"b\""}});
        let mut e = enum_schema.clone();
        e["optional"] = json!(true);
        e["field"] = json!("e");
        assert_eq!(by_name("e"), e);
        // A domain over an enum is the enum.
        e["field"] = json!("de");
        assert_eq!(by_name("de"), e);
        // Arrays of enums: items not optional (as Debezium declares them).
        for name in ["ea", "dea"] {
            assert_eq!(
                by_name(name),
                json!({"type": "array", "items": enum_schema, "optional": true, "field": name})
            );
        }
        assert_eq!(
            by_name("b"),
            json!({"type": "string", "optional": true, "field": "b"})
        );
    }

    #[test]
    fn unscaled_bytes_match_java_big_integer() {
        let b64 = |s: &str, scale| BASE64.encode(unscaled_bytes(s, scale));
        assert_eq!(b64("-128", None), "gA==");
        assert_eq!(b64("128", None), "AIA=");
        assert_eq!(b64("-129", None), "/38=");
        assert_eq!(b64("0", None), "AA==");
        assert_eq!(b64("-0.00", None), "AA==");
        assert_eq!(b64("1.2", Some(2)), BASE64.encode([120]));
    }
}
