//! The one storage interface the collector needs, and its two backends.
//!
//! Handlers hold an `Arc<dyn Storage>`; [`sqlite::SqliteStorage`] (embedded, the default,
//! built on `tally-store`) and [`postgres::PostgresStorage`] (production, several
//! collectors may share one database) implement it. Both promise the same behaviour,
//! and one contract test suite runs against both.
//!
//! Every write of events happens in [`Storage::insert`], one transaction per call, which
//! also keeps the sessions, hourly rollups, installs and lifetime totals in step, so
//! the read side never scans raw events for aggregates.

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use jiff::Timestamp;
use tally_core::Event;
use tally_core::time::{HourKey, Period};
/// The collector reads the store's rollup rows, session summaries and event pages as
/// the store defines them; both backends answer in these types.
pub use tally_store::read::EventQuery;
use tally_store::rollup::{Rollup, RollupKey};
pub use tally_store::sessions::SessionSummary;

/// Why storage could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database cannot be reached or is overloaded; the client may retry (503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else; logged, never shown to clients in detail (500).
    #[error("storage failed: {0}")]
    Internal(String),
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Write events of its app.
    Ingest,
    /// Read and erase its app's data.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ingest" => Ok(Role::Ingest),
            "admin" => Ok(Role::Admin),
            other => Err(format!("role: must be ingest or admin (got {other:?})")),
        }
    }
}

/// A stored API key. The secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The public part of the key, used to find it.
    pub id: String,
    /// The only app whose data the key reads or writes.
    pub app: String,
    /// What it may do with that app's data.
    pub role: Role,
    /// SHA-256 of the whole key.
    pub secret_hash: [u8; 32],
    /// A note for people (`ci`, `web frontend`).
    pub label: String,
    /// When it was made; `keys list` orders by it.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<Timestamp>,
}

/// Events of one app, type, name and outcome since the store began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalRow {
    /// The app that sent the events.
    pub app: String,
    /// The event type (`command`, `feature`, `error`, ...).
    pub kind: String,
    /// The event name within its type.
    pub name: String,
    /// 1 success, 0 failure, -1 not reported.
    pub success: i64,
    /// Events ever stored under these four, never lowered by retention or erasure.
    pub count: u64,
}

/// The storage a collector runs on.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Which backend, for logs and `/readyz`.
    fn backend(&self) -> &'static str;

    /// Commits `events` (already validated) in one transaction, with the sessions,
    /// hourly rollups, installs (`first_seen`, `last_seen`) and lifetime totals they
    /// change. An event whose id and `ts` are already stored is skipped. Returns, per
    /// event in order, whether it was newly stored. Returning `Ok` means committed.
    async fn insert(&self, events: Vec<Event>) -> Result<Vec<bool>, StorageError>;

    /// Rollup rows of `app` for every hour `period` overlaps, in key order.
    async fn rollups(&self, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StorageError>;

    /// Sessions of `app` that started in `period`.
    async fn sessions(&self, app: &str, period: &Period) -> Result<SessionSummary, StorageError>;

    /// For each app that has installs: how many were last seen at or after each of
    /// `since`, in the same order.
    async fn active_installs(&self, since: &[Timestamp]) -> Result<Vec<(String, Vec<u64>)>, StorageError>;

    /// For each app: how many events named `name` its rollups count from each of
    /// `from_hours` on, in the same order. One aggregate read, for `/metrics`.
    async fn named_counts(&self, name: &str, from_hours: &[HourKey]) -> Result<Vec<(String, Vec<u64>)>, StorageError>;

    /// Lifetime totals of every app.
    async fn totals(&self) -> Result<Vec<TotalRow>, StorageError>;

    /// Events matching `query`, ordered by (`ts`, `id`).
    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StorageError>;

    /// Deletes every raw event, session and install row of one install; returns the
    /// events deleted. Rollups and totals hold no install and stay.
    async fn erase_install(&self, app: &str, install_id: &str) -> Result<u64, StorageError>;

    /// Deletes raw events, sessions and install rows older than `before`; rollups and
    /// totals stay. Returns the events deleted.
    async fn expire(&self, before: Timestamp) -> Result<u64, StorageError>;

    /// Stores a new key.
    async fn put_key(&self, key: &ApiKey) -> Result<(), StorageError>;

    /// The key with this id, revoked or not.
    async fn key(&self, id: &str) -> Result<Option<ApiKey>, StorageError>;

    /// Every key.
    async fn keys(&self) -> Result<Vec<ApiKey>, StorageError>;

    /// Marks a key revoked; false when there is no such key.
    async fn revoke_key(&self, id: &str, at: Timestamp) -> Result<bool, StorageError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StorageError>;
}

/// Opens the store `target` names: a `postgres://` or `postgresql://` URL, or a SQLite
/// file path.
pub async fn open(target: &str) -> Result<std::sync::Arc<dyn Storage>, StorageError> {
    if target.starts_with("postgres://") || target.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(postgres::PostgresStorage::connect(target).await?))
    } else {
        Ok(std::sync::Arc::new(sqlite::SqliteStorage::open(std::path::Path::new(
            target,
        ))?))
    }
}
