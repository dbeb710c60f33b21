//! Golden `pgoutput` frames captured from PostgreSQL 15 by `tests/golden/capture.sh`.
//!
//! Every frame must decode, resolve against the relation cache, and re-encode to exactly the
//! captured bytes; the workload's known facts (relation names, xids, TOAST markers, truncate
//! options, stream and two-phase sequencing) are checked per file. Protocol 4 needs
//! PostgreSQL 16+, so its Stream Abort layout is tested with frames written from the docs.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use walstream_proto::pgoutput::{
    ColumnValue, DecodeOptions, MessageTag, Observed, OldTuple, PgoutputDecoder, PgoutputMessage,
    Relation, RelationCache, RelationChange, ReplicaIdentity, StreamAbort,
};
use walstream_proto::{DecodeError, Lsn, Oid, PgTimestamp, Xid};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

fn frames(file: &str) -> Vec<Bytes> {
    let data = std::fs::read(format!("{GOLDEN}/{file}")).unwrap();
    let mut data = Bytes::from(data);
    let mut out = Vec::new();
    while !data.is_empty() {
        let len = usize::try_from(u32::from_be_bytes(data[..4].try_into().unwrap())).unwrap();
        let _ = data.split_to(4);
        out.push(data.split_to(len));
    }
    assert!(!out.is_empty(), "{file} holds no frames");
    out
}

fn meta() -> HashMap<String, u32> {
    std::fs::read_to_string(format!("{GOLDEN}/pgoutput-meta.txt"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

fn xid(name: &str) -> Xid {
    Xid(meta()[name])
}

/// Everything decoded from one capture file, in order, plus whether each was in a stream.
struct Decoded {
    msgs: Vec<(bool, PgoutputMessage)>,
    cache: RelationCache,
    changes: Vec<(Arc<Relation>, RelationChange)>,
    rows: Vec<Arc<Relation>>,
}

fn decode_file(file: &str, opts: DecodeOptions) -> Decoded {
    let mut dec = PgoutputDecoder::new(opts);
    let mut cache = RelationCache::new();
    let mut d = Decoded {
        msgs: Vec::new(),
        cache: RelationCache::new(),
        changes: Vec::new(),
        rows: Vec::new(),
    };
    for (i, frame) in frames(file).into_iter().enumerate() {
        let in_stream = dec.in_stream();
        let msg = dec
            .decode(frame.clone())
            .unwrap_or_else(|e| panic!("{file} frame {i}: {e}"));
        // Stateless decoding agrees with the stateful decoder.
        assert_eq!(
            PgoutputMessage::decode(frame.clone(), in_stream, &opts).unwrap(),
            msg
        );
        // Re-encoding gives exactly the captured bytes.
        assert_eq!(
            msg.to_bytes().unwrap(),
            frame,
            "{file} frame {i} re-encodes differently"
        );
        assert_eq!(msg.tag(), MessageTag(frame[0]));
        assert_eq!(
            msg.stream_xid().is_some(),
            in_stream && matches!(frame[0], b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M')
        );
        match cache
            .observe(&msg)
            .unwrap_or_else(|e| panic!("{file} frame {i}: {e}"))
        {
            Observed::Relation { relation, change } => d.changes.push((relation, change)),
            Observed::Row(r) => d.rows.push(r),
            Observed::Truncate(rs) => d.rows.extend(rs),
            _ => {}
        }
        d.msgs.push((in_stream, msg));
    }
    assert!(!dec.in_stream(), "{file} ends inside a streamed block");
    d.cache = cache;
    d
}

fn rel<'a>(d: &'a Decoded, name: &str) -> &'a Arc<Relation> {
    d.changes
        .iter()
        .map(|(r, _)| r)
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no relation {name}"))
}

fn text(v: &str) -> ColumnValue {
    ColumnValue::Text(Bytes::copy_from_slice(v.as_bytes()))
}

/// Checks shared by every capture: the non-streamed part of the workload.
fn check_common(d: &Decoded, binary: bool) {
    let t_default = rel(d, "t_default");
    let t_full = rel(d, "t_full");
    let t_types = rel(d, "t_types");
    assert_eq!(t_default.namespace, "public");
    assert_eq!(t_default.replica_identity, ReplicaIdentity::DEFAULT);
    assert_eq!(t_full.replica_identity, ReplicaIdentity::FULL);
    assert_eq!(
        t_default
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.is_key()))
            .collect::<Vec<_>>(),
        [("id", true), ("name", false), ("big", false)]
    );
    assert!(
        t_full.columns.iter().all(|c| c.is_key()),
        "FULL identity marks every column"
    );
    // Column types of t_types, with type modifiers for numeric(10,2) and varchar(20).
    let mood = d
        .msgs
        .iter()
        .find_map(|(_, m)| match m {
            PgoutputMessage::Type(t) => Some(t.pg_type.clone()),
            _ => None,
        })
        .expect("a Type message");
    assert_eq!(
        (mood.namespace.as_str(), mood.name.as_str()),
        ("public", "mood")
    );
    assert_eq!(d.cache.pg_type(mood.oid), Some(&mood));
    let types: Vec<(u32, i32)> = t_types
        .columns
        .iter()
        .map(|c| (c.type_oid.0, c.type_modifier))
        .collect();
    assert_eq!(
        types,
        [
            (23, -1),
            (16, -1),
            (21, -1),
            (20, -1),
            (1700, (10 << 16 | 2) + 4),
            (701, -1),
            (1184, -1),
            (1082, -1),
            (2950, -1),
            (3802, -1),
            (17, -1),
            (1007, -1),
            (mood.oid.0, -1),
            (1043, 20 + 4),
            (25, -1)
        ]
    );
    // Re-sends of an unchanged relation are reported as such.
    assert!(
        d.changes
            .iter()
            .any(|(r, c)| r.name == "t_types" && *c == RelationChange::Unchanged)
    );
    assert_eq!(
        d.changes
            .iter()
            .filter(|(_, c)| *c == RelationChange::New)
            .count(),
        d.cache.relation_count()
    );
    assert!(d.rows.iter().any(|r| r.name == "t_big"));

    // Updates: t_default without old key and an unchanged TOAST column, then with the old key;
    // t_full with the whole old row.
    let updates: Vec<_> = d
        .msgs
        .iter()
        .filter_map(|(_, m)| match m {
            PgoutputMessage::Update(u) => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(updates.len(), 3);
    let value = |s: &str| {
        if binary {
            ColumnValue::Binary(Bytes::copy_from_slice(s.as_bytes()))
        } else {
            text(s)
        }
    };
    let int4 = |v: i32| {
        if binary {
            ColumnValue::Binary(Bytes::copy_from_slice(&v.to_be_bytes()))
        } else {
            text(&v.to_string())
        }
    };
    assert_eq!(updates[0].relation_id, t_default.oid);
    assert!(updates[0].old.is_none());
    assert_eq!(
        updates[0].new.iter().collect::<Vec<_>>(),
        [int4(1), value("b"), ColumnValue::UnchangedToast]
    );
    let Some(OldTuple::Key(key)) = &updates[1].old else {
        panic!("expected K old tuple")
    };
    assert_eq!(
        key.iter().collect::<Vec<_>>(),
        [int4(1), ColumnValue::Null, ColumnValue::Null]
    );
    assert_eq!(updates[1].new.get(0), Some(int4(2)));
    assert!(updates[1].new.has_unchanged_toast());
    assert_eq!(updates[2].relation_id, t_full.oid);
    let Some(OldTuple::Full(old)) = &updates[2].old else {
        panic!("expected O old tuple")
    };
    assert_eq!(old.get(1), Some(value("v1")));
    assert_eq!(old.len(), 3);
    assert_eq!(updates[2].new.get(1), Some(value("v2")));
    assert_eq!(updates[2].new.get(2), Some(ColumnValue::UnchangedToast));

    // Deletes: K for DEFAULT, O for FULL.
    let deletes: Vec<_> = d
        .msgs
        .iter()
        .filter_map(|(_, m)| match m {
            PgoutputMessage::Delete(x) => Some(x),
            _ => None,
        })
        .collect();
    assert_eq!(deletes.len(), 2);
    assert!(matches!(&deletes[0].old, OldTuple::Key(k) if k.get(0) == Some(int4(2))));
    assert!(matches!(&deletes[1].old, OldTuple::Full(o) if o.get(1) == Some(value("v2"))));

    // The first insert carries the 3000-byte TOASTed value in full.
    let first_insert = d
        .msgs
        .iter()
        .find_map(|(_, m)| match m {
            PgoutputMessage::Insert(i) => Some(i),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        first_insert
            .new
            .get(2)
            .and_then(|v| v.as_bytes().map(|b| b.len())),
        Some(3000)
    );

    // The many-types row.
    let row = d
        .msgs
        .iter()
        .find_map(|(_, m)| match m {
            PgoutputMessage::Insert(i)
                if i.relation_id == t_types.oid && i.new.get(1) != Some(ColumnValue::Null) =>
            {
                Some(i)
            }
            _ => None,
        })
        .unwrap();
    let vals: Vec<_> = row.new.iter().collect();
    assert_eq!(vals.len(), 15);
    assert_eq!(vals[14], ColumnValue::Null);
    if binary {
        assert_eq!(vals[1], ColumnValue::Binary(Bytes::from_static(b"\x01")));
        assert_eq!(
            vals[2],
            ColumnValue::Binary(Bytes::from_static(b"\xff\xfe"))
        );
        assert_eq!(
            vals[3],
            ColumnValue::Binary(Bytes::copy_from_slice(&9_000_000_000i64.to_be_bytes()))
        );
        assert_eq!(
            vals[5],
            ColumnValue::Binary(Bytes::copy_from_slice(&1.5f64.to_be_bytes()))
        );
        assert_eq!(
            vals[10],
            ColumnValue::Binary(Bytes::from_static(b"\x00\xff"))
        );
        assert_eq!(vals[12], ColumnValue::Binary(Bytes::from_static(b"happy")));
    } else {
        let texts: Vec<_> = vals[1..14].iter().map(|v| v.as_text().unwrap()).collect();
        assert_eq!(
            texts,
            [
                "t",
                "-2",
                "9000000000",
                "12.34",
                "1.5",
                "2024-02-29 12:34:56.789+00",
                "2024-02-29",
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "{\"k\": [1, 2]}",
                "\\x00ff",
                "{1,2,3}",
                "happy",
                "varchar"
            ]
        );
    }

    // Truncates: CASCADE + RESTART IDENTITY on two tables, then a plain one.
    let truncs: Vec<_> = d
        .msgs
        .iter()
        .filter_map(|(_, m)| match m {
            PgoutputMessage::Truncate(t) => Some(t),
            _ => None,
        })
        .collect();
    assert!(truncs.len() >= 2);
    assert!(truncs[0].options.cascade() && truncs[0].options.restart_identity());
    assert_eq!(
        truncs[0].relation_ids,
        [rel(d, "t_parent").oid, rel(d, "t_child").oid]
    );
    assert_eq!(truncs[1].options.0, 0);
    assert_eq!(truncs[1].relation_ids, [t_types.oid]);

    // Logical messages, transactional and not.
    let msgs: Vec<_> = d
        .msgs
        .iter()
        .filter_map(|(s, m)| match m {
            PgoutputMessage::Message(x) => Some((*s, x)),
            _ => None,
        })
        .collect();
    assert_eq!(msgs.len(), 3);
    assert!(msgs[0].1.is_transactional());
    assert_eq!(
        (msgs[0].1.prefix.as_str(), &msgs[0].1.content[..]),
        ("walstream", &b"transactional content"[..])
    );
    assert!(!msgs[1].1.is_transactional());
    assert_eq!(
        (msgs[1].1.prefix.as_str(), &msgs[1].1.content[..]),
        ("walstream-nt", &b"\x00\xff\x01"[..])
    );
    assert!(msgs[2].1.is_transactional());
    assert_eq!(msgs[2].1.prefix, "walstream-stream");
    assert!(msgs[0].1.lsn < msgs[1].1.lsn && msgs[1].1.lsn < msgs[2].1.lsn);

    // The origin transaction: Begin, Origin, Insert, Commit, the last four messages.
    let n = d.msgs.len();
    let tail: Vec<_> = d.msgs[n - 4..].iter().map(|(_, m)| m).collect();
    let PgoutputMessage::Begin(b) = tail[0] else {
        panic!("expected Begin, got {:?}", tail[0])
    };
    assert_eq!(b.xid, xid("origin_xid"));
    let PgoutputMessage::Origin(o) = tail[1] else {
        panic!("expected Origin")
    };
    assert_eq!(
        (o.name.as_str(), o.commit_lsn),
        ("walstream-origin", "0/ABCDEF".parse::<Lsn>().unwrap())
    );
    let PgoutputMessage::Commit(c) = tail[3] else {
        panic!("expected Commit")
    };
    assert_eq!(c.commit_lsn, b.final_lsn);
    assert!(c.end_lsn > c.commit_lsn);
    assert_eq!(c.commit_time, b.commit_time);
    assert!(b.commit_time.to_string().starts_with("20"));

    // Every Begin is matched by a Commit with the same LSN.
    let mut open: Option<Lsn> = None;
    for (_, m) in &d.msgs {
        match m {
            PgoutputMessage::Begin(b) => assert!(open.replace(b.final_lsn).is_none()),
            PgoutputMessage::Commit(c) => assert_eq!(open.take(), Some(c.commit_lsn)),
            _ => {}
        }
    }
}

/// The streamed transactions (protocol 2 and later).
fn check_streams(d: &Decoded, prepared_as_stream_commit: bool) {
    let commit_xid = xid("streamed_commit_xid");
    let starts: Vec<_> = d
        .msgs
        .iter()
        .filter_map(|(_, m)| match m {
            PgoutputMessage::StreamStart(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert!(
        starts.iter().filter(|s| s.xid == commit_xid).count() >= 2,
        "expected several blocks"
    );
    for x in starts.iter().map(|s| s.xid) {
        let of_x: Vec<_> = starts.iter().filter(|s| s.xid == x).collect();
        assert!(of_x[0].first_segment && of_x[1..].iter().all(|s| !s.first_segment));
    }
    // Inside blocks, changes carry the xid of the streamed (sub)transaction.
    let mut current = None;
    for (in_stream, m) in &d.msgs {
        match m {
            PgoutputMessage::StreamStart(s) => current = Some(s.xid),
            PgoutputMessage::StreamStop => current = None,
            // A subtransaction's changes (and the Relation sent before them) carry its own
            // xid, which is assigned after the top-level one.
            _ if *in_stream
                && m.tag() != MessageTag::STREAM_STOP
                && m.tag() != MessageTag::ORIGIN =>
            {
                assert!(m.stream_xid().unwrap() >= current.unwrap(), "{m:?}")
            }
            _ => assert!(m.stream_xid().is_none()),
        }
    }
    let commits: Vec<_> = d
        .msgs
        .iter()
        .filter_map(|(_, m)| match m {
            PgoutputMessage::StreamCommit(c) => Some(*c),
            _ => None,
        })
        .collect();
    let mut want = vec![commit_xid, xid("streamed_subabort_xid")];
    if prepared_as_stream_commit {
        want.push(xid("stream_prepared_xid"));
    }
    assert_eq!(commits.iter().map(|c| c.xid).collect::<Vec<_>>(), want);
    assert!(
        commits
            .iter()
            .all(|c| c.end_lsn > c.commit_lsn && c.flags == 0)
    );

    let aborts: Vec<StreamAbort> = d
        .msgs
        .iter()
        .filter_map(|(_, m)| match m {
            PgoutputMessage::StreamAbort(a) => Some(*a),
            _ => None,
        })
        .collect();
    assert_eq!(aborts.len(), 2);
    // The rolled-back subtransaction.
    assert_eq!(aborts[0].xid, xid("streamed_subabort_xid"));
    assert!(!aborts[0].is_toplevel() && aborts[0].subxid.0 > aborts[0].xid.0);
    assert!(aborts[0].abort_info.is_none());
    // Its changes were streamed under the subxid.
    assert!(
        d.msgs.iter().any(
            |(_, m)| matches!(m, PgoutputMessage::Insert(i) if i.xid == Some(aborts[0].subxid))
        )
    );
    // The transaction rolled back as a whole.
    assert_eq!(aborts[1].xid, xid("streamed_abort_xid"));
    assert!(aborts[1].is_toplevel());
}

/// Two-phase messages (protocol 3 with `two_phase`).
fn check_two_phase(d: &Decoded) {
    let seq: Vec<_> = d
        .msgs
        .iter()
        .map(|(_, m)| m.tag().0)
        .filter(|t| b"bPKrp".contains(t))
        .collect();
    assert_eq!(seq, b"bPKbPrpK");
    let mut gids = Vec::new();
    for (_, m) in &d.msgs {
        match m {
            PgoutputMessage::BeginPrepare(b) => gids.push(("b", b.xid, b.gid.clone())),
            PgoutputMessage::Prepare(p) => {
                assert!(p.end_lsn > p.prepare_lsn);
                gids.push(("P", p.xid, p.gid.clone()));
            }
            PgoutputMessage::StreamPrepare(p) => gids.push(("p", p.xid, p.gid.clone())),
            PgoutputMessage::CommitPrepared(c) => gids.push(("K", c.xid, c.gid.clone())),
            PgoutputMessage::RollbackPrepared(r) => {
                assert!(
                    r.rollback_end_lsn > r.prepare_end_lsn && r.rollback_time >= r.prepare_time
                );
                gids.push(("r", r.xid, r.gid.clone()));
            }
            _ => {}
        }
    }
    let (g1, g2, g3) = (
        xid("prepared_commit_xid"),
        xid("prepared_rollback_xid"),
        xid("stream_prepared_xid"),
    );
    let want = [
        ("b", g1, "walstream-gx1"),
        ("P", g1, "walstream-gx1"),
        ("K", g1, "walstream-gx1"),
        ("b", g2, "walstream-gx2"),
        ("P", g2, "walstream-gx2"),
        ("r", g2, "walstream-gx2"),
        ("p", g3, "walstream-gx3"),
        ("K", g3, "walstream-gx3"),
    ];
    assert_eq!(
        gids.iter()
            .map(|(k, x, g)| (*k, *x, g.as_str()))
            .collect::<Vec<_>>(),
        want
    );
}

#[test]
fn v1_text() {
    let d = decode_file("pgoutput-v1-text.bin", DecodeOptions::new(1));
    check_common(&d, false);
    assert!(
        !d.msgs
            .iter()
            .any(|(_, m)| m.tag().min_protocol_version() != Some(1))
    );
}

#[test]
fn v1_binary() {
    let d = decode_file("pgoutput-v1-binary.bin", DecodeOptions::new(1));
    check_common(&d, true);
}

#[test]
fn v2_streaming() {
    let d = decode_file("pgoutput-v2-stream.bin", DecodeOptions::new(2));
    check_common(&d, false);
    check_streams(&d, true);
    // Protocol 1 does not know Stream Start.
    let mut dec = PgoutputDecoder::new(DecodeOptions::new(1));
    let first_stream = frames("pgoutput-v2-stream.bin")
        .into_iter()
        .find(|f| f[0] == MessageTag::STREAM_START.0)
        .unwrap();
    assert!(matches!(
        dec.decode(first_stream),
        Err(DecodeError::InvalidValue { .. })
    ));
}

#[test]
fn v3_two_phase_text_and_binary() {
    for (file, binary) in [
        ("pgoutput-v3-twophase.bin", false),
        ("pgoutput-v3-twophase-binary.bin", true),
    ] {
        let d = decode_file(file, DecodeOptions::new(3));
        check_common(&d, binary);
        check_streams(&d, false);
        check_two_phase(&d);
    }
}

/// Streamed Stream Abort frames decoded as protocol 4 with parallel streaming would need 16
/// more bytes: the same captured frames must fail, not be misread.
#[test]
fn v3_frames_are_not_v4_parallel() {
    let par = DecodeOptions::new(4).with_parallel_streaming(true);
    let abort = frames("pgoutput-v3-twophase.bin")
        .into_iter()
        .find(|f| f[0] == b'A')
        .unwrap();
    assert!(matches!(
        PgoutputMessage::decode(abort.clone(), false, &par),
        Err(DecodeError::UnexpectedEof { .. })
    ));
    // Protocol 4 without parallel streaming has the v2 layout.
    assert!(PgoutputMessage::decode(abort, false, &DecodeOptions::new(4)).is_ok());
}

/// Protocol 4 (PostgreSQL 16+, `streaming = parallel`) Stream Abort, written byte by byte from
/// the documentation: Byte1('A'), Int32 xid, Int32 subxid, Int64 abort LSN, Int64 abort time.
#[test]
fn v4_parallel_stream_abort_handcrafted() {
    let mut b = BytesMut::new();
    b.put_u8(b'S');
    b.put_u32(900);
    b.put_u8(1);
    let start = b.split().freeze();
    b.put_u8(b'I');
    b.put_u32(901);
    b.put_u32(16384);
    b.put_u8(b'N');
    b.put_u16(1);
    b.put_u8(b't');
    b.put_u32(2);
    b.put_slice(b"42");
    let insert = b.split().freeze();
    let stop = Bytes::from_static(b"E");
    b.put_u8(b'A');
    b.put_u32(900);
    b.put_u32(901);
    b.put_u64(0x0000_0001_0200_0300);
    b.put_i64(789_000_000);
    let abort = b.split().freeze();

    let opts = DecodeOptions::new(4).with_parallel_streaming(true);
    assert!(opts.stream_abort_has_abort_info());
    let mut dec = PgoutputDecoder::new(opts);
    let mut cache = RelationCache::new();
    for f in [&start, &insert, &stop, &abort] {
        let m = dec.decode(f.clone()).unwrap();
        assert_eq!(&m.to_bytes().unwrap(), f);
        if let PgoutputMessage::Insert(i) = &m {
            assert_eq!(i.xid, Some(Xid(901)));
            assert_eq!(i.relation_id, Oid(16384));
            assert_eq!(i.new.get(0).unwrap().as_text(), Some("42"));
            assert!(matches!(
                cache.observe(&m),
                Err(DecodeError::UnknownRelation { oid: 16384, .. })
            ));
        }
        if let PgoutputMessage::StreamAbort(a) = m {
            assert_eq!((a.xid, a.subxid), (Xid(900), Xid(901)));
            let info = a.abort_info.unwrap();
            assert_eq!(info.abort_lsn.to_string(), "1/2000300");
            assert_eq!(info.abort_time, PgTimestamp(789_000_000));
        }
    }
    // Without parallel streaming the same frame has 16 trailing bytes.
    assert!(matches!(
        PgoutputMessage::decode(abort, false, &DecodeOptions::new(4)),
        Err(DecodeError::TrailingBytes {
            offset: 9,
            remaining: 16,
            ..
        })
    ));
}

/// Every proper prefix of every captured frame is an error, and so is any trailing byte.
#[test]
fn prefixes_and_trailing_bytes_are_errors() {
    let opts = DecodeOptions::new(3);
    let mut dec = PgoutputDecoder::new(opts);
    for frame in frames("pgoutput-v3-twophase.bin") {
        let in_stream = dec.in_stream();
        for cut in 0..frame.len() {
            assert!(
                PgoutputMessage::decode(frame.slice(..cut), in_stream, &opts).is_err(),
                "prefix of {} bytes of {:?} decoded",
                cut,
                MessageTag(frame[0])
            );
        }
        let mut longer = BytesMut::from(&frame[..]);
        longer.put_u8(0);
        assert!(matches!(
            PgoutputMessage::decode(longer.freeze(), in_stream, &opts),
            Err(DecodeError::TrailingBytes { .. })
        ));
        dec.decode(frame).unwrap();
    }
}

/// A real protocol 4 capture from PostgreSQL 16 with `streaming 'parallel'`
/// (`golden/capture-v4.sh`): every Stream Abort carries its abort LSN and time.
#[test]
fn v4_parallel_real_capture() {
    let meta: HashMap<String, u32> =
        std::fs::read_to_string(format!("{GOLDEN}/pgoutput-v4-meta.txt"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
            .collect();
    assert!(meta["server_version"] >= 160_000);
    let opts = DecodeOptions::new(4).with_parallel_streaming(true);
    // decode_file also checks stateless decoding and byte-identical re-encoding.
    let d = decode_file("pgoutput-v4-parallel.bin", opts);

    let aborts: Vec<&StreamAbort> = d
        .msgs
        .iter()
        .filter_map(|(_, m)| match m {
            PgoutputMessage::StreamAbort(a) => Some(a),
            _ => None,
        })
        .collect();
    let sub = Xid(meta["streamed_subabort_xid"]);
    let whole = Xid(meta["streamed_abort_xid"]);
    assert_eq!(aborts.len(), 2, "{aborts:?}");
    assert_eq!(aborts[0].xid, sub);
    assert_ne!(aborts[0].subxid, sub);
    assert!(!aborts[0].is_toplevel());
    assert_eq!(aborts[1].xid, whole);
    assert!(aborts[1].is_toplevel());
    let mut last = Lsn(0);
    for a in &aborts {
        let info = a.abort_info.expect("parallel streaming carries abort info");
        assert!(info.abort_lsn > last, "{a:?}");
        last = info.abort_lsn;
        assert!(info.abort_time > PgTimestamp(0), "{a:?}");
    }
    // The subtransaction aborted before its parent committed.
    let commit = d
        .msgs
        .iter()
        .find_map(|(_, m)| match m {
            PgoutputMessage::StreamCommit(c) if c.xid == sub => Some(c),
            _ => None,
        })
        .unwrap();
    let sub_abort = aborts[0].abort_info.unwrap();
    assert!(sub_abort.abort_lsn < commit.commit_lsn);
    assert!(sub_abort.abort_time <= commit.commit_time);
    // Committed streamed transaction seen too.
    let committed = Xid(meta["streamed_commit_xid"]);
    assert!(
        d.msgs
            .iter()
            .any(|(_, m)| matches!(m, PgoutputMessage::StreamCommit(c) if c.xid == committed))
    );

    // Without the parallel option the abort frames do not decode as a whole.
    let serial = DecodeOptions::new(4);
    for f in frames("pgoutput-v4-parallel.bin")
        .into_iter()
        .filter(|f| f[0] == b'A')
    {
        assert!(matches!(
            PgoutputMessage::decode(f, false, &serial),
            Err(DecodeError::TrailingBytes { .. })
        ));
    }
}
