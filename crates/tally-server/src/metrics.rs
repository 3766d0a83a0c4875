//! `GET /metrics`: what Grafana scrapes.
//!
//! Usage figures come from the lifetime totals, the installs table and the last week of
//! hourly rollups, never from raw events, so the cost of a scrape does not grow with the
//! number of stored events. Label values are bounded: per app, the
//! `metrics_top_names` most frequent event names get their own label and the rest are
//! summed as `other`. The collector's own counters and a request latency histogram
//! follow. Prometheus text format by default; OpenMetrics when the scraper asks for it
//! (`routes` negotiates). `tally_events` is the family `tally export` writes too
//! ([`tally_store::openmetrics::EVENTS`]).
//!
//! Two families count what this process committed rather than what is stored: time spent
//! in sessions (`tally_session_seconds_total`, from `session_ended` durations) and command
//! durations (`tally_command_duration_seconds`, a histogram per app and command). Like
//! `tally_ingest_events_total` they start from zero when the process starts, which
//! Prometheus's `rate` and `increase` expect of counters; collectors sharing a database
//! each count their own share, so dashboards `sum` them. Command labels are bounded: the
//! first [`MAX_COMMAND_LABELS`] commands an app reports get their own, later ones count as
//! `other`; so do commands seen from fewer than `min_installs` installs, when rendered.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use tally_core::time::HourKey;
use tally_store::openmetrics::{self, EVENTS, Family, Format, Kind};

use crate::AppState;
use crate::error::AppError;
use crate::storage::TotalRow;
use crate::suppression::{OTHER, Suppression};

/// Upper bounds, in seconds, of the request latency histogram.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Request latencies of one route: counts per bucket, total count, sum of seconds.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

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
    format: Format,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    fn family<const N: usize>(&mut self, family: &Family<N>) {
        self.text.push_str(&family.header(self.format));
    }

    fn sample<const N: usize>(&mut self, family: &Family<N>, values: [&str; N], value: impl std::fmt::Display) {
        family.write_sample(&mut self.text, values, value);
    }
}

const ACTIVE_INSTALLS: Family<2> = Family {
    name: "tally_active_installs",
    kind: Kind::Gauge,
    help: "Installs seen within the period, per app (periods 1h, 24h, 7d, 30d).",
    labels: ["app", "period"],
};
const SESSIONS: Family<2> = Family {
    name: "tally_sessions",
    kind: Kind::Gauge,
    help: "Sessions started within the period, per app (periods 1h, 24h, 7d).",
    labels: ["app", "period"],
};
const FEATURE_USAGE: Family<2> = Family {
    name: "tally_feature_usage",
    kind: Kind::Counter,
    help: "Events of type feature, per app and feature.",
    labels: ["app", "feature"],
};
const ERRORS: Family<1> = Family {
    name: "tally_errors",
    kind: Kind::Counter,
    help: "Events of type error, per app.",
    labels: ["app"],
};
const COMMANDS: Family<2> = Family {
    name: "tally_commands",
    kind: Kind::Counter,
    help: "command_executed events, per app and outcome.",
    labels: ["app", "outcome"],
};
const INGEST_EVENTS: Family<1> = Family {
    name: "tally_ingest_events",
    kind: Kind::Counter,
    help: "Events this collector received, by outcome.",
    labels: ["outcome"],
};
const COMMITS: Family<0> = Family {
    name: "tally_commits",
    kind: Kind::Counter,
    help: "Group commits this collector made.",
    labels: [],
};
const COMMITTED_EVENTS: Family<0> = Family {
    name: "tally_committed_events",
    kind: Kind::Counter,
    help: "Events handed to group commits.",
    labels: [],
};
const STREAM_SUBSCRIBERS: Family<0> = Family {
    name: "tally_stream_subscribers",
    kind: Kind::Gauge,
    help: "Clients on /v1/stream.",
    labels: [],
};
const SESSION_SECONDS: Family<1> = Family {
    name: "tally_session_seconds",
    kind: Kind::Counter,
    help: "Time in sessions that ended, from session_ended durations this collector stored, per app.",
    labels: ["app"],
};
const HTTP_REQUESTS: Family<2> = Family {
    name: "tally_http_requests",
    kind: Kind::Counter,
    help: "HTTP requests, by route and status.",
    labels: ["route", "status"],
};

const PERIODS: [(&str, i64); 4] = [("1h", 1), ("24h", 24), ("7d", 24 * 7), ("30d", 24 * 30)];

/// Builds the exposition text.
pub async fn render(state: &AppState, now: Timestamp, openmetrics: bool) -> Result<String, AppError> {
    let mut out = Exposition {
        text: String::with_capacity(8 * 1024),
        format: if openmetrics {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        },
    };
    let since: Vec<Timestamp> = PERIODS
        .iter()
        .map(|(_, hours)| now.checked_sub(hours.hours()).unwrap_or(now))
        .collect();
    per_period(&mut out, &ACTIVE_INSTALLS, &state.store.active_installs(&since).await?);
    // Sessions per period: one aggregate over the last week of hourly rollups.
    let from_hours: Vec<HourKey> = since[..3].iter().copied().map(HourKey::of).collect();
    per_period(
        &mut out,
        &SESSIONS,
        &state.store.named_counts("session_started", &from_hours).await?,
    );

    let totals = state.store.totals().await?;
    let suppression = Suppression::load(state, None).await?;
    let usage = Usage::fold(&totals, &suppression);
    let top = state.config.metrics_top_names;
    events(&mut out, &usage.by_name, top);
    feature_usage(&mut out, &usage.features, top);
    errors(&mut out, &usage.errors);
    commands(&mut out, &usage.commands);

    session_seconds(&mut out, &state.metrics);
    command_durations(&mut out, &state.metrics, &suppression);
    collector_counters(&mut out, &state.metrics);
    http_requests(&mut out, &state.metrics);
    request_latency(&mut out, &state.metrics);
    if openmetrics {
        out.text.push_str("# EOF\n");
    }
    Ok(out.text)
}

/// A per-app, per-period gauge (`counts` follow [`PERIODS`]).
fn per_period(out: &mut Exposition, family: &Family<2>, counts: &[(String, Vec<u64>)]) {
    out.family(family);
    for (app, counts) in counts {
        for ((period, _), count) in PERIODS.iter().zip(counts) {
            out.sample(family, [app, period], count);
        }
    }
}

/// The lifetime totals, folded per app for the usage families.
#[derive(Default)]
struct Usage<'a> {
    /// Per app and (type, name), summed over outcomes.
    by_name: BTreeMap<&'a str, BTreeMap<(&'a str, &'a str), u64>>,
    /// Per app, events of type error.
    errors: BTreeMap<&'a str, u64>,
    /// Per app and feature, events of type feature.
    features: BTreeMap<&'a str, BTreeMap<&'a str, u64>>,
    /// Per app, `command_executed` runs and failures among them.
    commands: BTreeMap<&'a str, (u64, u64)>,
}

impl<'a> Usage<'a> {
    /// Groups `suppression` may not name are summed under `other`.
    fn fold(totals: &'a [TotalRow], suppression: &Suppression) -> Usage<'a> {
        let mut usage = Usage::default();
        for row in totals {
            let (kind, name) = if suppression.names_event(&row.app, &row.kind, &row.name) {
                (row.kind.as_str(), row.name.as_str())
            } else {
                (OTHER, OTHER)
            };
            *usage
                .by_name
                .entry(&row.app)
                .or_default()
                .entry((kind, name))
                .or_default() += row.count;
            if row.kind == "error" {
                *usage.errors.entry(&row.app).or_default() += row.count;
            }
            if row.kind == "feature" {
                *usage.features.entry(&row.app).or_default().entry(name).or_default() += row.count;
            }
            if row.name == "command_executed" {
                let entry = usage.commands.entry(&row.app).or_default();
                entry.0 += row.count;
                if row.success == 0 {
                    entry.1 += row.count;
                }
            }
        }
        usage
    }
}

/// `counts` most frequent first (ties by key), split into the first `top` and the sum
/// of the rest, so that label values stay bounded. The `other` key (groups suppression
/// folded) is never ranked: it is part of the rest.
fn top_and_other<K: Ord + Copy>(counts: &BTreeMap<K, u64>, top: usize, other: K) -> (Vec<(K, u64)>, u64) {
    let mut ranked: Vec<(K, u64)> = counts
        .iter()
        .filter(|(key, _)| **key != other)
        .map(|(key, count)| (*key, *count))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest = ranked.iter().skip(top).map(|(_, count)| count).sum::<u64>() + counts.get(&other).copied().unwrap_or(0);
    ranked.truncate(top);
    (ranked, rest)
}

fn events(out: &mut Exposition, by_name: &BTreeMap<&str, BTreeMap<(&str, &str), u64>>, top: usize) {
    out.family(&EVENTS);
    for (app, names) in by_name {
        let (ranked, other) = top_and_other(names, top, (OTHER, OTHER));
        for ((kind, name), count) in ranked {
            out.sample(&EVENTS, [app, kind, name], count);
        }
        if other > 0 {
            out.sample(&EVENTS, [app, OTHER, OTHER], other);
        }
    }
}

fn feature_usage(out: &mut Exposition, features: &BTreeMap<&str, BTreeMap<&str, u64>>, top: usize) {
    out.family(&FEATURE_USAGE);
    for (app, used) in features {
        let (ranked, other) = top_and_other(used, top, OTHER);
        for (feature, count) in ranked {
            out.sample(&FEATURE_USAGE, [app, feature], count);
        }
        if other > 0 {
            out.sample(&FEATURE_USAGE, [app, OTHER], other);
        }
    }
}

fn errors(out: &mut Exposition, errors: &BTreeMap<&str, u64>) {
    out.family(&ERRORS);
    for (app, count) in errors {
        out.sample(&ERRORS, [app], count);
    }
}

fn commands(out: &mut Exposition, commands: &BTreeMap<&str, (u64, u64)>) {
    out.family(&COMMANDS);
    for (app, (runs, failed)) in commands {
        out.sample(&COMMANDS, [app, "success"], runs - failed);
        out.sample(&COMMANDS, [app, "failure"], failed);
    }
}

/// The collector's own ingest, commit and stream figures.
fn collector_counters(out: &mut Exposition, metrics: &CollectorMetrics) {
    out.family(&INGEST_EVENTS);
    for (outcome, counter) in [
        ("accepted", &metrics.accepted),
        ("duplicate", &metrics.duplicates),
        ("rejected", &metrics.rejected),
    ] {
        out.sample(&INGEST_EVENTS, [outcome], counter.load(Ordering::Relaxed));
    }
    out.family(&COMMITS);
    out.sample(&COMMITS, [], metrics.commits.load(Ordering::Relaxed));
    out.family(&COMMITTED_EVENTS);
    out.sample(&COMMITTED_EVENTS, [], metrics.committed_events.load(Ordering::Relaxed));
    out.family(&STREAM_SUBSCRIBERS);
    out.sample(
        &STREAM_SUBSCRIBERS,
        [],
        metrics.stream_subscribers.load(Ordering::Relaxed),
    );
}

fn http_requests(out: &mut Exposition, metrics: &CollectorMetrics) {
    let requests = metrics.requests.lock().unwrap_or_else(PoisonError::into_inner).clone();
    out.family(&HTTP_REQUESTS);
    for ((route, status), count) in &requests {
        out.sample(&HTTP_REQUESTS, [route, &status.to_string()], count);
    }
}

/// Time in ended sessions this process stored, per app.
fn session_seconds(out: &mut Exposition, metrics: &CollectorMetrics) {
    let sessions = metrics
        .session_seconds
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    out.family(&SESSION_SECONDS);
    for (app, seconds) in &sessions {
        out.sample(&SESSION_SECONDS, [app], seconds);
    }
}

/// Durations of the commands this process stored, per app and command; commands
/// `suppression` may not name are merged under `other`.
fn command_durations(out: &mut Exposition, metrics: &CollectorMetrics, suppression: &Suppression) {
    const NAME: &str = "tally_command_duration_seconds";
    let recorded = metrics
        .command_durations
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut commands: BTreeMap<(String, String), CommandDurations> = BTreeMap::new();
    for ((app, command), durations) in recorded {
        let named = command == OTHER || suppression.names_command(&app, "command", "command_executed", &command);
        let label = if named { command } else { OTHER.to_owned() };
        let merged = commands.entry((app, label)).or_default();
        for (total, count) in merged.buckets.iter_mut().zip(durations.buckets) {
            *total += count;
        }
        merged.count += durations.count;
        merged.sum += durations.sum;
    }
    histogram_header(
        out,
        NAME,
        "Durations of command_executed events this collector stored, per app and command.",
    );
    for ((app, command), durations) in &commands {
        let labels = format!(
            "app=\"{}\",command=\"{}\"",
            openmetrics::escape_label(app),
            openmetrics::escape_label(command)
        );
        histogram_samples(
            out,
            NAME,
            &labels,
            &COMMAND_BUCKETS,
            &durations.buckets,
            (durations.count, durations.sum),
        );
    }
}

/// The request latency histogram.
fn request_latency(out: &mut Exposition, metrics: &CollectorMetrics) {
    const NAME: &str = "tally_http_request_duration_seconds";
    let latency = metrics.latency.lock().unwrap_or_else(PoisonError::into_inner).clone();
    histogram_header(out, NAME, "Time to answer a request, by route.");
    for (route, Latency { buckets, count, sum }) in &latency {
        let labels = format!("route=\"{}\"", openmetrics::escape_label(route));
        histogram_samples(out, NAME, &labels, &LATENCY_BUCKETS, buckets, (*count, *sum));
    }
}

/// A histogram family's `# HELP`, `# TYPE` and (OpenMetrics) `# UNIT` lines; histograms
/// are written by hand because their `_bucket`, `_sum` and `_count` samples do not fit
/// [`Family`].
fn histogram_header(out: &mut Exposition, name: &str, help: &str) {
    let _ = writeln!(out.text, "# HELP {name} {help}");
    let _ = writeln!(out.text, "# TYPE {name} histogram");
    if out.format == Format::OpenMetrics {
        let _ = writeln!(out.text, "# UNIT {name} seconds");
    }
}

/// One labelled histogram (`labels` already escaped, comma-separated): cumulative
/// buckets, `+Inf`, sum and count.
fn histogram_samples(
    out: &mut Exposition,
    name: &str,
    labels: &str,
    bounds: &[f64],
    buckets: &[u64],
    (count, sum): (u64, f64),
) {
    let mut cumulative = 0;
    for (bound, bucket) in bounds.iter().zip(buckets) {
        cumulative += bucket;
        let _ = writeln!(out.text, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out.text, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out.text, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out.text, "{name}_count{{{labels}}} {count}");
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
