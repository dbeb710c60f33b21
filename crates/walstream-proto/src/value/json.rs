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
        Value::Json(t) | Value::Jsonb(t) => out.push_str(t.as_str()),
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
    }
}
