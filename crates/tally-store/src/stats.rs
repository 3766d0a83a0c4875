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

use crate::rollup::Rollup;
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
        let [summary] = self.summarize_periods([*period], tz)?;
        Ok(summary)
    }

    /// Summarises `period` and the period of the same length just before it (the
    /// comparison `insights` and `report` make), in one pass over their rollups: the
    /// same two summaries as two [`Store::summarize`] calls, for about the cost of one
    /// over twice the hours.
    pub fn summarize_with_previous(
        &self,
        period: &Period,
        tz: &TimeZone,
    ) -> Result<(PeriodSummary, PeriodSummary), StoreError> {
        let [current, previous] = self.summarize_periods([*period, period.previous()], tz)?;
        Ok((current, previous))
    }

    /// Summarises each of `periods` from one read of the rollup hours that span them
    /// all, so they should touch or overlap (an hour both overlap counts in both, as
    /// it would in two separate summaries).
    fn summarize_periods<const N: usize>(
        &self,
        periods: [Period; N],
        tz: &TimeZone,
    ) -> Result<[PeriodSummary; N], StoreError> {
        let mut builders = periods.map(|period| SummaryBuilder::new(&period));
        let from_hour = builders.iter().map(|builder| builder.hours.0).min();
        let to_hour = builders.iter().map(|builder| builder.hours.1).max();
        let (Some(from_hour), Some(to_hour)) = (from_hour, to_hour) else {
            return Ok(builders.map(SummaryBuilder::finish));
        };
        let mut statement = self.conn.prepare_cached(
            "SELECT hour, name, command, success, error_category, count, duration_count, duration_total_ms, \
             duration_min_ms, duration_max_ms, histogram FROM metrics WHERE hour >= ?1 AND hour < ?2",
        )?;
        let mut rows = statement.query((from_hour.to_string(), to_hour.to_string()))?;
        // The rows of one hour come together (the key starts with the hour), so the hour
        // and what it means locally are worked out once per hour rather than once per
        // row. Rows in any other order would still add up, only at more cost.
        let mut hour = String::new();
        while let Some(row) = rows.next()? {
            let text = text_at(row, 0)?;
            if hour != text {
                let key: HourKey = text
                    .parse()
                    .map_err(|err: tally_core::time::InvalidHour| StoreError::Invalid(err.to_string()))?;
                let local = LocalHour::of(key, tz);
                for builder in &mut builders {
                    builder.start_hour(key, &local);
                }
                text.clone_into(&mut hour);
            }
            let count = row.get::<_, i64>(5)? as u64;
            let name = text_at(row, 1)?;
            let rolled = if name == "command_executed" {
                let success = row.get(3)?;
                Some(CommandRow {
                    command: text_at(row, 2)?,
                    success,
                    // Only failures are counted per category.
                    category: if success == 0 { text_at(row, 4)? } else { "" },
                    durations: Rollup::from_row_at(row, 5)?,
                })
            } else {
                None
            };
            for builder in builders.iter_mut().filter(|builder| builder.in_hour) {
                builder.add(name, count, rolled.as_ref());
            }
        }
        for builder in &mut builders {
            builder.end_hour();
        }
        let mut summaries = builders.map(SummaryBuilder::finish);
        // One sessions query per period: a single query over both would visit the same
        // rows, and each is one range of the `started_at` index.
        for (summary, period) in summaries.iter_mut().zip(&periods) {
            let sessions = self.session_summary(None, period)?;
            summary.sessions = sessions.count;
            summary.avg_session_ms = sessions.avg_duration_ms.map(|ms| ms.round() as u64);
        }
        Ok(summaries)
    }

    /// The most recent `limit` commands run in `period`, oldest first, with their time
    /// (raw events only: finding repeated sequences needs the order).
    pub fn recent_commands(&self, period: &Period, limit: u64) -> Result<Vec<(Timestamp, String)>, StoreError> {
        // Unbounded ends are the extreme instants, outside every stored time, so the
        // plain range keeps the `event_rows_ts` index, which also holds each event's name
        // and command: the newest commands are read from the index alone. Newest first,
        // as the index is walked; turned around here rather than sorted again.
        let (from, to) = (crate::compact::millis(period.from), crate::compact::millis(period.to));
        let mut statement = self.conn.prepare_cached(
            "SELECT ts, (SELECT value FROM strings WHERE id = command) FROM event_rows \
             WHERE name = (SELECT id FROM strings WHERE value = 'command_executed') AND ts >= ?1 AND ts < ?2 \
             AND command IS NOT NULL ORDER BY ts DESC, seq DESC LIMIT ?3",
        )?;
        let mut rows = statement.query((from, to, limit as i64))?;
        let mut commands = Vec::new();
        while let Some(row) = rows.next()? {
            commands.push((crate::compact::timestamp(row.get(0)?)?, row.get(1)?));
        }
        commands.reverse();
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

    /// The most recent failed commands in `period`, newest first.
    pub fn recent_errors(&self, period: &Period, limit: u64) -> Result<Vec<RecentError>, StoreError> {
        // As in `recent_commands`, unbounded ends sort outside every stored time.
        let (from, to) = (crate::compact::millis(period.from), crate::compact::millis(period.to));
        let mut statement = self.conn.prepare_cached(
            "SELECT ts, coalesce((SELECT value FROM strings WHERE id = command), ''), \
             coalesce((SELECT value FROM strings WHERE id = error_category), 'unknown') FROM event_rows \
             WHERE name = (SELECT id FROM strings WHERE value = 'command_executed') AND success = 0 \
             AND ts >= ?1 AND ts < ?2 ORDER BY ts DESC, seq DESC LIMIT ?3",
        )?;
        let mut rows = statement.query((from, to, limit as i64))?;
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
        // Three queries, not one: alone, `count(*)` counts the pages of the smallest
        // index and `min`/`max` each read one end of `event_rows_ts`; together they made
        // SQLite read and compare every stored `ts` (at a million events, 1.3 billion
        // instructions against 11 million).
        let events: i64 = self
            .conn
            .query_row("SELECT count(*) FROM event_rows", [], |row| row.get(0))?;
        let end = |sql: &str| -> Result<Option<String>, StoreError> {
            let ms: Option<i64> = self.conn.query_row(sql, [], |row| row.get(0))?;
            ms.map(|ms| Ok(tally_core::time::format(crate::compact::timestamp(ms)?)))
                .transpose()
        };
        let oldest = end("SELECT min(ts) FROM event_rows")?;
        let newest = end("SELECT max(ts) FROM event_rows")?;
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

/// A text column, borrowed from the row rather than copied.
fn text_at<'r>(row: &'r rusqlite::Row<'_>, index: usize) -> Result<&'r str, StoreError> {
    Ok(row.get_ref(index)?.as_str().map_err(rusqlite::Error::from)?)
}

/// A rollup hour as the caller's time zone sees it.
#[derive(Debug, Clone)]
struct LocalHour {
    /// The local day it starts on (`YYYY-MM-DD`).
    day: String,
    /// The local hour of the day it starts at.
    hour_of_day: usize,
}

impl LocalHour {
    fn of(hour: HourKey, tz: &TimeZone) -> LocalHour {
        let zoned = hour.start().to_zoned(tz.clone());
        LocalHour {
            day: zoned.strftime("%Y-%m-%d").to_string(),
            hour_of_day: zoned.hour() as usize,
        }
    }
}

/// What one `command_executed` rollup row holds, read once for every summary it counts in.
struct CommandRow<'r> {
    command: &'r str,
    success: i64,
    category: &'r str,
    durations: Rollup,
}

/// Per command summaries, and where each is in the list. Rows of one command come
/// together (they differ only in outcome and category), so the last one found is tried
/// before the map.
#[derive(Default)]
struct Commands {
    list: Vec<CommandSummary>,
    index: HashMap<String, usize>,
    last: usize,
}

impl Commands {
    /// The summary of `command`, new if it is the first row of it.
    fn get(&mut self, command: &str) -> &mut CommandSummary {
        if self.list.get(self.last).is_none_or(|last| last.command != command) {
            self.last = match self.index.get(command) {
                Some(index) => *index,
                None => {
                    self.list.push(CommandSummary {
                        command: command.to_owned(),
                        ..CommandSummary::default()
                    });
                    self.index.insert(command.to_owned(), self.list.len() - 1);
                    self.list.len() - 1
                }
            };
        }
        &mut self.list[self.last]
    }
}

/// One period's summary while its rollup rows are read.
struct SummaryBuilder {
    /// The rollup hours the period overlaps, `[first, end)`.
    hours: (HourKey, HourKey),
    summary: PeriodSummary,
    commands: Commands,
    categories: HashMap<(String, String), u64>,
    /// Whether the hour being read lies in this period.
    in_hour: bool,
    /// The hour being read, where its figures go once it ends, and the figures so far:
    /// days and hours of the day are added to once per hour instead of once per row.
    local: Option<LocalHour>,
    hour_activity: DayActivity,
}

impl SummaryBuilder {
    fn new(period: &Period) -> SummaryBuilder {
        SummaryBuilder {
            hours: period.hours(),
            summary: PeriodSummary::default(),
            commands: Commands::default(),
            categories: HashMap::new(),
            in_hour: false,
            local: None,
            hour_activity: DayActivity::default(),
        }
    }

    /// Moves on to the rows of `hour`.
    fn start_hour(&mut self, hour: HourKey, local: &LocalHour) {
        self.end_hour();
        self.in_hour = self.hours.0 <= hour && hour < self.hours.1;
        if self.in_hour {
            self.local = Some(local.clone());
        }
    }

    /// Adds the hour just read to its local day and hour of the day.
    fn end_hour(&mut self) {
        let Some(local) = self.local.take() else {
            return;
        };
        let activity = std::mem::take(&mut self.hour_activity);
        let day = self.summary.by_day.entry(local.day).or_default();
        day.events += activity.events;
        day.commands += activity.commands;
        day.failures += activity.failures;
        self.summary.commands_by_hour[local.hour_of_day] += activity.commands;
    }

    /// Counts one rollup row of the current hour: `count` events named `name`, and for
    /// a command, what its row says about it.
    fn add(&mut self, name: &str, count: u64, command: Option<&CommandRow<'_>>) {
        self.summary.events += count;
        self.hour_activity.events += count;
        match name {
            "workspace_created" => self.summary.workspaces_created += count,
            "task_completed" => self.summary.tasks_completed += count,
            "error_occurred" => self.summary.errors += count,
            _ => {}
        }
        let Some(row) = command else {
            return;
        };
        let failures = if row.success == 0 { count } else { 0 };
        let with_outcome = if row.success >= 0 { count } else { 0 };
        self.hour_activity.commands += count;
        self.hour_activity.failures += failures;
        let per_command = self.commands.get(row.command);
        for entry in [&mut self.summary.commands, per_command] {
            entry.runs += count;
            entry.failures += failures;
            entry.with_outcome += with_outcome;
            entry.durations.merge(&row.durations);
        }
        if failures > 0 {
            let category = if row.category.is_empty() {
                "unknown"
            } else {
                row.category
            };
            *self
                .categories
                .entry((row.command.to_owned(), category.to_owned()))
                .or_default() += failures;
        }
    }

    /// The summary, sorted as the views show it (sessions are added by the caller).
    fn finish(mut self) -> PeriodSummary {
        self.end_hour();
        let mut summary = self.summary;
        summary.by_command = self.commands.list;
        summary
            .by_command
            .sort_by(|a, b| b.runs.cmp(&a.runs).then_with(|| a.command.cmp(&b.command)));
        summary.errors_by_category = self
            .categories
            .into_iter()
            .map(|((command, category), count)| (command, category, count))
            .collect();
        summary
            .errors_by_category
            .sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
        summary
    }
}
