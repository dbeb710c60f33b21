//! The hot path: Insert, Update and Delete decoded straight from the message slice.
//!
//! A narrow insert is a few dozen bytes, so per-message overhead dominates: the general
//! [`Cursor`](crate::cursor::Cursor) path clones and slices [`Bytes`] for every column it skips
//! (an atomic reference-count update each). Here the tuple structure is walked on `&[u8]` and
//! the one [`Bytes`] handle is narrowed in place, so decoding an Insert touches no reference
//! count at all. Anything unusual (a bad tag, a short buffer, trailing bytes) returns the bytes
//! so the general path decodes them again and reports the exact error: this path never has to
//! build one.

use bytes::{Buf, Bytes};

use crate::pgoutput::message::{Delete, Insert, OldTuple, PgoutputMessage, Update};
use crate::pgoutput::tuple::TupleData;
use crate::types::{Oid, Xid};

/// Decodes an Insert, Update or Delete, or hands the bytes back for the general path.
#[inline]
pub(super) fn dml(bytes: Bytes, in_stream: bool) -> Result<PgoutputMessage, Bytes> {
    match parse(&bytes, in_stream) {
        Some(p) => Ok(p.build(bytes)),
        None => Err(bytes),
    }
}

/// Where the parts of a well-formed DML message are.
struct Parsed {
    tag: u8,
    xid: Option<Xid>,
    relation_id: Oid,
    /// The kind byte before the first tuple: `N`, `K` or `O`.
    kind: u8,
    /// An Update's old tuple: raw column range and column count.
    old: Option<(usize, usize, u16)>,
    /// The last tuple (it runs to the end of the message): raw start and column count.
    last: (usize, u16),
}

impl Parsed {
    #[inline]
    fn build(self, mut bytes: Bytes) -> PgoutputMessage {
        let wrap = |t| {
            if self.kind == b'K' {
                OldTuple::Key(t)
            } else {
                OldTuple::Full(t)
            }
        };
        let old = self.old.map(|(start, end, columns)| {
            wrap(TupleData::from_validated(bytes.slice(start..end), columns))
        });
        // Narrow the handle to the last tuple instead of slicing: no reference-count update.
        bytes.advance(self.last.0);
        let last = TupleData::from_validated(bytes, self.last.1);
        let (xid, relation_id) = (self.xid, self.relation_id);
        match self.tag {
            b'I' => PgoutputMessage::Insert(Insert {
                xid,
                relation_id,
                new: last,
            }),
            b'U' => PgoutputMessage::Update(Update {
                xid,
                relation_id,
                old,
                new: last,
            }),
            _ => PgoutputMessage::Delete(Delete {
                xid,
                relation_id,
                old: wrap(last),
            }),
        }
    }
}

#[inline]
fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

#[inline]
fn parse(b: &[u8], in_stream: bool) -> Option<Parsed> {
    let tag = *b.first()?;
    if !matches!(tag, b'I' | b'U' | b'D') {
        return None;
    }
    let mut pos = 1;
    let xid = if in_stream {
        pos += 4;
        Some(Xid(be_u32(b, 1)?))
    } else {
        None
    };
    let relation_id = Oid(be_u32(b, pos)?);
    pos += 4;
    let kind = *b.get(pos)?;
    pos += 1;
    let mut old = None;
    match (tag, kind) {
        (b'I' | b'U', b'N') | (b'D', b'K' | b'O') => {}
        (b'U', b'K' | b'O') => {
            let (columns, end) = walk(b, pos)?;
            old = Some((pos + 2, end, columns));
            if *b.get(end)? != b'N' {
                return None;
            }
            pos = end + 1;
        }
        _ => return None,
    }
    let (columns, end) = walk(b, pos)?;
    (end == b.len()).then_some(Parsed {
        tag,
        xid,
        relation_id,
        kind,
        old,
        last: (pos + 2, columns),
    })
}

/// Walks a TupleData (Int16 count, then the columns) starting at `at`; returns the column
/// count and the offset just past the last column.
#[inline]
fn walk(b: &[u8], at: usize) -> Option<(u16, usize)> {
    let raw: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    let columns = u16::try_from(i16::from_be_bytes(raw)).ok()?;
    let mut p = at + 2;
    for _ in 0..columns {
        match *b.get(p)? {
            b'n' | b'u' => p += 1,
            b't' | b'b' => {
                let len = usize::try_from(i32::try_from(be_u32(b, p + 1)?).ok()?).ok()?;
                p = p.checked_add(5)?.checked_add(len)?;
                if p > b.len() {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some((columns, p))
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::pgoutput::message::DecodeOptions;
    use crate::pgoutput::tuple::ColumnValue;

    fn value() -> impl Strategy<Value = ColumnValue> {
        prop_oneof![
            Just(ColumnValue::Null),
            Just(ColumnValue::UnchangedToast),
            vec(any::<u8>(), 0..8).prop_map(|v| ColumnValue::Text(Bytes::from(v))),
            vec(any::<u8>(), 0..8).prop_map(|v| ColumnValue::Binary(Bytes::from(v))),
        ]
    }

    fn tuple() -> impl Strategy<Value = TupleData> {
        vec(value(), 0..5).prop_map(|v| TupleData::from_values(&v).unwrap())
    }

    fn changes() -> impl Strategy<Value = (PgoutputMessage, bool)> {
        let old = prop_oneof![
            tuple().prop_map(OldTuple::Key),
            tuple().prop_map(OldTuple::Full)
        ];
        (
            0u8..3,
            proptest::option::of(any::<u32>()),
            any::<u32>(),
            proptest::option::of(old),
            tuple(),
        )
            .prop_map(|(kind, xid, rel, old, new)| {
                let (xid, relation_id) = (xid.map(Xid), Oid(rel));
                let m = match (kind, old) {
                    (0, _) => PgoutputMessage::Insert(Insert {
                        xid,
                        relation_id,
                        new,
                    }),
                    (1, old) => PgoutputMessage::Update(Update {
                        xid,
                        relation_id,
                        old,
                        new,
                    }),
                    (_, old) => PgoutputMessage::Delete(Delete {
                        xid,
                        relation_id,
                        old: old.unwrap_or(OldTuple::Key(new)),
                    }),
                };
                let in_stream = m.stream_xid().is_some();
                (m, in_stream)
            })
    }

    proptest! {
        /// Well-formed changes take the fast path, and it agrees with the general decoder on
        /// valid and corrupted input alike.
        #[test]
        fn agrees_with_general_path(
            (msg, in_stream) in changes(),
            edits in vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            cut in any::<prop::sample::Index>(),
        ) {
            let opts = DecodeOptions::new(2);
            let good = msg.to_bytes().unwrap();
            prop_assert_eq!(dml(good.clone(), in_stream).ok(), Some(msg));

            let mut bad = bytes::BytesMut::from(&good[..]);
            for (i, v) in edits {
                let at = i.index(bad.len());
                bad[at] = v;
            }
            bad.truncate(cut.index(bad.len() + 1));
            let bad = bad.freeze();
            let general = PgoutputMessage::decode_general(bad.clone(), in_stream, &opts);
            // Falling back (`Err`) is always allowed; the general path then decides.
            if let Ok(fast) = dml(bad, in_stream) {
                prop_assert_eq!(Ok(fast), general);
            }
        }
    }
}
