//! JSON-lines rendering of events (the CLI's `--format jsonl`; see `docs/jsonl.md`).
use std::fmt::Write as _;

use crate::event::{Event, EventKind, OldRow};
use crate::row::{Field, Row, RowError};

/// Appends `s` as a JSON string literal.
pub(crate) fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `{"col": value, ...}`, leaving out unchanged TOAST columns.
fn row_object(out: &mut String, row: &Row, only_keys: bool) -> Result<(), RowError> {
    out.push('{');
    let mut first = true;
    for (col, field) in row.iter() {
        if only_keys && !col.is_key() {
            continue;
        }
        let field = field?;
        if field.is_unchanged_toast() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        json_str(out, &col.name);
        out.push(':');
        match field {
            Field::Value(v) => v.write_json(out),
            Field::Null | Field::UnchangedToast => out.push_str("null"),
        }
    }
    out.push('}');
    Ok(())
}

impl Event {
    /// This event as one line of JSON (no trailing newline): `kind`, `lsn`, `xid`,
    /// `commit_lsn`, and for row events `schema`, `table`, `new`, `old` and `unchanged`.
    pub fn to_json_line(&self) -> Result<String, RowError> {
        let mut out = String::with_capacity(128);
        out.push_str("{\"kind\":");
        json_str(&mut out, self.kind_name());
        out.push_str(",\"lsn\":");
        json_str(&mut out, &self.lsn.to_string());
        out.push_str(",\"xid\":");
        match self.xid {
            Some(x) => {
                let _ = write!(out, "{}", x.0);
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"commit_lsn\":");
        match self.commit_lsn {
            Some(l) => json_str(&mut out, &l.to_string()),
            None => out.push_str("null"),
        }
        match &self.kind {
            EventKind::Insert(c)
            | EventKind::Update(c)
            | EventKind::Delete(c)
            | EventKind::Read(crate::event::SnapshotRead { change: c, .. }) => {
                out.push_str(",\"schema\":");
                json_str(&mut out, c.schema());
                out.push_str(",\"table\":");
                json_str(&mut out, c.table());
                out.push_str(",\"new\":");
                match &c.new {
                    Some(r) => row_object(&mut out, r, false)?,
                    None => out.push_str("null"),
                }
                out.push_str(",\"old\":");
                match &c.old {
                    Some(OldRow::Full(r)) => row_object(&mut out, r, false)?,
                    Some(OldRow::Key(r)) => row_object(&mut out, r, true)?,
                    None => out.push_str("null"),
                }
                out.push_str(",\"unchanged\":[");
                if let Some(r) = &c.new {
                    for (i, name) in r.unchanged_columns().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        json_str(&mut out, name);
                    }
                }
                out.push(']');
            }
            EventKind::SnapshotComplete(s) => {
                out.push_str(",\"consistent_point\":");
                json_str(&mut out, &s.consistent_point.to_string());
                let _ = write!(out, ",\"tables\":{},\"rows\":{}", s.tables, s.rows);
            }
            EventKind::Resumed(r) => {
                out.push_str(",\"at\":");
                json_str(&mut out, &r.at.to_string());
                out.push_str(",\"discarded\":[");
                for (i, x) in r.discarded.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{}", x.0);
                }
                out.push(']');
            }
            EventKind::Commit(c) => {
                out.push_str(",\"end_lsn\":");
                json_str(&mut out, &c.end_lsn.to_string());
            }
            EventKind::Truncate(t) => {
                out.push_str(",\"tables\":[");
                for (i, r) in t.relations.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_str(&mut out, &format!("{}.{}", r.namespace, r.name));
                }
                out.push(']');
            }
            EventKind::Message(m) => {
                out.push_str(",\"transactional\":");
                out.push_str(if m.is_transactional() {
                    "true"
                } else {
                    "false"
                });
                out.push_str(",\"prefix\":");
                json_str(&mut out, &m.prefix);
                out.push_str(",\"content\":");
                json_str(&mut out, &String::from_utf8_lossy(&m.content));
            }
            EventKind::Relation(r) => {
                out.push_str(",\"schema\":");
                json_str(&mut out, &r.relation.namespace);
                out.push_str(",\"table\":");
                json_str(&mut out, &r.relation.name);
                out.push_str(",\"schema_change\":");
                out.push_str(if r.is_schema_change() {
                    "true"
                } else {
                    "false"
                });
            }
            _ => {}
        }
        out.push('}');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use walstream_proto::pgoutput::{OldTuple, PgoutputMessage, Update};
    use walstream_proto::{Lsn, Oid};

    use crate::decoder::tests::{begin, bytes, commit, insert, rel};
    use crate::row::tests::tuple;
    use crate::{DecodeOptions, LogicalDecoder, LsnFeedback};

    fn lines(msgs: &[(u64, PgoutputMessage)]) -> Vec<String> {
        let mut d = LogicalDecoder::new(DecodeOptions::new(1), LsnFeedback::new(Lsn(0)));
        let mut out = Vec::new();
        for (l, m) in msgs {
            d.handle_xlog_data(Lsn(*l), Lsn(*l), bytes(m)).unwrap();
            while let Some(e) = d.poll_event() {
                out.push(e.to_json_line().unwrap());
            }
        }
        out
    }

    #[test]
    fn golden_lines() {
        let upd = PgoutputMessage::Update(Update {
            xid: None,
            relation_id: Oid(16384),
            old: Some(OldTuple::Key(tuple(&[Some("1"), None]))),
            new: tuple(&[Some("1"), Some("\u{0}toast")]),
        });
        let got = lines(&[
            (0x100, begin(700, 0x180)),
            (0x100, rel(None)),
            (0x110, insert(None, "1")),
            (0x120, upd),
            (0x190, commit(0x180, 0x1b0)),
        ]);
        assert_eq!(
            got,
            [
                r#"{"kind":"begin","lsn":"0/100","xid":700,"commit_lsn":"0/180"}"#,
                r#"{"kind":"relation","lsn":"0/100","xid":700,"commit_lsn":"0/180","schema":"public","table":"t","schema_change":true}"#,
                r#"{"kind":"insert","lsn":"0/110","xid":700,"commit_lsn":"0/180","schema":"public","table":"t","new":{"id":1,"v":"x"},"old":null,"unchanged":[]}"#,
                r#"{"kind":"update","lsn":"0/120","xid":700,"commit_lsn":"0/180","schema":"public","table":"t","new":{"id":1},"old":{"id":1},"unchanged":["v"]}"#,
                r#"{"kind":"commit","lsn":"0/190","xid":700,"commit_lsn":"0/180","end_lsn":"0/1B0"}"#,
            ]
        );
    }

    #[test]
    fn escapes_strings() {
        let mut s = String::new();
        super::json_str(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, r#""a\"b\\c\nd\u0001""#);
    }
}
