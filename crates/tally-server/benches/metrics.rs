//! `GET /metrics` render time on a SQLite store holding what 10 million events over 90
//! days leave behind, against `GET /healthz` in the same run (see the "Collector"
//! section of `docs/BENCHMARKS.md`).
//!
//! `cargo bench -p tally-server --bench metrics`
//!
//! Ingesting 10 million events through the collector would take most of an hour, so the
//! store is built directly with SQL: a file made by `SqliteStorage::open` (the collector's
//! own schema), then, in one transaction, the rows 10 million events would have produced:
//!
//! - hourly rollups (`metrics`) for every hour of 90 days, per app, type, name, command,
//!   outcome and error category, with a diurnal cycle and a little noise, rows of zero
//!   events left out; three apps with 7, 2 and 1 million events;
//! - lifetime totals (`totals`) summed from those same rollups, so they add up to exactly
//!   10,000,000;
//! - installs (42,000, 12,000 and 6,000), first seen anywhere in the 90 days and last
//!   seen between then and now, skewed towards recently;
//! - sessions, one per 20 events (500,000);
//! - raw events: `TALLY_BENCH_RAW_EVENTS` of them (default 1,000,000), spread over the
//!   last 9 days. `/metrics` reads none of them; they are there so the file, its page
//!   cache and its indexes look like a real collector's.
//!
//! Every app has 82 kinds of rollup row per hour: `command_executed` for 20 commands,
//! each succeeding or failing; `error_occurred` in 8 categories; 30 feature names;
//! `session_started`, `session_ended`, `workspace_created` and `task_completed`. So 43
//! names per app, more than the 20 that `/metrics` labels one by one (the rest are
//! summed as `other`).
//!
//! The collector (`tally_server::app` on 127.0.0.1:0 in this process) is then scraped
//! `TALLY_BENCH_SCRAPES` times (default 300), alternating with `/healthz`, after 20
//! untimed scrapes of each. Also timed: `tally_server::metrics::render` called directly,
//! without HTTP, and the same scrape on a store a thousand times smaller (10,000
//! events), to show what grows with the store.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use rusqlite::Connection;
use tally_server::config::ServerConfig;
use tally_server::storage::Storage;
use tally_server::storage::sqlite::SqliteStorage;
use tally_server::{AppState, app};
use tally_store::histogram::Histogram;
use tokio::runtime::Runtime;

const DAYS: i64 = 90;
const HOURS: i64 = DAYS * 24;
/// Per app: name, events over the 90 days, installs.
const APPS: [(&str, u64, u64); 3] = [
    ("nexus", 7_000_000, 42_000),
    ("atlas", 2_000_000, 12_000),
    ("ember", 1_000_000, 6_000),
];
const EVENTS_PER_SESSION: u64 = 20;
/// Days of raw events kept in the built store.
const RAW_DAYS: i64 = 9;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let scrapes: usize = env_number("TALLY_BENCH_SCRAPES", 300);
    let raw_events: u64 = env_number("TALLY_BENCH_RAW_EVENTS", 1_000_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    // TALLY_BENCH_KEEP_STORE=DIR builds the stores there and leaves them, to look into.
    let keep = std::env::var_os("TALLY_BENCH_KEEP_STORE").map(std::path::PathBuf::from);
    let place = keep.as_deref().unwrap_or(dir.path());
    let now = tally_core::time::now_millis();

    let big = place.join("ten-million.db");
    let began = Instant::now();
    let built = build_store(&big, now, 1, raw_events);
    println!(
        "built the store in {:.1} s: {} ({:.0} MB)",
        began.elapsed().as_secs_f64(),
        built,
        std::fs::metadata(&big).map_or(0, |meta| meta.len()) as f64 / 1e6
    );
    let big_result = measure(&runtime, &big, scrapes, 10_000_000);

    let small = place.join("ten-thousand.db");
    let small_built = build_store(&small, now, 1_000, 1_000);
    println!("small store: {small_built}");
    let small_result = measure(&runtime, &small, scrapes, 10_000);

    println!("\n/metrics with {scrapes} scrapes each, alternating with /healthz");
    println!("| store | request | median | p90 | p99 | body |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for (store, result) in [("10,000,000 events", &big_result), ("10,000 events", &small_result)] {
        for (label, timings, size) in [
            ("GET /metrics", &result.metrics, result.body_bytes),
            ("GET /healthz (baseline)", &result.healthz, 15),
            ("render() without HTTP", &result.render, result.body_bytes),
        ] {
            let mut timings = timings.clone();
            println!(
                "| {store} | {label} | {} | {} | {} | {size} B |",
                show(percentile(&mut timings, 0.5)),
                show(percentile(&mut timings, 0.9)),
                show(percentile(&mut timings, 0.99)),
            );
        }
    }
    println!("\nWhere a render's time goes: each storage call it makes, timed alone right after each render, median");
    println!("| store | call | median |");
    println!("| --- | --- | ---: |");
    for (store, result) in [("10,000,000 events", &big_result), ("10,000 events", &small_result)] {
        for (call, median) in &result.parts {
            println!("| {store} | {call} | {} |", show(*median));
        }
    }
    let median = |timings: &[Duration]| percentile(&mut timings.to_vec(), 0.5);
    let metrics = median(&big_result.metrics);
    let healthz = median(&big_result.healthz);
    let small_metrics = median(&small_result.metrics);
    println!(
        "\n10M events: /metrics median {} = {:.1}x /healthz ({}); {:.1}x the 10,000-event store ({}); \
         target median <= 10 ms: {}",
        show(metrics),
        metrics.as_secs_f64() / healthz.as_secs_f64(),
        show(healthz),
        metrics.as_secs_f64() / small_metrics.as_secs_f64(),
        show(small_metrics),
        if metrics <= Duration::from_millis(10) {
            "met"
        } else {
            "NOT met"
        }
    );
}

pub(crate) fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------
// Building the store

/// One kind of rollup row: type, name, command, outcome, error category, share of the
/// app's events, typical duration.
struct Kind {
    kind: &'static str,
    name: String,
    command: String,
    success: i64,
    error_category: String,
    weight: f64,
    duration_ms: Option<u64>,
}

fn kinds() -> Vec<Kind> {
    let kind = |kind, name: &str, command: &str, success, error_category: &str, weight, duration_ms| Kind {
        kind,
        name: name.to_owned(),
        command: command.to_owned(),
        success,
        error_category: error_category.to_owned(),
        weight,
        duration_ms,
    };
    let mut kinds = Vec::new();
    for index in 0..20u64 {
        // A few commands are run far more than the rest.
        let weight = 30.0 / (index + 1) as f64;
        let command = format!("command {index}");
        kinds.push(kind(
            "command",
            "command_executed",
            &command,
            1,
            "",
            weight * 0.93,
            Some(40 + index * 25),
        ));
        kinds.push(kind(
            "command",
            "command_executed",
            &command,
            0,
            "",
            weight * 0.07,
            Some(90 + index * 25),
        ));
    }
    for category in [
        "io",
        "network",
        "timeout",
        "parse",
        "permission",
        "not_found",
        "conflict",
        "internal",
    ] {
        kinds.push(kind("error", "error_occurred", "", -1, category, 0.4, None));
    }
    for index in 0..30u64 {
        kinds.push(kind(
            "feature",
            &format!("feature_{index}"),
            "",
            -1,
            "",
            8.0 / (index + 2) as f64,
            None,
        ));
    }
    kinds.push(kind("session", "session_started", "", -1, "", 5.0, None));
    kinds.push(kind("session", "session_ended", "", -1, "", 5.0, Some(600_000)));
    kinds.push(kind("workspace", "workspace_created", "", 1, "", 0.8, Some(300)));
    kinds.push(kind("task", "task_completed", "", 1, "", 6.0, Some(150)));
    kinds
}

/// A deterministic noise source (xorshift64*).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn text(ts: Timestamp) -> String {
    tally_core::time::format(ts)
}

/// Builds the store at `path` for `APPS` with every event count divided by `scale`;
/// returns a summary of the rows written.
pub(crate) fn build_store(path: &Path, now: Timestamp, scale: u64, raw_events: u64) -> String {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    drop(SqliteStorage::open(path).expect("make the collector's schema"));
    let mut conn = Connection::open(path).expect("open the store");
    conn.execute_batch("PRAGMA synchronous = OFF").expect("pragma");
    let tx = conn.transaction().expect("a transaction");
    let kinds = kinds();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let (mut rollup_rows, mut total_rows, mut install_rows, mut session_rows, mut events) = (0, 0, 0, 0, 0u64);
    let first_hour = now - SignedDuration::from_hours(HOURS - 1);
    {
        let mut rollup = tx
            .prepare(
                "INSERT INTO metrics (hour, app, type, name, command, success, error_category, count, \
                 duration_count, duration_total_ms, duration_min_ms, duration_max_ms, histogram) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .expect("prepare");
        let mut total = tx
            .prepare("INSERT INTO totals (app, type, name, success, count) VALUES (?1, ?2, ?3, ?4, ?5)")
            .expect("prepare");
        let mut install = tx
            .prepare("INSERT INTO installs (app, install_id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4)")
            .expect("prepare");
        // The store's compact rows (schema 7): names and install ids numbered in
        // `strings` and `install_ids`, times in Unix milliseconds.
        let mut string = tx
            .prepare("INSERT OR IGNORE INTO strings (value) VALUES (?1)")
            .expect("prepare");
        let mut install_id = tx
            .prepare("INSERT OR IGNORE INTO install_ids (value) VALUES (?1)")
            .expect("prepare");
        let mut session = tx
            .prepare(
                "INSERT INTO session_rows (session_id, app, install_id, started_at, ended_at, duration_ms, \
                 commands_executed) VALUES (?1, (SELECT id FROM strings WHERE value = ?2), \
                 (SELECT id FROM install_ids WHERE value = ?3), ?4, ?5, ?6, ?7)",
            )
            .expect("prepare");
        // A day has a quiet night and a busy afternoon; normalized so the hours sum to 1.
        let diurnal: Vec<f64> = (0..HOURS)
            .map(|hour| 1.0 + 0.6 * ((hour % 24) as f64 / 24.0 * std::f64::consts::TAU).sin())
            .collect();

        for (app, app_events, app_installs) in APPS {
            let app_events = app_events / scale;
            let app_installs = (app_installs / scale).max(1);
            let mut totals = std::collections::BTreeMap::<(&str, &str, i64), u64>::new();
            // Each row's share of the app's events: the hour's place in the day, the
            // kind's weight, and noise. Rounding the running sum keeps the total exact.
            let shares: Vec<f64> = (0..HOURS as usize)
                .flat_map(|hour| kinds.iter().map(move |kind| (hour, kind)))
                .map(|(hour, kind)| diurnal[hour] * kind.weight * (0.8 + 0.4 * noise.unit()))
                .collect();
            let share_sum: f64 = shares.iter().sum();
            let (mut running, mut written) = (0.0, 0u64);
            for hour in 0..HOURS {
                let hour_text =
                    tally_core::time::HourKey::of(first_hour + SignedDuration::from_hours(hour)).to_string();
                for (index, kind) in kinds.iter().enumerate() {
                    running += shares[hour as usize * kinds.len() + index] / share_sum * app_events as f64;
                    let mut count = (running.round() as u64).clamp(written, app_events) - written;
                    if hour == HOURS - 1 && index == kinds.len() - 1 {
                        count = app_events - written;
                    }
                    if count == 0 {
                        continue;
                    }
                    written += count;
                    *totals.entry((kind.kind, &kind.name, kind.success)).or_default() += count;
                    let (duration_count, duration_total, min, max, histogram) = match kind.duration_ms {
                        Some(typical) => {
                            let mut histogram = Histogram::default();
                            histogram.counts[tally_store::histogram::bucket_of(typical)] = count;
                            (count, count * typical, Some(typical / 2), Some(typical * 3), histogram)
                        }
                        None => (0, 0, None, None, Histogram::default()),
                    };
                    rollup
                        .execute(rusqlite::params![
                            hour_text,
                            app,
                            kind.kind,
                            kind.name,
                            kind.command,
                            kind.success,
                            kind.error_category,
                            count as i64,
                            duration_count as i64,
                            duration_total as i64,
                            min.map(|min| min as i64),
                            max.map(|max| max as i64),
                            histogram.to_json(),
                        ])
                        .expect("insert a rollup");
                    rollup_rows += 1;
                }
            }
            assert_eq!(written, app_events, "{app}: the rollups hold every event");
            events += written;
            for ((kind, name, success), count) in totals {
                total
                    .execute(rusqlite::params![app, kind, name, success, count as i64])
                    .expect("insert a total");
                total_rows += 1;
            }
            let span = SignedDuration::from_hours(HOURS);
            for index in 0..app_installs {
                let first_seen = now - span.mul_f64(noise.unit());
                // Skewed towards now: most installs are still in use.
                let since_first = now.duration_since(first_seen).mul_f64(noise.unit().powi(3));
                let last_seen = now - since_first;
                install
                    .execute(rusqlite::params![
                        app,
                        format!("install-{index:06}"),
                        text(first_seen),
                        text(last_seen)
                    ])
                    .expect("insert an install");
                install_rows += 1;
            }
            string.execute([app]).expect("intern the app");
            for index in 0..app_events / EVENTS_PER_SESSION {
                let started = now - span.mul_f64(noise.unit());
                let length = (noise.next() % 3_600_000) as i64;
                let install = format!("install-{:06}", noise.next() % app_installs);
                install_id.execute([&install]).expect("intern the install");
                session
                    .execute(rusqlite::params![
                        format!("{app}-session-{index:08}"),
                        app,
                        install,
                        started.as_millisecond(),
                        started.as_millisecond() + length,
                        length,
                        (noise.next() % 20) as i64,
                    ])
                    .expect("insert a session");
                session_rows += 1;
            }
        }

        let mut raw = tx
            .prepare(
                "INSERT INTO event_rows (id, ts, app, app_version, source, type, name, command, session_id, \
                 install_id, duration_ms, success) VALUES (?1, ?2, (SELECT id FROM strings WHERE value = ?3), \
                 (SELECT id FROM strings WHERE value = ?4), (SELECT id FROM strings WHERE value = 'cli'), \
                 (SELECT id FROM strings WHERE value = ?5), (SELECT id FROM strings WHERE value = ?6), \
                 (SELECT id FROM strings WHERE value = ?7), ?8, (SELECT id FROM install_ids WHERE value = ?9), ?10, ?11)",
            )
            .expect("prepare");
        for value in ["1.4.2", "cli"].into_iter().chain(
            kinds
                .iter()
                .flat_map(|kind| [kind.kind, kind.name.as_str(), kind.command.as_str()]),
        ) {
            string.execute([value]).expect("intern a name");
        }
        let raw_span = SignedDuration::from_hours(RAW_DAYS * 24);
        for index in 0..raw_events {
            let ts = now - raw_span.mul_f64(noise.unit());
            let kind = &kinds[(noise.next() % kinds.len() as u64) as usize];
            let (app, _, installs) = APPS[(index % 10).min(2) as usize];
            let seconds = ts.as_second() as u64;
            let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                seconds,
                ts.subsec_nanosecond() as u32,
            ));
            let install = format!("install-{:06}", noise.next() % (installs / scale).max(1));
            install_id.execute([&install]).expect("intern the install");
            raw.execute(rusqlite::params![
                id.as_bytes(),
                ts.as_millisecond(),
                app,
                "1.4.2",
                kind.kind,
                kind.name,
                (!kind.command.is_empty()).then_some(kind.command.as_str()),
                format!("{app}-session-{:08}", index / EVENTS_PER_SESSION),
                install,
                kind.duration_ms.map(|ms| ms as i64),
                (kind.success >= 0).then_some(kind.success),
            ])
            .expect("insert a raw event");
        }
    }
    tx.commit().expect("commit the store");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    format!(
        "{events} events in {rollup_rows} rollup rows and {total_rows} totals; {install_rows} installs, \
         {session_rows} sessions, {raw_events} raw events"
    )
}

// ---------------------------------------------------------------------------------------
// Scraping

struct Measured {
    metrics: Vec<Duration>,
    healthz: Vec<Duration>,
    render: Vec<Duration>,
    body_bytes: usize,
    /// Median time of each storage call of a render.
    parts: Vec<(String, Duration)>,
}

fn measure(runtime: &Runtime, path: &Path, scrapes: usize, expected_events: u64) -> Measured {
    let store: Arc<dyn Storage> = Arc::new(SqliteStorage::open(path).expect("open the built store"));
    let state = runtime.block_on(async { AppState::new(store, ServerConfig::default()).0 });
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))
        .expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("the bound address"));
    let router = app(state.clone());
    runtime.spawn(async move { axum::serve(listener, router).await });
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let get = |path: &str| -> (Duration, String) {
        let began = Instant::now();
        let mut response = agent.get(&format!("{base}{path}")).call().expect("an answer");
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .expect("a body");
        let elapsed = began.elapsed();
        assert_eq!(response.status(), 200, "{path}: {body}");
        (elapsed, body)
    };

    let (_, exposition) = get("/metrics");
    let counted: u64 = exposition
        .lines()
        .filter(|line| line.starts_with("tally_events_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        counted, expected_events,
        "tally_events_total adds up to the events the store holds"
    );
    for _ in 0..20 {
        get("/metrics");
        get("/healthz");
    }
    let mut measured = Measured {
        metrics: Vec::with_capacity(scrapes),
        healthz: Vec::with_capacity(scrapes),
        render: Vec::with_capacity(scrapes),
        body_bytes: exposition.len(),
        parts: Vec::new(),
    };
    for _ in 0..scrapes {
        measured.metrics.push(get("/metrics").0);
        measured.healthz.push(get("/healthz").0);
    }
    // Each render is followed by each of its storage calls alone, so both see the same
    // machine.
    let calls = storage_calls(runtime, &state);
    let mut call_times = vec![Vec::with_capacity(scrapes); calls.len()];
    for _ in 0..scrapes {
        let began = Instant::now();
        let text = runtime
            .block_on(tally_server::metrics::render(&state, (state.clock)(), false))
            .expect("render");
        measured.render.push(began.elapsed());
        std::hint::black_box(text);
        for ((_, call), times) in calls.iter().zip(&mut call_times) {
            let began = Instant::now();
            call();
            times.push(began.elapsed());
        }
    }
    measured.parts = calls
        .iter()
        .zip(call_times)
        .map(|((name, _), mut times)| (name.clone(), percentile(&mut times, 0.5)))
        .collect();
    measured
}

/// A storage call of a render, by name.
type Call<'a> = (String, Box<dyn Fn() + 'a>);

/// The storage calls one render makes, each to be timed on its own.
fn storage_calls<'a>(runtime: &'a Runtime, state: &'a AppState) -> Vec<Call<'a>> {
    let store = &state.store;
    let now = (state.clock)();
    let since: Vec<Timestamp> = [1, 24, 24 * 7, 24 * 30]
        .iter()
        .map(|hours| now - SignedDuration::from_hours(*hours))
        .collect();
    let last_week = tally_core::time::Period {
        from: since[2],
        to: now,
    };
    let mut calls: Vec<Call<'a>> = vec![(
        "active_installs (1h, 24h, 7d, 30d; every app)".to_owned(),
        Box::new(move || {
            let counts = runtime
                .block_on(store.active_installs(&since))
                .expect("active installs");
            std::hint::black_box(counts);
        }),
    )];
    for (app, _, _) in APPS {
        let rows = runtime.block_on(store.rollups(app, &last_week)).expect("rollups").len();
        calls.push((
            format!("rollups of the last week, {app} ({rows} rows)"),
            Box::new(move || {
                let rows = runtime.block_on(store.rollups(app, &last_week)).expect("rollups");
                std::hint::black_box(rows);
            }),
        ));
    }
    calls.push((
        "totals".to_owned(),
        Box::new(move || {
            std::hint::black_box(runtime.block_on(store.totals()).expect("totals"));
        }),
    ));
    calls
}

pub(crate) fn percentile(values: &mut [Duration], fraction: f64) -> Duration {
    values.sort_unstable();
    values[((values.len() - 1) as f64 * fraction).round() as usize]
}

pub(crate) fn show(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}
