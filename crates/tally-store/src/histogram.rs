//! Duration histograms for rollups.
//!
//! Fixed bucket bounds, the same everywhere, so that histograms from different days,
//! rollups and raw events add up bucket by bucket. Percentiles read from them are
//! estimates within one bucket; totals, counts, minimum and maximum stay exact.

/// Upper bounds (inclusive, milliseconds) of every bucket but the last, which is open.
pub const BUCKET_BOUNDS_MS: [u64; 15] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
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

    /// The upper bound of the bucket holding quantile `q` (0..=1), capped by `max_ms`
    /// since the last bucket is open; `None` when empty.
    pub fn quantile_upper_bound(&self, q: f64, max_ms: u64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let bound = BUCKET_BOUNDS_MS.get(index).copied().unwrap_or(max_ms);
                return Some(bound.min(max_ms));
            }
        }
        Some(max_ms)
    }

    /// The JSON array stored in the `histogram` column.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.counts[..]).unwrap_or_else(|_| "[]".to_owned())
    }

    /// Reads the `histogram` column.
    pub fn from_json(text: &str) -> Result<Histogram, crate::StoreError> {
        let counts: Vec<u64> = serde_json::from_str(text)
            .map_err(|err| crate::StoreError::Invalid(format!("histogram {text:?}: {err}")))?;
        let counts: [u64; BUCKETS] = counts.try_into().map_err(|counts: Vec<u64>| {
            crate::StoreError::Invalid(format!("histogram has {} buckets, expected {BUCKETS}", counts.len()))
        })?;
        Ok(Histogram { counts })
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
        assert_eq!(bucket_of(60_000), BUCKETS - 2);
        assert_eq!(bucket_of(60_001), BUCKETS - 1);
    }

    #[test]
    fn json_round_trip_and_quantiles() {
        let mut histogram = Histogram::default();
        for duration in [3, 4, 40, 400, 4_000, 90_000] {
            histogram.record(duration);
        }
        assert_eq!(Histogram::from_json(&histogram.to_json()).unwrap(), histogram);
        assert_eq!(histogram.quantile_upper_bound(0.5, 90_000), Some(50));
        assert_eq!(histogram.quantile_upper_bound(1.0, 90_000), Some(90_000));
        assert!(Histogram::from_json("[1,2]").is_err());
    }
}
