//! The schema and its versioned migrations.
//!
//! `PRAGMA user_version` holds the schema version. Each migration runs inside one
//! `BEGIN IMMEDIATE` transaction that re-reads the version first, so when several
//! processes open a new store at once exactly one of them migrates and the others see
//! the result. Migrations only ever append to [`MIGRATIONS`]; a shipped one never changes.

use std::collections::HashMap;

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;
use crate::rollup::{Rollup, RollupKey, add_rollups};

/// `PRAGMA application_id` of every Tally store: "TALY". A file with another id, or
/// without one that holds tables Tally never made, is another program's.
pub const APPLICATION_ID: i32 = 0x5441_4C59;

/// Every table any version of the store, or the collector's embedded backend in the
/// same file, has made.
const OUR_TABLES: &[&str] = &[
    "meta",
    "events",
    "sessions",
    "metrics",
    "installs",
    "totals",
    "api_keys",
    "sync_rejected",
    "collector_schema",
];

/// `None` when `conn` is a Tally store, a new empty file, or a store from before
/// stores were marked (no id, and only tables Tally makes); otherwise why it is not.
/// A file SQLite cannot read is an error (corrupt), not an answer.
pub fn foreign_reason(conn: &Connection) -> Result<Option<String>, StoreError> {
    // One read transaction for the id, the tables and the version: read one by one, a
    // process that makes the schema in between shows a new file's id and tables but a
    // made store's version, which looks like a file that is not ours.
    let snapshot = conn.unchecked_transaction()?;
    let reason = foreign_reason_in(&snapshot)?;
    snapshot.finish()?;
    Ok(reason)
}

fn foreign_reason_in(conn: &Connection) -> Result<Option<String>, StoreError> {
    let id = application_id(conn)?;
    if id == APPLICATION_ID {
        return Ok(None);
    }
    if id != 0 {
        return Ok(Some(format!(
            "its application_id is {id:#010x}, not Tally's {APPLICATION_ID:#010x}"
        )));
    }
    let mut statement =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let tables: Vec<String> = statement.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
    if let Some(foreign) = tables.iter().find(|table| !OUR_TABLES.contains(&table.as_str())) {
        return Ok(Some(format!("it has a table {foreign:?} that Tally never makes")));
    }
    let version = version(conn)?;
    if tables.is_empty() != (version == 0) {
        return Ok(Some(format!(
            "its schema version {version} does not match its {} tables",
            tables.len()
        )));
    }
    Ok(None)
}

/// The `PRAGMA application_id` of the file (0 when unset).
pub fn application_id(conn: &Connection) -> Result<i32, StoreError> {
    Ok(conn.query_row("PRAGMA application_id", [], |row| row.get(0))?)
}

/// The schema version this build writes.
pub const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: raw events, sessions (the columns of Nexus ADR-003) and key/value meta.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE events (
        -- Local insertion order, never reused (AUTOINCREMENT): the sync cursor compares
        -- against it, so a number freed by retention must not come back.
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        id             TEXT NOT NULL UNIQUE,  -- UUIDv7, the dedupe key
        ts             TEXT NOT NULL,         -- RFC 3339 UTC, fixed width, sorts as time
        app            TEXT NOT NULL,
        app_version    TEXT NOT NULL,
        source         TEXT NOT NULL,
        type           TEXT NOT NULL,
        name           TEXT NOT NULL,
        command        TEXT,
        session_id     TEXT NOT NULL,
        install_id     TEXT NOT NULL,
        workspace      TEXT,                  -- keyed hash, never a clear name
        target_type    TEXT,
        target_id      TEXT,                  -- keyed hash, never a clear name
        duration_ms    INTEGER,
        success        INTEGER,
        error_category TEXT,
        error_message  TEXT,                  -- redacted, level full only
        props          TEXT                   -- flat JSON object, or NULL when empty
    );
    CREATE INDEX events_ts ON events (ts);
    CREATE TABLE sessions (
        session_id         TEXT PRIMARY KEY,
        app                TEXT NOT NULL,
        install_id         TEXT NOT NULL,
        started_at         TEXT NOT NULL,
        ended_at           TEXT NOT NULL,
        duration_ms        INTEGER NOT NULL,
        commands_executed  INTEGER NOT NULL DEFAULT 0,
        workspaces_created INTEGER NOT NULL DEFAULT 0,
        tasks_completed    INTEGER NOT NULL DEFAULT 0,
        errors_encountered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_started_at ON sessions (started_at);
    "#,
    // 2: rollups, kept up to date by every batch in the same transaction as its events,
    // one row per hour, app, type, name, command, outcome and error category.
    r#"
    CREATE TABLE metrics (
        hour              TEXT NOT NULL,     -- YYYY-MM-DDTHH, UTC
        app               TEXT NOT NULL,
        type              TEXT NOT NULL,
        name              TEXT NOT NULL,
        command           TEXT NOT NULL,     -- '' when the events had none
        success           INTEGER NOT NULL,  -- 1 success, 0 failure, -1 not reported
        error_category    TEXT NOT NULL,     -- '' when the events had none
        count             INTEGER NOT NULL,
        duration_count    INTEGER NOT NULL,  -- events that reported a duration
        duration_total_ms INTEGER NOT NULL,
        duration_min_ms   INTEGER,
        duration_max_ms   INTEGER,
        histogram         TEXT NOT NULL,     -- JSON array of counts per duration bucket
        PRIMARY KEY (hour, app, type, name, command, success, error_category)
    ) WITHOUT ROWID;
    "#,
    // 3: the collector's tables, which lived here until the collector's embedded
    // backend got its own schema (version 5 drops them again where they are empty).
    r#"
    CREATE TABLE installs (
        app         TEXT NOT NULL,
        install_id  TEXT NOT NULL,
        first_seen  TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        PRIMARY KEY (app, install_id)
    ) WITHOUT ROWID;
    CREATE INDEX installs_last_seen ON installs (app, last_seen);
    CREATE TABLE totals (
        app     TEXT NOT NULL,
        type    TEXT NOT NULL,
        name    TEXT NOT NULL,
        success INTEGER NOT NULL,            -- 1, 0, or -1 not reported
        count   INTEGER NOT NULL,
        PRIMARY KEY (app, type, name, success)
    ) WITHOUT ROWID;
    CREATE TABLE api_keys (
        id          TEXT PRIMARY KEY,        -- public part of the key
        app         TEXT NOT NULL,
        role        TEXT NOT NULL,           -- ingest | admin
        secret_hash TEXT NOT NULL,           -- hex SHA-256 of the whole key
        label       TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        revoked_at  TEXT
    );
    "#,
    // 4: the sync state. The upload cursor (the highest `seq` the collector has
    // answered for) lives in meta; events the collector refused are kept here with
    // the reason, shown by `status` and never sent again.
    r#"
    CREATE TABLE sync_rejected (
        id          TEXT PRIMARY KEY,
        ts          TEXT NOT NULL,
        code        TEXT NOT NULL,
        message     TEXT NOT NULL,
        rejected_at TEXT NOT NULL
    );
    "#,
    // 5: the collector's tables leave the local store; the statements are in
    // `drop_empty_collector_tables`, because each table goes only if it is empty.
    "",
    // 6: sessions keyed within their app and install. A session id comes from the
    // client, so keyed alone, one app's events could change another app's session.
    r#"
    CREATE TABLE sessions_keyed (
        session_id         TEXT NOT NULL,
        app                TEXT NOT NULL,
        install_id         TEXT NOT NULL,
        started_at         TEXT NOT NULL,
        ended_at           TEXT NOT NULL,
        duration_ms        INTEGER NOT NULL,
        commands_executed  INTEGER NOT NULL DEFAULT 0,
        workspaces_created INTEGER NOT NULL DEFAULT 0,
        tasks_completed    INTEGER NOT NULL DEFAULT 0,
        errors_encountered INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (app, install_id, session_id)
    ) WITHOUT ROWID;
    INSERT INTO sessions_keyed SELECT session_id, app, install_id, started_at, ended_at, duration_ms,
        commands_executed, workspaces_created, tasks_completed, errors_encountered FROM sessions;
    DROP TABLE sessions;
    ALTER TABLE sessions_keyed RENAME TO sessions;
    CREATE INDEX sessions_started_at ON sessions (started_at);
    "#,
];

/// Brings the schema of `conn` to [`LATEST_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current = version(conn)?;
    if current == LATEST_VERSION && application_id(conn)? == APPLICATION_ID {
        return Ok(());
    }
    if current > LATEST_VERSION {
        return Err(StoreError::NewerSchema {
            found: current,
            supported: LATEST_VERSION,
        });
    }
    migrate_to(conn, LATEST_VERSION)
}

/// Brings the schema of `conn` to `target`; tests use it to build every earlier version.
pub fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let current: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > LATEST_VERSION {
        return Err(StoreError::NewerSchema {
            found: current,
            supported: LATEST_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(current as usize)
    {
        let version = index as i64 + 1;
        tx.execute_batch(sql)?;
        match version {
            ROLLUPS_VERSION => count_stored_events(&tx)?,
            COLLECTOR_TABLES_GONE_VERSION => drop_empty_collector_tables(&tx)?,
            _ => {}
        }
        tx.pragma_update(None, "user_version", version)?;
    }
    // Marked in the same transaction as its tables: a file is never Tally's tables
    // without Tally's id.
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()?;
    Ok(())
}

/// The version that added the rollups, which must count every event ever stored.
const ROLLUPS_VERSION: i64 = 2;

/// Adds the events a store held before it had rollups to the new rollups, so that
/// stats (which read rollups) keep its history and retention cannot lose it.
fn count_stored_events(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let mut rollups: HashMap<RollupKey, Rollup> = HashMap::new();
    let mut select = tx.prepare(
        "SELECT substr(ts, 1, 13), app, type, name, coalesce(command, ''), coalesce(success, -1), \
         coalesce(error_category, ''), duration_ms FROM events",
    )?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let key = RollupKey::from_row_at(row, 0)?;
        let duration: Option<i64> = row.get(7)?;
        rollups.entry(key).or_default().add(duration.map(|d| d.max(0) as u64));
    }
    add_rollups(tx, &rollups)
}

/// The version after which the collector's tables are no longer part of a local store.
const COLLECTOR_TABLES_GONE_VERSION: i64 = 5;

/// The tables version 3 made for the collector, which now keeps its own schema
/// (`tally-server`'s `storage::sqlite`).
pub const COLLECTOR_TABLES: [&str; 3] = ["installs", "totals", "api_keys"];

/// Drops each of [`COLLECTOR_TABLES`] that holds no row.
///
/// A table with rows stays: on a user's machine they are always empty, so rows mean
/// the file is (or was) a collector's embedded database, and dropping its keys,
/// installs or lifetime totals would lose data that exists nowhere else. The
/// collector's own migrations take such tables over as they are.
fn drop_empty_collector_tables(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    for table in COLLECTOR_TABLES {
        let exists: bool = tx.query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |row| row.get(0),
        )?;
        if !exists {
            continue;
        }
        let empty: bool = tx.query_row(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"), [], |row| {
            row.get(0)
        })?;
        if empty {
            // Dropping a table drops its indexes (`installs_last_seen`) too.
            tx.execute_batch(&format!("DROP TABLE {table}"))?;
        }
    }
    Ok(())
}

/// The schema version recorded in the file (0 for a new file).
pub fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}
