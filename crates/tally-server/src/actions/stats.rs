//! `stats.get` (`GET /v1/stats`): chart-ready aggregates of one app, from rollups, sessions, the
//! installs table and the daily install activity; never from raw events.
//!
//! `active_installs` counts installs by their last sighting before now;
//! `active_installs_windows` counts, for the 24 hours, 7 days and 30 days before `to` and
//! for the equally long span before each, the installs active in it, from the daily
//! install activity at hour resolution (`storage::activity`), so the dashboard can show
//! each card's change. `previous` holds the totals of the equally long period before
//! `from`, which the cards compare with.
//!
//! The engagement score (0 to 100) is
//! `round(100 * (0.40 * stickiness + 0.25 * depth + 0.20 * reliability + 0.15 * breadth))`:
//! - stickiness: installs active in the last 24 hours over those active in the last 30 days;
//! - depth: events per session in the period, over 10, at most 1;
//! - reliability: 1 minus the error rate;
//! - breadth: distinct commands and features used in the period, over 5, at most 1.
//!
//! It is 0 for a period without events. `docs/API.md` repeats the formula.
//!
//! Command percentiles (`p50_ms`, `p95_ms`) come from the rollups' duration histograms
//! merged over the period, so they are estimates within one bucket (about 25 %).

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::actions::{ActionResult, parse_time, reject_nulls};
use crate::auth::check_reads;
use crate::error::AppError;
use crate::storage::{ApiKey, SessionSummary};
use crate::suppression::{OTHER, Suppression};
use tally_core::time::{HourKey, Period};
use tally_store::rollup::{Rollup, RollupKey};

/// Most points in one series.
const MAX_BUCKETS: i64 = 5_000;
/// Entries in the top lists.
const TOP: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsRequest {
    app: Option<String>,
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bucket {
    Hour,
    Day,
    Week,
}

impl Bucket {
    fn hours(self) -> i64 {
        match self {
            Bucket::Hour => 1,
            Bucket::Day => 24,
            Bucket::Week => 24 * 7,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
            Bucket::Week => "week",
        }
    }

    /// The start of the bucket holding `hour`, as a timestamp.
    fn start_of(self, hour: HourKey) -> Option<Timestamp> {
        let date: Date = hour.start().to_zoned(jiff::tz::TimeZone::UTC).date();
        let start = match self {
            Bucket::Hour => return Some(hour.start()),
            Bucket::Day => date.at(0, 0, 0, 0),
            Bucket::Week => {
                let back = i64::from(date.weekday().to_monday_zero_offset());
                date.checked_sub(back.days()).ok()?.at(0, 0, 0, 0)
            }
        };
        start
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|zoned| zoned.timestamp())
    }
}

#[derive(Default)]
struct Point {
    events: u64,
    sessions: u64,
    commands: u64,
    failures: u64,
    errors: u64,
}

/// A checked stats request: the period, its buckets, and the time it was asked.
struct Query {
    from: Timestamp,
    to: Timestamp,
    bucket: Bucket,
    now: Timestamp,
}

/// The rollups of a period folded into a series and the totals behind the top lists.
struct Fold {
    series: BTreeMap<Timestamp, Point>,
    top_events: BTreeMap<(String, String), u64>,
    features: BTreeMap<String, u64>,
    /// Per command: runs, failures, timed runs, total milliseconds of the timed runs.
    commands: BTreeMap<String, (u64, u64, u64, u64)>,
    /// Per command: its rollups merged over the period, for the duration percentiles.
    durations: BTreeMap<String, Rollup>,
    /// Error events per error category (`""` when none was given).
    error_categories: BTreeMap<String, u64>,
    events: u64,
    /// Events that say whether they succeeded; the error rate's denominator.
    with_outcome: u64,
    failures: u64,
    errors: u64,
}

/// The engagement score and its parts, as the module documentation defines them.
struct Engagement {
    error_rate: f64,
    stickiness: f64,
    depth: f64,
    reliability: f64,
    breadth: f64,
    score: u64,
}

/// `stats.get`.
pub async fn get(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let query = parse(key, payload, (state.clock)())?;
    let app = key.app.as_str();
    let period = Period {
        from: query.from,
        to: query.to,
    };
    let suppression = Suppression::load(state, Some(app)).await?;
    let names = |row: &RollupKey| Names::of(&suppression, app, row);
    let rows = read_rollups(state, app, query.bucket, &period).await?;
    let fold = Fold::of(&query, &rows, &names);
    let sessions = state.store.sessions(app, &period).await?;
    let previous = previous_period(state, app, &query, &names).await?;
    let since: Vec<Timestamp> = [1i64, 24, 24 * 7, 24 * 30]
        .iter()
        .map(|hours| query.now.checked_sub(hours.hours()).unwrap_or(query.now))
        .collect();
    let active = state
        .store
        .active_installs(&since)
        .await?
        .into_iter()
        .find(|(name, _)| name == app)
        .map(|(_, counts)| counts)
        .unwrap_or_else(|| vec![0; 4]);
    let windows = state.store.active_installs_in(app, &windows_before(query.to)).await?;
    let engagement = Engagement::score(&fold, &sessions, &active);
    let (first_day, after_last_day) = days_of(&query);
    let counts = state.store.counts_summary(app, first_day, after_last_day).await?;
    let mut answer = shape(app, &query, fold, &sessions, &active, &engagement);
    answer["active_installs_windows"] = windows_json(&windows);
    answer["previous"] = previous;
    answer["counts_only"] = json!({
        "present": counts.uploads > 0,
        "uploads": counts.uploads,
        "installs": counts.installs,
        "events": counts.events,
    });
    Ok((axum::http::StatusCode::OK, answer))
}

/// The rollup rows of `period` for charts by `bucket`: day and week buckets need no
/// hour, so they read rows already summed per day.
async fn read_rollups(
    state: &AppState,
    app: &str,
    bucket: Bucket,
    period: &Period,
) -> Result<Vec<(RollupKey, Rollup)>, AppError> {
    Ok(match bucket {
        Bucket::Hour => state.store.rollups(app, period).await?,
        Bucket::Day | Bucket::Week => state.store.daily_rollups(app, period).await?,
    })
}

/// `previous`: the totals of the equally long period just before `from`, which the
/// dashboard's cards compare with, so the page needs one request, not two.
async fn previous_period(
    state: &AppState,
    app: &str,
    query: &Query,
    names: &(dyn Fn(&RollupKey) -> Names + Sync),
) -> Result<Value, AppError> {
    let span = query.to.duration_since(query.from);
    // No earlier than the earliest time a request can name (year 0), which every
    // backend can store and compare.
    let earliest = tally_core::time::parse("0000-01-01T00:00:00Z").unwrap_or(Timestamp::UNIX_EPOCH);
    let before = Query {
        from: query.from.checked_sub(span).unwrap_or(earliest).max(earliest),
        to: query.from,
        bucket: query.bucket,
        now: query.now,
    };
    let period = Period {
        from: before.from,
        to: before.to,
    };
    let rows = read_rollups(state, app, before.bucket, &period).await?;
    let fold = Fold::of(&before, &rows, names);
    let sessions = state.store.sessions(app, &period).await?;
    let commands: u64 = fold.commands.values().map(|counts| counts.0).sum();
    let error_rate = if fold.with_outcome > 0 {
        fold.failures as f64 / fold.with_outcome as f64
    } else {
        0.0
    };
    Ok(json!({
        "from": tally_core::time::format(before.from),
        "to": tally_core::time::format(before.to),
        "totals": {
            "events": fold.events,
            "sessions": sessions.count,
            "errors": fold.errors,
            "commands": commands,
            "failures": fold.failures,
        },
        "sessions": {"count": sessions.count, "avg_duration_ms": sessions.avg_duration_ms.map(|ms| ms.round() as u64)},
        "error_rate": error_rate,
    }))
}

/// The spans of `active_installs_windows`, by name and length in hours.
const WINDOWS: [(&str, i64); 3] = [("24h", 24), ("7d", 24 * 7), ("30d", 24 * 30)];

/// For each of [`WINDOWS`]: the span of that length ending at `to`, then the equally
/// long span before it.
fn windows_before(to: Timestamp) -> Vec<Period> {
    let back = |hours: i64| to.checked_sub(hours.hours()).unwrap_or(Timestamp::MIN);
    WINDOWS
        .iter()
        .flat_map(|(_, hours)| {
            [
                Period { from: back(*hours), to },
                Period {
                    from: back(2 * hours),
                    to: back(*hours),
                },
            ]
        })
        .collect()
}

/// `active_installs_windows` from the counts of [`windows_before`]'s spans.
fn windows_json(counts: &[u64]) -> Value {
    let mut windows = serde_json::Map::new();
    for (index, (name, _)) in WINDOWS.iter().enumerate() {
        windows.insert(
            (*name).to_owned(),
            json!({
                "current": counts.get(2 * index).copied().unwrap_or(0),
                "previous": counts.get(2 * index + 1).copied().unwrap_or(0),
            }),
        );
    }
    Value::Object(windows)
}

/// Checks the payload: the key's app, a period `from < to` (default: the 7 days before
/// now) and a bucket size that keeps the series within [`MAX_BUCKETS`].
fn parse(key: &ApiKey, payload: Value, now: Timestamp) -> Result<Query, AppError> {
    reject_nulls(&payload)?;
    let request: StatsRequest =
        serde_json::from_value(payload).map_err(|err| AppError::bad_request("invalid_parameter", err.to_string()))?;
    check_reads(key, request.app.as_deref())?;
    let to = request
        .to
        .as_deref()
        .map(|text| parse_time("to", text))
        .transpose()?
        .unwrap_or(now);
    let from = match request.from.as_deref() {
        Some(text) => parse_time("from", text)?,
        None => to.checked_sub(168.hours()).unwrap_or(to),
    };
    if from >= to {
        return Err(AppError::bad_request("invalid_parameter", "from: must be before to"));
    }
    let bucket = match request.bucket.as_deref().unwrap_or("day") {
        "hour" => Bucket::Hour,
        "day" => Bucket::Day,
        "week" => Bucket::Week,
        other => {
            return Err(AppError::bad_request(
                "invalid_parameter",
                format!("bucket: must be hour, day or week (got {other:?})"),
            ));
        }
    };
    let span_hours = to.duration_since(from).as_hours();
    if span_hours / bucket.hours() > MAX_BUCKETS {
        return Err(AppError::bad_request(
            "invalid_parameter",
            format!(
                "from..to holds more than {MAX_BUCKETS} {} buckets; use a larger bucket",
                bucket.name()
            ),
        ));
    }
    Ok(Query { from, to, bucket, now })
}

/// The UTC days whose counts-only uploads the period's rollups hold, as
/// `[first, after_last)`: an upload lands in its day's first hour, which the period
/// includes when it starts in that hour or earlier.
fn days_of(query: &Query) -> (Date, Date) {
    let day = |ts: Timestamp| ts.to_zoned(jiff::tz::TimeZone::UTC).date();
    let from_day = day(query.from);
    let first = if HourKey::of(query.from) == crate::storage::counts_hour(from_day) {
        from_day
    } else {
        from_day.tomorrow().unwrap_or(from_day)
    };
    let last = query.to.checked_sub(1.millisecond()).unwrap_or(query.to);
    (first, day(last).tomorrow().unwrap_or(day(last)))
}

/// The labels one rollup row is shown under once small groups are folded into `other`.
struct Names {
    kind: String,
    name: String,
    command: String,
}

impl Names {
    fn of(suppression: &Suppression, app: &str, row: &RollupKey) -> Names {
        let (kind, name) = if suppression.names_event(app, &row.kind, &row.name) {
            (row.kind.clone(), row.name.clone())
        } else {
            (OTHER.to_owned(), OTHER.to_owned())
        };
        let command = if row.command.is_empty() || suppression.names_command(app, &row.kind, &row.name, &row.command) {
            row.command.clone()
        } else {
            OTHER.to_owned()
        };
        Names { kind, name, command }
    }
}

impl Fold {
    fn of(query: &Query, rows: &[(RollupKey, Rollup)], names: &dyn Fn(&RollupKey) -> Names) -> Fold {
        // Every bucket of the period, also the empty ones: charts need the zeros.
        let mut series: BTreeMap<Timestamp, Point> = BTreeMap::new();
        let mut cursor = query.bucket.start_of(HourKey::of(query.from)).unwrap_or(query.from);
        while cursor < query.to {
            series.insert(cursor, Point::default());
            cursor = cursor.checked_add(query.bucket.hours().hours()).unwrap_or(query.to);
        }
        let mut fold = Fold {
            series,
            top_events: BTreeMap::new(),
            features: BTreeMap::new(),
            commands: BTreeMap::new(),
            durations: BTreeMap::new(),
            error_categories: BTreeMap::new(),
            events: 0,
            with_outcome: 0,
            failures: 0,
            errors: 0,
        };
        for (row, rollup) in rows {
            if let Some(start) = query.bucket.start_of(row.hour) {
                fold.add(start, row, rollup, names(row));
            }
        }
        fold
    }

    /// Adds `row`; the top lists see it under `names`, the series and totals as it is.
    fn add(&mut self, start: Timestamp, row: &RollupKey, rollup: &Rollup, names: Names) {
        let point = self.series.entry(start).or_default();
        point.events += rollup.count;
        self.events += rollup.count;
        if row.success >= 0 {
            self.with_outcome += rollup.count;
        }
        if row.success == 0 {
            self.failures += rollup.count;
        }
        if row.kind == "error" {
            self.errors += rollup.count;
            point.errors += rollup.count;
            *self.error_categories.entry(row.error_category.clone()).or_default() += rollup.count;
        }
        if row.name == "session_started" {
            point.sessions += rollup.count;
        }
        if row.name == "command_executed" {
            point.commands += rollup.count;
            let entry = self.commands.entry(names.command).or_default();
            entry.0 += rollup.count;
            if row.success == 0 {
                entry.1 += rollup.count;
                point.failures += rollup.count;
            }
            entry.2 += rollup.duration_count;
            entry.3 += rollup.duration_total_ms;
            if rollup.duration_count > 0 {
                self.durations.entry(row.command.clone()).or_default().merge(rollup);
            }
        }
        if row.kind == "feature" {
            *self.features.entry(names.name.clone()).or_default() += rollup.count;
        }
        *self.top_events.entry((names.kind, names.name)).or_default() += rollup.count;
    }
}

impl Engagement {
    /// `active` holds the installs active in the last 1h, 24h, 7d and 30d.
    fn score(fold: &Fold, sessions: &SessionSummary, active: &[u64]) -> Engagement {
        let error_rate = if fold.with_outcome > 0 {
            fold.failures as f64 / fold.with_outcome as f64
        } else {
            0.0
        };
        let stickiness = if active[3] > 0 {
            active[1] as f64 / active[3] as f64
        } else {
            0.0
        };
        let depth = if sessions.count > 0 {
            (fold.events as f64 / sessions.count as f64 / 10.0).min(1.0)
        } else {
            0.0
        };
        let breadth = ((fold.commands.len() + fold.features.len()) as f64 / 5.0).min(1.0);
        let reliability = 1.0 - error_rate;
        let score = if fold.events == 0 {
            0
        } else {
            (100.0 * (0.40 * stickiness + 0.25 * depth + 0.20 * reliability + 0.15 * breadth)).round() as u64
        };
        Engagement {
            error_rate,
            stickiness,
            depth,
            reliability,
            breadth,
            score,
        }
    }
}

/// Most frequent first, ties by key.
fn ranked<K: Ord, V>(map: BTreeMap<K, V>, count: impl Fn(&V) -> u64) -> Vec<(K, V)> {
    let mut ranked: Vec<(K, V)> = map.into_iter().collect();
    ranked.sort_by(|a, b| count(&b.1).cmp(&count(&a.1)).then_with(|| a.0.cmp(&b.0)));
    ranked
}

/// The answer's JSON.
fn shape(
    app: &str,
    query: &Query,
    fold: Fold,
    sessions: &SessionSummary,
    active: &[u64],
    engagement: &Engagement,
) -> Value {
    let ranked_events = ranked(fold.top_events, |count| *count);
    let ranked_features = ranked(fold.features, |count| *count);
    let ranked_commands = ranked(fold.commands, |counts| counts.0);
    let ranked_categories = ranked(fold.error_categories, |count| *count);
    let durations = fold.durations;
    let quantile = |command: &str, q: f64| {
        let rollup = durations.get(command)?;
        rollup
            .histogram
            .quantile(q, rollup.duration_min_ms?, rollup.duration_max_ms?)
    };
    json!({
        "app": app,
        "from": tally_core::time::format(query.from),
        "to": tally_core::time::format(query.to),
        "bucket": query.bucket.name(),
        "totals": {
            "events": fold.events,
            "sessions": sessions.count,
            "errors": fold.errors,
            "commands": ranked_commands.iter().map(|(_, counts)| counts.0).sum::<u64>(),
            "failures": fold.failures,
        },
        "active_installs": {"1h": active[0], "24h": active[1], "7d": active[2], "30d": active[3]},
        "sessions": {"count": sessions.count, "avg_duration_ms": sessions.avg_duration_ms.map(|ms| ms.round() as u64)},
        "series": fold.series.iter().map(|(start, point)| json!({
            "start": tally_core::time::format(*start),
            "events": point.events,
            "sessions": point.sessions,
            "commands": point.commands,
            "failures": point.failures,
            "errors": point.errors,
        })).collect::<Vec<_>>(),
        "top_events": ranked_events.iter().take(TOP).map(|((kind, name), count)| json!({
            "type": kind, "name": name, "count": count,
        })).collect::<Vec<_>>(),
        "feature_usage": ranked_features.iter().take(TOP).map(|(name, count)| json!({
            "feature": name, "count": count,
        })).collect::<Vec<_>>(),
        "commands": ranked_commands.iter().take(TOP).map(|(command, (runs, failed, timed, total))| json!({
            "command": command,
            "runs": runs,
            "failures": failed,
            "avg_duration_ms": (*timed > 0).then(|| (*total as f64 / *timed as f64).round() as u64),
            "p50_ms": quantile(command, 0.5),
            "p95_ms": quantile(command, 0.95),
        })).collect::<Vec<_>>(),
        "error_categories": ranked_categories.iter().take(TOP).map(|(category, count)| json!({
            "category": category, "count": count,
        })).collect::<Vec<_>>(),
        "error_rate": engagement.error_rate,
        "engagement": {
            "score": engagement.score,
            "stickiness": engagement.stickiness,
            "depth": engagement.depth,
            "reliability": engagement.reliability,
            "breadth": engagement.breadth,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-22 is a Sunday.
        let start = Bucket::Week.start_of("2026-11-22T15".parse().unwrap()).unwrap();
        assert_eq!(tally_core::time::format(start), "2026-11-16T00:00:00.000Z");
        let start = Bucket::Day.start_of("2026-11-22T15".parse().unwrap()).unwrap();
        assert_eq!(tally_core::time::format(start), "2026-11-22T00:00:00.000Z");
        let start = Bucket::Hour.start_of("2026-11-22T15".parse().unwrap()).unwrap();
        assert_eq!(tally_core::time::format(start), "2026-11-22T15:00:00.000Z");
    }
}
