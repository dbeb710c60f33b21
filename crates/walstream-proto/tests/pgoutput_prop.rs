//! Property tests for the `pgoutput` codec: arbitrary messages round-trip, every prefix and
//! every trailing byte is an error, and arbitrary or mutated input never panics and, when it
//! decodes, re-encodes to the same bytes.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use walstream_proto::pgoutput::{
    AbortInfo, Begin, BeginPrepare, Column, ColumnValue, Commit, CommitPrepared, DecodeOptions,
    Delete, Insert, LogicalMessage, OldTuple, Origin, PgType, PgoutputDecoder, PgoutputMessage,
    Prepare, Relation, RelationMessage, ReplicaIdentity, RollbackPrepared, StreamAbort,
    StreamCommit, StreamStart, Truncate, TruncateOptions, TupleData, TypeMessage, Update,
};
use walstream_proto::{DecodeError, Lsn, Oid, PgTimestamp, Xid};

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn ts() -> impl Strategy<Value = PgTimestamp> {
    any::<i64>().prop_map(PgTimestamp)
}

fn xid() -> impl Strategy<Value = Xid> {
    any::<u32>().prop_map(Xid)
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ .é\u{1F600}-]{0,12}"
}

fn value() -> impl Strategy<Value = ColumnValue> {
    prop_oneof![
        Just(ColumnValue::Null),
        Just(ColumnValue::UnchangedToast),
        vec(any::<u8>(), 0..24).prop_map(|v| ColumnValue::Text(Bytes::from(v))),
        vec(any::<u8>(), 0..24).prop_map(|v| ColumnValue::Binary(Bytes::from(v))),
    ]
}

fn tuple() -> impl Strategy<Value = TupleData> {
    vec(value(), 0..8).prop_map(|v| TupleData::from_values(&v).unwrap())
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Full)
    ]
}

fn relation() -> impl Strategy<Value = Relation> {
    let column =
        (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(|(flags, name, t, m)| Column {
            flags,
            name,
            type_oid: Oid(t),
            type_modifier: m,
        });
    (any::<u32>(), name(), name(), any::<u8>(), vec(column, 0..6)).prop_map(
        |(oid, namespace, name, ri, columns)| Relation {
            oid: Oid(oid),
            namespace,
            name,
            replica_identity: ReplicaIdentity(ri),
            columns,
        },
    )
}

fn prepare() -> impl Strategy<Value = Prepare> {
    (any::<u8>(), lsn(), lsn(), ts(), xid(), name()).prop_map(
        |(flags, prepare_lsn, end_lsn, prepare_time, xid, gid)| Prepare {
            flags,
            prepare_lsn,
            end_lsn,
            prepare_time,
            xid,
            gid,
        },
    )
}

/// Messages that carry a transaction id inside streamed blocks; `None` means outside.
fn change(x: Option<Xid>) -> BoxedStrategy<PgoutputMessage> {
    prop_oneof![
        relation().prop_map(move |r| PgoutputMessage::Relation(RelationMessage {
            xid: x,
            relation: Arc::new(r)
        })),
        (any::<u32>(), name(), name()).prop_map(move |(oid, namespace, name)| {
            PgoutputMessage::Type(TypeMessage {
                xid: x,
                pg_type: Arc::new(PgType {
                    oid: Oid(oid),
                    namespace,
                    name,
                }),
            })
        }),
        (any::<u32>(), tuple()).prop_map(move |(r, new)| PgoutputMessage::Insert(Insert {
            xid: x,
            relation_id: Oid(r),
            new
        })),
        (any::<u32>(), option::of(old_tuple()), tuple()).prop_map(move |(r, old, new)| {
            PgoutputMessage::Update(Update {
                xid: x,
                relation_id: Oid(r),
                old,
                new,
            })
        }),
        (any::<u32>(), old_tuple()).prop_map(move |(r, old)| PgoutputMessage::Delete(Delete {
            xid: x,
            relation_id: Oid(r),
            old
        })),
        (any::<u8>(), vec(any::<u32>(), 0..6)).prop_map(move |(o, ids)| {
            PgoutputMessage::Truncate(Truncate {
                xid: x,
                options: TruncateOptions(o),
                relation_ids: ids.into_iter().map(Oid).collect(),
            })
        }),
        (any::<u8>(), lsn(), name(), vec(any::<u8>(), 0..32)).prop_map(
            move |(flags, lsn, prefix, c)| {
                PgoutputMessage::Message(LogicalMessage {
                    xid: x,
                    flags,
                    lsn,
                    prefix,
                    content: Bytes::from(c),
                })
            }
        ),
    ]
    .boxed()
}

/// Messages outside streamed blocks (Origin and Stream Stop may also appear inside).
fn control() -> BoxedStrategy<PgoutputMessage> {
    prop_oneof![
        (lsn(), ts(), xid()).prop_map(|(final_lsn, commit_time, xid)| PgoutputMessage::Begin(
            Begin {
                final_lsn,
                commit_time,
                xid
            }
        )),
        (any::<u8>(), lsn(), lsn(), ts()).prop_map(|(flags, commit_lsn, end_lsn, commit_time)| {
            PgoutputMessage::Commit(Commit {
                flags,
                commit_lsn,
                end_lsn,
                commit_time,
            })
        }),
        (lsn(), name())
            .prop_map(|(commit_lsn, name)| PgoutputMessage::Origin(Origin { commit_lsn, name })),
        (xid(), any::<bool>()).prop_map(|(xid, first_segment)| PgoutputMessage::StreamStart(
            StreamStart { xid, first_segment }
        )),
        Just(PgoutputMessage::StreamStop),
        (xid(), any::<u8>(), lsn(), lsn(), ts()).prop_map(
            |(xid, flags, commit_lsn, end_lsn, commit_time)| {
                PgoutputMessage::StreamCommit(StreamCommit {
                    xid,
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                })
            }
        ),
        (xid(), xid(), option::of((lsn(), ts()))).prop_map(|(xid, subxid, info)| {
            PgoutputMessage::StreamAbort(StreamAbort {
                xid,
                subxid,
                abort_info: info.map(|(abort_lsn, abort_time)| AbortInfo {
                    abort_lsn,
                    abort_time,
                }),
            })
        }),
        (lsn(), lsn(), ts(), xid(), name()).prop_map(
            |(prepare_lsn, end_lsn, prepare_time, xid, gid)| {
                PgoutputMessage::BeginPrepare(BeginPrepare {
                    prepare_lsn,
                    end_lsn,
                    prepare_time,
                    xid,
                    gid,
                })
            }
        ),
        prepare().prop_map(PgoutputMessage::Prepare),
        prepare().prop_map(PgoutputMessage::StreamPrepare),
        (any::<u8>(), lsn(), lsn(), ts(), xid(), name()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_time, xid, gid)| {
                PgoutputMessage::CommitPrepared(CommitPrepared {
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                    xid,
                    gid,
                })
            }
        ),
        (any::<u8>(), lsn(), lsn(), ts(), ts(), xid(), name()).prop_map(
            |(flags, pe, re, pt, rt, xid, gid)| {
                PgoutputMessage::RollbackPrepared(RollbackPrepared {
                    flags,
                    prepare_end_lsn: pe,
                    rollback_end_lsn: re,
                    prepare_time: pt,
                    rollback_time: rt,
                    xid,
                    gid,
                })
            }
        ),
    ]
    .boxed()
}

/// A message with the context it must be decoded in.
fn message() -> impl Strategy<Value = (PgoutputMessage, bool, DecodeOptions)> {
    let changes =
        option::of(xid()).prop_flat_map(|x| change(x).prop_map(move |m| (m, x.is_some())));
    let controls = (control(), any::<bool>()).prop_map(|(m, s)| {
        let in_stream = s && matches!(m, PgoutputMessage::StreamStop | PgoutputMessage::Origin(_));
        (m, in_stream)
    });
    (prop_oneof![changes, controls], 2u32..=5, any::<bool>()).prop_map(
        |((m, in_stream), version, parallel)| {
            let opts = match &m {
                // Abort info is present exactly with protocol 4+ and parallel streaming.
                PgoutputMessage::StreamAbort(a) if a.abort_info.is_some() => {
                    DecodeOptions::new(version.max(4)).with_parallel_streaming(true)
                }
                PgoutputMessage::StreamAbort(_) if version >= 4 => DecodeOptions::new(version),
                PgoutputMessage::StreamAbort(_) => {
                    DecodeOptions::new(version).with_parallel_streaming(parallel)
                }
                // Two-phase messages need protocol 3.
                _ => DecodeOptions::new(version.max(3)).with_parallel_streaming(parallel),
            };
            (m, in_stream, opts)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_roundtrip((msg, in_stream, opts) in message()) {
        let bytes = msg.to_bytes().unwrap();
        let back = PgoutputMessage::decode(bytes.clone(), in_stream, &opts).unwrap();
        prop_assert_eq!(&back, &msg);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn every_prefix_is_an_error((msg, in_stream, opts) in message()) {
        let bytes = msg.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            prop_assert!(PgoutputMessage::decode(bytes.slice(..cut), in_stream, &opts).is_err());
        }
    }

    #[test]
    fn trailing_bytes_are_an_error((msg, in_stream, opts) in message(), extra in vec(any::<u8>(), 1..8)) {
        let mut b = BytesMut::from(&msg.to_bytes().unwrap()[..]);
        b.put_slice(&extra);
        let res = PgoutputMessage::decode(b.freeze(), in_stream, &opts);
        prop_assert!(matches!(res, Err(DecodeError::TrailingBytes { .. })), "{:?}", res);
    }

    /// Corrupting a valid message never panics; if the result still decodes, it re-encodes
    /// to exactly the corrupted bytes.
    #[test]
    fn mutations_never_panic(
        (msg, in_stream, opts) in message(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut b = BytesMut::from(&msg.to_bytes().unwrap()[..]);
        for (i, v) in edits {
            let at = i.index(b.len());
            b[at] = v;
        }
        let b = b.freeze();
        if let Ok(m) = PgoutputMessage::decode(b.clone(), in_stream, &opts) {
            prop_assert_eq!(m.to_bytes().unwrap(), b);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        frames in vec(vec(any::<u8>(), 0..64), 1..16),
        version in 1u32..=4,
        parallel in any::<bool>(),
    ) {
        let mut dec = PgoutputDecoder::new(DecodeOptions::new(version).with_parallel_streaming(parallel));
        for f in frames {
            let f = Bytes::from(f);
            if let Ok(m) = dec.decode(f.clone()) {
                for v in tuples(&m).into_iter().flat_map(|t| t.iter()) {
                    let _ = v.as_bytes();
                }
                prop_assert_eq!(m.to_bytes().unwrap(), f);
            }
        }
    }
}

fn tuples(m: &PgoutputMessage) -> Vec<&TupleData> {
    match m {
        PgoutputMessage::Insert(i) => vec![&i.new],
        PgoutputMessage::Update(u) => u.old.iter().map(OldTuple::tuple).chain([&u.new]).collect(),
        PgoutputMessage::Delete(d) => vec![d.old.tuple()],
        _ => vec![],
    }
}
