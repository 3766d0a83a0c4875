//! The embedded backend: one SQLite file through `tally-store`, so the collector needs
//! nothing installed.
//!
//! One writer connection (the group-commit task is its only user) and one reader
//! connection; WAL lets reads run while a batch commits. Commits use
//! `synchronous=FULL`: a 2xx promises the events survive power loss. SQLite calls block,
//! so each runs on tokio's blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::OptionalExtension;
use tally_core::Event;
use tally_store::histogram::Histogram;
use tally_store::{DropCounts, OpenOptions, Synchronous};

use super::{ApiKey, EventQuery, RollupRow, SessionSummary, StorageError, Store, TotalRow};

/// Raw events deleted per transaction when expiring.
const EXPIRE_CHUNK: u64 = 20_000;

/// The collector's embedded store.
pub struct SqliteStore {
    writer: Arc<Mutex<tally_store::Store>>,
    reader: Arc<Mutex<tally_store::Store>>,
}

impl From<tally_store::StoreError> for StorageError {
    fn from(err: tally_store::StoreError) -> Self {
        if err.is_busy() {
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

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StorageError> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|err| StorageError::Internal(format!("create {}: {err}", parent.display())))?;
        }
        let options = OpenOptions {
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Full,
        };
        let writer = tally_store::Store::open_file(path, &options)?;
        let reader = tally_store::Store::open_file(path, &options)?;
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }
}

/// Runs `work` with the connection behind `store` on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: &Arc<Mutex<tally_store::Store>>,
    work: impl FnOnce(&mut tally_store::Store) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(PoisonError::into_inner);
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

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, events: Vec<Event>) -> Result<Vec<bool>, StorageError> {
        blocking(&self.writer, move |store| {
            let outcome = store.insert_batch_with(&events, DropCounts::default(), |tx, new| {
                let mut install = tx.prepare_cached(
                    "INSERT INTO installs (app, install_id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3) \
                     ON CONFLICT (app, install_id) DO UPDATE SET \
                       first_seen = min(first_seen, excluded.first_seen), \
                       last_seen = max(last_seen, excluded.last_seen)",
                )?;
                let mut total = tx.prepare_cached(
                    "INSERT INTO totals (app, type, name, success, count) VALUES (?1, ?2, ?3, ?4, 1) \
                     ON CONFLICT (app, type, name, success) DO UPDATE SET count = count + 1",
                )?;
                for event in new {
                    install.execute((&event.app, &event.install_id, text(event.ts)))?;
                    total.execute((
                        &event.app,
                        &event.kind,
                        &event.name,
                        event.success.map_or(-1, i64::from),
                    ))?;
                }
                Ok(())
            })?;
            Ok(outcome.stored)
        })
        .await
    }

    async fn rollups(&self, app: &str, from_hour: &str, to_hour: &str) -> Result<Vec<RollupRow>, StorageError> {
        let (app, from_hour, to_hour) = (app.to_owned(), from_hour.to_owned(), to_hour.to_owned());
        blocking(&self.reader, move |store| {
            let mut statement = store.connection().prepare_cached(
                "SELECT hour, type, name, command, success, error_category, count, duration_count, duration_total_ms, \
                 duration_min_ms, duration_max_ms, histogram \
                 FROM metrics WHERE app = ?1 AND hour >= ?2 AND hour < ?3 \
                 ORDER BY hour, type, name, command, success, error_category",
            )?;
            let rows = statement.query_map((&app, &from_hour, &to_hour), |row| {
                let rollup = RollupRow {
                    hour: row.get(0)?,
                    kind: row.get(1)?,
                    name: row.get(2)?,
                    command: row.get(3)?,
                    success: row.get(4)?,
                    error_category: row.get(5)?,
                    count: row.get::<_, i64>(6)? as u64,
                    duration_count: row.get::<_, i64>(7)? as u64,
                    duration_total_ms: row.get::<_, i64>(8)? as u64,
                    duration_min_ms: row.get::<_, Option<i64>>(9)?.map(|ms| ms as u64),
                    duration_max_ms: row.get::<_, Option<i64>>(10)?.map(|ms| ms as u64),
                    histogram: Histogram::default(),
                };
                Ok((rollup, row.get::<_, String>(11)?))
            })?;
            // The histogram is stored as JSON; parsed here, outside rusqlite's row closure.
            rows.map(|row| {
                let (mut rollup, histogram) = row?;
                rollup.histogram = Histogram::from_json(&histogram)?;
                Ok(rollup)
            })
            .collect()
        })
        .await
    }

    async fn sessions(&self, app: &str, from: Timestamp, to: Timestamp) -> Result<SessionSummary, StorageError> {
        let app = app.to_owned();
        blocking(&self.reader, move |store| {
            let (count, average): (i64, Option<f64>) = store.connection().query_row(
                "SELECT count(*), avg(duration_ms) FROM sessions WHERE app = ?1 AND started_at >= ?2 AND started_at < ?3",
                (&app, text(from), text(to)),
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            Ok(SessionSummary {
                count: count as u64,
                avg_duration_ms: average,
            })
        })
        .await
    }

    async fn active_installs(&self, since: &[Timestamp]) -> Result<Vec<(String, Vec<u64>)>, StorageError> {
        let since: Vec<String> = since.iter().copied().map(text).collect();
        blocking(&self.reader, move |store| {
            let conn = store.connection();
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
        })
        .await
    }

    async fn named_counts(&self, name: &str, from_hours: &[String]) -> Result<Vec<(String, Vec<u64>)>, StorageError> {
        let (name, from_hours) = (name.to_owned(), from_hours.to_vec());
        blocking(&self.reader, move |store| {
            let Some(earliest) = from_hours.iter().min().cloned() else {
                return Ok(Vec::new());
            };
            let sums: Vec<String> = (0..from_hours.len())
                .map(|index| format!("coalesce(sum(CASE WHEN hour >= ?{} THEN count END), 0)", index + 3))
                .collect();
            let sql = format!(
                "SELECT app, {} FROM metrics WHERE name = ?1 AND hour >= ?2 GROUP BY app ORDER BY app",
                sums.join(", ")
            );
            let mut params = vec![name, earliest];
            params.extend(from_hours.iter().cloned());
            let mut statement = store.connection().prepare_cached(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(params.iter()), |row| {
                let app: String = row.get(0)?;
                let counts = (0..from_hours.len())
                    .map(|index| row.get::<_, i64>(index + 1).map(|count| count as u64))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((app, counts))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn totals(&self) -> Result<Vec<TotalRow>, StorageError> {
        blocking(&self.reader, |store| {
            let mut statement = store.connection().prepare_cached(
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
        blocking(&self.reader, move |store| {
            let mut sql = format!("SELECT {} FROM events WHERE app = ?", tally_store::read::EVENT_COLUMNS);
            let mut params: Vec<String> = vec![query.app.clone()];
            for (column, value) in [
                ("type", &query.kind),
                ("name", &query.name),
                ("install_id", &query.install_id),
                ("session_id", &query.session_id),
            ] {
                if let Some(value) = value {
                    sql.push_str(&format!(" AND {column} = ?"));
                    params.push(value.clone());
                }
            }
            if let Some(from) = query.from {
                sql.push_str(" AND ts >= ?");
                params.push(text(from));
            }
            if let Some(to) = query.to {
                sql.push_str(" AND ts < ?");
                params.push(text(to));
            }
            if let Some((ts, id)) = query.after {
                sql.push_str(" AND (ts > ? OR (ts = ? AND id > ?))");
                params.push(text(ts));
                params.push(text(ts));
                params.push(id.to_string());
            }
            sql.push_str(&format!(" ORDER BY ts, id LIMIT {}", query.limit));
            let mut statement = store.connection().prepare(&sql)?;
            let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(tally_store::read::event_from_row(row)?);
            }
            Ok(events)
        })
        .await
    }

    async fn erase_install(&self, app: &str, install_id: &str) -> Result<u64, StorageError> {
        let (app, install_id) = (app.to_owned(), install_id.to_owned());
        blocking(&self.writer, move |store| {
            let conn = store.connection();
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let result = (|| -> Result<u64, StorageError> {
                let deleted = conn.execute(
                    "DELETE FROM events WHERE app = ?1 AND install_id = ?2",
                    (&app, &install_id),
                )?;
                conn.execute(
                    "DELETE FROM sessions WHERE app = ?1 AND install_id = ?2",
                    (&app, &install_id),
                )?;
                conn.execute(
                    "DELETE FROM installs WHERE app = ?1 AND install_id = ?2",
                    (&app, &install_id),
                )?;
                Ok(deleted as u64)
            })();
            conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
            result
        })
        .await
    }

    async fn expire(&self, before: Timestamp) -> Result<u64, StorageError> {
        blocking(&self.writer, move |store| {
            let cutoff = text(before);
            let mut deleted = 0;
            loop {
                let chunk = store.delete_oldest_raw(Some(&cutoff), EXPIRE_CHUNK)?;
                deleted += chunk;
                if chunk < EXPIRE_CHUNK {
                    break;
                }
            }
            store
                .connection()
                .execute("DELETE FROM sessions WHERE ended_at < ?1", [&cutoff])?;
            store
                .connection()
                .execute("DELETE FROM installs WHERE last_seen < ?1", [&cutoff])?;
            Ok(deleted)
        })
        .await
    }

    async fn put_key(&self, key: &ApiKey) -> Result<(), StorageError> {
        let key = key.clone();
        blocking(&self.writer, move |store| {
            store.connection().execute(
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
        blocking(&self.reader, move |store| {
            let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1");
            let row = store
                .connection()
                .query_row(&sql, [&id], |row| Ok(key_from_row(row)))
                .optional()?;
            row.transpose()
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<ApiKey>, StorageError> {
        blocking(&self.reader, |store| {
            let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY app, created_at, id");
            let mut statement = store.connection().prepare(&sql)?;
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
        blocking(&self.writer, move |store| {
            let changed = store.connection().execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
                (&id, text(at)),
            )?;
            Ok(changed > 0)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        blocking(&self.reader, |store| {
            store.connection().query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }
}
