//! `tally ingest` refuses what HTTP ingest refuses: another app's events, timestamps
//! too far ahead, more than 1,000 events in a file, and anything but a regular file
//! (a FIFO is refused at once, not waited on); file names reach the terminal escaped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tally_core::{Event, EventContext, KeyedHasher, Level, Source};

fn event(app: &str, ahead_hours: i64) -> Value {
    let hasher = KeyedHasher::new(&[5; 32]);
    let context = EventContext {
        app,
        app_version: "1.0.0",
        source: Source::Cli,
        session_id: "s-1",
        install_id: "i-1",
        hasher: &hasher,
        level: Level::Enhanced,
    };
    let mut event: Event = Event::builder("command", "command_executed".to_owned())
        .command("build")
        .success(true)
        .finish(&context)
        .unwrap()
        .unwrap();
    event.ts = event
        .ts
        .checked_add(jiff::SignedDuration::from_hours(ahead_hours))
        .unwrap();
    serde_json::to_value(event).unwrap()
}

fn write_batch(path: &Path, events: &[Value]) {
    std::fs::write(path, json!({ "events": events }).to_string()).unwrap();
}

/// Runs `tally --app nexus ingest --db DB FILES...`, killed if it takes over a minute.
fn ingest(db: &Path, files: &[PathBuf]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["--app", "nexus", "ingest", "--db"])
        .arg(db)
        .args(files)
        .env_remove("TALLY_DB")
        .env_remove("TALLY_APP")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("tally ingest still running after a minute: it blocked");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn ingest_keeps_to_the_named_app_and_the_http_rules() {
    let temp = tempfile::tempdir().unwrap();
    let db = temp.path().join("collector.db");
    let mixed = temp.path().join("batch-mixed.json");
    write_batch(
        &mixed,
        &[
            event("nexus", 0),
            event("other", 0),
            event("nexus", 30 * 24),
            event("nexus", 1),
        ],
    );
    let output = ingest(&db, std::slice::from_ref(&mixed));
    let said = text(&output.stdout);
    assert!(output.status.success(), "{said}{}", text(&output.stderr));
    assert!(said.contains("2 stored, 0 already there, 2 refused"), "{said}");
    assert!(
        said.contains("event 1: this key writes app \"nexus\", not \"other\""),
        "{said}"
    );
    assert!(
        said.contains("event 2: ts: must not be more than 24 hours in the future"),
        "{said}"
    );

    // More than max_batch_events: the whole file is refused, as HTTP refuses the batch.
    let large = temp.path().join("batch-large.json");
    write_batch(&large, &(0..1_001).map(|_| event("nexus", 0)).collect::<Vec<_>>());
    let output = ingest(&db, std::slice::from_ref(&large));
    assert!(!output.status.success());
    let complaint = text(&output.stderr);
    assert!(
        complaint.contains("batch has 1001 events; limit max_batch_events = 1000"),
        "{complaint}"
    );
    let again = ingest(&db, std::slice::from_ref(&mixed));
    assert!(
        text(&again.stdout).contains("0 stored, 2 already there, 2 refused"),
        "nothing of the large file was stored: {}",
        text(&again.stdout)
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_at_once_and_names_are_escaped() {
    let temp = tempfile::tempdir().unwrap();
    let db = temp.path().join("collector.db");
    let fifo = temp.path().join("batch-fifo.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let hostile = temp.path().join("batch-\u{1b}]0;owned\u{7}\u{1b}[31m.json");
    write_batch(&hostile, &[event("nexus", 0)]);
    let output = ingest(&db, &[fifo, hostile]);
    let (said, complaint) = (text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "the FIFO is an error: {said}");
    assert!(complaint.contains("batch-fifo.json: not a regular file"), "{complaint}");
    assert!(said.contains("1 stored"), "the other file still loads: {said}");
    for stream in [&said, &complaint] {
        assert!(
            !stream.contains('\u{1b}') && !stream.contains('\u{7}'),
            "raw escape in {stream:?}"
        );
    }
    assert!(said.contains("batch-\\u{1b}]0;owned\\u{7}\\u{1b}[31m.json"), "{said}");
}
