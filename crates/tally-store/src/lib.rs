//! The SQLite store shared by the SDK and the collector's embedded backend (which adds
//! its own tables to the same file, under its own migrations).
//!
//! A [`Store`] is one connection to one `telemetry.db`. It owns the schema
//! ([`schema`]), writes batches of [`tally_core::Event`]s all-or-nothing
//! ([`Store::insert_batch`]), keeps the `sessions` table and the hourly rollups in step
//! with the events in the same transaction, expires old raw events and enforces the size
//! cap ([`Store::run_maintenance`]), and answers the queries behind stats, insights and
//! export ([`read`]).
//!
//! The key design decision: many processes of one app write the same file at once, so
//! every write is one short `BEGIN IMMEDIATE` transaction in WAL mode with a busy
//! timeout, and nothing is cached across transactions that another process could change.
//! A damaged file is moved aside rather than repaired ([`Store::open_or_recover`]).
//!
//! # Layout
//! - [`open`](crate::open): opening, pragmas, recovery from corrupt or read-only files.
//! - [`schema`]: versioned migrations.
//! - `compact`: how ids, times, hashes and repeated strings are kept in the compact layout.
//! - [`write`](crate::write): batched inserts, in named steps.
//! - [`sessions`]: what counts as a session, for this store and the collector alike.
//! - [`retention`]: expiring raw events and the size cap.
//! - [`purge`](crate::purge): erasing everything.
//! - [`rollup`]: rollup rows and how they merge.
//! - [`histogram`]: fixed duration buckets shared by rollups and queries.
//! - [`read`]: counts and totals.
//! - [`stats`]: the period summaries behind stats, insights, reports and the dashboard.
//! - [`sync`]: the upload cursor and the collector's refusals.
//! - [`openmetrics`]: metric families that the SDK's export and the collector's `/metrics` share.
//! - [`spool`]: events spooled by processes that exited before committing, and folding them in.

mod compact;
mod error;
pub mod histogram;
mod identity;
mod open;
pub mod openmetrics;
mod purge;
pub mod read;
pub mod retention;
pub mod rollup;
pub mod schema;
pub mod sessions;
pub mod spool;
pub mod stats;
pub mod sync;
mod write;

pub use error::StoreError;
pub use identity::Identity;
pub use open::{Location, OpenOptions, Recovery, Synchronous};
pub use retention::{MaintenanceReport, RetentionPolicy};
pub use spool::{FoldReport, Spool, SpoolSize};
pub use write::{BatchOutcome, DropCounts};

use rusqlite::Connection;

/// The file name of a store inside its directory.
pub const DB_FILE_NAME: &str = "telemetry.db";

/// One open connection to a telemetry store.
pub struct Store {
    conn: Connection,
    location: Location,
}

impl Store {
    /// Where this store lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The underlying connection, for tests and benchmarks that inspect or damage the
    /// file on purpose. Product code (the SDK, the views, the collector) goes through the
    /// methods of this crate, which own the store's tables and their SQL.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// How long the next writes wait for another process's lock before answering busy.
    pub fn set_busy_timeout(&self, timeout: std::time::Duration) -> Result<(), StoreError> {
        Ok(self.conn.busy_timeout(timeout)?)
    }

    /// `PRAGMA quick_check`: `Ok(())` when the file's structure is sound.
    pub fn quick_check(&self) -> Result<(), StoreError> {
        let verdict: String = self.conn.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
        if verdict == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt(verdict))
        }
    }

    /// Like [`Store::quick_check`], but gives up as soon as `interrupted` answers true
    /// (asked every few thousand steps): `Ok(false)` then means "not checked". A check
    /// of a large file takes tens of milliseconds, which a host about to exit must not wait.
    pub fn quick_check_unless(&self, interrupted: impl FnMut() -> bool + Send + 'static) -> Result<bool, StoreError> {
        self.conn.progress_handler(4_096, Some(interrupted));
        let verdict = self
            .conn
            .query_row("PRAGMA quick_check", [], |row| row.get::<_, String>(0));
        self.conn.progress_handler(0, None::<fn() -> bool>);
        match verdict {
            Ok(verdict) if verdict == "ok" => Ok(true),
            Ok(verdict) => Err(StoreError::Corrupt(verdict)),
            Err(err) if err.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}
