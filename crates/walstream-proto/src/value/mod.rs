//! Typed column values, decoded by type OID from PostgreSQL's text or binary format.
//!
//! PostgreSQL sends every column value either as its *text* output (what `SELECT v::text`
//! prints) or, when asked, as its *binary* `send` output. [`decode_value`] turns either into a
//! [`Value`] for the built-in types below; a [`TypeRegistry`] adds what only the server's
//! catalog knows (enums, domains, arrays and ranges of user types), as `pgoutput`'s Type
//! messages describe them. A type that is neither built in nor registered becomes
//! [`Value::Unknown`], which keeps the raw text or bytes without loss.
//!
//! Text, `varchar`, `bpchar`, `name`, `json`, `jsonb`, `xml` and enum labels stay backed by the
//! received [`Bytes`] ([`PgText`], validated as UTF-8 once); integers, booleans and short text
//! decode without allocating. Numerics are exact ([`PgNumeric`], never through `f64`).
//!
//! The text format is read as the server prints it with `DateStyle=ISO`,
//! `IntervalStyle=postgres` and `bytea_output=hex` (the escape format is accepted too); the
//! offset a `timestamptz` is printed with (the session `TimeZone`) is honoured, and
//! `timestamptz` values are always *shown* in UTC.
//!
//! The supported types and the JSON mapping are documented on [`Value`].

#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod array;
mod composite;
mod datetime;
// Reached through `crate::internal`'s fuzz hooks.
pub(crate) mod fuzz;
mod json;
mod network;
mod numeric;
mod oids;
mod range;
mod scalar;
mod text;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::DecodeError;
use crate::types::{Lsn, Oid, PgTimestamp, Xid};

pub use array::{ArrayDim, PgArray};
pub use composite::{CompositeField, PgComposite};
pub use datetime::{PgDate, PgInterval, PgTime, PgTimeTz};
pub use network::{MacAddr, MacAddr8, PgInet};
pub use numeric::PgNumeric;
pub use range::{PgMultirange, PgRange, RangeBound};
pub(crate) use scalar::Raw;
pub use scalar::{PgBit, PgMoney, PgUuid};
pub use text::PgText;

/// How a column value is encoded on the wire: PostgreSQL's format codes 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueFormat {
    /// The type's text output (format code 0).
    Text,
    /// The type's binary `send` output (format code 1).
    Binary,
}

impl ValueFormat {
    /// From a protocol format code: 0 is text, 1 is binary.
    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            0 => Some(Self::Text),
            1 => Some(Self::Binary),
            _ => None,
        }
    }

    /// The protocol format code.
    pub fn code(self) -> i16 {
        match self {
            Self::Text => 0,
            Self::Binary => 1,
        }
    }
}

/// A decoded column value.
///
/// `Display` prints PostgreSQL's own text output of the value (with `DateStyle=ISO`,
/// `IntervalStyle=postgres`, `TimeZone=UTC`, `extra_float_digits>=1`, `bytea_output=hex` and
/// `lc_monetary=C`); [`Value::Null`] prints `NULL`, which is not a PostgreSQL output.
/// [`Value::write_json`] renders the [JSON mapping](#json-mapping) below.
///
/// # Supported types
///
/// `bool`, `"char"`, `int2`, `int4`, `int8`, `oid`, `xid`, `xid8`, `float4`, `float8`,
/// `numeric`, `money`, `text`, `varchar`, `bpchar`, `name`, `xml`, `json`, `jsonb`, `bytea`,
/// `uuid`, `date`, `time`, `timetz`, `timestamp`, `timestamptz`, `interval`, `inet`, `cidr`,
/// `macaddr`, `macaddr8`, `bit`, `varbit`, `pg_lsn`, one-dimensional and multi-dimensional
/// arrays of all of these, the built-in ranges and multiranges, and through the registry enums,
/// domains, composite types, and arrays, ranges and multiranges of any decodable type.
///
/// # JSON mapping
///
/// [`Value::write_json`] renders a value as JSON text, written by hand (no `serde_json`):
///
/// | PostgreSQL type | JSON |
/// |---|---|
/// | NULL (only inside arrays and ranges) | `null` |
/// | `bool` | `true` / `false` |
/// | `int2`, `int4`, `int8`, `oid`, `xid`, `xid8` | number |
/// | `float4`, `float8` | number (shortest round-trip digits); `"NaN"`, `"Infinity"`, `"-Infinity"` as strings |
/// | `numeric` | string with the exact decimal text, e.g. `"12.340"`, `"NaN"` |
/// | `money` | string, the server's text (or `$1,234.50` style for binary input) |
/// | `text`, `varchar`, `bpchar`, `name`, `"char"`, `xml`, enum | string (escaped) |
/// | `json`, `jsonb` | the document itself, embedded raw (it is JSON already; it is checked, and a malformed document from the peer is rendered as a JSON string instead) |
/// | `bytea` | string `"\\x0102…"` (PostgreSQL's hex text) |
/// | `uuid`, `inet`, `cidr`, `macaddr`, `macaddr8`, `bit`, `varbit`, `pg_lsn` | string, PostgreSQL's text |
/// | `date` | ISO 8601 string `"2024-02-29"`; BC dates with astronomical years `"-0043-03-15"`; `"infinity"` / `"-infinity"` |
/// | `time` / `timetz` | `"03:04:05.5"` / `"03:04:05.5+05:30"` |
/// | `timestamp` | `"2024-01-02T03:04:05.123456"` (fraction trimmed, absent when zero) |
/// | `timestamptz` | `"2024-01-02T03:04:05.123456Z"`, always UTC |
/// | `interval` | ISO 8601 duration as PostgreSQL's `iso_8601` IntervalStyle prints it, e.g. `"P1Y2M-3DT-4H-5M-6.5S"`, `"PT0S"`; `"infinity"` / `"-infinity"` (PostgreSQL 17+) |
/// | arrays | nested JSON arrays following the dimensions (lower bounds are dropped); `{}` is `[]` |
/// | ranges | `{"lower":…,"upper":…,"lower_inc":…,"upper_inc":…}` (`null` for an unbounded side) or `"empty"` |
/// | multiranges | array of range objects |
/// | composite (registered with its attributes) | object `{"a":1,"b":"x y"}` in attribute order, NULL attributes `null` |
/// | unknown type | string: the text as received, or `"\\x…"` hex for binary |
///
/// An unchanged TOASTed column is not a value: `pgoutput` marks it and the caller decides.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL (an array element or a value the caller builds; a column's NULL is marked by
    /// the protocol before any decoding).
    Null,
    /// `bool`.
    Bool(bool),
    /// `"char"`: a single byte.
    Char(u8),
    /// `int2` / `smallint`.
    Int2(i16),
    /// `int4` / `integer`.
    Int4(i32),
    /// `int8` / `bigint`.
    Int8(i64),
    /// `oid`.
    Oid(Oid),
    /// `xid` (32-bit transaction id).
    Xid(Xid),
    /// `xid8` (64-bit full transaction id).
    Xid8(u64),
    /// `float4` / `real`.
    Float4(f32),
    /// `float8` / `double precision`.
    Float8(f64),
    /// `numeric`, exact.
    Numeric(PgNumeric),
    /// `money`.
    Money(PgMoney),
    /// `text`, `varchar`, `bpchar` and `name`.
    Text(PgText),
    /// `xml`.
    Xml(PgText),
    /// `json`, the document text as sent.
    Json(PgText),
    /// `jsonb`, the document text (the binary format's version byte removed).
    Jsonb(PgText),
    /// A label of an enum type (known through a [`TypeRegistry`]).
    Enum(PgText),
    /// `bytea`.
    Bytea(Bytes),
    /// `uuid`.
    Uuid(PgUuid),
    /// `date`.
    Date(PgDate),
    /// `time` (without time zone).
    Time(PgTime),
    /// `timetz`.
    TimeTz(PgTimeTz),
    /// `timestamp` (without time zone): the wall-clock reading, stored as if it were UTC.
    Timestamp(PgTimestamp),
    /// `timestamptz`: an instant, normalised to UTC.
    TimestampTz(PgTimestamp),
    /// `interval`.
    Interval(PgInterval),
    /// `inet`.
    Inet(PgInet),
    /// `cidr`.
    Cidr(PgInet),
    /// `macaddr`.
    MacAddr(MacAddr),
    /// `macaddr8`.
    MacAddr8(MacAddr8),
    /// `bit(n)`.
    Bit(PgBit),
    /// `varbit` / `bit varying`.
    VarBit(PgBit),
    /// `pg_lsn`.
    PgLsn(Lsn),
    /// An array of any decodable element type.
    Array(PgArray),
    /// A range.
    Range(PgRange),
    /// A multirange (PostgreSQL 14+).
    Multirange(PgMultirange),
    /// A value of a composite type (known through a [`TypeRegistry`] with its attributes).
    Composite(PgComposite),
    /// A value of a type this decoder does not know, kept as received.
    Unknown {
        /// The format the bytes are in.
        format: ValueFormat,
        /// The raw text (for [`ValueFormat::Text`]) or binary bytes.
        bytes: Bytes,
    },
}

/// What the server's catalog says about a type that is not built in.
///
/// `pgoutput` sends a Type message for each user type before a Relation that uses it; the
/// caller (or the facade) turns the `pg_type` facts into a `TypeKind` and registers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TypeKind {
    /// An enum: values are their labels.
    Enum,
    /// A domain: values are decoded as the base type.
    Domain {
        /// The domain's base type (`pg_type.typbasetype`).
        base: Oid,
    },
    /// An array type of `element` (`pg_type.typelem`); elements are comma-delimited.
    Array {
        /// The element type.
        element: Oid,
    },
    /// A range type over `subtype` (`pg_range.rngsubtype`).
    Range {
        /// The bound type.
        subtype: Oid,
    },
    /// A multirange type of `range` (`pg_range.rngtypid`).
    Multirange {
        /// The range type.
        range: Oid,
    },
    /// A composite type; its attributes come from [`TypeLookup::composite_fields`] (register
    /// it with [`TypeRegistry::register_composite`]). Without them its values stay
    /// [`Value::Unknown`].
    Composite,
}

/// A source of [`TypeKind`]s for type OIDs that are not built in.
pub trait TypeLookup {
    /// What `oid` is, or `None` if unknown.
    fn type_kind(&self, oid: Oid) -> Option<TypeKind>;

    /// The attributes of composite type `oid` (none by default).
    fn composite_fields(&self, oid: Oid) -> Option<Arc<[CompositeField]>> {
        let _ = oid;
        None
    }
}

/// A map from type OIDs to [`TypeKind`]s, and the entry point to decode with it.
///
/// ```
/// use walstream_proto::{Oid, TypeKind, TypeRegistry, Value, ValueFormat};
/// let mut types = TypeRegistry::new();
/// types.register(Oid(16_385), TypeKind::Enum);
/// types.register(Oid(16_384), TypeKind::Array { element: Oid(16_385) });
/// let v = types.decode(Oid(16_384), ValueFormat::Text, "{sad,happy}".into()).unwrap();
/// assert_eq!(v.to_string(), "{sad,happy}");
/// ```
#[derive(Debug, Clone, Default)]
pub struct TypeRegistry {
    kinds: HashMap<Oid, TypeKind>,
    composites: HashMap<Oid, Arc<[CompositeField]>>,
    enum_labels: HashMap<Oid, Arc<[String]>>,
}

impl TypeRegistry {
    /// An empty registry: only built-in types are decoded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what `oid` is, replacing an earlier entry. Enum labels registered with
    /// [`register_enum`](Self::register_enum) are kept while `oid` stays an enum.
    pub fn register(&mut self, oid: Oid, kind: TypeKind) {
        if kind != TypeKind::Enum {
            self.enum_labels.remove(&oid);
        }
        if kind != TypeKind::Composite {
            self.composites.remove(&oid);
        }
        self.kinds.insert(oid, kind);
    }

    /// Records enum type `oid` with its labels in sort order (`pg_enum.enumsortorder`),
    /// replacing an earlier entry. Values decode as [`Value::Enum`] whatever the labels; they
    /// are what output formats list as the allowed values (Debezium's `io.debezium.data.Enum`).
    pub fn register_enum(&mut self, oid: Oid, labels: Vec<String>) {
        self.composites.remove(&oid);
        self.kinds.insert(oid, TypeKind::Enum);
        self.enum_labels.insert(oid, labels.into());
    }

    /// The labels of enum type `oid` in sort order, if registered with them.
    pub fn enum_labels(&self, oid: Oid) -> Option<&[String]> {
        self.enum_labels.get(&oid).map(|l| &l[..])
    }

    /// True when any enum type is registered with its labels.
    pub fn has_enum_labels(&self) -> bool {
        !self.enum_labels.is_empty()
    }

    /// Records composite type `oid` with its attributes (dropped ones left out, in `attnum`
    /// order), replacing an earlier entry.
    pub fn register_composite(&mut self, oid: Oid, fields: Vec<CompositeField>) {
        self.enum_labels.remove(&oid);
        self.kinds.insert(oid, TypeKind::Composite);
        self.composites.insert(oid, fields.into());
    }

    /// Forgets `oid`.
    pub fn remove(&mut self, oid: Oid) -> Option<TypeKind> {
        self.composites.remove(&oid);
        self.enum_labels.remove(&oid);
        self.kinds.remove(&oid)
    }

    /// True when any composite type is registered.
    pub fn has_composites(&self) -> bool {
        !self.composites.is_empty()
    }

    /// The attributes of composite type `oid`, if registered.
    pub fn composite_fields(&self, oid: Oid) -> Option<&[CompositeField]> {
        self.composites.get(&oid).map(|f| &f[..])
    }

    /// The registered kind of `oid` (built-in types are not listed).
    pub fn get(&self, oid: Oid) -> Option<TypeKind> {
        self.kinds.get(&oid).copied()
    }

    /// Decodes a value of type `oid`, consulting this registry for non-built-in types.
    pub fn decode(&self, oid: Oid, format: ValueFormat, data: Bytes) -> Result<Value, DecodeError> {
        decode_value_with(self, oid, format, data)
    }
}

impl TypeLookup for TypeRegistry {
    fn type_kind(&self, oid: Oid) -> Option<TypeKind> {
        self.get(oid)
    }

    fn composite_fields(&self, oid: Oid) -> Option<Arc<[CompositeField]>> {
        self.composites.get(&oid).cloned()
    }
}

/// A [`TypeLookup`] that knows nothing beyond the built-in types.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTypes;

impl TypeLookup for NoTypes {
    fn type_kind(&self, _oid: Oid) -> Option<TypeKind> {
        None
    }
}

/// Decodes one value of built-in type `type_oid`; other OIDs become [`Value::Unknown`].
///
/// See [`Value`] for the supported types. Text is read as the server prints it with
/// `DateStyle=ISO`, `IntervalStyle=postgres` and `bytea_output=hex` (the escape format is
/// accepted too); a `timestamptz`'s printed UTC offset is honoured, whatever the session
/// `TimeZone` was.
///
/// ```
/// use walstream_proto::{decode_value, Oid, Value, ValueFormat};
/// let v = decode_value(Oid::INT4, ValueFormat::Binary, vec![0, 0, 1, 0].into()).unwrap();
/// assert_eq!(v, Value::Int4(256));
/// let v = decode_value(Oid::NUMERIC, ValueFormat::Text, "-12.50".into()).unwrap();
/// assert_eq!(v.to_string(), "-12.50");
/// ```
pub fn decode_value(type_oid: Oid, format: ValueFormat, data: Bytes) -> Result<Value, DecodeError> {
    decode_in(&NoTypes, type_oid, format, data, 0)
}

/// Decodes one value of type `type_oid`, asking `types` about OIDs that are not built in.
pub fn decode_value_with(
    types: &dyn TypeLookup,
    type_oid: Oid,
    format: ValueFormat,
    data: Bytes,
) -> Result<Value, DecodeError> {
    decode_in(types, type_oid, format, data, 0)
}

/// How deeply domains, arrays and ranges may nest (guards against registry cycles).
const MAX_NESTING: u32 = 16;

pub(crate) fn decode_in(
    types: &dyn TypeLookup,
    oid: Oid,
    format: ValueFormat,
    data: Bytes,
    depth: u32,
) -> Result<Value, DecodeError> {
    decode_raw(types, oid, format, Raw::whole(&data), depth)
}

/// [`decode_in`] on a borrowed slice: a [`Bytes`] is cut only for values that keep bytes.
#[inline]
pub(crate) fn decode_raw(
    types: &dyn TypeLookup,
    oid: Oid,
    format: ValueFormat,
    raw: Raw<'_>,
    depth: u32,
) -> Result<Value, DecodeError> {
    if depth > MAX_NESTING {
        return Err(DecodeError::InvalidValue {
            context: "value",
            offset: 0,
            reason: "types nest too deeply (cyclic domain or registry entry?)",
        });
    }
    if let Some(v) = scalar::decode_builtin(oid, format, raw)? {
        return Ok(v);
    }
    decode_composite(types, oid, format, raw.bytes(), depth)
}

/// The types that are not built-in scalars: enums, domains, arrays, ranges, unknown OIDs.
fn decode_composite(
    types: &dyn TypeLookup,
    oid: Oid,
    format: ValueFormat,
    data: Bytes,
    depth: u32,
) -> Result<Value, DecodeError> {
    let kind = oids::builtin_kind(oid).or_else(|| types.type_kind(oid));
    match kind {
        None => Ok(Value::Unknown {
            format,
            bytes: data,
        }),
        Some(TypeKind::Enum) => Ok(Value::Enum(text::text(data, "enum")?)),
        Some(TypeKind::Domain { base }) => decode_in(types, base, format, data, depth + 1),
        Some(TypeKind::Array { element }) => {
            array::decode(types, element, format, data, depth + 1).map(Value::Array)
        }
        Some(TypeKind::Range { subtype }) => {
            range::decode(types, subtype, format, data, depth + 1).map(Value::Range)
        }
        Some(TypeKind::Multirange { range }) => {
            let Some(TypeKind::Range { subtype }) =
                oids::builtin_kind(range).or_else(|| types.type_kind(range))
            else {
                return Err(DecodeError::InvalidValue {
                    context: "multirange",
                    offset: 0,
                    reason: "the multirange's range type is not a known range",
                });
            };
            range::decode_multi(types, subtype, format, data, depth + 1).map(Value::Multirange)
        }
        Some(TypeKind::Composite) => match types.composite_fields(oid) {
            Some(fields) => {
                composite::decode(types, fields, format, data, depth + 1).map(Value::Composite)
            }
            None => Ok(Value::Unknown {
                format,
                bytes: data,
            }),
        },
    }
}

impl Value {
    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The value of a `bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value of any integer type (`int2`, `int4`, `int8`, `oid`, `xid`, `xid8` that fits).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int2(v) => Some(i64::from(*v)),
            Self::Int4(v) => Some(i64::from(*v)),
            Self::Int8(v) => Some(*v),
            Self::Oid(v) => Some(i64::from(v.0)),
            Self::Xid(v) => Some(i64::from(v.0)),
            Self::Xid8(v) => i64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// The value of a float, an integer (possibly rounded), or a numeric (nearest `f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Float4(v) => Some(f64::from(*v)),
            Self::Float8(v) => Some(*v),
            Self::Numeric(n) => Some(n.to_f64()),
            #[allow(clippy::cast_precision_loss)]
            other => other.as_i64().map(|v| v as f64),
        }
    }

    /// The text of `text`-like values, `json`, `jsonb`, `xml`, enum labels, money kept as
    /// text, and unknown values received as UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(t) | Self::Xml(t) | Self::Json(t) | Self::Jsonb(t) | Self::Enum(t) => {
                Some(t.as_str())
            }
            Self::Money(PgMoney::Text(t)) => Some(t.as_str()),
            Self::Unknown {
                format: ValueFormat::Text,
                bytes,
            } => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    /// The bytes of a `bytea`, or the raw bytes of an unknown value.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Self::Bytea(b) | Self::Unknown { bytes: b, .. } => Some(b),
            _ => None,
        }
    }

    /// The exact numeric.
    pub fn as_numeric(&self) -> Option<&PgNumeric> {
        match self {
            Self::Numeric(n) => Some(n),
            _ => None,
        }
    }

    /// The instant of a `timestamp` or `timestamptz`.
    pub fn as_timestamp(&self) -> Option<PgTimestamp> {
        match self {
            Self::Timestamp(t) | Self::TimestampTz(t) => Some(*t),
            _ => None,
        }
    }

    /// The `date`.
    pub fn as_date(&self) -> Option<PgDate> {
        match self {
            Self::Date(d) => Some(*d),
            _ => None,
        }
    }

    /// The `uuid`'s 16 bytes.
    pub fn as_uuid(&self) -> Option<[u8; 16]> {
        match self {
            Self::Uuid(u) => Some(u.0),
            _ => None,
        }
    }

    /// The array.
    pub fn as_array(&self) -> Option<&PgArray> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The range.
    pub fn as_range(&self) -> Option<&PgRange> {
        match self {
            Self::Range(r) => Some(r),
            _ => None,
        }
    }

    /// Appends this value's JSON rendering (see the [mapping](Value#json-mapping)) to `out`.
    pub fn write_json(&self, out: &mut String) {
        json::write_value(self, out);
    }

    /// This value's JSON rendering as a new string.
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("NULL"),
            Self::Bool(b) => f.write_str(if *b { "t" } else { "f" }),
            Self::Char(c) => scalar::fmt_char(*c, f),
            Self::Int2(v) => fmt::Display::fmt(v, f),
            Self::Int4(v) => fmt::Display::fmt(v, f),
            Self::Int8(v) => fmt::Display::fmt(v, f),
            Self::Oid(v) => fmt::Display::fmt(v, f),
            Self::Xid(v) => fmt::Display::fmt(v, f),
            Self::Xid8(v) => fmt::Display::fmt(v, f),
            Self::Float4(v) => scalar::fmt_f32(*v, f),
            Self::Float8(v) => scalar::fmt_f64(*v, f),
            Self::Numeric(n) => fmt::Display::fmt(n, f),
            Self::Money(m) => fmt::Display::fmt(m, f),
            Self::Text(t) | Self::Xml(t) | Self::Json(t) | Self::Jsonb(t) | Self::Enum(t) => {
                f.write_str(t.as_str())
            }
            Self::Bytea(b) => scalar::fmt_bytea(b, f),
            Self::Uuid(u) => fmt::Display::fmt(u, f),
            Self::Date(d) => fmt::Display::fmt(d, f),
            Self::Time(t) => fmt::Display::fmt(t, f),
            Self::TimeTz(t) => fmt::Display::fmt(t, f),
            Self::Timestamp(t) => datetime::fmt_timestamp(*t, false, f),
            Self::TimestampTz(t) => datetime::fmt_timestamp(*t, true, f),
            Self::Interval(i) => fmt::Display::fmt(i, f),
            Self::Inet(i) => i.fmt_pg(false, f),
            Self::Cidr(i) => i.fmt_pg(true, f),
            Self::MacAddr(m) => fmt::Display::fmt(m, f),
            Self::MacAddr8(m) => fmt::Display::fmt(m, f),
            Self::Bit(b) | Self::VarBit(b) => fmt::Display::fmt(b, f),
            Self::PgLsn(l) => fmt::Display::fmt(l, f),
            Self::Array(a) => fmt::Display::fmt(a, f),
            Self::Range(r) => fmt::Display::fmt(r, f),
            Self::Multirange(m) => fmt::Display::fmt(m, f),
            Self::Composite(c) => fmt::Display::fmt(c, f),
            Self::Unknown {
                format: ValueFormat::Text,
                bytes,
            } => f.write_str(&String::from_utf8_lossy(bytes)),
            Self::Unknown {
                format: ValueFormat::Binary,
                bytes,
            } => scalar::fmt_bytea(bytes, f),
        }
    }
}

/// Every built-in type OID [`decode_value`] knows (scalars, arrays, ranges, multiranges).
pub fn builtin_type_oids() -> &'static [Oid] {
    oids::ALL
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    #[test]
    fn enum_labels_follow_the_kind() {
        let mut r = TypeRegistry::new();
        assert!(!r.has_enum_labels());
        r.register_enum(Oid(100), vec!["sad".into(), "happy".into()]);
        assert_eq!(r.get(Oid(100)), Some(TypeKind::Enum));
        assert_eq!(r.enum_labels(Oid(100)).unwrap(), ["sad", "happy"]);
        assert!(r.has_enum_labels());
        // Registering it as an enum again keeps the labels; a new list replaces them.
        r.register(Oid(100), TypeKind::Enum);
        assert_eq!(r.enum_labels(Oid(100)).unwrap(), ["sad", "happy"]);
        r.register_enum(Oid(100), vec!["sad".into(), "ok".into(), "happy".into()]);
        assert_eq!(r.enum_labels(Oid(100)).unwrap(), ["sad", "ok", "happy"]);
        // Labels do not change decoding: any label is an enum value.
        let v = r.decode(Oid(100), ValueFormat::Text, "new".into()).unwrap();
        assert_eq!(v, Value::Enum(String::from("new").into()));
        // Another kind, or removal, forgets them.
        r.register(Oid(100), TypeKind::Domain { base: Oid::TEXT });
        assert_eq!(r.enum_labels(Oid(100)), None);
        r.register_enum(Oid(101), vec![]);
        assert_eq!(r.enum_labels(Oid(101)), Some(&[][..]));
        r.remove(Oid(101));
        assert_eq!(r.enum_labels(Oid(101)), None);
        assert!(!r.has_enum_labels());
    }
}
