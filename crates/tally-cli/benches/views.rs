//! The local views on a large store: `tally status`, `stats --month`, `insights` and
//! `report --month` on a store written with 1,000,000 events, against baselines measured
//! in the same run (see `docs/BENCHMARKS.md`, section 4).
//!
//! The store is made once per run, untimed as far as the views go:
//!
//! 1. `tally --app bench --dir DIR --now NOW demo --events 1000000 --days 365` writes a
//!    deterministic year of history (the same seed and `NOW` give the same store on every
//!    run), with rollups for every event.
//! 2. `Store::run_maintenance` with 90 days of retention and no size cap deletes the raw
//!    events older than 90 days, as the SDK's daily maintenance would. The store then
//!    holds raw events for 90 days and rollups for the whole year.
//!
//! `VIEWS_DAYS` (default 365) changes the days of history and `VIEWS_RETENTION_DAYS`
//! (default 90; `none` skips step 2) the maintenance: `VIEWS_DAYS=90
//! VIEWS_RETENTION_DAYS=none` makes the store of issue 10 (`tally demo --days 90
//! --events 1000000`, every raw event kept). `VIEWS_SETUP_SQL` is run on the store once
//! it is made, to try what an index would change before a migration adds it.
//! `VIEWS_COMPARE_TALLY=PATH` also times another build of `tally` (say, the one before
//! a change) in the same rounds, and prints each view's time against it.
//!
//! Then every round runs each of these once, in a rotating order, and times it:
//!
//! - the real binary (`env!("CARGO_BIN_EXE_tally")`), from spawn to exit, output
//!   discarded: `--version` (process start), `status`, `stats --month`, `insights`,
//!   `report --month --format html` and `report --month` (text);
//! - in this process, each with a connection of its own: what `stats --month` asks of the
//!   store (`Store::open` and `summarize`), what `insights` asks of it (a summary of
//!   this month and the one before, and the last 20,000 commands), what `report` asks of
//!   it (the two months and the month's latest 5 failures), and two naive raw-SQL
//!   scans that compute the same month's per-command counts and durations from raw
//!   events with rusqlite, to show what the rollups save.
//!
//! `VIEWS_EVENTS` (default 1,000,000) and `VIEWS_RUNS` (rounds, default 200) change the
//! size of the run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rusqlite::Connection;
use tally_store::stats::Period;
use tally_store::{OpenOptions, RetentionPolicy, Store};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
/// The time every part of the run treats as now, so that each run measures the same store.
const NOW: &str = "2026-11-22T12:00:00Z";
/// Days of history, unless `VIEWS_DAYS` says otherwise.
const DAYS: u32 = 365;
/// Raw events kept by maintenance, unless `VIEWS_RETENTION_DAYS` says otherwise.
const RETENTION_DAYS: u32 = 90;
/// `stats --month` and `insights` cover the last 30 days.
const MONTH_DAYS: i64 = 30;
/// The commands `insights` reads to find repeated sequences.
const SEQUENCE_WINDOW: u64 = 20_000;
/// The latest failures of its period `report` lists.
const LATEST_FAILURES: u64 = 5;
const WARM_UP_RUNS: usize = 5;
/// Issue 10's targets, per view, in milliseconds.
const TARGETS_MS: [(usize, &str, f64); 4] = [
    (STATUS, "status", 30.0),
    (STATS, "stats --month", 50.0),
    (INSIGHTS, "insights", 50.0),
    (REPORT_HTML, "report --month --format html", 80.0),
];

/// What the store is made of.
struct StoreShape {
    events: u64,
    days: u32,
    /// Days of raw events maintenance keeps; `None` keeps them all.
    retention_days: Option<u32>,
}

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// Runs `tally` with `args` and returns how long it took, from spawn to exit.
fn tally(dir: &Path, args: &[&str]) -> Duration {
    run_tally(Path::new(TALLY), dir, args)
}

/// Runs the `tally` at `binary` with `args` and returns how long it took.
fn run_tally(binary: &Path, dir: &Path, args: &[&str]) -> Duration {
    let mut command = Command::new(binary);
    if args != ["--version"] {
        command.args(["--app", "bench", "--dir"]).arg(dir).args(["--now", NOW]);
    }
    command
        .args(args)
        .env_remove("TALLY_APP")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let status = command.status().expect("run tally");
    let elapsed = start.elapsed();
    assert!(status.success(), "tally {args:?} failed: {status}");
    elapsed
}

fn month() -> Period {
    Period::last_days(now(), MONTH_DAYS)
}

/// The month's bounds widened to whole hours, as the rollups cover it, so that the raw
/// scans count exactly the events the rollups count.
/// The period widened to whole hours, as Unix milliseconds: `event_rows.ts`.
fn hour_bounds(period: &Period) -> (i64, i64) {
    let (first, end) = period.hours();
    (first.start().as_millisecond(), end.start().as_millisecond())
}

/// The store's own table, as a program that knows the layout would query it (the
/// documented `events` view turns every row back into text, which these baselines are
/// not about): command names through `strings`, times in milliseconds.
const COMMANDS_OF_THE_MONTH: &str = "FROM event_rows \
     WHERE name = (SELECT id FROM strings WHERE value = 'command_executed') AND ts >= ?1 AND ts < ?2";

/// Runs, failures, and the sum, minimum and maximum duration of one command.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    runs: u64,
    failures: u64,
    duration_total_ms: u64,
    duration_min_ms: Option<u64>,
    duration_max_ms: Option<u64>,
}

/// What `stats --month` asks of the store: it opens it and summarises the month from the rollups.
fn rollup_summary(dir: &Path) -> BTreeMap<String, (Counts, Option<u64>)> {
    let store = Store::open(dir, &OpenOptions::default()).unwrap();
    let summary = store.summarize(&month(), &TimeZone::system()).unwrap();
    summary
        .by_command
        .into_iter()
        .map(|command| {
            let median = command.p50_ms();
            let counts = Counts {
                runs: command.runs,
                failures: command.failures,
                duration_total_ms: command.durations.duration_total_ms,
                duration_min_ms: command.durations.duration_min_ms,
                duration_max_ms: command.durations.duration_max_ms,
            };
            (command.command, (counts, median))
        })
        .collect()
}

/// What `insights` asks of the store: this month and the one before from the rollups,
/// and the last commands from raw events.
fn insights_queries(dir: &Path) -> usize {
    let store = Store::open(dir, &OpenOptions::default()).unwrap();
    let tz = TimeZone::system();
    let (current, previous) = store.summarize_with_previous(&month(), &tz).unwrap();
    let recent = store.recent_commands(&month(), SEQUENCE_WINDOW).unwrap();
    current.by_command.len() + previous.by_command.len() + recent.len()
}

/// What `report --month` asks of the store: this month and the one before from the
/// rollups, and the latest failures from raw events.
fn report_queries(dir: &Path) -> usize {
    let store = Store::open(dir, &OpenOptions::default()).unwrap();
    let tz = TimeZone::system();
    let (current, previous) = store.summarize_with_previous(&month(), &tz).unwrap();
    let failures = store.recent_errors(&month(), LATEST_FAILURES).unwrap();
    current.by_command.len() + previous.by_command.len() + failures.len()
}

/// Only the last 20,000 commands, which `insights` reads from raw events.
fn recent_commands(dir: &Path) -> usize {
    let store = Store::open(dir, &OpenOptions::default()).unwrap();
    store.recent_commands(&month(), SEQUENCE_WINDOW).unwrap().len()
}

fn raw_connection(dir: &Path) -> Connection {
    Connection::open_with_flags(
        dir.join(tally_store::DB_FILE_NAME),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

/// Naive, in SQL: the month's per-command runs, failures and durations, grouped over raw events.
fn raw_group_by(dir: &Path) -> BTreeMap<String, Counts> {
    let conn = raw_connection(dir);
    let (from, to) = hour_bounds(&month());
    let mut statement = conn
        .prepare(&format!(
            "SELECT (SELECT value FROM strings WHERE id = command), count(*), sum(success = 0), sum(duration_ms), \
             min(duration_ms), max(duration_ms) {COMMANDS_OF_THE_MONTH} GROUP BY command"
        ))
        .unwrap();
    statement
        .query_map((from, to), |row| {
            Ok((
                row.get::<_, Option<String>>(0)?.unwrap_or_default(),
                Counts {
                    runs: row.get::<_, i64>(1)? as u64,
                    failures: row.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64,
                    duration_total_ms: row.get::<_, Option<i64>>(3)?.unwrap_or(0) as u64,
                    duration_min_ms: row.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    duration_max_ms: row.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                },
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Naive, in Rust: every command of the month read from raw events, for exact medians.
fn raw_rows_median(dir: &Path) -> BTreeMap<String, (u64, u64, Option<u64>)> {
    let conn = raw_connection(dir);
    let (from, to) = hour_bounds(&month());
    let mut statement = conn
        .prepare(&format!(
            "SELECT (SELECT value FROM strings WHERE id = command), success, duration_ms {COMMANDS_OF_THE_MONTH}"
        ))
        .unwrap();
    let mut rows = statement.query((from, to)).unwrap();
    let mut per_command: BTreeMap<String, (u64, u64, Vec<u64>)> = BTreeMap::new();
    while let Some(row) = rows.next().unwrap() {
        let command: String = row.get::<_, Option<String>>(0).unwrap().unwrap_or_default();
        let entry = per_command.entry(command).or_default();
        entry.0 += 1;
        if row.get::<_, Option<bool>>(1).unwrap() == Some(false) {
            entry.1 += 1;
        }
        if let Some(duration) = row.get::<_, Option<i64>>(2).unwrap() {
            entry.2.push(duration as u64);
        }
    }
    per_command
        .into_iter()
        .map(|(command, (runs, failures, mut durations))| {
            durations.sort_unstable();
            let median = (!durations.is_empty()).then(|| durations[(durations.len() - 1) / 2]);
            (command, (runs, failures, median))
        })
        .collect()
}

/// Writes the store the views read, and reports what it holds and how long it took.
fn make_store(dir: &Path, shape: &StoreShape) {
    let start = Instant::now();
    let StoreShape { events, days, .. } = *shape;
    let events_arg = events.to_string();
    let days_arg = days.to_string();
    tally(dir, &["demo", "--events", &events_arg, "--days", &days_arg]);
    let demo = start.elapsed();
    println!(
        "store: `tally demo --events {events} --days {days}` took {:.1} s",
        demo.as_secs_f64()
    );

    let mut store = Store::open(dir, &OpenOptions::default()).unwrap();
    if let Some(retention_days) = shape.retention_days {
        let start = Instant::now();
        let policy = RetentionPolicy {
            retention_days,
            max_bytes: u64::MAX,
        };
        let report = store.run_maintenance(&policy, now(), &|| false).unwrap();
        assert!(report.completed);
        println!(
            "store: maintenance ({retention_days} days, no size cap) took {:.1} s and deleted {} raw events; \
             {:.1} MB before it",
            start.elapsed().as_secs_f64(),
            report.expired_for_age,
            report.bytes_before as f64 / 1e6
        );
    } else {
        println!("store: no maintenance, every raw event kept");
    }

    let conn = store.connection();
    if let Ok(sql) = std::env::var("VIEWS_SETUP_SQL") {
        let start = Instant::now();
        conn.execute_batch(&sql).expect("VIEWS_SETUP_SQL");
        println!(
            "store: VIEWS_SETUP_SQL ({sql}) took {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
    println!(
        "store: {} raw events, {} events in rollups, {} rollup rows, {} sessions, {:.1} MB",
        count("SELECT count(*) FROM events"),
        count("SELECT coalesce(sum(count), 0) FROM metrics"),
        count("SELECT count(*) FROM metrics"),
        count("SELECT count(*) FROM sessions"),
        store.size_bytes().unwrap() as f64 / 1e6
    );
    let (from, to) = hour_bounds(&month());
    let month_raw: i64 = conn
        .query_row(
            "SELECT count(*) FROM event_rows WHERE ts >= ?1 AND ts < ?2",
            (from, to),
            |row| row.get(0),
        )
        .unwrap();
    let (first_hour, end_hour) = month().hours();
    let (from_hour, to_hour) = (first_hour.to_string(), end_hour.to_string());
    let month_rollups: i64 = conn
        .query_row(
            "SELECT count(*) FROM metrics WHERE hour >= ?1 AND hour < ?2",
            (from_hour, to_hour),
            |row| row.get(0),
        )
        .unwrap();
    println!("store: the month ({from} to {to}) holds {month_raw} raw events in {month_rollups} rollup rows");
}

/// Checks that the raw scans compute what the rollups give, and shows it.
fn check_baselines(dir: &Path) {
    let rollups = rollup_summary(dir);
    let grouped = raw_group_by(dir);
    let exact = raw_rows_median(dir);
    println!();
    println!(
        "| command | runs (rollups) | runs (raw) | failures (rollups) | failures (raw) | median, rollup estimate | median, exact from raw |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (command, (counts, estimate)) in &rollups {
        let raw = &grouped[command];
        println!(
            "| {command} | {} | {} | {} | {} | {} ms | {} ms |",
            counts.runs,
            raw.runs,
            counts.failures,
            raw.failures,
            estimate.unwrap_or(0),
            exact[command].2.unwrap_or(0)
        );
        assert_eq!(counts, raw, "rollups and raw events disagree on {command}");
        assert_eq!((counts.runs, counts.failures), (exact[command].0, exact[command].1));
    }
    assert_eq!(rollups.len(), grouped.len());
}

struct Stats {
    median: f64,
    mean: f64,
    p10: f64,
    p90: f64,
    min: f64,
}

/// Statistics of `samples`, in milliseconds.
fn stats(samples: &[f64]) -> Stats {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let at = |q: f64| sorted[((n - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        mean: sorted.iter().sum::<f64>() / n as f64,
        p10: at(0.1),
        p90: at(0.9),
        min: sorted[0],
    }
}

fn median(samples: &[f64]) -> f64 {
    stats(samples).median
}

type Measure = Box<dyn Fn(&Path) -> Duration>;

fn timed<T: 'static>(work: fn(&Path) -> T) -> Measure {
    Box::new(move |dir| {
        let start = Instant::now();
        std::hint::black_box(work(dir));
        start.elapsed()
    })
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        println!("views: bench");
        return;
    }
    // `cargo test --benches` passes --test: check that it works on a small store.
    let test_mode = std::env::args().any(|arg| arg == "--test");
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let retention_days = match std::env::var("VIEWS_RETENTION_DAYS") {
        Ok(value) if value == "none" => None,
        Ok(value) => Some(value.parse().expect("VIEWS_RETENTION_DAYS: a number of days or `none`")),
        Err(_) => Some(RETENTION_DAYS),
    };
    let (shape, runs) = if test_mode {
        let shape = StoreShape {
            events: 20_000,
            days: DAYS,
            retention_days: Some(RETENTION_DAYS),
        };
        (shape, 2)
    } else {
        let shape = StoreShape {
            events: env("VIEWS_EVENTS", 1_000_000),
            days: env("VIEWS_DAYS", DAYS.into()) as u32,
            retention_days,
        };
        (shape, env("VIEWS_RUNS", 200) as usize)
    };

    let temp = tempfile::tempdir().expect("temporary directory");
    let dir = temp.path();
    make_store(dir, &shape);
    check_baselines(dir);

    let mut kinds = kinds();
    let other = std::env::var_os("VIEWS_COMPARE_TALLY").map(std::path::PathBuf::from);
    if let Some(other) = &other {
        kinds.extend(other_kinds(other));
    }
    let times = measure(dir, &kinds, runs);
    print_table(&kinds, &times, runs);
    print_ratios(&times);
    if let Some(other) = &other {
        print_comparison(other, &times);
    }
}

/// The kinds the ratios and targets refer to, by their index in [`kinds`].
const START: usize = 0;
const STATUS: usize = 1;
const STATS: usize = 2;
const INSIGHTS: usize = 3;
const REPORT_HTML: usize = 4;
const REPORT_TEXT: usize = 5;
const SUMMARIZE: usize = 6;
const RAW_GROUP_BY: usize = 9;
const RAW_ROWS: usize = 10;

/// What is measured, in the order of the indexes above.
fn kinds() -> Vec<(&'static str, Measure)> {
    vec![
        (
            "tally --version (process start)",
            Box::new(|dir| tally(dir, &["--version"])),
        ),
        ("tally status", Box::new(|dir| tally(dir, &["status"]))),
        ("tally stats --month", Box::new(|dir| tally(dir, &["stats", "--month"]))),
        ("tally insights", Box::new(|dir| tally(dir, &["insights"]))),
        (
            "tally report --month --format html",
            Box::new(|dir| tally(dir, &["report", "--month", "--format", "html"])),
        ),
        (
            "tally report --month (text)",
            Box::new(|dir| tally(dir, &["report", "--month"])),
        ),
        (
            "in process: open + summarize (what stats --month reads)",
            timed(rollup_summary),
        ),
        (
            "in process: open + summarize_with_previous + recent_commands (what insights reads)",
            timed(insights_queries),
        ),
        (
            "in process: open + recent_commands(20,000) alone",
            timed(recent_commands),
        ),
        (
            "in process: naive raw SQL, GROUP BY command over the month",
            timed(raw_group_by),
        ),
        (
            "in process: naive raw SQL, the month's rows into Rust, exact medians",
            timed(raw_rows_median),
        ),
        (
            "in process: open + summarize_with_previous + the month's 5 latest failures (what report reads)",
            timed(report_queries),
        ),
    ]
}

/// The views of `VIEWS_COMPARE_TALLY` (another build of `tally`, such as the one before a
/// change), timed in the same rounds as this build's, in the order of [`COMPARED`].
fn other_kinds(other: &Path) -> Vec<(&'static str, Measure)> {
    COMPARED
        .iter()
        .map(|(_, name, args)| {
            let other = other.to_owned();
            let measure: Measure = Box::new(move |dir| run_tally(&other, dir, args));
            (*name, measure)
        })
        .collect()
}

/// The views compared with `VIEWS_COMPARE_TALLY`: this build's kind, and the other's
/// name and arguments.
const COMPARED: [(usize, &str, &[&str]); 6] = [
    (START, "VIEWS_COMPARE_TALLY --version", &["--version"]),
    (STATUS, "VIEWS_COMPARE_TALLY status", &["status"]),
    (STATS, "VIEWS_COMPARE_TALLY stats --month", &["stats", "--month"]),
    (INSIGHTS, "VIEWS_COMPARE_TALLY insights", &["insights"]),
    (
        REPORT_HTML,
        "VIEWS_COMPARE_TALLY report --month --format html",
        &["report", "--month", "--format", "html"],
    ),
    (
        REPORT_TEXT,
        "VIEWS_COMPARE_TALLY report --month",
        &["report", "--month"],
    ),
];

/// This build against `VIEWS_COMPARE_TALLY`, view by view, as medians of the per-round
/// ratios (both ran in every round, so load that comes and goes hits both alike).
fn print_comparison(other: &Path, times: &[Vec<f64>]) {
    let first = times.len() - COMPARED.len();
    println!();
    println!("this build against {}:", other.display());
    for (index, (kind, name, _)) in COMPARED.iter().enumerate() {
        let theirs = &times[first + index];
        let ratios: Vec<f64> = times[*kind].iter().zip(theirs).map(|(x, y)| x / y).collect();
        println!(
            "  {}: median {:.2} ms against {:.2} ms, {:.2}x (median of rounds)",
            name.trim_start_matches("VIEWS_COMPARE_TALLY "),
            median(&times[*kind]),
            median(theirs),
            median(&ratios)
        );
    }
}

/// Runs every kind once per round, in a rotating order after warm-up rounds; returns
/// each kind's times in milliseconds.
fn measure(dir: &Path, kinds: &[(&str, Measure)], runs: usize) -> Vec<Vec<f64>> {
    for _ in 0..WARM_UP_RUNS {
        for (_, measure) in kinds {
            measure(dir);
        }
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); kinds.len()];
    for round in 0..runs {
        for k in 0..kinds.len() {
            let which = (round + k) % kinds.len();
            times[which].push(kinds[which].1(dir).as_secs_f64() * 1e3);
        }
    }
    times
}

fn print_table(kinds: &[(&str, Measure)], times: &[Vec<f64>], runs: usize) {
    println!();
    println!(
        "views: {runs} rounds, every kind once per round in a rotating order, after {WARM_UP_RUNS} warm-up rounds"
    );
    println!();
    println!("| kind | median ms | mean ms | p10 ms | p90 ms | min ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for ((name, _), samples) in kinds.iter().zip(times) {
        let s = stats(samples);
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            s.median, s.mean, s.p10, s.p90, s.min
        );
    }
}

/// The views against process start and status, the rollups against naive SQL, and
/// the target, each as a median over rounds (the kinds of one round ran within a
/// second of each other).
fn print_ratios(times: &[Vec<f64>]) {
    let per_round = |a: usize, b: usize| -> f64 {
        let ratios: Vec<f64> = times[a].iter().zip(&times[b]).map(|(x, y)| x / y).collect();
        median(&ratios)
    };
    let minus_per_round = |a: usize, b: usize| -> f64 {
        let diffs: Vec<f64> = times[a].iter().zip(&times[b]).map(|(x, y)| x - y).collect();
        median(&diffs)
    };
    println!();
    let views = [
        (STATUS, "status"),
        (STATS, "stats --month"),
        (INSIGHTS, "insights"),
        (REPORT_HTML, "report --month --format html"),
        (REPORT_TEXT, "report --month"),
    ];
    for (view, name) in views {
        println!(
            "{name}: {:.2}x process start, {:+.2} ms over it; {:.2}x status; {:.2}x naive GROUP BY; {:.2}x naive rows \
             into Rust (medians of rounds)",
            per_round(view, START),
            minus_per_round(view, START),
            per_round(view, STATUS),
            per_round(view, RAW_GROUP_BY),
            per_round(view, RAW_ROWS)
        );
    }
    for (raw, name) in [(RAW_GROUP_BY, "GROUP BY"), (RAW_ROWS, "rows into Rust")] {
        println!(
            "naive raw SQL ({name}) / the rollups' summarize: {:.1}x (median of rounds)",
            per_round(raw, SUMMARIZE)
        );
    }
    for (view, name, target) in TARGETS_MS {
        let med = median(&times[view]);
        println!(
            "target <= {target} ms, {name}: median {med:.2} ms: {}",
            if med <= target { "met" } else { "NOT met" }
        );
    }
}
