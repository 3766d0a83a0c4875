//! What `Telemetry::record` costs the host's thread, with telemetry on and off, against
//! baselines measured in the same run (see `docs/BENCHMARKS.md`).
//!
//! Telemetry reads its settings from the environment, and this workspace forbids the
//! `unsafe` that `std::env::set_var` needs, so `main` re-runs this binary with
//! `BENCHAPP_TELEMETRY_DIR` and `BENCHAPP_TELEMETRY_CONFIG` pointing into a temporary
//! directory and `DO_NOT_TRACK` removed; the child runs the benchmarks.
//!
//! "On" is the real path: the event is stamped (one clock read) and pushed into the
//! queue, bounded by a counter, while the real flush thread makes its UUIDv7, finishes it
//! and writes batches to SQLite on the other core. Calls are timed in bursts of at most [`BURST`] events into a buffer of
//! [`CAPACITY`], and the queue is flushed to the store, untimed, after each burst, so no
//! timed call ever takes the buffer-full path (dropping the oldest); the child checks
//! afterwards that every recorded event reached the store and none was dropped.

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use crossbeam_queue::SegQueue;
use tally::{Event, EventBuilder, Telemetry};

/// Set in the child that runs the benchmarks.
const CHILD: &str = "TALLY_RECORD_BENCH_CHILD";
/// Most `record` calls timed before the buffer is flushed (untimed).
const BURST: u64 = 10_000;
/// The buffer of the "on" handle: far more than one burst, so nothing is dropped.
const CAPACITY: usize = 1_000_000;

/// The event every variant records.
fn event() -> EventBuilder {
    Event::builder("command", "command_executed")
        .command("task done")
        .duration_ms(3)
        .success(true)
}

/// Times `iters` runs of `step` in bursts of at most [`BURST`], running `between`
/// untimed after each burst.
fn in_bursts<S>(iters: u64, state: &mut S, mut step: impl FnMut(&mut S), mut between: impl FnMut(&mut S)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let burst = left.min(BURST);
        let start = Instant::now();
        for _ in 0..burst {
            step(state);
        }
        total += start.elapsed();
        between(state);
        left -= burst;
    }
    total
}

fn flush(telemetry: &Telemetry) {
    while !telemetry.flush() {}
}

/// What the SDK's buffer does on a push, without a consumer: a `SegQueue` bounded by a
/// length counter (the SDK's `Buffer` is private to the crate).
struct CountedQueue<T> {
    queue: SegQueue<T>,
    len: AtomicUsize,
}

impl<T> CountedQueue<T> {
    fn new() -> Self {
        CountedQueue {
            queue: SegQueue::new(),
            len: AtomicUsize::new(0),
        }
    }

    fn push(&self, item: T) -> usize {
        let before = self.len.fetch_add(1, Ordering::Relaxed);
        self.queue.push(item);
        before
    }

    fn clear(&self) {
        while self.queue.pop().is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn bench_record(c: &mut Criterion, dir: &Path) {
    let mut group = c.benchmark_group("record");
    bench_baselines(&mut group);
    let on = Telemetry::builder("benchapp")
        .version("1.0.0")
        .first_run_notice(false)
        .buffer_capacity(CAPACITY)
        .shutdown_timeout(Duration::from_secs(60))
        .open();
    assert!(on.is_enabled(), "telemetry should be on in the benchmark's child");
    // The store is opened (and its first maintenance run) before anything is timed.
    flush(&on);
    let mut recorded = bench_on(&mut group, &on);
    let disabled = Telemetry::disabled();
    bench_off(&mut group, &disabled, "off: Telemetry::disabled()", true);
    let off_by_env = Telemetry::builder("benchoff")
        .version("1.0.0")
        .first_run_notice(false)
        .open();
    assert!(
        !off_by_env.is_enabled(),
        "BENCHOFF_TELEMETRY=off should turn telemetry off"
    );
    bench_off(&mut group, &off_by_env, "off: BENCHOFF_TELEMETRY=off", false);
    group.finish();

    recorded += interleaved(&on, &disabled);
    drop(on);
    verify(dir, recorded);
}

/// What a push costs without the SDK: nothing, a `Vec`, and the SDK's kind of queue.
fn bench_baselines(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.bench_function("baseline: empty closure", |b| b.iter(|| {}));

    let mut vec: Vec<EventBuilder> = Vec::with_capacity(BURST as usize);
    group.bench_function("baseline: Vec::push(builder)", |b| {
        b.iter_custom(|iters| in_bursts(iters, &mut vec, |vec| black_box(vec).push(event()), |vec| vec.clear()));
    });

    let queue = CountedQueue::new();
    group.bench_function("baseline: counted SegQueue::push(builder.stamp()), no consumer", |b| {
        b.iter_custom(|iters| {
            in_bursts(
                iters,
                &mut (),
                |()| {
                    black_box(black_box(&queue).push(event().stamp()));
                },
                |()| queue.clear(),
            )
        });
    });
}

/// Recording with telemetry on; returns how many events it recorded.
fn bench_on(group: &mut BenchmarkGroup<'_, WallTime>, on: &Telemetry) -> u64 {
    let mut recorded = 0_u64;
    group.bench_function("on", |b| {
        b.iter_custom(|iters| {
            recorded += iters;
            in_bursts(iters, &mut (), |()| black_box(on).record(event()), |()| flush(on))
        });
    });
    group.bench_function("on: record_with", |b| {
        b.iter_custom(|iters| {
            recorded += iters;
            in_bursts(iters, &mut (), |()| black_box(on).record_with(event), |()| flush(on))
        });
    });

    // The same, less the stamping: builders stamped (one clock read) before the clock
    // starts, so the difference from "on" is what the clock read costs.
    let mut stamped: Vec<EventBuilder> = Vec::with_capacity(BURST as usize);
    let refill = |stamped: &mut Vec<EventBuilder>| stamped.extend((0..BURST).map(|_| event().stamp()));
    group.bench_function("on, builder stamped before the clock starts", |b| {
        b.iter_custom(|iters| {
            recorded += iters;
            stamped.clear();
            refill(&mut stamped);
            in_bursts(
                iters,
                &mut stamped,
                |stamped| black_box(on).record(stamped.pop().unwrap()),
                |stamped| {
                    flush(on);
                    stamped.clear();
                    refill(stamped);
                },
            )
        });
    });
    recorded
}

/// Recording with telemetry off, as `name` describes how it was turned off; with
/// `guarded`, also what a host could do to skip building the event.
fn bench_off(group: &mut BenchmarkGroup<'_, WallTime>, off: &Telemetry, name: &str, guarded: bool) {
    group.bench_function(name, |b| {
        b.iter(|| black_box(off).record(event()));
    });
    group.bench_function(format!("{name}, record_with"), |b| {
        b.iter(|| black_box(off).record_with(event));
    });
    if !guarded {
        return;
    }
    group.bench_function(format!("{name}, record guarded by is_enabled()"), |b| {
        b.iter(|| {
            let telemetry = black_box(off);
            if telemetry.is_enabled() {
                telemetry.record(event());
            }
        });
    });
}

/// The same calls interleaved: each round times one burst of [`BURST`] calls of every
/// variant, in a rotating order, so that a change in the machine's load falls on all of
/// them alike; reports the median ns per call and the ratios per round. Returns how many
/// events it recorded with `on`.
fn interleaved(on: &Telemetry, off: &Telemetry) -> u64 {
    let test_mode = std::env::args().any(|arg| arg == "--test");
    let rounds: usize = std::env::var("RECORD_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(if test_mode { 2 } else { 300 });
    let burst = BURST as usize;
    let mut vec: Vec<EventBuilder> = Vec::with_capacity(burst);
    let queue = CountedQueue::new();
    let names = [
        "baseline: Vec::push(builder)",
        "baseline: counted SegQueue::push(builder.stamp()), no consumer",
        "on: record",
        "on: record_with",
        "off (disabled): record",
        "off (disabled): record_with",
        "baseline: empty loop",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); names.len()];
    for round in 0..rounds {
        for k in 0..names.len() {
            let which = (round + k) % names.len();
            let start = Instant::now();
            for _ in 0..burst {
                match which {
                    0 => black_box(&mut vec).push(event()),
                    1 => {
                        black_box(black_box(&queue).push(event().stamp()));
                    }
                    2 => black_box(on).record(event()),
                    3 => black_box(on).record_with(event),
                    4 => black_box(off).record(event()),
                    5 => black_box(off).record_with(event),
                    _ => {
                        black_box(());
                    }
                }
            }
            let elapsed = start.elapsed();
            times[which].push(elapsed.as_secs_f64() * 1e9 / burst as f64);
            match which {
                0 => vec.clear(),
                1 => queue.clear(),
                2 | 3 => flush(on),
                _ => {}
            }
        }
    }
    let median = |samples: &[f64]| {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let quantile = |samples: &[f64], q: f64| {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    };
    println!();
    println!("interleaved: {rounds} rounds, one burst of {BURST} calls per variant per round, order rotating");
    println!();
    println!("| variant | median ns/call | p10 | p90 |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, samples) in names.iter().zip(&times) {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            median(samples),
            quantile(samples, 0.1),
            quantile(samples, 0.9)
        );
    }
    let ratio = |a: usize, b: usize| {
        let ratios: Vec<f64> = times[a].iter().zip(&times[b]).map(|(x, y)| x / y).collect();
        median(&ratios)
    };
    println!();
    println!(
        "on: record / counted SegQueue baseline {:.2}x, / Vec::push {:.2}x; record_with / record {:.2}x (medians of rounds)",
        ratio(2, 1),
        ratio(2, 0),
        ratio(3, 2)
    );
    println!(
        "off: record / record_with {:.1}x; record_with / empty loop {:.2}x (medians of rounds)",
        ratio(4, 5),
        ratio(5, 6)
    );
    (2 * rounds * burst) as u64
}

/// Every timed `record` call wrote its event and none was dropped for a full buffer.
fn verify(dir: &Path, recorded: u64) {
    let conn = rusqlite::Connection::open(dir.join("telemetry.db")).unwrap();
    let stored: u64 = conn
        .query_row(
            "SELECT count(*) FROM events WHERE name = 'command_executed'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let dropped: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'dropped_buffer_full'", [], |row| {
            row.get(0)
        })
        .ok();
    println!("record/on: {recorded} events recorded, {stored} stored, dropped for a full buffer: {dropped:?}");
    assert_eq!(stored, recorded, "every recorded event should be stored");
    assert_eq!(dropped, None, "no event should be dropped for a full buffer");
}

/// The parts of `record` (on), each alone, to show where its time goes.
fn bench_parts(c: &mut Criterion) {
    let mut group = c.benchmark_group("record parts");
    group.bench_function("build and drop the builder", |b| b.iter(|| black_box(event())));
    // What `stamp()` did before it read the clock only once: now on the flush thread.
    group.bench_function("uuid::Uuid::now_v7()", |b| b.iter(uuid::Uuid::now_v7));
    group.bench_function("std::time::SystemTime::now()", |b| b.iter(std::time::SystemTime::now));
    group.bench_function("build, stamp and drop the builder", |b| {
        b.iter(|| black_box(event().stamp()))
    });
    let queue = CountedQueue::new();
    group.bench_function("counted SegQueue::push(builder), no stamp, no consumer", |b| {
        b.iter_custom(|iters| {
            in_bursts(
                iters,
                &mut (),
                |()| {
                    black_box(black_box(&queue).push(event()));
                },
                |()| queue.clear(),
            )
        });
    });
    group.finish();
}

/// Runs this binary again as the benchmark child, with the environment telemetry reads.
fn run_child() -> ExitCode {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = dir.path().join("store");
    let status = Command::new(std::env::current_exe().expect("path of this benchmark"))
        .args(std::env::args_os().skip(1))
        .env(CHILD, &store)
        .env("BENCHAPP_TELEMETRY_DIR", &store)
        .env("BENCHAPP_TELEMETRY_CONFIG", dir.path().join("telemetry.toml"))
        .env("BENCHOFF_TELEMETRY_DIR", dir.path().join("off"))
        .env("BENCHOFF_TELEMETRY_CONFIG", dir.path().join("off.toml"))
        .env("BENCHOFF_TELEMETRY", "off")
        .env_remove("DO_NOT_TRACK")
        .env_remove("BENCHAPP_TELEMETRY")
        .env_remove("BENCHAPP_TELEMETRY_DEBUG")
        .status()
        .expect("run the benchmark child");
    if status.success() {
        ExitCode::SUCCESS
    } else {
        eprintln!("benchmark child failed: {status}");
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let Some(store) = std::env::var_os(CHILD) else {
        return run_child();
    };
    println!("size of EventBuilder: {} bytes", std::mem::size_of::<EventBuilder>());
    let mut criterion = Criterion::default().configure_from_args();
    bench_record(&mut criterion, Path::new(&store));
    bench_parts(&mut criterion);
    criterion.final_summary();
    ExitCode::SUCCESS
}
