//! Ranges (`range_out` / `range_in`, `range_send`) and multiranges (PostgreSQL 14+).

use std::fmt::{self, Write as _};

use bytes::Bytes;

use super::text::{bad, is_pg_space};
use super::{TypeLookup, Value, ValueFormat, decode_in};
use crate::cursor::Cursor;
use crate::error::DecodeError;
use crate::types::Oid;

const RANGE_EMPTY: u8 = 0x01;
const RANGE_LB_INC: u8 = 0x02;
const RANGE_UB_INC: u8 = 0x04;
const RANGE_LB_INF: u8 = 0x08;
const RANGE_UB_INF: u8 = 0x10;
const RANGE_KNOWN: u8 = RANGE_EMPTY | RANGE_LB_INC | RANGE_UB_INC | RANGE_LB_INF | RANGE_UB_INF;

/// One side of a range.
#[derive(Debug, Clone, PartialEq)]
pub enum RangeBound {
    /// No bound (infinite).
    Unbounded,
    /// The bound value belongs to the range (`[` or `]`).
    Inclusive(Box<Value>),
    /// The bound value does not belong to the range (`(` or `)`).
    Exclusive(Box<Value>),
}

impl RangeBound {
    /// The bound's value, `None` when unbounded.
    pub fn value(&self) -> Option<&Value> {
        match self {
            Self::Unbounded => None,
            Self::Inclusive(v) | Self::Exclusive(v) => Some(v),
        }
    }

    /// True for an inclusive bound.
    pub fn is_inclusive(&self) -> bool {
        matches!(self, Self::Inclusive(_))
    }

    fn new(value: Option<Value>, inclusive: bool) -> Self {
        match value {
            None => Self::Unbounded,
            Some(v) if inclusive => Self::Inclusive(Box::new(v)),
            Some(v) => Self::Exclusive(Box::new(v)),
        }
    }
}

/// A range value.
#[derive(Debug, Clone, PartialEq)]
pub enum PgRange {
    /// `empty`.
    Empty,
    /// A non-empty range.
    NonEmpty {
        /// The lower bound.
        lower: RangeBound,
        /// The upper bound.
        upper: RangeBound,
    },
}

impl PgRange {
    pub(crate) fn write_json(&self, out: &mut String) {
        match self {
            Self::Empty => out.push_str("\"empty\""),
            Self::NonEmpty { lower, upper } => {
                out.push_str("{\"lower\":");
                match lower.value() {
                    Some(v) => v.write_json(out),
                    None => out.push_str("null"),
                }
                out.push_str(",\"upper\":");
                match upper.value() {
                    Some(v) => v.write_json(out),
                    None => out.push_str("null"),
                }
                out.push_str(if lower.is_inclusive() {
                    ",\"lower_inc\":true"
                } else {
                    ",\"lower_inc\":false"
                });
                out.push_str(if upper.is_inclusive() {
                    ",\"upper_inc\":true}"
                } else {
                    ",\"upper_inc\":false}"
                });
            }
        }
    }
}

impl fmt::Display for PgRange {
    /// `range_out`: `[1,5)`, `(,3]`, `empty`, `["2024-01-01 00:00:00",)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (lower, upper) = match self {
            Self::Empty => return f.write_str("empty"),
            Self::NonEmpty { lower, upper } => (lower, upper),
        };
        f.write_char(if lower.is_inclusive() { '[' } else { '(' })?;
        let mut scratch = String::new();
        if let Some(v) = lower.value() {
            write!(scratch, "{v}")?;
            write_bound(&scratch, f)?;
        }
        f.write_char(',')?;
        if let Some(v) = upper.value() {
            scratch.clear();
            write!(scratch, "{v}")?;
            write_bound(&scratch, f)?;
        }
        f.write_char(if upper.is_inclusive() { ']' } else { ')' })
    }
}

/// `range_bound_escape`: quote empty text and text with `"`, `\`, brackets, `,` or
/// whitespace; double `"` and `\` inside.
fn write_bound(s: &str, f: &mut impl fmt::Write) -> fmt::Result {
    let needs = s.is_empty()
        || s.bytes().any(|b| {
            matches!(b, b'"' | b'\\' | b'(' | b')' | b'[' | b']' | b',') || is_pg_space(b)
        });
    if needs {
        f.write_char('"')?;
    }
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_char(c)?;
        }
        f.write_char(c)?;
    }
    if needs { f.write_char('"') } else { Ok(()) }
}

/// A multirange: its ranges in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PgMultirange(pub Vec<PgRange>);

impl PgMultirange {
    pub(crate) fn write_json(&self, out: &mut String) {
        out.push('[');
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            r.write_json(out);
        }
        out.push(']');
    }
}

impl fmt::Display for PgMultirange {
    /// `multirange_out`: `{[1,3),[5,8)}`, `{}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('{')?;
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write!(f, "{r}")?;
        }
        f.write_char('}')
    }
}

pub(crate) fn decode(
    types: &dyn TypeLookup,
    subtype: Oid,
    format: ValueFormat,
    data: Bytes,
    depth: u32,
) -> Result<PgRange, DecodeError> {
    match format {
        ValueFormat::Binary => decode_binary(types, subtype, data, depth),
        ValueFormat::Text => {
            let mut pos = 0;
            let r = parse_text(types, subtype, &data, &mut pos, depth)?;
            skip_ws(&data, &mut pos);
            if pos != data.len() {
                return Err(DecodeError::TrailingBytes {
                    context: "range",
                    offset: pos,
                    remaining: data.len() - pos,
                });
            }
            Ok(r)
        }
    }
}

fn decode_binary(
    types: &dyn TypeLookup,
    subtype: Oid,
    data: Bytes,
    depth: u32,
) -> Result<PgRange, DecodeError> {
    let mut c = Cursor::new(data, "range");
    let flags = c.u8()?;
    if flags & !RANGE_KNOWN != 0 {
        return Err(c.invalid(0, "unknown range flags"));
    }
    if flags & RANGE_EMPTY != 0 {
        c.finish()?;
        return Ok(PgRange::Empty);
    }
    let bound = |c: &mut Cursor, inf: u8| -> Result<Option<Value>, DecodeError> {
        if flags & inf != 0 {
            return Ok(None);
        }
        let b = c.len_prefixed()?;
        decode_in(types, subtype, ValueFormat::Binary, b, depth).map(Some)
    };
    let lower = bound(&mut c, RANGE_LB_INF)?;
    let upper = bound(&mut c, RANGE_UB_INF)?;
    c.finish()?;
    Ok(PgRange::NonEmpty {
        lower: RangeBound::new(lower, flags & RANGE_LB_INC != 0),
        upper: RangeBound::new(upper, flags & RANGE_UB_INC != 0),
    })
}

fn skip_ws(s: &[u8], pos: &mut usize) {
    while s.get(*pos).is_some_and(|b| is_pg_space(*b)) {
        *pos += 1;
    }
}

/// `range_parse`, starting at `*pos` and leaving it after the closing bracket.
fn parse_text(
    types: &dyn TypeLookup,
    subtype: Oid,
    src: &Bytes,
    pos: &mut usize,
    depth: u32,
) -> Result<PgRange, DecodeError> {
    skip_ws(src, pos);
    if src.len() >= *pos + 5 && src[*pos..*pos + 5].eq_ignore_ascii_case(b"empty") {
        *pos += 5;
        return Ok(PgRange::Empty);
    }
    let lower_inc = match src.get(*pos) {
        Some(b'[') => true,
        Some(b'(') => false,
        _ => return Err(bad("range", *pos, "expected '[' or '('")),
    };
    *pos += 1;
    let lower = parse_bound(src, pos)?;
    if src.get(*pos) != Some(&b',') {
        return Err(bad("range", *pos, "expected ','"));
    }
    *pos += 1;
    let upper = parse_bound(src, pos)?;
    let upper_inc = match src.get(*pos) {
        Some(b']') => true,
        Some(b')') => false,
        _ => return Err(bad("range", *pos, "expected ']' or ')'")),
    };
    *pos += 1;
    let decode = |b: Option<Bytes>| -> Result<Option<Value>, DecodeError> {
        b.map(|b| decode_in(types, subtype, ValueFormat::Text, b, depth))
            .transpose()
    };
    Ok(PgRange::NonEmpty {
        lower: RangeBound::new(decode(lower)?, lower_inc),
        upper: RangeBound::new(decode(upper)?, upper_inc),
    })
}

/// `range_parse_bound`: nothing before the delimiter is an infinite bound; `"` quotes,
/// `""` inside quotes and `\x` anywhere stand for the character.
fn parse_bound(src: &Bytes, pos: &mut usize) -> Result<Option<Bytes>, DecodeError> {
    let start = *pos;
    if matches!(src.get(start), Some(b',' | b')' | b']')) {
        return Ok(None);
    }
    let mut owned: Option<Vec<u8>> = None;
    let mut in_quote = false;
    loop {
        let Some(&ch) = src.get(*pos) else {
            return Err(bad("range", *pos, "missing right bracket"));
        };
        if !in_quote && matches!(ch, b',' | b')' | b']') {
            break;
        }
        *pos += 1;
        match ch {
            b'\\' => {
                let next = *src
                    .get(*pos)
                    .ok_or_else(|| bad("range", *pos, "unexpected end after '\\'"))?;
                *pos += 1;
                owned
                    .get_or_insert_with(|| src[start..*pos - 2].to_vec())
                    .push(next);
            }
            b'"' => {
                let buf = owned.get_or_insert_with(|| src[start..*pos - 1].to_vec());
                if !in_quote {
                    in_quote = true;
                } else if src.get(*pos) == Some(&b'"') {
                    buf.push(b'"');
                    *pos += 1;
                } else {
                    in_quote = false;
                }
            }
            _ => {
                if let Some(buf) = owned.as_mut() {
                    buf.push(ch);
                }
            }
        }
    }
    Ok(Some(match owned {
        Some(v) => Bytes::from(v),
        None => src.slice(start..*pos),
    }))
}

pub(crate) fn decode_multi(
    types: &dyn TypeLookup,
    subtype: Oid,
    format: ValueFormat,
    data: Bytes,
    depth: u32,
) -> Result<PgMultirange, DecodeError> {
    match format {
        ValueFormat::Binary => {
            let mut c = Cursor::new(data, "multirange");
            let at = c.offset();
            let n = c.i32()?;
            // Each range takes at least a 4-byte length and its flags byte.
            let n = c.count(i64::from(n), 5, at)?;
            let mut ranges = Vec::with_capacity(n);
            for _ in 0..n {
                let b = c.len_prefixed()?;
                ranges.push(decode_binary(types, subtype, b, depth)?);
            }
            c.finish()?;
            Ok(PgMultirange(ranges))
        }
        ValueFormat::Text => {
            let mut pos = 0;
            skip_ws(&data, &mut pos);
            if data.get(pos) != Some(&b'{') {
                return Err(bad("multirange", pos, "expected '{'"));
            }
            pos += 1;
            let mut ranges = Vec::new();
            skip_ws(&data, &mut pos);
            if data.get(pos) == Some(&b'}') {
                pos += 1;
            } else {
                loop {
                    ranges.push(parse_text(types, subtype, &data, &mut pos, depth)?);
                    skip_ws(&data, &mut pos);
                    match data.get(pos) {
                        Some(b',') => pos += 1,
                        Some(b'}') => {
                            pos += 1;
                            break;
                        }
                        _ => return Err(bad("multirange", pos, "expected ',' or '}'")),
                    }
                }
            }
            skip_ws(&data, &mut pos);
            if pos != data.len() {
                return Err(DecodeError::TrailingBytes {
                    context: "multirange",
                    offset: pos,
                    remaining: data.len() - pos,
                });
            }
            Ok(PgMultirange(ranges))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::decode_value;

    fn t(oid: Oid, s: &str) -> Value {
        decode_value(oid, ValueFormat::Text, Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn b(oid: Oid, d: &[u8]) -> Value {
        decode_value(oid, ValueFormat::Binary, Bytes::copy_from_slice(d)).unwrap()
    }

    #[test]
    fn text_round_trips() {
        for (oid, s) in [
            (Oid::INT4RANGE, "[1,5)"),
            (Oid::INT4RANGE, "empty"),
            (Oid::INT4RANGE, "(,5)"),
            (Oid::INT4RANGE, "[3,)"),
            (Oid::INT4RANGE, "(,)"),
            (Oid::NUMRANGE, "(1.5,2.25]"),
            (
                Oid::TSRANGE,
                r#"["2020-01-01 00:00:00","2020-01-02 00:00:00")"#,
            ),
            (Oid::DATERANGE, "[2020-01-01,infinity)"),
            (Oid::INT4MULTIRANGE, "{[1,3),[5,8)}"),
            (Oid::INT4MULTIRANGE, "{}"),
            (Oid::TSTZMULTIRANGE, r#"{["2020-01-01 00:00:00+00",)}"#),
        ] {
            assert_eq!(t(oid, s).to_string(), s, "{s}");
        }
        assert_eq!(t(Oid::INT4RANGE, " EMPTY ").to_string(), "empty");
        assert_eq!(
            t(Oid::INT4RANGE, r#"["1","5")"#),
            t(Oid::INT4RANGE, "[1,5)")
        );
        assert_eq!(t(Oid::INT4RANGE, r#"[\1,5)"#), t(Oid::INT4RANGE, "[1,5)"));
        assert_eq!(
            t(Oid::INT4MULTIRANGE, " { [1,3) , [5,8) } ").to_string(),
            "{[1,3),[5,8)}"
        );
        for bad in [
            "", "[1,5", "1,5)", "[1;5)", "[1,5)x", "[a,5)", "[\"1,5)", "emptyx",
        ] {
            assert!(
                decode_value(
                    Oid::INT4RANGE,
                    ValueFormat::Text,
                    Bytes::copy_from_slice(bad.as_bytes())
                )
                .is_err(),
                "{bad}"
            );
        }
        for bad in ["", "{", "{[1,3)", "{[1,3);}", "{[1,3)}x", "[1,3)"] {
            assert!(
                decode_value(
                    Oid::INT4MULTIRANGE,
                    ValueFormat::Text,
                    Bytes::copy_from_slice(bad.as_bytes())
                )
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bound_quoting() {
        let mut s = String::new();
        write_bound("a \"b\\", &mut s).unwrap();
        assert_eq!(s, r#""a ""b\\""#);
        let mut pos = 0;
        let src = Bytes::from_static(br#""a ""b\\"x,"#);
        assert_eq!(
            parse_bound(&src, &mut pos).unwrap().unwrap(),
            &br#"a "b\x"#[..]
        );
        assert_eq!(pos, src.len() - 1);
    }

    #[test]
    fn binary_ranges() {
        let mut r = vec![RANGE_LB_INC];
        r.extend_from_slice(&4i32.to_be_bytes());
        r.extend_from_slice(&1i32.to_be_bytes());
        r.extend_from_slice(&4i32.to_be_bytes());
        r.extend_from_slice(&5i32.to_be_bytes());
        assert_eq!(b(Oid::INT4RANGE, &r), t(Oid::INT4RANGE, "[1,5)"));
        assert_eq!(b(Oid::INT4RANGE, &[RANGE_EMPTY]).to_string(), "empty");
        let mut inf = vec![RANGE_LB_INF | RANGE_UB_INC];
        inf.extend_from_slice(&4i32.to_be_bytes());
        inf.extend_from_slice(&7i32.to_be_bytes());
        let v = b(Oid::INT4RANGE, &inf);
        assert_eq!(v.to_string(), "(,7]");
        assert_eq!(
            v.to_json(),
            r#"{"lower":null,"upper":7,"lower_inc":false,"upper_inc":true}"#
        );
        let mut mr = 2i32.to_be_bytes().to_vec();
        mr.extend_from_slice(&1i32.to_be_bytes());
        mr.push(RANGE_EMPTY);
        mr.extend_from_slice(&i32::try_from(r.len()).unwrap().to_be_bytes());
        mr.extend_from_slice(&r);
        assert_eq!(b(Oid::INT4MULTIRANGE, &mr).to_string(), "{empty,[1,5)}");
        for bad in [
            &[][..],
            &[0x20],
            &[RANGE_EMPTY, 0],
            &[0, 0, 0, 0, 4, 0, 0, 0, 1],
            &[RANGE_LB_INF | RANGE_UB_INF, 1],
        ] {
            assert!(
                decode_value(
                    Oid::INT4RANGE,
                    ValueFormat::Binary,
                    Bytes::copy_from_slice(bad)
                )
                .is_err(),
                "{bad:?}"
            );
        }
        assert!(
            decode_value(
                Oid::INT4MULTIRANGE,
                ValueFormat::Binary,
                Bytes::from_static(&[0x7f, 0, 0, 0])
            )
            .is_err()
        );
    }
}
