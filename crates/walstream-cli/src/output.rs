//! Rendering events: JSON lines, readable lines for people, raw payloads, counts.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use walstream::{Event, EventKind, OldRow, Row, Transaction, TransactionKind};

use crate::error::CliError;

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per event (see docs/jsonl.md).
    Jsonl,
    /// Readable lines for a terminal; long transactions are abbreviated.
    Pretty,
    /// One line per pgoutput message: `LSN <hex bytes>` (tail/record only).
    Raw,
    /// Nothing (still acknowledges); useful with --endpos to advance a slot.
    None,
    /// Event counts by kind and table, printed at the end.
    Count,
    /// Debezium change-event values, one JSON object per line (see docs/debezium.md).
    Debezium,
}

fn write_line(line: Option<String>, out: &mut impl Write) -> Result<(), CliError> {
    if let Some(mut line) = line {
        line.push('\n');
        out.write_all(line.as_bytes())
            .map_err(|e| CliError::io("writing output", &e))?;
    }
    Ok(())
}

/// Decodes every column value of a row change to its typed value and drops it (`--format
/// none`: the full decoding cost, no output).
fn decode_all(ev: &Event) -> Result<(), CliError> {
    let Some(change) = ev.kind().row_change() else {
        return Ok(());
    };
    let rows = change
        .new
        .iter()
        .chain(change.old.as_ref().map(OldRow::row));
    let error = |e| CliError::other(format!("cannot decode a row: {e}"));
    for row in rows {
        for field in row.typed().map_err(error)? {
            std::hint::black_box(field.map_err(error)?);
        }
    }
    Ok(())
}

/// Rows shown per transaction by the pretty format before it abbreviates.
const PRETTY_ROWS_PER_TXN: usize = 8;

/// Writes events in one [`Format`].
#[derive(Debug)]
pub(crate) struct Renderer {
    format: Format,
    /// Pretty: rows printed / hidden in the current transaction.
    shown: usize,
    hidden: usize,
    /// Count: events by kind, and row events by table.
    kinds: BTreeMap<&'static str, u64>,
    tables: BTreeMap<String, u64>,
    events: u64,
    debezium: Option<walstream::DebeziumEncoder>,
}

impl Renderer {
    pub(crate) fn new(format: Format) -> Self {
        Self {
            format,
            shown: 0,
            hidden: 0,
            kinds: BTreeMap::new(),
            tables: BTreeMap::new(),
            events: 0,
            debezium: None,
        }
    }

    /// A renderer of Debezium change events for logical server `server` and `database`.
    pub(crate) fn debezium(server: &str, database: &str) -> Self {
        let mut r = Self::new(Format::Debezium);
        r.debezium = Some(walstream::DebeziumEncoder::new(
            walstream::DebeziumOptions::new(server, database),
        ));
        r
    }

    /// Number of events rendered so far.
    pub(crate) fn events(&self) -> u64 {
        self.events
    }

    /// Writes one event.
    pub(crate) fn event(&mut self, ev: &Event, out: &mut impl Write) -> Result<(), CliError> {
        self.events += 1;
        let line = match self.format {
            Format::Jsonl => Some(
                ev.to_json_line()
                    .map_err(|e| CliError::other(format!("cannot render an event: {e}")))?,
            ),
            Format::Pretty => self.pretty(ev)?,
            Format::Count => {
                *self.kinds.entry(ev.kind_name()).or_default() += 1;
                if let Some(rc) = ev.kind().row_change() {
                    *self
                        .tables
                        .entry(format!("{}.{}", rc.schema(), rc.table()))
                        .or_default() += 1;
                }
                None
            }
            Format::Debezium => match &mut self.debezium {
                Some(enc) => {
                    let records = enc
                        .encode(ev)
                        .map_err(|e| CliError::other(format!("cannot render an event: {e}")))?;
                    let mut text = String::new();
                    for r in records {
                        text.push_str(&r.value);
                        text.push('\n');
                    }
                    text.pop();
                    (!text.is_empty()).then_some(text)
                }
                None => None,
            },
            Format::None => {
                decode_all(ev)?;
                None
            }
            Format::Raw => None,
        };
        write_line(line, out)
    }

    /// Writes the line opening a whole transaction (`tail --transactions`): a `begin` whose
    /// `lsn` is the commit LSN (the transaction may have been streamed in several blocks).
    pub(crate) fn transaction_begin(
        &mut self,
        t: &Transaction,
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        self.events += 1;
        let (xid, lsn) = (t.xid().0, t.commit_lsn());
        let line = match self.format {
            Format::Jsonl => Some(format!(
                r#"{{"kind":"begin","lsn":"{lsn}","xid":{xid},"commit_lsn":"{lsn}"}}"#
            )),
            Format::Pretty => {
                self.shown = 0;
                self.hidden = 0;
                Some(format!(
                    "BEGIN     xid {xid}  (commits at {lsn}, {})",
                    t.commit_time()
                ))
            }
            Format::Count => {
                *self.kinds.entry("begin").or_default() += 1;
                None
            }
            Format::Debezium | Format::Raw | Format::None => None,
        };
        write_line(line, out)
    }

    /// Writes the line closing a whole transaction: `commit`, or `prepare` for a two-phase
    /// transaction delivered at PREPARE.
    pub(crate) fn transaction_end(
        &mut self,
        t: &Transaction,
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        self.events += 1;
        let kind = match t.kind() {
            TransactionKind::Prepared { .. } => "prepare",
            _ => "commit",
        };
        let (xid, lsn, end) = (t.xid().0, t.commit_lsn(), t.end_lsn());
        let line = match self.format {
            Format::Jsonl => Some(format!(
                r#"{{"kind":"{kind}","lsn":"{lsn}","xid":{xid},"commit_lsn":"{lsn}","end_lsn":"{end}"}}"#
            )),
            Format::Pretty => {
                let more = std::mem::take(&mut self.hidden);
                self.shown = 0;
                let mut s = String::new();
                if more > 0 {
                    let _ = writeln!(s, "          … and {more} more changes in this transaction");
                }
                let _ = write!(s, "{:<9} xid {xid}  (end {end})", kind.to_uppercase());
                Some(s)
            }
            Format::Count => {
                *self.kinds.entry(kind).or_default() += 1;
                None
            }
            Format::Debezium | Format::Raw | Format::None => None,
        };
        write_line(line, out)
    }

    /// Writes one undecoded message (raw format).
    pub(crate) fn raw(
        &mut self,
        lsn: walstream::Lsn,
        data: &[u8],
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        if self.format != Format::Raw {
            return Ok(());
        }
        let mut line = String::with_capacity(20 + data.len() * 2);
        let _ = write!(line, "{lsn} ");
        for b in data {
            let _ = write!(line, "{b:02x}");
        }
        line.push('\n');
        out.write_all(line.as_bytes())
            .map_err(|e| CliError::io("writing output", &e))
    }

    /// Writes what the format keeps for the end (the count summary).
    pub(crate) fn finish(&mut self, out: &mut impl Write) -> Result<(), CliError> {
        if self.format == Format::None {
            // Nothing goes to the output; the count goes to standard error.
            eprintln!("events\t{}", self.events);
            return Ok(());
        }
        if self.format != Format::Count {
            return Ok(());
        }
        let mut text = format!("events\t{}\n", self.events);
        for (k, n) in &self.kinds {
            let _ = writeln!(text, "{k}\t{n}");
        }
        for (t, n) in &self.tables {
            let _ = writeln!(text, "table {t}\t{n}");
        }
        out.write_all(text.as_bytes())
            .map_err(|e| CliError::io("writing output", &e))
    }

    fn pretty(&mut self, ev: &Event) -> Result<Option<String>, CliError> {
        let fail = |e: walstream::RowError| CliError::other(format!("cannot render a row: {e}"));
        let xid = ev
            .xid()
            .map_or_else(String::new, |x| format!("xid {}", x.0));
        Ok(Some(match ev.kind() {
            EventKind::Begin(b) => {
                self.shown = 0;
                self.hidden = 0;
                format!(
                    "BEGIN     {xid}  (commits at {}, {})",
                    b.final_lsn, b.commit_time
                )
            }
            EventKind::Commit(c) => {
                let more = std::mem::take(&mut self.hidden);
                self.shown = 0;
                let mut s = String::new();
                if more > 0 {
                    let _ = writeln!(s, "          … and {more} more changes in this transaction");
                }
                let _ = write!(s, "COMMIT    {xid}  (end {})", c.end_lsn);
                s
            }
            EventKind::Insert(c) | EventKind::Update(c) | EventKind::Delete(c) => {
                if self.shown >= PRETTY_ROWS_PER_TXN && ev.xid().is_some() {
                    self.hidden += 1;
                    return Ok(None);
                }
                self.shown += 1;
                let name = match ev.kind() {
                    EventKind::Insert(_) => "INSERT",
                    EventKind::Update(_) => "UPDATE",
                    _ => "DELETE",
                };
                let mut s = format!("{name:<9} {}.{}", c.schema(), c.table());
                if let Some(new) = &c.new {
                    s.push_str("  ");
                    row_text(&mut s, new, false).map_err(fail)?;
                }
                match &c.old {
                    Some(OldRow::Key(r)) => {
                        s.push_str(if c.new.is_some() {
                            "  was key "
                        } else {
                            "  key "
                        });
                        row_text(&mut s, r, true).map_err(fail)?;
                    }
                    Some(OldRow::Full(r)) => {
                        s.push_str(if c.new.is_some() { "  was " } else { "  " });
                        row_text(&mut s, r, false).map_err(fail)?;
                    }
                    None => {}
                }
                s
            }
            EventKind::Truncate(t) => {
                let names: Vec<String> = t
                    .relations
                    .iter()
                    .map(|r| format!("{}.{}", r.namespace, r.name))
                    .collect();
                format!("TRUNCATE  {}", names.join(", "))
            }
            EventKind::Message(m) => format!(
                "MESSAGE   prefix {:?}{}  {:?}",
                m.prefix,
                if m.is_transactional() {
                    ""
                } else {
                    " (non-transactional)"
                },
                String::from_utf8_lossy(&m.content)
            ),
            EventKind::Relation(r) if r.is_schema_change() => format!(
                "RELATION  {}.{}  ({})",
                r.relation.namespace,
                r.relation.name,
                r.relation
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            EventKind::Relation(_) | EventKind::Type(_) | EventKind::Origin(_) => return Ok(None),
            EventKind::StreamStart(s) => format!("STREAM    xid {} block starts", s.xid.0),
            EventKind::StreamStop => "STREAM    block ends".to_owned(),
            EventKind::StreamCommit(c) => {
                format!("COMMIT    xid {} (streamed, end {})", c.xid.0, c.end_lsn)
            }
            EventKind::StreamAbort(a) => format!("ABORT     xid {} (streamed)", a.subxid.0),
            EventKind::BeginPrepare(_) => format!("BEGIN     {xid}  (two-phase)"),
            EventKind::Prepare(p) | EventKind::StreamPrepare(p) => {
                format!("PREPARE   {xid}  {:?}", p.gid)
            }
            EventKind::CommitPrepared(c) => format!("COMMIT    {xid}  prepared {:?}", c.gid),
            EventKind::RollbackPrepared(r) => format!("ROLLBACK  {xid}  prepared {:?}", r.gid),
            _ => format!("{:<9} {xid}", ev.kind_name().to_uppercase()),
        }))
    }
}

/// `{col: value, ...}` with JSON values; unchanged TOAST columns as `<unchanged>`.
fn row_text(out: &mut String, row: &Row, only_keys: bool) -> Result<(), walstream::RowError> {
    out.push('{');
    let mut first = true;
    for (col, field) in row.iter() {
        if only_keys && !col.is_key() {
            continue;
        }
        if !first {
            out.push_str(", ");
        }
        first = false;
        out.push_str(&col.name);
        out.push_str(": ");
        match field? {
            walstream::Field::Value(v) => {
                let json = v.to_json();
                if json.chars().count() > 60 {
                    let cut: String = json.chars().take(40).collect();
                    let _ = write!(out, "{cut}… ({} chars)", json.chars().count());
                } else {
                    out.push_str(&json);
                }
            }
            walstream::Field::Null => out.push_str("null"),
            walstream::Field::UnchangedToast => out.push_str("<unchanged>"),
        }
    }
    out.push('}');
    Ok(())
}
