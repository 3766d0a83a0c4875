//! A writer killed with SIGKILL at any moment: every batch it reported committed is
//! stored whole, no batch is stored in part, and the file stays sound.
//!
//! The writer is this test binary run again as a child process, executing only
//! [`child_writes_batches_until_killed`], which does nothing unless [`CHILD_DIR`] is set.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tally_core::Event;
use tally_store::{DropCounts, OpenOptions, Store};

use crate::app_events::{AppRun, before, now, task_done};
use crate::prng::XorShift;

/// The store directory the child writes to; its absence makes the child test a no-op.
const CHILD_DIR: &str = "TALLY_STORE_TEST_CRASH_DIR";
/// The number of the child's first batch, so batches stay unique across children.
const CHILD_FIRST_BATCH: &str = "TALLY_STORE_TEST_CRASH_FIRST_BATCH";
const CHILD_TEST: &str = "crash::child_writes_batches_until_killed";

/// Kills per run: 200, or `TALLY_SIGKILL_ITERATIONS` for the long run
/// (`TALLY_SIGKILL_ITERATIONS=1000`, result in docs/BENCHMARKS.md).
const ITERATIONS_VARIABLE: &str = "TALLY_SIGKILL_ITERATIONS";
const DEFAULT_ITERATIONS: u64 = 200;
const BATCH_EVENTS: u64 = 50;
/// Kill delays are drawn from `0..MAX_KILL_DELAY_US`.
const MAX_KILL_DELAY_US: u64 = 40_000;
/// A child the parent failed to kill stops on its own after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(10);

#[test]
fn child_writes_batches_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let first_batch: u64 = std::env::var(CHILD_FIRST_BATCH).unwrap().parse().unwrap();
    let mut store = Store::open(Path::new(&dir), &OpenOptions::default()).unwrap();
    let run = AppRun::new(&format!("crash-child-{first_batch}"));
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready").unwrap();
    stdout.flush().unwrap();
    let started = Instant::now();
    for batch in first_batch.. {
        if started.elapsed() > CHILD_LIFETIME {
            break;
        }
        let events: Vec<Event> = (0..BATCH_EVENTS)
            .map(|index| {
                let ts = before(now(), (BATCH_EVENTS - index) as i64);
                run.record(task_done(ts).prop("batch", batch as i64).prop("index", index as i64))
            })
            .collect();
        store.insert_batch(&events, DropCounts::default()).unwrap();
        writeln!(stdout, "committed {batch}").unwrap();
        stdout.flush().unwrap();
    }
}

/// What a killed child printed.
struct ChildRun {
    committed: Vec<u64>,
    output: String,
}

/// Runs the child on `dir` and kills it `delay` after it is ready to write (or after it
/// starts, when `kill_while_opening`).
fn run_child_and_kill(dir: &Path, first_batch: u64, delay: Duration, kill_while_opening: bool) -> ChildRun {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_FIRST_BATCH, first_batch.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut output = String::new();
    if !kill_while_opening {
        while stdout.read_line(&mut output).unwrap() > 0 && !output.ends_with("ready\n") {}
    }
    std::thread::sleep(delay);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    stdout.read_to_string(&mut output).unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child ended before it was killed: {status}\nstdout:\n{output}\nstderr:\n{stderr}"
    );
    let committed = output
        .lines()
        .filter_map(|line| line.strip_prefix("committed "))
        .map(|batch| batch.parse().unwrap())
        .collect();
    ChildRun { committed, output }
}

/// Events per batch among the events stored after `after_seq`.
fn batches_stored_after(store: &Store, after_seq: i64) -> BTreeMap<u64, u64> {
    let mut statement = store
        .connection()
        .prepare(
            "SELECT json_extract(props, '$.batch'), count(*) FROM events WHERE seq > ?1 \
             GROUP BY json_extract(props, '$.batch')",
        )
        .unwrap();
    statement
        .query_map([after_seq], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn sigkill_never_leaves_half_a_batch() {
    let temp = tempfile::tempdir().unwrap();
    let dir: PathBuf = temp.path().join("store");
    let mut next_batch = 0;
    let mut last_seq = 0;
    let mut batches_stored = 0;
    let iterations = std::env::var(ITERATIONS_VARIABLE).map_or(DEFAULT_ITERATIONS, |text| {
        text.parse()
            .unwrap_or_else(|_| panic!("{ITERATIONS_VARIABLE}={text:?}: must be a whole number"))
    });
    for iteration in 0..iterations {
        let mut random = XorShift::seeded(iteration);
        let delay = Duration::from_micros(random.below(MAX_KILL_DELAY_US));
        // Most kills land while batches are written; some land while the child opens
        // the store, which on the first iteration means while it creates the schema.
        let kill_while_opening = iteration % 10 == 0;
        let child = run_child_and_kill(&dir, next_batch, delay, kill_while_opening);
        let context = format!(
            "iteration {iteration}, killed after {delay:?}{}; child printed:\n{}",
            if kill_while_opening { " from its start" } else { "" },
            child.output
        );

        let store = Store::open(&dir, &OpenOptions::default()).unwrap();
        store.quick_check().unwrap_or_else(|err| panic!("{err}; {context}"));
        let stored = batches_stored_after(&store, last_seq);
        for batch in &child.committed {
            assert_eq!(stored.get(batch), Some(&BATCH_EVENTS), "batch {batch}; {context}");
        }
        // Only the batch in flight at the kill may be stored without having been
        // reported: its commit can land just before the child dies.
        let in_flight = child.committed.last().map_or(next_batch, |batch| batch + 1);
        for (batch, events) in &stored {
            assert_eq!(*events, BATCH_EVENTS, "batch {batch} is stored in part; {context}");
            assert!(
                child.committed.contains(batch) || *batch == in_flight,
                "batch {batch} was never written; {context}"
            );
        }
        batches_stored += stored.len() as u64;
        assert_eq!(
            store.event_count().unwrap(),
            batches_stored * BATCH_EVENTS,
            "earlier batches changed; {context}"
        );
        // The rollups commit with the events: they count exactly the stored batches.
        assert_eq!(
            store.status().unwrap().events_ever,
            batches_stored * BATCH_EVENTS,
            "the rollups disagree with the events; {context}"
        );
        next_batch = in_flight + 1;
        last_seq = store
            .connection()
            .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |row| row.get(0))
            .unwrap();
    }
    eprintln!("sigkill_never_leaves_half_a_batch: {iterations} kills, {batches_stored} batches stored whole");
    assert!(
        batches_stored > iterations,
        "only {batches_stored} batches were written: the kills came too early to test anything"
    );
}
