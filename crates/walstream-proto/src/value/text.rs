//! `PgText`, and the small byte scanner the text-format parsers share.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

use crate::error::DecodeError;

/// UTF-8 text backed by the received [`Bytes`] (no copy), validated once.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PgText(Bytes);

impl PgText {
    /// Wraps `bytes` after checking they are UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Self(bytes))
    }

    /// Text from a static string.
    pub fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Invariant: the bytes were validated as UTF-8 when this value was built.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The UTF-8 bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for PgText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for PgText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for PgText {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for PgText {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl From<String> for PgText {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl fmt::Debug for PgText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for PgText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validates `data` as UTF-8 text, reporting the first bad byte.
#[inline]
pub(crate) fn text(data: Bytes, context: &'static str) -> Result<PgText, DecodeError> {
    // ASCII is UTF-8, and `is_ascii` checks a word at a time with less setup than
    // `from_utf8`, which matters for the short strings most columns hold.
    if data.is_ascii() {
        return Ok(PgText(data));
    }
    match std::str::from_utf8(&data) {
        Ok(_) => Ok(PgText(data)),
        Err(e) => Err(DecodeError::InvalidUtf8 {
            context,
            offset: e.valid_up_to(),
        }),
    }
}

/// An [`DecodeError::InvalidValue`].
pub(crate) fn bad(context: &'static str, offset: usize, reason: &'static str) -> DecodeError {
    DecodeError::InvalidValue {
        context,
        offset,
        reason,
    }
}

/// A forward-only scanner over text-format bytes, with offsets for errors.
#[derive(Debug, Clone)]
pub(crate) struct Scan<'a> {
    s: &'a [u8],
    pos: usize,
    context: &'static str,
}

impl<'a> Scan<'a> {
    pub(crate) fn new(s: &'a [u8], context: &'static str) -> Self {
        Self { s, pos: 0, context }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.s.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `word` (ASCII case-insensitive) if it comes next.
    pub(crate) fn eat_word(&mut self, word: &str) -> bool {
        let rest = self.rest();
        if rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word.as_bytes()) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    pub(crate) fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b) if is_pg_space(b)) {
            self.pos += 1;
        }
    }

    pub(crate) fn err(&self, reason: &'static str) -> DecodeError {
        bad(self.context, self.pos, reason)
    }

    pub(crate) fn expect(&mut self, b: u8, reason: &'static str) -> Result<(), DecodeError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    /// Fails unless everything was consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                context: self.context,
                offset: self.pos,
                remaining: self.s.len() - self.pos,
            })
        }
    }

    /// Reads between `min` and `max` ASCII digits as an unsigned number.
    pub(crate) fn digits(&mut self, min: usize, max: usize) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            if self.pos - start == max {
                return Err(self.err("too many digits"));
            }
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .ok_or_else(|| self.err("number out of range"))?;
            self.pos += 1;
        }
        if self.pos - start < min {
            return Err(self.err("expected digits"));
        }
        Ok(v)
    }

    /// Reads a fraction `.ddd` (after the dot) as microseconds, up to six digits.
    pub(crate) fn micros_fraction(&mut self) -> Result<i64, DecodeError> {
        let start = self.pos;
        let f = self.digits(1, 6)?;
        let n = self.pos - start;
        let mut us = i64::try_from(f).map_err(|_| self.err("fraction out of range"))?;
        for _ in n..6 {
            us *= 10;
        }
        Ok(us)
    }
}

/// PostgreSQL's `isspace` set in the C locale.
pub(crate) fn is_pg_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Strips PostgreSQL whitespace from both ends.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_pg_space(*b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_pg_space(*b))
        .map_or(start, |p| p + 1);
    s.get(start..end).unwrap_or_default()
}

/// Parses a decimal `i64` with an optional sign and surrounding whitespace, without
/// allocating.
#[inline]
pub(crate) fn parse_i64(s: &[u8], context: &'static str) -> Result<i64, DecodeError> {
    // What the server prints: an optional '-' and 1 to 18 digits, which cannot overflow an
    // i64. Anything else (whitespace, '+', 19 digits, a bad byte) takes the checked path,
    // which also reports the errors.
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if (1..=18).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) {
        let v = digits
            .iter()
            .fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0'));
        return Ok(if neg { -v } else { v });
    }
    parse_i64_checked(s, context)
}

/// [`parse_i64`] for any input, with overflow checks and exact errors.
#[inline(never)]
fn parse_i64_checked(s: &[u8], context: &'static str) -> Result<i64, DecodeError> {
    let t = trim(s);
    let (neg, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() {
        return Err(bad(context, 0, "expected an integer"));
    }
    let mut acc: i64 = 0;
    for (i, &b) in digits.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(bad(context, i, "expected a digit"));
        }
        let d = i64::from(b - b'0');
        acc = acc
            .checked_mul(10)
            .and_then(|a| {
                if neg {
                    a.checked_sub(d)
                } else {
                    a.checked_add(d)
                }
            })
            .ok_or_else(|| bad(context, i, "integer out of range"))?;
    }
    Ok(acc)
}

/// Parses an unsigned decimal `u64` with surrounding whitespace, without allocating.
pub(crate) fn parse_u64(s: &[u8], context: &'static str) -> Result<u64, DecodeError> {
    let t = trim(s);
    let mut sc = Scan::new(t, context);
    sc.eat(b'+');
    let v = sc.digits(1, 20)?;
    sc.finish()?;
    Ok(v)
}

/// Fixed-size binary payload.
pub(crate) fn fixed<const N: usize>(
    data: &[u8],
    context: &'static str,
) -> Result<[u8; N], DecodeError> {
    match <[u8; N]>::try_from(data) {
        Ok(a) => Ok(a),
        Err(_) if data.len() < N => Err(DecodeError::UnexpectedEof {
            context,
            offset: data.len(),
            needed: N - data.len(),
        }),
        Err(_) => Err(DecodeError::TrailingBytes {
            context,
            offset: N,
            remaining: data.len() - N,
        }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The unchecked fast path gives what the checked parser gives, values and errors.
        #[test]
        fn parse_i64_fast_path_agrees(s in "[ +-]?[0-9x]{0,21}", v in any::<i64>()) {
            prop_assert_eq!(parse_i64(s.as_bytes(), "t"), parse_i64_checked(s.as_bytes(), "t"));
            let text = v.to_string();
            prop_assert_eq!(parse_i64(text.as_bytes(), "t"), Ok(v));
        }

        /// The ASCII shortcut accepts exactly what UTF-8 validation accepts.
        #[test]
        fn text_ascii_shortcut_agrees(b in proptest::collection::vec(any::<u8>(), 0..24)) {
            let expected = std::str::from_utf8(&b).map(str::to_owned);
            let got = text(Bytes::from(b), "t");
            match (got, expected) {
                (Ok(t), Ok(s)) => prop_assert_eq!(t.as_str(), s),
                (Err(DecodeError::InvalidUtf8 { offset, .. }), Err(e)) => {
                    prop_assert_eq!(offset, e.valid_up_to());
                }
                (got, expected) => prop_assert!(false, "{got:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn integers() {
        assert_eq!(parse_i64(b" -9223372036854775808 ", "t").unwrap(), i64::MIN);
        assert_eq!(parse_i64(b"9223372036854775807", "t").unwrap(), i64::MAX);
        assert_eq!(parse_i64(b"+12", "t").unwrap(), 12);
        for bad in [
            &b""[..],
            b"-",
            b"9223372036854775808",
            b"1x",
            b"1 2",
            b"--1",
        ] {
            assert!(parse_i64(bad, "t").is_err(), "{bad:?}");
        }
        assert_eq!(parse_u64(b"18446744073709551615", "t").unwrap(), u64::MAX);
        assert!(parse_u64(b"18446744073709551616", "t").is_err());
        assert!(parse_u64(b"-1", "t").is_err());
    }

    #[test]
    fn text_validation() {
        assert!(matches!(
            text(Bytes::from_static(b"ab\xff"), "t"),
            Err(DecodeError::InvalidUtf8 { offset: 2, .. })
        ));
        let t = text(Bytes::from_static("héllo".as_bytes()), "t").unwrap();
        assert_eq!(t, "héllo");
        assert_eq!(trim(b"  x y \n"), b"x y");
        assert_eq!(trim(b"   "), b"");
        assert!(fixed::<4>(b"abc", "t").is_err());
        assert!(fixed::<2>(b"abc", "t").is_err());
    }
}
