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

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension};
use tally_core::Event;
use tally_core::time::{HourKey, Period};
use tally_store::rollup::{Rollup, RollupKey};
use tally_store::{DropCounts, OpenOptions, Synchronous};

use super::{ApiKey, EventQuery, SessionSummary, Storage, StorageError, TotalRow};

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
        let writer = tally_store::Store::open_file(path, &options)?;
        let reader = tally_store::Store::open_file(path, &options)?;
        let mut tables = Connection::open(path)?;
        tables.busy_timeout(BUSY_TIMEOUT)?;
        tables.pragma_update(None, "synchronous", "FULL")?;
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

/// Counts the newly stored events of a batch in `installs` and `totals`, inside the
/// batch's transaction.
fn count_installs_and_totals(tx: &rusqlite::Transaction<'_>, new: &[&Event]) -> Result<(), tally_store::StoreError> {
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

    async fn rollups(&self, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StorageError> {
        let (app, period) = (app.to_owned(), *period);
        blocking(&self.reader, move |store| Ok(store.rollups(Some(&app), &period)?)).await
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

    async fn erase_install(&self, app: &str, install_id: &str) -> Result<u64, StorageError> {
        let (app, install_id) = (app.to_owned(), install_id.to_owned());
        blocking(&self.writer, move |store| {
            Ok(store.erase_install_with(&app, &install_id, |tx| {
                tx.execute(
                    "DELETE FROM installs WHERE app = ?1 AND install_id = ?2",
                    (&app, &install_id),
                )?;
                Ok(())
            })?)
        })
        .await
    }

    async fn expire(&self, before: Timestamp) -> Result<u64, StorageError> {
        let deleted = blocking(&self.writer, move |store| Ok(store.expire_before(before)?)).await?;
        blocking(&self.tables, move |conn| {
            conn.execute("DELETE FROM installs WHERE last_seen < ?1", [text(before)])?;
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
