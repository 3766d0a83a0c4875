//! Timestamps on the wire and in stores: RFC 3339, UTC, exactly three fractional digits
//! (`2026-11-22T01:02:03.456Z`). The fixed width makes the text form sort like the instant,
//! which the stores rely on for range queries over text columns.
//!
//! Two types carry time between layers so that no caller slices or compares text:
//! [`HourKey`], the UTC hour an event is counted under in the hourly rollups, and
//! [`Period`], a half-open range of instants. Their text forms exist only where a value
//! meets SQL or JSON.

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};

/// The current time, truncated to whole milliseconds.
pub fn now_millis() -> Timestamp {
    truncate_to_millis(Timestamp::now())
}

/// Drops everything below the millisecond, so that a timestamp survives a round trip
/// through [`format`] and [`parse`] unchanged.
pub fn truncate_to_millis(ts: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(ts.as_millisecond()).unwrap_or(ts)
}

/// Formats `ts` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format(ts: Timestamp) -> String {
    let mut text = String::with_capacity(24);
    // Writing to a `String` cannot fail.
    let _ = write_utc(&mut text, ts, Precision::Millisecond);
    text
}

/// How much of a UTC time [`write_utc`] writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Precision {
    /// `YYYY-MM-DDTHH`, an [`HourKey`].
    Hour,
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the wire form.
    Millisecond,
}

/// Writes `ts` in UTC digit by digit: every event serialized and every rollup row
/// written goes through here, and `strftime` would interpret its pattern each time.
/// Years outside 0000-9999 (which events never have) are left to `strftime`.
fn write_utc(out: &mut impl fmt::Write, ts: Timestamp, precision: Precision) -> fmt::Result {
    let time = jiff::tz::Offset::UTC.to_datetime(ts);
    let Ok(year) = u16::try_from(time.year()) else {
        return write_with_strftime(out, ts, precision);
    };
    if year > 9999 {
        return write_with_strftime(out, ts, precision);
    }
    let mut text = [0u8; 24];
    put_digits(&mut text[0..4], u32::from(year));
    text[4] = b'-';
    put_digits(&mut text[5..7], time.month() as u32);
    text[7] = b'-';
    put_digits(&mut text[8..10], time.day() as u32);
    text[10] = b'T';
    put_digits(&mut text[11..13], time.hour() as u32);
    let len = match precision {
        Precision::Hour => 13,
        Precision::Millisecond => {
            text[13] = b':';
            put_digits(&mut text[14..16], time.minute() as u32);
            text[16] = b':';
            put_digits(&mut text[17..19], time.second() as u32);
            text[19] = b'.';
            put_digits(&mut text[20..23], time.millisecond() as u32);
            text[23] = b'Z';
            24
        }
    };
    // Only ASCII digits and separators were written.
    out.write_str(std::str::from_utf8(&text[..len]).map_err(|_| fmt::Error)?)
}

fn write_with_strftime(out: &mut impl fmt::Write, ts: Timestamp, precision: Precision) -> fmt::Result {
    let pattern = match precision {
        Precision::Hour => "%Y-%m-%dT%H",
        Precision::Millisecond => "%Y-%m-%dT%H:%M:%S%.3fZ",
    };
    write!(out, "{}", ts.strftime(pattern))
}

/// `value`'s last `digits.len()` decimal digits, zero-padded.
fn put_digits(digits: &mut [u8], mut value: u32) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Parses any RFC 3339 timestamp and normalises it to UTC milliseconds.
pub fn parse(text: &str) -> Result<Timestamp, jiff::Error> {
    text.parse::<Timestamp>().map(truncate_to_millis)
}

/// Serde adapter for fields that hold a [`Timestamp`] in the wire form.
pub mod rfc3339_millis {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Writes the timestamp in the fixed-width wire form.
    pub fn serialize<S: Serializer>(ts: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format(*ts))
    }

    /// Reads any RFC 3339 timestamp, normalised to UTC milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        super::parse(&text).map_err(|err| {
            D::Error::custom(format_args!(
                "ts: must be an RFC 3339 timestamp such as 2026-11-22T01:02:03.456Z ({err})"
            ))
        })
    }
}

const SECONDS_PER_HOUR: i64 = 3_600;

/// A UTC hour: the instant at the start of the hour every rollup row is keyed by.
///
/// It orders like time. Its text form `YYYY-MM-DDTHH` (the first 13 characters of the
/// wire form, so it sorts like the hour) is what the stores keep in their `hour` columns;
/// [`fmt::Display`] writes it and [`FromStr`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourKey(Timestamp);

impl HourKey {
    /// The hour holding `ts`.
    pub fn of(ts: Timestamp) -> HourKey {
        let start = ts.as_second().div_euclid(SECONDS_PER_HOUR) * SECONDS_PER_HOUR;
        HourKey(Timestamp::from_second(start).unwrap_or(ts))
    }

    /// The first instant of the hour.
    pub fn start(self) -> Timestamp {
        self.0
    }

    /// The hour after this one (this one at the end of time).
    pub fn next(self) -> HourKey {
        self.0.checked_add(SignedDuration::from_hours(1)).map_or(self, HourKey)
    }
}

impl fmt::Display for HourKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_utc(f, self.0, Precision::Hour)
    }
}

/// Text that is not an hour in the form `YYYY-MM-DDTHH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hour: must be YYYY-MM-DDTHH in UTC (got {0:?})")]
pub struct InvalidHour(pub String);

impl FromStr for HourKey {
    type Err = InvalidHour;

    fn from_str(text: &str) -> Result<HourKey, InvalidHour> {
        let invalid = || InvalidHour(text.to_owned());
        if text.len() != 13 || text.as_bytes()[10] != b'T' {
            return Err(invalid());
        }
        let date: jiff::civil::Date = text[..10].parse().map_err(|_| invalid())?;
        let hour: i8 = text[11..].parse().map_err(|_| invalid())?;
        let time = jiff::civil::Time::new(hour, 0, 0, 0).map_err(|_| invalid())?;
        let start = date
            .to_datetime(time)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|_| invalid())?;
        Ok(HourKey(start.timestamp()))
    }
}

/// A half-open range of instants, `[from, to)`.
///
/// An end that is not bounded is [`Timestamp::MIN`] or [`Timestamp::MAX`]
/// ([`Period::ALL`], [`Period::starting`], [`Period::before`]); [`Period::text_bounds`]
/// gives such an end as `None`, so SQL leaves it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Inclusive.
    pub from: Timestamp,
    /// Exclusive.
    pub to: Timestamp,
}

impl Default for Period {
    /// Unbounded: [`Period::ALL`].
    fn default() -> Period {
        Period::ALL
    }
}

impl Period {
    /// Every instant.
    pub const ALL: Period = Period {
        from: Timestamp::MIN,
        to: Timestamp::MAX,
    };

    /// From `from` on, without end.
    pub fn starting(from: Timestamp) -> Period {
        Period { from, ..Period::ALL }
    }

    /// Everything before `to`.
    pub fn before(to: Timestamp) -> Period {
        Period { to, ..Period::ALL }
    }

    /// The `days` days up to `now`.
    pub fn last_days(now: Timestamp, days: i64) -> Period {
        Period {
            from: now
                .checked_sub(SignedDuration::from_hours(days.saturating_mul(24)))
                .unwrap_or(Timestamp::MIN),
            to: now,
        }
    }

    /// The period of the same length just before this one.
    pub fn previous(&self) -> Period {
        let length = self.to.duration_since(self.from);
        Period {
            from: self.from.checked_sub(length).unwrap_or(Timestamp::MIN),
            to: self.from,
        }
    }

    /// Whether `ts` lies inside.
    pub fn contains(&self, ts: Timestamp) -> bool {
        self.from <= ts && ts < self.to
    }

    /// The ends in the wire form, `None` for an end that is not bounded: what a range
    /// query over a text `ts` column binds.
    pub fn text_bounds(&self) -> (Option<String>, Option<String>) {
        (
            (self.from != Timestamp::MIN).then(|| format(self.from)),
            (self.to != Timestamp::MAX).then(|| format(self.to)),
        )
    }

    /// The rollup hours the period overlaps, as `[first, end)`: an hour counts as soon
    /// as any instant of it is inside.
    pub fn hours(&self) -> (HourKey, HourKey) {
        let last = self.to.checked_sub(SignedDuration::from_millis(1)).unwrap_or(self.to);
        (HourKey::of(self.from), HourKey::of(last).next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The digit-by-digit forms are what `strftime` writes, over every instant jiff
        /// can hold (years -9999 to 9999, the ones outside 0000-9999 through `strftime`).
        #[test]
        fn formatting_matches_strftime(
            second in Timestamp::MIN.as_second()..Timestamp::MAX.as_second(),
            milli in 0i64..1000,
        ) {
            let ts = Timestamp::from_millisecond(second * 1000 + milli).unwrap();
            proptest::prop_assert_eq!(format(ts), ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            let hour = HourKey::of(ts);
            proptest::prop_assert_eq!(hour.to_string(), hour.start().strftime("%Y-%m-%dT%H").to_string());
        }
    }

    #[test]
    fn formatting_keeps_the_edges_of_the_four_digit_years() {
        for text in [
            "0000-01-01T00:00:00.000Z",
            "0999-12-31T23:59:59.999Z",
            "9999-12-30T21:59:59.999Z",
        ] {
            assert_eq!(format(text.parse().unwrap()), text);
        }
        assert_eq!(
            format("1970-01-01T00:00:00.5Z".parse().unwrap()),
            "1970-01-01T00:00:00.500Z"
        );
    }

    #[test]
    fn hour_key_truncates_and_round_trips_its_text() {
        let ts: Timestamp = "2026-11-22T13:59:59.999Z".parse().unwrap();
        let hour = HourKey::of(ts);
        assert_eq!(hour.to_string(), "2026-11-22T13");
        assert_eq!(hour.start(), "2026-11-22T13:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!("2026-11-22T13".parse::<HourKey>().unwrap(), hour);
        assert_eq!(hour.next().to_string(), "2026-11-22T14");
        let before_epoch: Timestamp = "1969-12-31T23:30:00Z".parse().unwrap();
        assert_eq!(HourKey::of(before_epoch).to_string(), "1969-12-31T23");
        for bad in [
            "2026-11-22",
            "2026-11-22T24",
            "2026-11-22 13",
            "2026-13-01T00",
            "2026-11-22T1x",
        ] {
            assert!(bad.parse::<HourKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn period_hours_cover_every_hour_it_touches() {
        let at = |text: &str| text.parse::<Timestamp>().unwrap();
        let period = Period {
            from: at("2026-11-22T10:30:00Z"),
            to: at("2026-11-22T12:00:00Z"),
        };
        let (first, end) = period.hours();
        assert_eq!(
            (first.to_string(), end.to_string()),
            ("2026-11-22T10".into(), "2026-11-22T12".into())
        );
        let ragged = Period {
            to: at("2026-11-22T12:00:00.001Z"),
            ..period
        };
        assert_eq!(ragged.hours().1.to_string(), "2026-11-22T13");
        assert!(period.contains(period.from) && !period.contains(period.to));
        assert_eq!(Period::ALL.text_bounds(), (None, None));
        assert_eq!(
            Period::starting(period.from).text_bounds().0.as_deref(),
            Some("2026-11-22T10:30:00.000Z")
        );
    }

    #[test]
    fn format_is_fixed_width_utc_millis() {
        let ts: Timestamp = "2026-11-22T01:02:03.4567+01:00".parse().unwrap();
        assert_eq!(format(truncate_to_millis(ts)), "2026-11-22T00:02:03.456Z");
        let whole: Timestamp = "2026-11-22T01:02:03Z".parse().unwrap();
        assert_eq!(format(whole), "2026-11-22T01:02:03.000Z");
    }

    #[test]
    fn parse_round_trips_the_wire_form() {
        let ts = now_millis();
        assert_eq!(parse(&format(ts)).unwrap(), ts);
    }
}
