//! Dates, times, timestamps and intervals in PostgreSQL's ISO text and binary formats.

use std::fmt::{self, Write as _};

use super::text::{Scan, bad, fixed, trim};
use crate::error::DecodeError;
use crate::types::{PgTimestamp, civil_from_pg_days, pg_days_from_civil};

const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_MINUTE: i64 = 60 * USECS_PER_SEC;
const USECS_PER_HOUR: i64 = 60 * USECS_PER_MINUTE;
const USECS_PER_DAY: i64 = 24 * USECS_PER_HOUR;

/// A `date`: days since 2000-01-01; `i32::MIN` and `i32::MAX` are `-infinity` and `infinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgDate(pub i32);

impl PgDate {
    /// `-infinity`.
    pub const NEG_INFINITY: Self = Self(i32::MIN);
    /// `infinity`.
    pub const INFINITY: Self = Self(i32::MAX);

    /// The date of a proleptic Gregorian (year, month, day) where year 0 is 1 BC; `None` if
    /// the fields are invalid or out of range.
    pub fn from_ymd(year: i64, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        if !(-10_000_000..=10_000_000).contains(&year) {
            return None;
        }
        let d = i32::try_from(pg_days_from_civil(year, month, day)).ok()?;
        (d != i32::MIN && d != i32::MAX).then_some(Self(d))
    }

    /// (year, month, day) with year 0 = 1 BC, or `None` for the infinities.
    pub fn to_ymd(self) -> Option<(i64, u32, u32)> {
        (!self.is_infinite()).then(|| civil_from_pg_days(i64::from(self.0)))
    }

    /// True for `infinity` and `-infinity`.
    pub fn is_infinite(self) -> bool {
        self == Self::INFINITY || self == Self::NEG_INFINITY
    }

    pub(crate) fn parse(data: &[u8]) -> Result<Self, DecodeError> {
        const CTX: &str = "date";
        if let Some(d) = data
            .split_first_chunk::<10>()
            .filter(|(_, rest)| rest.is_empty())
            .and_then(|(ymd, _)| canonical_ymd(ymd))
        {
            return Ok(d);
        }
        let t = trim(data);
        if t.eq_ignore_ascii_case(b"infinity") {
            return Ok(Self::INFINITY);
        }
        if t.eq_ignore_ascii_case(b"-infinity") {
            return Ok(Self::NEG_INFINITY);
        }
        let (t, bc) = strip_bc(t);
        let mut s = Scan::new(t, CTX);
        let (y, m, d) = scan_ymd(&mut s, bc)?;
        s.finish()?;
        Self::from_ymd(y, m, d).ok_or_else(|| bad(CTX, 0, "date out of range"))
    }

    pub(crate) fn write_json(self, out: &mut String) {
        match self.to_ymd() {
            None => out.push_str(if self == Self::INFINITY {
                "\"infinity\""
            } else {
                "\"-infinity\""
            }),
            Some((y, m, d)) => {
                let _ = write!(out, "\"{}-{m:02}-{d:02}\"", IsoYear(y));
            }
        }
    }
}

impl fmt::Display for PgDate {
    /// ISO DateStyle: `2024-02-29`, `0044-03-15 BC`, `infinity`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_ymd() {
            None => f.write_str(if *self == Self::INFINITY {
                "infinity"
            } else {
                "-infinity"
            }),
            Some((y, m, d)) => {
                write_pg_date(f, y, m, d)?;
                if y <= 0 { f.write_str(" BC") } else { Ok(()) }
            }
        }
    }
}

/// An ISO 8601 year: four digits at least, `-` for years before 1 BC (astronomical).
struct IsoYear(i64);

impl fmt::Display for IsoYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            write!(f, "-{:04}", self.0.unsigned_abs())
        } else {
            write!(f, "{:04}", self.0)
        }
    }
}

fn is_leap(y: i64) -> bool {
    y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// `YYYY-MM-DD` with the BC year convention: year Y BC is astronomical year 1 − Y.
fn write_pg_date(f: &mut impl fmt::Write, y: i64, m: u32, d: u32) -> fmt::Result {
    let shown = if y > 0 { y } else { 1 - y };
    write!(f, "{shown:04}-{m:02}-{d:02}")
}

fn strip_bc(t: &[u8]) -> (&[u8], bool) {
    match t.len().checked_sub(3) {
        Some(p) if t[p..].eq_ignore_ascii_case(b" bc") => (trim(&t[..p]), true),
        _ => (t, false),
    }
}

fn scan_ymd(s: &mut Scan<'_>, bc: bool) -> Result<(i64, u32, u32), DecodeError> {
    let y = s.digits(1, 9)?;
    s.expect(b'-', "expected '-' after the year")?;
    let m = s.digits(1, 2)?;
    s.expect(b'-', "expected '-' after the month")?;
    let d = s.digits(1, 2)?;
    let y = i64::try_from(y).map_err(|_| s.err("year out of range"))?;
    if y == 0 {
        return Err(s.err("year 0 does not exist"));
    }
    let y = if bc { 1 - y } else { y };
    let m = u32::try_from(m).map_err(|_| s.err("month out of range"))?;
    let d = u32::try_from(d).map_err(|_| s.err("day out of range"))?;
    Ok((y, m, d))
}

/// `HH:MM:SS[.ffffff]` → microseconds since midnight (up to 24:00:00).
fn scan_time(s: &mut Scan<'_>) -> Result<i64, DecodeError> {
    let h = s.digits(1, 2)?;
    s.expect(b':', "expected ':' after the hour")?;
    let m = s.digits(2, 2)?;
    let sec = if s.eat(b':') { s.digits(2, 2)? } else { 0 };
    let frac = if s.eat(b'.') { s.micros_fraction()? } else { 0 };
    if h > 24 || m > 59 || sec > 60 {
        return Err(s.err("time field out of range"));
    }
    let us = (i64::try_from(h * 3600 + m * 60 + sec).map_err(|_| s.err("time out of range"))?)
        * USECS_PER_SEC
        + frac;
    if us > USECS_PER_DAY {
        return Err(s.err("time out of range"));
    }
    Ok(us)
}

/// `+HH[:MM[:SS]]` → seconds east of UTC.
fn scan_offset(s: &mut Scan<'_>) -> Result<i32, DecodeError> {
    let neg = match s.bump() {
        Some(b'+') => false,
        Some(b'-') => true,
        _ => return Err(s.err("expected a time zone offset")),
    };
    let h = s.digits(1, 2)?;
    let m = if s.eat(b':') { s.digits(2, 2)? } else { 0 };
    let sec = if s.eat(b':') { s.digits(2, 2)? } else { 0 };
    if h > 15 || m > 59 || sec > 59 {
        return Err(s.err("time zone offset out of range"));
    }
    let v = i32::try_from(h * 3600 + m * 60 + sec)
        .map_err(|_| s.err("time zone offset out of range"))?;
    Ok(if neg { -v } else { v })
}

/// `HH:MM:SS[.ffffff]` with trailing fractional zeros trimmed.
fn write_time(f: &mut impl fmt::Write, us: i64) -> fmt::Result {
    let secs = us / USECS_PER_SEC;
    write!(
        f,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )?;
    write_fraction(f, us % USECS_PER_SEC)
}

fn write_fraction(f: &mut impl fmt::Write, frac: i64) -> fmt::Result {
    if frac == 0 {
        return Ok(());
    }
    let mut v = frac.unsigned_abs();
    let mut width = 6;
    while v % 10 == 0 {
        v /= 10;
        width -= 1;
    }
    write!(f, ".{v:0width$}")
}

/// `+HH[:MM[:SS]]` for an offset in seconds east of UTC.
fn write_offset(f: &mut impl fmt::Write, east: i32, always_minutes: bool) -> fmt::Result {
    let sign = if east >= 0 { '+' } else { '-' };
    let a = east.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    if s != 0 {
        write!(f, "{sign}{h:02}:{m:02}:{s:02}")
    } else if m != 0 || always_minutes {
        write!(f, "{sign}{h:02}:{m:02}")
    } else {
        write!(f, "{sign}{h:02}")
    }
}

/// A `time`: microseconds since midnight, 0 to 24:00:00 inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgTime(pub i64);

impl PgTime {
    pub(crate) fn parse(data: &[u8]) -> Result<Self, DecodeError> {
        let mut s = Scan::new(trim(data), "time");
        let us = scan_time(&mut s)?;
        s.finish()?;
        Ok(Self(us))
    }

    pub(crate) fn from_binary(data: &[u8]) -> Result<Self, DecodeError> {
        let us = i64::from_be_bytes(fixed(data, "time")?);
        if !(0..=USECS_PER_DAY).contains(&us) {
            return Err(bad("time", 0, "time out of range"));
        }
        Ok(Self(us))
    }
}

impl fmt::Display for PgTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_time(f, self.0)
    }
}

/// A `timetz`: a time of day and the UTC offset it was given with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PgTimeTz {
    /// The local time of day.
    pub time: PgTime,
    /// Seconds east of UTC (`+05:30` is 19800; PostgreSQL stores the negation).
    pub offset_seconds: i32,
}

impl PgTimeTz {
    pub(crate) fn parse(data: &[u8]) -> Result<Self, DecodeError> {
        let mut s = Scan::new(trim(data), "timetz");
        let us = scan_time(&mut s)?;
        let offset_seconds = scan_offset(&mut s)?;
        s.finish()?;
        Ok(Self {
            time: PgTime(us),
            offset_seconds,
        })
    }

    pub(crate) fn from_binary(data: &[u8]) -> Result<Self, DecodeError> {
        let raw: [u8; 12] = fixed(data, "timetz")?;
        let (t, z) = raw.split_at(8);
        let us = i64::from_be_bytes(t.try_into().map_err(|_| bad("timetz", 0, "length"))?);
        let zone = i32::from_be_bytes(z.try_into().map_err(|_| bad("timetz", 8, "length"))?);
        if !(0..=USECS_PER_DAY).contains(&us) {
            return Err(bad("timetz", 0, "time out of range"));
        }
        // PostgreSQL's TZDISP_LIMIT: offsets must stay below 16 hours.
        if zone.unsigned_abs() >= 16 * 3600 {
            return Err(bad("timetz", 8, "time zone offset out of range"));
        }
        Ok(Self {
            time: PgTime(us),
            offset_seconds: -zone,
        })
    }
}

impl fmt::Display for PgTimeTz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_time(f, self.time.0)?;
        write_offset(f, self.offset_seconds, false)
    }
}

/// Prints a timestamp as PostgreSQL does with `DateStyle=ISO` (and `TimeZone=UTC` for
/// `timestamptz`): `2024-01-02 03:04:05.5+00`, `0044-03-15 12:00:00 BC`, `infinity`.
pub(crate) fn fmt_timestamp(ts: PgTimestamp, tz: bool, f: &mut impl fmt::Write) -> fmt::Result {
    if ts == PgTimestamp::INFINITY {
        return f.write_str("infinity");
    }
    if ts == PgTimestamp::NEG_INFINITY {
        return f.write_str("-infinity");
    }
    let days = ts.0.div_euclid(USECS_PER_DAY);
    let (y, m, d) = civil_from_pg_days(days);
    write_pg_date(f, y, m, d)?;
    f.write_char(' ')?;
    write_time(f, ts.0.rem_euclid(USECS_PER_DAY))?;
    if tz {
        f.write_str("+00")?;
    }
    if y <= 0 { f.write_str(" BC") } else { Ok(()) }
}

/// ISO 8601 for JSON: `2024-01-02T03:04:05.5` (+ `Z` for `timestamptz`).
pub(crate) fn write_timestamp_json(ts: PgTimestamp, tz: bool, out: &mut String) {
    if ts.is_infinite() {
        out.push_str(if ts == PgTimestamp::INFINITY {
            "\"infinity\""
        } else {
            "\"-infinity\""
        });
        return;
    }
    let days = ts.0.div_euclid(USECS_PER_DAY);
    let (y, m, d) = civil_from_pg_days(days);
    let _ = write!(out, "\"{}-{m:02}-{d:02}T", IsoYear(y));
    let _ = write_time(out, ts.0.rem_euclid(USECS_PER_DAY));
    out.push_str(if tz { "Z\"" } else { "\"" });
}

/// `HH:MM:SS[.f]` / with `+HH:MM` for JSON.
pub(crate) fn write_time_json(t: PgTime, offset: Option<i32>, out: &mut String) {
    out.push('"');
    let _ = write_time(out, t.0);
    if let Some(o) = offset {
        let _ = write_offset(out, o, true);
    }
    out.push('"');
}

/// Parses a `timestamp` or (with `tz`) `timestamptz` in ISO DateStyle; the printed offset is
/// applied, so a `timestamptz` comes back as a UTC instant whatever the session `TimeZone`.
pub(crate) fn parse_timestamp(data: &[u8], tz: bool) -> Result<PgTimestamp, DecodeError> {
    if let Some(ts) = canonical_timestamp(data, tz) {
        return Ok(ts);
    }
    let ctx = if tz { "timestamptz" } else { "timestamp" };
    let t = trim(data);
    if t.eq_ignore_ascii_case(b"infinity") {
        return Ok(PgTimestamp::INFINITY);
    }
    if t.eq_ignore_ascii_case(b"-infinity") {
        return Ok(PgTimestamp::NEG_INFINITY);
    }
    let (t, bc) = strip_bc(t);
    let mut s = Scan::new(t, ctx);
    let (y, m, d) = scan_ymd(&mut s, bc)?;
    if !(s.eat(b' ') || s.eat(b'T')) {
        return Err(s.err("expected a time after the date"));
    }
    let us = scan_time(&mut s)?;
    let offset = if tz { scan_offset(&mut s)? } else { 0 };
    s.finish()?;
    let date = PgDate::from_ymd(y, m, d).ok_or_else(|| bad(ctx, 0, "date out of range"))?;
    // Computed wide: the first day of the range starts before i64::MIN microseconds.
    let utc = i128::from(date.0) * i128::from(USECS_PER_DAY) + i128::from(us)
        - i128::from(offset) * i128::from(USECS_PER_SEC);
    i64::try_from(utc)
        .ok()
        .filter(|v| *v != i64::MAX && *v != i64::MIN)
        .map(PgTimestamp)
        .ok_or_else(|| bad(ctx, 0, "timestamp out of range"))
}

/// Fixed-width decimal digits (at most 9), or `None` if a byte is not a digit.
#[inline]
fn fixed_digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// `YYYY-MM-DD` as the server prints it (four-digit year, AD), or `None`: the general parser
/// then decides, and reports any error.
#[inline]
fn canonical_ymd(t: &[u8; 10]) -> Option<PgDate> {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *t else {
        return None;
    };
    let y = fixed_digits(&[y0, y1, y2, y3])?;
    let m = fixed_digits(&[m0, m1])?;
    let d = fixed_digits(&[d0, d1])?;
    if y == 0 {
        return None;
    }
    PgDate::from_ymd(i64::from(y), m, d)
}

/// The timestamp form the server prints, `YYYY-MM-DD HH:MM:SS[.f{1,6}]` and for `timestamptz`
/// an offset `+HH[:MM]`, parsed without the general scanner. `None` for anything else (other
/// widths, BC, hour 24, leap seconds, whitespace, errors): the general parser then decides.
#[inline]
fn canonical_timestamp(t: &[u8], tz: bool) -> Option<PgTimestamp> {
    let (ymd, rest) = t.split_first_chunk::<10>()?;
    let date = canonical_ymd(ymd)?;
    let (hms, mut rest) = rest.split_first_chunk::<9>()?;
    let [b' ', h0, h1, b':', m0, m1, b':', s0, s1] = *hms else {
        return None;
    };
    let (h, m, sec) = (
        fixed_digits(&[h0, h1])?,
        fixed_digits(&[m0, m1])?,
        fixed_digits(&[s0, s1])?,
    );
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let mut us = i64::from(h * 3600 + m * 60 + sec) * USECS_PER_SEC;
    if let Some((b'.', r)) = rest.split_first() {
        let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
        let (frac, r) = r.split_at_checked(n).filter(|_| (1..=6).contains(&n))?;
        let mut frac = i64::from(fixed_digits(frac)?);
        for _ in n..6 {
            frac *= 10;
        }
        us += frac;
        rest = r;
    }
    let offset = if tz {
        let (&sign, r) = rest.split_first()?;
        let (oh, r) = r.split_first_chunk::<2>()?;
        let (om, r) = match r.split_first() {
            Some((b':', r)) => {
                let (om, r) = r.split_first_chunk::<2>()?;
                (fixed_digits(om)?, r)
            }
            _ => (0, r),
        };
        let oh = fixed_digits(oh)?;
        if oh > 15 || om > 59 {
            return None;
        }
        rest = r;
        let v = i64::from(oh * 3600 + om * 60);
        match sign {
            b'+' => v,
            b'-' => -v,
            _ => return None,
        }
    } else {
        0
    };
    if !rest.is_empty() {
        return None;
    }
    // Four-digit AD years keep this far inside i64 (and off the infinities).
    Some(PgTimestamp(
        i64::from(date.0) * USECS_PER_DAY + us - offset * USECS_PER_SEC,
    ))
}

/// An `interval`: months, days and microseconds, kept apart as PostgreSQL does.
///
/// PostgreSQL 17 added infinite intervals, stored with all three fields at their maximum
/// ([`PgInterval::INFINITY`], text `infinity`) or at their minimum
/// ([`PgInterval::NEG_INFINITY`], `-infinity`); this type uses the same representation, so
/// both formats decode to it and it displays as `infinity` / `-infinity`. On PostgreSQL
/// 14–16 those two field combinations were ordinary (finite) extremes,
/// `178956970 years 7 mons 2147483647 days 2562047788:00:54.775807` and its negative
/// counterpart; walstream reads them as the infinities too (their binary form is the same
/// on every version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PgInterval {
    /// Months (12 to a year).
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Microseconds.
    pub micros: i64,
}

/// The fields PostgreSQL's `EncodeInterval` works with.
struct IntervalParts {
    year: i64,
    mon: i64,
    day: i64,
    hour: i64,
    min: i64,
    sec: i64,
    fsec: i64,
}

impl PgInterval {
    /// `infinity` (PostgreSQL 17+): every field at its maximum.
    pub const INFINITY: Self = Self {
        months: i32::MAX,
        days: i32::MAX,
        micros: i64::MAX,
    };
    /// `-infinity` (PostgreSQL 17+): every field at its minimum.
    pub const NEG_INFINITY: Self = Self {
        months: i32::MIN,
        days: i32::MIN,
        micros: i64::MIN,
    };

    /// True for `infinity` and `-infinity`.
    pub fn is_infinite(self) -> bool {
        self == Self::INFINITY || self == Self::NEG_INFINITY
    }

    /// The text of an infinite interval (`infinity` / `-infinity`), `None` when finite.
    fn infinity_text(self) -> Option<&'static str> {
        if self == Self::INFINITY {
            Some("infinity")
        } else if self == Self::NEG_INFINITY {
            Some("-infinity")
        } else {
            None
        }
    }

    fn parts(self) -> IntervalParts {
        let t = self.micros;
        let hour = t / USECS_PER_HOUR;
        let t = t - hour * USECS_PER_HOUR;
        let min = t / USECS_PER_MINUTE;
        let t = t - min * USECS_PER_MINUTE;
        let sec = t / USECS_PER_SEC;
        IntervalParts {
            year: i64::from(self.months) / 12,
            mon: i64::from(self.months) % 12,
            day: i64::from(self.days),
            hour,
            min,
            sec,
            fsec: t - sec * USECS_PER_SEC,
        }
    }

    pub(crate) fn from_binary(data: &[u8]) -> Result<Self, DecodeError> {
        let raw: [u8; 16] = fixed(data, "interval")?;
        let mut t = [0u8; 8];
        t.copy_from_slice(&raw[..8]);
        let mut d = [0u8; 4];
        d.copy_from_slice(&raw[8..12]);
        let mut m = [0u8; 4];
        m.copy_from_slice(&raw[12..]);
        Ok(Self {
            micros: i64::from_be_bytes(t),
            days: i32::from_be_bytes(d),
            months: i32::from_be_bytes(m),
        })
    }

    /// Parses the `postgres` IntervalStyle: `1 year 2 mons -3 days -04:05:06.5`.
    pub(crate) fn parse(data: &[u8]) -> Result<Self, DecodeError> {
        const CTX: &str = "interval";
        let overflow = || bad(CTX, 0, "interval out of range");
        let t = trim(data);
        if t.eq_ignore_ascii_case(b"infinity") || t.eq_ignore_ascii_case(b"+infinity") {
            return Ok(Self::INFINITY);
        }
        if t.eq_ignore_ascii_case(b"-infinity") {
            return Ok(Self::NEG_INFINITY);
        }
        let mut s = Scan::new(t, CTX);
        let mut months: i64 = 0;
        let mut days: i64 = 0;
        let mut micros: i64 = 0;
        let mut seen_any = false;
        loop {
            s.skip_ws();
            if s.at_end() {
                break;
            }
            seen_any = true;
            let neg = if s.eat(b'-') {
                true
            } else {
                s.eat(b'+');
                false
            };
            let n = i64::try_from(s.digits(1, 19)?).map_err(|_| overflow())?;
            let n = if neg { -n } else { n };
            if s.eat(b':') {
                let m = i64::try_from(s.digits(2, 2)?).map_err(|_| overflow())?;
                let sec = if s.eat(b':') {
                    i64::try_from(s.digits(2, 2)?).map_err(|_| overflow())?
                } else {
                    0
                };
                let frac = if s.eat(b'.') { s.micros_fraction()? } else { 0 };
                if m > 59 || sec > 59 {
                    return Err(s.err("time field out of range"));
                }
                // Computed wide: `-2562047788:00:54.775808` is i64::MIN microseconds.
                let mag = (i128::from(n.unsigned_abs()) * 3600 + i128::from(m * 60 + sec))
                    * i128::from(USECS_PER_SEC)
                    + i128::from(frac);
                let t = if neg { -mag } else { mag };
                micros = i64::try_from(i128::from(micros) + t).map_err(|_| overflow())?;
                continue;
            }
            s.skip_ws();
            let (field, factor): (&mut i64, i64) = if s.eat_word("years") || s.eat_word("year") {
                (&mut months, 12)
            } else if s.eat_word("mons") || s.eat_word("mon") {
                (&mut months, 1)
            } else if s.eat_word("days") || s.eat_word("day") {
                (&mut days, 1)
            } else {
                return Err(s.err("expected years, mons, days or a time"));
            };
            *field = n
                .checked_mul(factor)
                .and_then(|v| field.checked_add(v))
                .ok_or_else(overflow)?;
        }
        if !seen_any {
            return Err(bad(CTX, 0, "empty interval"));
        }
        Ok(Self {
            months: i32::try_from(months).map_err(|_| overflow())?,
            days: i32::try_from(days).map_err(|_| overflow())?,
            micros,
        })
    }

    /// Writes the ISO 8601 duration, as PostgreSQL's `iso_8601` IntervalStyle does
    /// (`infinity` and `-infinity` as words, as that style prints them too).
    pub fn write_iso8601(&self, f: &mut impl fmt::Write) -> fmt::Result {
        if let Some(text) = self.infinity_text() {
            return f.write_str(text);
        }
        let p = self.parts();
        if p.year == 0
            && p.mon == 0
            && p.day == 0
            && p.hour == 0
            && p.min == 0
            && p.sec == 0
            && p.fsec == 0
        {
            return f.write_str("PT0S");
        }
        f.write_char('P')?;
        for (v, u) in [(p.year, 'Y'), (p.mon, 'M'), (p.day, 'D')] {
            if v != 0 {
                write!(f, "{v}{u}")?;
            }
        }
        if p.hour != 0 || p.min != 0 || p.sec != 0 || p.fsec != 0 {
            f.write_char('T')?;
        }
        for (v, u) in [(p.hour, 'H'), (p.min, 'M')] {
            if v != 0 {
                write!(f, "{v}{u}")?;
            }
        }
        if p.sec != 0 || p.fsec != 0 {
            if p.sec < 0 || p.fsec < 0 {
                f.write_char('-')?;
            }
            write!(f, "{}", p.sec.unsigned_abs())?;
            write_fraction(f, p.fsec)?;
            f.write_char('S')?;
        }
        Ok(())
    }
}

impl fmt::Display for PgInterval {
    /// The `postgres` IntervalStyle, as `EncodeInterval` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.infinity_text() {
            return f.write_str(text);
        }
        let p = self.parts();
        let mut is_zero = true;
        let mut is_before = false;
        for (value, unit) in [(p.year, "year"), (p.mon, "mon"), (p.day, "day")] {
            if value == 0 {
                continue;
            }
            let sep = if is_zero { "" } else { " " };
            let plus = if is_before && value > 0 { "+" } else { "" };
            let s = if value != 1 { "s" } else { "" };
            write!(f, "{sep}{plus}{value} {unit}{s}")?;
            is_before = value < 0;
            is_zero = false;
        }
        if is_zero || p.hour != 0 || p.min != 0 || p.sec != 0 || p.fsec != 0 {
            let minus = p.hour < 0 || p.min < 0 || p.sec < 0 || p.fsec < 0;
            let sep = if is_zero { "" } else { " " };
            let sign = if minus {
                "-"
            } else if is_before {
                "+"
            } else {
                ""
            };
            write!(
                f,
                "{sep}{sign}{:02}:{:02}:{:02}",
                p.hour.unsigned_abs(),
                p.min.unsigned_abs(),
                p.sec.unsigned_abs()
            )?;
            write_fraction(f, p.fsec)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The general parser alone (what the canonical fast paths must agree with).
    fn general_timestamp(data: &[u8], tz: bool) -> Result<PgTimestamp, DecodeError> {
        let ctx = if tz { "timestamptz" } else { "timestamp" };
        let (t, bc) = strip_bc(trim(data));
        let mut s = Scan::new(t, ctx);
        let (y, m, d) = scan_ymd(&mut s, bc)?;
        if !(s.eat(b' ') || s.eat(b'T')) {
            return Err(s.err("expected a time after the date"));
        }
        let us = scan_time(&mut s)?;
        let offset = if tz { scan_offset(&mut s)? } else { 0 };
        s.finish()?;
        let date = PgDate::from_ymd(y, m, d).ok_or_else(|| bad(ctx, 0, "date out of range"))?;
        let utc = i128::from(date.0) * i128::from(USECS_PER_DAY) + i128::from(us)
            - i128::from(offset) * i128::from(USECS_PER_SEC);
        i64::try_from(utc)
            .map(PgTimestamp)
            .map_err(|_| bad(ctx, 0, "timestamp out of range"))
    }

    proptest! {
        /// Whatever the canonical fast paths accept, the general parser reads the same way.
        #[test]
        fn canonical_fast_paths_agree(
            s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,7})?([+-][0-9]{1,2}(:[0-9]{2}){0,2})?",
            tz in any::<bool>(),
        ) {
            if let Some(fast) = canonical_timestamp(s.as_bytes(), tz) {
                prop_assert_eq!(Ok(fast), general_timestamp(s.as_bytes(), tz), "{}", s);
            }
            prop_assert_eq!(
                parse_timestamp(s.as_bytes(), tz).ok(),
                general_timestamp(s.as_bytes(), tz).ok()
            );
            let date = s.get(..10).unwrap_or_default().as_bytes();
            if let Some(fast) = date.try_into().ok().and_then(canonical_ymd) {
                let mut sc = Scan::new(date, "date");
                let (y, m, d) = scan_ymd(&mut sc, false).unwrap();
                prop_assert_eq!(Some(fast), PgDate::from_ymd(y, m, d));
            }
        }
    }

    #[test]
    fn canonical_forms_take_the_fast_path() {
        let ts = b"2024-03-01 12:00:37.5+05:30";
        assert_eq!(
            canonical_timestamp(ts, true),
            Some(general_timestamp(ts, true).unwrap())
        );
        assert_eq!(canonical_ymd(b"2024-02-29"), PgDate::from_ymd(2024, 2, 29));
        // Left to the general parser: 24:00, leap seconds, BC, 5-digit years, seconds offsets.
        for t in [
            &b"2024-03-01 24:00:00"[..],
            b"2024-03-01 12:00:60",
            b"2024-03-01 12:00:00 BC",
            b"12024-03-01 12:00:00",
            b"2024-03-01 12:00:00+05:30:15",
            b"2023-02-29 12:00:00",
        ] {
            assert_eq!(canonical_timestamp(t, true), None, "{t:?}");
        }
    }

    #[test]
    fn dates() {
        for s in [
            "2000-01-01",
            "2024-02-29",
            "0044-03-15 BC",
            "0001-01-01 BC",
            "0001-01-01",
            "infinity",
            "-infinity",
            "294276-12-31",
            "4713-11-24 BC",
            "5874897-12-31",
        ] {
            assert_eq!(PgDate::parse(s.as_bytes()).unwrap().to_string(), s, "{s}");
        }
        assert_eq!(PgDate::parse(b"2000-01-01").unwrap(), PgDate(0));
        assert_eq!(PgDate::parse(b"1999-12-31").unwrap(), PgDate(-1));
        assert_eq!(
            PgDate::parse(b"0001-02-29 BC").unwrap().to_ymd(),
            Some((0, 2, 29))
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "0000-01-01",
            "2024-1-",
            "x",
            "2024-01-01 AD",
            "99999999-01-01",
        ] {
            assert!(PgDate::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let mut j = String::new();
        PgDate::parse(b"0044-03-15 BC").unwrap().write_json(&mut j);
        assert_eq!(j, "\"-0043-03-15\"");
    }

    #[test]
    fn times() {
        for s in [
            "00:00:00",
            "23:59:59.999999",
            "24:00:00",
            "12:30:00.5",
            "01:02:03.000123",
        ] {
            assert_eq!(PgTime::parse(s.as_bytes()).unwrap().to_string(), s);
        }
        assert!(PgTime::parse(b"25:00:00").is_err());
        assert!(PgTime::parse(b"24:00:01").is_err());
        assert!(PgTime::parse(b"12:00:00.1234567").is_err());
        assert!(PgTime::from_binary(&(-1i64).to_be_bytes()).is_err());
        assert_eq!(
            PgTime::from_binary(&1_500_000i64.to_be_bytes())
                .unwrap()
                .to_string(),
            "00:00:01.5"
        );
        for s in [
            "12:00:00+05:30",
            "00:00:00+00",
            "23:59:59.5-08",
            "01:02:03+00:01:15",
            "10:00:00-03:30",
        ] {
            assert_eq!(PgTimeTz::parse(s.as_bytes()).unwrap().to_string(), s);
        }
        let mut raw = 43_200_000_000i64.to_be_bytes().to_vec();
        raw.extend_from_slice(&(-19_800i32).to_be_bytes());
        let b = PgTimeTz::from_binary(&raw).unwrap();
        assert_eq!(b, PgTimeTz::parse(b"12:00:00+05:30").unwrap());
        raw[8..].copy_from_slice(&(100_000i32).to_be_bytes());
        assert!(PgTimeTz::from_binary(&raw).is_err());
    }

    fn ts(s: &str, tz: bool) -> String {
        let mut out = String::new();
        fmt_timestamp(parse_timestamp(s.as_bytes(), tz).unwrap(), tz, &mut out).unwrap();
        out
    }

    #[test]
    fn timestamps() {
        for s in [
            "2024-01-02 03:04:05.123456",
            "2000-01-01 00:00:00",
            "0044-03-15 12:00:00 BC",
            "infinity",
            "-infinity",
            "2024-02-29 23:59:59.5",
            "294276-12-31 23:59:59.999999",
        ] {
            assert_eq!(ts(s, false), s);
        }
        for s in [
            "2024-01-02 03:04:05.123456+00",
            "0044-03-15 12:00:00+00 BC",
            "1999-12-31 23:59:59.999999+00",
        ] {
            assert_eq!(ts(s, true), s);
        }
        assert_eq!(
            ts("2024-01-02 05:34:05+05:30", true),
            "2024-01-02 00:04:05+00"
        );
        assert_eq!(ts("2024-01-01 20:00:00-08", true), "2024-01-02 04:00:00+00");
        assert_eq!(
            ts("1900-01-01 00:00:00+00:01:15", true),
            "1899-12-31 23:58:45+00"
        );
        assert_eq!(
            parse_timestamp(b"2000-01-01 00:00:00+00", true).unwrap(),
            PgTimestamp(0)
        );
        assert_eq!(
            parse_timestamp(b"2000-01-01 00:00:01", false).unwrap(),
            PgTimestamp(1_000_000)
        );
        // The extremes of the binary range display and parse back.
        for raw in [i64::MIN + 1, i64::MAX - 1] {
            for tz in [false, true] {
                let mut s = String::new();
                fmt_timestamp(PgTimestamp(raw), tz, &mut s).unwrap();
                assert_eq!(
                    parse_timestamp(s.as_bytes(), tz).unwrap(),
                    PgTimestamp(raw),
                    "{s}"
                );
            }
        }
        assert!(parse_timestamp(b"300000-01-01 00:00:00", false).is_err());
        assert!(parse_timestamp(b"2000-01-01 00:00:00", true).is_err());
        assert!(parse_timestamp(b"2000-01-01 00:00:00+00", false).is_err());
        assert!(parse_timestamp(b"2000-01-01", false).is_err());
        assert!(parse_timestamp(b"2000-01-01 00:61:00", false).is_err());
        let mut j = String::new();
        write_timestamp_json(
            parse_timestamp(b"2024-01-02 03:04:05.5+00", true).unwrap(),
            true,
            &mut j,
        );
        assert_eq!(j, "\"2024-01-02T03:04:05.5Z\"");
    }

    /// PostgreSQL 17+'s infinite intervals: `interval_send` bytes and `interval_out` text.
    #[test]
    fn infinite_intervals() {
        let pos = [
            0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff,
            0xff, 0xff,
        ];
        let neg = [0x80, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0x80, 0, 0, 0];
        for (raw, text, value) in [
            (pos, "infinity", PgInterval::INFINITY),
            (neg, "-infinity", PgInterval::NEG_INFINITY),
        ] {
            let b = PgInterval::from_binary(&raw).unwrap();
            assert_eq!(b, value);
            assert!(b.is_infinite());
            assert_eq!(b.to_string(), text);
            assert_eq!(PgInterval::parse(text.as_bytes()).unwrap(), value);
            let mut iso = String::new();
            b.write_iso8601(&mut iso).unwrap();
            assert_eq!(iso, text);
        }
        assert_eq!(
            PgInterval::parse(b" Infinity ").unwrap(),
            PgInterval::INFINITY
        );
        assert_eq!(
            PgInterval::parse(b"+infinity").unwrap(),
            PgInterval::INFINITY
        );
        // Only all three fields at the limit are infinite.
        let mut almost = pos;
        almost[7] = 0xfe;
        let v = PgInterval::from_binary(&almost).unwrap();
        assert!(!v.is_infinite());
        assert_eq!(
            v.to_string(),
            "178956970 years 7 mons 2147483647 days 2562047788:00:54.775806"
        );
        let v = PgInterval {
            micros: i64::MIN,
            ..PgInterval::default()
        };
        assert!(!v.is_infinite());
        assert_eq!(v.to_string(), "-2562047788:00:54.775808");
    }

    #[test]
    fn intervals() {
        for s in [
            "00:00:00",
            "1 year 2 mons -3 days -04:05:06.5",
            "-1 years -2 mons",
            "-1 days +02:03:00",
            "1 day",
            "1 mon 00:00:00.000001",
            "2562047788:00:54.775807",
            "-2562047788:00:54.775808",
            "-178956970 years -8 mons -2147483648 days",
            "3 days 04:05:06",
            "-00:00:01",
        ] {
            let v = PgInterval::parse(s.as_bytes()).unwrap();
            assert_eq!(v.to_string(), s, "{s}");
        }
        let v = PgInterval::parse(b"1 year 2 mons -3 days -04:05:06.5").unwrap();
        assert_eq!(
            v,
            PgInterval {
                months: 14,
                days: -3,
                micros: -(4 * 3600 + 5 * 60 + 6) * 1_000_000 - 500_000
            }
        );
        let mut iso = String::new();
        v.write_iso8601(&mut iso).unwrap();
        assert_eq!(iso, "P1Y2M-3DT-4H-5M-6.5S");
        let mut iso = String::new();
        PgInterval::default().write_iso8601(&mut iso).unwrap();
        assert_eq!(iso, "PT0S");
        let mut raw = (-1i64).to_be_bytes().to_vec();
        raw.extend_from_slice(&2i32.to_be_bytes());
        raw.extend_from_slice(&13i32.to_be_bytes());
        assert_eq!(
            PgInterval::from_binary(&raw).unwrap().to_string(),
            "1 year 1 mon 2 days -00:00:00.000001"
        );
        for bad in [
            "",
            "1",
            "infinityx",
            "- infinity",
            "1 fortnight",
            "1 year 2",
            "1:2:3",
            "99999999999999999999 days",
            "2147483648 days",
        ] {
            assert!(PgInterval::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
