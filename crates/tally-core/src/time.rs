//! Timestamps on the wire and in stores: RFC 3339, UTC, exactly three fractional digits
//! (`2026-11-22T01:02:03.456Z`). The fixed width makes the text form sort like the instant,
//! which the stores rely on for range queries over text columns.

use jiff::Timestamp;

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
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

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
