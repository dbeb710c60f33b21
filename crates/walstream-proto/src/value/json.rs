//! The JSON rendering of [`Value`]s (the mapping is documented in the module docs).

use std::fmt::Write as _;

use super::{PgMoney, Value, ValueFormat, datetime, scalar};

/// Appends `s` as a JSON string literal.
pub(crate) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends the value's PostgreSQL text output as a JSON string.
fn write_display(v: &impl std::fmt::Display, out: &mut String) {
    let mut s = String::new();
    let _ = write!(s, "{v}");
    write_string(&s, out);
}

fn write_float(v: f64, is_f32: bool, out: &mut String, f32v: f32) {
    if v.is_finite() {
        let _ = if is_f32 {
            scalar::fmt_f32(f32v, out)
        } else {
            scalar::fmt_f64(v, out)
        };
    } else {
        out.push('"');
        let _ = scalar::fmt_f64(v, out);
        out.push('"');
    }
}

pub(crate) fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int2(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Int4(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Int8(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Oid(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Xid(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Xid8(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Float4(x) => write_float(f64::from(*x), true, out, *x),
        Value::Float8(x) => write_float(*x, false, out, 0.0),
        Value::Numeric(n) => n.write_json(out),
        Value::Money(PgMoney::Text(t)) => write_string(t.as_str(), out),
        Value::Money(m) => write_display(m, out),
        Value::Text(t) | Value::Xml(t) | Value::Enum(t) => write_string(t.as_str(), out),
        Value::Json(t) | Value::Jsonb(t) => {
            if is_valid_json(t.as_bytes()) {
                out.push_str(t.as_str());
            } else {
                write_string(t.as_str(), out);
            }
        }
        Value::Date(d) => d.write_json(out),
        Value::Time(t) => datetime::write_time_json(*t, None, out),
        Value::TimeTz(t) => datetime::write_time_json(t.time, Some(t.offset_seconds), out),
        Value::Timestamp(t) => datetime::write_timestamp_json(*t, false, out),
        Value::TimestampTz(t) => datetime::write_timestamp_json(*t, true, out),
        Value::Interval(i) => {
            out.push('"');
            let _ = i.write_iso8601(out);
            out.push('"');
        }
        Value::Array(a) => a.write_json(out),
        Value::Range(r) => r.write_json(out),
        Value::Multirange(m) => m.write_json(out),
        Value::Composite(c) => c.write_json(out),
        Value::Unknown {
            format: ValueFormat::Text,
            bytes,
        } => write_string(&String::from_utf8_lossy(bytes), out),
        Value::Char(_)
        | Value::Bytea(_)
        | Value::Uuid(_)
        | Value::Inet(_)
        | Value::Cidr(_)
        | Value::MacAddr(_)
        | Value::MacAddr8(_)
        | Value::Bit(_)
        | Value::VarBit(_)
        | Value::PgLsn(_)
        | Value::Unknown {
            format: ValueFormat::Binary,
            ..
        } => write_display(v, out),
    }
}

/// True when `s` is one JSON document (RFC 8259), checked without recursion so that deep
/// nesting cannot exhaust the stack.
pub(crate) fn is_valid_json(s: &[u8]) -> bool {
    let mut i = 0;
    let mut stack: Vec<u8> = Vec::new();
    'value: loop {
        skip_ws(s, &mut i);
        match s.get(i) {
            Some(b'{') => {
                i += 1;
                skip_ws(s, &mut i);
                if s.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    stack.push(b'{');
                    if !key(s, &mut i) {
                        return false;
                    }
                    continue 'value;
                }
            }
            Some(b'[') => {
                i += 1;
                skip_ws(s, &mut i);
                if s.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    stack.push(b'[');
                    continue 'value;
                }
            }
            Some(b'"') => {
                if !string(s, &mut i) {
                    return false;
                }
            }
            Some(b't') if s[i..].starts_with(b"true") => i += 4,
            Some(b'f') if s[i..].starts_with(b"false") => i += 5,
            Some(b'n') if s[i..].starts_with(b"null") => i += 4,
            Some(b'-' | b'0'..=b'9') => {
                if !number(s, &mut i) {
                    return false;
                }
            }
            _ => return false,
        }
        // After a complete value.
        loop {
            skip_ws(s, &mut i);
            let Some(&open) = stack.last() else {
                return i == s.len();
            };
            match s.get(i) {
                Some(b',') => {
                    i += 1;
                    if open == b'{' && !key(s, &mut i) {
                        return false;
                    }
                    continue 'value;
                }
                Some(b'}') if open == b'{' => {
                    i += 1;
                    stack.pop();
                }
                Some(b']') if open == b'[' => {
                    i += 1;
                    stack.pop();
                }
                _ => return false,
            }
        }
    }
}

fn skip_ws(s: &[u8], i: &mut usize) {
    while matches!(s.get(*i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        *i += 1;
    }
}

/// An object key and its colon.
fn key(s: &[u8], i: &mut usize) -> bool {
    skip_ws(s, i);
    if s.get(*i) != Some(&b'"') || !string(s, i) {
        return false;
    }
    skip_ws(s, i);
    if s.get(*i) == Some(&b':') {
        *i += 1;
        true
    } else {
        false
    }
}

fn string(s: &[u8], i: &mut usize) -> bool {
    *i += 1;
    loop {
        match s.get(*i) {
            None => return false,
            Some(b'"') => {
                *i += 1;
                return true;
            }
            Some(b'\\') => match s.get(*i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => *i += 2,
                Some(b'u') => {
                    let hex = s.get(*i + 2..*i + 6);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return false;
                    }
                    *i += 6;
                }
                _ => return false,
            },
            Some(0..=0x1f) => return false,
            Some(_) => *i += 1,
        }
    }
}

fn number(s: &[u8], i: &mut usize) -> bool {
    let digits = |i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if s.get(*i) == Some(&b'-') {
        *i += 1;
    }
    match s.get(*i) {
        Some(b'0') => *i += 1,
        Some(b'1'..=b'9') => {
            digits(i);
        }
        _ => return false,
    }
    if s.get(*i) == Some(&b'.') {
        *i += 1;
        if !digits(i) {
            return false;
        }
    }
    if matches!(s.get(*i), Some(b'e' | b'E')) {
        *i += 1;
        if matches!(s.get(*i), Some(b'+' | b'-')) {
            *i += 1;
        }
        if !digits(i) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::types::Oid;
    use crate::value::decode_value;

    fn j(oid: Oid, s: &str) -> String {
        decode_value(oid, ValueFormat::Text, Bytes::copy_from_slice(s.as_bytes()))
            .unwrap()
            .to_json()
    }

    #[test]
    fn mapping() {
        assert_eq!(j(Oid::INT8, "-5"), "-5");
        assert_eq!(j(Oid::BOOL, "t"), "true");
        assert_eq!(j(Oid::FLOAT8, "1e+100"), "1e+100");
        assert_eq!(j(Oid::FLOAT8, "NaN"), "\"NaN\"");
        assert_eq!(j(Oid::FLOAT4, "-Infinity"), "\"-Infinity\"");
        assert_eq!(j(Oid::FLOAT4, "0.1"), "0.1");
        assert_eq!(j(Oid::NUMERIC, "12.340"), "\"12.340\"");
        assert_eq!(
            j(Oid::TEXT, "a\"b\\c\nd\u{1}é"),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
        assert_eq!(j(Oid::JSONB, "{\"a\": [1, 2]}"), "{\"a\": [1, 2]}");
        assert_eq!(j(Oid::BYTEA, "\\x01ff"), "\"\\\\x01ff\"");
        assert_eq!(
            j(Oid::UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""
        );
        assert_eq!(
            j(Oid::TIMESTAMPTZ, "2024-01-02 03:04:05.5+00"),
            "\"2024-01-02T03:04:05.5Z\""
        );
        assert_eq!(
            j(Oid::TIMESTAMP, "2024-01-02 03:04:05"),
            "\"2024-01-02T03:04:05\""
        );
        assert_eq!(j(Oid::TIMESTAMP, "infinity"), "\"infinity\"");
        assert_eq!(j(Oid::DATE, "2024-02-29"), "\"2024-02-29\"");
        assert_eq!(j(Oid::TIME, "03:04:05.5"), "\"03:04:05.5\"");
        assert_eq!(j(Oid::TIMETZ, "03:04:05+05"), "\"03:04:05+05:00\"");
        assert_eq!(j(Oid::INTERVAL, "1 day -00:00:01.5"), "\"P1DT-1.5S\"");
        assert_eq!(j(Oid::INT4_ARRAY, "{{1,NULL},{3,4}}"), "[[1,null],[3,4]]");
        assert_eq!(j(Oid::INT4RANGE, "empty"), "\"empty\"");
        assert_eq!(
            j(Oid::NUMRANGE, "[1.5,)"),
            "{\"lower\":\"1.5\",\"upper\":null,\"lower_inc\":true,\"upper_inc\":false}"
        );
        assert_eq!(
            j(Oid::INT4MULTIRANGE, "{[1,3),[5,8)}"),
            "[{\"lower\":1,\"upper\":3,\"lower_inc\":true,\"upper_inc\":false},{\"lower\":5,\"upper\":8,\"lower_inc\":true,\"upper_inc\":false}]"
        );
        assert_eq!(j(Oid::INET, "::1"), "\"::1\"");
        assert_eq!(j(Oid::MONEY, "$1.00"), "\"$1.00\"");
        assert_eq!(j(Oid(999_999), "raw\ttext"), "\"raw\\ttext\"");
        let unknown_bin = decode_value(
            Oid(999_999),
            ValueFormat::Binary,
            Bytes::from_static(&[0xde, 0xad]),
        )
        .unwrap();
        assert_eq!(unknown_bin.to_json(), "\"\\\\xdead\"");
        assert_eq!(j(Oid::CHAR, "\""), "\"\\\"\"");
        // A malformed document from the peer is rendered as a string, never embedded.
        assert_eq!(j(Oid::JSON, "{\"a\": }"), "\"{\\\"a\\\": }\"");
    }

    #[test]
    fn json_validation() {
        for ok in [
            "null",
            "true",
            " false ",
            "0",
            "-0.5e+10",
            "1E3",
            "\"a\\u00e9\\n\"",
            "[]",
            "{}",
            "[1, [2, {\"a\": [null]}]]",
            "{\"a\": 1, \"b\": {\"c\": \"d\"}}",
            "\"é\"",
        ] {
            assert!(is_valid_json(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            " ",
            "nul",
            "01",
            "1.",
            "-",
            "1e",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "[1 2]",
            "{1:2}",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a",
            "[",
            "]",
            "{\"a\":1]",
            "1 2",
            "\"\t\"",
            "truex",
            "[}",
        ] {
            assert!(!is_valid_json(bad.as_bytes()), "{bad}");
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(is_valid_json(deep.as_bytes()));
        assert!(!is_valid_json(&deep.as_bytes()[1..]));
    }
}
