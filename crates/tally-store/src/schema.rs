//! The schema and its versioned migrations.
//!
//! `PRAGMA user_version` holds the schema version. Each migration runs inside one
//! `BEGIN IMMEDIATE` transaction that re-reads the version first, so when several
//! processes open a new store at once exactly one of them migrates and the others see
//! the result. Migrations only ever append to [`MIGRATIONS`]; a shipped one never changes.

use std::collections::BTreeMap;

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
    "event_rows",
    "session_rows",
    "strings",
    "install_ids",
    "session_ids",
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
    // 7: the compact layout (issue 10). Rows move to `event_rows` and `session_rows`:
    // ids as 16-byte blobs, times as Unix milliseconds, and the values that repeat on
    // every event (app, version, source, type, name, command, install, target type,
    // error category) once each in `strings` (install ids in `install_ids`), referenced
    // by number; session ids too, in `session_ids`. Only values kept anyway are
    // interned (the rollups keep the names forever, `sessions` the session ids and
    // installs), so retention still forgets everything else: hashes, props and
    // messages stay in the row that expires.
    // `events` and `sessions` become views giving the documented columns as before.
    // `seq` keeps its values and its AUTOINCREMENT high-water mark, so sync cursors
    // still mean the same rows.
    COMPACT_LAYOUT,
];

/// Migration 7, kept as a constant so the view definitions it shares with nothing
/// else read as one block.
const COMPACT_LAYOUT: &str = r#"
    CREATE TABLE strings (
        id    INTEGER PRIMARY KEY,
        value TEXT NOT NULL UNIQUE
    );
    -- Install ids apart from the other values: erasing an install (the collector's
    -- `DELETE /v1/installs/...`) deletes its id too once no row refers to it.
    CREATE TABLE install_ids (
        id    INTEGER PRIMARY KEY,
        value TEXT NOT NULL UNIQUE
    );
    -- Session ids: the 16 bytes of a lower-case UUID, any other id as its text. A local
    -- store keeps its sessions (and so their ids) as long as it lives.
    CREATE TABLE session_ids (
        id    INTEGER PRIMARY KEY,
        value BLOB NOT NULL UNIQUE
    );
    -- The distinct combinations first (a few hundred), so the interned values come
    -- from one pass over the events instead of one per column.
    CREATE TEMP TABLE v7_combinations AS
        SELECT DISTINCT app, app_version, source, type, name, command, install_id, target_type, error_category
        FROM events;
    INSERT INTO strings (value)
        SELECT app FROM v7_combinations UNION SELECT app_version FROM v7_combinations
        UNION SELECT source FROM v7_combinations UNION SELECT type FROM v7_combinations
        UNION SELECT name FROM v7_combinations UNION SELECT command FROM v7_combinations WHERE command IS NOT NULL
        UNION SELECT target_type FROM v7_combinations WHERE target_type IS NOT NULL
        UNION SELECT error_category FROM v7_combinations WHERE error_category IS NOT NULL
        UNION SELECT app FROM sessions;
    INSERT INTO install_ids (value)
        SELECT install_id FROM v7_combinations UNION SELECT install_id FROM sessions;
    DROP TABLE v7_combinations;
    INSERT INTO session_ids (value)
        SELECT CASE WHEN session_id GLOB '????????-????-????-????-????????????' AND session_id = lower(session_id)
                         AND length(unhex(replace(session_id, '-', ''))) = 16
                    THEN unhex(replace(session_id, '-', '')) ELSE session_id END FROM events
        UNION SELECT CASE WHEN session_id GLOB '????????-????-????-????-????????????' AND session_id = lower(session_id)
                         AND length(unhex(replace(session_id, '-', ''))) = 16
                    THEN unhex(replace(session_id, '-', '')) ELSE session_id END FROM sessions;

    CREATE TABLE event_rows (
        -- Local insertion order, never reused (AUTOINCREMENT): the sync cursor compares
        -- against it, so a number freed by retention must not come back.
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        id             BLOB NOT NULL UNIQUE,  -- the UUIDv7's 16 bytes, the dedupe key
        ts             INTEGER NOT NULL,      -- Unix milliseconds, UTC
        app            INTEGER NOT NULL,      -- strings.id
        app_version    INTEGER NOT NULL,      -- strings.id
        source         INTEGER NOT NULL,      -- strings.id
        type           INTEGER NOT NULL,      -- strings.id
        name           INTEGER NOT NULL,      -- strings.id
        command        INTEGER,               -- strings.id
        session_id     INTEGER NOT NULL,      -- session_ids.id
        install_id     INTEGER NOT NULL,      -- install_ids.id
        workspace      BLOB,                  -- the 12 bytes of an `h1:` hash, else the text
        target_type    INTEGER,               -- strings.id
        target_id      BLOB,                  -- the 12 bytes of an `h1:` hash, else the text
        duration_ms    INTEGER,
        success        INTEGER,
        error_category INTEGER,               -- strings.id
        error_message  TEXT,                  -- redacted, level full only
        props          TEXT                   -- flat JSON object, or NULL when empty
    );
    -- The high-water mark first: inserting the old rows then only raises it.
    INSERT INTO sqlite_sequence (name, seq) SELECT 'event_rows', seq FROM sqlite_sequence WHERE name = 'events';
    INSERT INTO event_rows (seq, id, ts, app, app_version, source, type, name, command, session_id, install_id,
                            workspace, target_type, target_id, duration_ms, success, error_category,
                            error_message, props)
        SELECT e.seq, unhex(replace(e.id, '-', '')),
               CAST(round(unixepoch(e.ts, 'subsec') * 1000) AS INTEGER),
               (SELECT id FROM strings WHERE value = e.app),
               (SELECT id FROM strings WHERE value = e.app_version),
               (SELECT id FROM strings WHERE value = e.source),
               (SELECT id FROM strings WHERE value = e.type),
               (SELECT id FROM strings WHERE value = e.name),
               (SELECT id FROM strings WHERE value = e.command),
               (SELECT id FROM session_ids WHERE value = CASE WHEN e.session_id GLOB '????????-????-????-????-????????????' AND e.session_id = lower(e.session_id)
                            AND length(unhex(replace(e.session_id, '-', ''))) = 16
                       THEN unhex(replace(e.session_id, '-', '')) ELSE e.session_id END),
               (SELECT id FROM install_ids WHERE value = e.install_id),
               CASE WHEN e.workspace GLOB 'h1:????????????????????????' AND e.workspace = lower(e.workspace)
                         AND length(unhex(substr(e.workspace, 4))) = 12
                    THEN unhex(substr(e.workspace, 4)) ELSE e.workspace END,
               (SELECT id FROM strings WHERE value = e.target_type),
               CASE WHEN e.target_id GLOB 'h1:????????????????????????' AND e.target_id = lower(e.target_id)
                         AND length(unhex(substr(e.target_id, 4))) = 12
                    THEN unhex(substr(e.target_id, 4)) ELSE e.target_id END,
               e.duration_ms, e.success,
               (SELECT id FROM strings WHERE value = e.error_category),
               e.error_message, e.props
        FROM events AS e ORDER BY e.seq;
    DROP TABLE events;
    -- By time, and covering the recent commands `insights` reads (newest first, name
    -- and command from the index alone) for two bytes more per event than `ts` alone.
    CREATE INDEX event_rows_ts ON event_rows (ts, name, command);

    CREATE TABLE session_rows (
        install_id         INTEGER NOT NULL,  -- install_ids.id
        app                INTEGER NOT NULL,  -- strings.id
        session_id         INTEGER NOT NULL,  -- session_ids.id
        started_at         INTEGER NOT NULL,  -- Unix milliseconds
        ended_at           INTEGER NOT NULL,  -- Unix milliseconds
        duration_ms        INTEGER NOT NULL,
        commands_executed  INTEGER NOT NULL DEFAULT 0,
        workspaces_created INTEGER NOT NULL DEFAULT 0,
        tasks_completed    INTEGER NOT NULL DEFAULT 0,
        errors_encountered INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (install_id, app, session_id)
    ) WITHOUT ROWID;
    INSERT INTO session_rows
        SELECT (SELECT id FROM install_ids WHERE value = s.install_id), (SELECT id FROM strings WHERE value = s.app),
               (SELECT id FROM session_ids WHERE value = CASE WHEN s.session_id GLOB '????????-????-????-????-????????????' AND s.session_id = lower(s.session_id)
                            AND length(unhex(replace(s.session_id, '-', ''))) = 16
                       THEN unhex(replace(s.session_id, '-', '')) ELSE s.session_id END),
               CAST(round(unixepoch(s.started_at, 'subsec') * 1000) AS INTEGER),
               CAST(round(unixepoch(s.ended_at, 'subsec') * 1000) AS INTEGER),
               s.duration_ms, s.commands_executed, s.workspaces_created, s.tasks_completed, s.errors_encountered
        FROM sessions AS s;
    DROP TABLE sessions;
    -- Covers the sessions-by-period summary (count and mean duration) of stats and insights.
    CREATE INDEX session_rows_started_at ON session_rows (started_at, duration_ms);

    -- The documented columns, for programs that read the file (docs/STORE.md). Plain
    -- SQL only, so any SQLite reader can use them.
    CREATE VIEW events AS SELECT
        e.seq AS seq,
        lower(substr(hex(e.id), 1, 8) || '-' || substr(hex(e.id), 9, 4) || '-' || substr(hex(e.id), 13, 4) || '-'
              || substr(hex(e.id), 17, 4) || '-' || substr(hex(e.id), 21)) AS id,
        strftime('%Y-%m-%dT%H:%M:%fZ', e.ts / 1000.0, 'unixepoch') AS ts,
        (SELECT value FROM strings WHERE id = e.app) AS app,
        (SELECT value FROM strings WHERE id = e.app_version) AS app_version,
        (SELECT value FROM strings WHERE id = e.source) AS source,
        (SELECT value FROM strings WHERE id = e.type) AS type,
        (SELECT value FROM strings WHERE id = e.name) AS name,
        (SELECT value FROM strings WHERE id = e.command) AS command,
        (SELECT CASE WHEN typeof(value) = 'blob' THEN
            lower(substr(hex(value), 1, 8) || '-' || substr(hex(value), 9, 4) || '-'
                  || substr(hex(value), 13, 4) || '-' || substr(hex(value), 17, 4) || '-'
                  || substr(hex(value), 21))
            ELSE value END FROM session_ids WHERE id = e.session_id) AS session_id,
        (SELECT value FROM install_ids WHERE id = e.install_id) AS install_id,
        CASE WHEN typeof(e.workspace) = 'blob' THEN 'h1:' || lower(hex(e.workspace)) ELSE e.workspace END AS workspace,
        (SELECT value FROM strings WHERE id = e.target_type) AS target_type,
        CASE WHEN typeof(e.target_id) = 'blob' THEN 'h1:' || lower(hex(e.target_id)) ELSE e.target_id END AS target_id,
        e.duration_ms AS duration_ms,
        e.success AS success,
        (SELECT value FROM strings WHERE id = e.error_category) AS error_category,
        e.error_message AS error_message,
        e.props AS props
    FROM event_rows AS e;
    CREATE VIEW sessions AS SELECT
        (SELECT CASE WHEN typeof(value) = 'blob' THEN
            lower(substr(hex(value), 1, 8) || '-' || substr(hex(value), 9, 4) || '-'
                  || substr(hex(value), 13, 4) || '-' || substr(hex(value), 17, 4) || '-'
                  || substr(hex(value), 21))
            ELSE value END FROM session_ids WHERE id = s.session_id) AS session_id,
        (SELECT value FROM strings WHERE id = s.app) AS app,
        (SELECT value FROM install_ids WHERE id = s.install_id) AS install_id,
        strftime('%Y-%m-%dT%H:%M:%fZ', s.started_at / 1000.0, 'unixepoch') AS started_at,
        strftime('%Y-%m-%dT%H:%M:%fZ', s.ended_at / 1000.0, 'unixepoch') AS ended_at,
        s.duration_ms AS duration_ms,
        s.commands_executed AS commands_executed,
        s.workspaces_created AS workspaces_created,
        s.tasks_completed AS tasks_completed,
        s.errors_encountered AS errors_encountered
    FROM session_rows AS s;
"#;

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
    if current < COMPACT_VERSION && target >= COMPACT_VERSION {
        give_back_freed_pages(conn)?;
    }
    Ok(())
}

/// The version that moved the rows into the compact layout.
const COMPACT_VERSION: i64 = 7;

/// Returns the pages the old `events` and `sessions` tables held to the OS, so the file
/// shrinks right after the migration (about 2 s for a million events) instead of at the
/// next maintenance that expires something. Its own transaction after the migration's:
/// another process busy with the file only postpones it to that maintenance.
fn give_back_freed_pages(conn: &Connection) -> Result<(), StoreError> {
    let vacuum = || -> rusqlite::Result<()> {
        // Each step frees one page, so it must be stepped to the end.
        let mut statement = conn.prepare("PRAGMA incremental_vacuum")?;
        let mut steps = statement.query([])?;
        while steps.next()?.is_some() {}
        Ok(())
    };
    match vacuum() {
        Err(err) if matches!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy)) => Ok(()),
        result => Ok(result?),
    }
}

/// The version that added the rollups, which must count every event ever stored.
const ROLLUPS_VERSION: i64 = 2;

/// Adds the events a store held before it had rollups to the new rollups, so that
/// stats (which read rollups) keep its history and retention cannot lose it.
fn count_stored_events(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let mut rollups: BTreeMap<RollupKey, Rollup> = BTreeMap::new();
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
