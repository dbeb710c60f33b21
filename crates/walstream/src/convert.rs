//! Conversions from [`Field`]s to the types of popular crates, behind cargo features.
//!
//! Each conversion is `TryFrom<&Field>`: NULL, an unchanged TOAST value, a value of another
//! PostgreSQL type, or a value the target cannot hold (an infinite date, `24:00:00`) is a
//! [`DeserializeError`].
//!
//! | feature | target | from |
//! |---|---|---|
//! | `chrono` | `NaiveDate`, `NaiveTime`, `NaiveDateTime`, `DateTime<Utc>` | `date`, `time`, `timestamp`, `timestamptz` |
//! | `time` | `Date`, `Time`, `PrimitiveDateTime`, `OffsetDateTime` | `date`, `time`, `timestamp`, `timestamptz` |
//! | `uuid` | `Uuid` | `uuid` |
//! | `rust_decimal` | `Decimal` | `numeric`, integers |
//!
//! With serde, chrono's, uuid's and rust_decimal's own `Deserialize` impls read the text
//! [`Row::deserialize`](crate::Row::deserialize) produces for these types (ISO 8601 dates and
//! times, hyphenated UUIDs, exact decimal text); for the time crate use
//! `#[serde(with = "time::serde::rfc3339")]` on `timestamptz` fields.
#[cfg(any(
    feature = "chrono",
    feature = "time",
    feature = "uuid",
    feature = "rust_decimal"
))]
use walstream_proto::Value;

#[cfg(any(
    feature = "chrono",
    feature = "time",
    feature = "uuid",
    feature = "rust_decimal"
))]
use crate::{DeserializeError, Field};

/// The value of a field, or an error for NULL and unchanged TOAST.
#[cfg(any(
    feature = "chrono",
    feature = "time",
    feature = "uuid",
    feature = "rust_decimal"
))]
fn value<'a>(f: &'a Field, target: &str) -> Result<&'a Value, DeserializeError> {
    match f {
        Field::Value(v) => Ok(v),
        Field::Null => Err(DeserializeError::new(format!(
            "cannot convert NULL to {target}"
        ))),
        Field::UnchangedToast => Err(DeserializeError::new(format!(
            "cannot convert an unchanged TOAST value (not sent by the server) to {target}"
        ))),
    }
}

#[cfg(any(feature = "chrono", feature = "time"))]
fn out_of_range(v: &Value, target: &str) -> DeserializeError {
    crate::de::mismatch(v, target, Some("out of range"))
}

#[cfg(any(
    feature = "chrono",
    feature = "time",
    feature = "uuid",
    feature = "rust_decimal"
))]
fn wrong_type(v: &Value, target: &str) -> DeserializeError {
    crate::de::mismatch(v, target, None)
}

/// `(year, month, day)` of a finite `date` value.
#[cfg(any(feature = "chrono", feature = "time"))]
fn ymd(v: &Value, target: &str) -> Result<(i32, u8, u8), DeserializeError> {
    let Value::Date(d) = v else {
        return Err(wrong_type(v, target));
    };
    let (y, m, day) = d.to_ymd().ok_or_else(|| out_of_range(v, target))?;
    let y = i32::try_from(y).map_err(|_| out_of_range(v, target))?;
    let m = u8::try_from(m).map_err(|_| out_of_range(v, target))?;
    let day = u8::try_from(day).map_err(|_| out_of_range(v, target))?;
    Ok((y, m, day))
}

/// Microseconds since the Unix epoch of a finite `timestamp` (`tz = false`) or
/// `timestamptz` (`tz = true`) value.
#[cfg(any(feature = "chrono", feature = "time"))]
fn unix_micros(v: &Value, tz: bool, target: &str) -> Result<i64, DeserializeError> {
    let ts = match (v, tz) {
        (Value::Timestamp(t), false) | (Value::TimestampTz(t), true) => *t,
        _ => return Err(wrong_type(v, target)),
    };
    if ts.is_infinite() {
        return Err(out_of_range(v, target));
    }
    ts.to_unix_micros().ok_or_else(|| out_of_range(v, target))
}

/// `(hour, minute, second, microsecond)` of a `time` value before 24:00:00.
#[cfg(any(feature = "chrono", feature = "time"))]
fn hmsu(v: &Value, target: &str) -> Result<(u32, u32, u32, u32), DeserializeError> {
    let Value::Time(t) = v else {
        return Err(wrong_type(v, target));
    };
    let us = u64::try_from(t.0).map_err(|_| out_of_range(v, target))?;
    let secs = us / 1_000_000;
    if secs >= 86_400 {
        return Err(out_of_range(v, target));
    }
    let part = |x: u64| u32::try_from(x).map_err(|_| out_of_range(v, target));
    Ok((
        part(secs / 3600)?,
        part(secs / 60 % 60)?,
        part(secs % 60)?,
        part(us % 1_000_000)?,
    ))
}

#[cfg(feature = "chrono")]
mod chrono_impls {
    use super::*;
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

    impl TryFrom<&Field> for NaiveDate {
        type Error = DeserializeError;
        fn try_from(f: &Field) -> Result<Self, Self::Error> {
            let v = value(f, "chrono::NaiveDate")?;
            let (y, m, d) = ymd(v, "chrono::NaiveDate")?;
            Self::from_ymd_opt(y, u32::from(m), u32::from(d))
                .ok_or_else(|| out_of_range(v, "chrono::NaiveDate"))
        }
    }

    impl TryFrom<&Field> for NaiveTime {
        type Error = DeserializeError;
        fn try_from(f: &Field) -> Result<Self, Self::Error> {
            let v = value(f, "chrono::NaiveTime")?;
            let (h, m, s, us) = hmsu(v, "chrono::NaiveTime")?;
            Self::from_hms_micro_opt(h, m, s, us)
                .ok_or_else(|| out_of_range(v, "chrono::NaiveTime"))
        }
    }

    impl TryFrom<&Field> for NaiveDateTime {
        type Error = DeserializeError;
        fn try_from(f: &Field) -> Result<Self, Self::Error> {
            let v = value(f, "chrono::NaiveDateTime")?;
            let us = unix_micros(v, false, "chrono::NaiveDateTime")?;
            DateTime::<Utc>::from_timestamp_micros(us)
                .map(|d| d.naive_utc())
                .ok_or_else(|| out_of_range(v, "chrono::NaiveDateTime"))
        }
    }

    impl TryFrom<&Field> for DateTime<Utc> {
        type Error = DeserializeError;
        fn try_from(f: &Field) -> Result<Self, Self::Error> {
            let v = value(f, "chrono::DateTime<Utc>")?;
            let us = unix_micros(v, true, "chrono::DateTime<Utc>")?;
            Self::from_timestamp_micros(us).ok_or_else(|| out_of_range(v, "chrono::DateTime<Utc>"))
        }
    }
}

#[cfg(feature = "time")]
mod time_impls {
    use super::*;
    use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

    impl TryFrom<&Field> for Date {
        type Error = DeserializeError;
        fn try_from(f: &Field) -> Result<Self, Self::Error> {
            let v = value(f, "time::Date")?;
            let (y, m, d) = ymd(v, "time::Date")?;
            let month = Month::try_from(m).map_err(|_| out_of_range(v, "time::Date"))?;
            Self::from_calendar_date(y, month, d).map_err(|_| out_of_range(v, "time::Date"))
        }
    }

    impl TryFrom<&Field> for Time {
        type Error = DeserializeError;
        fn try_from(f: &Field) -> Result<Self, Self::Error> {
            let v = value(f, "time::Time")?;
            let (h, m, s, us) = hmsu(v, "time::Time")?;
            let small = |x: u32| u8::try_from(x).map_err(|_| out_of_range(v, "time::Time"));
            Self::from_hms_micro(small(h)?, small(m)?, small(s)?, us)
                .map_err(|_| out_of_range(v, "time::Time"))
        }
    }

    fn odt(v: &Value, tz: bool, target: &str) -> Result<OffsetDateTime, DeserializeError> {
        let us = unix_micros(v, tz, target)?;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
            .map_err(|_| out_of_range(v, target))
    }

    impl TryFrom<&Field> for PrimitiveDateTime {
        type Error = DeserializeError;
        fn try_from(f: &Field) -> Result<Self, Self::Error> {
            let v = value(f, "time::PrimitiveDateTime")?;
            let t = odt(v, false, "time::PrimitiveDateTime")?;
            Ok(Self::new(t.date(), t.time()))
        }
    }

    impl TryFrom<&Field> for OffsetDateTime {
        type Error = DeserializeError;
        fn try_from(f: &Field) -> Result<Self, Self::Error> {
            let v = value(f, "time::OffsetDateTime")?;
            odt(v, true, "time::OffsetDateTime")
        }
    }
}

#[cfg(feature = "uuid")]
impl TryFrom<&Field> for uuid::Uuid {
    type Error = DeserializeError;
    fn try_from(f: &Field) -> Result<Self, Self::Error> {
        match value(f, "uuid::Uuid")? {
            Value::Uuid(u) => Ok(Self::from_bytes(u.0)),
            v => Err(wrong_type(v, "uuid::Uuid")),
        }
    }
}

#[cfg(feature = "rust_decimal")]
impl TryFrom<&Field> for rust_decimal::Decimal {
    type Error = DeserializeError;
    fn try_from(f: &Field) -> Result<Self, Self::Error> {
        let target = "rust_decimal::Decimal";
        let v = value(f, target)?;
        match v {
            Value::Numeric(n) => Self::from_str_exact(&n.to_string())
                .map_err(|e| crate::de::mismatch(v, target, Some(&e.to_string()))),
            Value::Int2(n) => Ok(Self::from(*n)),
            Value::Int4(n) => Ok(Self::from(*n)),
            Value::Int8(n) => Ok(Self::from(*n)),
            _ => Err(wrong_type(v, target)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use crate::row::tests::{relation, tuple};
    #[allow(unused_imports)]
    use crate::{Field, Row};

    #[allow(dead_code)]
    fn field(type_oid: u32, text: Option<&str>) -> Field {
        Row::new(relation(1, "t", &[("c", type_oid, false)]), tuple(&[text]))
            .value(0)
            .unwrap()
    }

    #[cfg(feature = "chrono")]
    #[test]
    fn chrono_conversions() {
        use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
        let d = NaiveDate::try_from(&field(1082, Some("2024-02-29"))).unwrap();
        assert_eq!(d.to_string(), "2024-02-29");
        let t = NaiveTime::try_from(&field(1083, Some("03:04:05.25"))).unwrap();
        assert_eq!(t.to_string(), "03:04:05.250");
        let ts = NaiveDateTime::try_from(&field(1114, Some("2024-01-02 03:04:05.5"))).unwrap();
        assert_eq!(ts.to_string(), "2024-01-02 03:04:05.500");
        let tz = DateTime::<Utc>::try_from(&field(1184, Some("2024-01-02 05:04:05+02"))).unwrap();
        assert_eq!(tz.to_rfc3339(), "2024-01-02T03:04:05+00:00");
        assert!(NaiveDate::try_from(&field(1082, Some("infinity"))).is_err());
        assert!(NaiveDate::try_from(&field(1082, None)).is_err());
        assert!(NaiveDate::try_from(&field(25, Some("2024-01-01"))).is_err());
        assert!(NaiveTime::try_from(&field(1083, Some("24:00:00"))).is_err());
    }

    #[cfg(feature = "time")]
    #[test]
    fn time_conversions() {
        use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};
        let d = Date::try_from(&field(1082, Some("2024-02-29"))).unwrap();
        assert_eq!(d.to_string(), "2024-02-29");
        let t = Time::try_from(&field(1083, Some("03:04:05.25"))).unwrap();
        assert_eq!(
            (t.hour(), t.minute(), t.second(), t.microsecond()),
            (3, 4, 5, 250_000)
        );
        let ts = PrimitiveDateTime::try_from(&field(1114, Some("2024-01-02 03:04:05"))).unwrap();
        assert_eq!((ts.year(), ts.hour()), (2024, 3));
        let tz = OffsetDateTime::try_from(&field(1184, Some("1970-01-01 00:00:01+00"))).unwrap();
        assert_eq!(tz.unix_timestamp(), 1);
        assert!(Date::try_from(&field(1082, Some("-infinity"))).is_err());
    }

    #[cfg(feature = "uuid")]
    #[test]
    fn uuid_conversion() {
        let u = uuid::Uuid::try_from(&field(2950, Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")))
            .unwrap();
        assert_eq!(u.to_string(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert!(uuid::Uuid::try_from(&field(25, Some("x"))).is_err());
    }

    #[cfg(feature = "rust_decimal")]
    #[test]
    fn decimal_conversion() {
        use rust_decimal::Decimal;
        let d = Decimal::try_from(&field(1700, Some("-12.340"))).unwrap();
        assert_eq!(d.to_string(), "-12.340");
        assert_eq!(
            Decimal::try_from(&field(20, Some("7"))).unwrap(),
            Decimal::from(7)
        );
        assert!(Decimal::try_from(&field(1700, Some("NaN"))).is_err());
    }
}
