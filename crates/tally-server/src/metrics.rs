//! `GET /metrics`: what Grafana scrapes.
//!
//! Usage figures come from the lifetime totals, the installs table and the last week of
//! hourly rollups, never from raw events, so the cost of a scrape does not grow with the
//! number of stored events. Label values are bounded: per app, the
//! `metrics_top_names` most frequent event names get their own label and the rest are
//! summed as `other`. The collector's own counters and a request latency histogram
//! follow. Prometheus text format by default; OpenMetrics when the scraper asks for it.
//!
//! Two families count what this process committed rather than what is stored: time spent
//! in sessions (`tally_session_seconds_total`, from `session_ended` durations) and command
//! durations (`tally_command_duration_seconds`, a histogram per app and command). Like
//! `tally_ingest_events_total` they start from zero when the process starts, which
//! Prometheus's `rate` and `increase` expect of counters; collectors sharing a database
//! each count their own share, so dashboards `sum` them. Command labels are bounded: the
//! first [`MAX_COMMAND_LABELS`] commands an app reports get their own, later ones count as
//! `other`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use jiff::{Timestamp, ToSpan};

use crate::AppState;
use crate::error::AppError;

/// Upper bounds, in seconds, of the request latency histogram.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds, in seconds, of the command duration histogram.
const COMMAND_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Commands per app with a label of their own in the command duration histogram.
pub const MAX_COMMAND_LABELS: usize = 50;

/// Durations of one command: counts per bucket, total count, sum of seconds.
#[derive(Debug, Clone, Copy, Default)]
struct CommandDurations {
    buckets: [u64; COMMAND_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// What the committer tells the metrics about one event before it is stored: only the
/// parts the per-process usage families need.
#[derive(Debug, Clone)]
pub struct UsageSample {
    app: String,
    /// `Some(command)` for `command_executed`, `None` for `session_ended`.
    command: Option<String>,
    duration_ms: u64,
}

impl UsageSample {
    /// The sample an event contributes, if it is a timed session end or command.
    pub fn of(event: &tally_core::Event) -> Option<UsageSample> {
        let duration_ms = event.duration_ms?;
        let command = match event.name.as_str() {
            "session_ended" => None,
            "command_executed" => Some(event.command.clone().unwrap_or_default()),
            _ => return None,
        };
        Some(UsageSample {
            app: event.app.clone(),
            command,
            duration_ms,
        })
    }
}

/// Request latencies of one route: counts per bucket, total count, sum of seconds.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The collector's own counters.
#[derive(Default)]
pub struct CollectorMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Latency>>,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    commits: AtomicU64,
    committed_events: AtomicU64,
    stream_subscribers: AtomicU64,
    session_seconds: Mutex<BTreeMap<String, f64>>,
    command_durations: Mutex<BTreeMap<(String, String), CommandDurations>>,
}

impl CollectorMetrics {
    /// Counts one finished request.
    pub fn record_request(&self, route: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((route.to_owned(), status))
            .or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = latency.entry(route.to_owned()).or_default();
        if let Some(index) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            entry.buckets[index] += 1;
        }
        entry.count += 1;
        entry.sum += seconds;
    }

    /// Counts the fate of ingested events.
    pub fn record_events(&self, accepted: u64, duplicates: u64, rejected: u64) {
        self.accepted.fetch_add(accepted, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        self.rejected.fetch_add(rejected, Ordering::Relaxed);
    }

    /// Counts one group commit.
    pub fn record_commit(&self, events: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.committed_events.fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Counts the session time and command durations of newly stored events.
    pub fn record_usage(&self, samples: impl IntoIterator<Item = UsageSample>) {
        let mut sessions = self.session_seconds.lock().unwrap_or_else(PoisonError::into_inner);
        let mut commands = self.command_durations.lock().unwrap_or_else(PoisonError::into_inner);
        for sample in samples {
            let seconds = sample.duration_ms as f64 / 1000.0;
            let Some(command) = sample.command else {
                *sessions.entry(sample.app).or_default() += seconds;
                continue;
            };
            let labelled = commands
                .range((sample.app.clone(), String::new())..)
                .take_while(|((app, _), _)| *app == sample.app)
                .filter(|((_, name), _)| name != "other")
                .count();
            let known = commands.contains_key(&(sample.app.clone(), command.clone()));
            let label = if known || labelled < MAX_COMMAND_LABELS {
                command
            } else {
                "other".to_owned()
            };
            let entry = commands.entry((sample.app, label)).or_default();
            if let Some(index) = COMMAND_BUCKETS.iter().position(|bound| seconds <= *bound) {
                entry.buckets[index] += 1;
            }
            entry.count += 1;
            entry.sum += seconds;
        }
    }

    /// A stream subscriber joined (`+1`) or left (`-1`).
    pub fn stream_subscribers(&self, change: i64) {
        if change >= 0 {
            self.stream_subscribers.fetch_add(change as u64, Ordering::Relaxed);
        } else {
            self.stream_subscribers
                .fetch_sub(change.unsigned_abs(), Ordering::Relaxed);
        }
    }
}

/// Writes metric families in either exposition format.
struct Exposition {
    text: String,
    openmetrics: bool,
}

impl Exposition {
    /// Starts a family. Counters are named without `_total` in OpenMetrics and with it
    /// in the Prometheus format, whose parser expects the sample name.
    fn family(&mut self, name: &str, kind: &str, help: &str) -> String {
        let family = if kind == "counter" && !self.openmetrics {
            format!("{name}_total")
        } else {
            name.to_owned()
        };
        let _ = writeln!(self.text, "# HELP {family} {help}");
        let _ = writeln!(self.text, "# TYPE {family} {kind}");
        if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_owned()
        }
    }

    /// Starts a histogram family, in seconds.
    fn histogram_family(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} histogram");
        if self.openmetrics {
            let _ = writeln!(self.text, "# UNIT {name} seconds");
        }
    }

    /// One labelled histogram: cumulative buckets, `+Inf`, sum and count.
    fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        buckets: &[u64],
        (count, sum): (u64, f64),
    ) {
        let bucket_name = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, bucket) in bounds.iter().zip(buckets) {
            cumulative += bucket;
            let le = bound.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket_name, &with_le, cumulative);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket_name, &with_le, count);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (key, label)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let escaped = label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.text, "{key}=\"{escaped}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// The `/metrics` handler.
pub async fn handler(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    if let Some(token) = &state.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let matches = presented.is_some_and(|presented| {
            presented.len() == token.len()
                && presented
                    .bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if !matches {
            return Err(AppError::unauthorized(
                "/metrics needs Authorization: Bearer <metrics_token>",
            ));
        }
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let text = render(&state, (state.clock)(), openmetrics).await?;
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// The per-process usage families: session time and command durations.
fn render_usage(out: &mut Exposition, metrics: &CollectorMetrics) {
    let sessions = metrics
        .session_seconds
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let name = out.family(
        "tally_session_seconds",
        "counter",
        "Time in sessions that ended, from session_ended durations this collector stored, per app.",
    );
    for (app, seconds) in &sessions {
        out.sample(&name, &[("app", app)], seconds);
    }
    let commands = metrics
        .command_durations
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    out.histogram_family(
        "tally_command_duration_seconds",
        "Durations of command_executed events this collector stored, per app and command.",
    );
    for ((app, command), durations) in &commands {
        out.histogram(
            "tally_command_duration_seconds",
            &[("app", app), ("command", command)],
            &COMMAND_BUCKETS,
            &durations.buckets,
            (durations.count, durations.sum),
        );
    }
}

const PERIODS: [(&str, i64); 4] = [("1h", 1), ("24h", 24), ("7d", 24 * 7), ("30d", 24 * 30)];

/// Builds the exposition text.
pub async fn render(state: &AppState, now: Timestamp, openmetrics: bool) -> Result<String, AppError> {
    let mut out = Exposition {
        text: String::with_capacity(8 * 1024),
        openmetrics,
    };
    let since: Vec<Timestamp> = PERIODS
        .iter()
        .map(|(_, hours)| now.checked_sub(hours.hours()).unwrap_or(now))
        .collect();
    let active = state.store.active_installs(&since).await?;
    let name = out.family(
        "tally_active_installs",
        "gauge",
        "Installs seen within the period, per app (periods 1h, 24h, 7d, 30d).",
    );
    for (app, counts) in &active {
        for ((period, _), count) in PERIODS.iter().zip(counts) {
            out.sample(&name, &[("app", app), ("period", period)], count);
        }
    }

    // Sessions per period: one aggregate over the last week of hourly rollups.
    let from_hours: Vec<String> = since[..3]
        .iter()
        .map(|start| tally_core::time::format(*start)[..13].to_owned())
        .collect();
    let sessions = state.store.named_counts("session_started", &from_hours).await?;
    let name = out.family(
        "tally_sessions",
        "gauge",
        "Sessions started within the period, per app (periods 1h, 24h, 7d).",
    );
    for (app, counts) in &sessions {
        for ((period, _), count) in PERIODS.iter().zip(counts) {
            out.sample(&name, &[("app", app), ("period", period)], count);
        }
    }

    let totals = state.store.totals().await?;
    // Per app and name, summed over outcomes; then the top names keep their label.
    let mut by_name: BTreeMap<&str, BTreeMap<(&str, &str), u64>> = BTreeMap::new();
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    let mut features: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    let mut commands: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for row in &totals {
        *by_name
            .entry(&row.app)
            .or_default()
            .entry((&row.kind, &row.name))
            .or_default() += row.count;
        if row.kind == "error" {
            *errors.entry(&row.app).or_default() += row.count;
        }
        if row.kind == "feature" {
            *features.entry(&row.app).or_default().entry(&row.name).or_default() += row.count;
        }
        if row.name == "command_executed" {
            let entry = commands.entry(&row.app).or_default();
            entry.0 += row.count;
            if row.success == 0 {
                entry.1 += row.count;
            }
        }
    }
    let top = state.config.metrics_top_names;
    let name = out.family(
        "tally_events",
        "counter",
        "Events stored, per app, type and name; names beyond the most frequent are summed as other.",
    );
    for (app, names) in &by_name {
        let mut ranked: Vec<(&(&str, &str), &u64)> = names.iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let mut other = 0;
        for (index, ((kind, event), count)) in ranked.into_iter().enumerate() {
            if index < top {
                out.sample(&name, &[("app", app), ("type", kind), ("name", event)], count);
            } else {
                other += count;
            }
        }
        if other > 0 {
            out.sample(&name, &[("app", app), ("type", "other"), ("name", "other")], other);
        }
    }
    let name = out.family(
        "tally_feature_usage",
        "counter",
        "Events of type feature, per app and feature.",
    );
    for (app, used) in &features {
        let mut ranked: Vec<(&&str, &u64)> = used.iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let mut other = 0;
        for (index, (feature, count)) in ranked.into_iter().enumerate() {
            if index < top {
                out.sample(&name, &[("app", app), ("feature", feature)], count);
            } else {
                other += count;
            }
        }
        if other > 0 {
            out.sample(&name, &[("app", app), ("feature", "other")], other);
        }
    }
    let name = out.family("tally_errors", "counter", "Events of type error, per app.");
    for (app, count) in &errors {
        out.sample(&name, &[("app", app)], count);
    }
    let name = out.family(
        "tally_commands",
        "counter",
        "command_executed events, per app and outcome.",
    );
    for (app, (runs, failed)) in &commands {
        out.sample(&name, &[("app", app), ("outcome", "success")], runs - failed);
        out.sample(&name, &[("app", app), ("outcome", "failure")], failed);
    }

    let metrics = &state.metrics;
    render_usage(&mut out, metrics);
    let name = out.family(
        "tally_ingest_events",
        "counter",
        "Events this collector received, by outcome.",
    );
    for (outcome, counter) in [
        ("accepted", &metrics.accepted),
        ("duplicate", &metrics.duplicates),
        ("rejected", &metrics.rejected),
    ] {
        out.sample(&name, &[("outcome", outcome)], counter.load(Ordering::Relaxed));
    }
    let name = out.family("tally_commits", "counter", "Group commits this collector made.");
    out.sample(&name, &[], metrics.commits.load(Ordering::Relaxed));
    let name = out.family("tally_committed_events", "counter", "Events handed to group commits.");
    out.sample(&name, &[], metrics.committed_events.load(Ordering::Relaxed));
    let name = out.family("tally_stream_subscribers", "gauge", "Clients on /v1/stream.");
    out.sample(&name, &[], metrics.stream_subscribers.load(Ordering::Relaxed));
    let requests = metrics.requests.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let name = out.family("tally_http_requests", "counter", "HTTP requests, by route and status.");
    for ((route, status), count) in &requests {
        out.sample(&name, &[("route", route), ("status", &status.to_string())], count);
    }
    let latency = metrics.latency.lock().unwrap_or_else(PoisonError::into_inner).clone();
    out.histogram_family(
        "tally_http_request_duration_seconds",
        "Time to answer a request, by route.",
    );
    for (route, Latency { buckets, count, sum }) in &latency {
        out.histogram(
            "tally_http_request_duration_seconds",
            &[("route", route)],
            &LATENCY_BUCKETS,
            buckets,
            (*count, *sum),
        );
    }
    if openmetrics {
        out.text.push_str("# EOF\n");
    }
    Ok(out.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(app: &str, name: &str, duration_ms: u64) -> UsageSample {
        UsageSample {
            app: app.to_owned(),
            command: Some(name.to_owned()),
            duration_ms,
        }
    }

    #[test]
    fn command_labels_are_bounded_per_app() {
        let metrics = CollectorMetrics::default();
        metrics.record_usage((0..MAX_COMMAND_LABELS + 10).map(|index| command("a", &format!("c{index}"), 20)));
        // A command seen before the bound filled keeps its label; another app has its own.
        metrics.record_usage([command("a", "c0", 20_000), command("b", "c99", 5)]);
        let commands = metrics.command_durations.lock().unwrap();
        let of_a = commands.keys().filter(|(app, _)| app == "a").count();
        assert_eq!(of_a, MAX_COMMAND_LABELS + 1, "50 commands and other");
        assert_eq!(commands[&("a".to_owned(), "other".to_owned())].count, 10);
        let c0 = commands[&("a".to_owned(), "c0".to_owned())];
        assert_eq!((c0.count, c0.sum), (2, 20.02));
        assert!(commands.contains_key(&("b".to_owned(), "c99".to_owned())));
    }

    #[test]
    fn session_time_adds_up_per_app() {
        let metrics = CollectorMetrics::default();
        let session = |app: &str, ms| UsageSample {
            app: app.to_owned(),
            command: None,
            duration_ms: ms,
        };
        metrics.record_usage([session("a", 90_000), session("a", 30_000), session("b", 1_500)]);
        let sessions = metrics.session_seconds.lock().unwrap();
        assert_eq!(sessions["a"], 120.0);
        assert_eq!(sessions["b"], 1.5);
    }
}
