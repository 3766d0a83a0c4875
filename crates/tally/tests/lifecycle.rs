//! Opening, consent, the first-run notice, the buffer and shutdown.

use std::time::{Duration, Instant};

use tally::{Event, Telemetry};

use crate::child;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |tasks| tasks.count())
}

#[test]
fn child_opens_and_records_one_event() {
    if !child::active() {
        return;
    }
    let before = threads();
    let mut builder = Telemetry::builder(child::APP).version("1.0.0");
    // Tests of recovery, not of the exit budget, give the flush thread time to finish
    // on a loaded machine: a run that outlives its budget loses its events on purpose.
    if let Some(ms) = std::env::var("LIFECYCLE_SHUTDOWN_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        builder = builder.shutdown_timeout(Duration::from_millis(ms));
    }
    let telemetry = builder.open();
    let after = threads();
    println!(
        "RESULT enabled={} threads_started={}",
        telemetry.is_enabled(),
        after - before
    );
    telemetry.record(
        Event::builder("command", "command_executed")
            .command("task done")
            .success(true),
    );
}

fn open_and_record(dir: &std::path::Path, envs: &[(&str, &str)]) -> (Vec<String>, String) {
    let mut command = child::command("lifecycle::child_opens_and_records_one_event", dir);
    command.envs(envs.iter().copied());
    let output = child::run(&mut command);
    (
        child::results(&output),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn do_not_track_creates_no_file_and_starts_no_thread() {
    for value in ["1", "true", "yes"] {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("store");
        let (results, stderr) = open_and_record(&dir, &[("DO_NOT_TRACK", value)]);
        assert_eq!(results, ["enabled=false threads_started=0"], "DO_NOT_TRACK={value}");
        assert!(!dir.exists(), "DO_NOT_TRACK={value} created {}", dir.display());
        assert_eq!(stderr, "", "no notice when nothing is recorded");
    }
}

#[test]
fn do_not_track_empty_or_zero_does_not_opt_out() {
    for value in ["", "0"] {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("store");
        let (results, _) = open_and_record(&dir, &[("DO_NOT_TRACK", value)]);
        assert_eq!(results, ["enabled=true threads_started=1"], "DO_NOT_TRACK={value:?}");
        assert!(dir.join("telemetry.db").exists());
    }
}

#[test]
fn app_level_off_in_environment_or_config_records_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let (results, _) = open_and_record(&dir, &[("TESTAPP_TELEMETRY", "off")]);
    assert_eq!(results, ["enabled=false threads_started=0"]);
    assert!(!dir.exists());

    std::fs::write(dir.with_extension("config.toml"), "level = \"off\"\n").unwrap();
    let (results, _) = open_and_record(&dir, &[]);
    assert_eq!(results, ["enabled=false threads_started=0"]);
    assert!(!dir.exists());

    // A value the SDK cannot understand never records more than asked.
    let (results, _) = open_and_record(&dir, &[("TESTAPP_TELEMETRY", "verbose")]);
    assert_eq!(results, ["enabled=false threads_started=0"]);
    std::fs::write(dir.with_extension("config.toml"), "level = [1, 2]\n").unwrap();
    let (results, stderr) = open_and_record(&dir, &[("TESTAPP_TELEMETRY_DEBUG", "1")]);
    assert_eq!(results, ["enabled=false threads_started=0"]);
    assert!(stderr.contains("config file unusable"), "debug mode says why: {stderr}");
    assert!(!dir.exists());
}

#[test]
fn first_run_notice_is_printed_once() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let (_, first) = open_and_record(&dir, &[]);
    assert!(first.contains("testapp records usage telemetry"), "{first}");
    assert!(
        first.contains(&dir.join("telemetry.db").display().to_string()),
        "says where: {first}"
    );
    assert!(first.contains("DO_NOT_TRACK=1"), "says how to turn it off: {first}");
    let (_, second) = open_and_record(&dir, &[]);
    assert_eq!(second, "");
}

#[test]
fn debug_mode_prints_each_event_as_a_json_line() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let (_, stderr) = open_and_record(&dir, &[("TESTAPP_TELEMETRY_DEBUG", "1")]);
    let events: Vec<tally::Event> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).expect("each JSON line is an event"))
        .collect();
    let names: Vec<&str> = events.iter().map(|event| event.name.as_str()).collect();
    assert_eq!(names, ["session_started", "command_executed", "session_ended"]);
}

#[test]
fn child_holds_the_store_locked() {
    if !child::active() {
        return;
    }
    let dir = std::env::var("TESTAPP_TELEMETRY_DIR").unwrap();
    let db = rusqlite::Connection::open(std::path::Path::new(&dir).join("telemetry.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    println!("RESULT locked");
    std::thread::sleep(Duration::from_secs(20));
}

#[test]
fn host_exits_within_the_shutdown_timeout_while_another_process_holds_the_lock() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    // Creates the store: with time to spare, so a loaded machine cannot make this first
    // run spool instead.
    open_and_record(&dir, &[("LIFECYCLE_SHUTDOWN_MS", "10000")]);
    assert!(dir.join("telemetry.db").exists(), "the first run made no store");
    let mut locker = child::command("lifecycle::child_holds_the_store_locked", &dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut output = std::io::BufReader::new(locker.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("RESULT locked") {
        line.clear();
        let read = std::io::BufRead::read_line(&mut output, &mut line).unwrap();
        assert!(read > 0, "the lock holder ended before it held the lock");
    }
    let started = Instant::now();
    let (results, stderr) = open_and_record(&dir, &[]);
    let elapsed = started.elapsed();
    locker.kill().unwrap();
    locker.wait().unwrap();
    assert_eq!(results, ["enabled=true threads_started=1"]);
    assert_eq!(stderr, "");
    // The flush thread waits up to 5 s for the lock; the host must not. The bound is
    // far below that and far above the 100 ms shutdown timeout plus process start.
    assert!(
        elapsed < Duration::from_millis(2_500),
        "host waited {elapsed:?} on a locked store"
    );
}

#[test]
fn child_overflows_the_buffer() {
    if !child::active() {
        return;
    }
    let telemetry = Telemetry::builder(child::APP)
        .first_run_notice(false)
        .buffer_capacity(10)
        .max_batch(1_000)
        .flush_interval(Duration::from_secs(3600))
        .shutdown_timeout(Duration::from_secs(30))
        .open();
    for i in 0..100 {
        telemetry.record(Event::builder("custom", "burst").prop("index", i));
    }
}

#[test]
fn a_full_buffer_drops_the_oldest_and_counts_them() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    child::run(&mut child::command("lifecycle::child_overflows_the_buffer", &dir));
    let db = child::open_db(&dir);
    let stored: i64 = db
        .query_row("SELECT count(*) FROM events WHERE name = 'burst'", [], |row| row.get(0))
        .unwrap();
    let dropped: i64 = db
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'dropped_buffer_full'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    // Every event is either stored or counted; the session events share the buffer.
    let session_events: i64 = db
        .query_row("SELECT count(*) FROM events WHERE type = 'session'", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(stored + dropped + session_events, 102);
    assert!(dropped >= 80, "only {dropped} dropped from a buffer of 10");
    assert!(stored <= 10 && stored > 0);
}

#[test]
fn child_is_turned_off_while_running() {
    if !child::active() {
        return;
    }
    let telemetry = Telemetry::builder(child::APP)
        .first_run_notice(false)
        .flush_interval(Duration::from_millis(20))
        .open();
    telemetry.record(Event::builder("custom", "before_off"));
    assert!(telemetry.flush());
    let config = std::env::var("TESTAPP_TELEMETRY_CONFIG").unwrap();
    std::fs::write(config, "level = \"off\"\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    telemetry.record(Event::builder("custom", "after_off"));
    assert!(telemetry.flush());
}

#[test]
fn turning_off_in_the_config_stops_a_running_app_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    child::run(&mut child::command(
        "lifecycle::child_is_turned_off_while_running",
        &dir,
    ));
    let db = child::open_db(&dir);
    let names: Vec<String> = db
        .prepare("SELECT name FROM events WHERE type = 'custom'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, ["before_off"]);
}

#[test]
fn corrupt_store_is_moved_aside_and_recording_goes_on() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("telemetry.db"),
        b"this is not a database, it is a shopping list".repeat(200),
    )
    .unwrap();
    let (results, _) = open_and_record(&dir, &[("LIFECYCLE_SHUTDOWN_MS", "10000")]);
    assert_eq!(results, ["enabled=true threads_started=1"]);
    let moved: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("telemetry.db.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    let db = child::open_db(&dir);
    let count: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE name = 'command_executed'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn unwritable_location_records_in_memory_and_the_host_is_unharmed() {
    let temp = tempfile::tempdir().unwrap();
    // Tests may run as root, for whom permissions do not stop writes; a path below a
    // regular file cannot be created by anyone.
    let blocker = temp.path().join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let dir = blocker.join("store");
    let (results, stderr) = open_and_record(&dir, &[("TESTAPP_TELEMETRY_DEBUG", "1")]);
    assert_eq!(results, ["enabled=true threads_started=1"]);
    assert!(stderr.contains("in memory only"), "{stderr}");
    assert!(
        stderr.contains("\"name\":\"command_executed\""),
        "events still finished: {stderr}"
    );
}
