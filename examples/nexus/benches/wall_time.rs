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
//! Two cases, in the same run: the store free, and the store held by another
//! process's write transaction for the whole of the timed runs (as a long purge,
//! ingest or backup would), where the host must still exit within its 100 ms budget.
//! After each case every recorded event must be in the store once the spool is folded.
//!
//! `NEXUS_WALL_RUNS` sets the number of timed runs of each kind (default 1000);
//! `NEXUS_BIN` measures another build of nexus (for a before/after comparison).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NEXUS: &str = env!("CARGO_BIN_EXE_nexus");
/// Timed runs of the held case, relative to the free case's (each held run of a
/// writer may wait for the lock a while).
const HELD_SHARE: usize = 4;
const WARM_UP_RUNS: usize = 20;

struct Dirs {
    home: PathBuf,
    store: PathBuf,
    config: PathBuf,
}

/// Runs `nexus task done bench-task` once and returns how long it took.
fn run(dirs: &Dirs, telemetry_on: bool) -> Duration {
    let bin = std::env::var_os("NEXUS_BIN").unwrap_or_else(|| NEXUS.into());
    let mut command = Command::new(bin);
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
    max: f64,
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
        max: sorted[n - 1],
        stdev: variance.sqrt(),
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// `command_executed` events in the store, after folding in what was spooled.
fn stored_commands(store: &Path) -> i64 {
    tally_store::Store::open(store, &tally_store::OpenOptions::default())
        .and_then(|mut store| store.fold_spools(&|| false))
        .expect("fold the spool");
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

    println!(
        "nexus task done ({}), on and off alternating, after {WARM_UP_RUNS} warm-up runs each",
        std::env::var("NEXUS_BIN").unwrap_or_else(|_| "this build".into())
    );
    let free = measure(&dirs, runs);
    report("store free", runs, &free);
    assert_eq!(
        stored_commands(&dirs.store),
        (WARM_UP_RUNS + runs) as i64,
        "every run with telemetry on should be recorded"
    );

    let held_runs = (runs / HELD_SHARE).max(2);
    let holder = rusqlite::Connection::open(dirs.store.join("telemetry.db")).expect("open the store");
    holder.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
    let held = measure(&dirs, held_runs);
    holder.execute_batch("ROLLBACK").expect("release the write lock");
    report("store held by another process throughout", held_runs, &held);
    run(&dirs, true);
    assert_eq!(
        stored_commands(&dirs.store),
        (WARM_UP_RUNS + runs + held_runs + 1) as i64,
        "every run with telemetry on should be recorded, the held ones too"
    );
    let (free_on, free_off) = (stats(&free.0), stats(&free.1));
    let held_on = stats(&held.0);
    println!(
        "targets: free, on - off mean <= +0.5 ms: {}; held, slowest on run <= 100 ms over the slowest off run: {}",
        verdict(free_on.mean - free_off.mean <= 0.5),
        verdict(held_on.max - stats(&held.1).max <= 100.0)
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// Times `runs` runs with telemetry on and as many off, alternating; returns the on
/// and off times and the paired differences, in milliseconds.
fn measure(dirs: &Dirs, runs: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut on = Vec::with_capacity(runs);
    let mut off = Vec::with_capacity(runs);
    let mut paired = Vec::with_capacity(runs);
    for i in 0..runs {
        let (a, b) = if i % 2 == 0 {
            let a = run(dirs, true);
            (a, run(dirs, false))
        } else {
            let b = run(dirs, false);
            (run(dirs, true), b)
        };
        on.push(millis(a));
        off.push(millis(b));
        paired.push(millis(a) - millis(b));
    }
    (on, off, paired)
}

fn report(case: &str, runs: usize, samples: &(Vec<f64>, Vec<f64>, Vec<f64>)) {
    let (on, off, paired) = (stats(&samples.0), stats(&samples.1), stats(&samples.2));
    println!();
    println!("{case}: {runs} runs each");
    println!();
    println!("| telemetry | median ms | mean ms | p10 ms | p90 ms | min ms | max ms | stdev ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, s) in [("off", &off), ("on", &on)] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            s.median, s.mean, s.p10, s.p90, s.min, s.max, s.stdev
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
}
