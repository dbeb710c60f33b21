//! Fuzzing entry point for the `pgoutput` decoder (reached through `crate::internal`).
//!
//! Input: one options byte, then frames in the golden capture format (u32 big-endian length,
//! payload; a length past the end takes what is left). The options byte picks the protocol
//! version (`1 + (b & 3)`, so 1 to 4) and parallel streaming (`b & 4`). Seeds are the golden
//! captures behind such a byte.
//!
//! Oracles, for every frame: decoding never panics; a frame that decodes re-encodes to exactly
//! its bytes; the stateless decoder (given the stateful one's streaming state) agrees; the
//! fast path and the general path agree; iterating tuples and feeding the relation cache
//! never panic; a change's typed columns ([`TupleData::typed`](super::TupleData::typed)) agree
//! with [`decode_value`] on each column.

use bytes::Bytes;

use super::message::{DecodeOptions, OldTuple, PgoutputDecoder, PgoutputMessage};
use super::relcache::RelationCache;
use super::tuple::{ColumnValue, TypedColumn};
use crate::value::{ValueFormat, decode_value};

/// Runs the oracles over `data`; panics if one fails (that is how a fuzzer sees a finding, so
/// the `assert`s and the `expect` below are the point, not a shortcut).
pub(crate) fn fuzz(data: &[u8]) {
    let Some((&opts, mut rest)) = data.split_first() else {
        return;
    };
    let options =
        DecodeOptions::new(1 + u32::from(opts & 3)).with_parallel_streaming(opts & 4 != 0);
    let mut decoder = PgoutputDecoder::new(options);
    let mut cache = RelationCache::new();
    while !rest.is_empty() {
        let (len, body) = match rest.split_first_chunk::<4>() {
            Some((len, body)) => (
                usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX),
                body,
            ),
            None => (usize::MAX, rest),
        };
        let (frame, tail) = body.split_at(len.min(body.len()));
        rest = tail;
        let frame = Bytes::copy_from_slice(frame);
        let in_stream = decoder.in_stream();
        let stateless = PgoutputMessage::decode(frame.clone(), in_stream, &options);
        let general = PgoutputMessage::decode_general(frame.clone(), in_stream, &options);
        assert_eq!(stateless, general, "fast and general paths disagree");
        let Ok(msg) = decoder.decode(frame.clone()) else {
            continue;
        };
        assert_eq!(
            Ok(&msg),
            stateless.as_ref(),
            "stateful and stateless decoders disagree"
        );
        let encoded = msg.to_bytes().expect("a decoded message encodes");
        assert_eq!(encoded, frame, "decode then encode changed the bytes");
        let tuples = match &msg {
            PgoutputMessage::Insert(m) => [Some(&m.new), None],
            PgoutputMessage::Update(m) => [Some(&m.new), m.old.as_ref().map(OldTuple::tuple)],
            PgoutputMessage::Delete(m) => [Some(m.old.tuple()), None],
            _ => [None, None],
        };
        for t in tuples.into_iter().flatten() {
            assert_eq!(
                t.iter().count(),
                t.len(),
                "tuple iterator yields every column"
            );
            assert!(
                t.iter()
                    .zip(t.iter_ref())
                    .all(|(v, r)| v.as_bytes().map(|b| &b[..]) == r.as_bytes()),
                "owned and borrowed iterators agree"
            );
        }
        let _ = cache.observe(&msg);
        if let Some(rel) = tuples[0]
            .and_then(|_| msg_relation(&msg))
            .and_then(|oid| cache.relation(oid))
        {
            for t in tuples.into_iter().flatten() {
                let Ok(typed) = t.typed(rel) else {
                    assert_ne!(
                        t.len(),
                        rel.columns.len(),
                        "typed() refused a matching tuple"
                    );
                    continue;
                };
                for ((col, v), got) in rel.columns.iter().zip(t.iter()).zip(typed) {
                    let expected = match v {
                        ColumnValue::Null => Ok(TypedColumn::Null),
                        ColumnValue::UnchangedToast => Ok(TypedColumn::UnchangedToast),
                        ColumnValue::Text(b) => {
                            decode_value(col.type_oid, ValueFormat::Text, b).map(TypedColumn::Value)
                        }
                        ColumnValue::Binary(b) => {
                            decode_value(col.type_oid, ValueFormat::Binary, b)
                                .map(TypedColumn::Value)
                        }
                    };
                    // Compared through `Debug`: a NaN float is not equal to itself.
                    assert_eq!(
                        format!("{got:?}"),
                        format!("{expected:?}"),
                        "typed() and decode_value disagree"
                    );
                }
            }
        }
    }
}

/// The relation a change refers to.
fn msg_relation(msg: &PgoutputMessage) -> Option<crate::types::Oid> {
    match msg {
        PgoutputMessage::Insert(m) => Some(m.relation_id),
        PgoutputMessage::Update(m) => Some(m.relation_id),
        PgoutputMessage::Delete(m) => Some(m.relation_id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_captures_pass_the_oracles() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
        for (file, opts) in [
            ("pgoutput-v1-text.bin", 0u8),
            ("pgoutput-v1-binary.bin", 0),
            ("pgoutput-v2-stream.bin", 1),
            ("pgoutput-v3-twophase.bin", 2),
            ("pgoutput-v3-twophase-binary.bin", 2),
            ("pgoutput-v1-narrow-inserts.bin", 0),
        ] {
            let mut input = vec![opts];
            input.extend(std::fs::read(format!("{dir}/{file}")).unwrap());
            fuzz(&input);
        }
    }

    /// A fuzzer finding: a binary float8 NaN column made the typed oracle compare NaN with
    /// itself.
    #[test]
    fn nan_column_passes_the_typed_oracle() {
        let relation = PgoutputMessage::Relation(super::super::message::RelationMessage {
            xid: None,
            relation: std::sync::Arc::new(super::super::message::Relation {
                oid: crate::types::Oid(16_384),
                namespace: "public".into(),
                name: "t".into(),
                replica_identity: super::super::message::ReplicaIdentity::DEFAULT,
                columns: vec![super::super::message::Column {
                    flags: 0,
                    name: "f8".into(),
                    type_oid: crate::types::Oid(701),
                    type_modifier: -1,
                }],
            }),
        });
        let insert = PgoutputMessage::Insert(super::super::message::Insert {
            xid: None,
            relation_id: crate::types::Oid(16_384),
            new: super::super::tuple::TupleData::from_values(&[ColumnValue::Binary(
                Bytes::from_static(&[0x7f, 0xf8, 0, 0, 0, 0, 0, 0]),
            )])
            .unwrap(),
        });
        let mut input = vec![0u8];
        for m in [relation, insert] {
            let b = m.to_bytes().unwrap();
            input.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes());
            input.extend_from_slice(&b);
        }
        fuzz(&input);
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for input in [
            &b""[..],
            b"\x07",
            b"\x03\xff\xff\xff\xffI",
            b"\x01\x00\x00\x00\x01S",
            b"\x05\x00\x00\x00\x00",
        ] {
            fuzz(input);
        }
    }
}
