//! Rollups: per hour, app, type, name, command, outcome and error category, the count
//! and duration statistics of events, with a duration histogram.
//!
//! Every batch adds its events to the rollups in the same transaction that stores them,
//! so the rollups always describe every event ever stored: stats read a few thousand
//! rollup rows instead of scanning raw events, and retention only has to delete raw
//! events, which cannot change a total.

use std::collections::BTreeMap;

use rusqlite::Transaction;
use tally_core::Event;
use tally_core::time::{HourKey, Period};

use crate::StoreError;
use crate::histogram::Histogram;

/// What a rollup row is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    /// The UTC hour of the events.
    pub hour: HourKey,
    /// The app that recorded the events (the collector holds many; a local store one).
    pub app: String,
    /// The event type (`command`, `feature`, `error`, ...).
    pub kind: String,
    /// The event name within its type (`command_executed`).
    pub name: String,
    /// `""` when the events had none.
    pub command: String,
    /// 1 success, 0 failure, -1 not reported.
    pub success: i64,
    /// `""` when the events had none.
    pub error_category: String,
}

/// Reads an `hour` column.
pub(crate) fn hour_at(row: &rusqlite::Row<'_>, index: usize) -> Result<HourKey, StoreError> {
    let text: String = row.get(index)?;
    text.parse()
        .map_err(|err: tally_core::time::InvalidHour| StoreError::Invalid(err.to_string()))
}

impl RollupKey {
    /// Reads a key from seven columns starting at `first`, in the order hour, app, type,
    /// name, command, success, error category.
    pub fn from_row_at(row: &rusqlite::Row<'_>, first: usize) -> Result<RollupKey, StoreError> {
        Ok(RollupKey {
            hour: hour_at(row, first)?,
            app: row.get(first + 1)?,
            kind: row.get(first + 2)?,
            name: row.get(first + 3)?,
            command: row.get(first + 4)?,
            success: row.get(first + 5)?,
            error_category: row.get(first + 6)?,
        })
    }

    /// The key an event is counted under.
    pub fn of(event: &Event) -> RollupKey {
        RollupKey {
            hour: HourKey::of(event.ts),
            app: event.app.clone(),
            kind: event.kind.clone(),
            name: event.name.clone(),
            command: event.command.clone().unwrap_or_default(),
            success: event.success.map_or(-1, i64::from),
            error_category: event.error_category.clone().unwrap_or_default(),
        }
    }
}

/// The rollups of `events`, one per key. Events are counted under keys borrowed from
/// them, so counting one allocates nothing; each distinct key (a batch has few) is made
/// into an owned [`RollupKey`] once.
pub fn rollups_of<'e>(events: impl IntoIterator<Item = &'e Event>) -> BTreeMap<RollupKey, Rollup> {
    let mut borrowed: BTreeMap<BorrowedKey<'_>, Rollup> = BTreeMap::new();
    for event in events {
        borrowed
            .entry(BorrowedKey::of(event))
            .or_default()
            .add(event.duration_ms);
    }
    borrowed
        .into_iter()
        .map(|(key, rollup)| (key.owned(), rollup))
        .collect()
}

/// [`RollupKey`] borrowed from an event.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct BorrowedKey<'a> {
    hour: HourKey,
    app: &'a str,
    kind: &'a str,
    name: &'a str,
    command: &'a str,
    success: i64,
    error_category: &'a str,
}

impl<'a> BorrowedKey<'a> {
    /// The key [`RollupKey::of`] gives, without allocating.
    fn of(event: &'a Event) -> BorrowedKey<'a> {
        BorrowedKey {
            hour: HourKey::of(event.ts),
            app: &event.app,
            kind: &event.kind,
            name: &event.name,
            command: event.command.as_deref().unwrap_or_default(),
            success: event.success.map_or(-1, i64::from),
            error_category: event.error_category.as_deref().unwrap_or_default(),
        }
    }

    fn owned(&self) -> RollupKey {
        RollupKey {
            hour: self.hour,
            app: self.app.to_owned(),
            kind: self.kind.to_owned(),
            name: self.name.to_owned(),
            command: self.command.to_owned(),
            success: self.success,
            error_category: self.error_category.to_owned(),
        }
    }
}

/// Counts and duration statistics of the events under one key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rollup {
    /// Events under the key.
    pub count: u64,
    /// Those of them that reported a duration; the duration fields describe only these.
    pub duration_count: u64,
    /// Sum of the reported durations; with `duration_count`, the mean.
    pub duration_total_ms: u64,
    /// Shortest reported duration, `None` while no event reported one.
    pub duration_min_ms: Option<u64>,
    /// Longest reported duration, `None` while no event reported one; with the minimum
    /// it bounds the quantiles the histogram estimates.
    pub duration_max_ms: Option<u64>,
    /// Reported durations per [`crate::histogram`] bucket.
    pub histogram: Histogram,
}

impl Rollup {
    /// Reads a rollup from six columns starting at `first`, in the order count,
    /// duration_count, duration_total_ms, duration_min_ms, duration_max_ms, histogram.
    pub fn from_row_at(row: &rusqlite::Row<'_>, first: usize) -> Result<Rollup, StoreError> {
        let duration_count = row.get::<_, i64>(first + 1)? as u64;
        // A row without durations has recorded nothing in its histogram ([`Rollup::add`]),
        // so its JSON is not parsed: most rows are of that kind, and reading a month of
        // them for the collector's dashboard spent much of its time here.
        let histogram = if duration_count == 0 {
            Histogram::default()
        } else {
            Histogram::from_json(row.get_ref(first + 5)?.as_str().map_err(rusqlite::Error::from)?)?
        };
        Ok(Rollup {
            count: row.get::<_, i64>(first)? as u64,
            duration_count,
            duration_total_ms: row.get::<_, i64>(first + 2)? as u64,
            duration_min_ms: row.get::<_, Option<i64>>(first + 3)?.map(|v| v as u64),
            duration_max_ms: row.get::<_, Option<i64>>(first + 4)?.map(|v| v as u64),
            histogram,
        })
    }

    /// Counts one event with an optional duration.
    pub fn add(&mut self, duration_ms: Option<u64>) {
        self.count += 1;
        if let Some(duration) = duration_ms {
            self.duration_count += 1;
            self.duration_total_ms += duration;
            self.duration_min_ms = Some(self.duration_min_ms.map_or(duration, |min| min.min(duration)));
            self.duration_max_ms = Some(self.duration_max_ms.map_or(duration, |max| max.max(duration)));
            self.histogram.record(duration);
        }
    }

    /// Adds another rollup of the same key.
    pub fn merge(&mut self, other: &Rollup) {
        self.count += other.count;
        self.duration_count += other.duration_count;
        self.duration_total_ms += other.duration_total_ms;
        self.duration_min_ms = min_some(self.duration_min_ms, other.duration_min_ms, u64::min);
        self.duration_max_ms = min_some(self.duration_max_ms, other.duration_max_ms, u64::max);
        self.histogram.merge(&other.histogram);
    }
}

/// [`Store::daily_rollups`]'s query. A histogram is only read from rows that recorded a
/// duration (the others hold zeros), bucket by bucket through SQLite's JSON operator.
fn daily_rollups_sql() -> String {
    let buckets: Vec<String> = (0..crate::histogram::BUCKETS)
        .map(|index| format!("coalesce(sum(histogram ->> {index}) FILTER (WHERE duration_count > 0), 0)"))
        .collect();
    format!(
        "SELECT substr(hour, 1, 10) || 'T00' AS day, app, type, name, command, success, error_category, \
         sum(count), sum(duration_count), sum(duration_total_ms), min(duration_min_ms), max(duration_max_ms), {} \
         FROM metrics WHERE hour >= ?1 AND hour < ?2 AND app = ?3 \
         GROUP BY day, type, name, command, success, error_category \
         ORDER BY day, type, name, command, success, error_category",
        buckets.join(", ")
    )
}

fn min_some(a: Option<u64>, b: Option<u64>, pick: fn(u64, u64) -> u64) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

/// Adds `rollups` to the `metrics` table inside `tx` (the collector adds counts-only
/// uploads through it too).
pub fn add_rollups(tx: &Transaction<'_>, rollups: &BTreeMap<RollupKey, Rollup>) -> Result<(), StoreError> {
    add_rollups_to(tx, "metrics", rollups)
}

/// Adds `rollups` to `table`, a table with the columns of `metrics` (the collector keeps
/// its per-day rollups in one).
pub fn add_rollups_to(
    tx: &Transaction<'_>,
    table: &'static str,
    rollups: &BTreeMap<RollupKey, Rollup>,
) -> Result<(), StoreError> {
    let mut select = tx.prepare_cached(&format!(
        "SELECT count, duration_count, duration_total_ms, duration_min_ms, duration_max_ms, histogram \
         FROM {table} WHERE hour = ?1 AND app = ?2 AND type = ?3 AND name = ?4 AND command = ?5 AND success = ?6 \
         AND error_category = ?7",
    ))?;
    let mut write = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {table} (hour, app, type, name, command, success, error_category, count, \
         duration_count, duration_total_ms, duration_min_ms, duration_max_ms, histogram) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    ))?;
    for (key, rollup) in rollups {
        let hour = key.hour.to_string();
        let params = (
            &hour,
            &key.app,
            &key.kind,
            &key.name,
            &key.command,
            key.success,
            &key.error_category,
        );
        let mut existing = select.query(params)?;
        let mut merged = match existing.next()? {
            Some(row) => Rollup::from_row_at(row, 0)?,
            None => Rollup::default(),
        };
        merged.merge(rollup);
        write.execute(rusqlite::params![
            hour,
            key.app,
            key.kind,
            key.name,
            key.command,
            key.success,
            key.error_category,
            merged.count as i64,
            merged.duration_count as i64,
            merged.duration_total_ms as i64,
            merged.duration_min_ms.map(|v| v as i64),
            merged.duration_max_ms.map(|v| v as i64),
            merged.histogram.to_json(),
        ])?;
    }
    Ok(())
}

impl crate::Store {
    /// Every rollup row whose hour overlaps `period`, of every app or only of `app`, in
    /// key order.
    pub fn rollups(&self, app: Option<&str>, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StoreError> {
        let (from, to) = period.hours();
        let mut statement = self.conn.prepare_cached(
            "SELECT hour, app, type, name, command, success, error_category, count, duration_count, \
             duration_total_ms, duration_min_ms, duration_max_ms, histogram FROM metrics \
             WHERE hour >= ?1 AND hour < ?2 AND (?3 IS NULL OR app = ?3) \
             ORDER BY hour, app, type, name, command, success, error_category",
        )?;
        let mut rows = statement.query((from.to_string(), to.to_string(), app))?;
        let mut rollups = Vec::new();
        while let Some(row) = rows.next()? {
            let key = RollupKey::from_row_at(row, 0)?;
            rollups.push((key, Rollup::from_row_at(row, 7)?));
        }
        Ok(rollups)
    }

    /// The rollup rows of `app` whose hour overlaps `period`, summed per UTC day: one row
    /// per day and key, keyed by the day's first hour, in key order. The same figures as
    /// adding up [`Store::rollups`] per day (counts and sums added, shortest and longest
    /// durations kept, histograms added bucket by bucket), but summed by SQLite, so a
    /// month of one app comes back as a few thousand rows instead of every hour's.
    pub fn daily_rollups(&self, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StoreError> {
        let (from, to) = period.hours();
        let mut statement = self.conn.prepare_cached(&daily_rollups_sql())?;
        let mut rows = statement.query((from.to_string(), to.to_string(), app))?;
        let mut rollups = Vec::new();
        while let Some(row) = rows.next()? {
            let key = RollupKey::from_row_at(row, 0)?;
            let mut histogram = Histogram::default();
            for (index, slot) in histogram.counts.iter_mut().enumerate() {
                *slot = row.get::<_, i64>(12 + index)?.max(0) as u64;
            }
            let rollup = Rollup {
                count: row.get::<_, i64>(7)?.max(0) as u64,
                duration_count: row.get::<_, i64>(8)?.max(0) as u64,
                duration_total_ms: row.get::<_, i64>(9)?.max(0) as u64,
                duration_min_ms: row.get::<_, Option<i64>>(10)?.map(|v| v.max(0) as u64),
                duration_max_ms: row.get::<_, Option<i64>>(11)?.map(|v| v.max(0) as u64),
                histogram,
            };
            rollups.push((key, rollup));
        }
        Ok(rollups)
    }

    /// For each app: how many events named `name` its rollups count from each of `from`
    /// on, in the same order. One aggregate read, for the collector's `/metrics`.
    pub fn named_counts(&self, name: &str, from: &[HourKey]) -> Result<Vec<(String, Vec<u64>)>, StoreError> {
        let Some(earliest) = from.iter().min() else {
            return Ok(Vec::new());
        };
        let sums: Vec<String> = (0..from.len())
            .map(|index| format!("coalesce(sum(CASE WHEN hour >= ?{} THEN count END), 0)", index + 3))
            .collect();
        let sql = format!(
            "SELECT app, {} FROM metrics WHERE name = ?1 AND hour >= ?2 GROUP BY app ORDER BY app",
            sums.join(", ")
        );
        let mut params = vec![name.to_owned(), earliest.to_string()];
        params.extend(from.iter().map(HourKey::to_string));
        let mut statement = self.conn.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(params.iter()), |row| {
            let app: String = row.get(0)?;
            let counts = (0..from.len())
                .map(|index| row.get::<_, i64>(index + 1).map(|count| count as u64))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((app, counts))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
