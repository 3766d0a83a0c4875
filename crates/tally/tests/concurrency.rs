//! Many processes of one app recording into one store at once.

use std::time::Duration;

use tally::{Event, Telemetry};

use crate::child;

const PROCESSES: usize = 8;
const EVENTS_PER_PROCESS: usize = 5_000;

#[test]
fn child_records_load() {
    if !child::active() {
        return;
    }
    // A generous shutdown timeout: this test is about every event arriving, so the
    // final flush may wait for the other seven processes.
    let telemetry = Telemetry::builder(child::APP)
        .version("1.0.0")
        .first_run_notice(false)
        .shutdown_timeout(Duration::from_secs(60))
        .open();
    assert!(telemetry.is_enabled());
    for i in 0..EVENTS_PER_PROCESS {
        telemetry.record(
            Event::builder("command", "load_event")
                .command("task done")
                .duration_ms(i as u64 % 700)
                .success(i % 10 != 0),
        );
    }
    drop(telemetry);
}

#[test]
fn eight_processes_write_one_store_without_loss() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            child::command("concurrency::child_records_load", &dir)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        // No error reaches the host: not even a line on stderr.
        assert_eq!(String::from_utf8_lossy(&output.stderr), "", "the host saw output");
    }
    let db = child::open_db(&dir);
    let count: i64 = db
        .query_row("SELECT count(*) FROM events WHERE name = 'load_event'", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(count as usize, PROCESSES * EVENTS_PER_PROCESS);
    let sessions: i64 = db
        .query_row("SELECT count(*) FROM sessions", [], |row| row.get(0))
        .unwrap();
    assert_eq!(sessions as usize, PROCESSES);
    let dropped: Option<String> = db
        .query_row("SELECT value FROM meta WHERE key = 'dropped_buffer_full'", [], |row| {
            row.get(0)
        })
        .ok();
    assert_eq!(dropped, None, "events were dropped");
    let check: String = db.query_row("PRAGMA quick_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
}
