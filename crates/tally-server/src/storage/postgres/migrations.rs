//! The PostgreSQL schema and its versioned migrations.
//!
//! `tally_schema_migrations` records every applied version. [`migrate`] runs in one
//! transaction that first takes a transaction-level advisory lock, then re-reads the
//! applied versions, so when several collectors start at once on a new database exactly
//! one of them migrates and the others find the work done. Migrations only ever append to
//! [`MIGRATIONS`]; a shipped one never changes.
//!
//! Text columns that are sorted or compared as ranges (`hour`, the keys of aggregates
//! and API keys) use the `"C"` collation, so that orderings are bytewise like SQLite's
//! and do not depend on the locale the cluster was created with.

use tokio_postgres::Client;

use super::PostgresError;

/// Advisory lock key held while migrating ("tally-mi" in ASCII).
const MIGRATION_LOCK: i64 = 0x7461_6c6c_792d_6d69;

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: raw events, one partition per month of `ts` (made on demand by the writers, see
    // `partitions.rs`), so retention drops whole months instead of deleting rows. The
    // primary key must include the partition key; a retry resends the same id and `ts`,
    // so (id, ts) still dedupes across collectors.
    r#"
    CREATE TABLE events (
        id             uuid        NOT NULL,  -- UUIDv7 made by the client, the dedupe key
        ts             timestamptz NOT NULL,
        app            text        NOT NULL,
        app_version    text        NOT NULL,
        source         text        NOT NULL,
        type           text        NOT NULL,
        name           text        NOT NULL,
        command        text,
        session_id     text        NOT NULL,
        install_id     text        NOT NULL,
        workspace      text,                  -- keyed hash, never a clear name
        target_type    text,
        target_id      text,                  -- keyed hash, never a clear name
        duration_ms    bigint,
        success        boolean,
        error_category text,
        error_message  text,                  -- redacted, level full only
        props          jsonb,                 -- flat object, NULL when empty
        PRIMARY KEY (id, ts)
    ) PARTITION BY RANGE (ts);
    CREATE INDEX events_app_workspace_ts ON events (app, workspace, ts);
    CREATE INDEX events_app_type_name_ts ON events (app, type, name, ts);
    CREATE INDEX events_app_install_id ON events (app, install_id);
    CREATE INDEX events_app_ts_id ON events (app, ts, id);
    "#,
    // 2: sessions, the same columns as the embedded store's, kept in step by each batch.
    r#"
    CREATE TABLE sessions (
        session_id         text        PRIMARY KEY,
        app                text        NOT NULL,
        install_id         text        NOT NULL,
        started_at         timestamptz NOT NULL,
        ended_at           timestamptz NOT NULL,
        duration_ms        bigint      NOT NULL,
        commands_executed  bigint      NOT NULL DEFAULT 0,
        workspaces_created bigint      NOT NULL DEFAULT 0,
        tasks_completed    bigint      NOT NULL DEFAULT 0,
        errors_encountered bigint      NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_app_started_at ON sessions (app, started_at);
    CREATE INDEX sessions_app_install_id ON sessions (app, install_id);
    CREATE INDEX sessions_ended_at ON sessions (ended_at);
    "#,
    // 3: hourly rollups, one row per hour, app, type, name, command, outcome and error
    // category; the histogram counts durations per `tally_store::histogram` bucket.
    r#"
    CREATE TABLE metrics (
        hour              text COLLATE "C" NOT NULL,  -- YYYY-MM-DDTHH, UTC
        app               text COLLATE "C" NOT NULL,
        type              text COLLATE "C" NOT NULL,
        name              text COLLATE "C" NOT NULL,
        command           text COLLATE "C" NOT NULL,  -- '' when the events had none
        success           smallint         NOT NULL,  -- 1 success, 0 failure, -1 not reported
        error_category    text COLLATE "C" NOT NULL,  -- '' when the events had none
        count             bigint           NOT NULL,
        duration_count    bigint           NOT NULL,  -- events that reported a duration
        duration_total_ms bigint           NOT NULL,
        duration_min_ms   bigint,
        duration_max_ms   bigint,
        histogram         bigint[]         NOT NULL,
        PRIMARY KEY (hour, app, type, name, command, success, error_category)
    );
    CREATE INDEX metrics_app_hour ON metrics (app, hour);
    "#,
    // 4: installs (for active-install counts and erasure) and lifetime totals.
    r#"
    CREATE TABLE installs (
        app        text COLLATE "C" NOT NULL,
        install_id text COLLATE "C" NOT NULL,
        first_seen timestamptz      NOT NULL,
        last_seen  timestamptz      NOT NULL,
        PRIMARY KEY (app, install_id)
    );
    CREATE INDEX installs_app_last_seen ON installs (app, last_seen);
    CREATE TABLE totals (
        app     text COLLATE "C" NOT NULL,
        type    text COLLATE "C" NOT NULL,
        name    text COLLATE "C" NOT NULL,
        success smallint         NOT NULL,  -- 1, 0, or -1 not reported
        count   bigint           NOT NULL,
        PRIMARY KEY (app, type, name, success)
    );
    "#,
    // 5: API keys. Only the SHA-256 of a key is stored.
    r#"
    CREATE TABLE api_keys (
        id          text COLLATE "C" PRIMARY KEY,  -- public part of the key
        app         text COLLATE "C" NOT NULL,
        role        text             NOT NULL CHECK (role IN ('ingest', 'admin')),
        secret_hash bytea            NOT NULL CHECK (octet_length(secret_hash) = 32),
        label       text             NOT NULL,
        created_at  timestamptz      NOT NULL,
        revoked_at  timestamptz
    );
    "#,
    // 6: sessions keyed within their app and install. A session id comes from the
    // client, so keyed alone, one app's events could change another app's session.
    r#"
    ALTER TABLE sessions DROP CONSTRAINT sessions_pkey;
    ALTER TABLE sessions ADD PRIMARY KEY (app, install_id, session_id);
    DROP INDEX sessions_app_install_id;
    "#,
    // 7 (dashboard speed): a covering index for one app's session count and mean duration
    // over a period (`Storage::sessions`, twice per dashboard load), so the range is
    // answered by an index-only scan instead of a heap read per session. Additive: the
    // older `sessions_app_started_at` stays for whatever else relies on it.
    r#"
    CREATE INDEX sessions_app_started_at_duration_ms ON sessions (app, started_at) INCLUDE (duration_ms);
    "#,
    // 8: which installs each group (an event name, or a command of one) was seen from,
    // at most 100 per group (`GROUP_INSTALLS_CAP`), for small-count suppression. Filled
    // from the raw events still kept; from here on each batch keeps it in step.
    r#"
    CREATE TABLE group_installs (
        app        text COLLATE "C" NOT NULL,
        type       text COLLATE "C" NOT NULL,
        name       text COLLATE "C" NOT NULL,
        command    text COLLATE "C" NOT NULL,  -- '' for the name's own group
        install_id text COLLATE "C" NOT NULL,
        PRIMARY KEY (app, type, name, command, install_id)
    );
    CREATE INDEX group_installs_app_install_id ON group_installs (app, install_id);
    INSERT INTO group_installs (app, type, name, command, install_id)
    SELECT app, type, name, command, install_id FROM (
        SELECT g.*, row_number() OVER (PARTITION BY app, type, name, command ORDER BY install_id) AS n
        FROM (
            SELECT DISTINCT app, type, name, '' AS command, install_id FROM events
            UNION
            SELECT DISTINCT app, type, name, command, install_id FROM events WHERE coalesce(command, '') <> ''
        ) AS g
    ) AS ranked
    WHERE n <= 100;
    "#,
    // 9: counts-only uploads, one row per install and day: the key that makes a resend
    // change nothing, and what the upload held, so erasing the install can take it back
    // out of the rollups and totals.
    r#"
    CREATE TABLE count_uploads (
        app         text COLLATE "C" NOT NULL,
        install_id  text COLLATE "C" NOT NULL,
        day         date             NOT NULL,
        events      bigint           NOT NULL,
        counts      jsonb            NOT NULL,  -- the upload's groups, as sent
        received_at timestamptz      NOT NULL,
        PRIMARY KEY (app, install_id, day)
    );
    CREATE INDEX count_uploads_app_day ON count_uploads (app, day);
    "#,
    // 10: each install's registered key (the SHA-256 of its Ed25519 public key, registered
    // with its first upload) and the nonces of its proofs until they expire, so that the
    // install alone can read or erase its data and a proof cannot be replayed.
    r#"
    CREATE TABLE install_keys (
        app           text COLLATE "C" NOT NULL,
        install_id    text COLLATE "C" NOT NULL,
        key_hash      bytea            NOT NULL CHECK (octet_length(key_hash) = 32),
        registered_at timestamptz      NOT NULL,
        PRIMARY KEY (app, install_id)
    );
    CREATE TABLE install_nonces (
        app        text COLLATE "C" NOT NULL,
        install_id text COLLATE "C" NOT NULL,
        nonce      text COLLATE "C" NOT NULL,
        expires_at timestamptz      NOT NULL,
        PRIMARY KEY (app, install_id, nonce)
    );
    CREATE INDEX install_nonces_expires_at ON install_nonces (expires_at);
    "#,
    // 11 (dashboard speed and changes): which hours of each UTC day each install was
    // active in (`storage::activity`), so the installs active in a period and in the
    // period before are exact counts; and the rollups per day.
    // Filled from what still shows activity: raw events and sessions (their hours),
    // counts-only days (the day's first hour) and each install's first and last
    // sighting. Days between those whose raw events retention already dropped stay
    // unknown.
    r#"
    CREATE TABLE install_days (
        app        text COLLATE "C" NOT NULL,
        day        date             NOT NULL,  -- UTC
        install_id text COLLATE "C" NOT NULL,
        hours      integer          NOT NULL,  -- bit h: events in the hour from h:00 UTC
        PRIMARY KEY (app, day, install_id)
    );
    CREATE INDEX install_days_app_install_id ON install_days (app, install_id);
    -- Every install with activity has its installs row (counting by last sighting relies
    -- on it); events stored before migration 4 made the installs table get theirs.
    INSERT INTO installs (app, install_id, first_seen, last_seen)
    SELECT app, install_id, min(first), max(last) FROM (
        SELECT app, install_id, min(ts) AS first, max(ts) AS last FROM events GROUP BY app, install_id
        UNION ALL
        SELECT app, install_id, min(started_at), max(ended_at) FROM sessions GROUP BY app, install_id
        UNION ALL
        SELECT app, install_id, min(day)::timestamp AT TIME ZONE 'UTC', max(day)::timestamp AT TIME ZONE 'UTC'
        FROM count_uploads GROUP BY app, install_id
    ) AS seen
    GROUP BY app, install_id
    ON CONFLICT (app, install_id) DO NOTHING;
    INSERT INTO install_days (app, day, install_id, hours)
    SELECT app, day, install_id, bit_or(1 << hour) FROM (
        SELECT app, (ts AT TIME ZONE 'UTC')::date AS day, install_id,
               extract(hour FROM ts AT TIME ZONE 'UTC')::int AS hour FROM events
        UNION
        SELECT app, (started_at AT TIME ZONE 'UTC')::date, install_id,
               extract(hour FROM started_at AT TIME ZONE 'UTC')::int FROM sessions
        UNION
        SELECT app, (ended_at AT TIME ZONE 'UTC')::date, install_id,
               extract(hour FROM ended_at AT TIME ZONE 'UTC')::int FROM sessions
        UNION
        SELECT app, day, install_id, 0 FROM count_uploads
        UNION
        SELECT app, (first_seen AT TIME ZONE 'UTC')::date, install_id,
               extract(hour FROM first_seen AT TIME ZONE 'UTC')::int FROM installs
        UNION
        SELECT app, (last_seen AT TIME ZONE 'UTC')::date, install_id,
               extract(hour FROM last_seen AT TIME ZONE 'UTC')::int FROM installs
    ) AS seen
    GROUP BY app, day, install_id;
    -- The hourly rollups summed per UTC day (`storage::activity`), so a chart by day or
    -- week reads one row per day and key; filled from every hourly row, histograms added
    -- bucket by bucket (31 buckets, `tally_store::histogram::BUCKETS`).
    CREATE TABLE metrics_daily (
        hour              text COLLATE "C" NOT NULL,  -- YYYY-MM-DDT00: the day's first hour, UTC
        app               text COLLATE "C" NOT NULL,
        type              text COLLATE "C" NOT NULL,
        name              text COLLATE "C" NOT NULL,
        command           text COLLATE "C" NOT NULL,
        success           smallint         NOT NULL,
        error_category    text COLLATE "C" NOT NULL,
        count             bigint           NOT NULL,
        duration_count    bigint           NOT NULL,
        duration_total_ms bigint           NOT NULL,
        duration_min_ms   bigint,
        duration_max_ms   bigint,
        histogram         bigint[]         NOT NULL,
        PRIMARY KEY (app, hour, type, name, command, success, error_category)
    );
    INSERT INTO metrics_daily (hour, app, type, name, command, success, error_category, count, duration_count,
        duration_total_ms, duration_min_ms, duration_max_ms, histogram)
    SELECT left(hour, 10) || 'T00', app, type, name, command, success, error_category, sum(count),
        sum(duration_count), sum(duration_total_ms), min(duration_min_ms), max(duration_max_ms),
        ARRAY[sum(histogram[1]), sum(histogram[2]), sum(histogram[3]), sum(histogram[4]), sum(histogram[5]), sum(histogram[6]),
               sum(histogram[7]), sum(histogram[8]), sum(histogram[9]), sum(histogram[10]), sum(histogram[11]), sum(histogram[12]),
               sum(histogram[13]), sum(histogram[14]), sum(histogram[15]), sum(histogram[16]), sum(histogram[17]), sum(histogram[18]),
               sum(histogram[19]), sum(histogram[20]), sum(histogram[21]), sum(histogram[22]), sum(histogram[23]), sum(histogram[24]),
               sum(histogram[25]), sum(histogram[26]), sum(histogram[27]), sum(histogram[28]), sum(histogram[29]), sum(histogram[30]),
               sum(histogram[31])]::bigint[]
    FROM metrics
    GROUP BY left(hour, 10), app, type, name, command, success, error_category;
    "#,
    // 12 (write speed): how many installs each group of `group_installs` holds, so that a
    // batch checks a group's cap by reading one row instead of counting up to 100 per
    // install it brings. A row trigger keeps it in step with every insert and delete of a
    // member (batches, counts uploads, erasure, retention), in the same transaction; a
    // batch whose members are all stored or whose groups are full inserts none and so
    // pays nothing for it. And the check that lets a batch be written in one flight
    // (`batch.rs`): its insert fails with `TA001` unless it stored every event it sent.
    r#"
    CREATE TABLE group_install_counts (
        app      text COLLATE "C" NOT NULL,
        type     text COLLATE "C" NOT NULL,
        name     text COLLATE "C" NOT NULL,
        command  text COLLATE "C" NOT NULL,
        installs integer          NOT NULL,  -- rows of the group in group_installs
        PRIMARY KEY (app, type, name, command)
    );
    INSERT INTO group_install_counts (app, type, name, command, installs)
    SELECT app, type, name, command, count(*) FROM group_installs GROUP BY app, type, name, command;
    CREATE FUNCTION tally_count_group_installs() RETURNS trigger LANGUAGE plpgsql AS $count$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO group_install_counts AS c (app, type, name, command, installs)
            VALUES (NEW.app, NEW.type, NEW.name, NEW.command, 1)
            ON CONFLICT (app, type, name, command) DO UPDATE SET installs = c.installs + 1;
        ELSE
            UPDATE group_install_counts SET installs = installs - 1
            WHERE app = OLD.app AND type = OLD.type AND name = OLD.name AND command = OLD.command;
        END IF;
        RETURN NULL;
    END
    $count$;
    CREATE TRIGGER group_installs_counted AFTER INSERT OR DELETE ON group_installs
        FOR EACH ROW EXECUTE FUNCTION tally_count_group_installs();
    CREATE FUNCTION tally_expect_all_stored(stored bigint, sent bigint) RETURNS bigint
    LANGUAGE plpgsql AS $expect$
    BEGIN
        IF stored <> sent THEN
            RAISE EXCEPTION 'only % of the batch''s % events are new', stored, sent USING ERRCODE = 'TA001';
        END IF;
        RETURN stored;
    END
    $expect$;
    "#,
];

/// The schema version this build writes.
pub(super) const LATEST_VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the schema to [`LATEST_VERSION`].
pub(super) async fn migrate(client: &mut Client) -> Result<(), PostgresError> {
    migrate_to(client, LATEST_VERSION).await
}

/// Brings the schema to `target`; tests use it to build every earlier version.
pub(super) async fn migrate_to(client: &mut Client, target: i32) -> Result<(), PostgresError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tally_schema_migrations (\
           version    integer     PRIMARY KEY, \
           applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM tally_schema_migrations", &[])
        .await?
        .get(0);
    if current > LATEST_VERSION {
        return Err(PostgresError::Schema(format!(
            "the database has schema version {current}, newer than this collector supports ({LATEST_VERSION}); \
             upgrade the collector"
        )));
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(current as usize)
    {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO tally_schema_migrations (version, applied_at) VALUES ($1, now())",
            &[&(index as i32 + 1)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
