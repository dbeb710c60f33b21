//! Decodes a capture file (replication `CopyData` frames or bare `pgoutput` messages).
//!
//! ```text
//! cargo run --release -p walstream-proto --example decode -- FILE [--json | --count]
//!     [--protocol N] [--parallel]
//! ```
//!
//! `--json` prints one JSON object per message, with typed column values; `--count` prints
//! the number of messages of each kind and the decoding throughput. The protocol version
//! defaults to 4 (older captures decode with it too); `--parallel` says the slot was started
//! with `streaming 'parallel'`, so that Stream Abort carries its abort LSN and time.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use walstream_proto::pgoutput::{
    DecodeOptions, PgoutputDecoder, PgoutputMessage, RelationCache, TupleData, TypedColumn,
};
use walstream_proto::{CaptureKind, CaptureReader, Lsn, ReplicationMessage};

enum Mode {
    Json,
    Count,
}

fn usage() -> ExitCode {
    eprintln!("usage: decode FILE [--json | --count] [--protocol N] [--parallel]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut file = None;
    let mut mode = Mode::Json;
    let mut protocol = 4u32;
    let mut parallel = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => mode = Mode::Json,
            "--count" => mode = Mode::Count,
            "--parallel" => parallel = true,
            "--protocol" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => protocol = v,
                None => return usage(),
            },
            _ if file.is_none() && !a.starts_with("--") => file = Some(a),
            _ => return usage(),
        }
    }
    let Some(file) = file else { return usage() };
    let data = match std::fs::read(&file) {
        Ok(d) => Bytes::from(d),
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = DecodeOptions::new(protocol).with_parallel_streaming(parallel);
    match run(data, options, &mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{file}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(data: Bytes, options: DecodeOptions, mode: &Mode) -> Result<(), Box<dyn std::error::Error>> {
    let total_bytes = data.len();
    let mut reader = CaptureReader::new(data);
    let kind = reader.kind();
    let kind_name = match kind {
        Some(CaptureKind::Replication) => "replication (CopyData frames)",
        Some(CaptureKind::Pgoutput) => "bare pgoutput messages",
        None => "empty",
    };
    eprintln!("capture kind: {kind_name}");
    let mut decoder = PgoutputDecoder::new(options);
    let mut cache = RelationCache::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut messages = 0u64;
    let mut keepalives = 0u64;
    let mut line = String::new();
    let stdout = std::io::stdout();
    let mut stdout = std::io::BufWriter::new(stdout.lock());
    let start = Instant::now();
    for frame in reader.by_ref() {
        let frame = frame?;
        let (lsn, payload) = match kind {
            Some(CaptureKind::Replication) => match ReplicationMessage::decode(frame)? {
                ReplicationMessage::XLogData(x) => (Some(x.wal_start), x.data),
                _ => {
                    keepalives += 1;
                    continue;
                }
            },
            _ => (None, frame),
        };
        let msg = decoder.decode(payload)?;
        cache.observe(&msg)?;
        messages += 1;
        *counts.entry(kind_of(&msg)).or_default() += 1;
        if let Mode::Json = mode {
            line.clear();
            write_json(&mut line, lsn, &msg, &cache)?;
            line.push('\n');
            if let Err(e) = stdout.write_all(line.as_bytes()) {
                return quiet_pipe(e);
            }
        }
    }
    if let Err(e) = stdout.flush() {
        return quiet_pipe(e);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Mode::Count = mode {
        for (k, n) in &counts {
            println!("{k:<18} {n}");
        }
        if keepalives > 0 {
            println!("{:<18} {keepalives}", "(non-data frames)");
        }
        println!("{:<18} {messages}", "total");
        let secs = elapsed.max(1e-9);
        #[allow(clippy::cast_precision_loss)]
        let (mb, msgs) = (total_bytes as f64 / 1e6, messages as f64);
        println!(
            "{total_bytes} bytes (the whole file) in {:.3} ms: {:.1} MB/s, {:.0} messages/s",
            elapsed * 1e3,
            mb / secs,
            msgs / secs
        );
    }
    Ok(())
}

/// A closed pipe (`decode FILE --json | head`) ends the output without an error.
fn quiet_pipe(e: std::io::Error) -> Result<(), Box<dyn std::error::Error>> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e.into())
    }
}

fn kind_of(msg: &PgoutputMessage) -> &'static str {
    match msg {
        PgoutputMessage::Begin(_) => "begin",
        PgoutputMessage::Commit(_) => "commit",
        PgoutputMessage::Origin(_) => "origin",
        PgoutputMessage::Relation(_) => "relation",
        PgoutputMessage::Type(_) => "type",
        PgoutputMessage::Insert(_) => "insert",
        PgoutputMessage::Update(_) => "update",
        PgoutputMessage::Delete(_) => "delete",
        PgoutputMessage::Truncate(_) => "truncate",
        PgoutputMessage::Message(_) => "message",
        PgoutputMessage::StreamStart(_) => "stream_start",
        PgoutputMessage::StreamStop => "stream_stop",
        PgoutputMessage::StreamCommit(_) => "stream_commit",
        PgoutputMessage::StreamAbort(_) => "stream_abort",
        PgoutputMessage::BeginPrepare(_) => "begin_prepare",
        PgoutputMessage::Prepare(_) => "prepare",
        PgoutputMessage::CommitPrepared(_) => "commit_prepared",
        PgoutputMessage::RollbackPrepared(_) => "rollback_prepared",
        PgoutputMessage::StreamPrepare(_) => "stream_prepare",
        _ => "unknown",
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn field_lsn(out: &mut String, name: &str, lsn: Lsn) {
    out.push_str(&format!(",\"{name}\":\"{lsn}\""));
}

fn write_json(
    out: &mut String,
    wal_start: Option<Lsn>,
    msg: &PgoutputMessage,
    cache: &RelationCache,
) -> Result<(), Box<dyn std::error::Error>> {
    out.push_str("{\"kind\":\"");
    out.push_str(kind_of(msg));
    out.push('"');
    if let Some(l) = wal_start {
        field_lsn(out, "wal_start", l);
    }
    match msg {
        PgoutputMessage::Begin(b) => {
            field_lsn(out, "final_lsn", b.final_lsn);
            out.push_str(&format!(
                ",\"xid\":{},\"commit_time\":\"{}\"",
                b.xid.0, b.commit_time
            ));
        }
        PgoutputMessage::Commit(c) => {
            field_lsn(out, "commit_lsn", c.commit_lsn);
            field_lsn(out, "end_lsn", c.end_lsn);
        }
        PgoutputMessage::StreamStart(s) => out.push_str(&format!(
            ",\"xid\":{},\"first_segment\":{}",
            s.xid.0, s.first_segment
        )),
        PgoutputMessage::StreamCommit(c) => {
            out.push_str(&format!(",\"xid\":{}", c.xid.0));
            field_lsn(out, "commit_lsn", c.commit_lsn);
            field_lsn(out, "end_lsn", c.end_lsn);
        }
        PgoutputMessage::StreamAbort(a) => {
            out.push_str(&format!(",\"xid\":{},\"subxid\":{}", a.xid.0, a.subxid.0));
            if let Some(info) = &a.abort_info {
                field_lsn(out, "abort_lsn", info.abort_lsn);
                out.push_str(&format!(",\"abort_time\":\"{}\"", info.abort_time));
            }
        }
        PgoutputMessage::BeginPrepare(p) => {
            out.push_str(&format!(",\"xid\":{},\"gid\":", p.xid.0));
            json_str(out, &p.gid);
            field_lsn(out, "prepare_lsn", p.prepare_lsn);
        }
        PgoutputMessage::Prepare(p) | PgoutputMessage::StreamPrepare(p) => {
            out.push_str(&format!(",\"xid\":{},\"gid\":", p.xid.0));
            json_str(out, &p.gid);
            field_lsn(out, "prepare_lsn", p.prepare_lsn);
        }
        PgoutputMessage::CommitPrepared(p) => {
            out.push_str(&format!(",\"xid\":{},\"gid\":", p.xid.0));
            json_str(out, &p.gid);
            field_lsn(out, "commit_lsn", p.commit_lsn);
        }
        PgoutputMessage::RollbackPrepared(p) => {
            out.push_str(&format!(",\"xid\":{},\"gid\":", p.xid.0));
            json_str(out, &p.gid);
        }
        PgoutputMessage::Origin(o) => {
            out.push_str(",\"name\":");
            json_str(out, &o.name);
        }
        PgoutputMessage::Relation(r) => {
            xid(out, r.xid);
            table(out, &r.relation.namespace, &r.relation.name);
            out.push_str(",\"columns\":[");
            for (i, c) in r.relation.columns.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_str(out, &c.name);
            }
            out.push(']');
        }
        PgoutputMessage::Type(t) => {
            xid(out, t.xid);
            table(out, &t.pg_type.namespace, &t.pg_type.name);
        }
        PgoutputMessage::Insert(i) => {
            xid(out, i.xid);
            relation_name(out, cache, i.relation_id)?;
            tuple(out, cache, i.relation_id, "new", &i.new)?;
        }
        PgoutputMessage::Update(u) => {
            xid(out, u.xid);
            relation_name(out, cache, u.relation_id)?;
            if let Some(old) = &u.old {
                tuple(out, cache, u.relation_id, "old", old.tuple())?;
            }
            tuple(out, cache, u.relation_id, "new", &u.new)?;
        }
        PgoutputMessage::Delete(d) => {
            xid(out, d.xid);
            relation_name(out, cache, d.relation_id)?;
            tuple(out, cache, d.relation_id, "old", d.old.tuple())?;
        }
        PgoutputMessage::Truncate(t) => {
            xid(out, t.xid);
            out.push_str(",\"tables\":[");
            for (i, oid) in t.relation_ids.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let r = cache.resolve(*oid)?;
                json_str(out, &format!("{}.{}", r.namespace, r.name));
            }
            out.push(']');
        }
        PgoutputMessage::Message(m) => {
            xid(out, m.xid);
            field_lsn(out, "lsn", m.lsn);
            out.push_str(",\"prefix\":");
            json_str(out, &m.prefix);
            out.push_str(&format!(",\"content_len\":{}", m.content.len()));
        }
        _ => {}
    }
    out.push('}');
    Ok(())
}

fn xid(out: &mut String, xid: Option<walstream_proto::Xid>) {
    if let Some(x) = xid {
        out.push_str(&format!(",\"xid\":{}", x.0));
    }
}

fn relation_name(
    out: &mut String,
    cache: &RelationCache,
    relation: walstream_proto::Oid,
) -> Result<(), Box<dyn std::error::Error>> {
    let rel = cache.resolve(relation)?;
    table(out, &rel.namespace, &rel.name);
    Ok(())
}

fn table(out: &mut String, schema: &str, name: &str) {
    out.push_str(",\"schema\":");
    json_str(out, schema);
    out.push_str(",\"table\":");
    json_str(out, name);
}

/// Writes `"<key>":{column: value, ...}` and, when some columns are unchanged TOAST values,
/// `"<key>_unchanged_toast":[column, ...]` (those columns are absent from the object).
fn tuple(
    out: &mut String,
    cache: &RelationCache,
    relation: walstream_proto::Oid,
    key: &str,
    tuple: &TupleData,
) -> Result<(), Box<dyn std::error::Error>> {
    let rel = cache.resolve(relation)?;
    out.push_str(&format!(",\"{key}\":{{"));
    let mut unchanged = Vec::new();
    let mut first = true;
    for (col, v) in rel.columns.iter().zip(tuple.typed(rel)?) {
        let value = match v? {
            TypedColumn::UnchangedToast => {
                unchanged.push(col.name.as_str());
                continue;
            }
            TypedColumn::Null => None,
            TypedColumn::Value(v) => Some(v),
        };
        if !first {
            out.push(',');
        }
        first = false;
        json_str(out, &col.name);
        out.push(':');
        match value {
            Some(v) => v.write_json(out),
            None => out.push_str("null"),
        }
    }
    out.push('}');
    if !unchanged.is_empty() {
        out.push_str(&format!(",\"{key}_unchanged_toast\":["));
        for (i, name) in unchanged.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(out, name);
        }
        out.push(']');
    }
    Ok(())
}
