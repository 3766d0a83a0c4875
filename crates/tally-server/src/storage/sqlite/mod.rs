//! The embedded backend: one SQLite file, so the collector needs nothing installed.
//!
//! The file is a `tally-store` store, which owns events, sessions and rollups and their
//! one write path, plus the collector's own tables ([`schema`]: installs, lifetime
//! totals, API keys). Three connections: the store's writer (the group-commit task is
//! its only user), the store's reader, and `tables`, this backend's connection for its
//! own tables outside a batch. WAL lets reads run while a batch commits. Every
//! connection commits with `synchronous=FULL`: a 2xx promises the events survive power
//! loss. SQLite calls block, so each runs on tokio's blocking pool.

pub mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::{Connection, OptionalExtension};
use tally_core::Event;
use tally_core::counts::DayCounts;
use tally_core::time::{HourKey, Period};
use tally_store::rollup::{Rollup, RollupKey};
use tally_store::{DropCounts, OpenOptions, Synchronous};

use super::{
    ApiKey, CountsSummary, Erasure, EventQuery, GROUP_INSTALLS_CAP, GroupInstalls, InstallSummary, KeyRegistration,
    SessionSummary, Storage, StorageError, TotalRow,
};

/// How long a connection waits for another one's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The collector's embedded storage.
pub struct SqliteStorage {
    writer: Arc<Mutex<tally_store::Store>>,
    reader: Arc<Mutex<tally_store::Store>>,
    tables: Arc<Mutex<Connection>>,
}

impl From<tally_store::StoreError> for StorageError {
    fn from(err: tally_store::StoreError) -> Self {
        // A full disk is as passing as a busy one: the batch was rolled back whole, and
        // the client is told to come back (503 with Retry-After), never given a 2xx.
        if err.is_busy() || err.is_disk_full() {
            StorageError::Unavailable(err.to_string())
        } else {
            StorageError::Internal(err.to_string())
        }
    }
}

impl From<rusqlite::Error> for StorageError {
    fn from(err: rusqlite::Error) -> Self {
        tally_store::StoreError::from(err).into()
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file at `path`, bringing the store's and
    /// the collector's schemas up to date.
    pub fn open(path: &Path) -> Result<SqliteStorage, StorageError> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|err| StorageError::Internal(format!("create {}: {err}", parent.display())))?;
        }
        let options = OpenOptions {
            busy_timeout: BUSY_TIMEOUT,
            synchronous: Synchronous::Full,
        };
        let tables_connection = || -> Result<Connection, StorageError> {
            let tables = Connection::open(path)?;
            tables.busy_timeout(BUSY_TIMEOUT)?;
            tables.pragma_update(None, "synchronous", "FULL")?;
            Ok(tables)
        };
        // The collector's early migrations run against the store's tables they were
        // written for; then the store takes its latest layout, then the later ones run.
        let early = tally_store::Store::open_file_at(path, &options, schema::STORE_VERSION_OF_EARLY_MIGRATIONS)?;
        let mut tables = tables_connection()?;
        if schema::version(&tables)? < schema::EARLY_MIGRATIONS {
            let store_version = tally_store::schema::version(&tables)?;
            if store_version > schema::STORE_VERSION_OF_EARLY_MIGRATIONS {
                return Err(StorageError::Internal(format!(
                    "{}: the store's tables are at version {store_version} but the collector's only at \
                     version {}; a collector database is never in that state (is it an app's store?)",
                    path.display(),
                    schema::version(&tables)?
                )));
            }
            schema::migrate_to(&mut tables, schema::EARLY_MIGRATIONS)?;
        }
        drop(early);
        let writer = tally_store::Store::open_file(path, &options)?;
        let reader = tally_store::Store::open_file(path, &options)?;
        schema::migrate(&mut tables)?;
        Ok(SqliteStorage {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
            tables: Arc::new(Mutex::new(tables)),
        })
    }
}

/// Runs `work` with the connection behind `shared` on the blocking pool.
async fn blocking<C: Send + 'static, T: Send + 'static>(
    shared: &Arc<Mutex<C>>,
    work: impl FnOnce(&mut C) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        let mut guard = shared.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut guard)
    })
    .await
    .map_err(|err| StorageError::Internal(format!("storage task failed: {err}")))?
}

fn text(ts: Timestamp) -> String {
    tally_core::time::format(ts)
}

fn parse_ts(text: &str) -> Result<Timestamp, StorageError> {
    tally_core::time::parse(text).map_err(|err| StorageError::Internal(format!("stored time {text:?}: {err}")))
}

fn key_from_row(row: &rusqlite::Row<'_>) -> Result<ApiKey, StorageError> {
    let role: String = row.get(2)?;
    let hash: String = row.get(3)?;
    let mut secret_hash = [0u8; 32];
    hex::decode_to_slice(&hash, &mut secret_hash)
        .map_err(|_| StorageError::Internal("api_keys.secret_hash is not 64 hex digits".into()))?;
    let created_at: String = row.get(5)?;
    let revoked_at: Option<String> = row.get(6)?;
    Ok(ApiKey {
        id: row.get(0)?,
        app: row.get(1)?,
        role: role.parse().map_err(StorageError::Internal)?,
        secret_hash,
        label: row.get(4)?,
        created_at: parse_ts(&created_at)?,
        revoked_at: revoked_at.as_deref().map(parse_ts).transpose()?,
    })
}

const KEY_COLUMNS: &str = "id, app, role, secret_hash, label, created_at, revoked_at";

/// Counts the newly stored events of a batch in `installs`, `totals`, `install_days`,
/// `metrics_daily` and `group_installs`, inside the batch's transaction. Each table's rows are folded in
/// memory first, so a batch upserts each install, total and group once, however many
/// of its events share them.
fn count_installs_and_totals(
    tx: &rusqlite::Transaction<'_>,
    new: &[&Event],
    hourly: &BTreeMap<RollupKey, Rollup>,
) -> Result<(), tally_store::StoreError> {
    let installs = super::install_sightings(new);
    let totals = super::total_counts(new);
    let mut install = tx.prepare_cached(
        "INSERT INTO installs (app, install_id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (app, install_id) DO UPDATE SET \
           first_seen = min(first_seen, excluded.first_seen), \
           last_seen = max(last_seen, excluded.last_seen)",
    )?;
    for ((app, install_id), (first, last)) in installs {
        install.execute((app, install_id, text(first), text(last)))?;
    }
    let mut total = tx.prepare_cached(
        "INSERT INTO totals (app, type, name, success, count) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (app, type, name, success) DO UPDATE SET count = count + excluded.count",
    )?;
    for ((app, kind, name, success), count) in totals {
        total.execute((app, kind, name, success, count))?;
    }
    record_install_days(tx, super::activity::install_days(new.iter().copied()))?;
    tally_store::rollup::add_rollups_to(tx, "metrics_daily", &super::activity::to_days(hourly))?;
    let mut member = tx.prepare_cached(&add_member_sql())?;
    let pairs: BTreeSet<_> = new.iter().flat_map(|event| super::groups_of(event)).collect();
    for pair in pairs {
        member.execute(pair)?;
    }
    Ok(())
}

/// Adds `days` (per app, install and UTC day, the hours it was active in) to
/// `install_days`, inside the batch's transaction.
fn record_install_days(
    conn: &rusqlite::Connection,
    days: BTreeMap<(&str, &str, Date), i32>,
) -> Result<(), rusqlite::Error> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO install_days (app, day, install_id, hours) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (app, day, install_id) DO UPDATE SET hours = hours | excluded.hours",
    )?;
    for ((app, install_id, day), hours) in days {
        upsert.execute((app, day.to_string(), install_id, hours))?;
    }
    Ok(())
}

/// Rollup rows of `table` (`metrics` or `metrics_daily`) of `app` with `from <= hour < to`.
fn read_rollups(
    conn: &Connection,
    table: &'static str,
    app: &str,
    from: HourKey,
    to: HourKey,
) -> Result<Vec<(RollupKey, Rollup)>, StorageError> {
    // `metrics` is keyed by hour first, `metrics_daily` by app first: each range is an
    // index range.
    let mut statement = conn.prepare_cached(&format!(
        "SELECT hour, app, type, name, command, success, error_category, count, duration_count, \
         duration_total_ms, duration_min_ms, duration_max_ms, histogram FROM {table} \
         WHERE app = ?1 AND hour >= ?2 AND hour < ?3"
    ))?;
    let mut rows = statement.query((app, from.to_string(), to.to_string()))?;
    let mut rollups = Vec::new();
    while let Some(row) = rows.next()? {
        rollups.push((RollupKey::from_row_at(row, 0)?, Rollup::from_row_at(row, 7)?));
    }
    Ok(rollups)
}

/// [`Storage::daily_rollups`] in one read transaction: whole days from `metrics_daily`,
/// the partial days at the ends from `metrics`.
fn read_daily_rollups(conn: &Connection, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StorageError> {
    let read = super::activity::DailyRead::of(period);
    let tx = conn.unchecked_transaction()?;
    let mut rows = Vec::new();
    if let Some((first, end)) = read.days {
        rows = read_rollups(&tx, "metrics_daily", app, first, end)?;
    }
    let mut hourly = Vec::new();
    for part in &read.hours {
        let (from, to) = part.hours();
        hourly.extend(read_rollups(&tx, "metrics", app, from, to)?);
    }
    tx.commit()?;
    rows.extend(super::activity::sum_by_day(hourly));
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(rows)
}

/// For each of `windows`: the installs of `app` active in it. A window ending after the
/// app's last sighting is an index count on `installs`
/// ([`super::activity::ActivityWindow::answered_by_last_seen`]); any other counts the
/// distinct installs of its days in `install_days`, at hour resolution on its end days.
fn count_installs_in(
    conn: &Connection,
    app: &str,
    windows: &[super::activity::ActivityWindow],
) -> Result<Vec<u64>, StorageError> {
    let tx = conn.unchecked_transaction()?;
    let latest: Option<String> = tx.query_row("SELECT max(last_seen) FROM installs WHERE app = ?1", [app], |row| {
        row.get(0)
    })?;
    let latest = latest.as_deref().map(parse_ts).transpose()?;
    let mut seen_since = tx.prepare_cached("SELECT count(*) FROM installs WHERE app = ?1 AND last_seen >= ?2")?;
    let mut active_in = tx.prepare_cached(
        "SELECT count(DISTINCT install_id) FROM install_days WHERE app = ?1 AND day >= ?2 AND day <= ?4 \
         AND CASE WHEN day > ?2 AND day < ?4 THEN 1 WHEN day = ?2 THEN (hours & ?3) <> 0 \
           ELSE (hours & ?5) <> 0 END",
    )?;
    let mut counts = Vec::with_capacity(windows.len());
    for window in windows {
        let count: i64 = if window.answered_by_last_seen(latest) {
            seen_since.query_row((app, text(window.start)), |row| row.get(0))?
        } else {
            active_in.query_row(
                (
                    app,
                    window.first_day.to_string(),
                    window.first_hours,
                    window.last_day.to_string(),
                    window.last_hours,
                ),
                |row| row.get(0),
            )?
        };
        counts.push(count.max(0) as u64);
    }
    drop((seen_since, active_in));
    tx.commit()?;
    Ok(counts)
}

/// Remembers install `?5` in group (`?1`..`?4`) while the group holds fewer than
/// [`GROUP_INSTALLS_CAP`] installs, by the group's count (`group_install_counts`, which
/// a trigger keeps).
fn add_member_sql() -> String {
    format!(
        "INSERT OR IGNORE INTO group_installs (app, type, name, command, install_id) \
         SELECT ?1, ?2, ?3, ?4, ?5 \
         WHERE coalesce((SELECT installs FROM group_install_counts WHERE app = ?1 AND type = ?2 \
             AND name = ?3 AND command = ?4), 0) < {GROUP_INSTALLS_CAP}"
    )
}

/// One install's raw events.
fn install_events(conn: &rusqlite::Connection, app: &str, install_id: &str) -> Result<Vec<Event>, StorageError> {
    Ok(tally_store::read::install_events(conn, app, install_id)?)
}

/// One install's counts-only days, as they were uploaded.
fn install_uploads(conn: &rusqlite::Connection, app: &str, install_id: &str) -> Result<Vec<DayCounts>, StorageError> {
    let mut statement =
        conn.prepare_cached("SELECT day, counts FROM count_uploads WHERE app = ?1 AND install_id = ?2 ORDER BY day")?;
    let rows = statement.query_map((app, install_id), |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut uploads = Vec::new();
    for row in rows {
        let (day, counts) = row?;
        uploads.push(DayCounts {
            app: app.to_owned(),
            install_id: install_id.to_owned(),
            day: day
                .parse()
                .map_err(|err| StorageError::Internal(format!("count_uploads.day {day:?}: {err}")))?,
            counts: serde_json::from_str(&counts)
                .map_err(|err| StorageError::Internal(format!("count_uploads.counts: {err}")))?,
        });
    }
    Ok(uploads)
}

/// What [`Storage::erase_install`] does besides deleting raw events and sessions, inside
/// the store's transaction, before those go.
fn erase_in(conn: &rusqlite::Connection, app: &str, install_id: &str) -> Result<Erasure, StorageError> {
    let events = install_events(conn, app, install_id)?;
    let uploads = install_uploads(conn, app, install_id)?;
    let super::Contribution {
        rollups,
        totals,
        events: uncounted,
    } = super::contributions(&events, &uploads);
    subtract_rollups(conn, "metrics", &rollups)?;
    subtract_rollups(conn, "metrics_daily", &super::activity::to_days(&rollups))?;
    for ((kind, name, success), count) in &totals {
        conn.execute(
            "UPDATE totals SET count = count - ?5 WHERE app = ?1 AND type = ?2 AND name = ?3 AND success = ?4",
            (app, kind, name, success, *count as i64),
        )?;
        conn.execute(
            "DELETE FROM totals WHERE app = ?1 AND type = ?2 AND name = ?3 AND success = ?4 AND count <= 0",
            (app, kind, name, success),
        )?;
    }
    for table in [
        "installs",
        "group_installs",
        "install_days",
        "count_uploads",
        "install_keys",
        "install_nonces",
    ] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE app = ?1 AND install_id = ?2"),
            (app, install_id),
        )?;
    }
    Ok(Erasure {
        events: events.len() as u64,
        counted_days: uploads.len() as u64,
        uncounted,
    })
}

/// Takes `rollups` back out of `table` (the hourly rollups, or the per-day ones with
/// keys of days); a row left with no event goes. The shortest and longest durations of
/// a row cannot be taken back and are cleared when no timed event is left.
fn subtract_rollups(
    conn: &rusqlite::Connection,
    table: &'static str,
    rollups: &BTreeMap<RollupKey, Rollup>,
) -> Result<(), StorageError> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT count, duration_count, duration_total_ms, histogram FROM {table} \
         WHERE hour = ?1 AND app = ?2 AND type = ?3 AND name = ?4 AND command = ?5 AND success = ?6 \
         AND error_category = ?7",
    ))?;
    let mut update = conn.prepare_cached(&format!(
        "UPDATE {table} SET count = ?8, duration_count = ?9, duration_total_ms = ?10, histogram = ?11, \
         duration_min_ms = CASE WHEN ?9 = 0 THEN NULL ELSE duration_min_ms END, \
         duration_max_ms = CASE WHEN ?9 = 0 THEN NULL ELSE duration_max_ms END \
         WHERE hour = ?1 AND app = ?2 AND type = ?3 AND name = ?4 AND command = ?5 AND success = ?6 \
         AND error_category = ?7",
    ))?;
    let mut delete = conn.prepare_cached(&format!(
        "DELETE FROM {table} WHERE hour = ?1 AND app = ?2 AND type = ?3 AND name = ?4 AND command = ?5 \
         AND success = ?6 AND error_category = ?7",
    ))?;
    for (key, rollup) in rollups {
        let params = (
            &key.hour.to_string(),
            &key.app,
            &key.kind,
            &key.name,
            &key.command,
            key.success,
            &key.error_category,
        );
        let stored: Option<(i64, i64, i64, String)> = select
            .query_row(params, |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .optional()?;
        let Some((count, duration_count, duration_total_ms, histogram)) = stored else {
            continue;
        };
        let count = (count as u64).saturating_sub(rollup.count);
        if count == 0 {
            delete.execute(params)?;
            continue;
        }
        let mut histogram = tally_store::histogram::Histogram::from_json(&histogram)?;
        for (bucket, taken) in histogram.counts.iter_mut().zip(rollup.histogram.counts) {
            *bucket = bucket.saturating_sub(taken);
        }
        update.execute(rusqlite::params![
            key.hour.to_string(),
            key.app,
            key.kind,
            key.name,
            key.command,
            key.success,
            key.error_category,
            count as i64,
            (duration_count as u64).saturating_sub(rollup.duration_count) as i64,
            (duration_total_ms as u64).saturating_sub(rollup.duration_total_ms) as i64,
            histogram.to_json(),
        ])?;
    }
    Ok(())
}

/// For each app with installs: how many were last seen at or after each of `since`.
fn count_active_installs(conn: &Connection, since: &[String]) -> Result<Vec<(String, Vec<u64>)>, StorageError> {
    let apps: Vec<String> = conn
        .prepare_cached("SELECT DISTINCT app FROM installs ORDER BY app")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut count = conn.prepare_cached("SELECT count(*) FROM installs WHERE app = ?1 AND last_seen >= ?2")?;
    let mut result = Vec::with_capacity(apps.len());
    for app in apps {
        let counts = since
            .iter()
            .map(|start| {
                count
                    .query_row((&app, start), |row| row.get::<_, i64>(0))
                    .map(|n| n as u64)
            })
            .collect::<Result<Vec<_>, _>>()?;
        result.push((app, counts));
    }
    Ok(result)
}

#[async_trait]
impl Storage for SqliteStorage {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, events: Vec<Event>) -> Result<Vec<bool>, StorageError> {
        blocking(&self.writer, move |store| {
            let outcome = store.insert_batch_with(&events, DropCounts::default(), count_installs_and_totals)?;
            Ok(outcome.stored)
        })
        .await
    }

    async fn insert_counts(&self, counts: &DayCounts) -> Result<bool, StorageError> {
        let counts = counts.clone();
        blocking(&self.writer, move |store| {
            let tx = store.connection().unchecked_transaction()?;
            let groups = serde_json::to_string(&counts.counts)
                .map_err(|err| StorageError::Internal(format!("counts: {err}")))?;
            let events: u64 = counts.counts.iter().map(|group| group.count).sum();
            // The first statement writes, so the transaction holds the write lock from
            // here on.
            let claimed = tx.execute(
                "INSERT OR IGNORE INTO count_uploads (app, install_id, day, events, counts, received_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                (
                    &counts.app,
                    &counts.install_id,
                    counts.day.to_string(),
                    events as i64,
                    &groups,
                    text(tally_core::time::now_millis()),
                ),
            )?;
            if claimed == 0 {
                return Ok(false);
            }
            let rollups = super::counts_rollups(&counts);
            tally_store::rollup::add_rollups(&tx, &rollups)?;
            // A day's counts land in its first hour: the per-day key already.
            tally_store::rollup::add_rollups_to(&tx, "metrics_daily", &rollups)?;
            let mut total = tx.prepare_cached(
                "INSERT INTO totals (app, type, name, success, count) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (app, type, name, success) DO UPDATE SET count = count + excluded.count",
            )?;
            for ((kind, name, success), count) in super::counts_totals(&counts) {
                total.execute((&counts.app, kind, name, success, count as i64))?;
            }
            drop(total);
            let seen = text(super::day_start(counts.day));
            tx.execute(
                "INSERT INTO installs (app, install_id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3) \
                 ON CONFLICT (app, install_id) DO UPDATE SET \
                   first_seen = min(first_seen, excluded.first_seen), \
                   last_seen = max(last_seen, excluded.last_seen)",
                (&counts.app, &counts.install_id, &seen),
            )?;
            let mut member = tx.prepare_cached(&add_member_sql())?;
            for pair in super::counts_groups(&counts) {
                member.execute(pair)?;
            }
            drop(member);
            record_install_days(
                &tx,
                BTreeMap::from([(
                    (counts.app.as_str(), counts.install_id.as_str(), counts.day),
                    super::activity::COUNTS_HOURS,
                )]),
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn counts_summary(&self, app: &str, from: Date, to: Date) -> Result<CountsSummary, StorageError> {
        let app = app.to_owned();
        blocking(&self.tables, move |conn| {
            let (uploads, installs, events): (i64, i64, i64) = conn.query_row(
                "SELECT count(*), count(DISTINCT install_id), coalesce(sum(events), 0) FROM count_uploads \
                 WHERE app = ?1 AND day >= ?2 AND day < ?3",
                (&app, from.to_string(), to.to_string()),
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )?;
            Ok(CountsSummary {
                uploads: uploads as u64,
                installs: installs as u64,
                events: events as u64,
            })
        })
        .await
    }

    async fn group_installs(&self, app: Option<&str>) -> Result<Vec<GroupInstalls>, StorageError> {
        let app = app.map(str::to_owned);
        blocking(&self.tables, move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT app, type, name, command, min(installs, ?2) FROM group_install_counts \
                 WHERE (?1 IS NULL OR app = ?1) AND installs > 0 \
                 ORDER BY app, type, name, command",
            )?;
            let rows = statement.query_map((&app, GROUP_INSTALLS_CAP as i64), |row| {
                Ok(GroupInstalls {
                    app: row.get(0)?,
                    kind: row.get(1)?,
                    name: row.get(2)?,
                    command: row.get(3)?,
                    installs: row.get::<_, i64>(4)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn rollups(&self, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StorageError> {
        let (app, period) = (app.to_owned(), *period);
        blocking(&self.reader, move |store| Ok(store.rollups(Some(&app), &period)?)).await
    }

    async fn daily_rollups(&self, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StorageError> {
        let (app, period) = (app.to_owned(), *period);
        blocking(&self.tables, move |conn| read_daily_rollups(conn, &app, &period)).await
    }

    async fn active_installs_in(&self, app: &str, windows: &[Period]) -> Result<Vec<u64>, StorageError> {
        let app = app.to_owned();
        let windows: Vec<_> = windows.iter().map(super::activity::ActivityWindow::of).collect();
        blocking(&self.tables, move |conn| count_installs_in(conn, &app, &windows)).await
    }

    async fn sessions(&self, app: &str, period: &Period) -> Result<SessionSummary, StorageError> {
        let (app, period) = (app.to_owned(), *period);
        blocking(&self.reader, move |store| {
            Ok(store.session_summary(Some(&app), &period)?)
        })
        .await
    }

    async fn active_installs(&self, since: &[Timestamp]) -> Result<Vec<(String, Vec<u64>)>, StorageError> {
        let since: Vec<String> = since.iter().copied().map(text).collect();
        blocking(&self.tables, move |conn| count_active_installs(conn, &since)).await
    }

    async fn named_counts(&self, name: &str, from_hours: &[HourKey]) -> Result<Vec<(String, Vec<u64>)>, StorageError> {
        let (name, from_hours) = (name.to_owned(), from_hours.to_vec());
        blocking(&self.reader, move |store| Ok(store.named_counts(&name, &from_hours)?)).await
    }

    async fn totals(&self) -> Result<Vec<TotalRow>, StorageError> {
        blocking(&self.tables, |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT app, type, name, success, count FROM totals ORDER BY app, type, name, success",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(TotalRow {
                    app: row.get(0)?,
                    kind: row.get(1)?,
                    name: row.get(2)?,
                    success: row.get(3)?,
                    count: row.get::<_, i64>(4)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StorageError> {
        let query = query.clone();
        blocking(&self.reader, move |store| Ok(store.query_events(&query)?)).await
    }

    async fn erase_install(&self, app: &str, install_id: &str) -> Result<Erasure, StorageError> {
        let (app, install_id) = (app.to_owned(), install_id.to_owned());
        blocking(&self.writer, move |store| {
            let mut erased = Erasure::default();
            store.erase_install_with(&app, &install_id, |tx| {
                erased =
                    erase_in(tx, &app, &install_id).map_err(|err| tally_store::StoreError::Invalid(err.to_string()))?;
                Ok(())
            })?;
            Ok(erased)
        })
        .await
    }

    async fn register_install_key(
        &self,
        app: &str,
        install_id: &str,
        key_hash: [u8; 32],
    ) -> Result<KeyRegistration, StorageError> {
        let (app, install_id) = (app.to_owned(), install_id.to_owned());
        blocking(&self.tables, move |conn| {
            let inserted = conn.execute(
                "INSERT OR IGNORE INTO install_keys (app, install_id, key_hash, registered_at) VALUES (?1, ?2, ?3, ?4)",
                (
                    &app,
                    &install_id,
                    hex::encode(key_hash),
                    text(tally_core::time::now_millis()),
                ),
            )?;
            if inserted > 0 {
                return Ok(KeyRegistration::Registered);
            }
            let stored: String = conn.query_row(
                "SELECT key_hash FROM install_keys WHERE app = ?1 AND install_id = ?2",
                (&app, &install_id),
                |row| row.get(0),
            )?;
            Ok(if stored == hex::encode(key_hash) {
                KeyRegistration::Unchanged
            } else {
                KeyRegistration::Conflict
            })
        })
        .await
    }

    async fn install_key(&self, app: &str, install_id: &str) -> Result<Option<[u8; 32]>, StorageError> {
        let (app, install_id) = (app.to_owned(), install_id.to_owned());
        blocking(&self.tables, move |conn| {
            let stored: Option<String> = conn
                .query_row(
                    "SELECT key_hash FROM install_keys WHERE app = ?1 AND install_id = ?2",
                    (&app, &install_id),
                    |row| row.get(0),
                )
                .optional()?;
            stored
                .map(|hash| {
                    let mut bytes = [0u8; 32];
                    hex::decode_to_slice(&hash, &mut bytes)
                        .map_err(|_| StorageError::Internal("install_keys.key_hash is not 64 hex digits".into()))?;
                    Ok(bytes)
                })
                .transpose()
        })
        .await
    }

    async fn spend_nonce(
        &self,
        app: &str,
        install_id: &str,
        nonce: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let (app, install_id, nonce) = (app.to_owned(), install_id.to_owned(), nonce.to_owned());
        blocking(&self.tables, move |conn| {
            conn.execute("DELETE FROM install_nonces WHERE expires_at < ?1", [text(now)])?;
            let inserted = conn.execute(
                "INSERT OR IGNORE INTO install_nonces (app, install_id, nonce, expires_at) VALUES (?1, ?2, ?3, ?4)",
                (&app, &install_id, &nonce, text(expires)),
            )?;
            Ok(inserted > 0)
        })
        .await
    }

    async fn install_summary(&self, app: &str, install_id: &str) -> Result<InstallSummary, StorageError> {
        let (app, install_id) = (app.to_owned(), install_id.to_owned());
        blocking(&self.tables, move |conn| {
            let events = install_events(conn, &app, &install_id)?;
            let uploads = install_uploads(conn, &app, &install_id)?;
            let seen: Option<(String, String)> = conn
                .query_row(
                    "SELECT first_seen, last_seen FROM installs WHERE app = ?1 AND install_id = ?2",
                    (&app, &install_id),
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let (first_seen, last_seen) = match seen {
                Some((first, last)) => (Some(parse_ts(&first)?), Some(parse_ts(&last)?)),
                None => (None, None),
            };
            Ok(super::summarize(&events, &uploads, first_seen, last_seen))
        })
        .await
    }

    async fn expire(&self, before: Timestamp) -> Result<u64, StorageError> {
        let deleted = blocking(&self.writer, move |store| Ok(store.expire_before(before)?)).await?;
        blocking(&self.tables, move |conn| {
            let cutoff = text(before);
            // An install's group memberships go with its install row.
            conn.execute(
                "DELETE FROM group_installs WHERE EXISTS (SELECT 1 FROM installs AS i \
                 WHERE i.app = group_installs.app AND i.install_id = group_installs.install_id \
                   AND i.last_seen < ?1)",
                [&cutoff],
            )?;
            // So does its daily activity: the days before the cutoff's go by date, and
            // an expiring install's last ones can only be on the cutoff's day.
            // `install_days` then never names an install the installs table no longer has
            // (`ActivityWindow::answered_by_last_seen`).
            conn.execute("DELETE FROM install_days WHERE day < ?1", [&cutoff[..10]])?;
            conn.execute(
                "DELETE FROM install_days WHERE day = ?2 AND EXISTS (SELECT 1 FROM installs AS i \
                 WHERE i.app = install_days.app AND i.install_id = install_days.install_id \
                   AND i.last_seen < ?1)",
                [&cutoff, &cutoff[..10].to_owned()],
            )?;
            conn.execute("DELETE FROM installs WHERE last_seen < ?1", [&cutoff])?;
            conn.execute("DELETE FROM count_uploads WHERE day < ?1", [&cutoff[..10]])?;
            Ok(deleted)
        })
        .await
    }

    async fn put_key(&self, key: &ApiKey) -> Result<(), StorageError> {
        let key = key.clone();
        blocking(&self.tables, move |conn| {
            conn.execute(
                "INSERT INTO api_keys (id, app, role, secret_hash, label, created_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                (
                    &key.id,
                    &key.app,
                    key.role.as_str(),
                    hex::encode(key.secret_hash),
                    &key.label,
                    text(key.created_at),
                    key.revoked_at.map(text),
                ),
            )?;
            Ok(())
        })
        .await
    }

    async fn key(&self, id: &str) -> Result<Option<ApiKey>, StorageError> {
        let id = id.to_owned();
        blocking(&self.tables, move |conn| {
            let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1");
            let row = conn.query_row(&sql, [&id], |row| Ok(key_from_row(row))).optional()?;
            row.transpose()
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<ApiKey>, StorageError> {
        blocking(&self.tables, |conn| {
            let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY app, created_at, id");
            let mut statement = conn.prepare(&sql)?;
            let mut rows = statement.query([])?;
            let mut keys = Vec::new();
            while let Some(row) = rows.next()? {
                keys.push(key_from_row(row)?);
            }
            Ok(keys)
        })
        .await
    }

    async fn revoke_key(&self, id: &str, at: Timestamp) -> Result<bool, StorageError> {
        let id = id.to_owned();
        blocking(&self.tables, move |conn| {
            let changed = conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
                (&id, text(at)),
            )?;
            Ok(changed > 0)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        blocking(&self.reader, |store| {
            store.data_version()?;
            Ok(())
        })
        .await
    }
}
