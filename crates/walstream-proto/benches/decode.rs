//! Parse-only throughput of the `pgoutput` decoder on a real capture of narrow inserts
//! (`tests/golden/pgoutput-v1-narrow-inserts.bin`: 2000 rows of `(bigint, int, text)` in 20
//! transactions, PostgreSQL 15, protocol 1, text format).
//!
//! The last group also decodes every column to a typed `Value` and reports rows per second.
//!
//! Run with `cargo bench -p walstream-proto --bench decode`.

// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use walstream_proto::pgoutput::{
    ColumnValue, DecodeOptions, PgoutputDecoder, PgoutputMessage, RelationCache,
};
use walstream_proto::{ValueFormat, decode_value};

fn frames() -> Vec<Bytes> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/pgoutput-v1-narrow-inserts.bin"
    );
    let mut data = Bytes::from(std::fs::read(path).expect("golden capture"));
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let len = usize::try_from(len).expect("u32 fits usize");
        let _ = data.split_to(4);
        out.push(data.split_to(len));
    }
    out
}

fn bench(c: &mut Criterion) {
    let frames = frames();
    let bytes: usize = frames.iter().map(Bytes::len).sum();
    let options = DecodeOptions::new(1);

    // The caller owns each frame (as when a framer splits them off its read buffer), so the
    // decoder gets them by value; cloning them is setup, not measured.
    let mut g = c.benchmark_group("pgoutput-narrow-inserts");
    for (name, throughput) in [
        (
            "decode (bytes)",
            Throughput::Bytes(u64::try_from(bytes).expect("small")),
        ),
        (
            "decode (messages)",
            Throughput::Elements(u64::try_from(frames.len()).expect("small")),
        ),
    ] {
        g.throughput(throughput);
        g.bench_function(name, |b| {
            b.iter_batched(
                || frames.clone(),
                |owned| {
                    let mut dec = PgoutputDecoder::new(options);
                    for f in owned {
                        black_box(dec.decode(f).expect("valid capture"));
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.bench_function("decode + resolve + iterate columns (messages)", |b| {
        b.iter(|| {
            let mut dec = PgoutputDecoder::new(options);
            let mut cache = RelationCache::new();
            let mut n = 0usize;
            for f in &frames {
                let m = dec.decode(f.clone()).expect("valid capture");
                cache.observe(&m).expect("known relation");
                if let PgoutputMessage::Insert(i) = &m {
                    for v in i.new.iter_ref() {
                        n += v.as_bytes().map_or(0, <[u8]>::len);
                    }
                }
            }
            black_box(n)
        })
    });
    g.finish();

    // Parse plus typed values: every column of every inserted row decoded to a `Value`.
    let rows = frames.iter().filter(|f| f.first() == Some(&b'I')).count();
    let mut g = c.benchmark_group("pgoutput-narrow-inserts-values");
    g.throughput(Throughput::Elements(u64::try_from(rows).expect("small")));
    g.bench_function("decode + typed values (rows)", |b| {
        b.iter(|| {
            let mut dec = PgoutputDecoder::new(options);
            let mut cache = RelationCache::new();
            let mut n = 0usize;
            for f in &frames {
                let m = dec.decode(f.clone()).expect("valid capture");
                cache.observe(&m).expect("known relation");
                if let PgoutputMessage::Insert(i) = &m {
                    let rel = cache.resolve(i.relation_id).expect("known relation");
                    for (col, v) in rel.columns.iter().zip(i.new.iter()) {
                        let (format, data) = match v {
                            ColumnValue::Text(d) => (ValueFormat::Text, d),
                            ColumnValue::Binary(d) => (ValueFormat::Binary, d),
                            ColumnValue::Null | ColumnValue::UnchangedToast => continue,
                        };
                        let value = decode_value(col.type_oid, format, data).expect("valid value");
                        black_box(&value);
                        n += 1;
                    }
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
