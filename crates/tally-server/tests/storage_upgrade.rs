//! A collector database written before the embedded backend had its own schema (the
//! store's version 4, whose migration 3 made `installs`, `totals` and `api_keys`)
//! keeps its keys, installs and totals when this build opens it.

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
