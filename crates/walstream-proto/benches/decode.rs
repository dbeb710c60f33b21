//! Offline decode throughput on real replication captures from PostgreSQL 15 (protocol 1,
//! text format), made by `tests/golden/capture-bench.sh`:
//!
//! | input | capture | rows |
//! |---|---|---|
//! | `narrow-inserts` | `replication-v1-narrow-inserts.bin` | 2000 rows of `(bigint, int, text)` in 20 transactions |
//! | `wide-rows` | `replication-v1-wide-rows.bin` | 400 rows of 16 mixed-type columns in 4 transactions |
//! | `text-2k` | `replication-v1-text-2k.bin` | 100 rows of `(int, text)` with 2048-byte texts in 2 transactions |
//!
//! Each input is measured in three stages, every one of which starts from the whole capture
//! file in memory and cuts its frames with [`CaptureReader`]:
//!
//! - `parse`: frame → [`ReplicationMessage::decode`] (XLogData) → [`PgoutputDecoder::decode`];
//! - `walk`: `parse`, then [`RelationCache::observe`] for Relation, Begin and Commit, and for
//!   each insert the relation resolved and every column's bytes visited with its type;
//! - `typed`: `parse`, then every column of every row decoded to a typed `Value` with
//!   [`TupleData::typed`](walstream_proto::pgoutput::TupleData::typed).
//!
//! # Byte accounting
//!
//! `(bytes)` benchmarks count **the whole capture file**: per frame the 4-byte capture length,
//! the 25-byte XLogData header (`w`, WAL start, WAL end, send time) and the pgoutput message —
//! exactly the `CopyData` payload bytes a walsender sends, plus the 4-byte length that the
//! wire's `CopyData` header (5 bytes) would otherwise take. For `narrow-inserts` that is about
//! 65.5 bytes per message, of which about 36.5 are the pgoutput message itself; the run prints
//! the split for each input. `(messages)` counts every frame (Begin, Relation, Insert,
//! Commit), `(rows)` counts Insert messages.
//!
//! Run with `cargo bench -p walstream-proto --bench decode`.

// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use walstream_proto::pgoutput::{
    ColumnRef, DecodeOptions, PgoutputDecoder, PgoutputMessage, RelationCache, TypedColumn,
};
use walstream_proto::{CaptureReader, ReplicationMessage};

/// The inputs: benchmark name and capture file.
const INPUTS: [(&str, &str); 3] = [
    ("narrow-inserts", "replication-v1-narrow-inserts.bin"),
    ("wide-rows", "replication-v1-wide-rows.bin"),
    ("text-2k", "replication-v1-text-2k.bin"),
];

/// One stage: decodes a whole capture and returns something that depends on every value.
type Stage = fn(&Bytes, DecodeOptions) -> usize;

/// A capture in memory and what it holds.
struct Input {
    capture: Bytes,
    messages: u64,
    rows: u64,
    pgoutput_bytes: u64,
}

fn load(file: &str) -> Input {
    let path = format!("{}/tests/golden/{file}", env!("CARGO_MANIFEST_DIR"));
    let capture = Bytes::from(std::fs::read(&path).expect("benchmark capture"));
    let (mut messages, mut rows, mut pgoutput_bytes) = (0, 0, 0);
    for frame in CaptureReader::new(capture.clone()) {
        let ReplicationMessage::XLogData(x) =
            ReplicationMessage::decode(frame.expect("valid capture")).expect("valid frame")
        else {
            panic!("{file}: the benchmark captures hold XLogData only");
        };
        messages += 1;
        rows += u64::from(x.data.first() == Some(&b'I'));
        pgoutput_bytes += u64::try_from(x.data.len()).expect("small");
    }
    Input {
        capture,
        messages,
        rows,
        pgoutput_bytes,
    }
}

/// The pgoutput messages of a capture, as the replication stream delivers them.
fn messages(capture: &Bytes) -> impl Iterator<Item = Bytes> {
    CaptureReader::new(capture.clone()).map(|frame| {
        match ReplicationMessage::decode(frame.expect("valid capture")).expect("valid frame") {
            ReplicationMessage::XLogData(x) => x.data,
            other => panic!("unexpected {other:?}"),
        }
    })
}

fn parse(capture: &Bytes, options: DecodeOptions) -> usize {
    let mut dec = PgoutputDecoder::new(options);
    let mut n = 0;
    for data in messages(capture) {
        black_box(dec.decode(data).expect("valid message"));
        n += 1;
    }
    n
}

fn walk(capture: &Bytes, options: DecodeOptions) -> usize {
    let mut dec = PgoutputDecoder::new(options);
    let mut cache = RelationCache::new();
    let mut n = 0;
    for data in messages(capture) {
        let m = dec.decode(data).expect("valid message");
        let PgoutputMessage::Insert(insert) = &m else {
            cache.observe(&m).expect("known relation");
            continue;
        };
        let rel = cache.resolve(insert.relation_id).expect("known relation");
        assert_eq!(rel.columns.len(), insert.new.len());
        for (col, v) in rel.columns.iter().zip(insert.new.iter_ref()) {
            if let ColumnRef::Text(b) | ColumnRef::Binary(b) = v {
                n += b.len() ^ usize::try_from(col.type_oid.0).expect("u32 fits");
            }
        }
    }
    n
}

fn typed(capture: &Bytes, options: DecodeOptions) -> usize {
    let mut dec = PgoutputDecoder::new(options);
    let mut cache = RelationCache::new();
    let mut n = 0;
    for data in messages(capture) {
        let m = dec.decode(data).expect("valid message");
        let PgoutputMessage::Insert(insert) = &m else {
            cache.observe(&m).expect("known relation");
            continue;
        };
        let rel = cache.resolve(insert.relation_id).expect("known relation");
        for column in insert.new.typed(rel).expect("matching columns") {
            if let TypedColumn::Value(v) = column.expect("valid value") {
                black_box(&v);
                n += 1;
            }
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let options = DecodeOptions::new(1);
    for (name, file) in INPUTS {
        let input = load(file);
        let bytes = u64::try_from(input.capture.len()).expect("small");
        println!(
            "{name}: {bytes} capture bytes = {} frame lengths + {} XLogData headers + {} pgoutput \
             bytes; {} messages ({:.1} bytes each), {} rows",
            4 * input.messages,
            25 * input.messages,
            input.pgoutput_bytes,
            input.messages,
            bytes as f64 / input.messages as f64,
            input.rows,
        );
        let mut g = c.benchmark_group(format!("decode/{name}"));
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(3));
        let stages: [(&str, Stage, Throughput); 6] = [
            ("parse (bytes)", parse, Throughput::Bytes(bytes)),
            (
                "parse (messages)",
                parse,
                Throughput::Elements(input.messages),
            ),
            ("walk (bytes)", walk, Throughput::Bytes(bytes)),
            ("walk (rows)", walk, Throughput::Elements(input.rows)),
            ("typed (bytes)", typed, Throughput::Bytes(bytes)),
            ("typed (rows)", typed, Throughput::Elements(input.rows)),
        ];
        for (stage, run, throughput) in stages {
            g.throughput(throughput);
            g.bench_function(stage, |b| {
                b.iter(|| run(black_box(&input.capture), options))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
