//! The queries behind `stats`, `insights`, `report` and the dashboard.
//!
//! Totals come from the hourly rollups, so a month costs a few thousand rows however
//! many events it holds. A period covers every rollup hour it overlaps; days and hours
//! of the day are grouped in the caller's time zone. Only the recent-commands and
//! recent-activity queries read raw events, each bounded by an index range and a limit.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tally_core::time::HourKey;
/// The views' periods are the workspace's one range type.
pub use tally_core::time::Period;

use crate::rollup::{Rollup, hour_at};
use crate::{Store, StoreError};

/// Runs, failures and durations of one command.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommandSummary {
    /// The subcommand path (`workspace create`); empty for all commands together.
    pub command: String,
    /// `command_executed` events.
    pub runs: u64,
    /// Runs that reported failure.
    pub failures: u64,
    /// Runs that reported success or failure.
    pub with_outcome: u64,
    /// The runs' durations, merged from their rollups; the quantiles read its histogram.
    pub durations: Rollup,
}

impl CommandSummary {
    /// Estimated median duration.
    pub fn p50_ms(&self) -> Option<u64> {
        self.quantile(0.5)
    }

    /// Estimated 95th percentile duration.
    pub fn p95_ms(&self) -> Option<u64> {
        self.quantile(0.95)
    }

    /// Estimated quantile `q` of the duration.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let durations = &self.durations;
        durations.histogram.quantile(
            q,
            durations.duration_min_ms.unwrap_or(0),
            durations.duration_max_ms.unwrap_or(0),
        )
    }

    /// Failures over runs that reported an outcome, 0 to 1.
    pub fn failure_rate(&self) -> f64 {
        if self.with_outcome == 0 {
            0.0
        } else {
            self.failures as f64 / self.with_outcome as f64
        }
    }
}

/// Activity on one local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayActivity {
    /// Events of every type recorded that day.
    pub events: u64,
    /// `command_executed` events.
    pub commands: u64,
    /// Failed commands.
    pub failures: u64,
}

/// Everything the summary views need about one period.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeriodSummary {
    /// Events of every type in the rollup hours the period overlaps.
    pub events: u64,
    /// `workspace_created` events.
    pub workspaces_created: u64,
    /// `task_completed` events.
    pub tasks_completed: u64,
    /// `error_occurred` events.
    pub errors: u64,
    /// All commands together.
    pub commands: CommandSummary,
    /// Sessions that started in the period.
    pub sessions: u64,
    /// Their mean duration, rounded; `None` when no session started.
    pub avg_session_ms: Option<u64>,
    /// Per command, most runs first.
    pub by_command: Vec<CommandSummary>,
    /// Failures per (command, error category), most first.
    pub errors_by_category: Vec<(String, String, u64)>,
    /// Per local day (`YYYY-MM-DD`).
    pub by_day: BTreeMap<String, DayActivity>,
    /// Commands per local hour of the day.
    pub commands_by_hour: [u64; 24],
}

impl PeriodSummary {
    /// Successful commands over commands that reported an outcome, 0 to 1.
    pub fn success_rate(&self) -> Option<f64> {
        (self.commands.with_outcome > 0).then(|| 1.0 - self.commands.failure_rate())
    }
}

/// One failed command, for the dashboard's recent errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentError {
    /// When it failed, RFC 3339 as stored.
    pub ts: String,
    /// The subcommand path; empty when the event named none.
    pub command: String,
    /// Its error category, `unknown` when the event reported none.
    pub category: String,
}

/// What `status` shows about the store itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreStatus {
    /// Raw events still stored (retention and the size cap delete them).
    pub events: u64,
    /// Events counted in rollups (every event ever stored and not purged).
    pub events_ever: u64,
    /// Rows of `sessions`: every session recorded since the store began or was purged.
    pub sessions: u64,
    /// Oldest raw event, RFC 3339.
    pub oldest: Option<String>,
    /// Newest raw event, RFC 3339.
    pub newest: Option<String>,
    /// Pages in use plus the WAL, in bytes: what the size cap measures.
    pub size_bytes: u64,
    /// Events the SDK dropped before they reached the store.
    pub drops: crate::DropCounts,
}

impl Store {
    /// Summarises `period`, grouping days and hours in `tz`.
    pub fn summarize(&self, period: &Period, tz: &TimeZone) -> Result<PeriodSummary, StoreError> {
        let (from_hour, to_hour) = period.hours();
        let mut summary = PeriodSummary::default();
        let mut commands: HashMap<String, CommandSummary> = HashMap::new();
        let mut categories: HashMap<(String, String), u64> = HashMap::new();
        // Local day and hour per rollup hour, computed once per distinct hour.
        let mut local: HashMap<HourKey, (String, usize)> = HashMap::new();
        let mut statement = self.conn.prepare_cached(
            "SELECT hour, name, command, success, error_category, count, duration_count, duration_total_ms, \
             duration_min_ms, duration_max_ms, histogram FROM metrics WHERE hour >= ?1 AND hour < ?2",
        )?;
        let mut rows = statement.query((from_hour.to_string(), to_hour.to_string()))?;
        while let Some(row) = rows.next()? {
            let hour = hour_at(row, 0)?;
            let name: String = row.get(1)?;
            let count = row.get::<_, i64>(5)? as u64;
            let (day, hour_of_day) = match local.get(&hour) {
                Some(found) => found.clone(),
                None => {
                    let computed = local_day_and_hour(hour, tz);
                    local.insert(hour, computed.clone());
                    computed
                }
            };
            summary.events += count;
            let activity = summary.by_day.entry(day).or_default();
            activity.events += count;
            match name.as_str() {
                "workspace_created" => summary.workspaces_created += count,
                "task_completed" => summary.tasks_completed += count,
                "error_occurred" => summary.errors += count,
                "command_executed" => {
                    let command: String = row.get(2)?;
                    let success: i64 = row.get(3)?;
                    let category: String = row.get(4)?;
                    let durations = Rollup::from_row_at(row, 5)?;
                    let failures = if success == 0 { count } else { 0 };
                    let with_outcome = if success >= 0 { count } else { 0 };
                    activity.commands += count;
                    activity.failures += failures;
                    summary.commands_by_hour[hour_of_day] += count;
                    for entry in [
                        &mut summary.commands,
                        commands.entry(command.clone()).or_insert_with(|| CommandSummary {
                            command: command.clone(),
                            ..CommandSummary::default()
                        }),
                    ] {
                        entry.runs += count;
                        entry.failures += failures;
                        entry.with_outcome += with_outcome;
                        entry.durations.merge(&durations);
                    }
                    if failures > 0 {
                        let category = if category.is_empty() {
                            "unknown".to_owned()
                        } else {
                            category
                        };
                        *categories.entry((command, category)).or_default() += failures;
                    }
                }
                _ => {}
            }
        }
        summary.by_command = commands.into_values().collect();
        summary
            .by_command
            .sort_by(|a, b| b.runs.cmp(&a.runs).then_with(|| a.command.cmp(&b.command)));
        summary.errors_by_category = categories
            .into_iter()
            .map(|((command, category), count)| (command, category, count))
            .collect();
        summary
            .errors_by_category
            .sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
        let sessions = self.session_summary(None, period)?;
        summary.sessions = sessions.count;
        summary.avg_session_ms = sessions.avg_duration_ms.map(|ms| ms.round() as u64);
        Ok(summary)
    }

    /// The most recent `limit` commands run in `period`, oldest first, with their time
    /// (raw events only: finding repeated sequences needs the order).
    pub fn recent_commands(&self, period: &Period, limit: u64) -> Result<Vec<(Timestamp, String)>, StoreError> {
        // Unbounded ends are the extreme instants, outside every stored time, so the
        // plain range keeps the `event_rows_ts` index, which also holds each event's name
        // and command: the newest commands are read from the index alone.
        let (from, to) = (crate::compact::millis(period.from), crate::compact::millis(period.to));
        let mut statement = self.conn.prepare_cached(
            "SELECT ts, (SELECT value FROM strings WHERE id = command) FROM (SELECT seq, command, ts FROM event_rows \
             WHERE name = (SELECT id FROM strings WHERE value = 'command_executed') AND ts >= ?1 AND ts < ?2 \
             AND command IS NOT NULL ORDER BY ts DESC, seq DESC LIMIT ?3) ORDER BY ts, seq",
        )?;
        let mut rows = statement.query((from, to, limit as i64))?;
        let mut commands = Vec::new();
        while let Some(row) = rows.next()? {
            commands.push((crate::compact::timestamp(row.get(0)?)?, row.get(1)?));
        }
        Ok(commands)
    }

    /// Raw events per minute since `since` (`YYYY-MM-DDTHH:MM` in UTC, count).
    pub fn events_per_minute(&self, since: Timestamp) -> Result<Vec<(String, u64)>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT ts / 60000 AS minute, count(*) FROM event_rows WHERE ts >= ?1 GROUP BY minute ORDER BY minute",
        )?;
        let mut rows = statement.query([crate::compact::millis(since)])?;
        let mut minutes = Vec::new();
        while let Some(row) = rows.next()? {
            let start = crate::compact::timestamp(row.get::<_, i64>(0)? * 60_000)?;
            minutes.push((
                tally_core::time::format(start)[..16].to_owned(),
                row.get::<_, i64>(1)? as u64,
            ));
        }
        Ok(minutes)
    }

    /// The most recent failed commands.
    pub fn recent_errors(&self, limit: u64) -> Result<Vec<RecentError>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT ts, coalesce((SELECT value FROM strings WHERE id = command), ''), \
             coalesce((SELECT value FROM strings WHERE id = error_category), 'unknown') FROM event_rows \
             WHERE name = (SELECT id FROM strings WHERE value = 'command_executed') AND success = 0 \
             ORDER BY ts DESC, seq DESC LIMIT ?1",
        )?;
        let mut rows = statement.query([limit as i64])?;
        let mut errors = Vec::new();
        while let Some(row) = rows.next()? {
            errors.push(RecentError {
                ts: tally_core::time::format(crate::compact::timestamp(row.get(0)?)?),
                command: row.get(1)?,
                category: row.get(2)?,
            });
        }
        Ok(errors)
    }

    /// Counts and bounds for `status`.
    pub fn status(&self) -> Result<StoreStatus, StoreError> {
        let (events, oldest, newest): (i64, Option<i64>, Option<i64>) =
            self.conn
                .query_row("SELECT count(*), min(ts), max(ts) FROM event_rows", [], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
        let text = |ms: Option<i64>| -> Result<Option<String>, StoreError> {
            ms.map(|ms| Ok(tally_core::time::format(crate::compact::timestamp(ms)?)))
                .transpose()
        };
        let (oldest, newest) = (text(oldest)?, text(newest)?);
        let events_ever: i64 = self
            .conn
            .query_row("SELECT coalesce(sum(count), 0) FROM metrics", [], |row| row.get(0))?;
        let sessions: i64 = self
            .conn
            .query_row("SELECT count(*) FROM session_rows", [], |row| row.get(0))?;
        Ok(StoreStatus {
            events: events as u64,
            events_ever: events_ever as u64,
            sessions: sessions as u64,
            oldest,
            newest,
            size_bytes: self.size_bytes()?,
            drops: self.drop_counts()?,
        })
    }

    /// A number that changes whenever another connection commits (SQLite's
    /// `data_version`), so a live view can tell cheaply when to re-query.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("PRAGMA data_version", [], |row| row.get(0))?)
    }
}

fn local_day_and_hour(hour: HourKey, tz: &TimeZone) -> (String, usize) {
    let zoned = hour.start().to_zoned(tz.clone());
    (zoned.strftime("%Y-%m-%d").to_string(), zoned.hour() as usize)
}
