//! Fuzzing entry points for the value decoders (reached through `crate::internal`).
//!
//! The first two input bytes choose a type OID from the built-in list (or, past its end, a
//! type the registry knows as an enum, a domain, an array of it, a range, a multirange, a
//! composite, or an unknown OID); the rest
//! is the value. Oracles: decoding never panics; a decoded value's `Display` (PostgreSQL's text
//! output) decodes again as text to a value that displays the same; JSON rendering never
//! panics.

use bytes::Bytes;

use super::{CompositeField, TypeKind, TypeRegistry, Value, ValueFormat, oids};
use crate::types::Oid;

/// User types the fuzz registry knows, past the end of the built-in list.
const USER_ENUM: Oid = Oid(100_001);
const USER_DOMAIN: Oid = Oid(100_002);
const USER_ARRAY: Oid = Oid(100_003);
const USER_RANGE: Oid = Oid(100_004);
const USER_MULTI: Oid = Oid(100_005);
const UNKNOWN: Oid = Oid(100_006);
const USER_COMPOSITE: Oid = Oid(100_007);
const EXTRA: [Oid; 7] = [
    USER_ENUM,
    USER_DOMAIN,
    USER_ARRAY,
    USER_RANGE,
    USER_MULTI,
    UNKNOWN,
    USER_COMPOSITE,
];

fn registry() -> TypeRegistry {
    let mut r = TypeRegistry::new();
    r.register(USER_ENUM, TypeKind::Enum);
    r.register(USER_DOMAIN, TypeKind::Domain { base: Oid::NUMERIC });
    r.register(
        USER_ARRAY,
        TypeKind::Array {
            element: USER_DOMAIN,
        },
    );
    r.register(USER_RANGE, TypeKind::Range { subtype: Oid::TEXT });
    r.register(USER_MULTI, TypeKind::Multirange { range: USER_RANGE });
    r.register_composite(
        USER_COMPOSITE,
        vec![
            CompositeField::new("i", Oid::INT4),
            CompositeField::new("t", Oid::TEXT),
            CompositeField::new("e", USER_ENUM),
            CompositeField::new("a", USER_ARRAY),
        ],
    );
    r
}

/// Picks the OID from the first two bytes.
fn pick(data: &[u8]) -> Option<(Oid, &[u8])> {
    let (head, rest) = data.split_at_checked(2)?;
    let i = usize::from(u16::from_be_bytes([head[0], head[1]])) % (oids::ALL.len() + EXTRA.len());
    let oid = oids::ALL
        .get(i)
        .copied()
        .or_else(|| EXTRA.get(i - oids::ALL.len()).copied())?;
    Some((oid, rest))
}

fn check(types: &TypeRegistry, oid: Oid, format: ValueFormat, body: &[u8]) {
    let decoded = types.decode(oid, format, Bytes::copy_from_slice(body));
    // The borrowed path (a slice inside a larger buffer, as `TupleData::typed` decodes)
    // agrees with decoding an exact `Bytes`, values and errors alike.
    let mut framed = b"t\0\0\0\0".to_vec();
    framed.extend_from_slice(body);
    framed.push(b'n');
    let framed = Bytes::from(framed);
    let inner = framed.get(5..5 + body.len()).unwrap_or_default();
    let borrowed = super::decode_raw(types, oid, format, super::Raw::within(&framed, inner), 0);
    // (Compared through `Debug`: a NaN float is not equal to itself.)
    assert_eq!(
        format!("{borrowed:?}"),
        format!("{decoded:?}"),
        "borrowed and owned decoding disagree for {oid:?}"
    );
    let Ok(v) = decoded else {
        return;
    };
    let _ = v.to_json();
    let shown = v.to_string();
    if matches!(v, Value::Unknown { .. }) {
        return;
    }
    let again = types.decode(oid, ValueFormat::Text, Bytes::from(shown.clone()));
    match again {
        Ok(w) => assert_eq!(
            w.to_string(),
            shown,
            "display is not stable for {oid:?} {format:?}"
        ),
        Err(e) => panic!("display {shown:?} of {oid:?} ({format:?}) does not decode again: {e}"),
    }
}

/// Decodes text-format input; see the module docs.
pub(crate) fn fuzz_text(data: &[u8]) {
    if let Some((oid, body)) = pick(data) {
        check(&registry(), oid, ValueFormat::Text, body);
    }
}

/// Decodes binary-format input; see the module docs.
pub(crate) fn fuzz_binary(data: &[u8]) {
    if let Some((oid, body)) = pick(data) {
        check(&registry(), oid, ValueFormat::Binary, body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic smoke run: structured and random inputs for every OID, both formats.
    #[test]
    fn smoke() {
        let seeds: &[&[u8]] = &[
            b"", b"0", b"-1", b"t", b"NaN", b"Infinity", b"1.5", b"{1,2}", b"{}", b"[1,2)", b"empty",
            b"{[1,2)}", b"2024-02-29", b"2024-01-02 03:04:05+05:30", b"1 day", b"::1", b"\\x00",
            b"12:00:00+05", b"{{1,NULL},{\"a\",b}}", b"[0:1]={1,2}", b"(,)", b"\x00\x00\x00\x01",
            b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x17\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00\x07",
            b"\x01{}", b"\x02\x00\x04\x01\x02\x03\x04", b"\x00\x01\x00\x00\x00\x00\x00\x02\x00\x05",
            b"\xff\xff\xff\xff\xff\xff\xff\xff", b"\x7f\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00",
            b"(1,\"a b\",x,\"{1.5,NULL}\")", b"(,,,)", b"(1,\"\\\\\"\"\",,)",
        ];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let n = u16::try_from(oids::ALL.len() + EXTRA.len()).unwrap();
        mutations(seeds, &mut next);
        for i in 0..n {
            for seed in seeds {
                let mut input = i.to_be_bytes().to_vec();
                input.extend_from_slice(seed);
                fuzz_text(&input);
                fuzz_binary(&input);
            }
            for _ in 0..200 {
                let len = usize::try_from(next() % 40).unwrap();
                let mut input = i.to_be_bytes().to_vec();
                let alphabet = b"0123456789-+.:,{}[]()\" \\eENaIfinty/x";
                for _ in 0..len {
                    let r = next();
                    let b = if r % 3 == 0 {
                        (r >> 8).to_le_bytes()[0]
                    } else {
                        alphabet[usize::try_from((r >> 8) % 36).unwrap()]
                    };
                    input.push(b);
                }
                fuzz_text(&input);
                fuzz_binary(&input);
            }
        }
    }

    /// Valid text values of many types, each with its binary form, mutated byte by byte.
    fn mutations(extra: &[&[u8]], next: &mut impl FnMut() -> u64) {
        let valid: &[&str] = &[
            "-12.340",
            "123456789012345678901234567890.123456789",
            "0.000012",
            "1.5e+300",
            "-0",
            "2024-02-29 23:59:59.999999+05:30",
            "0044-03-15 12:00:00 BC",
            "0044-03-15 BC",
            "12:00:00.5+05:30",
            "1 year 2 mons -3 days -04:05:06.5",
            "-1 days +02:03:00",
            "::ffff:1.2.3.4/128",
            "192.168.0.1/24",
            "08:00:2b:01:02:03:04:05",
            "10110",
            "16/B374D848",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "\\x00ff",
            "ab\\\\c",
            r#"{"a b","NULL","",NULL,"x\"y\\z"}"#,
            "[0:1][2:3]={{1,2},{3,4}}",
            r#"["a b","c,d")"#,
            "{[1,3),[5,8)}",
            "[1.5,)",
            r#"{"[1,3)",empty}"#,
            r#"{"{\"a\": 1}"}"#,
            "$1,234.56",
        ];
        let types = registry();
        let all: Vec<Oid> = oids::ALL.iter().copied().chain(EXTRA).collect();
        let mut inputs: Vec<(Oid, ValueFormat, Vec<u8>)> = Vec::new();
        for &oid in &all {
            for text in valid
                .iter()
                .map(|t| t.as_bytes())
                .chain(extra.iter().copied())
            {
                let Ok(v) = types.decode(oid, ValueFormat::Text, Bytes::copy_from_slice(text))
                else {
                    continue;
                };
                inputs.push((oid, ValueFormat::Text, text.to_vec()));
                if let Some(b) = binary_of(&v) {
                    inputs.push((oid, ValueFormat::Binary, b));
                }
            }
        }
        assert!(
            inputs.len() > 100,
            "seeds decode for many types ({})",
            inputs.len()
        );
        for (oid, format, input) in inputs {
            for _ in 0..150 {
                let mut m = input.clone();
                let r = next();
                let pos = usize::try_from(r % (m.len() as u64 + 1)).unwrap();
                let byte = (r >> 16).to_le_bytes()[0];
                match (r >> 8) % 4 {
                    0 if pos < m.len() => m[pos] = byte,
                    1 => m.insert(pos, byte),
                    2 if pos < m.len() => {
                        m.remove(pos);
                    }
                    _ => m.truncate(pos),
                }
                check(&types, oid, format, &m);
            }
        }
    }

    /// A few binary encodings built from decoded values, to seed binary mutations.
    fn binary_of(v: &Value) -> Option<Vec<u8>> {
        Some(match v {
            Value::Int4(x) => x.to_be_bytes().to_vec(),
            Value::Int8(x) => x.to_be_bytes().to_vec(),
            Value::Float8(x) => x.to_be_bytes().to_vec(),
            Value::Numeric(n) => {
                let mut b = Vec::new();
                b.extend_from_slice(&i16::try_from(n.digits().len()).ok()?.to_be_bytes());
                b.extend_from_slice(&n.weight().to_be_bytes());
                b.extend_from_slice(&(if n.is_negative() { 0x4000u16 } else { 0 }).to_be_bytes());
                b.extend_from_slice(&n.scale().to_be_bytes());
                for d in n.digits() {
                    b.extend_from_slice(&d.to_be_bytes());
                }
                b
            }
            Value::TimestampTz(t) | Value::Timestamp(t) => t.0.to_be_bytes().to_vec(),
            Value::Date(d) => d.0.to_be_bytes().to_vec(),
            Value::Interval(i) => {
                let mut b = i.micros.to_be_bytes().to_vec();
                b.extend_from_slice(&i.days.to_be_bytes());
                b.extend_from_slice(&i.months.to_be_bytes());
                b
            }
            Value::Array(a) if a.element_type() == Oid::INT4 => {
                let mut b = i32::try_from(a.dims().len()).ok()?.to_be_bytes().to_vec();
                b.extend_from_slice(&1i32.to_be_bytes());
                b.extend_from_slice(&23u32.to_be_bytes());
                for d in a.dims() {
                    b.extend_from_slice(&i32::try_from(d.len).ok()?.to_be_bytes());
                    b.extend_from_slice(&d.lower_bound.to_be_bytes());
                }
                for e in a.elements() {
                    match e {
                        Value::Int4(x) => {
                            b.extend_from_slice(&4i32.to_be_bytes());
                            b.extend_from_slice(&x.to_be_bytes());
                        }
                        _ => b.extend_from_slice(&(-1i32).to_be_bytes()),
                    }
                }
                b
            }
            _ => return None,
        })
    }
}
