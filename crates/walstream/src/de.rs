//! Rows into user types: a serde `Deserializer` over a decoded [`Row`].
//!
//! [`Row::deserialize`] decodes every column of the row and hands them to serde:
//!
//! * a struct (or map) reads columns **by name**; columns the struct does not name are ignored,
//!   struct fields without a column are reported as missing (unless `#[serde(default)]`);
//! * a tuple, tuple struct or sequence reads columns **by position**;
//! * per column, the PostgreSQL value becomes what the target asks for — see the table in
//!   [`Row::deserialize`].
//!
//! SQL NULL deserializes into `Option::None` (and `()`); into any other type it is an error.
//! An **unchanged TOAST** value (an `UPDATE` that did not touch a large column, under
//! `REPLICA IDENTITY DEFAULT`) is *not* NULL and is never turned into `None`: deserializing it is
//! an error naming the column, unless the field's type is [`Toasted<T>`], which makes the state
//! explicit.
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::value::{BorrowedStrDeserializer, SeqDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::{Deserialize, Deserializer};
use walstream_proto::ArrayDim;
use walstream_proto::Value;
use walstream_proto::pgoutput::{Column, Relation};

use crate::row::{Field, Row, RowError};

/// The newtype-struct name [`Toasted`] asks for; the row deserializer recognises it.
const TOASTED: &str = "__walstream_Toasted";

/// Why a row could not be turned into the requested type.
///
/// [`column`](Self::column) names the column when the failure is about one; the message says
/// what was expected and what the column holds, e.g. `column "age": cannot deserialize int8
/// value 300 as u8 (out of range)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeserializeError {
    column: Option<String>,
    message: String,
}

impl DeserializeError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            column: None,
            message: message.into(),
        }
    }

    /// Attaches `column` unless a (more precise) column is already known.
    fn in_column(mut self, column: &str) -> Self {
        if self.column.is_none() {
            self.column = Some(column.to_owned());
        }
        self
    }

    /// Puts `attribute` (of a composite value) in front of the message.
    fn in_attribute(mut self, attribute: &str) -> Self {
        self.message = format!("attribute {attribute:?}: {}", self.message);
        self
    }

    /// The column the failure is about, if any.
    pub fn column(&self) -> Option<&str> {
        self.column.as_deref()
    }

    /// The description of the failure, without the column.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DeserializeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "column {c:?}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DeserializeError {}

impl de::Error for DeserializeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(msg.to_string())
    }
}

impl From<RowError> for DeserializeError {
    fn from(e: RowError) -> Self {
        match e {
            RowError::Decode { column, source } => Self {
                column: Some(column),
                message: format!("cannot decode the value: {source}"),
            },
            other => Self::new(other.to_string()),
        }
    }
}

impl From<DeserializeError> for crate::Error {
    fn from(e: DeserializeError) -> Self {
        Self::with_source(crate::ErrorKind::Deserialize, "cannot deserialize a row", e)
    }
}

/// A column value that may be an unchanged TOAST value.
///
/// Use it as a field type when a table has TOASTable columns and updates that do not touch
/// them: `Toasted::Unchanged` says the server did not send the value (it is still in the
/// table, unchanged), `Toasted::Value` holds the deserialized value. Combine with `Option` for
/// nullable columns: `Toasted<Option<String>>`.
///
/// With deserializers other than walstream's, a `Toasted<T>` deserializes like `T` and is
/// always `Value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Toasted<T> {
    /// The server did not send the value because the change did not touch it.
    Unchanged,
    /// The value.
    Value(T),
}

impl<T> Toasted<T> {
    /// The value, if it was sent.
    pub fn value(&self) -> Option<&T> {
        match self {
            Self::Value(v) => Some(v),
            Self::Unchanged => None,
        }
    }

    /// Consumes `self`, returning the value if it was sent.
    pub fn into_value(self) -> Option<T> {
        match self {
            Self::Value(v) => Some(v),
            Self::Unchanged => None,
        }
    }

    /// True for [`Toasted::Unchanged`].
    pub fn is_unchanged(&self) -> bool {
        matches!(self, Self::Unchanged)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Toasted<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Toasted<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a column value or an unchanged TOAST marker")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Toasted::Unchanged)
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                T::deserialize(d).map(Toasted::Value)
            }
        }
        deserializer.deserialize_newtype_struct(TOASTED, V(PhantomData))
    }
}

/// A row with every column decoded, ready to be deserialized (possibly borrowing from it).
///
/// [`Row::deserialize`] builds one internally; build it yourself with [`Row::decoded`] to
/// deserialize into types that borrow (`&str`, `&[u8]`).
#[derive(Debug, Clone)]
pub struct DecodedRow {
    relation: Arc<Relation>,
    fields: Vec<Field>,
}

impl DecodedRow {
    /// The relation's columns.
    pub fn columns(&self) -> &[Column] {
        &self.relation.columns
    }

    /// The decoded fields in column order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The field of the column named `name`.
    pub fn get(&self, name: &str) -> Option<&Field> {
        let i = self.relation.columns.iter().position(|c| c.name == name)?;
        self.fields.get(i)
    }

    /// Deserializes the row into `T`, borrowing strings and bytes from `self` where `T` asks.
    pub fn deserialize<'a, T: Deserialize<'a>>(&'a self) -> Result<T, DeserializeError> {
        T::deserialize(RowDeserializer { row: self })
    }
}

impl Row {
    /// Decodes every column.
    pub fn decoded(&self) -> Result<DecodedRow, RowError> {
        let fields = self.iter().map(|(_, f)| f).collect::<Result<Vec<_>, _>>()?;
        Ok(DecodedRow {
            relation: Arc::clone(self.relation()),
            fields,
        })
    }

    /// Deserializes the row into a user type with serde.
    ///
    /// Structs and maps read columns by name, tuples and sequences by position. Per column:
    ///
    /// | target | accepted PostgreSQL values |
    /// |---|---|
    /// | `bool` | `bool` |
    /// | `i8`…`i128`, `u8`…`u128` | `int2`, `int4`, `int8`, `oid`, `xid`, `xid8`, integral `numeric`; range-checked |
    /// | `f32`, `f64` | `float4`, `float8`, any integer, `numeric` (nearest double) |
    /// | `String`, `&str` | text types and enums as is; `json`/`jsonb` as the document text; everything else as text: PostgreSQL's output, except dates and times in ISO 8601 (`2024-01-02T03:04:05.5Z`, as in the JSON mapping) so chrono's and uuid's serde impls parse them |
    /// | `char` | `"char"`, one-character text |
    /// | `Option<T>` | NULL → `None`, else `Some` |
    /// | `Vec<u8>`, bytes | `bytea` (also text as UTF-8 bytes) |
    /// | `Vec<T>` | arrays (nested `Vec`s for more dimensions) |
    /// | struct, map | composite values, attributes **by name** (nested composites, arrays of composites as `Vec<struct>`) |
    /// | tuple, tuple struct, `Vec<T>` | composite values, attributes **by position** |
    /// | unit enum variants | enum labels and text, by name |
    /// | `serde_json::Value` and any type from JSON | `json`, `jsonb` (parsed with serde_json) |
    /// | [`Toasted<T>`] | an unchanged TOAST value → `Unchanged`, else `Value(T)` |
    ///
    /// Values of user-defined types need the stream's type registry (a
    /// [`LogicalStream`](crate::LogicalStream) resolves them by default): a domain reads as
    /// its base type, an enum as its label, a composite as above. Errors inside a composite
    /// name the attribute: `column "addr": attribute "zip": ...`.
    ///
    /// `deserialize_any` (e.g. `serde_json::Value` from a non-JSON column) gives numbers for
    /// numeric types, strings for text, sequences of bytes for `bytea`, sequences for arrays,
    /// maps for composites, and text for the rest (`numeric` too, exact, so
    /// `rust_decimal::Decimal` works).
    ///
    /// ```
    /// # use walstream::Row;
    /// #[derive(serde::Deserialize)]
    /// struct User {
    ///     id: i64,
    ///     name: Option<String>,
    /// }
    /// # fn demo(row: &Row) -> Result<(), walstream::DeserializeError> {
    /// let user: User = row.deserialize()?;
    /// # Ok(()) }
    /// ```
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, DeserializeError> {
        self.decoded()?.deserialize()
    }
}

struct RowDeserializer<'a> {
    row: &'a DecodedRow,
}

impl<'de> Deserializer<'de> for RowDeserializer<'de> {
    type Error = DeserializeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(RowMap {
            columns: self.row.columns().iter().zip(self.row.fields()),
            pending: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        let mut seq = RowSeq {
            columns: self.row.columns().iter().zip(self.row.fields()),
            left: self.row.fields().len(),
        };
        let value = visitor.visit_seq(&mut seq)?;
        if seq.left > 0 {
            return Err(DeserializeError::new(format!(
                "the row has {} columns, {} more than the target type takes",
                self.row.fields().len(),
                seq.left
            )));
        }
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct enum identifier ignored_any
    }
}

type ColumnIter<'a> = std::iter::Zip<std::slice::Iter<'a, Column>, std::slice::Iter<'a, Field>>;

struct RowMap<'a> {
    columns: ColumnIter<'a>,
    pending: Option<(&'a Column, &'a Field)>,
}

impl<'de> MapAccess<'de> for RowMap<'de> {
    type Error = DeserializeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((column, field)) = self.columns.next() else {
            return Ok(None);
        };
        self.pending = Some((column, field));
        seed.deserialize(BorrowedStrDeserializer::new(column.name.as_str()))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (column, field) = self
            .pending
            .take()
            .ok_or_else(|| DeserializeError::new("a value was asked for before its column name"))?;
        seed.deserialize(FieldDeserializer { field })
            .map_err(|e| e.in_column(&column.name))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.columns.len())
    }
}

struct RowSeq<'a> {
    columns: ColumnIter<'a>,
    left: usize,
}

impl<'de> SeqAccess<'de> for RowSeq<'de> {
    type Error = DeserializeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let Some((column, field)) = self.columns.next() else {
            return Ok(None);
        };
        self.left = self.left.saturating_sub(1);
        seed.deserialize(FieldDeserializer { field })
            .map(Some)
            .map_err(|e| e.in_column(&column.name))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// One column: NULL, unchanged TOAST or a value.
struct FieldDeserializer<'a> {
    field: &'a Field,
}

fn unchanged_toast_error() -> DeserializeError {
    DeserializeError::new(
        "unchanged TOAST value: the server did not send it because the change did not touch \
         it; use walstream::Toasted<T> for this field, or REPLICA IDENTITY FULL on the table",
    )
}

fn null_error(expected: &str) -> DeserializeError {
    DeserializeError::new(format!(
        "cannot deserialize NULL as {expected}; use Option<{expected}>"
    ))
}

macro_rules! field_forward {
    ($($method:ident => $what:literal),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                match self.field {
                    Field::Value(v) => ValueDeserializer { value: v }.$method(visitor),
                    Field::Null => Err(null_error($what)),
                    Field::UnchangedToast => Err(unchanged_toast_error()),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for FieldDeserializer<'de> {
    type Error = DeserializeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.field {
            Field::Value(v) => ValueDeserializer { value: v }.deserialize_any(visitor),
            Field::Null => visitor.visit_none(),
            Field::UnchangedToast => Err(unchanged_toast_error()),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.field {
            Field::Value(v) => visitor.visit_some(ValueDeserializer { value: v }),
            Field::Null => visitor.visit_none(),
            Field::UnchangedToast => Err(unchanged_toast_error()),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.field {
            Field::Value(v) => ValueDeserializer { value: v }.deserialize_unit(visitor),
            Field::Null => visitor.visit_unit(),
            Field::UnchangedToast => Err(unchanged_toast_error()),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.field {
            Field::UnchangedToast if name == TOASTED => visitor.visit_unit(),
            Field::UnchangedToast => Err(unchanged_toast_error()),
            _ => visitor.visit_newtype_struct(self),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.field {
            Field::Value(v) => {
                ValueDeserializer { value: v }.deserialize_enum(name, variants, visitor)
            }
            Field::Null => Err(null_error(name)),
            Field::UnchangedToast => Err(unchanged_toast_error()),
        }
    }

    field_forward! {
        deserialize_bool => "bool",
        deserialize_i8 => "i8",
        deserialize_i16 => "i16",
        deserialize_i32 => "i32",
        deserialize_i64 => "i64",
        deserialize_i128 => "i128",
        deserialize_u8 => "u8",
        deserialize_u16 => "u16",
        deserialize_u32 => "u32",
        deserialize_u64 => "u64",
        deserialize_u128 => "u128",
        deserialize_f32 => "f32",
        deserialize_f64 => "f64",
        deserialize_char => "char",
        deserialize_str => "&str",
        deserialize_string => "String",
        deserialize_bytes => "bytes",
        deserialize_byte_buf => "bytes",
        deserialize_seq => "Vec",
        deserialize_map => "map",
        deserialize_identifier => "identifier",
    }
}

/// The PostgreSQL type name of a value, for error messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Bool(_) => "bool",
        Value::Char(_) => "\"char\"",
        Value::Int2(_) => "int2",
        Value::Int4(_) => "int4",
        Value::Int8(_) => "int8",
        Value::Oid(_) => "oid",
        Value::Xid(_) => "xid",
        Value::Xid8(_) => "xid8",
        Value::Float4(_) => "float4",
        Value::Float8(_) => "float8",
        Value::Numeric(_) => "numeric",
        Value::Money(_) => "money",
        Value::Text(_) => "text",
        Value::Xml(_) => "xml",
        Value::Json(_) => "json",
        Value::Jsonb(_) => "jsonb",
        Value::Enum(_) => "enum",
        Value::Bytea(_) => "bytea",
        Value::Uuid(_) => "uuid",
        Value::Date(_) => "date",
        Value::Time(_) => "time",
        Value::TimeTz(_) => "timetz",
        Value::Timestamp(_) => "timestamp",
        Value::TimestampTz(_) => "timestamptz",
        Value::Interval(_) => "interval",
        Value::Inet(_) => "inet",
        Value::Cidr(_) => "cidr",
        Value::MacAddr(_) => "macaddr",
        Value::MacAddr8(_) => "macaddr8",
        Value::Bit(_) => "bit",
        Value::VarBit(_) => "varbit",
        Value::PgLsn(_) => "pg_lsn",
        Value::Array(_) => "array",
        Value::Range(_) => "range",
        Value::Multirange(_) => "multirange",
        Value::Composite(_) => "composite",
        _ => "value of an unknown type",
    }
}

/// A mismatch error: `cannot deserialize int8 value 300 as u8 (why)`.
pub(crate) fn mismatch(v: &Value, expected: &str, why: Option<&str>) -> DeserializeError {
    let mut shown = v.to_string();
    if shown.chars().count() > 40 {
        shown = shown.chars().take(37).collect::<String>() + "...";
    }
    let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
    DeserializeError::new(format!(
        "cannot deserialize {} value {shown:?} as {expected}{why}",
        type_name(v)
    ))
}

/// The value's text: as is for text types, ISO 8601 for dates and times, PostgreSQL's output
/// otherwise.
pub(crate) fn text_form(v: &Value) -> Cow<'_, str> {
    match v {
        Value::Text(t) | Value::Xml(t) | Value::Json(t) | Value::Jsonb(t) | Value::Enum(t) => {
            Cow::Borrowed(t.as_str())
        }
        Value::Date(_)
        | Value::Time(_)
        | Value::TimeTz(_)
        | Value::Timestamp(_)
        | Value::TimestampTz(_)
        | Value::Interval(_) => {
            let json = v.to_json();
            // These render as a JSON string without escapes; strip the quotes.
            match json.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(inner) => Cow::Owned(inner.to_owned()),
                None => Cow::Owned(json),
            }
        }
        other => Cow::Owned(other.to_string()),
    }
}

/// The value as an integer, when it is one.
fn integer(v: &Value) -> Option<i128> {
    match v {
        Value::Int2(n) => Some(i128::from(*n)),
        Value::Int4(n) => Some(i128::from(*n)),
        Value::Int8(n) => Some(i128::from(*n)),
        Value::Oid(n) => Some(i128::from(n.0)),
        Value::Xid(n) => Some(i128::from(n.0)),
        Value::Xid8(n) => Some(i128::from(*n)),
        Value::Numeric(n) if !n.is_nan() && !n.is_infinite() => {
            let s = n.to_string();
            // Integral when there is no fraction or only zeros after the point.
            let int_part = match s.split_once('.') {
                Some((i, frac)) if frac.bytes().all(|b| b == b'0') => i,
                Some(_) => return None,
                None => s.as_str(),
            };
            int_part.parse().ok()
        }
        _ => None,
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Float4(f) => Some(f64::from(*f)),
        Value::Float8(f) => Some(*f),
        Value::Numeric(n) => Some(n.to_f64()),
        other => {
            let i = integer(other)?;
            // Integers beyond 2^53 round to the nearest double, as `as` would.
            i.to_string().parse().ok()
        }
    }
}

/// One decoded value (never a column-level NULL or unchanged TOAST; array elements may be
/// [`Value::Null`]).
struct ValueDeserializer<'a> {
    value: &'a Value,
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            if let Some(text) = self.json() {
                return json_forward(text, |d| d.$method(visitor));
            }
            let Some(n) = integer(self.value) else {
                return Err(self.mismatch(stringify!($ty)));
            };
            let n = <$ty>::try_from(n)
                .map_err(|_| mismatch(self.value, stringify!($ty), Some("out of range")))?;
            visitor.$visit(n)
        }
    };
}

/// Runs a serde_json deserializer over `text`, requiring the whole document to be consumed.
fn json_forward<'de, T>(
    text: &'de str,
    f: impl FnOnce(&mut serde_json::Deserializer<serde_json::de::StrRead<'de>>) -> serde_json::Result<T>,
) -> Result<T, DeserializeError> {
    let mut d = serde_json::Deserializer::from_str(text);
    let v = f(&mut d).map_err(|e| DeserializeError::new(format!("in the JSON document: {e}")))?;
    d.end()
        .map_err(|e| DeserializeError::new(format!("in the JSON document: {e}")))?;
    Ok(v)
}

impl<'a> ValueDeserializer<'a> {
    fn json(&self) -> Option<&'a str> {
        match self.value {
            Value::Json(t) | Value::Jsonb(t) => Some(t.as_str()),
            _ => None,
        }
    }

    fn text(&self) -> Option<&'a str> {
        match self.value {
            Value::Text(t) | Value::Xml(t) | Value::Enum(t) => Some(t.as_str()),
            _ => None,
        }
    }

    fn mismatch(&self, expected: &str) -> DeserializeError {
        if self.value.is_null() {
            return null_error(expected);
        }
        mismatch(self.value, expected, None)
    }
}

impl<'de> Deserializer<'de> for ValueDeserializer<'de> {
    type Error = DeserializeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if let Some(text) = self.json() {
            return json_forward(text, |d| d.deserialize_any(visitor));
        }
        if let Some(text) = self.text() {
            return visitor.visit_borrowed_str(text);
        }
        match self.value {
            Value::Null => visitor.visit_none(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Char(c) => visitor.visit_char(char::from(*c)),
            Value::Int2(n) => visitor.visit_i16(*n),
            Value::Int4(n) => visitor.visit_i32(*n),
            Value::Int8(n) => visitor.visit_i64(*n),
            Value::Oid(n) => visitor.visit_u32(n.0),
            Value::Xid(n) => visitor.visit_u32(n.0),
            Value::Xid8(n) => visitor.visit_u64(*n),
            Value::Float4(f) => visitor.visit_f32(*f),
            Value::Float8(f) => visitor.visit_f64(*f),
            Value::Bytea(_) | Value::Array(_) => self.deserialize_seq(visitor),
            Value::Composite(c) => visitor.visit_map(CompositeMap::new(c)),
            other => visitor.visit_string(text_form(other).into_owned()),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if let Some(text) = self.json() {
            return json_forward(text, |d| d.deserialize_bool(visitor));
        }
        match self.value {
            Value::Bool(b) => visitor.visit_bool(*b),
            _ => Err(self.mismatch("bool")),
        }
    }

    int_method!(deserialize_i8, visit_i8, i8);
    int_method!(deserialize_i16, visit_i16, i16);
    int_method!(deserialize_i32, visit_i32, i32);
    int_method!(deserialize_i64, visit_i64, i64);
    int_method!(deserialize_i128, visit_i128, i128);
    int_method!(deserialize_u8, visit_u8, u8);
    int_method!(deserialize_u16, visit_u16, u16);
    int_method!(deserialize_u32, visit_u32, u32);
    int_method!(deserialize_u64, visit_u64, u64);
    int_method!(deserialize_u128, visit_u128, u128);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if let Some(text) = self.json() {
            return json_forward(text, |d| d.deserialize_f32(visitor));
        }
        match self.value {
            Value::Float4(f) => visitor.visit_f32(*f),
            v => match float(v) {
                Some(f) => visitor.visit_f64(f),
                None => Err(self.mismatch("f32")),
            },
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if let Some(text) = self.json() {
            return json_forward(text, |d| d.deserialize_f64(visitor));
        }
        match float(self.value) {
            Some(f) => visitor.visit_f64(f),
            None => Err(self.mismatch("f64")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if let Some(text) = self.json() {
            return json_forward(text, |d| d.deserialize_char(visitor));
        }
        if let Value::Char(c) = self.value {
            return visitor.visit_char(char::from(*c));
        }
        if let Some(text) = self.text() {
            let mut chars = text.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                return visitor.visit_char(c);
            }
        }
        Err(self.mismatch("char"))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if let Some(text) = self.text().or_else(|| self.json()) {
            return visitor.visit_borrowed_str(text);
        }
        if self.value.is_null() {
            return Err(null_error("String"));
        }
        match text_form(self.value) {
            Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
            Cow::Owned(s) => visitor.visit_string(s),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Bytea(b) => visitor.visit_borrowed_bytes(b),
            Value::Unknown { bytes, .. } => visitor.visit_borrowed_bytes(bytes),
            _ => match self.text().or_else(|| self.json()) {
                Some(t) => visitor.visit_borrowed_bytes(t.as_bytes()),
                None => Err(self.mismatch("bytes")),
            },
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.value.is_null() {
            return visitor.visit_none();
        }
        if let Some(text) = self.json() {
            return json_forward(text, |d| d.deserialize_option(visitor));
        }
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.value.is_null() {
            return visitor.visit_unit();
        }
        if let Some(text) = self.json() {
            return json_forward(text, |d| d.deserialize_unit(visitor));
        }
        Err(self.mismatch("()"))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if let Some(text) = self.json() {
            return json_forward(text, |d| d.deserialize_seq(visitor));
        }
        match self.value {
            Value::Array(a) => ArrayDeserializer {
                elements: a.elements(),
                dims: a.dims(),
            }
            .deserialize_seq(visitor),
            Value::Bytea(b) => {
                let mut seq = SeqDeserializer::<_, DeserializeError>::new(b.iter().copied());
                let v = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(v)
            }
            Value::Composite(c) => {
                let mut seq = CompositeSeq {
                    attributes: Attributes::new(c),
                };
                let v = visitor.visit_seq(&mut seq)?;
                let left = seq.attributes.left();
                if left > 0 {
                    return Err(DeserializeError::new(format!(
                        "the composite value has {} attributes, {left} more than the target \
                         type takes",
                        c.values().len()
                    )));
                }
                Ok(v)
            }
            _ => Err(self.mismatch("a sequence")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if let Value::Composite(c) = self.value {
            return visitor.visit_map(CompositeMap::new(c));
        }
        match self.json() {
            Some(text) => json_forward(text, |d| d.deserialize_map(visitor)),
            None => Err(self.mismatch("a map")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if let Value::Composite(c) = self.value {
            return visitor.visit_map(CompositeMap::new(c));
        }
        match self.json() {
            Some(text) => json_forward(text, |d| d.deserialize_struct(name, fields, visitor)),
            None => Err(self.mismatch(name)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if let Some(text) = self.json() {
            return json_forward(text, |d| d.deserialize_enum(name, variants, visitor));
        }
        match self.text() {
            Some(label) => visitor.visit_enum(label.into_deserializer()),
            None => Err(self.mismatch(name)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }
}

/// A composite value's attributes, one at a time.
struct Attributes<'a> {
    composite: &'a walstream_proto::PgComposite,
    next: usize,
}

impl<'a> Attributes<'a> {
    fn new(composite: &'a walstream_proto::PgComposite) -> Self {
        Self { composite, next: 0 }
    }

    fn next(&mut self) -> Option<(&'a str, &'a Value)> {
        let name = self.composite.fields().get(self.next)?;
        let value = self.composite.values().get(self.next)?;
        self.next += 1;
        Some((name.name.as_str(), value))
    }

    fn left(&self) -> usize {
        self.composite.values().len().saturating_sub(self.next)
    }
}

/// A composite value's attributes by name (into a struct or map).
struct CompositeMap<'a> {
    attributes: Attributes<'a>,
    pending: Option<(&'a str, &'a Value)>,
}

impl<'a> CompositeMap<'a> {
    fn new(composite: &'a walstream_proto::PgComposite) -> Self {
        Self {
            attributes: Attributes::new(composite),
            pending: None,
        }
    }
}

impl<'de> MapAccess<'de> for CompositeMap<'de> {
    type Error = DeserializeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((name, value)) = self.attributes.next() else {
            return Ok(None);
        };
        self.pending = Some((name, value));
        seed.deserialize(BorrowedStrDeserializer::new(name))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (name, value) = self.pending.take().ok_or_else(|| {
            DeserializeError::new("a value was asked for before its attribute name")
        })?;
        seed.deserialize(ValueDeserializer { value })
            .map_err(|e| e.in_attribute(name))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.attributes.left())
    }
}

/// A composite value's attributes by position (into a tuple or sequence).
struct CompositeSeq<'a> {
    attributes: Attributes<'a>,
}

impl<'de> SeqAccess<'de> for CompositeSeq<'de> {
    type Error = DeserializeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let Some((name, value)) = self.attributes.next() else {
            return Ok(None);
        };
        seed.deserialize(ValueDeserializer { value })
            .map(Some)
            .map_err(|e| e.in_attribute(name))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.attributes.left())
    }
}

/// A (sub-)array: `dims[0].len` items, each an element (last dimension) or a sub-array.
struct ArrayDeserializer<'a> {
    elements: &'a [Value],
    dims: &'a [ArrayDim],
}

impl<'de> Deserializer<'de> for ArrayDeserializer<'de> {
    type Error = DeserializeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        let (len, inner) = match self.dims.split_first() {
            Some((first, rest)) => (first.len, rest),
            None => (0, &[][..]),
        };
        let chunk: usize = inner.iter().map(|d| d.len).product();
        let mut seq = ArraySeq {
            elements: self.elements,
            inner,
            chunk,
            next: 0,
            len,
        };
        let v = visitor.visit_seq(&mut seq)?;
        if seq.next < seq.len {
            return Err(DeserializeError::new(format!(
                "the array has {} elements, more than the target type takes",
                seq.len
            )));
        }
        Ok(v)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct ArraySeq<'a> {
    elements: &'a [Value],
    inner: &'a [ArrayDim],
    chunk: usize,
    next: usize,
    len: usize,
}

impl<'de> SeqAccess<'de> for ArraySeq<'de> {
    type Error = DeserializeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        if self.next >= self.len {
            return Ok(None);
        }
        let i = self.next;
        self.next += 1;
        let bad = || DeserializeError::new("array dimensions do not match its elements");
        if self.inner.is_empty() {
            let value = self.elements.get(i).ok_or_else(bad)?;
            seed.deserialize(ValueDeserializer { value }).map(Some)
        } else {
            let start = i.checked_mul(self.chunk).ok_or_else(bad)?;
            let end = start.checked_add(self.chunk).ok_or_else(bad)?;
            let elements = self.elements.get(start..end).ok_or_else(bad)?;
            seed.deserialize(ArrayDeserializer {
                elements,
                dims: self.inner,
            })
            .map(Some)
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len - self.next)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Deserialize;

    use super::*;
    use crate::row::tests::{relation, tuple};

    fn row(cols: &[(&str, u32)], vals: &[Option<&str>]) -> Row {
        let cols: Vec<(&str, u32, bool)> = cols.iter().map(|&(n, t)| (n, t, false)).collect();
        Row::new(relation(1, "t", &cols), tuple(vals))
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mood {
        Happy,
        Sad,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Everything {
        id: i64,
        small: u8,
        ratio: f64,
        price: f64,
        ok: bool,
        name: String,
        nick: Option<String>,
        mood: Mood,
        doc: serde_json::Value,
        data: Vec<u8>,
        tags: Vec<String>,
        grid: Vec<Vec<Option<i32>>>,
        at: String,
        amount: String,
    }

    #[test]
    fn struct_by_column_name() {
        let r = row(
            &[
                ("id", 20),
                ("small", 21),
                ("ratio", 701),
                ("price", 1700),
                ("ok", 16),
                ("name", 25),
                ("nick", 1043),
                ("mood", 25),
                ("doc", 3802),
                ("data", 17),
                ("tags", 1009),
                ("grid", 1007),
                ("at", 1184),
                ("amount", 1700),
                ("ignored", 25),
            ],
            &[
                Some("9000000000"),
                Some("200"),
                Some("0.5"),
                Some("12.25"),
                Some("t"),
                Some("Ann"),
                None,
                Some("happy"),
                Some(r#"{"a": [1, 2]}"#),
                Some("\\x0102ff"),
                Some("{a,\"b c\"}"),
                Some("{{1,NULL},{3,4}}"),
                Some("2024-01-02 03:04:05.5+00"),
                Some("123456789012345678901234567890.000001"),
                Some("whatever"),
            ],
        );
        let e: Everything = r.deserialize().unwrap();
        assert_eq!(
            e,
            Everything {
                id: 9_000_000_000,
                small: 200,
                ratio: 0.5,
                price: 12.25,
                ok: true,
                name: "Ann".into(),
                nick: None,
                mood: Mood::Happy,
                doc: serde_json::json!({"a": [1, 2]}),
                data: vec![1, 2, 0xff],
                tags: vec!["a".into(), "b c".into()],
                grid: vec![vec![Some(1), None], vec![Some(3), Some(4)]],
                at: "2024-01-02T03:04:05.5Z".into(),
                amount: "123456789012345678901234567890.000001".into(),
            }
        );
    }

    #[test]
    fn tuples_by_position_and_borrowed_str() {
        let r = row(&[("a", 23), ("b", 25)], &[Some("7"), Some("x")]);
        let t: (i32, String) = r.deserialize().unwrap();
        assert_eq!(t, (7, "x".to_owned()));
        let d = r.decoded().unwrap();
        let (n, s): (i64, &str) = d.deserialize().unwrap();
        assert_eq!((n, s), (7, "x"));
        let err = r.deserialize::<(i32,)>().unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
        let m: HashMap<String, serde_json::Value> = r.deserialize().unwrap();
        assert_eq!(m["a"], serde_json::json!(7));
        assert_eq!(m["b"], serde_json::json!("x"));
    }

    #[test]
    fn out_of_range_names_column_and_type() {
        #[derive(Debug, Deserialize)]
        struct S {
            #[allow(dead_code)]
            age: u8,
        }
        let r = row(&[("age", 20)], &[Some("300")]);
        let err = r.deserialize::<S>().unwrap_err();
        assert_eq!(err.column(), Some("age"));
        assert_eq!(
            err.to_string(),
            r#"column "age": cannot deserialize int8 value "300" as u8 (out of range)"#
        );
        let r = row(&[("age", 23)], &[Some("-1")]);
        assert!(r.deserialize::<S>().is_err());
    }

    #[test]
    fn type_mismatch_and_null_errors() {
        #[derive(Debug, Deserialize)]
        struct S {
            #[allow(dead_code)]
            flag: bool,
        }
        let err = row(&[("flag", 25)], &[Some("yes")])
            .deserialize::<S>()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"column "flag": cannot deserialize text value "yes" as bool"#
        );
        let err = row(&[("flag", 16)], &[None])
            .deserialize::<S>()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"column "flag": cannot deserialize NULL as bool; use Option<bool>"#
        );
        let err = row(&[("n", 1700)], &[Some("1.5")])
            .deserialize::<(i32,)>()
            .unwrap_err();
        assert!(
            err.to_string().contains("numeric value \"1.5\" as i32"),
            "{err}"
        );
        let ok: (i32,) = row(&[("n", 1700)], &[Some("42.000")])
            .deserialize()
            .unwrap();
        assert_eq!(ok, (42,));
    }

    #[test]
    fn missing_column_and_decode_errors() {
        #[derive(Debug, Deserialize)]
        struct S {
            #[allow(dead_code)]
            id: i32,
            #[allow(dead_code)]
            other: i32,
        }
        let err = row(&[("id", 23)], &[Some("1")])
            .deserialize::<S>()
            .unwrap_err();
        assert!(err.to_string().contains("missing field `other`"), "{err}");
        let err = row(&[("id", 23)], &[Some("x")])
            .deserialize::<(i32,)>()
            .unwrap_err();
        assert_eq!(err.column(), Some("id"));
        assert!(err.message().starts_with("cannot decode"), "{err}");
    }

    #[test]
    fn unchanged_toast_is_an_error_unless_toasted() {
        #[derive(Debug, Deserialize)]
        struct Plain {
            #[allow(dead_code)]
            body: Option<String>,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        struct Aware {
            id: i32,
            body: Toasted<Option<String>>,
        }
        let r = row(
            &[("id", 23), ("body", 25)],
            &[Some("1"), Some("\u{0}toast")],
        );
        let err = r.deserialize::<Plain>().unwrap_err();
        assert_eq!(err.column(), Some("body"));
        assert!(err.message().contains("unchanged TOAST"), "{err}");
        let a: Aware = r.deserialize().unwrap();
        assert_eq!(
            a,
            Aware {
                id: 1,
                body: Toasted::Unchanged
            }
        );
        let r = row(&[("id", 23), ("body", 25)], &[Some("1"), None]);
        assert_eq!(r.deserialize::<Aware>().unwrap().body, Toasted::Value(None));
        let r = row(&[("id", 23), ("body", 25)], &[Some("1"), Some("hi")]);
        let a: Aware = r.deserialize().unwrap();
        assert_eq!(a.body.value(), Some(&Some("hi".to_owned())));
        // Elsewhere, Toasted<T> reads like T.
        let t: Toasted<i32> = serde_json::from_str("5").unwrap();
        assert_eq!(t, Toasted::Value(5));
    }

    #[test]
    fn enums_json_structs_and_unknown_labels() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Inner {
            a: Vec<i32>,
        }
        let r = row(
            &[("doc", 114), ("mood", 25)],
            &[Some(r#"{"a":[1]}"#), Some("sad")],
        );
        let (inner, mood): (Inner, Mood) = r.deserialize().unwrap();
        assert_eq!((inner, mood), (Inner { a: vec![1] }, Mood::Sad));
        let (raw, _): (String, String) = r.deserialize().unwrap();
        assert_eq!(raw, r#"{"a":[1]}"#);
        let r = row(&[("mood", 25)], &[Some("meh")]);
        let err = r.deserialize::<(Mood,)>().unwrap_err();
        assert_eq!(err.column(), Some("mood"));
        assert!(err.message().contains("unknown variant"), "{err}");
        let r = row(&[("doc", 3802)], &[Some("[1,2] x")]);
        let err = r.deserialize::<(serde_json::Value,)>().unwrap_err();
        assert!(err.message().contains("JSON"), "{err}");
    }

    /// A registry with enum `mood` (16500), composite `pair` (16510: a int4, b text, m mood,
    /// tags text[]), its array (16511), composite `outer` (16520: p pair, n numeric domain)
    /// and the domain `price` (16530, over numeric).
    fn user_types() -> Arc<walstream_proto::TypeRegistry> {
        use walstream_proto::{CompositeField, Oid, TypeKind, TypeRegistry};
        let mut t = TypeRegistry::new();
        t.register_enum(Oid(16_500), vec!["sad".into(), "happy".into()]);
        t.register_composite(
            Oid(16_510),
            vec![
                CompositeField::new("a", Oid::INT4),
                CompositeField::new("b", Oid::TEXT),
                CompositeField::new("m", Oid(16_500)),
                CompositeField::new("tags", Oid::TEXT_ARRAY),
            ],
        );
        t.register(
            Oid(16_511),
            TypeKind::Array {
                element: Oid(16_510),
            },
        );
        t.register(Oid(16_530), TypeKind::Domain { base: Oid::NUMERIC });
        t.register_composite(
            Oid(16_520),
            vec![
                CompositeField::new("p", Oid(16_510)),
                CompositeField::new("n", Oid(16_530)),
            ],
        );
        Arc::new(t)
    }

    fn typed_row(cols: &[(&str, u32)], vals: &[Option<&str>]) -> Row {
        row(cols, vals).with_types(Some(user_types()))
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Pair {
        b: Option<String>,
        a: i32,
        m: Mood,
        tags: Vec<Option<String>>,
    }

    #[test]
    fn composites_into_structs_tuples_and_vecs() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Outer {
            n: f64,
            p: Pair,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        struct Cols {
            pair: Pair,
            pairs: Vec<Pair>,
            outer: Outer,
            price: String,
            mood: Mood,
        }
        let r = typed_row(
            &[
                ("pair", 16_510),
                ("pairs", 16_511),
                ("outer", 16_520),
                ("price", 16_530),
                ("mood", 16_500),
            ],
            &[
                Some(r#"(1,"x y",happy,"{a,NULL}")"#),
                Some(r#"{"(2,,sad,{})","(3,z,happy,\"{\"\"b c\"\"}\")"}"#),
                Some(r#"("(4,w,sad,{})",12.50)"#),
                Some("99.95"),
                Some("sad"),
            ],
        );
        let pair = |a, b: Option<&str>, m, tags: &[Option<&str>]| Pair {
            a,
            b: b.map(str::to_owned),
            m,
            tags: tags.iter().map(|t| t.map(str::to_owned)).collect(),
        };
        let cols: Cols = r.deserialize().unwrap();
        assert_eq!(
            cols,
            Cols {
                pair: pair(1, Some("x y"), Mood::Happy, &[Some("a"), None]),
                pairs: vec![
                    pair(2, None, Mood::Sad, &[]),
                    pair(3, Some("z"), Mood::Happy, &[Some("b c")]),
                ],
                outer: Outer {
                    n: 12.5,
                    p: pair(4, Some("w"), Mood::Sad, &[]),
                },
                price: "99.95".into(),
                mood: Mood::Sad,
            }
        );
        // By position: tuples.
        type PairTuple = (i64, String, String, Vec<Option<String>>);
        type Skip = de::IgnoredAny;
        type OuterTuple = ((i32, Skip, Mood, Skip), f32);
        let (p, _, (o, n), price, _): (PairTuple, Skip, OuterTuple, f64, Skip) =
            r.deserialize().unwrap();
        assert_eq!((p.0, p.1.as_str(), p.2.as_str()), (1, "x y", "happy"));
        assert_eq!((o.0, o.2), (4, Mood::Sad));
        assert!((n - 12.5).abs() < 1e-6 && (price - 99.95).abs() < 1e-9);
        // Any: an object in attribute order, NULL attributes null.
        let any: HashMap<String, serde_json::Value> = r.deserialize().unwrap();
        assert_eq!(
            any["pair"],
            serde_json::json!({"a": 1, "b": "x y", "m": "happy", "tags": ["a", null]})
        );
        assert_eq!(any["pairs"][0]["b"], serde_json::Value::Null);
        // As text: PostgreSQL's output.
        let (text,): (String,) = typed_row(&[("pair", 16_510)], &[Some("(1,,sad,{})")])
            .deserialize()
            .unwrap();
        assert_eq!(text, "(1,,sad,{})");
    }

    #[test]
    fn composite_errors_name_column_and_attribute() {
        let r = typed_row(&[("pair", 16_510)], &[Some("(1,,sad,{})")]);
        // A NULL attribute into a non-Option field.
        #[derive(Debug, Deserialize)]
        struct Strict {
            #[allow(dead_code)]
            b: String,
        }
        let err = r.deserialize::<(Strict,)>().unwrap_err();
        assert_eq!(err.column(), Some("pair"));
        assert!(err.message().starts_with("attribute \"b\": "), "{err}");
        assert!(err.message().contains("NULL"), "{err}");
        // A missing attribute.
        #[derive(Debug, Deserialize)]
        struct Missing {
            #[allow(dead_code)]
            zip: i32,
        }
        let err = r.deserialize::<(Missing,)>().unwrap_err();
        assert!(err.message().contains("missing field `zip`"), "{err}");
        // Too few positions, a type mismatch, an unknown enum label in an attribute.
        let err = r.deserialize::<((i32, Option<String>),)>().unwrap_err();
        assert!(err.message().contains("4 attributes, 2 more"), "{err}");
        let err = r.deserialize::<((String, bool),)>().unwrap_err();
        assert!(err.message().starts_with("attribute \"b\": "), "{err}");
        let r = typed_row(&[("pair", 16_510)], &[Some("(1,x,meh,{})")]);
        let err = r.deserialize::<(Pair,)>().unwrap_err();
        assert!(err.message().starts_with("attribute \"m\": "), "{err}");
        assert!(err.message().contains("unknown variant"), "{err}");
        // A composite is not a number; without a registry it is its text.
        let err = r.deserialize::<(i32,)>().unwrap_err();
        assert!(err.message().contains("composite"), "{err}");
        let untyped = row(&[("pair", 16_510)], &[Some("(1,x,meh,{})")]);
        let (text,): (String,) = untyped.deserialize().unwrap();
        assert_eq!(text, "(1,x,meh,{})");
        assert!(untyped.deserialize::<(Pair,)>().is_err());
    }

    #[test]
    fn floats_chars_and_any() {
        let r = row(
            &[("f", 700), ("i", 23), ("c", 18), ("u", 2950), ("b", 17)],
            &[
                Some("1.5"),
                Some("3"),
                Some("x"),
                Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                Some("\\x00"),
            ],
        );
        let (f, i, c, u, b): (f32, f64, char, String, serde_json::Value) = r.deserialize().unwrap();
        assert_eq!((f, i, c), (1.5, 3.0, 'x'));
        assert_eq!(u, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert_eq!(b, serde_json::json!([0]));
        let v: serde_json::Value = r.deserialize().unwrap();
        assert_eq!(v["i"], serde_json::json!(3));
        assert_eq!(v["f"], serde_json::json!(1.5));
    }
}
