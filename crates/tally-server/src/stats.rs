//! `GET /v1/stats`: chart-ready aggregates of one app, from rollups, sessions and the
//! installs table; never from raw events.
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
use tally_store::histogram::Histogram;

use crate::AppState;
use crate::actions::ActionResult;
use crate::error::AppError;
use crate::storage::ApiKey;

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

    /// The start of the bucket holding `hour` (`YYYY-MM-DDTHH`), as a timestamp.
    fn start_of(self, hour: &str) -> Option<Timestamp> {
        let date: Date = hour.get(..10)?.parse().ok()?;
        let hour_of_day: i8 = hour.get(11..13)?.parse().ok()?;
        let start = match self {
            Bucket::Hour => date.at(hour_of_day, 0, 0, 0),
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

pub(crate) fn parse_time(field: &str, text: &str) -> Result<Timestamp, AppError> {
    tally_core::time::parse(text).map_err(|_| {
        AppError::bad_request(
            "invalid_parameter",
            format!("{field}: must be an RFC 3339 time such as 2026-11-22T00:00:00Z (got {text:?})"),
        )
    })
}

fn hour_key(ts: Timestamp) -> String {
    tally_core::time::format(ts)[..13].to_owned()
}

#[derive(Default)]
struct Point {
    events: u64,
    sessions: u64,
    commands: u64,
    failures: u64,
    errors: u64,
}

/// `stats.get`.
pub async fn get(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let request: StatsRequest =
        serde_json::from_value(payload).map_err(|err| AppError::bad_request("invalid_parameter", err.to_string()))?;
    if let Some(app) = &request.app
        && *app != key.app
    {
        return Err(AppError::forbidden(format!(
            "this key reads app {:?}, not {app:?}",
            key.app
        )));
    }
    let now = (state.clock)();
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
    let app = key.app.as_str();
    let last = to.checked_sub(1.millisecond()).unwrap_or(to);
    let rows = state
        .store
        .rollups(
            app,
            &hour_key(from),
            &hour_key(last.checked_add(1.hour()).unwrap_or(last)),
        )
        .await?;

    // Every bucket of the period, also the empty ones: charts need the zeros.
    let mut series: BTreeMap<Timestamp, Point> = BTreeMap::new();
    let mut cursor = bucket.start_of(&hour_key(from)).unwrap_or(from);
    while cursor < to {
        series.insert(cursor, Point::default());
        cursor = cursor.checked_add(bucket.hours().hours()).unwrap_or(to);
    }
    let mut top_events: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut features: BTreeMap<String, u64> = BTreeMap::new();
    let mut error_categories: BTreeMap<String, u64> = BTreeMap::new();
    // Per command: merged duration histogram, shortest and longest duration.
    let mut durations: BTreeMap<String, (Histogram, Option<u64>, Option<u64>)> = BTreeMap::new();
    let mut commands: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    let (mut events, mut with_outcome, mut failures, mut errors) = (0u64, 0u64, 0u64, 0u64);
    for row in &rows {
        let Some(start) = bucket.start_of(&row.hour) else {
            continue;
        };
        let point = series.entry(start).or_default();
        point.events += row.count;
        events += row.count;
        if row.success >= 0 {
            with_outcome += row.count;
        }
        if row.success == 0 {
            failures += row.count;
        }
        if row.kind == "error" {
            errors += row.count;
            point.errors += row.count;
            *error_categories.entry(row.error_category.clone()).or_default() += row.count;
        }
        if row.name == "session_started" {
            point.sessions += row.count;
        }
        if row.name == "command_executed" {
            point.commands += row.count;
            let entry = commands.entry(row.command.clone()).or_default();
            entry.0 += row.count;
            if row.success == 0 {
                entry.1 += row.count;
                point.failures += row.count;
            }
            entry.2 += row.duration_count;
            entry.3 += row.duration_total_ms;
            if row.duration_count > 0 {
                let (histogram, min, max) = durations.entry(row.command.clone()).or_default();
                histogram.merge(&row.histogram);
                *min = match (*min, row.duration_min_ms) {
                    (Some(seen), Some(this)) => Some(seen.min(this)),
                    (seen, this) => seen.or(this),
                };
                *max = (*max).max(row.duration_max_ms);
            }
        }
        if row.kind == "feature" {
            *features.entry(row.name.clone()).or_default() += row.count;
        }
        *top_events.entry((row.kind.clone(), row.name.clone())).or_default() += row.count;
    }
    let sessions = state.store.sessions(app, from, to).await?;
    let since: Vec<Timestamp> = [1i64, 24, 24 * 7, 24 * 30]
        .iter()
        .map(|hours| now.checked_sub(hours.hours()).unwrap_or(now))
        .collect();
    let active = state
        .store
        .active_installs(&since)
        .await?
        .into_iter()
        .find(|(name, _)| name == app)
        .map(|(_, counts)| counts)
        .unwrap_or_else(|| vec![0; 4]);

    let error_rate = if with_outcome > 0 {
        failures as f64 / with_outcome as f64
    } else {
        0.0
    };
    let stickiness = if active[3] > 0 {
        active[1] as f64 / active[3] as f64
    } else {
        0.0
    };
    let depth = if sessions.count > 0 {
        (events as f64 / sessions.count as f64 / 10.0).min(1.0)
    } else {
        0.0
    };
    let breadth = ((commands.len() + features.len()) as f64 / 5.0).min(1.0);
    let reliability = 1.0 - error_rate;
    let score = if events == 0 {
        0
    } else {
        (100.0 * (0.40 * stickiness + 0.25 * depth + 0.20 * reliability + 0.15 * breadth)).round() as u64
    };

    let mut ranked_events: Vec<_> = top_events.into_iter().collect();
    ranked_events.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut ranked_features: Vec<_> = features.into_iter().collect();
    ranked_features.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut ranked_categories: Vec<_> = error_categories.into_iter().collect();
    ranked_categories.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut ranked_commands: Vec<_> = commands.into_iter().collect();
    ranked_commands.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));

    Ok((
        axum::http::StatusCode::OK,
        json!({
            "app": app,
            "from": tally_core::time::format(from),
            "to": tally_core::time::format(to),
            "bucket": bucket.name(),
            "totals": {
                "events": events,
                "sessions": sessions.count,
                "errors": errors,
                "commands": ranked_commands.iter().map(|(_, counts)| counts.0).sum::<u64>(),
                "failures": failures,
            },
            "active_installs": {"1h": active[0], "24h": active[1], "7d": active[2], "30d": active[3]},
            "sessions": {"count": sessions.count, "avg_duration_ms": sessions.avg_duration_ms.map(|ms| ms.round() as u64)},
            "series": series.iter().map(|(start, point)| json!({
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
            "commands": ranked_commands.iter().take(TOP).map(|(command, (runs, failed, timed, total))| {
                let quantile = |q| {
                    let (histogram, min, max) = durations.get(command)?;
                    histogram.quantile(q, (*min)?, (*max)?)
                };
                json!({
                    "command": command,
                    "runs": runs,
                    "failures": failed,
                    "avg_duration_ms": (*timed > 0).then(|| (*total as f64 / *timed as f64).round() as u64),
                    "p50_ms": quantile(0.5),
                    "p95_ms": quantile(0.95),
                })
            }).collect::<Vec<_>>(),
            "error_categories": ranked_categories.iter().take(TOP).map(|(category, count)| json!({
                "category": category, "count": count,
            })).collect::<Vec<_>>(),
            "error_rate": error_rate,
            "engagement": {
                "score": score,
                "stickiness": stickiness,
                "depth": depth,
                "reliability": reliability,
                "breadth": breadth,
            },
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-22 is a Sunday.
        let start = Bucket::Week.start_of("2026-11-22T15").unwrap();
        assert_eq!(tally_core::time::format(start), "2026-11-16T00:00:00.000Z");
        let start = Bucket::Day.start_of("2026-11-22T15").unwrap();
        assert_eq!(tally_core::time::format(start), "2026-11-22T00:00:00.000Z");
        let start = Bucket::Hour.start_of("2026-11-22T15").unwrap();
        assert_eq!(tally_core::time::format(start), "2026-11-22T15:00:00.000Z");
    }
}
