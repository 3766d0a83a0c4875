//! Upgrading a store written by an earlier version, and refusing one from a later version.

use std::path::Path;

use rusqlite::Connection;
use tally_store::read::Totals;
use tally_store::rollup::Rollup;
use tally_store::schema::{self, LATEST_VERSION};
use tally_store::sync::SyncStream;
use tally_store::{DB_FILE_NAME, DropCounts, Location, OpenOptions, Recovery, RetentionPolicy, Store, StoreError};

use crate::app_events::{AppRun, now, task_done};

const INSTALL_ID: &str = "5f0c6c1e-8a4b-4d6e-9f00-1234567890ab";
const SECRET_HEX: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const SESSION_ID: &str = "0198a0b1-0000-7000-8000-000000000001";

/// Rows an app on each earlier version would have written, per table, in the columns
/// that table had when it was created. Every table of every version must have one. The
/// collector's tables of versions 3 and 4 are seeded only where a collector would have
/// filled them (an app never did).
fn seeds() -> Vec<(&'static str, String)> {
    vec![
        (
            "meta",
            format!(
                "INSERT INTO meta (key, value) VALUES ('install_id', '{INSTALL_ID}'), \
                 ('secret', '{SECRET_HEX}'), ('dropped_buffer_full', '7'), ('dropped_invalid', '2'), \
                 ('sync_cursor', '1')"
            ),
        ),
        (
            "events",
            format!(
                "INSERT INTO events (id, ts, app, app_version, source, type, name, command, \
                 session_id, install_id, workspace, duration_ms, success, error_category, props) \
                 VALUES \
                 ('0198a0b1-0001-7000-8000-000000000001', '2026-08-01T10:00:00.000Z', 'nexus', \
                  '1.3.0', 'cli', 'command', 'command_executed', 'workspace create', \
                  '{SESSION_ID}', '{INSTALL_ID}', 'h1:00ff', 120, 1, NULL, \
                  '{{\"template\":\"rust\"}}'), \
                 ('0198a0b1-0001-7000-8000-000000000002', '2026-08-01T10:00:02.500Z', 'nexus', \
                  '1.3.0', 'cli', 'command', 'command_executed', 'workspace create', \
                  'run-42', '{INSTALL_ID}', 'h1:00ff', 80, 1, NULL, NULL), \
                 ('0198a0b1-0001-7000-8000-000000000003', '2026-08-01T10:00:03.000Z', 'nexus', \
                  '1.3.0', 'cli', 'error', 'error_occurred', 'sync', \
                  '{SESSION_ID}', '{INSTALL_ID}', 'h1:0123456789abcdef01234567', NULL, 0, 'io', NULL)"
            ),
        ),
        (
            "sessions",
            format!(
                "INSERT INTO sessions (session_id, app, install_id, started_at, ended_at, \
                 duration_ms, commands_executed, workspaces_created, tasks_completed, \
                 errors_encountered) VALUES ('{SESSION_ID}', 'nexus', '{INSTALL_ID}', \
                 '2026-08-01T10:00:00.000Z', '2026-08-01T10:00:03.000Z', 3000, 2, 1, 0, 1)"
            ),
        ),
        (
            // A store with rollups counts its raw events in them too, as every batch does:
            // the two command events and the error of the "events" seed, and an older
            // hour whose raw events have expired.
            "metrics",
            format!(
                "INSERT INTO metrics (hour, app, type, name, command, success, error_category, \
                 count, duration_count, duration_total_ms, duration_min_ms, duration_max_ms, \
                 histogram) VALUES ('2026-05-02T09', 'nexus', 'task', 'task_completed', \
                 'task done', 1, '', 5, 4, 1000, 100, 400, '{}'), \
                 ('2026-08-01T10', 'nexus', 'command', 'command_executed', 'workspace create', 1, '', \
                  2, 2, 200, 80, 120, '{}'), \
                 ('2026-08-01T10', 'nexus', 'error', 'error_occurred', 'sync', 0, 'io', \
                  1, 0, 0, NULL, NULL, '{}')",
                rolled_up_tasks().histogram.to_json(),
                rollup_of(&[Some(120), Some(80)]).histogram.to_json(),
                rollup_of(&[None]).histogram.to_json(),
            ),
        ),
        (
            "installs",
            format!(
                "INSERT INTO installs (app, install_id, first_seen, last_seen) VALUES \
                 ('nexus', '{INSTALL_ID}', '2026-08-01T10:00:00.000Z', '2026-08-01T10:00:03.000Z')"
            ),
        ),
        (
            "totals",
            "INSERT INTO totals (app, type, name, success, count) VALUES \
             ('nexus', 'command', 'command_executed', 1, 2), ('nexus', 'error', 'error_occurred', 0, 1)"
                .to_owned(),
        ),
        (
            "sync_rejected",
            "INSERT INTO sync_rejected (id, ts, code, message, rejected_at) VALUES \
             ('0198a0b1-0001-7000-8000-0000000000ff', '2026-08-01T10:00:00.000Z', 'invalid_event', \
              'name: must be 1 to 64 characters', '2026-08-02T10:00:00.000Z')"
                .to_owned(),
        ),
        (
            "api_keys",
            "INSERT INTO api_keys (id, app, role, secret_hash, label, created_at) VALUES \
             ('k1', 'nexus', 'ingest', 'ab', 'ci', '2026-08-01T10:00:00.000Z')"
                .to_owned(),
        ),
    ]
}

fn rollup_of(durations: &[Option<u64>]) -> Rollup {
    let mut rollup = Rollup::default();
    for duration in durations {
        rollup.add(*duration);
    }
    rollup
}

/// The tasks the seeded rollup row counts.
fn rolled_up_tasks() -> Rollup {
    let mut rolled = Rollup::default();
    for duration in [Some(100), Some(250), Some(250), Some(400), None] {
        rolled.add(duration);
    }
    rolled
}

fn tables(conn: &Connection) -> Vec<String> {
    let mut statement = conn
        // SQLite's own tables (sqlite_sequence, for AUTOINCREMENT) are not ours to seed.
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn schema_sql(conn: &Connection) -> Vec<(String, String, Option<String>)> {
    let mut statement = conn
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Builds `dir/telemetry.db` at `version` the way that version's store opened it, with
/// rows in every table it has; returns the seeded tables.
fn build_store_at(dir: &Path, version: i64) -> Vec<String> {
    let mut conn = Connection::open(dir.join(DB_FILE_NAME)).unwrap();
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).unwrap();
    schema::migrate_to(&mut conn, version).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), version);
    let tables = tables(&conn);
    seed(&conn, &tables, |table| !schema::COLLECTOR_TABLES.contains(&table));
    tables
}

/// Every column of the `events` table (or, from version 7, view) in `seq` order, as
/// SQLite gives them: what a program reading the file sees.
fn event_rows_as_read(conn: &Connection) -> Vec<Vec<rusqlite::types::Value>> {
    let mut statement = conn
        .prepare(
            "SELECT seq, id, ts, app, app_version, source, type, name, command, session_id, install_id, \
             workspace, target_type, target_id, duration_ms, success, error_category, error_message, props \
             FROM events ORDER BY seq",
        )
        .unwrap();
    statement
        .query_map([], |row| (0..19).map(|i| row.get(i)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every column of `sessions` (table or view), as SQLite gives them.
fn session_rows_as_read(conn: &Connection) -> Vec<Vec<rusqlite::types::Value>> {
    let mut statement = conn
        .prepare(
            "SELECT session_id, app, install_id, started_at, ended_at, duration_ms, commands_executed, \
             workspaces_created, tasks_completed, errors_encountered FROM sessions ORDER BY session_id",
        )
        .unwrap();
    statement
        .query_map([], |row| (0..10).map(|i| row.get(i)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// An event's fields in the order of [`event_rows_as_read`] (without `seq`), as text
/// the way the store documents them.
fn documented_columns(event: &tally_core::Event) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let text = |value: Option<&str>| value.map_or(Value::Null, |value| Value::Text(value.to_owned()));
    vec![
        Value::Text(event.id.to_string()),
        Value::Text(tally_core::time::format(event.ts)),
        text(Some(&event.app)),
        text(Some(&event.app_version)),
        text(Some(event.source.as_str())),
        text(Some(&event.kind)),
        text(Some(&event.name)),
        text(event.command.as_deref()),
        text(Some(&event.session_id)),
        text(Some(&event.install_id)),
        text(event.workspace.as_deref()),
        text(event.target_type.as_deref()),
        text(event.target_id.as_deref()),
        event.duration_ms.map_or(Value::Null, |d| Value::Integer(d as i64)),
        event.success.map_or(Value::Null, |s| Value::Integer(i64::from(s))),
        text(event.error_category.as_deref()),
        text(event.error_message.as_deref()),
        if event.props.is_empty() {
            Value::Null
        } else {
            Value::Text(serde_json::to_string(&event.props).unwrap())
        },
    ]
}

/// Inserts the seed rows of each of `tables` that `wanted` picks.
fn seed(conn: &Connection, tables: &[String], wanted: impl Fn(&str) -> bool) {
    let seeds = seeds();
    for table in tables.iter().filter(|table| wanted(table)) {
        let (_, insert) = seeds
            .iter()
            .find(|(name, _)| name == table)
            .unwrap_or_else(|| panic!("table {table} has no seed rows in seeds()"));
        conn.execute_batch(insert).unwrap();
    }
}

/// Totals of the seeded raw events, and of everything seeded (raw events and rollups).
fn seeded_totals(tables: &[String]) -> (Totals, Totals) {
    let has = |name: &str| tables.iter().any(|table| table == name);
    let key = |kind: &str, name: &str, command: &str, success| (kind.into(), name.into(), command.into(), success);
    let mut raw = Totals::new();
    if has("events") {
        let created = raw
            .entry(key("command", "command_executed", "workspace create", 1))
            .or_default();
        created.add(Some(120));
        created.add(Some(80));
        raw.entry(key("error", "error_occurred", "sync", 0))
            .or_default()
            .add(None);
    }
    let mut all = raw.clone();
    if has("metrics") {
        all.insert(key("task", "task_completed", "task done", 1), rolled_up_tasks());
    }
    (raw, all)
}

#[test]
fn every_earlier_schema_upgrades_with_its_rows_intact() {
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = Store::open(fresh_dir.path(), &OpenOptions::default()).unwrap();

    for version in 0..LATEST_VERSION {
        let temp = tempfile::tempdir().unwrap();
        let seeded = build_store_at(temp.path(), version);
        let has_events = seeded.iter().any(|table| table == "events");
        let (events_before, sessions_before) = {
            let conn = Connection::open(temp.path().join(DB_FILE_NAME)).unwrap();
            if has_events {
                // A fourth event, stored and deleted again: its `seq` must never come back.
                conn.execute_batch(
                    "INSERT INTO events (id, ts, app, app_version, source, type, name, session_id, install_id) \
                     VALUES ('0198a0b1-0001-7000-8000-000000000004', '2026-08-01T10:00:04.000Z', 'nexus', \
                     '1.3.0', 'cli', 'command', 'gone', 'run-42', 'i'); DELETE FROM events WHERE seq = 4;",
                )
                .unwrap();
                (event_rows_as_read(&conn), session_rows_as_read(&conn))
            } else {
                (Vec::new(), Vec::new())
            }
        };

        let mut store = Store::open(temp.path(), &OpenOptions::default()).unwrap();
        let from = format!("upgrading from version {version}");
        assert_eq!(schema::version(store.connection()).unwrap(), LATEST_VERSION, "{from}");
        assert_eq!(
            schema::application_id(store.connection()).unwrap(),
            schema::APPLICATION_ID,
            "{from}"
        );
        assert_eq!(schema_sql(store.connection()), schema_sql(fresh.connection()), "{from}");

        let (raw, all) = seeded_totals(&seeded);
        assert_eq!(store.raw_totals().unwrap(), raw, "{from}");
        // Stats read the rollups: events stored before the upgrade must count there too.
        assert_eq!(store.totals().unwrap(), all, "{from}");
        if seeded.iter().any(|table| table == "meta") {
            let identity = store.identity().unwrap();
            assert_eq!(identity.install_id, INSTALL_ID, "{from}");
            assert_eq!(hex::encode(identity.secret), SECRET_HEX, "{from}");
            let drops = store.drop_counts().unwrap();
            assert_eq!((drops.buffer_full, drops.invalid), (7, 2), "{from}");
        }
        if has_events {
            // What a program reading the file sees is unchanged, value for value.
            assert_eq!(event_rows_as_read(store.connection()), events_before, "{from}");
            assert_eq!(session_rows_as_read(store.connection()), sessions_before, "{from}");
            // And the store's own reads give the same events.
            let mut read = Vec::new();
            store
                .for_each_event(&tally_core::time::Period::ALL, |event| {
                    read.push(event);
                    Ok::<_, StoreError>(())
                })
                .unwrap();
            let without_seq: Vec<_> = events_before.iter().map(|row| row[1..].to_vec()).collect();
            assert_eq!(
                read.iter().map(documented_columns).collect::<Vec<_>>(),
                without_seq,
                "{from}"
            );
            // The sync cursor still means the same rows: the first event was answered
            // for, so exactly the other two are still to upload.
            let cursor = store.sync_cursor(SyncStream::Recent).unwrap();
            let pending = store
                .pending_events(SyncStream::Recent, cursor, "2026-08-01T00:00:00Z".parse().unwrap(), 100)
                .unwrap();
            assert_eq!(
                pending
                    .iter()
                    .map(|(seq, event)| (*seq, event.id.to_string()))
                    .collect::<Vec<_>>(),
                vec![
                    (2, "0198a0b1-0001-7000-8000-000000000002".to_owned()),
                    (3, "0198a0b1-0001-7000-8000-000000000003".to_owned())
                ],
                "{from}"
            );
        }
        if seeded.iter().any(|table| table == "sessions") {
            let session = store.session(SESSION_ID).unwrap().expect("the old session row");
            assert_eq!(
                (
                    session.started_at.as_str(),
                    session.ended_at.as_str(),
                    session.duration_ms
                ),
                ("2026-08-01T10:00:00.000Z", "2026-08-01T10:00:03.000Z", 3000),
                "{from}"
            );
            assert_eq!(
                (
                    session.commands_executed,
                    session.workspaces_created,
                    session.errors_encountered
                ),
                (2, 1, 1),
                "{from}"
            );
        }

        // The upgraded store keeps working: a retried old event is still a duplicate,
        // new events go in, and the old events expire without changing totals.
        let run = AppRun::new(SESSION_ID);
        let new_event = run.record(task_done(now()));
        let mut old_event = run.record(task_done(now()));
        old_event.id = "0198a0b1-0001-7000-8000-000000000001".parse().unwrap();
        let outcome = store
            .insert_batch(&[new_event, old_event], DropCounts::default())
            .unwrap();
        let old_events_stored = has_events;
        assert_eq!(outcome.duplicates, usize::from(old_events_stored), "{from}");
        let newest_seq: i64 = store
            .connection()
            .query_row("SELECT max(seq) FROM events", [], |row| row.get(0))
            .unwrap();
        assert_eq!(
            newest_seq,
            if has_events { 5 } else { 2 },
            "{from}: a seq is never reused"
        );
        let totals = store.totals().unwrap();
        let report = store
            .run_maintenance(&RetentionPolicy::default(), now(), &|| false)
            .unwrap();
        assert_eq!(report.expired_for_age, if old_events_stored { 3 } else { 0 }, "{from}");
        assert_eq!(store.totals().unwrap(), totals, "{from}");
        store.quick_check().unwrap();
    }
}

#[test]
fn collector_tables_leave_a_local_store_only_when_empty() {
    for version in [3, 4] {
        let from = format!("upgrading from version {version}");
        // An app's store: the collector's tables were made but never written.
        let temp = tempfile::tempdir().unwrap();
        build_store_at(temp.path(), version);
        let store = Store::open(temp.path(), &OpenOptions::default()).unwrap();
        let left = tables(store.connection());
        for table in schema::COLLECTOR_TABLES {
            assert!(!left.iter().any(|name| name == table), "{from}: {table} is still there");
        }

        // A collector's embedded database: its keys, installs and totals must survive.
        let temp = tempfile::tempdir().unwrap();
        build_store_at(temp.path(), version);
        let conn = Connection::open(temp.path().join(DB_FILE_NAME)).unwrap();
        seed(&conn, &tables(&conn), |table| {
            table == "api_keys" || table == "installs"
        });
        drop(conn);
        let store = Store::open(temp.path(), &OpenOptions::default()).unwrap();
        let conn = store.connection();
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!((count("api_keys"), count("installs")), (1, 1), "{from}");
        assert!(
            !tables(conn).iter().any(|name| name == "totals"),
            "{from}: empty totals stay"
        );
    }
}

/// Makes a store as this build does, then marks it as written by the next version.
fn build_store_from_next_version(dir: &Path, journal_mode: &str) {
    let mut store = Store::open(dir, &OpenOptions::default()).unwrap();
    store
        .insert_batch(
            &[AppRun::new(SESSION_ID).record(task_done(now()))],
            DropCounts::default(),
        )
        .unwrap();
    drop(store);
    let conn = Connection::open(dir.join(DB_FILE_NAME)).unwrap();
    conn.pragma_update(None, "user_version", LATEST_VERSION + 1).unwrap();
    conn.query_row(&format!("PRAGMA journal_mode = {journal_mode}"), [], |_| Ok(()))
        .unwrap();
}

#[test]
fn a_store_from_a_newer_version_is_refused_and_left_untouched() {
    // The next version may keep the WAL journal or not; neither file may be touched.
    for journal_mode in ["WAL", "DELETE"] {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        build_store_from_next_version(dir, journal_mode);
        let path = dir.join(DB_FILE_NAME);
        let bytes = std::fs::read(&path).unwrap();

        let err = Store::open(dir, &OpenOptions::default()).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found, supported }
                if found == LATEST_VERSION + 1 && supported == LATEST_VERSION),
            "{journal_mode}: {err:?}"
        );

        let (mut store, recovery) = Store::open_or_recover(dir, &OpenOptions::default()).unwrap();
        assert!(
            matches!(recovery, Recovery::InMemory { .. }),
            "{journal_mode}: {recovery:?}"
        );
        assert_eq!(store.location(), &Location::Memory);
        let run = AppRun::new(SESSION_ID);
        let outcome = store
            .insert_batch(&[run.record(task_done(now()))], DropCounts::default())
            .unwrap();
        assert_eq!(outcome.inserted, 1);
        assert_eq!(store.event_count().unwrap(), 1);
        drop(store);

        assert!(
            std::fs::read(&path).unwrap() == bytes,
            "{journal_mode}: the newer file was changed"
        );
    }
}
