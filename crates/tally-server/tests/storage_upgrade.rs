//! A collector database written before the embedded backend had its own schema (the
//! store's version 4, whose migration 3 made `installs`, `totals` and `api_keys`)
//! keeps its keys, installs and totals when this build opens it; and a database of every
//! earlier collector schema, on either backend, gets its install activity and per-day
//! rollups filled from what it holds.

use jiff::Timestamp;
use rusqlite::Connection;
use tally_core::Event;
use tally_server::storage::sqlite::{SqliteStorage, schema};
use tally_server::storage::{Role, Storage, TotalRow};

const SECRET_HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Writes `path` as the previous release's collector left it: the store's schema 4,
/// with a key, an install and totals in the tables that schema gave the collector.
fn write_previous_release_db(path: &std::path::Path) {
    let mut conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).unwrap();
    tally_store::schema::migrate_to(&mut conn, 4).unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO api_keys (id, app, role, secret_hash, label, created_at, revoked_at) VALUES \
           ('k1', 'nexus', 'admin', '{SECRET_HASH}', 'ops', '2026-08-01T10:00:00.000Z', NULL); \
         INSERT INTO installs (app, install_id, first_seen, last_seen) VALUES \
           ('nexus', 'install-1', '2026-08-01T10:00:00.000Z', '2026-08-01T10:05:00.000Z'); \
         INSERT INTO totals (app, type, name, success, count) VALUES \
           ('nexus', 'command', 'command_executed', 1, 41);"
    ))
    .unwrap();
}

fn command_event(ts: &str) -> Event {
    serde_json::from_value(serde_json::json!({
        "id": uuid::Uuid::now_v7(), "ts": ts, "app": "nexus", "app_version": "1.0.0",
        "source": "cli", "type": "command", "name": "command_executed", "success": true,
        "session_id": "session-1", "install_id": "install-1",
    }))
    .unwrap()
}

#[tokio::test]
async fn a_collector_database_of_the_previous_release_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    write_previous_release_db(&path);

    let storage = SqliteStorage::open(&path).unwrap();
    let key = storage.key("k1").await.unwrap().expect("the old key");
    assert_eq!(
        (key.app.as_str(), key.role, key.label.as_str()),
        ("nexus", Role::Admin, "ops")
    );
    assert_eq!(hex::encode(key.secret_hash), SECRET_HASH);
    assert_eq!(storage.keys().await.unwrap(), vec![key]);
    let since_august: Timestamp = "2026-08-01T00:00:00Z".parse().unwrap();
    assert_eq!(
        storage.active_installs(&[since_august]).await.unwrap(),
        vec![("nexus".to_owned(), vec![1])]
    );
    let total = |count| TotalRow {
        app: "nexus".into(),
        kind: "command".into(),
        name: "command_executed".into(),
        success: 1,
        count,
    };
    assert_eq!(storage.totals().await.unwrap(), vec![total(41)]);

    // New batches add to what the old tables hold.
    storage
        .insert(vec![command_event("2026-08-02T09:00:00Z")])
        .await
        .unwrap();
    assert_eq!(storage.totals().await.unwrap(), vec![total(42)]);
    let since_today: Timestamp = "2026-08-02T00:00:00Z".parse().unwrap();
    assert_eq!(
        storage.active_installs(&[since_today]).await.unwrap(),
        vec![("nexus".to_owned(), vec![1])],
        "last_seen moved on"
    );
    drop(storage);

    let conn = Connection::open(&path).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), schema::LATEST_VERSION);
    assert_eq!(
        tally_store::schema::version(&conn).unwrap(),
        tally_store::schema::LATEST_VERSION
    );
}

#[tokio::test]
async fn a_new_collector_database_gets_the_collector_tables_and_an_app_store_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    let storage = SqliteStorage::open(&path).unwrap();
    storage
        .insert(vec![command_event("2026-08-02T09:00:00Z")])
        .await
        .unwrap();
    assert_eq!(storage.totals().await.unwrap().len(), 1);
    drop(storage);

    let app_dir = tempfile::tempdir().unwrap();
    let app_store = tally_store::Store::open(app_dir.path(), &tally_store::OpenOptions::default()).unwrap();
    drop(app_store);
    let conn = Connection::open(app_dir.path().join(tally_store::DB_FILE_NAME)).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for table in ["installs", "totals", "api_keys", "collector_schema"] {
        assert!(
            !tables.iter().any(|name| name == table),
            "an app's store has {table}: {tables:?}"
        );
    }
}

#[tokio::test]
async fn an_older_collector_database_gets_the_session_index_and_one_apps_sessions_are_read_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    {
        // The store's tables as that collector left them (version 6: every collector
        // version before 6 ran against them).
        let mut conn = Connection::open(&path).unwrap();
        tally_store::schema::migrate_to(&mut conn, schema::STORE_VERSION_OF_EARLY_MIGRATIONS).unwrap();
        schema::migrate_to(&mut conn, 1).unwrap();
    }
    let storage = SqliteStorage::open(&path).unwrap();
    storage
        .insert(vec![
            command_event("2026-08-02T09:00:00Z"),
            command_event("2026-08-02T09:30:00Z"),
        ])
        .await
        .unwrap();
    let day = tally_core::time::Period {
        from: "2026-08-02T00:00:00Z".parse().unwrap(),
        to: "2026-08-03T00:00:00Z".parse().unwrap(),
    };
    let summary = storage.sessions("nexus", &day).await.unwrap();
    assert_eq!((summary.count, summary.avg_duration_ms), (1, Some(30.0 * 60_000.0)));
    drop(storage);

    let conn = Connection::open(&path).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), schema::LATEST_VERSION);
    assert_eq!(
        tally_store::schema::version(&conn).unwrap(),
        tally_store::schema::LATEST_VERSION
    );
    // The statement `tally_store`'s session summary runs for one app: the dashboard asks
    // it twice per load, so it must be answered from the index without reading rows.
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT count(*), avg(duration_ms) FROM session_rows \
             WHERE app = (SELECT id FROM strings WHERE value = ?3) AND started_at >= ?1 AND started_at < ?2",
        )
        .unwrap()
        .query_map((1_785_628_800_000_i64, 1_785_715_200_000_i64, "nexus"), |row| {
            row.get(3)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan.iter()
            .any(|step| step.contains("COVERING INDEX session_rows_app_started_at_duration_ms")),
        "{plan:?}"
    );
}

/// The month of the raw events these tests write into an old PostgreSQL schema (the
/// collector makes partitions as it writes; raw SQL needs its own).
const AUGUST_PARTITION: &str = "CREATE TABLE events_2026_08 PARTITION OF events \
     FOR VALUES FROM ('2026-08-01 00:00:00+00') TO ('2026-09-01 00:00:00+00')";

/// What an older database holds that shows when installs were active, by the collector
/// schema version that has the table: raw events and sessions (every version), installs'
/// first and last sightings (SQLite 1, PostgreSQL 4) and counts-only days (SQLite 4,
/// PostgreSQL 9).
const ACTIVITY_ROWS: [(&str, &str); 4] = [
    (
        "events",
        "INSERT INTO events (id, ts, app, app_version, source, type, name, session_id, install_id) VALUES \
         ('0190a000-0000-7000-8000-000000000001', '2026-08-02T09:15:00.000Z', 'nexus', '1.0.0', 'cli', \
          'command', 'command_executed', 'session-raw', 'raw')",
    ),
    (
        "sessions",
        "INSERT INTO sessions (session_id, app, install_id, started_at, ended_at, duration_ms) VALUES \
         ('session-sess', 'nexus', 'sess', '2026-08-03T05:00:00.000Z', '2026-08-03T07:10:00.000Z', 7800000)",
    ),
    (
        "installs",
        "INSERT INTO installs (app, install_id, first_seen, last_seen) VALUES \
         ('nexus', 'old', '2026-07-01T03:00:00.000Z', '2026-07-20T22:30:00.000Z')",
    ),
    (
        "count_uploads",
        "INSERT INTO count_uploads (app, install_id, day, events, counts, received_at) VALUES \
         ('nexus', 'counted', '2026-08-04', 3, '[]', '2026-08-05T00:00:00.000Z')",
    ),
];

/// Two hourly rollup rows of one day, timed, with their histograms as each backend
/// stores them (`{histogram}` is replaced).
const METRICS_ROWS: &str = "INSERT INTO metrics (hour, app, type, name, command, success, error_category, count, \
     duration_count, duration_total_ms, duration_min_ms, duration_max_ms, histogram) VALUES \
     ('2026-08-02T09', 'nexus', 'command', 'command_executed', 'build', 1, '', 3, 2, 30, 10, 20, {h1}), \
     ('2026-08-02T17', 'nexus', 'command', 'command_executed', 'build', 1, '', 4, 4, 80, 5, 40, {h2}), \
     ('2026-08-02T17', 'nexus', 'feature', 'dark_mode', '', -1, '', 7, 0, 0, NULL, NULL, {h0})";

/// A histogram of 31 buckets with `count` in bucket `at`, as SQLite's JSON or
/// PostgreSQL's array literal.
fn histogram(at: usize, count: u64, postgres: bool) -> String {
    let mut buckets = vec![0u64; tally_store::histogram::BUCKETS];
    buckets[at] = count;
    let list = buckets.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    if postgres {
        format!("'{{{list}}}'")
    } else {
        format!("'[{list}]'")
    }
}

fn metrics_rows(postgres: bool) -> String {
    METRICS_ROWS
        .replace("{h1}", &histogram(3, 2, postgres))
        .replace("{h2}", &histogram(5, 4, postgres))
        .replace("{h0}", &histogram(0, 0, postgres))
}

/// Checks what the activity backfill found, given which of [`ACTIVITY_ROWS`]' tables the
/// old database had, then that a new batch adds to it.
async fn assert_activity_backfilled(storage: &dyn Storage, had: &[&str], case: &str) {
    let hour = |start: &str| {
        let from: Timestamp = start.parse().unwrap();
        tally_core::time::Period {
            from,
            to: from.checked_add(jiff::SignedDuration::from_hours(1)).unwrap(),
        }
    };
    let has = |table: &str| u64::from(had.contains(&table));
    let windows = [
        (hour("2026-08-02T09:00:00Z"), has("events")),
        (hour("2026-08-03T05:00:00Z"), has("sessions")),
        (hour("2026-08-03T07:00:00Z"), has("sessions")),
        // Between a session's ends nothing is known.
        (hour("2026-08-03T06:00:00Z"), 0),
        (hour("2026-07-01T03:00:00Z"), has("installs")),
        (hour("2026-07-20T22:00:00Z"), has("installs")),
        // Between first and last sighting, days whose events are gone stay unknown.
        (hour("2026-07-10T12:00:00Z"), 0),
        (hour("2026-08-04T00:00:00Z"), has("count_uploads")),
    ];
    let periods: Vec<_> = windows.iter().map(|(period, _)| *period).collect();
    let expected: Vec<u64> = windows.iter().map(|(_, count)| *count).collect();
    assert_eq!(
        storage.active_installs_in("nexus", &periods).await.unwrap(),
        expected,
        "{case}"
    );
    // The per-day rollups hold the day's hourly rows, summed.
    let day = tally_core::time::Period {
        from: "2026-08-02T00:00:00Z".parse().unwrap(),
        to: "2026-08-03T00:00:00Z".parse().unwrap(),
    };
    let daily = storage.daily_rollups("nexus", &day).await.unwrap();
    assert_eq!(
        daily,
        tally_server::storage::activity::sum_by_day(storage.rollups("nexus", &day).await.unwrap()),
        "{case}"
    );
    if had.contains(&"metrics") {
        let build = &daily[0].1;
        assert_eq!(
            (
                build.count,
                build.duration_count,
                build.duration_total_ms,
                build.duration_min_ms,
                build.duration_max_ms
            ),
            (7, 6, 110, Some(5), Some(40)),
            "{case}: {daily:?}"
        );
        assert_eq!((build.histogram.counts[3], build.histogram.counts[5]), (2, 4), "{case}");
        assert_eq!(daily.len(), 2, "{case}");
    }
    storage
        .insert(vec![command_event("2026-08-06T11:20:00Z")])
        .await
        .unwrap();
    assert_eq!(
        storage
            .active_installs_in("nexus", &[hour("2026-08-06T11:00:00Z")])
            .await
            .unwrap(),
        [1],
        "{case}: a batch after the migration"
    );
    // A window ending after every sighting is counted from the installs table, which the
    // migration completed for installs known only from events, sessions or counts.
    let everything = tally_core::time::Period {
        from: "2026-07-01T00:00:00Z".parse().unwrap(),
        to: "2026-08-07T00:00:00Z".parse().unwrap(),
    };
    assert_eq!(
        storage.active_installs_in("nexus", &[everything]).await.unwrap(),
        [has("events") + has("sessions") + has("installs") + has("count_uploads") + 1],
        "{case}"
    );
}

#[tokio::test]
async fn install_activity_and_daily_rollups_are_filled_from_every_earlier_sqlite_schema() {
    // Every version before install activity was kept (6). Those versions' databases hold
    // the store's tables as they were before its compact version 7.
    for version in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.db");
        let mut had = vec!["events", "sessions", "metrics"];
        {
            let mut conn = Connection::open(&path).unwrap();
            tally_store::schema::migrate_to(&mut conn, schema::STORE_VERSION_OF_EARLY_MIGRATIONS).unwrap();
            schema::migrate_to(&mut conn, version).unwrap();
            if version >= 1 {
                had.push("installs");
            }
            if version >= 4 {
                had.push("count_uploads");
            }
            for (table, sql) in ACTIVITY_ROWS {
                if had.contains(&table) {
                    conn.execute_batch(sql).unwrap();
                }
            }
            conn.execute_batch(&metrics_rows(false)).unwrap();
        }
        let storage = SqliteStorage::open(&path).unwrap();
        assert_activity_backfilled(&storage, &had, &format!("sqlite from version {version}")).await;
        drop(storage);
        let conn = Connection::open(&path).unwrap();
        assert_eq!(schema::version(&conn).unwrap(), schema::LATEST_VERSION);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_activity_and_daily_rollups_are_filled_from_every_earlier_postgres_schema() {
    use tally_server::storage::postgres::PostgresStorage;
    // Migration 11 made and filled `install_days` and `metrics_daily`; from version 11 on
    // a collector keeps them itself.
    const FILLED_BY: i32 = 11;
    for version in 0..FILLED_BY {
        let Some(database) = crate::support::postgres::TestDatabase::create().await else {
            return;
        };
        PostgresStorage::migrate_to(database.url(), version).await.unwrap();
        let mut had = Vec::new();
        for (table, since) in [
            ("events", 1),
            ("sessions", 2),
            ("metrics", 3),
            ("installs", 4),
            ("count_uploads", 9),
        ] {
            if version >= since {
                had.push(table);
            }
        }
        let client = database.client().await;
        if had.contains(&"events") {
            client.batch_execute(AUGUST_PARTITION).await.unwrap();
        }
        for (table, sql) in ACTIVITY_ROWS {
            if had.contains(&table) {
                client.batch_execute(sql).await.unwrap();
            }
        }
        if had.contains(&"metrics") {
            client.batch_execute(&metrics_rows(true)).await.unwrap();
        }
        let storage = database.open().await;
        assert_activity_backfilled(storage.as_ref(), &had, &format!("postgres from version {version}")).await;
    }
}

fn event_of(install: &str, session: &str, ts: &str) -> Event {
    serde_json::from_value(serde_json::json!({
        "id": uuid::Uuid::now_v7(), "ts": ts, "app": "nexus", "app_version": "1.0.0",
        "source": "cli", "type": "command", "name": "command_executed", "success": true,
        "session_id": session, "install_id": install,
    }))
    .unwrap()
}

/// The values of one of the store's dictionaries (`install_ids`, `session_ids`), as text.
fn dictionary(path: &std::path::Path, table: &str) -> Vec<String> {
    let conn = Connection::open(path).unwrap();
    let mut statement = conn
        .prepare(&format!(
            "SELECT CASE WHEN typeof(value) = 'blob' THEN hex(value) ELSE value END FROM {table} ORDER BY 1"
        ))
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn erasing_and_expiring_leave_no_install_or_session_id_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    let storage = SqliteStorage::open(&path).unwrap();
    storage
        .insert(vec![
            event_of("install-a", "session-a", "2026-08-02T09:00:00Z"),
            event_of("install-a", "shared", "2026-08-02T09:01:00Z"),
            event_of("install-b", "shared", "2026-08-02T09:02:00Z"),
            event_of("install-b", "session-old", "2026-07-01T09:00:00Z"),
        ])
        .await
        .unwrap();
    assert_eq!(dictionary(&path, "install_ids"), ["install-a", "install-b"]);
    assert_eq!(dictionary(&path, "session_ids"), ["session-a", "session-old", "shared"]);

    // Install a goes, with the session only it had; install b still uses "shared".
    assert_eq!(storage.erase_install("nexus", "install-a").await.unwrap().events, 2);
    assert_eq!(dictionary(&path, "install_ids"), ["install-b"]);
    assert_eq!(dictionary(&path, "session_ids"), ["session-old", "shared"]);

    // Expiry takes the old session and its id; the kept one stays readable.
    assert_eq!(
        storage.expire("2026-08-01T00:00:00Z".parse().unwrap()).await.unwrap(),
        1
    );
    assert_eq!(dictionary(&path, "session_ids"), ["shared"]);
    let query = tally_server::storage::EventQuery {
        app: "nexus".into(),
        session_id: Some("shared".into()),
        limit: 10,
        ..Default::default()
    };
    let events = storage.events(&query).await.unwrap();
    assert_eq!(
        events.iter().map(|event| event.install_id.as_str()).collect::<Vec<_>>(),
        ["install-b"]
    );
}

/// The installs per group `group_installs` reports for `app`, as (type, name, command,
/// installs).
async fn groups_of(storage: &dyn Storage, app: &str) -> Vec<(String, String, String, u64)> {
    let groups = storage.group_installs(Some(app)).await.unwrap();
    groups
        .into_iter()
        .map(|group| (group.kind, group.name, group.command, group.installs))
        .collect()
}

/// Group membership an older collector left: `install-1` to `install-3` in the
/// `command_executed` group (from raw events, before the collector kept groups:
/// `from_events`), and a full `search_used` group when it kept them (`full_group`).
/// Checks what this build reads from it, that a new install joins the first group and
/// not the full one (`stored_in_full_group` counts that group's rows in the database),
/// and that erasing it takes it off again.
async fn assert_group_counts<F: Future<Output = u64>>(
    storage: &dyn Storage,
    from_events: bool,
    full_group: bool,
    stored_in_full_group: impl Fn() -> F,
    case: &str,
) {
    use tally_server::storage::GROUP_INSTALLS_CAP as CAP;
    let command = |installs| {
        (
            "command".to_owned(),
            "command_executed".to_owned(),
            String::new(),
            installs,
        )
    };
    let search = |installs| ("feature".to_owned(), "search_used".to_owned(), String::new(), installs);
    let had = u64::from(from_events || full_group) * 3;
    let before: Vec<_> = [(had > 0).then(|| command(had)), full_group.then(|| search(CAP))]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(groups_of(storage, "nexus").await, before, "{case}");

    let used = event_of("install-new", "session-new", "2026-08-02T10:00:01.000Z");
    let mut searched = event_of("install-new", "session-new", "2026-08-02T10:00:00.000Z");
    searched.kind = "feature".to_owned();
    searched.name = "search_used".to_owned();
    storage.insert(vec![used, searched]).await.unwrap();
    let in_full = if full_group { CAP } else { 1 };
    assert_eq!(
        groups_of(storage, "nexus").await,
        [command(had + 1), search(in_full)],
        "{case}: a new install"
    );
    assert_eq!(stored_in_full_group().await, in_full, "{case}: rows of the full group");

    storage.erase_install("nexus", "install-new").await.unwrap();
    assert_eq!(groups_of(storage, "nexus").await, before, "{case}: after erasure");
}

/// The `group_installs` rows an older collector of `version` gets: before the table
/// existed (`made_at`), raw events of three installs the migration fills it from.
fn group_rows(version: i64, made_at: i64) -> String {
    let cap = tally_server::storage::GROUP_INSTALLS_CAP;
    if version >= made_at {
        format!(
            "INSERT INTO group_installs (app, type, name, command, install_id) VALUES \
               ('nexus', 'command', 'command_executed', '', 'install-1'), \
               ('nexus', 'command', 'command_executed', '', 'install-2'), \
               ('nexus', 'command', 'command_executed', '', 'install-3'); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {cap}) \
             INSERT INTO group_installs (app, type, name, command, install_id) \
             SELECT 'nexus', 'feature', 'search_used', '', 'full-' || i FROM n;"
        )
    } else {
        (1..=3)
            .map(|install| {
                format!(
                    "INSERT INTO events (id, ts, app, app_version, source, type, name, session_id, install_id) \
                     VALUES ('0190a000-0000-7000-8000-00000000000{install}', '2026-08-02T09:15:00.000Z', 'nexus', \
                       '1.0.0', 'cli', 'command', 'command_executed', 'session-1', 'install-{install}');"
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn group_install_counts_are_filled_from_every_earlier_sqlite_schema() {
    // Collector migration 3 made `group_installs`; 8 made their counts.
    for version in 0..schema::LATEST_VERSION {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            // Up to version 6 a collector ran on the store's version 6; version 7 came
            // with the store's compact version, which the early migrations precede (as
            // in `SqliteStorage::open`).
            tally_store::schema::migrate_to(&mut conn, schema::STORE_VERSION_OF_EARLY_MIGRATIONS).unwrap();
            if version >= 7 {
                schema::migrate_to(&mut conn, schema::EARLY_MIGRATIONS).unwrap();
                tally_store::schema::migrate_to(&mut conn, tally_store::schema::LATEST_VERSION).unwrap();
            }
            schema::migrate_to(&mut conn, version).unwrap();
            conn.execute_batch(&group_rows(version, 3)).unwrap();
        }
        let storage = SqliteStorage::open(&path).unwrap();
        let stored_in_full_group = || async {
            let conn = Connection::open(&path).unwrap();
            let count: i64 = conn
                .query_row(
                    "SELECT count(*) FROM group_installs WHERE name = 'search_used'",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            count as u64
        };
        let case = format!("sqlite from version {version}");
        assert_group_counts(&storage, version < 3, version >= 3, stored_in_full_group, &case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_install_counts_are_filled_from_every_earlier_postgres_schema() {
    use tally_server::storage::postgres::PostgresStorage;
    // Migration 8 made `group_installs`; 12 made their counts.
    for version in 0..PostgresStorage::SCHEMA_VERSION {
        let Some(database) = crate::support::postgres::TestDatabase::create().await else {
            return;
        };
        PostgresStorage::migrate_to(database.url(), version).await.unwrap();
        let client = database.client().await;
        if version >= 1 {
            if version < 8 {
                client.batch_execute(AUGUST_PARTITION).await.unwrap();
            }
            client.batch_execute(&group_rows(version.into(), 8)).await.unwrap();
        }
        let storage = database.open().await;
        let stored_in_full_group = || async {
            let row = client
                .query_one("SELECT count(*) FROM group_installs WHERE name = 'search_used'", &[])
                .await
                .unwrap();
            row.get::<_, i64>(0) as u64
        };
        let case = format!("postgres from version {version}");
        let from_events = (1..8).contains(&version);
        assert_group_counts(storage.as_ref(), from_events, version >= 8, stored_in_full_group, &case).await;
    }
}
