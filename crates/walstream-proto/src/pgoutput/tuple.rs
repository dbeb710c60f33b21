//! `TupleData`: the column values of one row, kept as raw bytes and decoded lazily.
//!
//! See <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>,
//! section "TupleData".

use bytes::{BufMut, Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::error::{DecodeError, EncodeError};
use crate::pgoutput::message::{Column, Relation};
use crate::value::{NoTypes, Raw, TypeLookup, Value, ValueFormat, decode_raw};

/// Column kind byte: the value is NULL.
const KIND_NULL: u8 = b'n';
/// Column kind byte: an unchanged TOASTed value whose bytes were not sent.
const KIND_UNCHANGED_TOAST: u8 = b'u';
/// Column kind byte: the value in text format.
const KIND_TEXT: u8 = b't';
/// Column kind byte: the value in binary format.
const KIND_BINARY: u8 = b'b';

/// The column values of one row, as sent in Insert, Update and Delete messages.
///
/// Decoding validates the structure once (column kinds and lengths) without allocating; the
/// values stay in the received [`Bytes`] and [`TupleData::iter`] yields them lazily, each one a
/// zero-copy slice of the message.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TupleData {
    /// The column entries, after the Int16 column count.
    raw: Bytes,
    /// The number of columns.
    columns: u16,
}

impl std::fmt::Debug for TupleData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter_ref()).finish()
    }
}

impl TupleData {
    /// Reads an Int16 column count and that many column entries, validating their structure.
    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self, DecodeError> {
        let at = cur.offset();
        let raw_count = cur.i16()?;
        // Every column takes at least its kind byte.
        let count = cur.count(i64::from(raw_count), 1, at)?;
        let start = cur.offset();
        // A second cursor at the first column cuts the raw entries once the walk is done.
        let mut whole = cur.clone();
        for _ in 0..count {
            let kind_at = cur.offset();
            match cur.u8()? {
                KIND_NULL | KIND_UNCHANGED_TOAST => {}
                KIND_TEXT | KIND_BINARY => {
                    let len_at = cur.offset();
                    let len = cur.i32()?;
                    let len = usize::try_from(len).map_err(|_| DecodeError::InvalidLength {
                        context: cur.context(),
                        length: i64::from(len),
                        offset: len_at,
                    })?;
                    cur.bytes(len)?;
                }
                other => return Err(cur.unknown_tag(other, kind_at)),
            }
        }
        let len = cur.offset() - start;
        let raw = whole.bytes(len)?;
        // `count` came from a non-negative i16, so it fits in u16.
        let columns = u16::try_from(count).map_err(|_| cur.invalid(at, "column count"))?;
        Ok(Self { raw, columns })
    }

    /// Wraps raw column entries whose structure the caller has already validated.
    #[inline]
    pub(super) fn from_validated(raw: Bytes, columns: u16) -> Self {
        Self { raw, columns }
    }

    /// Builds tuple data from column values (for encoders and tests).
    pub fn from_values<'a, I>(values: I) -> Result<Self, EncodeError>
    where
        I: IntoIterator<Item = &'a ColumnValue>,
    {
        let mut raw = BytesMut::new();
        let mut columns: u16 = 0;
        for v in values {
            columns = columns
                .checked_add(1)
                .filter(|&c| i16::try_from(c).is_ok())
                .ok_or(EncodeError::TooLarge {
                    context: "TupleData",
                    length: usize::from(columns) + 1,
                })?;
            match v {
                ColumnValue::Null => raw.put_u8(KIND_NULL),
                ColumnValue::UnchangedToast => raw.put_u8(KIND_UNCHANGED_TOAST),
                ColumnValue::Text(b) | ColumnValue::Binary(b) => {
                    let kind = if matches!(v, ColumnValue::Text(_)) {
                        KIND_TEXT
                    } else {
                        KIND_BINARY
                    };
                    let len = i32::try_from(b.len()).map_err(|_| EncodeError::TooLarge {
                        context: "TupleData",
                        length: b.len(),
                    })?;
                    raw.put_u8(kind);
                    raw.put_i32(len);
                    raw.put_slice(b);
                }
            }
        }
        Ok(Self {
            raw: raw.freeze(),
            columns,
        })
    }

    /// Writes the Int16 column count and the column entries.
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        // `columns` is at most i16::MAX: it comes from a decoded i16 or `from_values` checks it.
        out.put_u16(self.columns);
        out.put_slice(&self.raw);
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        usize::from(self.columns)
    }

    /// True when the tuple has no columns.
    pub fn is_empty(&self) -> bool {
        self.columns == 0
    }

    /// The raw column entries as received (after the column count).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Iterates over the column values without allocating; each value is a zero-copy slice.
    pub fn iter(&self) -> TupleIter<'_> {
        TupleIter {
            raw: &self.raw,
            inner: self.iter_ref(),
        }
    }

    /// Iterates over the column values as borrowed slices: no allocation and no
    /// reference-count update per column.
    pub fn iter_ref(&self) -> TupleRefIter<'_> {
        TupleRefIter {
            raw: &self.raw,
            pos: 0,
            left: self.columns,
        }
    }

    /// Decodes every column to a typed [`Value`] by the column types of `relation` (the
    /// relation the change refers to, from [`RelationCache`](super::RelationCache)).
    ///
    /// Built-in types decode as [`decode_value`](crate::decode_value) does, other OIDs
    /// become [`Value::Unknown`]. Values are cut from the message without copying, and only
    /// the types that keep bytes (text, bytea, ...) take a [`Bytes`] handle. Fails with
    /// [`DecodeError::InvalidValue`] when the tuple's column count differs from the relation's.
    ///
    /// ```
    /// # use walstream_proto::pgoutput::{ColumnValue, TupleData, TypedColumn};
    /// # use walstream_proto::{Oid, Value};
    /// # fn f(tuple: &TupleData, relation: &walstream_proto::pgoutput::Relation)
    /// #     -> Result<(), walstream_proto::DecodeError> {
    /// for column in tuple.typed(relation)? {
    ///     match column? {
    ///         TypedColumn::Value(v) => println!("{v}"),
    ///         TypedColumn::Null => println!("NULL"),
    ///         TypedColumn::UnchangedToast => println!("(unchanged)"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn typed<'a>(&'a self, relation: &'a Relation) -> Result<TypedColumns<'a>, DecodeError> {
        self.typed_with(relation, &NoTypes)
    }

    /// [`TupleData::typed`], asking `types` about type OIDs that are not built in (enums,
    /// domains, arrays and ranges of user types).
    pub fn typed_with<'a>(
        &'a self,
        relation: &'a Relation,
        types: &'a dyn TypeLookup,
    ) -> Result<TypedColumns<'a>, DecodeError> {
        if relation.columns.len() != self.len() {
            return Err(DecodeError::InvalidValue {
                context: "TupleData",
                offset: 0,
                reason: "tuple column count differs from the relation's",
            });
        }
        Ok(TypedColumns {
            raw: &self.raw,
            columns: relation.columns.iter(),
            values: self.iter_ref(),
            types,
        })
    }

    /// The value of column `index` (walks the preceding columns).
    pub fn get(&self, index: usize) -> Option<ColumnValue> {
        self.iter().nth(index)
    }

    /// True if any column is an unchanged TOAST value.
    pub fn has_unchanged_toast(&self) -> bool {
        self.iter_ref().any(|v| v == ColumnRef::UnchangedToast)
    }
}

impl<'a> IntoIterator for &'a TupleData {
    type Item = ColumnValue;
    type IntoIter = TupleIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// One column value of a [`TupleData`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnValue {
    /// SQL NULL (`n`).
    Null,
    /// An unchanged TOASTed value; its bytes were not sent (`u`).
    UnchangedToast,
    /// A value in text format (`t`).
    Text(Bytes),
    /// A value in binary format (`b`), the type's `send` representation.
    Binary(Bytes),
}

impl ColumnValue {
    /// The value's bytes, for `Text` and `Binary`.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Self::Text(b) | Self::Binary(b) => Some(b),
            Self::Null | Self::UnchangedToast => None,
        }
    }

    /// The value as UTF-8 text, for `Text` values that are valid UTF-8.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// One column value of a [`TupleData`], borrowed from it: no reference-count traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnRef<'a> {
    /// SQL NULL (`n`).
    Null,
    /// An unchanged TOASTed value; its bytes were not sent (`u`).
    UnchangedToast,
    /// A value in text format (`t`).
    Text(&'a [u8]),
    /// A value in binary format (`b`).
    Binary(&'a [u8]),
}

impl<'a> ColumnRef<'a> {
    /// The value's bytes, for `Text` and `Binary`.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Self::Text(b) | Self::Binary(b) => Some(b),
            Self::Null | Self::UnchangedToast => None,
        }
    }

    /// The value as UTF-8 text, for `Text` values that are valid UTF-8.
    pub fn as_text(&self) -> Option<&'a str> {
        match *self {
            Self::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// Iterator over borrowed column values, see [`TupleData::iter_ref`].
#[derive(Debug, Clone)]
pub struct TupleRefIter<'a> {
    raw: &'a [u8],
    pos: usize,
    left: u16,
}

impl<'a> Iterator for TupleRefIter<'a> {
    type Item = ColumnRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<ColumnRef<'a>> {
        // The structure was validated when the tuple was decoded or built, so none of the
        // `?` below can fail; they only keep this code free of panics.
        self.left = self.left.checked_sub(1)?;
        let kind = *self.raw.get(self.pos)?;
        let value = match kind {
            KIND_NULL => {
                self.pos += 1;
                ColumnRef::Null
            }
            KIND_UNCHANGED_TOAST => {
                self.pos += 1;
                ColumnRef::UnchangedToast
            }
            _ => {
                let len: [u8; 4] = self.raw.get(self.pos + 1..self.pos + 5)?.try_into().ok()?;
                let len = usize::try_from(i32::from_be_bytes(len)).ok()?;
                let start = self.pos + 5;
                let end = start.checked_add(len)?;
                let bytes = self.raw.get(start..end)?;
                self.pos = end;
                if kind == KIND_TEXT {
                    ColumnRef::Text(bytes)
                } else {
                    ColumnRef::Binary(bytes)
                }
            }
        };
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.left);
        (n, Some(n))
    }
}

impl ExactSizeIterator for TupleRefIter<'_> {}

/// Iterator over the values of a [`TupleData`], see [`TupleData::iter`].
#[derive(Debug, Clone)]
pub struct TupleIter<'a> {
    raw: &'a Bytes,
    inner: TupleRefIter<'a>,
}

impl Iterator for TupleIter<'_> {
    type Item = ColumnValue;

    #[inline]
    fn next(&mut self) -> Option<ColumnValue> {
        Some(match self.inner.next()? {
            ColumnRef::Null => ColumnValue::Null,
            ColumnRef::UnchangedToast => ColumnValue::UnchangedToast,
            ColumnRef::Text(b) => ColumnValue::Text(self.raw.slice_ref(b)),
            ColumnRef::Binary(b) => ColumnValue::Binary(self.raw.slice_ref(b)),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for TupleIter<'_> {}

/// One column of a row decoded to a typed value, see [`TupleData::typed`].
#[derive(Debug, Clone, PartialEq)]
pub enum TypedColumn {
    /// SQL NULL (`n`).
    Null,
    /// An unchanged TOASTed value; its bytes were not sent (`u`). Not a NULL.
    UnchangedToast,
    /// The decoded value.
    Value(Value),
}

impl TypedColumn {
    /// The value, for [`TypedColumn::Value`].
    pub fn value(&self) -> Option<&Value> {
        match self {
            Self::Value(v) => Some(v),
            Self::Null | Self::UnchangedToast => None,
        }
    }

    /// The value, for [`TypedColumn::Value`].
    pub fn into_value(self) -> Option<Value> {
        match self {
            Self::Value(v) => Some(v),
            Self::Null | Self::UnchangedToast => None,
        }
    }
}

/// Iterator over a row's columns decoded to typed values, see [`TupleData::typed`].
///
/// Yields one `Result` per column, in column order; a column that fails to decode yields its
/// error and the iteration may go on with the next column.
#[derive(Clone)]
pub struct TypedColumns<'a> {
    raw: &'a Bytes,
    columns: std::slice::Iter<'a, Column>,
    values: TupleRefIter<'a>,
    types: &'a dyn TypeLookup,
}

impl std::fmt::Debug for TypedColumns<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedColumns")
            .field("left", &self.values.len())
            .finish_non_exhaustive()
    }
}

impl Iterator for TypedColumns<'_> {
    type Item = Result<TypedColumn, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let column = self.columns.next()?;
        let (format, data) = match self.values.next()? {
            ColumnRef::Null => return Some(Ok(TypedColumn::Null)),
            ColumnRef::UnchangedToast => return Some(Ok(TypedColumn::UnchangedToast)),
            ColumnRef::Text(d) => (ValueFormat::Text, d),
            ColumnRef::Binary(d) => (ValueFormat::Binary, d),
        };
        let raw = Raw::within(self.raw, data);
        Some(decode_raw(self.types, column.type_oid, format, raw, 0).map(TypedColumn::Value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.values.size_hint()
    }
}

impl ExactSizeIterator for TypedColumns<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(b: &'static [u8]) -> Result<TupleData, DecodeError> {
        let mut c = Cursor::new(Bytes::from_static(b), "TupleData");
        let t = TupleData::decode(&mut c)?;
        c.finish()?;
        Ok(t)
    }

    #[test]
    fn decodes_every_kind() {
        let t = decode(b"\x00\x04nut\x00\x00\x00\x0242b\x00\x00\x00\x01\x07").unwrap();
        assert_eq!(t.len(), 4);
        let v: Vec<_> = t.iter().collect();
        assert_eq!(
            v,
            vec![
                ColumnValue::Null,
                ColumnValue::UnchangedToast,
                ColumnValue::Text(Bytes::from_static(b"42")),
                ColumnValue::Binary(Bytes::from_static(b"\x07")),
            ]
        );
        assert!(t.has_unchanged_toast());
        assert_eq!(t.get(2).unwrap().as_text(), Some("42"));
        let refs: Vec<_> = t.iter_ref().collect();
        assert_eq!(
            refs,
            [
                ColumnRef::Null,
                ColumnRef::UnchangedToast,
                ColumnRef::Text(b"42"),
                ColumnRef::Binary(b"\x07")
            ]
        );
        assert_eq!(refs[2].as_text(), Some("42"));
        assert_eq!(t.iter().len(), 4);
        let again = TupleData::from_values(&v).unwrap();
        assert_eq!(again, t);
        let mut out = BytesMut::new();
        t.encode(&mut out);
        assert_eq!(
            &out[..],
            b"\x00\x04nut\x00\x00\x00\x0242b\x00\x00\x00\x01\x07"
        );
    }

    fn relation(types: &[u32]) -> Relation {
        Relation {
            oid: crate::Oid(16_384),
            namespace: "public".into(),
            name: "t".into(),
            replica_identity: crate::pgoutput::ReplicaIdentity::DEFAULT,
            columns: types
                .iter()
                .enumerate()
                .map(|(i, &t)| Column {
                    flags: 0,
                    name: format!("c{i}"),
                    type_oid: crate::Oid(t),
                    type_modifier: -1,
                })
                .collect(),
        }
    }

    #[test]
    fn typed_columns() {
        // int4 text, text, NULL, unchanged TOAST, int8 binary, an unknown type.
        let t = decode(
            b"\x00\x06t\x00\x00\x00\x03-42t\x00\x00\x00\x03h\xc3\xa9nub\x00\x00\x00\x08\
              \x00\x00\x00\x00\x00\x00\x01\x00t\x00\x00\x00\x01z",
        )
        .unwrap();
        let rel = relation(&[23, 25, 23, 25, 20, 99_999]);
        let cols: Vec<_> = t.typed(&rel).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            cols,
            [
                TypedColumn::Value(Value::Int4(-42)),
                TypedColumn::Value(Value::Text(crate::PgText::from_static("h\u{e9}"))),
                TypedColumn::Null,
                TypedColumn::UnchangedToast,
                TypedColumn::Value(Value::Int8(256)),
                TypedColumn::Value(Value::Unknown {
                    format: ValueFormat::Text,
                    bytes: Bytes::from_static(b"z"),
                }),
            ]
        );
        // The same values as `decode_value` on the `Bytes` handles.
        for ((col, v), typed) in rel.columns.iter().zip(t.iter()).zip(&cols) {
            let (format, data) = match v {
                ColumnValue::Text(d) => (ValueFormat::Text, d),
                ColumnValue::Binary(d) => (ValueFormat::Binary, d),
                ColumnValue::Null | ColumnValue::UnchangedToast => continue,
            };
            let expected = crate::decode_value(col.type_oid, format, data).unwrap();
            assert_eq!(typed.value(), Some(&expected));
        }
        assert_eq!(t.typed(&rel).unwrap().len(), 6);
        assert!(matches!(
            t.typed(&relation(&[23])),
            Err(DecodeError::InvalidValue { .. })
        ));
        // A bad value is that column's error; the next column still decodes.
        let bad = relation(&[23, 23, 23, 25, 20, 25]);
        let mut it = t.typed(&bad).unwrap();
        assert_eq!(
            it.next().unwrap().unwrap().into_value(),
            Some(Value::Int4(-42))
        );
        assert!(matches!(
            it.next(),
            Some(Err(DecodeError::InvalidValue {
                context: "int4",
                ..
            }))
        ));
        assert_eq!(it.next().unwrap().unwrap(), TypedColumn::Null);
    }

    #[test]
    fn rejects_bad_structure() {
        assert!(matches!(
            decode(b"\x00\x01x"),
            Err(DecodeError::UnknownTag {
                tag: b'x',
                offset: 2,
                ..
            })
        ));
        assert!(matches!(
            decode(b"\xff\xff"),
            Err(DecodeError::InvalidLength { length: -1, .. })
        ));
        assert!(matches!(
            decode(b"\x00\x01t\xff\xff\xff\xff"),
            Err(DecodeError::InvalidLength { .. })
        ));
        assert!(matches!(
            decode(b"\x00\x01t\x00\x00\x00\x05ab"),
            Err(DecodeError::UnexpectedEof { .. })
        ));
        assert!(matches!(
            decode(b"\x00\x02n"),
            Err(DecodeError::UnexpectedEof { .. })
        ));
    }
}
