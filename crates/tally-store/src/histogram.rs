//! Duration histograms for rollups.
//!
//! Fixed bucket bounds, the same everywhere, so that histograms from different days,
//! rollups and raw events add up bucket by bucket. Percentiles read from them are
//! estimates within one bucket; totals, counts, minimum and maximum stay exact.

/// Upper bounds (inclusive, milliseconds) of every bucket but the last, which is open.
/// Roughly 1.5x apart, so an interpolated percentile is within about 25% of the truth.
pub const BUCKET_BOUNDS_MS: [u64; 30] = [
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1_000, 1_500, 2_000, 3_000, 5_000, 7_000,
    10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 300_000,
];

/// Number of buckets, including the open last one.
pub const BUCKETS: usize = BUCKET_BOUNDS_MS.len() + 1;

/// The bucket a duration falls in.
pub fn bucket_of(duration_ms: u64) -> usize {
    BUCKET_BOUNDS_MS.partition_point(|bound| *bound < duration_ms)
}

/// Counts of durations per bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Histogram {
    /// Count per bucket; bucket `i` holds durations up to `BUCKET_BOUNDS_MS[i]`.
    pub counts: [u64; BUCKETS],
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, duration_ms: u64) {
        self.counts[bucket_of(duration_ms)] += 1;
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
    }

    /// How many durations were counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Estimates quantile `q` (0..=1): finds the bucket holding it and interpolates
    /// linearly inside it, clamped to the exact `min_ms..=max_ms` seen. `None` when empty.
    pub fn quantile(&self, q: f64, min_ms: u64, max_ms: u64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (index, count) in self.counts.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            if (seen + count) as f64 >= rank {
                let lower = if index == 0 { 0 } else { BUCKET_BOUNDS_MS[index - 1] };
                let upper = BUCKET_BOUNDS_MS.get(index).copied().unwrap_or(max_ms).max(lower);
                let within = (rank - seen as f64) / *count as f64;
                let estimate = lower as f64 + within * (upper - lower) as f64;
                return Some((estimate.round() as u64).clamp(min_ms, max_ms));
            }
            seen += count;
        }
        Some(max_ms)
    }

    /// The JSON array stored in the `histogram` column.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.counts[..]).unwrap_or_else(|_| "[]".to_owned())
    }

    /// Reads the `histogram` column.
    pub fn from_json(text: &str) -> Result<Histogram, crate::StoreError> {
        // The views read thousands of these per period; the column is always written by
        // `to_json` as plain integers, which this reads without a JSON parser. Anything
        // else (spaces, another number form, an error) goes through serde_json.
        if let Some(histogram) = Histogram::from_plain_json(text.as_bytes()) {
            return Ok(histogram);
        }
        let counts: Vec<u64> = serde_json::from_str(text)
            .map_err(|err| crate::StoreError::Invalid(format!("histogram {text:?}: {err}")))?;
        let counts: [u64; BUCKETS] = counts.try_into().map_err(|counts: Vec<u64>| {
            crate::StoreError::Invalid(format!("histogram has {} buckets, expected {BUCKETS}", counts.len()))
        })?;
        Ok(Histogram { counts })
    }

    /// `[c0,c1,...]` with exactly [`BUCKETS`] unsigned integers and nothing else, as
    /// `to_json` writes it; `None` for any other text.
    fn from_plain_json(text: &[u8]) -> Option<Histogram> {
        let inner = text.strip_prefix(b"[")?.strip_suffix(b"]")?;
        let mut counts = [0u64; BUCKETS];
        let mut bucket = 0;
        // Digits of the current count; a count of more than 19 digits may not fit.
        let mut digits = 0;
        for byte in inner {
            if byte.is_ascii_digit() {
                // JSON forbids leading zeros.
                if digits == 19 || (digits == 1 && counts[bucket] == 0) {
                    return None;
                }
                counts[bucket] = counts[bucket] * 10 + u64::from(byte - b'0');
                digits += 1;
            } else if *byte == b',' && digits > 0 && bucket + 1 < BUCKETS {
                bucket += 1;
                digits = 0;
            } else {
                return None;
            }
        }
        (bucket + 1 == BUCKETS && digits > 0).then_some(Histogram { counts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(2), 1);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(4), 3);
        assert_eq!(bucket_of(300_000), BUCKETS - 2);
        assert_eq!(bucket_of(300_001), BUCKETS - 1);
    }

    #[test]
    fn json_round_trip_and_quantiles() {
        let mut histogram = Histogram::default();
        for duration in [3, 4, 40, 400, 4_000, 90_000] {
            histogram.record(duration);
        }
        assert_eq!(Histogram::from_json(&histogram.to_json()).unwrap(), histogram);
        // The median of 3, 4, 40, 400, 4000, 90000 lies in the 30..=50 bucket.
        let median = histogram.quantile(0.5, 3, 90_000).unwrap();
        assert!((30..=50).contains(&median), "{median}");
        assert_eq!(histogram.quantile(1.0, 3, 90_000), Some(90_000));
        assert_eq!(histogram.quantile(0.0, 3, 90_000), Some(3));
        assert_eq!(Histogram::default().quantile(0.5, 0, 0), None);
        assert!(Histogram::from_json("[1,2]").is_err());
    }

    #[test]
    fn the_plain_reader_agrees_with_serde_json() {
        let mut histogram = Histogram::default();
        for (index, count) in histogram.counts.iter_mut().enumerate() {
            *count = (index as u64 * 7_919) % 1_000;
        }
        histogram.counts[BUCKETS - 1] = 9_999_999_999_999_999_999;
        let text = histogram.to_json();
        assert_eq!(Histogram::from_plain_json(text.as_bytes()), Some(histogram));
        assert_eq!(Histogram::from_json(&text).unwrap(), histogram);
        // Valid JSON in other forms is read by serde_json, and means the same.
        let spaced = text.replace(',', ", ");
        assert_eq!(Histogram::from_plain_json(spaced.as_bytes()), None);
        assert_eq!(Histogram::from_json(&spaced).unwrap(), histogram);
        let zeros = format!("[{}]", vec!["0"; BUCKETS].join(","));
        assert_eq!(Histogram::from_json(&zeros).unwrap(), Histogram::default());
        // Anything else is refused as before, naming what is wrong.
        let short = format!("[{}]", vec!["1"; BUCKETS - 1].join(","));
        let long = format!("[{}]", vec!["1"; BUCKETS + 1].join(","));
        for bad in [
            short.as_str(),
            long.as_str(),
            "",
            "[]",
            "[1,,2]",
            "[-1]",
            "[01]",
            "[18446744073709551616]",
            "{}",
        ] {
            assert_eq!(Histogram::from_plain_json(bad.as_bytes()), None, "{bad}");
            assert!(Histogram::from_json(bad).is_err(), "{bad}");
        }
    }
}
