//! Scalar built-in types: booleans, integers, floats, bytea, uuid, money, bit strings, and the
//! dispatch of every built-in scalar OID.

use std::fmt::{self, Write as _};

use bytes::Bytes;

use super::text::{bad, fixed, parse_i64, parse_u64, text, trim};
use super::{Value, ValueFormat, datetime, network, numeric};
use crate::error::DecodeError;
use crate::types::{Lsn, Oid, Xid};

/// A value's bytes as a borrowed slice of the buffer that holds them.
///
/// Most types parse the slice and keep nothing of it; the few that keep their bytes (text,
/// bytea, numeric, bit strings) cut a zero-copy [`Bytes`] from the owner with
/// [`Raw::bytes`], so decoding an integer touches no reference count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Raw<'a> {
    owner: &'a Bytes,
    data: &'a [u8],
}

impl<'a> Raw<'a> {
    /// The whole of `owner`.
    #[inline]
    pub(crate) fn whole(owner: &'a Bytes) -> Self {
        Self { owner, data: owner }
    }

    /// `data`, a slice of `owner` (a foreign slice would be copied by [`Raw::bytes`]).
    #[inline]
    pub(crate) fn within(owner: &'a Bytes, data: &'a [u8]) -> Self {
        Self { owner, data }
    }

    /// The bytes.
    #[inline]
    pub(crate) fn data(self) -> &'a [u8] {
        self.data
    }

    /// The bytes as a zero-copy [`Bytes`].
    #[inline]
    pub(crate) fn bytes(self) -> Bytes {
        let owner = self.owner.as_ptr_range();
        let data = self.data.as_ptr_range();
        if owner.start <= data.start && data.end <= owner.end {
            // Inside the owner, as the constructors' callers always pass: cut it there.
            let start = data.start.addr() - owner.start.addr();
            if start == 0 && self.data.len() == self.owner.len() {
                return self.owner.clone();
            }
            return self.owner.slice(start..start + self.data.len());
        }
        // Not reached (no caller pairs a buffer with a foreign slice); a copy keeps it correct.
        Bytes::copy_from_slice(self.data)
    }
}

/// Decodes a built-in scalar type; `Ok(None)` when `oid` is not one.
#[inline]
pub(crate) fn decode_builtin(
    oid: Oid,
    format: ValueFormat,
    raw: Raw<'_>,
) -> Result<Option<Value>, DecodeError> {
    use ValueFormat::{Binary as B, Text as T};
    let data = raw.data();
    let v = match (oid.0, format) {
        (16, T) => Value::Bool(bool_text(data)?),
        (16, B) => Value::Bool(fixed::<1>(data, "bool")?[0] != 0),
        (18, T) => Value::Char(char_text(data)?),
        (18, B) => Value::Char(fixed::<1>(data, "char")?[0]),
        (21, T) => Value::Int2(int_text(data, "int2")?),
        (21, B) => Value::Int2(i16::from_be_bytes(fixed(data, "int2")?)),
        (23, T) => Value::Int4(int_text(data, "int4")?),
        (23, B) => Value::Int4(i32::from_be_bytes(fixed(data, "int4")?)),
        (20, T) => Value::Int8(parse_i64(data, "int8")?),
        (20, B) => Value::Int8(i64::from_be_bytes(fixed(data, "int8")?)),
        (26, T) => Value::Oid(Oid(u32_text(data, "oid")?)),
        (26, B) => Value::Oid(Oid(u32::from_be_bytes(fixed(data, "oid")?))),
        (28, T) => Value::Xid(Xid(u32_text(data, "xid")?)),
        (28, B) => Value::Xid(Xid(u32::from_be_bytes(fixed(data, "xid")?))),
        (5069, T) => Value::Xid8(parse_u64(data, "xid8")?),
        (5069, B) => Value::Xid8(u64::from_be_bytes(fixed(data, "xid8")?)),
        (700, T) => Value::Float4(float_text(data, "float4")?),
        (700, B) => Value::Float4(f32::from_be_bytes(fixed(data, "float4")?)),
        (701, T) => Value::Float8(float_text(data, "float8")?),
        (701, B) => Value::Float8(f64::from_be_bytes(fixed(data, "float8")?)),
        (1700, T) => Value::Numeric(numeric::PgNumeric::parse(data)?),
        (1700, B) => Value::Numeric(numeric::PgNumeric::from_binary(raw.bytes())?),
        (790, T) => Value::Money(PgMoney::Text(text(raw.bytes(), "money")?)),
        (790, B) => Value::Money(PgMoney::Cents(i64::from_be_bytes(fixed(data, "money")?))),
        (25 | 1043 | 1042 | 19, _) => Value::Text(text(raw.bytes(), "text")?),
        (142, _) => Value::Xml(text(raw.bytes(), "xml")?),
        (114, _) => Value::Json(text(raw.bytes(), "json")?),
        (3802, T) => Value::Jsonb(text(raw.bytes(), "jsonb")?),
        (3802, B) => match data.first() {
            Some(1) => Value::Jsonb(text(
                Raw::within(raw.owner, data.get(1..).unwrap_or_default()).bytes(),
                "jsonb",
            )?),
            Some(_) => return Err(bad("jsonb", 0, "unsupported jsonb version")),
            None => {
                return Err(DecodeError::UnexpectedEof {
                    context: "jsonb",
                    offset: 0,
                    needed: 1,
                });
            }
        },
        (17, T) => Value::Bytea(bytea_text(data)?),
        (17, B) => Value::Bytea(raw.bytes()),
        (2950, T) => Value::Uuid(PgUuid::parse(data)?),
        (2950, B) => Value::Uuid(PgUuid(fixed(data, "uuid")?)),
        (3220, T) => Value::PgLsn(lsn_text(data)?),
        (3220, B) => Value::PgLsn(Lsn(u64::from_be_bytes(fixed(data, "pg_lsn")?))),
        (1560, T) => Value::Bit(PgBit::parse(data, "bit")?),
        (1560, B) => Value::Bit(PgBit::from_binary(raw.bytes(), "bit")?),
        (1562, T) => Value::VarBit(PgBit::parse(data, "varbit")?),
        (1562, B) => Value::VarBit(PgBit::from_binary(raw.bytes(), "varbit")?),
        (1082, T) => Value::Date(datetime::PgDate::parse(data)?),
        (1082, B) => Value::Date(datetime::PgDate(i32::from_be_bytes(fixed(data, "date")?))),
        (1083, T) => Value::Time(datetime::PgTime::parse(data)?),
        (1083, B) => Value::Time(datetime::PgTime::from_binary(data)?),
        (1266, T) => Value::TimeTz(datetime::PgTimeTz::parse(data)?),
        (1266, B) => Value::TimeTz(datetime::PgTimeTz::from_binary(data)?),
        (1114, T) => Value::Timestamp(datetime::parse_timestamp(data, false)?),
        (1114, B) => Value::Timestamp(crate::PgTimestamp(i64::from_be_bytes(fixed(
            data,
            "timestamp",
        )?))),
        (1184, T) => Value::TimestampTz(datetime::parse_timestamp(data, true)?),
        (1184, B) => Value::TimestampTz(crate::PgTimestamp(i64::from_be_bytes(fixed(
            data,
            "timestamptz",
        )?))),
        (1186, T) => Value::Interval(datetime::PgInterval::parse(data)?),
        (1186, B) => Value::Interval(datetime::PgInterval::from_binary(data)?),
        (869, T) => Value::Inet(network::PgInet::parse(data, "inet")?),
        (869, B) => Value::Inet(network::PgInet::from_binary(raw.bytes(), "inet")?),
        (650, T) => Value::Cidr(network::PgInet::parse(data, "cidr")?),
        (650, B) => Value::Cidr(network::PgInet::from_binary(raw.bytes(), "cidr")?),
        (829, T) => Value::MacAddr(network::MacAddr(network::parse_mac(data, "macaddr")?)),
        (829, B) => Value::MacAddr(network::MacAddr(fixed(data, "macaddr")?)),
        (774, T) => Value::MacAddr8(network::MacAddr8(network::parse_mac(data, "macaddr8")?)),
        (774, B) => Value::MacAddr8(network::MacAddr8(fixed(data, "macaddr8")?)),
        _ => return Ok(None),
    };
    Ok(Some(v))
}

fn bool_text(data: &[u8]) -> Result<bool, DecodeError> {
    let t = trim(data);
    // boolin accepts any unique prefix of true/false/yes/no/on/off and 1/0.
    let lower = |w: &str| {
        !t.is_empty() && t.len() <= w.len() && w.as_bytes()[..t.len()].eq_ignore_ascii_case(t)
    };
    if lower("true") || lower("yes") || (t.len() >= 2 && lower("on")) || t == b"1" {
        Ok(true)
    } else if lower("false") || lower("no") || (t.len() >= 2 && lower("off")) || t == b"0" {
        Ok(false)
    } else {
        Err(bad("bool", 0, "expected t or f"))
    }
}

fn char_text(data: &[u8]) -> Result<u8, DecodeError> {
    match data {
        [] => Ok(0),
        [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7'] => {
            Ok(((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0'))
        }
        [first, ..] => Ok(*first),
    }
}

/// charout: NUL prints as nothing, bytes with the high bit as `\ooo`.
pub(crate) fn fmt_char(c: u8, f: &mut impl fmt::Write) -> fmt::Result {
    match c {
        0 => Ok(()),
        0x80.. => write!(f, "\\{:03o}", c),
        _ => f.write_char(char::from(c)),
    }
}

fn int_text<T: TryFrom<i64>>(data: &[u8], context: &'static str) -> Result<T, DecodeError> {
    T::try_from(parse_i64(data, context)?).map_err(|_| bad(context, 0, "integer out of range"))
}

fn u32_text(data: &[u8], context: &'static str) -> Result<u32, DecodeError> {
    u32::try_from(parse_u64(data, context)?).map_err(|_| bad(context, 0, "integer out of range"))
}

fn float_text<T: std::str::FromStr>(data: &[u8], context: &'static str) -> Result<T, DecodeError> {
    let t = trim(data);
    let s = std::str::from_utf8(t).map_err(|_| bad(context, 0, "expected a number"))?;
    // Rust accepts "inf", "infinity" and "nan" in any case, as PostgreSQL does.
    if s.is_empty()
        || s.bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b"+-.".contains(&b)))
    {
        return Err(bad(context, 0, "expected a number"));
    }
    s.parse().map_err(|_| bad(context, 0, "expected a number"))
}

fn lsn_text(data: &[u8]) -> Result<Lsn, DecodeError> {
    let s = std::str::from_utf8(trim(data)).map_err(|_| bad("pg_lsn", 0, "expected X/X"))?;
    s.parse().map_err(|_| bad("pg_lsn", 0, "expected X/X"))
}

/// A small stack buffer for formatting floats without allocating.
struct StackBuf {
    buf: [u8; 64],
    len: usize,
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Formats a finite float whose shortest scientific form (`{:e}`) is `sci`, as PostgreSQL's
/// shortest-exact output does: fixed notation when `-4 <= exponent < fixed_below`.
fn fmt_pg_float(sci: &str, fixed_below: i32, f: &mut impl fmt::Write) -> fmt::Result {
    let (neg, body) = match sci.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, sci),
    };
    let (mant, exp) = body.split_once('e').ok_or(fmt::Error)?;
    let exp: i32 = exp.parse().map_err(|_| fmt::Error)?;
    let mut digits = StackBuf {
        buf: [0; 64],
        len: 0,
    };
    for c in mant.chars().filter(|c| c.is_ascii_digit()) {
        digits.write_char(c)?;
    }
    let d = std::str::from_utf8(&digits.buf[..digits.len]).map_err(|_| fmt::Error)?;
    if neg {
        f.write_char('-')?;
    }
    if (-4..fixed_below).contains(&exp) {
        if exp < 0 {
            f.write_str("0.")?;
            for _ in 0..(-exp - 1) {
                f.write_char('0')?;
            }
            f.write_str(d)
        } else {
            let int_len = usize::try_from(exp).map_err(|_| fmt::Error)? + 1;
            if d.len() <= int_len {
                f.write_str(d)?;
                for _ in d.len()..int_len {
                    f.write_char('0')?;
                }
                Ok(())
            } else {
                f.write_str(&d[..int_len])?;
                f.write_char('.')?;
                f.write_str(&d[int_len..])
            }
        }
    } else {
        f.write_str(&d[..1])?;
        if d.len() > 1 {
            f.write_char('.')?;
            f.write_str(&d[1..])?;
        }
        let sign = if exp < 0 { '-' } else { '+' };
        write!(f, "e{sign}{:02}", exp.unsigned_abs())
    }
}

fn fmt_special(v: f64, f: &mut impl fmt::Write) -> Option<fmt::Result> {
    if v.is_nan() {
        Some(f.write_str("NaN"))
    } else if v.is_infinite() {
        Some(f.write_str(if v > 0.0 { "Infinity" } else { "-Infinity" }))
    } else {
        None
    }
}

/// float8out with `extra_float_digits > 0`.
pub(crate) fn fmt_f64(v: f64, f: &mut impl fmt::Write) -> fmt::Result {
    if let Some(r) = fmt_special(v, f) {
        return r;
    }
    let mut sci = StackBuf {
        buf: [0; 64],
        len: 0,
    };
    write!(sci, "{v:e}")?;
    fmt_pg_float(
        std::str::from_utf8(&sci.buf[..sci.len]).map_err(|_| fmt::Error)?,
        15,
        f,
    )
}

/// float4out with `extra_float_digits > 0`.
pub(crate) fn fmt_f32(v: f32, f: &mut impl fmt::Write) -> fmt::Result {
    if let Some(r) = fmt_special(f64::from(v), f) {
        return r;
    }
    let mut sci = StackBuf {
        buf: [0; 64],
        len: 0,
    };
    write!(sci, "{v:e}")?;
    fmt_pg_float(
        std::str::from_utf8(&sci.buf[..sci.len]).map_err(|_| fmt::Error)?,
        6,
        f,
    )
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// byteain: `\x` hex (whitespace between pairs allowed) or the escape format.
fn bytea_text(data: &[u8]) -> Result<Bytes, DecodeError> {
    const CTX: &str = "bytea";
    if let Some(hex) = data.strip_prefix(b"\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut i = 0;
        while i < hex.len() {
            let c = hex[i];
            if super::text::is_pg_space(c) {
                i += 1;
                continue;
            }
            let hi = hex_val(c).ok_or_else(|| bad(CTX, i + 2, "invalid hexadecimal digit"))?;
            let lo =
                hex.get(i + 1).copied().and_then(hex_val).ok_or_else(|| {
                    bad(CTX, i + 3, "invalid hexadecimal data: odd number of digits")
                })?;
            out.push((hi << 4) | lo);
            i += 2;
        }
        return Ok(Bytes::from(out));
    }
    if !data.contains(&b'\\') {
        return Ok(Bytes::copy_from_slice(data));
    }
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        match &data[i..] {
            [b'\\', b'\\', ..] => {
                out.push(b'\\');
                i += 2;
            }
            [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', ..] => {
                out.push(((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0'));
                i += 4;
            }
            [b'\\', ..] => return Err(bad(CTX, i, "invalid escape in bytea")),
            [c, ..] => {
                out.push(*c);
                i += 1;
            }
            [] => break,
        }
    }
    Ok(Bytes::from(out))
}

/// byteaout in hex mode.
pub(crate) fn fmt_bytea(b: &[u8], f: &mut impl fmt::Write) -> fmt::Result {
    f.write_str("\\x")?;
    for byte in b {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

/// A `uuid`'s 16 bytes; `Display` is the lower-case hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PgUuid(pub [u8; 16]);

impl PgUuid {
    fn parse(data: &[u8]) -> Result<Self, DecodeError> {
        if let Some(u) = Self::parse_canonical(data) {
            return Ok(u);
        }
        Self::parse_general(data)
    }

    /// Every form `uuid_in` accepts (braces, dashes after any group of four digits), with
    /// exact errors.
    fn parse_general(data: &[u8]) -> Result<Self, DecodeError> {
        const CTX: &str = "uuid";
        let t = trim(data);
        let t = match t {
            [b'{', inner @ .., b'}'] => inner,
            _ => t,
        };
        let mut out = [0u8; 16];
        let mut n = 0;
        let mut i = 0;
        while i < t.len() {
            if t[i] == b'-' && n % 2 == 0 && n > 0 && i + 1 < t.len() {
                i += 1;
                continue;
            }
            let hi = hex_val(t[i]).ok_or_else(|| bad(CTX, i, "invalid uuid"))?;
            let lo = t
                .get(i + 1)
                .copied()
                .and_then(hex_val)
                .ok_or_else(|| bad(CTX, i + 1, "invalid uuid"))?;
            let slot = out.get_mut(n).ok_or_else(|| bad(CTX, i, "uuid too long"))?;
            *slot = (hi << 4) | lo;
            n += 1;
            i += 2;
        }
        if n != 16 {
            return Err(bad(CTX, t.len(), "uuid too short"));
        }
        Ok(Self(out))
    }

    /// The form the server prints, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, decoded without
    /// the general loop; `None` for anything else (the general parser then decides).
    #[inline]
    fn parse_canonical(data: &[u8]) -> Option<Self> {
        /// Where each byte's two hex digits start.
        const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let t: &[u8; 36] = data.try_into().ok()?;
        if [t[8], t[13], t[18], t[23]] != [b'-'; 4] {
            return None;
        }
        let mut out = [0u8; 16];
        for (slot, at) in out.iter_mut().zip(AT) {
            // `at + 1` is at most 35: inside the 36-byte array.
            *slot = (hex_val(t[at])? << 4) | hex_val(t[at + 1])?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for PgUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_char('-')?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A `money` value.
///
/// The binary format is an amount in the currency's smallest unit (cents); the text format
/// depends on the server's `lc_monetary` and is kept as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PgMoney {
    /// From the binary format: the amount in the smallest unit (e.g. cents).
    Cents(i64),
    /// From the text format, as the server printed it.
    Text(super::PgText),
}

impl PgMoney {
    /// The amount in cents: the binary value, or text in the `C` locale's `-$1,234.56` form.
    pub fn cents(&self) -> Option<i64> {
        match self {
            Self::Cents(c) => Some(*c),
            Self::Text(t) => parse_c_money(t.as_bytes()),
        }
    }
}

fn parse_c_money(s: &[u8]) -> Option<i64> {
    let (neg, s) = match s.strip_prefix(b"-") {
        Some(r) => (true, r),
        None => (false, s),
    };
    let s = s.strip_prefix(b"$")?;
    let (int, frac) = match s.iter().position(|b| *b == b'.') {
        Some(p) => (&s[..p], &s[p + 1..]),
        None => (s, &b"00"[..]),
    };
    if frac.len() != 2 || int.is_empty() {
        return None;
    }
    let mut acc: i64 = 0;
    for &b in int.iter().filter(|b| **b != b',').chain(frac) {
        if !b.is_ascii_digit() {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_sub(i64::from(b - b'0'))?;
    }
    if neg { Some(acc) } else { acc.checked_neg() }
}

impl fmt::Display for PgMoney {
    /// The text as received, or the `C` locale's format for cents: `-$1,234.56`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(t) => f.write_str(t.as_str()),
            Self::Cents(c) => {
                let abs = c.unsigned_abs();
                if *c < 0 {
                    f.write_char('-')?;
                }
                f.write_char('$')?;
                let units = abs / 100;
                let mut groups = StackBuf {
                    buf: [0; 64],
                    len: 0,
                };
                write!(groups, "{units}")?;
                let s = std::str::from_utf8(&groups.buf[..groups.len]).map_err(|_| fmt::Error)?;
                for (i, ch) in s.chars().enumerate() {
                    if i > 0 && (s.len() - i) % 3 == 0 {
                        f.write_char(',')?;
                    }
                    f.write_char(ch)?;
                }
                write!(f, ".{:02}", abs % 100)
            }
        }
    }
}

/// A `bit(n)` or `varbit` value: `len` bits, most significant first, packed in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PgBit {
    len: usize,
    data: Bytes,
}

impl PgBit {
    /// Builds a bit string of `len` bits from packed bytes; `None` if `data` has the wrong
    /// length. Padding bits after `len` are cleared.
    pub fn new(len: usize, data: Bytes) -> Option<Self> {
        if data.len() != len.div_ceil(8) {
            return None;
        }
        Some(Self {
            len,
            data: clear_padding(len, data),
        })
    }

    /// The number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for the empty bit string.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed bytes (padding bits are zero).
    pub fn as_bytes(&self) -> &Bytes {
        &self.data
    }

    /// Bit `i` (0 is the leftmost), or `None` past the end.
    pub fn bit(&self, i: usize) -> Option<bool> {
        if i >= self.len {
            return None;
        }
        let byte = self.data.get(i / 8)?;
        Some(byte & (0x80 >> (i % 8)) != 0)
    }

    fn parse(data: &[u8], context: &'static str) -> Result<Self, DecodeError> {
        let mut out = vec![0u8; data.len().div_ceil(8)];
        for (i, b) in data.iter().enumerate() {
            match b {
                b'0' => {}
                b'1' => out[i / 8] |= 0x80 >> (i % 8),
                _ => return Err(bad(context, i, "expected 0 or 1")),
            }
        }
        Ok(Self {
            len: data.len(),
            data: Bytes::from(out),
        })
    }

    fn from_binary(data: Bytes, context: &'static str) -> Result<Self, DecodeError> {
        let mut c = crate::cursor::Cursor::new(data, context);
        let raw = c.i32()?;
        let len = usize::try_from(raw).map_err(|_| DecodeError::InvalidLength {
            context,
            length: i64::from(raw),
            offset: 0,
        })?;
        let bytes = c.bytes(len.div_ceil(8))?;
        c.finish()?;
        Ok(Self {
            len,
            data: clear_padding(len, bytes),
        })
    }
}

fn clear_padding(len: usize, data: Bytes) -> Bytes {
    let extra = len % 8;
    match data.last() {
        Some(&last) if extra != 0 && last & (0xff >> extra) != 0 => {
            let mut v = data.to_vec();
            if let Some(l) = v.last_mut() {
                *l &= !(0xff >> extra);
            }
            Bytes::from(v)
        }
        _ => data,
    }
}

impl fmt::Display for PgBit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in 0..self.len {
            f.write_char(if self.bit(i) == Some(true) { '1' } else { '0' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::value::decode_value;

    #[test]
    fn raw_cuts_bytes_without_copying() {
        let owner = Bytes::from_static(b"t\0\0\0\x02hin");
        let whole = Raw::whole(&owner).bytes();
        assert_eq!(whole.as_ptr(), owner.as_ptr());
        let inner = Raw::within(&owner, owner.get(5..7).unwrap()).bytes();
        assert_eq!(&inner[..], b"hi");
        assert_eq!(inner.as_ptr(), owner.get(5..).unwrap().as_ptr());
        assert!(
            Raw::within(&owner, owner.get(3..3).unwrap())
                .bytes()
                .is_empty()
        );
        // A slice from elsewhere is copied, not cut out of the wrong buffer.
        let foreign = [b'h', b'i'];
        let copied = Raw::within(&owner, &foreign).bytes();
        assert_eq!(&copied[..], b"hi");
        assert_ne!(copied.as_ptr(), foreign.as_ptr());
    }

    proptest! {
        /// The canonical UUID fast path agrees with the general parser.
        #[test]
        fn uuid_fast_path_agrees(
            bytes in any::<[u8; 16]>(),
            upper in any::<bool>(),
            noise in "[0-9a-fA-F-]{36}",
        ) {
            let shown = PgUuid(bytes).to_string();
            let shown = if upper { shown.to_uppercase() } else { shown };
            prop_assert_eq!(PgUuid::parse_canonical(shown.as_bytes()), Some(PgUuid(bytes)));
            for s in [shown.as_bytes(), noise.as_bytes()] {
                if let Some(fast) = PgUuid::parse_canonical(s) {
                    prop_assert_eq!(Ok(fast), PgUuid::parse_general(s));
                }
                prop_assert_eq!(PgUuid::parse(s), PgUuid::parse_general(s));
            }
        }
    }

    fn t(oid: Oid, s: &str) -> Value {
        decode_value(oid, ValueFormat::Text, Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }
    fn b(oid: Oid, d: &[u8]) -> Value {
        decode_value(oid, ValueFormat::Binary, Bytes::copy_from_slice(d)).unwrap()
    }
    fn bad_t(oid: Oid, s: &str) -> DecodeError {
        decode_value(oid, ValueFormat::Text, Bytes::copy_from_slice(s.as_bytes())).unwrap_err()
    }

    #[test]
    fn booleans_and_chars() {
        assert_eq!(t(Oid::BOOL, "t"), Value::Bool(true));
        assert_eq!(t(Oid::BOOL, "f"), Value::Bool(false));
        assert_eq!(t(Oid::BOOL, "yes"), Value::Bool(true));
        assert!(bad_t(Oid::BOOL, "x").to_string().contains("bool"));
        assert_eq!(b(Oid::BOOL, &[1]), Value::Bool(true));
        assert_eq!(b(Oid::BOOL, &[0]), Value::Bool(false));
        assert!(decode_value(Oid::BOOL, ValueFormat::Binary, Bytes::new()).is_err());
        assert_eq!(t(Oid::CHAR, "a"), Value::Char(b'a'));
        assert_eq!(t(Oid::CHAR, "\\217"), Value::Char(0x8f));
        assert_eq!(t(Oid::CHAR, ""), Value::Char(0));
        assert_eq!(b(Oid::CHAR, &[0x8f]).to_string(), "\\217");
        assert_eq!(b(Oid::CHAR, &[0]).to_string(), "");
        // PostgreSQL 14's charout sends a byte with the high bit as it is (not UTF-8); 15+
        // sends `\ooo`. Both read as the same byte, displayed the 15+ way.
        let raw = decode_value(Oid::CHAR, ValueFormat::Text, Bytes::from_static(&[0xc3])).unwrap();
        assert_eq!(raw, Value::Char(0xc3));
        assert_eq!(raw, t(Oid::CHAR, "\\303"));
        assert_eq!(raw.to_string(), "\\303");
    }

    #[test]
    fn integers_both_formats() {
        assert_eq!(t(Oid::INT2, "-32768"), Value::Int2(i16::MIN));
        assert!(
            bad_t(Oid::INT2, "32768")
                .to_string()
                .contains("out of range")
        );
        assert_eq!(b(Oid::INT2, &[0x80, 0]), Value::Int2(i16::MIN));
        assert_eq!(
            t(Oid::INT4, "2147483647"),
            b(Oid::INT4, &[0x7f, 0xff, 0xff, 0xff])
        );
        assert_eq!(t(Oid::INT8, "-1"), b(Oid::INT8, &[0xff; 8]));
        assert_eq!(t(Oid::OID, "4294967295"), Value::Oid(Oid(u32::MAX)));
        assert_eq!(b(Oid::XID, &[0, 0, 0, 7]), t(Oid::XID, "7"));
        assert_eq!(b(Oid::XID8, &[0xff; 8]), Value::Xid8(u64::MAX));
        assert_eq!(
            t(Oid::XID8, "18446744073709551615").to_string(),
            "18446744073709551615"
        );
        assert!(decode_value(Oid::INT4, ValueFormat::Binary, Bytes::from_static(&[0; 5])).is_err());
        assert_eq!(t(Oid::INT8, "42").as_i64(), Some(42));
    }

    #[test]
    fn floats() {
        let cases: &[(f64, &str)] = &[
            (0.1, "0.1"),
            (1e15, "1e+15"),
            (1e14, "100000000000000"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e300, "1.5e+300"),
            (-0.0, "-0"),
            (123.456, "123.456"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for &(v, s) in cases {
            assert_eq!(Value::Float8(v).to_string(), s);
            let back = t(Oid::FLOAT8, s);
            assert_eq!(format!("{back:?}"), format!("{:?}", Value::Float8(v)));
            assert_eq!(
                format!("{:?}", b(Oid::FLOAT8, &v.to_be_bytes())),
                format!("{back:?}")
            );
        }
        assert_eq!(Value::Float4(1_234_567.0).to_string(), "1.234567e+06");
        assert_eq!(Value::Float4(123_456.0).to_string(), "123456");
        assert_eq!(Value::Float4(0.1).to_string(), "0.1");
        assert_eq!(t(Oid::FLOAT4, "3.4028235e+38"), Value::Float4(f32::MAX));
        assert!(bad_t(Oid::FLOAT8, "1.0.0").to_string().contains("float8"));
        assert!(bad_t(Oid::FLOAT8, "").to_string().contains("float8"));
        assert!(bad_t(Oid::FLOAT8, "1_0").to_string().contains("float8"));
    }

    #[test]
    fn bytea() {
        assert_eq!(
            t(Oid::BYTEA, "\\x00ff10"),
            Value::Bytea(Bytes::from_static(&[0, 0xff, 0x10]))
        );
        assert_eq!(
            t(Oid::BYTEA, "\\xDEAD"),
            Value::Bytea(Bytes::from_static(&[0xde, 0xad]))
        );
        assert_eq!(t(Oid::BYTEA, "\\x"), Value::Bytea(Bytes::new()));
        assert_eq!(
            t(Oid::BYTEA, "ab\\\\c\\000\\377"),
            Value::Bytea(Bytes::from_static(b"ab\\c\0\xff"))
        );
        assert!(decode_value(Oid::BYTEA, ValueFormat::Text, Bytes::from_static(b"\\x0")).is_err());
        assert!(decode_value(Oid::BYTEA, ValueFormat::Text, Bytes::from_static(b"\\xzz")).is_err());
        assert!(decode_value(Oid::BYTEA, ValueFormat::Text, Bytes::from_static(b"a\\9")).is_err());
        assert_eq!(b(Oid::BYTEA, &[1, 0xab]).to_string(), "\\x01ab");
    }

    #[test]
    fn uuid_lsn_text_types() {
        let u = t(Oid::UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert_eq!(u.to_string(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert_eq!(t(Oid::UUID, "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}"), u);
        let raw = u.as_uuid().unwrap();
        assert_eq!(b(Oid::UUID, &raw), u);
        assert!(
            bad_t(Oid::UUID, "a0eebc99-9c0b")
                .to_string()
                .contains("uuid")
        );
        assert!(
            decode_value(
                Oid::UUID,
                ValueFormat::Text,
                Bytes::from_static(b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1111")
            )
            .is_err()
        );
        assert_eq!(
            t(Oid::PG_LSN, "16/B374D848"),
            b(Oid::PG_LSN, &0x16_B374_D848u64.to_be_bytes())
        );
        assert_eq!(t(Oid::TEXT, "héllo").as_str(), Some("héllo"));
        assert_eq!(b(Oid::VARCHAR, b"x").as_str(), Some("x"));
        assert!(decode_value(Oid::TEXT, ValueFormat::Binary, Bytes::from_static(b"\xc3")).is_err());
        assert_eq!(
            b(Oid::JSONB, b"\x01{\"a\": 1}"),
            Value::Jsonb(PgText::from_static("{\"a\": 1}"))
        );
        assert!(
            decode_value(
                Oid::JSONB,
                ValueFormat::Binary,
                Bytes::from_static(b"\x02{}")
            )
            .is_err()
        );
        assert!(decode_value(Oid::JSONB, ValueFormat::Binary, Bytes::new()).is_err());
        assert_eq!(t(Oid::JSON, "[1]"), b(Oid::JSON, b"[1]"));
    }

    use super::super::PgText;

    #[test]
    fn money_and_bits() {
        assert_eq!(
            b(Oid::MONEY, &(-123_450i64).to_be_bytes()).to_string(),
            "-$1,234.50"
        );
        assert_eq!(b(Oid::MONEY, &5i64.to_be_bytes()).to_string(), "$0.05");
        assert_eq!(
            b(Oid::MONEY, &i64::MIN.to_be_bytes()).to_string(),
            "-$92,233,720,368,547,758.08"
        );
        let m = t(Oid::MONEY, "-$1,234.50");
        assert_eq!(m.to_string(), "-$1,234.50");
        assert_eq!(
            PgMoney::Text(PgText::from_static("-$1,234.50")).cents(),
            Some(-123_450)
        );
        assert_eq!(
            PgMoney::Text(PgText::from_static("1.234,50 €")).cents(),
            None
        );
        let bits = t(Oid::VARBIT, "10110");
        assert_eq!(bits, b(Oid::VARBIT, &[0, 0, 0, 5, 0b1011_0000]));
        assert_eq!(b(Oid::BIT, &[0, 0, 0, 5, 0b1011_0111]).to_string(), "10110");
        assert_eq!(t(Oid::BIT, "").to_string(), "");
        assert!(
            decode_value(
                Oid::BIT,
                ValueFormat::Binary,
                Bytes::from_static(&[0, 0, 0, 9, 0])
            )
            .is_err()
        );
        assert!(
            decode_value(
                Oid::BIT,
                ValueFormat::Binary,
                Bytes::from_static(&[0xff, 0, 0, 9])
            )
            .is_err()
        );
        assert!(bad_t(Oid::BIT, "102").to_string().contains("0 or 1"));
    }
}
