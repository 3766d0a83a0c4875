//! The embedded backend's own tables and their versioned migrations.
//!
//! The file is a `tally-store` store (events, sessions, rollups: one write path for
//! apps and collector), plus the tables only a collector needs: `installs`, `totals`,
//! `install_days`, `api_keys` and the others below. `tally-store` owns `PRAGMA user_version`; this schema's version lives
//! in its own one-row table, `collector_schema`. Each migration runs in one
//! `BEGIN IMMEDIATE` transaction that re-reads the version first, like the store's.
//! Migrations only ever append to [`MIGRATIONS`]; a shipped one never changes.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::storage::StorageError;

/// Collector migration 6's statement that fills `metrics_daily` from the hourly rows,
/// histograms added bucket by bucket (31 buckets, `tally_store::histogram::BUCKETS`).
/// A macro, so that the migration can `concat!` it; the dashboard bench runs it too, as
/// [`FILL_METRICS_DAILY`], after loading rollups by hand.
macro_rules! fill_metrics_daily {
    () => {
        r#"
    INSERT INTO metrics_daily (hour, app, type, name, command, success, error_category, count, duration_count,
        duration_total_ms, duration_min_ms, duration_max_ms, histogram)
    SELECT substr(hour, 1, 10) || 'T00', app, type, name, command, success, error_category, sum(count),
        sum(duration_count), sum(duration_total_ms), min(duration_min_ms), max(duration_max_ms),
        '[' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 0 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 1 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 2 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 3 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 4 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 5 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 6 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 7 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 8 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 9 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 10 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 11 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 12 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 13 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 14 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 15 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 16 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 17 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 18 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 19 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 20 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 21 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 22 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 23 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 24 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 25 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 26 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 27 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 28 ELSE 0 END) || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 29 ELSE 0 END)
        || ',' || sum(CASE WHEN duration_count > 0 THEN histogram ->> 30 ELSE 0 END) || ']'
    FROM metrics
    GROUP BY substr(hour, 1, 10), app, type, name, command, success, error_category;
"#
    };
}

/// The statement `fill_metrics_daily!` gives (see there).
pub const FILL_METRICS_DAILY: &str = fill_metrics_daily!();

/// The collector schema version this build writes.
pub const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// Migration `i` takes the collector's tables from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: installs, lifetime totals and API keys. Until this schema existed the store's
    // own migration 3 made these tables in every file; a collector database written
    // then has them already, filled, and keeps them as they are (IF NOT EXISTS).
    r#"
    CREATE TABLE IF NOT EXISTS installs (
        app         TEXT NOT NULL,
        install_id  TEXT NOT NULL,
        first_seen  TEXT NOT NULL,           -- RFC 3339 UTC, fixed width
        last_seen   TEXT NOT NULL,
        PRIMARY KEY (app, install_id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS installs_last_seen ON installs (app, last_seen);
    CREATE TABLE IF NOT EXISTS totals (
        app     TEXT NOT NULL,
        type    TEXT NOT NULL,
        name    TEXT NOT NULL,
        success INTEGER NOT NULL,            -- 1, 0, or -1 not reported
        count   INTEGER NOT NULL,
        PRIMARY KEY (app, type, name, success)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS api_keys (
        id          TEXT PRIMARY KEY,        -- public part of the key
        app         TEXT NOT NULL,
        role        TEXT NOT NULL,           -- ingest | admin
        secret_hash TEXT NOT NULL,           -- hex SHA-256 of the whole key
        label       TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        revoked_at  TEXT
    );
    "#,
    // 2 (dashboard speed): a covering index for one app's session count and mean duration
    // over a period (`Storage::sessions`, twice per dashboard load). The store's own
    // index is on `started_at` alone, so every session of the period, of every app, was
    // read from the table; this one answers from the index. Only an index on the store's
    // `sessions` table: nothing about the rows changes. A store migration that rebuilds
    // `sessions` drops it, and must come with a collector migration that makes it again.
    r#"
    CREATE INDEX IF NOT EXISTS sessions_app_started_at_duration_ms ON sessions (app, started_at, duration_ms);
    "#,
    // 3: which installs each group (an event name, or a command of one) was seen from,
    // at most 100 per group (`GROUP_INSTALLS_CAP`), for small-count suppression; filled
    // from the raw events still kept.
    r#"
    CREATE TABLE group_installs (
        app        TEXT NOT NULL,
        type       TEXT NOT NULL,
        name       TEXT NOT NULL,
        command    TEXT NOT NULL,            -- '' for the name's own group
        install_id TEXT NOT NULL,
        PRIMARY KEY (app, type, name, command, install_id)
    ) WITHOUT ROWID;
    CREATE INDEX group_installs_app_install_id ON group_installs (app, install_id);
    INSERT INTO group_installs (app, type, name, command, install_id)
    SELECT app, type, name, command, install_id FROM (
        SELECT g.*, row_number() OVER (PARTITION BY app, type, name, command ORDER BY install_id) AS n
        FROM (
            SELECT DISTINCT app, type, name, '' AS command, install_id FROM events
            UNION
            SELECT DISTINCT app, type, name, command, install_id FROM events WHERE coalesce(command, '') <> ''
        ) AS g
    )
    WHERE n <= 100;
"#,
    // 4: counts-only uploads, one row per install and day: the key that makes a resend
    // change nothing, and what the upload held, so erasing the install can take it back
    // out.
    r#"
    CREATE TABLE count_uploads (
        app         TEXT NOT NULL,
        install_id  TEXT NOT NULL,
        day         TEXT NOT NULL,           -- YYYY-MM-DD, UTC
        events      INTEGER NOT NULL,
        counts      TEXT NOT NULL,           -- the upload's groups as JSON, as sent
        received_at TEXT NOT NULL,
        PRIMARY KEY (app, install_id, day)
    ) WITHOUT ROWID;
    CREATE INDEX count_uploads_app_day ON count_uploads (app, day);
"#,
    // 5: each install's registered key (the SHA-256 of its Ed25519 public key) and the
    // nonces of its proofs until they expire, so a proof cannot be replayed; and an index
    // to find one install's raw events without scanning the others.
    r#"
    CREATE TABLE install_keys (
        app           TEXT NOT NULL,
        install_id    TEXT NOT NULL,
        key_hash      TEXT NOT NULL,         -- hex SHA-256 of the Ed25519 public key
        registered_at TEXT NOT NULL,
        PRIMARY KEY (app, install_id)
    ) WITHOUT ROWID;
    CREATE TABLE install_nonces (
        app        TEXT NOT NULL,
        install_id TEXT NOT NULL,
        nonce      TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (app, install_id, nonce)
    ) WITHOUT ROWID;
    CREATE INDEX install_nonces_expires_at ON install_nonces (expires_at);
    CREATE INDEX IF NOT EXISTS events_app_install_id ON events (app, install_id);
"#,
    // 6 (dashboard speed and changes): which hours of each UTC day each install was
    // active in (`storage::activity`), so the installs active in a period and in the
    // period before are exact counts; and the rollups per day.
    // Filled from what still shows activity: raw events and sessions (their hours),
    // counts-only days (the day's first hour) and each install's first and last
    // sighting. Days between those whose raw events retention already deleted stay
    // unknown.
    concat!(
        r#"
    CREATE TABLE install_days (
        app        TEXT NOT NULL,
        day        TEXT NOT NULL,            -- YYYY-MM-DD, UTC
        install_id TEXT NOT NULL,
        hours      INTEGER NOT NULL,         -- bit h: events in the hour from h:00 UTC
        PRIMARY KEY (app, day, install_id)
    ) WITHOUT ROWID;
    CREATE INDEX install_days_app_install_id ON install_days (app, install_id);
    -- Every install with activity has its installs row (counting by last sighting relies
    -- on it); a database whose events predate the installs table gets the missing ones.
    INSERT OR IGNORE INTO installs (app, install_id, first_seen, last_seen)
    SELECT app, install_id, min(first), max(last) FROM (
        SELECT app, install_id, min(ts) AS first, max(ts) AS last FROM events GROUP BY app, install_id
        UNION ALL
        SELECT app, install_id, min(started_at), max(ended_at) FROM sessions GROUP BY app, install_id
        UNION ALL
        SELECT app, install_id, min(day) || 'T00:00:00.000Z', max(day) || 'T00:00:00.000Z' FROM count_uploads
        GROUP BY app, install_id
    )
    GROUP BY app, install_id;
    INSERT INTO install_days (app, day, install_id, hours)
    SELECT app, day, install_id, sum(1 << hour) FROM (
        SELECT app, substr(ts, 1, 10) AS day, install_id, CAST(substr(ts, 12, 2) AS INTEGER) AS hour FROM events
        UNION
        SELECT app, substr(started_at, 1, 10), install_id, CAST(substr(started_at, 12, 2) AS INTEGER) FROM sessions
        UNION
        SELECT app, substr(ended_at, 1, 10), install_id, CAST(substr(ended_at, 12, 2) AS INTEGER) FROM sessions
        UNION
        SELECT app, day, install_id, 0 FROM count_uploads
        UNION
        SELECT app, substr(first_seen, 1, 10), install_id, CAST(substr(first_seen, 12, 2) AS INTEGER) FROM installs
        UNION
        SELECT app, substr(last_seen, 1, 10), install_id, CAST(substr(last_seen, 12, 2) AS INTEGER) FROM installs
    )
    GROUP BY app, day, install_id;
    -- The hourly rollups summed per UTC day (`storage::activity`), so a chart by day or
    -- week reads one row per day and key; filled from every hourly row, histograms added
    -- bucket by bucket (31 buckets, `tally_store::histogram::BUCKETS`).
    CREATE TABLE metrics_daily (
        hour              TEXT NOT NULL,     -- YYYY-MM-DDT00: the day's first hour, UTC
        app               TEXT NOT NULL,
        type              TEXT NOT NULL,
        name              TEXT NOT NULL,
        command           TEXT NOT NULL,
        success           INTEGER NOT NULL,
        error_category    TEXT NOT NULL,
        count             INTEGER NOT NULL,
        duration_count    INTEGER NOT NULL,
        duration_total_ms INTEGER NOT NULL,
        duration_min_ms   INTEGER,
        duration_max_ms   INTEGER,
        histogram         TEXT NOT NULL,     -- JSON array of counts per duration bucket
        PRIMARY KEY (app, hour, type, name, command, success, error_category)
    ) WITHOUT ROWID;
"#,
        fill_metrics_daily!()
    ),
    // 7: the store's version 7 moved its rows into `event_rows` and `session_rows`
    // (dropping the indexes 2 and 5 had made on `sessions` and `events`, which are views
    // now); the same indexes on the new tables. The install leads the events index, so
    // erasing an install can also tell at once whether any row still names its id;
    // and the session ids, which expiry and erasure check the same way.
    r#"
    CREATE INDEX session_rows_app_started_at_duration_ms ON session_rows (app, started_at, duration_ms);
    CREATE INDEX event_rows_install_id_app ON event_rows (install_id, app);
    -- Expiry and erasure delete a session id once no row refers to it any more.
    CREATE INDEX event_rows_session_id ON event_rows (session_id);
    CREATE INDEX session_rows_session_id ON session_rows (session_id);
"#,
    // 8 (write speed): how many installs each group of `group_installs` holds, so that a
    // batch checks a group's cap by reading one row instead of counting up to 100 per
    // install it brings. Triggers keep it in step with every insert and delete of a
    // member (batches, counts uploads, erasure, expiry), in the same transaction.
    r#"
    CREATE TABLE group_install_counts (
        app      TEXT    NOT NULL,
        type     TEXT    NOT NULL,
        name     TEXT    NOT NULL,
        command  TEXT    NOT NULL,
        installs INTEGER NOT NULL,  -- rows of the group in group_installs
        PRIMARY KEY (app, type, name, command)
    ) WITHOUT ROWID;
    INSERT INTO group_install_counts (app, type, name, command, installs)
    SELECT app, type, name, command, count(*) FROM group_installs GROUP BY app, type, name, command;
    CREATE TRIGGER group_installs_counted AFTER INSERT ON group_installs BEGIN
        INSERT INTO group_install_counts (app, type, name, command, installs)
        VALUES (new.app, new.type, new.name, new.command, 1)
        ON CONFLICT (app, type, name, command) DO UPDATE SET installs = installs + 1;
    END;
    CREATE TRIGGER group_installs_uncounted AFTER DELETE ON group_installs BEGIN
        UPDATE group_install_counts SET installs = installs - 1
        WHERE app = old.app AND type = old.type AND name = old.name AND command = old.command;
    END;
"#,
];

/// The collector versions written against the store's tables as they were up to store
/// version [`STORE_VERSION_OF_EARLY_MIGRATIONS`]: they index `sessions` and `events` and
/// read `events` as tables, so they run before the store moves on.
pub const EARLY_MIGRATIONS: i64 = 5;

/// The store version the collector's first [`EARLY_MIGRATIONS`] migrations expect.
pub const STORE_VERSION_OF_EARLY_MIGRATIONS: i64 = 6;

/// Brings the collector's tables in `conn` to [`LATEST_VERSION`]; the store's own
/// migrations must have run first (they may drop empty tables of an older file, which
/// this then makes again).
pub fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    migrate_to(conn, LATEST_VERSION)
}

/// Brings the collector's tables to `target`; tests use it to build earlier versions.
pub fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StorageError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS collector_schema (version INTEGER NOT NULL)")?;
    let current = version_in(&tx)?;
    if current > LATEST_VERSION {
        return Err(StorageError::Internal(format!(
            "the collector tables are at schema version {current}; this build knows up to {LATEST_VERSION}: \
             upgrade the collector"
        )));
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(current as usize)
    {
        tx.execute_batch(sql)?;
        tx.execute("DELETE FROM collector_schema", [])?;
        tx.execute("INSERT INTO collector_schema (version) VALUES (?1)", [index as i64 + 1])?;
    }
    tx.commit()?;
    Ok(())
}

/// The collector schema version recorded in the file (0 before the first migration).
pub fn version(conn: &Connection) -> Result<i64, StorageError> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'collector_schema'",
        [],
        |row| row.get(0),
    )?;
    if exists { version_in(conn) } else { Ok(0) }
}

fn version_in(conn: &Connection) -> Result<i64, StorageError> {
    let version: Option<i64> = conn
        .query_row("SELECT max(version) FROM collector_schema", [], |row| row.get(0))
        .optional()?
        .flatten();
    Ok(version.unwrap_or(0))
}
