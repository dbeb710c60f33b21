//! `numeric`: exact decimals in PostgreSQL's base-10000 representation.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use bytes::Bytes;

use super::text::{Scan, bad, trim};
use crate::cursor::Cursor;
use crate::error::DecodeError;

const SIGN_POS: u16 = 0x0000;
const SIGN_NEG: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_PINF: u16 = 0xD000;
const SIGN_NINF: u16 = 0xF000;
/// The largest display scale PostgreSQL stores (`NUMERIC_DSCALE_MASK`).
const MAX_DSCALE: u16 = 0x3FFF;

/// An exact `numeric`: sign, base-10000 digits, weight and display scale, as PostgreSQL keeps
/// it, or `NaN` / `±Infinity`.
///
/// The value of a finite numeric is `Σ digits[i] × 10000^(weight − i)`, shown with `scale`
/// decimal places. Text and binary input give the same, normalised value (no leading or
/// trailing zero digit groups; zero is positive with weight 0).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PgNumeric(Repr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Repr {
    NaN,
    PosInf,
    NegInf,
    Finite {
        negative: bool,
        weight: i16,
        scale: u16,
        digits: Digits,
    },
}

/// How many base-10000 digits a numeric keeps inline: 32 decimal digits, enough for every
/// `numeric(p, s)` up to p = 28 and most unconstrained values, without an allocation.
const INLINE_DIGITS: usize = 8;

/// The digit groups of a finite numeric: inline when they fit, on the heap otherwise.
#[derive(Clone)]
enum Digits {
    Inline { len: u8, buf: [u16; INLINE_DIGITS] },
    Heap(Vec<u16>),
}

impl Digits {
    /// Room for `n` digits.
    fn with_capacity(n: usize) -> Self {
        if n <= INLINE_DIGITS {
            Self::Inline {
                len: 0,
                buf: [0; INLINE_DIGITS],
            }
        } else {
            Self::Heap(Vec::with_capacity(n))
        }
    }

    fn from_slice(digits: &[u16]) -> Self {
        let mut out = Self::with_capacity(digits.len());
        for &d in digits {
            out.push(d);
        }
        out
    }

    fn push(&mut self, d: u16) {
        match self {
            Self::Inline { len, buf } => match buf.get_mut(usize::from(*len)) {
                Some(slot) => {
                    *slot = d;
                    *len += 1;
                }
                None => {
                    let mut v = Vec::with_capacity(2 * INLINE_DIGITS);
                    v.extend_from_slice(buf);
                    v.push(d);
                    *self = Self::Heap(v);
                }
            },
            Self::Heap(v) => v.push(d),
        }
    }

    fn truncate(&mut self, n: usize) {
        match self {
            Self::Inline { len, .. } => {
                if n < usize::from(*len) {
                    // `n` is below `len`, a u8.
                    *len = u8::try_from(n).unwrap_or(*len);
                }
            }
            Self::Heap(v) => v.truncate(n),
        }
    }

    fn as_slice(&self) -> &[u16] {
        match self {
            Self::Inline { len, buf } => buf.get(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u16] {
        match self {
            Self::Inline { len, buf } => buf.get_mut(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(v) => v,
        }
    }
}

impl std::ops::Deref for Digits {
    type Target = [u16];
    fn deref(&self) -> &[u16] {
        self.as_slice()
    }
}

impl fmt::Debug for Digits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl PartialEq for Digits {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Digits {}

impl std::hash::Hash for Digits {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PgNumeric {
    /// `NaN`.
    pub const NAN: Self = Self(Repr::NaN);
    /// `Infinity`.
    pub const INFINITY: Self = Self(Repr::PosInf);
    /// `-Infinity`.
    pub const NEG_INFINITY: Self = Self(Repr::NegInf);

    /// A finite numeric from its parts; `None` if a digit is above 9999 or `scale` above
    /// 16383. The result is normalised.
    pub fn from_parts(negative: bool, weight: i16, scale: u16, digits: Vec<u16>) -> Option<Self> {
        if scale > MAX_DSCALE || digits.iter().any(|d| *d > 9999) {
            return None;
        }
        Some(normalise(negative, weight, scale, &digits))
    }

    /// True for `NaN`.
    pub fn is_nan(&self) -> bool {
        matches!(self.0, Repr::NaN)
    }

    /// True for `Infinity` or `-Infinity`.
    pub fn is_infinite(&self) -> bool {
        matches!(self.0, Repr::PosInf | Repr::NegInf)
    }

    /// True for negative finite values and `-Infinity`.
    pub fn is_negative(&self) -> bool {
        matches!(self.0, Repr::NegInf | Repr::Finite { negative: true, .. })
    }

    /// The base-10000 digit groups (empty for zero and the special values).
    pub fn digits(&self) -> &[u16] {
        match &self.0 {
            Repr::Finite { digits, .. } => digits.as_slice(),
            _ => &[],
        }
    }

    /// The weight of the first digit group (its power of 10000).
    pub fn weight(&self) -> i16 {
        match &self.0 {
            Repr::Finite { weight, .. } => *weight,
            _ => 0,
        }
    }

    /// The display scale: decimal digits after the point.
    pub fn scale(&self) -> u16 {
        match &self.0 {
            Repr::Finite { scale, .. } => *scale,
            _ => 0,
        }
    }

    /// The nearest `f64` (lossy; `NaN` and infinities map to themselves).
    pub fn to_f64(&self) -> f64 {
        match &self.0 {
            Repr::NaN => f64::NAN,
            Repr::PosInf => f64::INFINITY,
            Repr::NegInf => f64::NEG_INFINITY,
            Repr::Finite { .. } => self.to_string().parse().unwrap_or(f64::NAN),
        }
    }

    /// Decodes `numeric_send` output.
    pub(crate) fn from_binary(data: Bytes) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(data, "numeric");
        let at = c.offset();
        let ndigits = c.i16()?;
        let weight = c.i16()?;
        let sign_at = c.offset();
        let sign = c.u16()?;
        let scale_at = c.offset();
        let scale = c.u16()?;
        let n = c.count(i64::from(ndigits), 2, at)?;
        let mut digits = Digits::with_capacity(n);
        for _ in 0..n {
            let at = c.offset();
            let d = c.u16()?;
            if d > 9999 {
                return Err(c.invalid(at, "numeric digit above 9999"));
            }
            digits.push(d);
        }
        c.finish()?;
        match sign {
            SIGN_NAN => return Ok(Self::NAN),
            SIGN_PINF => return Ok(Self::INFINITY),
            SIGN_NINF => return Ok(Self::NEG_INFINITY),
            SIGN_POS | SIGN_NEG => {}
            _ => return Err(c.invalid(sign_at, "invalid numeric sign")),
        }
        if scale > MAX_DSCALE {
            return Err(c.invalid(scale_at, "numeric display scale out of range"));
        }
        // As numeric_recv does: digits hidden by the display scale are truncated away.
        truncate_to_scale(weight, scale, &mut digits);
        Ok(normalise(sign == SIGN_NEG, weight, scale, &digits))
    }

    /// Parses numeric text: `[+-]digits[.digits]`, `NaN`, `[+-]Infinity`.
    pub(crate) fn parse(data: &[u8]) -> Result<Self, DecodeError> {
        const CTX: &str = "numeric";
        let t = trim(data);
        let mut s = Scan::new(t, CTX);
        if s.eat_word("nan") {
            s.finish()?;
            return Ok(Self::NAN);
        }
        let negative = if s.eat(b'-') {
            true
        } else {
            s.eat(b'+');
            false
        };
        if s.eat_word("infinity") || s.eat_word("inf") {
            s.finish()?;
            return Ok(if negative {
                Self::NEG_INFINITY
            } else {
                Self::INFINITY
            });
        }
        let rest = s.rest();
        let (int, frac) = match rest.iter().position(|b| *b == b'.') {
            Some(p) => (&rest[..p], &rest[p + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad(CTX, s.pos(), "expected digits"));
        }
        if let Some(i) = int.iter().chain(frac).position(|b| !b.is_ascii_digit()) {
            return Err(bad(CTX, s.pos() + i, "invalid character in numeric"));
        }
        let scale = u16::try_from(frac.len())
            .ok()
            .filter(|s| *s <= MAX_DSCALE)
            .ok_or_else(|| bad(CTX, 0, "numeric scale out of range"))?;
        // Align the decimal point on a group boundary: pad the integer part on the left and
        // the fraction on the right to multiples of four digits.
        let int_pad = (4 - int.len() % 4) % 4;
        let int_groups = (int.len() + int_pad) / 4;
        let frac_groups = frac.len().div_ceil(4);
        // The weight is the number of integer groups minus one: up to 32768 groups (131072
        // digits, the most numeric_send can express) still fit.
        let weight = i64::try_from(int_groups)
            .ok()
            .and_then(|g| i16::try_from(g - 1).ok())
            .ok_or_else(|| bad(CTX, 0, "numeric value out of range"))?;
        let mut digits = Digits::with_capacity(int_groups + frac_groups);
        let mut acc = 0u16;
        let mut n = int_pad;
        for &b in int {
            acc = acc * 10 + u16::from(b - b'0');
            n += 1;
            if n == 4 {
                digits.push(acc);
                acc = 0;
                n = 0;
            }
        }
        for &b in frac {
            acc = acc * 10 + u16::from(b - b'0');
            n += 1;
            if n == 4 {
                digits.push(acc);
                acc = 0;
                n = 0;
            }
        }
        if n > 0 {
            for _ in n..4 {
                acc *= 10;
            }
            digits.push(acc);
        }
        Ok(normalise(negative, weight, scale, &digits))
    }

    pub(crate) fn write_json(&self, out: &mut String) {
        out.push('"');
        // Writing into a String cannot fail.
        let _ = write!(out, "{self}");
        out.push('"');
    }
}

/// Drops the digits beyond `scale` decimal places (PostgreSQL's `trunc_var`).
fn truncate_to_scale(weight: i16, scale: u16, digits: &mut Digits) {
    // Number of groups up to and including the last visible fractional group.
    let keep = i64::from(weight) + 1 + i64::from(scale.div_ceil(4));
    let keep = usize::try_from(keep).unwrap_or(0);
    if digits.len() > keep {
        digits.truncate(keep);
    }
    let partial = scale % 4;
    if partial != 0 && digits.len() == keep {
        if let Some(last) = digits.as_mut_slice().last_mut() {
            let unit = 10u16.pow(u32::from(4 - partial));
            *last -= *last % unit;
        }
    }
}

fn normalise(negative: bool, weight: i16, scale: u16, digits: &[u16]) -> PgNumeric {
    let lead = digits.iter().take_while(|d| **d == 0).count();
    let trail = digits.iter().rev().take_while(|d| **d == 0).count();
    let Some(kept) = digits
        .get(lead..digits.len() - trail)
        .filter(|k| !k.is_empty())
    else {
        return PgNumeric(Repr::Finite {
            negative: false,
            weight: 0,
            scale,
            digits: Digits::from_slice(&[]),
        });
    };
    // `lead` is at most the number of digits, which came from an i16 count or a bounded text.
    let weight = weight.saturating_sub(i16::try_from(lead).unwrap_or(i16::MAX));
    PgNumeric(Repr::Finite {
        negative,
        weight,
        scale,
        digits: Digits::from_slice(kept),
    })
}

impl fmt::Display for PgNumeric {
    /// `numeric_out`: plain decimal with exactly `scale` fractional digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (negative, weight, scale, digits) = match &self.0 {
            Repr::NaN => return f.write_str("NaN"),
            Repr::PosInf => return f.write_str("Infinity"),
            Repr::NegInf => return f.write_str("-Infinity"),
            Repr::Finite {
                negative,
                weight,
                scale,
                digits,
            } => (*negative, *weight, *scale, digits),
        };
        let group = |i: i64| -> u16 {
            usize::try_from(i)
                .ok()
                .and_then(|i| digits.get(i).copied())
                .unwrap_or(0)
        };
        if negative {
            f.write_char('-')?;
        }
        let w = i64::from(weight);
        if w < 0 {
            f.write_char('0')?;
        } else {
            write!(f, "{}", group(0))?;
            for i in 1..=w {
                write!(f, "{:04}", group(i))?;
            }
        }
        if scale > 0 {
            f.write_char('.')?;
            let mut left = usize::from(scale);
            let mut k = 1i64;
            while left > 0 {
                let mut buf = [0u8; 4];
                let g = group(w + k);
                buf[0] = b'0' + u8::try_from(g / 1000).unwrap_or(0);
                buf[1] = b'0' + u8::try_from(g / 100 % 10).unwrap_or(0);
                buf[2] = b'0' + u8::try_from(g / 10 % 10).unwrap_or(0);
                buf[3] = b'0' + u8::try_from(g % 10).unwrap_or(0);
                let take = left.min(4);
                f.write_str(std::str::from_utf8(&buf[..take]).map_err(|_| fmt::Error)?)?;
                left -= take;
                k += 1;
            }
        }
        Ok(())
    }
}

impl FromStr for PgNumeric {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Text of any length (inline and heap digits) prints back exactly, and the binary
        /// form of the parsed value decodes to an equal value.
        #[test]
        fn text_round_trip_any_length(
            neg in any::<bool>(),
            int in "[1-9][0-9]{0,44}|0",
            frac in proptest::option::of("[0-9]{1,40}"),
        ) {
            let text = format!(
                "{}{int}{}",
                if neg { "-" } else { "" },
                frac.as_deref().map(|f| format!(".{f}")).unwrap_or_default()
            );
            let n = PgNumeric::parse(text.as_bytes()).unwrap();
            let is_zero = n.digits().is_empty();
            let expected = if is_zero { text.trim_start_matches('-').to_owned() } else { text.clone() };
            prop_assert_eq!(n.to_string(), expected);
            let groups = i16::try_from(n.digits().len()).unwrap();
            let sign = if n.is_negative() { SIGN_NEG } else { SIGN_POS };
            let b = bin(groups, n.weight(), sign, n.scale(), n.digits());
            let back = PgNumeric::from_binary(b).unwrap();
            prop_assert_eq!(&back, &n);
            prop_assert_eq!(
                PgNumeric::from_parts(n.is_negative(), n.weight(), n.scale(), n.digits().to_vec()),
                Some(n)
            );
        }
    }

    #[test]
    fn largest_weight_prints_and_parses_back() {
        // Weight 32767: 32768 integer groups, 131072 digits; found by the values_binary fuzz
        // target (the text parser refused the 32768th group).
        for (digits, scale) in [(&[1u16][..], 0u16), (&[9999, 1][..], 15)] {
            let n = PgNumeric::from_binary(bin(
                i16::try_from(digits.len()).unwrap(),
                i16::MAX,
                SIGN_POS,
                scale,
                digits,
            ))
            .unwrap();
            let text = n.to_string();
            assert_eq!(
                text.split('.').next().unwrap().len(),
                131_072 - 3 * usize::from(digits[0] == 1)
            );
            assert_eq!(PgNumeric::parse(text.as_bytes()).unwrap(), n);
        }
        // One group more is out of range.
        let too_long = format!("1{}", "0".repeat(131_072));
        assert!(PgNumeric::parse(too_long.as_bytes()).is_err());
    }

    fn bin(ndigits: i16, weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Bytes {
        let mut v = Vec::new();
        v.extend_from_slice(&ndigits.to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&scale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        Bytes::from(v)
    }

    #[test]
    fn text_round_trips() {
        for s in [
            "0",
            "0.00",
            "1",
            "-1",
            "12345678",
            "0.0001",
            "-0.5",
            "3.14159265358979323846",
            "100000000",
            "99999999999999999999999999999999999999.000000001",
            "0.00000000001",
            "NaN",
            "Infinity",
            "-Infinity",
            "10000",
            "1.10",
        ] {
            assert_eq!(s.parse::<PgNumeric>().unwrap().to_string(), s, "{s}");
        }
        assert_eq!("-0.00".parse::<PgNumeric>().unwrap().to_string(), "0.00");
        assert_eq!("+.5".parse::<PgNumeric>().unwrap().to_string(), "0.5");
        assert_eq!("007".parse::<PgNumeric>().unwrap().to_string(), "7");
        assert_eq!("nan".parse::<PgNumeric>().unwrap(), PgNumeric::NAN);
        let huge = format!("1{}", "0".repeat(1000));
        assert_eq!(huge.parse::<PgNumeric>().unwrap().to_string(), huge);
        for bad in ["", ".", "-", "1e5", "1.2.3", "abc", "1 2", "Infinityx"] {
            assert!(bad.parse::<PgNumeric>().is_err(), "{bad}");
        }
        let too_big = "9".repeat(140_000);
        assert!(too_big.parse::<PgNumeric>().is_err());
    }

    #[test]
    fn binary_matches_text() {
        // SELECT numeric_send('12345.678'::numeric) = 0003 0001 0000 0003 0001 0929 1a7c
        let b = PgNumeric::from_binary(bin(3, 1, SIGN_POS, 3, &[1, 2345, 6780])).unwrap();
        assert_eq!(b, "12345.678".parse().unwrap());
        assert_eq!(b.to_string(), "12345.678");
        assert_eq!(b.weight(), 1);
        assert_eq!(b.digits(), &[1, 2345, 6780]);
        let small = PgNumeric::from_binary(bin(1, -2, SIGN_NEG, 6, &[1200])).unwrap();
        assert_eq!(small.to_string(), "-0.000012");
        assert_eq!(small, "-0.000012".parse().unwrap());
        let zero = PgNumeric::from_binary(bin(0, 0, SIGN_POS, 2, &[])).unwrap();
        assert_eq!(zero.to_string(), "0.00");
        assert_eq!(
            PgNumeric::from_binary(bin(0, 0, SIGN_NAN, 0, &[])).unwrap(),
            PgNumeric::NAN
        );
        assert_eq!(
            PgNumeric::from_binary(bin(0, 0, SIGN_NINF, 0, &[]))
                .unwrap()
                .to_string(),
            "-Infinity"
        );
        assert_eq!(
            PgNumeric::from_binary(bin(0, 0, SIGN_PINF, 0, &[]))
                .unwrap()
                .to_f64(),
            f64::INFINITY
        );
        // Unnormalised input is normalised.
        // Digits hidden by the scale are dropped, as numeric_recv does.
        let hidden = PgNumeric::from_binary(bin(3, 0, SIGN_POS, 1, &[1, 2345, 6789])).unwrap();
        assert_eq!(hidden, "1.2".parse().unwrap());
        let hidden = PgNumeric::from_binary(bin(1, -3, SIGN_NEG, 4, &[5])).unwrap();
        assert_eq!(hidden.to_string(), "0.0000");
        assert_eq!(hidden, "0.0000".parse().unwrap());
        let un = PgNumeric::from_binary(bin(3, 2, SIGN_POS, 0, &[0, 5, 0])).unwrap();
        assert_eq!(un, "50000".parse().unwrap());
        assert_eq!("12.5".parse::<PgNumeric>().unwrap().to_f64(), 12.5);
    }

    #[test]
    fn binary_rejects_garbage() {
        assert!(PgNumeric::from_binary(bin(1, 0, SIGN_POS, 0, &[10_000])).is_err());
        assert!(PgNumeric::from_binary(bin(1, 0, 0x1234, 0, &[1])).is_err());
        assert!(PgNumeric::from_binary(bin(1, 0, SIGN_POS, 0x4000, &[1])).is_err());
        assert!(PgNumeric::from_binary(bin(-1, 0, SIGN_POS, 0, &[])).is_err());
        assert!(PgNumeric::from_binary(bin(5, 0, SIGN_POS, 0, &[1])).is_err());
        assert!(PgNumeric::from_binary(Bytes::from_static(&[0, 0, 0])).is_err());
        let mut extra = bin(0, 0, SIGN_POS, 0, &[]).to_vec();
        extra.push(0);
        assert!(PgNumeric::from_binary(Bytes::from(extra)).is_err());
        assert!(PgNumeric::from_parts(false, 0, 0, vec![10_000]).is_none());
        assert_eq!(
            PgNumeric::from_parts(true, 0, 1, vec![5])
                .unwrap()
                .to_string(),
            "-5.0"
        );
    }
}
