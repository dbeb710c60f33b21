//! Composite types (row values): `record_out` / `record_in` text, `record_send` binary.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use bytes::Bytes;

use super::text::{bad, is_pg_space};
use super::{TypeLookup, Value, ValueFormat, decode_in};
use crate::cursor::Cursor;
use crate::error::DecodeError;
use crate::types::Oid;

/// One attribute of a composite type, as `pg_attribute` lists it (dropped attributes left out,
/// in `attnum` order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompositeField {
    /// The attribute's name.
    pub name: String,
    /// The attribute's type.
    pub type_oid: Oid,
}

impl CompositeField {
    /// An attribute `name` of type `type_oid`.
    pub fn new(name: impl Into<String>, type_oid: Oid) -> Self {
        Self {
            name: name.into(),
            type_oid,
        }
    }
}

/// A value of a composite type: its attributes' values in order (NULL as [`Value::Null`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PgComposite {
    fields: Arc<[CompositeField]>,
    values: Vec<Value>,
}

impl PgComposite {
    /// The attributes (names and types).
    pub fn fields(&self) -> &[CompositeField] {
        &self.fields
    }

    /// The values, in attribute order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The value of the attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let i = self.fields.iter().position(|f| f.name == name)?;
        self.values.get(i)
    }

    /// `(name, value)` pairs in attribute order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields
            .iter()
            .map(|f| f.name.as_str())
            .zip(self.values.iter())
    }

    /// A JSON object of the attributes, `{"a":1,"b":"x y"}`.
    pub(crate) fn write_json(&self, out: &mut String) {
        out.push('{');
        for (i, (name, v)) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            super::json::write_string(name, out);
            out.push(':');
            v.write_json(out);
        }
        out.push('}');
    }
}

impl fmt::Display for PgComposite {
    /// `record_out`: `(1,"x y",)` — NULL is nothing; empty text and text with `"`, `\`,
    /// parentheses, `,` or whitespace is quoted, `"` and `\` doubled inside.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('(')?;
        let mut scratch = String::new();
        for (i, v) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            if v.is_null() {
                continue;
            }
            scratch.clear();
            write!(scratch, "{v}")?;
            let quote = scratch.is_empty()
                || scratch
                    .bytes()
                    .any(|b| matches!(b, b'"' | b'\\' | b'(' | b')' | b',') || is_pg_space(b));
            if quote {
                f.write_char('"')?;
            }
            for c in scratch.chars() {
                if c == '"' || c == '\\' {
                    f.write_char(c)?;
                }
                f.write_char(c)?;
            }
            if quote {
                f.write_char('"')?;
            }
        }
        f.write_char(')')
    }
}

pub(crate) fn decode(
    types: &dyn TypeLookup,
    fields: Arc<[CompositeField]>,
    format: ValueFormat,
    data: Bytes,
    depth: u32,
) -> Result<PgComposite, DecodeError> {
    let values = match format {
        ValueFormat::Binary => decode_binary(types, &fields, data, depth)?,
        ValueFormat::Text => decode_text(types, &fields, &data, depth)?,
    };
    Ok(PgComposite { fields, values })
}

/// `record_send`: Int32 count, then per attribute its type OID, Int32 length (-1: NULL) and
/// the value's binary form.
fn decode_binary(
    types: &dyn TypeLookup,
    fields: &[CompositeField],
    data: Bytes,
    depth: u32,
) -> Result<Vec<Value>, DecodeError> {
    let mut c = Cursor::new(data, "composite");
    let count = c.i32()?;
    if usize::try_from(count).ok() != Some(fields.len()) {
        return Err(c.invalid(
            0,
            "attribute count differs from the registered type (altered since it was looked up?)",
        ));
    }
    let mut values = Vec::with_capacity(fields.len());
    for _ in fields {
        let oid = Oid(c.u32()?);
        let at = c.offset();
        let len = c.i32()?;
        if len == -1 {
            values.push(Value::Null);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::InvalidLength {
            context: "composite",
            length: i64::from(len),
            offset: at,
        })?;
        let bytes = c.bytes(len)?;
        // The OID in the data is the attribute's type as the server has it now.
        values.push(decode_in(types, oid, ValueFormat::Binary, bytes, depth)?);
    }
    c.finish()?;
    Ok(values)
}

/// `record_in`: `(` attributes separated by `,` `)`; an empty attribute is NULL; `"` quotes,
/// `""` inside quotes and `\x` anywhere stand for the character.
fn decode_text(
    types: &dyn TypeLookup,
    fields: &[CompositeField],
    src: &Bytes,
    depth: u32,
) -> Result<Vec<Value>, DecodeError> {
    const CTX: &str = "composite";
    let mut pos = 0;
    while src.get(pos).is_some_and(|b| is_pg_space(*b)) {
        pos += 1;
    }
    if src.get(pos) != Some(&b'(') {
        return Err(bad(CTX, pos, "expected '('"));
    }
    pos += 1;
    let mut values = Vec::with_capacity(fields.len());
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            if src.get(pos) != Some(&b',') {
                return Err(bad(CTX, pos, "too few attributes"));
            }
            pos += 1;
        }
        if matches!(src.get(pos), Some(b',' | b')')) {
            values.push(Value::Null);
            continue;
        }
        let start = pos;
        let mut owned: Option<Vec<u8>> = None;
        let mut in_quote = false;
        loop {
            let Some(&ch) = src.get(pos) else {
                return Err(bad(CTX, pos, "unexpected end of input"));
            };
            if !in_quote && matches!(ch, b',' | b')') {
                break;
            }
            pos += 1;
            match ch {
                b'\\' => {
                    let next = *src
                        .get(pos)
                        .ok_or_else(|| bad(CTX, pos, "unexpected end after '\\'"))?;
                    pos += 1;
                    owned
                        .get_or_insert_with(|| src[start..pos - 2].to_vec())
                        .push(next);
                }
                b'"' => {
                    let buf = owned.get_or_insert_with(|| src[start..pos - 1].to_vec());
                    if !in_quote {
                        in_quote = true;
                    } else if src.get(pos) == Some(&b'"') {
                        buf.push(b'"');
                        pos += 1;
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
        let text = match owned {
            Some(v) => Bytes::from(v),
            None => src.slice(start..pos),
        };
        values.push(decode_in(
            types,
            field.type_oid,
            ValueFormat::Text,
            text,
            depth,
        )?);
    }
    if src.get(pos) != Some(&b')') {
        return Err(bad(
            CTX,
            pos,
            "too many attributes (altered since it was looked up?)",
        ));
    }
    pos += 1;
    while src.get(pos).is_some_and(|b| is_pg_space(*b)) {
        pos += 1;
    }
    if pos != src.len() {
        return Err(DecodeError::TrailingBytes {
            context: CTX,
            offset: pos,
            remaining: src.len() - pos,
        });
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{TypeKind, TypeRegistry};

    fn registry() -> TypeRegistry {
        let mut r = TypeRegistry::new();
        r.register_composite(
            Oid(16_400),
            vec![
                CompositeField::new("a", Oid::INT4),
                CompositeField::new("b", Oid::TEXT),
                CompositeField::new("c", Oid::NUMERIC),
            ],
        );
        r
    }

    #[test]
    fn text_round_trips_record_out() {
        let r = registry();
        assert_eq!(r.get(Oid(16_400)), Some(TypeKind::Composite));
        for s in [
            "(1,\"x y\",2.50)",
            "(,,)",
            "(1,\"\",)",
            "(-5,\"a\"\"b\\\\c\",)",
            "(1,\"(,)\",0)",
            "(7,é,1)",
        ] {
            let v = r.decode(Oid(16_400), ValueFormat::Text, s.into()).unwrap();
            assert_eq!(v.to_string(), s, "{s}");
        }
        let v = r
            .decode(Oid(16_400), ValueFormat::Text, "(1,\"x y\",)".into())
            .unwrap();
        let Value::Composite(c) = &v else {
            panic!("{v:?}")
        };
        assert_eq!(c.get("a"), Some(&Value::Int4(1)));
        assert_eq!(c.get("b").unwrap().as_str(), Some("x y"));
        assert_eq!(c.get("c"), Some(&Value::Null));
        assert_eq!(v.to_json(), "{\"a\":1,\"b\":\"x y\",\"c\":null}");
        // Unquoted backslash escapes, as record_in reads them.
        let v = r
            .decode(Oid(16_400), ValueFormat::Text, "(1,a\\,b,3)".into())
            .unwrap();
        assert_eq!(v.to_string(), "(1,\"a,b\",3)");
        for bad in [
            "",
            "1,2,3",
            "(1,2)",
            "(1,2,3,4)",
            "(1,2,3",
            "(1,\"x,3)",
            "(x,2,3)",
            "(1,2,3)x",
        ] {
            assert!(
                r.decode(Oid(16_400), ValueFormat::Text, bad.into())
                    .is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn binary_is_record_send() {
        let r = registry();
        // record_send of (1,'x y',NULL): count, then oid/len/bytes per attribute.
        let mut b = 3i32.to_be_bytes().to_vec();
        b.extend_from_slice(&23u32.to_be_bytes());
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&25u32.to_be_bytes());
        b.extend_from_slice(&3i32.to_be_bytes());
        b.extend_from_slice(b"x y");
        b.extend_from_slice(&1700u32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        let v = r
            .decode(Oid(16_400), ValueFormat::Binary, b.clone().into())
            .unwrap();
        let t = r
            .decode(Oid(16_400), ValueFormat::Text, "(1,\"x y\",)".into())
            .unwrap();
        assert_eq!(v, t);
        // Truncated, wrong count, negative length, trailing bytes: errors, never panics.
        for cut in 0..b.len() {
            assert!(
                r.decode(Oid(16_400), ValueFormat::Binary, b[..cut].to_vec().into())
                    .is_err()
            );
        }
        let mut wrong = b.clone();
        wrong[3] = 2;
        assert!(
            r.decode(Oid(16_400), ValueFormat::Binary, wrong.into())
                .is_err()
        );
        let mut neg = b.clone();
        neg[11] = 0xfe;
        neg[8..12].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(
            r.decode(Oid(16_400), ValueFormat::Binary, neg.into())
                .is_err()
        );
        let mut trailing = b;
        trailing.push(0);
        assert!(
            r.decode(Oid(16_400), ValueFormat::Binary, trailing.into())
                .is_err()
        );
    }

    #[test]
    fn unregistered_fields_leave_the_value_unknown() {
        let mut r = TypeRegistry::new();
        r.register(Oid(16_401), TypeKind::Composite);
        let v = r
            .decode(Oid(16_401), ValueFormat::Text, "(1)".into())
            .unwrap();
        assert!(matches!(v, Value::Unknown { .. }));
    }
}
