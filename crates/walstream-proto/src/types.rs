//! Vocabulary newtypes: LSNs, OIDs, transaction ids, timelines, timestamps and SQLSTATEs.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A WAL location (log sequence number), printed and parsed as PostgreSQL does: `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(into = "String", try_from = "String"))]
pub struct Lsn(pub u64);

impl Lsn {
    /// The invalid LSN `0/0`.
    pub const INVALID: Self = Self(0);
    /// The largest LSN.
    pub const MAX: Self = Self(u64::MAX);

    /// True unless this is `0/0`.
    pub fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// `self + bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Self> {
        self.0.checked_add(bytes).map(Self)
    }

    /// `self - bytes`, or `None` on underflow.
    pub fn checked_sub(self, bytes: u64) -> Option<Self> {
        self.0.checked_sub(bytes).map(Self)
    }

    /// Bytes from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn distance_from(self, earlier: Self) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }

    /// The number of the WAL segment holding this LSN, for a segment size in bytes.
    ///
    /// Returns `None` unless `segment_size` is a power of two.
    pub fn segment_number(self, segment_size: u64) -> Option<u64> {
        segment_size
            .is_power_of_two()
            .then(|| self.0 / segment_size)
    }

    /// The offset of this LSN inside its WAL segment.
    pub fn segment_offset(self, segment_size: u64) -> Option<u64> {
        segment_size
            .is_power_of_two()
            .then(|| self.0 % segment_size)
    }

    /// The first LSN of the segment holding this LSN.
    pub fn segment_start(self, segment_size: u64) -> Option<Self> {
        segment_size
            .is_power_of_two()
            .then(|| Self(self.0 - self.0 % segment_size))
    }

    /// The WAL file name (24 hex digits) of the segment holding this LSN on `timeline`, as
    /// PostgreSQL's `XLogFileName` forms it.
    pub fn wal_file_name(self, timeline: TimelineId, segment_size: u64) -> Option<String> {
        let seg = self.segment_number(segment_size)?;
        let per_id = 0x1_0000_0000u64 / segment_size;
        if per_id == 0 {
            return None;
        }
        Some(format!(
            "{:08X}{:08X}{:08X}",
            timeline.0,
            seg / per_id,
            seg % per_id
        ))
    }

    /// Parses a WAL file name (24 hex digits) back into its timeline and first LSN.
    pub fn from_wal_file_name(name: &str, segment_size: u64) -> Option<(TimelineId, Self)> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let tli = u32::from_str_radix(name.get(0..8)?, 16).ok()?;
        let log = u64::from_str_radix(name.get(8..16)?, 16).ok()?;
        let seg = u64::from_str_radix(name.get(16..24)?, 16).ok()?;
        if !segment_size.is_power_of_two() {
            return None;
        }
        let per_id = 0x1_0000_0000u64 / segment_size;
        if seg >= per_id {
            return None;
        }
        let segno = log.checked_mul(per_id)?.checked_add(seg)?;
        Some((TimelineId(tli), Self(segno.checked_mul(segment_size)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// The error returned when text is not an LSN of the form `X/X`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two hexadecimal numbers separated by '/', e.g. 16/B374D848")]
pub struct ParseLsnError(String);

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError(s.to_owned());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let ok =
            |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok(hi) || !ok(lo) {
            return Err(err());
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Self((hi << 32) | lo))
    }
}

impl From<Lsn> for String {
    fn from(l: Lsn) -> Self {
        l.to_string()
    }
}

impl TryFrom<String> for Lsn {
    type Error = ParseLsnError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Self(v)
    }
}

impl From<Lsn> for u64 {
    fn from(l: Lsn) -> Self {
        l.0
    }
}

macro_rules! u32_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[cfg_attr(feature = "serde", serde(transparent))]
        pub struct $name(pub u32);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<u32> for $name {
            fn from(v: u32) -> Self {
                Self(v)
            }
        }

        impl From<$name> for u32 {
            fn from(v: $name) -> Self {
                v.0
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

u32_newtype!(
    /// A PostgreSQL object identifier (type, relation, ...).
    Oid
);
u32_newtype!(
    /// A 32-bit transaction id.
    Xid
);
u32_newtype!(
    /// A WAL timeline id.
    TimelineId
);

impl Oid {
    /// The invalid OID 0.
    pub const INVALID: Self = Self(0);
}

impl Xid {
    /// The invalid transaction id 0.
    pub const INVALID: Self = Self(0);
}

/// Microseconds between 1970-01-01 and 2000-01-01, PostgreSQL's epoch.
pub(crate) const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A PostgreSQL timestamp: microseconds since 2000-01-01 00:00:00 UTC.
///
/// `i64::MAX` and `i64::MIN` are PostgreSQL's `infinity` and `-infinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// PostgreSQL's `infinity`.
    pub const INFINITY: Self = Self(i64::MAX);
    /// PostgreSQL's `-infinity`.
    pub const NEG_INFINITY: Self = Self(i64::MIN);
    /// 2000-01-01 00:00:00 UTC.
    pub const PG_EPOCH: Self = Self(0);

    /// From microseconds since the Unix epoch; `None` if out of range.
    pub fn from_unix_micros(us: i64) -> Option<Self> {
        us.checked_sub(PG_EPOCH_OFFSET_MICROS).map(Self)
    }

    /// Microseconds since the Unix epoch; `None` if out of range.
    pub fn to_unix_micros(self) -> Option<i64> {
        self.0.checked_add(PG_EPOCH_OFFSET_MICROS)
    }

    /// True for `infinity` or `-infinity`.
    pub fn is_infinite(self) -> bool {
        self == Self::INFINITY || self == Self::NEG_INFINITY
    }

    /// Converts a [`SystemTime`] (for example one the caller read from its clock).
    pub fn from_system_time(t: SystemTime) -> Option<Self> {
        let us = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).ok()?,
            Err(e) => i64::try_from(e.duration().as_micros())
                .ok()?
                .checked_neg()?,
        };
        Self::from_unix_micros(us)
    }

    /// Converts to a [`SystemTime`]; `None` for infinities or out-of-range values.
    pub fn to_system_time(self) -> Option<SystemTime> {
        if self.is_infinite() {
            return None;
        }
        let us = self.to_unix_micros()?;
        let d = Duration::from_micros(us.unsigned_abs());
        if us >= 0 {
            UNIX_EPOCH.checked_add(d)
        } else {
            UNIX_EPOCH.checked_sub(d)
        }
    }
}

impl fmt::Display for PgTimestamp {
    /// ISO 8601 in UTC with microseconds, e.g. `2024-03-01T12:00:00.000001Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::INFINITY {
            return f.write_str("infinity");
        }
        if *self == Self::NEG_INFINITY {
            return f.write_str("-infinity");
        }
        let days = self.0.div_euclid(86_400_000_000);
        let rem = self.0.rem_euclid(86_400_000_000);
        let (y, m, d) = civil_from_pg_days(days);
        let secs = rem / 1_000_000;
        let us = rem % 1_000_000;
        write!(
            f,
            "{}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            FmtYear(y),
            m,
            d,
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            us
        )
    }
}

/// Prints a proleptic Gregorian year with at least four digits (negative for BC-1).
struct FmtYear(i64);

impl fmt::Display for FmtYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            write!(f, "-{:04}", -self.0)
        } else {
            write!(f, "{:04}", self.0)
        }
    }
}

/// Converts days since 2000-01-01 into a proleptic Gregorian (year, month, day), where year 0
/// is 1 BC. Valid over the whole `i64` day range that PostgreSQL values can produce.
pub(crate) fn civil_from_pg_days(days: i64) -> (i64, u32, u32) {
    // Shift to days since 0000-03-01 (Howard Hinnant's civil_from_days, epoch moved).
    let z = days + 730_425; // days from 0000-03-01 to 2000-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    // d in 1..=31 and m in 1..=12 by construction.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// Converts a proleptic Gregorian date (year 0 = 1 BC) into days since 2000-01-01.
pub(crate) fn pg_days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 730_425
}

/// A five-character SQLSTATE error code, e.g. `42704`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SqlState([u8; 5]);

impl SqlState {
    /// `00000` successful_completion.
    pub const SUCCESSFUL_COMPLETION: Self = Self(*b"00000");
    /// `08006` connection_failure.
    pub const CONNECTION_FAILURE: Self = Self(*b"08006");
    /// `08P01` protocol_violation.
    pub const PROTOCOL_VIOLATION: Self = Self(*b"08P01");
    /// `28000` invalid_authorization_specification.
    pub const INVALID_AUTHORIZATION_SPECIFICATION: Self = Self(*b"28000");
    /// `28P01` invalid_password.
    pub const INVALID_PASSWORD: Self = Self(*b"28P01");
    /// `3D000` invalid_catalog_name (database does not exist).
    pub const INVALID_CATALOG_NAME: Self = Self(*b"3D000");
    /// `42501` insufficient_privilege.
    pub const INSUFFICIENT_PRIVILEGE: Self = Self(*b"42501");
    /// `42601` syntax_error.
    pub const SYNTAX_ERROR: Self = Self(*b"42601");
    /// `42704` undefined_object (e.g. a replication slot that does not exist).
    pub const UNDEFINED_OBJECT: Self = Self(*b"42704");
    /// `42710` duplicate_object (e.g. a replication slot that already exists).
    pub const DUPLICATE_OBJECT: Self = Self(*b"42710");
    /// `55000` object_not_in_prerequisite_state (e.g. wal_level too low).
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: Self = Self(*b"55000");
    /// `55006` object_in_use (e.g. a slot active for another process).
    pub const OBJECT_IN_USE: Self = Self(*b"55006");
    /// `57014` query_canceled.
    pub const QUERY_CANCELED: Self = Self(*b"57014");
    /// `57P01` admin_shutdown.
    pub const ADMIN_SHUTDOWN: Self = Self(*b"57P01");
    /// `57P02` crash_shutdown.
    pub const CRASH_SHUTDOWN: Self = Self(*b"57P02");
    /// `57P03` cannot_connect_now.
    pub const CANNOT_CONNECT_NOW: Self = Self(*b"57P03");
    /// `53300` too_many_connections.
    pub const TOO_MANY_CONNECTIONS: Self = Self(*b"53300");

    /// From five ASCII digits or upper-case letters; `None` otherwise.
    pub fn from_code(code: &[u8]) -> Option<Self> {
        let arr: [u8; 5] = code.try_into().ok()?;
        arr.iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            .then_some(Self(arr))
    }

    /// The code as text.
    pub fn code(&self) -> &str {
        // Invariant: constructed only from ASCII bytes.
        std::str::from_utf8(&self.0).unwrap_or("?????")
    }

    /// The two-character class, e.g. `08` for connection exceptions.
    pub fn class(&self) -> &str {
        self.code().get(0..2).unwrap_or("??")
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlState({})", self.code())
    }
}

impl FromStr for SqlState {
    type Err = ParseSqlStateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_code(s.as_bytes()).ok_or_else(|| ParseSqlStateError(s.to_owned()))
    }
}

/// The error returned for text that is not a SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SQLSTATE {0:?}")]
pub struct ParseSqlStateError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        for s in ["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/1"] {
            assert_eq!(s.parse::<Lsn>().unwrap().to_string(), s);
        }
        assert_eq!("16/B374D848".parse::<Lsn>().unwrap().0, 0x16_B374_D848);
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1/2/3",
            "G/1",
            "123456789/0",
            "+1/0",
            "1 /0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn lsn_segments() {
        let seg = 16 * 1024 * 1024;
        let l: Lsn = "1/2000010".parse().unwrap();
        assert_eq!(
            l.wal_file_name(TimelineId(1), seg).unwrap(),
            "000000010000000100000002"
        );
        assert_eq!(l.segment_offset(seg), Some(0x10));
        let (tli, start) = Lsn::from_wal_file_name("000000020000000100000002", seg).unwrap();
        assert_eq!((tli, start), (TimelineId(2), "1/2000000".parse().unwrap()));
        assert_eq!(l.segment_start(seg), Some(start));
        assert_eq!(l.segment_number(3), None);
        assert!(Lsn::from_wal_file_name("0000000200000001000001FF", seg).is_none());
    }

    #[test]
    fn timestamps() {
        assert_eq!(PgTimestamp(0).to_string(), "2000-01-01T00:00:00.000000Z");
        assert_eq!(PgTimestamp(-1).to_string(), "1999-12-31T23:59:59.999999Z");
        assert_eq!(PgTimestamp::INFINITY.to_string(), "infinity");
        let t = PgTimestamp::from_unix_micros(1_700_000_000_123_456).unwrap();
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.123456Z");
        assert_eq!(
            PgTimestamp::from_system_time(t.to_system_time().unwrap()),
            Some(t)
        );
        for days in [-1_000_000, -730_425, -1, 0, 1, 59, 60, 366, 2_000_000] {
            let (y, m, d) = civil_from_pg_days(days);
            assert_eq!(pg_days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_pg_days(0), (2000, 1, 1));
        assert_eq!(civil_from_pg_days(59), (2000, 2, 29));
    }

    #[test]
    fn sqlstate() {
        let s: SqlState = "42704".parse().unwrap();
        assert_eq!(s, SqlState::UNDEFINED_OBJECT);
        assert_eq!(s.class(), "42");
        assert!("4270".parse::<SqlState>().is_err());
        assert!("4270a".parse::<SqlState>().is_err());
    }
}
