//! Wall time of one `tally record` process against `true` in the same run (see
//! `docs/BENCHMARKS.md`): what a shell script pays per recorded event.
//!
//! Runs the built `tally` binary as a script would, a fresh process each time:
//! `tally --app bench --dir <tmp> record --type command --name command_executed
//! --command deploy --duration-ms 12 --success`, with the app's config file in a
//! temporary directory. Warm-up runs first create the store, so the timed runs see an
//! existing store, as every call but the first does. `true` and `tally record` runs
//! alternate (true-record, then record-true) so that drift in the machine's load falls
//! on both alike; each run is timed from spawn to exit.
//!
//! `TALLY_RECORD_RUNS` sets the number of timed runs of each kind (default 1000).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const WARM_UP_RUNS: usize = 20;

fn time(command: &mut Command) -> Duration {
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let status = command.status().expect("spawn");
    let elapsed = start.elapsed();
    assert!(status.success(), "{command:?} failed: {status}");
    elapsed
}

fn record(dir: &Path) -> Duration {
    let mut command = Command::new(TALLY);
    command
        .args(["--app", "bench", "--dir"])
        .arg(dir.join("store"))
        .args(["record", "--type", "command", "--name", "command_executed"])
        .args(["--command", "deploy", "--duration-ms", "12", "--success"])
        .env("BENCH_TELEMETRY_CONFIG", dir.join("telemetry.toml"))
        .env_remove("DO_NOT_TRACK")
        .env_remove("BENCH_TELEMETRY")
        .env_remove("BENCH_TELEMETRY_DEBUG");
    time(&mut command)
}

fn baseline() -> Duration {
    time(&mut Command::new("true"))
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

fn stored(dir: &Path) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("store/telemetry.db")).expect("open the store");
    conn.query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .expect("count events")
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        println!("tally record: bench");
        return;
    }
    let runs: usize = std::env::var("TALLY_RECORD_RUNS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000);
    // `cargo test --benches` passes --test: check that it works, do not measure.
    let runs = if std::env::args().any(|arg| arg == "--test") {
        2
    } else {
        runs
    };
    let temp = tempfile::tempdir().expect("temporary directory");
    let dir = temp.path();

    for _ in 0..WARM_UP_RUNS {
        record(dir);
        baseline();
    }
    assert_eq!(stored(dir), WARM_UP_RUNS as i64, "warm-up events should be stored");

    let (mut with, mut without, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let (a, b) = if i % 2 == 0 {
            let a = record(dir);
            (a, baseline())
        } else {
            let b = baseline();
            (record(dir), b)
        };
        with.push(millis(a));
        without.push(millis(b));
        paired.push(millis(a) - millis(b));
    }
    assert_eq!(stored(dir), (WARM_UP_RUNS + runs) as i64, "every run should be stored");

    let (with, without, paired) = (stats(&with), stats(&without), stats(&paired));
    println!("tally record against true: {runs} runs each, alternating, after {WARM_UP_RUNS} warm-up runs each");
    println!();
    println!("| process | median ms | mean ms | p10 ms | p90 ms | min ms | stdev ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, s) in [("true", &without), ("tally record", &with)] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            s.median, s.mean, s.p10, s.p90, s.min, s.stdev
        );
    }
    println!();
    let half_width = 1.96 * paired.stdev / (runs as f64).sqrt();
    println!(
        "added: median {:+.3} ms, mean {:+.3} ms; paired: median {:+.3} ms, mean {:+.3} ms +/- {:.3} ms (95%)",
        with.median - without.median,
        with.mean - without.mean,
        paired.median,
        paired.mean,
        half_width
    );
    println!(
        "target: <= 5 ms added at the median: {}",
        if with.median - without.median <= 5.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
