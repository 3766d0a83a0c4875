//! Rollups: per hour, app, type, name, command, outcome and error category, the count
//! and duration statistics of events, with a duration histogram.
//!
//! Every batch adds its events to the rollups in the same transaction that stores them,
//! so the rollups always describe every event ever stored: stats read a few thousand
//! rollup rows instead of scanning raw events, and retention only has to delete raw
//! events, which cannot change a total.

use std::collections::HashMap;

use rusqlite::Transaction;

use crate::StoreError;
use crate::histogram::Histogram;

/// What a rollup row is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    /// `YYYY-MM-DDTHH`, UTC.
    pub hour: String,
    /// The app.
    pub app: String,
    /// The event type.
    pub kind: String,
    /// The event name.
    pub name: String,
    /// The command, `""` when none.
    pub command: String,
    /// 1 success, 0 failure, -1 not reported.
    pub success: i64,
    /// The error category, `""` when none.
    pub error_category: String,
}

impl RollupKey {
    /// Reads a key from seven columns starting at `first`, in the order hour, app, type,
    /// name, command, success, error category.
    pub(crate) fn from_row_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RollupKey> {
        Ok(RollupKey {
            hour: row.get(first)?,
            app: row.get(first + 1)?,
            kind: row.get(first + 2)?,
            name: row.get(first + 3)?,
            command: row.get(first + 4)?,
            success: row.get(first + 5)?,
            error_category: row.get(first + 6)?,
        })
    }

    /// The key an event is counted under.
    pub fn of(event: &tally_core::Event, ts: &str) -> RollupKey {
        RollupKey {
            hour: ts.get(..13).unwrap_or(ts).to_owned(),
            app: event.app.clone(),
            kind: event.kind.clone(),
            name: event.name.clone(),
            command: event.command.clone().unwrap_or_default(),
            success: event.success.map_or(-1, i64::from),
            error_category: event.error_category.clone().unwrap_or_default(),
        }
    }
}

/// Counts and duration statistics of the events under one key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rollup {
    /// Events.
    pub count: u64,
    /// Events that reported a duration.
    pub duration_count: u64,
    /// Sum of reported durations.
    pub duration_total_ms: u64,
    /// Shortest reported duration.
    pub duration_min_ms: Option<u64>,
    /// Longest reported duration.
    pub duration_max_ms: Option<u64>,
    /// Reported durations per bucket.
    pub histogram: Histogram,
}

impl Rollup {
    /// Reads a rollup from six columns starting at `first`, in the order count,
    /// duration_count, duration_total_ms, duration_min_ms, duration_max_ms, histogram.
    pub(crate) fn from_row_at(row: &rusqlite::Row<'_>, first: usize) -> Result<Rollup, StoreError> {
        Ok(Rollup {
            count: row.get::<_, i64>(first)? as u64,
            duration_count: row.get::<_, i64>(first + 1)? as u64,
            duration_total_ms: row.get::<_, i64>(first + 2)? as u64,
            duration_min_ms: row.get::<_, Option<i64>>(first + 3)?.map(|v| v as u64),
            duration_max_ms: row.get::<_, Option<i64>>(first + 4)?.map(|v| v as u64),
            histogram: Histogram::from_json(&row.get::<_, String>(first + 5)?)?,
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

fn min_some(a: Option<u64>, b: Option<u64>, pick: fn(u64, u64) -> u64) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

/// Adds `rollups` to the `metrics` table inside `tx`.
pub(crate) fn add_rollups(tx: &Transaction<'_>, rollups: &HashMap<RollupKey, Rollup>) -> Result<(), StoreError> {
    let mut select = tx.prepare_cached(
        "SELECT count, duration_count, duration_total_ms, duration_min_ms, duration_max_ms, histogram \
         FROM metrics WHERE hour = ?1 AND app = ?2 AND type = ?3 AND name = ?4 AND command = ?5 AND success = ?6 \
         AND error_category = ?7",
    )?;
    let mut write = tx.prepare_cached(
        "INSERT OR REPLACE INTO metrics (hour, app, type, name, command, success, error_category, count, \
         duration_count, duration_total_ms, duration_min_ms, duration_max_ms, histogram) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for (key, rollup) in rollups {
        let params = (
            &key.hour,
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
            key.hour,
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
    /// Every rollup row whose hour overlaps `range`, in key order.
    pub fn rollups(&self, range: &crate::read::EventRange) -> Result<Vec<(RollupKey, Rollup)>, StoreError> {
        let from = range.since.map(|ts| tally_core::time::format(ts)[..13].to_owned());
        let to = range.until.map(|ts| {
            let last = ts.checked_sub(jiff::Span::new().milliseconds(1)).unwrap_or(ts);
            let next = last.checked_add(jiff::Span::new().hours(1)).unwrap_or(last);
            tally_core::time::format(next)[..13].to_owned()
        });
        let mut statement = self.conn.prepare(
            "SELECT hour, app, type, name, command, success, error_category, count, duration_count, \
             duration_total_ms, duration_min_ms, duration_max_ms, histogram FROM metrics \
             WHERE (?1 IS NULL OR hour >= ?1) AND (?2 IS NULL OR hour < ?2) \
             ORDER BY hour, app, type, name, command, success, error_category",
        )?;
        let mut rows = statement.query((from, to))?;
        let mut rollups = Vec::new();
        while let Some(row) = rows.next()? {
            let key = RollupKey::from_row_at(row, 0)?;
            rollups.push((key, Rollup::from_row_at(row, 7)?));
        }
        Ok(rollups)
    }
}
