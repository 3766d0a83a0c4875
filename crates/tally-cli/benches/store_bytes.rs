//! Bytes per stored event, before and after the compact layout (store schema 7), and
//! what migrating a large store costs (see `docs/BENCHMARKS.md`, section 4).
//!
//! 1. **after**: `tally --app nexus --dir DIR --now NOW demo --days 90 --events N` writes
//!    the store as this build does (schema 7).
//! 2. **before**: a store at schema 6 (`Store::open_file_at(.., 6)`) gets the same
//!    events, in the same order and in batches of 500 like the demo's, through the
//!    SQL of the version-6 write path: the events as text into `events`, the session
//!    upsert and its duration, then the same rollups and meta. Its tables and indexes
//!    are the ones a version-6 build would have written.
//! 3. **migrated**: a copy of the before store, opened by `Store::open` (migration 7
//!    and the incremental vacuum after it, timed), then checkpointed (timed).
//!
//! For each store: file size over events, and the bytes of each table and index from
//! SQLite's `dbstat`. `STORE_BYTES_EVENTS` (default 1,000,000) sets N.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use rusqlite::Connection;
use tally_store::{DB_FILE_NAME, OpenOptions, Store};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const NOW: &str = "2026-11-22T12:00:00Z";
/// The demo's flush size, and the replay's.
const BATCH: i64 = 500;
/// The version before the compact layout.
const BEFORE: i64 = 6;

fn main() {
    let events: u64 = std::env::var("STORE_BYTES_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000);
    // `STORE_BYTES_DIR` keeps the stores there (and reuses an `after` store already made).
    let temp = tempfile::tempdir().unwrap();
    let root = std::env::var_os("STORE_BYTES_DIR").map_or_else(|| temp.path().to_owned(), Into::into);
    let (after, before, migrated) = (root.join("after"), root.join("before"), root.join("migrated"));
    for dir in [&before, &migrated] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
    }
    if after.join(DB_FILE_NAME).exists() {
        println!("after: reusing {}", after.display());
    } else {
        make_after(&after, events);
    }

    let start = Instant::now();
    replay_at_version_6(&after, &before);
    println!(
        "before: the same events through the version-6 write path took {:.1} s",
        start.elapsed().as_secs_f64()
    );

    std::fs::copy(before.join(DB_FILE_NAME), migrated.join(DB_FILE_NAME)).unwrap();
    let start = Instant::now();
    let store = Store::open(&migrated, &OpenOptions::default()).unwrap();
    let migration = start.elapsed();
    let start = Instant::now();
    let checkpointed = store.checkpoint_now(std::time::Duration::from_secs(5)).unwrap();
    let checkpoint = start.elapsed();
    assert!(checkpointed);
    drop(store);
    println!(
        "migrated: `Store::open` of the before store (migration 7 and its incremental_vacuum) took {:.1} s, \
         then wal_checkpoint(TRUNCATE) {:.1} s",
        migration.as_secs_f64(),
        checkpoint.as_secs_f64()
    );
    for (label, dir) in [
        ("before (schema 6)", &before),
        ("after (schema 7)", &after),
        ("migrated from schema 6", &migrated),
    ] {
        report(label, dir);
    }
}

/// The store as this build writes it: `tally demo`.
fn make_after(after: &Path, events: u64) {
    let start = Instant::now();
    let status = Command::new(TALLY)
        .args(["--app", "nexus", "--dir"])
        .arg(after)
        .args(["--now", NOW, "demo", "--days", "90", "--events", &events.to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    println!(
        "after: `tally demo --days 90 --events {events}` took {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

fn file_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(DB_FILE_NAME)).unwrap().len()
}

/// Writes the events of the store in `from` into a new version-6 store in `to`.
fn replay_at_version_6(from: &Path, to: &Path) {
    drop(Store::open_file_at(&to.join(DB_FILE_NAME), &OpenOptions::default(), BEFORE).unwrap());
    let mut conn = Connection::open(to.join(DB_FILE_NAME)).unwrap();
    // The store's per-connection pragmas.
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA secure_delete = ON;")
        .unwrap();
    conn.execute(
        "ATTACH DATABASE ?1 AS compact",
        [from.join(DB_FILE_NAME).to_str().unwrap()],
    )
    .unwrap();
    let last: i64 = conn
        .query_row("SELECT coalesce(max(seq), 0) FROM compact.event_rows", [], |row| {
            row.get(0)
        })
        .unwrap();
    let mut first = 0;
    while first < last {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        // Version 6's statements: the event as text, the session upsert, its duration.
        tx.execute(
            "INSERT OR IGNORE INTO events (seq, id, ts, app, app_version, source, type, name, command, session_id, \
             install_id, workspace, target_type, target_id, duration_ms, success, error_category, error_message, props) \
             SELECT seq, id, ts, app, app_version, source, type, name, command, session_id, install_id, workspace, \
             target_type, target_id, duration_ms, success, error_category, error_message, props \
             FROM compact.events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
            (first, first + BATCH),
        )
        .unwrap();
        tx.execute(
            "INSERT INTO sessions (session_id, app, install_id, started_at, ended_at, duration_ms, commands_executed, \
             workspaces_created, tasks_completed, errors_encountered) \
             SELECT session_id, app, install_id, min(ts), max(ts), 0, sum(name = 'command_executed'), \
             sum(name = 'workspace_created'), sum(name = 'task_completed'), sum(name = 'error_occurred') \
             FROM main.events WHERE seq > ?1 AND seq <= ?2 GROUP BY app, install_id, session_id \
             ON CONFLICT (app, install_id, session_id) DO UPDATE SET \
             started_at = min(started_at, excluded.started_at), ended_at = max(ended_at, excluded.ended_at), \
             commands_executed = commands_executed + excluded.commands_executed, \
             workspaces_created = workspaces_created + excluded.workspaces_created, \
             tasks_completed = tasks_completed + excluded.tasks_completed, \
             errors_encountered = errors_encountered + excluded.errors_encountered",
            (first, first + BATCH),
        )
        .unwrap();
        tx.execute(
            "UPDATE sessions SET duration_ms = \
             CAST(round((unixepoch(ended_at, 'subsec') - unixepoch(started_at, 'subsec')) * 1000) AS INTEGER) \
             WHERE (app, install_id, session_id) IN \
             (SELECT app, install_id, session_id FROM main.events WHERE seq > ?1 AND seq <= ?2)",
            (first, first + BATCH),
        )
        .unwrap();
        tx.commit().unwrap();
        first += BATCH;
    }
    conn.execute_batch(
        "INSERT INTO metrics SELECT * FROM compact.metrics; \
         INSERT OR REPLACE INTO meta SELECT * FROM compact.meta; DETACH DATABASE compact;",
    )
    .unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

/// Prints bytes per event for the store in `dir`: the file, and each table and index.
fn report(label: &str, dir: &Path) {
    let conn = Connection::open(dir.join(DB_FILE_NAME)).unwrap();
    let events: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap();
    let (pages, free, page_size): (i64, i64, i64) = conn
        .query_row(
            "SELECT page_count, freelist_count, page_size FROM pragma_page_count, pragma_freelist_count, \
             pragma_page_size",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    let size = file_size(dir);
    println!(
        "\n{label}: {events} events, file {:.1} MB = {:.1} B/event ({} free pages; pages in use {:.1} B/event)",
        size as f64 / 1e6,
        size as f64 / events as f64,
        free,
        ((pages - free) * page_size) as f64 / events as f64
    );
    let mut statement = conn
        .prepare("SELECT name, sum(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC")
        .unwrap();
    let rows = statement
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
        .unwrap();
    println!("| table or index | MB | B/event |\n| --- | ---: | ---: |");
    for row in rows {
        let (name, bytes) = row.unwrap();
        if bytes * 1000 < size as i64 {
            continue;
        }
        println!(
            "| `{name}` | {:.1} | {:.1} |",
            bytes as f64 / 1e6,
            bytes as f64 / events as f64
        );
    }
}
