//! Wall time of `nexus task done` with telemetry on against off, in the same run (see
//! `docs/BENCHMARKS.md`).
//!
//! Runs the built `nexus` binary as a user would: a fresh process each time, with
//! `NEXUS_HOME`, `NEXUS_TELEMETRY_DIR` and `NEXUS_TELEMETRY_CONFIG` in a temporary
//! directory. Warm-up runs first create the store (and run its first maintenance), so
//! the timed runs see an existing store, as every run but an install's first does. On and
//! off runs alternate (on-off, then off-on) so that drift in the machine's load falls on
//! both alike; each run is timed from spawn to exit.
//!
//! `NEXUS_WALL_RUNS` sets the number of timed runs of each kind (default 1000).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NEXUS: &str = env!("CARGO_BIN_EXE_nexus");
const WARM_UP_RUNS: usize = 20;

struct Dirs {
    home: PathBuf,
    store: PathBuf,
    config: PathBuf,
}

/// Runs `nexus task done bench-task` once and returns how long it took.
fn run(dirs: &Dirs, telemetry_on: bool) -> Duration {
    let mut command = Command::new(NEXUS);
    command
        .args(["task", "done", "bench-task"])
        .env("NEXUS_HOME", &dirs.home)
        .env("NEXUS_TELEMETRY_DIR", &dirs.store)
        .env("NEXUS_TELEMETRY_CONFIG", &dirs.config)
        .env_remove("DO_NOT_TRACK")
        .env_remove("NEXUS_TELEMETRY_DEBUG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if telemetry_on {
        command.env_remove("NEXUS_TELEMETRY");
    } else {
        command.env("NEXUS_TELEMETRY", "off");
    }
    let start = Instant::now();
    let status = command.status().expect("run nexus");
    let elapsed = start.elapsed();
    assert!(status.success(), "nexus failed: {status}");
    elapsed
}

struct Stats {
    median: f64,
    mean: f64,
    p10: f64,
    p90: f64,
    min: f64,
    stdev: f64,
}

/// Statistics of `samples`, in milliseconds.
fn stats(samples: &[f64]) -> Stats {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let at = |q: f64| sorted[((n - 1) as f64 * q).round() as usize];
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let variance = sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1).max(1) as f64;
    Stats {
        median: at(0.5),
        mean,
        p10: at(0.1),
        p90: at(0.9),
        min: sorted[0],
        stdev: variance.sqrt(),
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn stored_commands(store: &Path) -> i64 {
    let conn = rusqlite::Connection::open(store.join("telemetry.db")).expect("open the store");
    conn.query_row(
        "SELECT count(*) FROM events WHERE name = 'command_executed'",
        [],
        |row| row.get(0),
    )
    .expect("count events")
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        println!("nexus task done: bench");
        return;
    }
    let runs: usize = std::env::var("NEXUS_WALL_RUNS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000);
    // `cargo test --benches` passes --test: check that it works, do not measure.
    let runs = if std::env::args().any(|arg| arg == "--test") {
        2
    } else {
        runs
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let dirs = Dirs {
        home: dir.path().join("home"),
        store: dir.path().join("telemetry"),
        config: dir.path().join("telemetry.toml"),
    };

    for _ in 0..WARM_UP_RUNS {
        run(&dirs, true);
        run(&dirs, false);
    }
    assert_eq!(
        stored_commands(&dirs.store),
        WARM_UP_RUNS as i64,
        "warm-up runs should be recorded"
    );

    let mut on = Vec::with_capacity(runs);
    let mut off = Vec::with_capacity(runs);
    let mut paired = Vec::with_capacity(runs);
    for i in 0..runs {
        let (a, b) = if i % 2 == 0 {
            let a = run(&dirs, true);
            (a, run(&dirs, false))
        } else {
            let b = run(&dirs, false);
            (run(&dirs, true), b)
        };
        on.push(millis(a));
        off.push(millis(b));
        paired.push(millis(a) - millis(b));
    }
    assert_eq!(
        stored_commands(&dirs.store),
        (WARM_UP_RUNS + runs) as i64,
        "every run with telemetry on should be recorded"
    );

    let (on, off, paired) = (stats(&on), stats(&off), stats(&paired));
    println!("nexus task done: {runs} runs each, on and off alternating, after {WARM_UP_RUNS} warm-up runs each");
    println!();
    println!("| telemetry | median ms | mean ms | p10 ms | p90 ms | min ms | stdev ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, s) in [("off", &off), ("on", &on)] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            s.median, s.mean, s.p10, s.p90, s.min, s.stdev
        );
    }
    println!();
    let half_width = 1.96 * paired.stdev / (runs as f64).sqrt();
    println!(
        "ratio on/off: median {:.3}x, mean {:.3}x",
        on.median / off.median,
        on.mean / off.mean
    );
    println!(
        "on - off: median {:+.3} ms, mean {:+.3} ms; paired (on minus the off run beside it): median {:+.3} ms, mean {:+.3} ms +/- {:.3} ms (95%)",
        on.median - off.median,
        on.mean - off.mean,
        paired.median,
        paired.mean,
        half_width
    );
    println!(
        "targets: ratio <= 1.05x: {}; difference <= +1 ms: {}",
        if on.median / off.median <= 1.05 {
            "met"
        } else {
            "NOT met"
        },
        if on.median - off.median <= 1.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
