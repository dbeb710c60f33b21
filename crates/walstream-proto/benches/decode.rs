//! Parse-only throughput of the `pgoutput` decoder on a real capture of narrow inserts
//! (`tests/golden/pgoutput-v1-narrow-inserts.bin`: 2000 rows of `(bigint, int, text)` in 20
//! transactions, PostgreSQL 15, protocol 1, text format).
//!
//! Run with `cargo bench -p walstream-proto --bench decode`.

// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use walstream_proto::pgoutput::{DecodeOptions, PgoutputDecoder, PgoutputMessage, RelationCache};

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
