//! Retention and the size cap.
//!
//! Every event is counted in the rollups by the transaction that stores it (see
//! [`crate::rollup`]), so raw events are already folded; retention deletes the raw
//! events older than `retention_days`, and if the file is still larger than
//! `max_bytes`, the oldest raw events after them, until it is back under 90% of the cap.
//! Totals, which read rollups, cannot change. Deletion happens in chunks of
//! [`DELETE_CHUNK`] events, one short transaction each, so that other processes writing
//! the store are never held up for long.

use jiff::{Timestamp, ToSpan};

use crate::compact::Dictionary;
use crate::{Location, Store, StoreError};

/// Most raw events deleted in one transaction.
pub const DELETE_CHUNK: u64 = 20_000;

/// How long raw events are kept and how large the store may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Raw events older than this many days are deleted (their rollups stay).
    pub retention_days: u32,
    /// The file (with its WAL) is kept under this many bytes by deleting the oldest raw
    /// events.
    pub max_bytes: u64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            retention_days: 90,
            max_bytes: 50 * 1024 * 1024,
        }
    }
}

/// What one maintenance run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaintenanceReport {
    /// Raw events deleted because they passed the retention age.
    pub expired_for_age: u64,
    /// Raw events deleted because the store was over its size cap.
    pub trimmed_for_size: u64,
    /// Store size with its WAL before the run, in bytes.
    pub bytes_before: u64,
    /// Store size with its WAL after the run (as far as it got), in bytes.
    pub bytes_after: u64,
    /// Whether the run finished (it stops early when interrupted).
    pub completed: bool,
}

impl Store {
    /// Deletes raw events past retention, enforces the size cap and returns free pages to the OS.
    /// `interrupted` is asked between chunks; when it answers true the run stops early
    /// (every finished chunk stays committed) so a caller with other work is not held up.
    pub fn run_maintenance(
        &mut self,
        policy: &RetentionPolicy,
        now: Timestamp,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<MaintenanceReport, StoreError> {
        let bytes_before = self.size_bytes()?;
        let cutoff = now
            .checked_sub((i64::from(policy.retention_days) * 24).hours())
            .unwrap_or(Timestamp::MIN);
        let cutoff = crate::compact::millis(cutoff);
        let mut report = MaintenanceReport {
            bytes_before,
            bytes_after: bytes_before,
            ..MaintenanceReport::default()
        };
        loop {
            let deleted = self.delete_oldest_raw(Some(cutoff), DELETE_CHUNK)?;
            report.expired_for_age += deleted;
            if deleted < DELETE_CHUNK {
                break;
            }
            if interrupted() {
                return Ok(report);
            }
        }
        // Returning pages to the OS costs a checkpoint (fsyncs): only when something
        // was deleted, and not when the caller is waiting.
        if report.expired_for_age > 0 {
            if interrupted() {
                return Ok(report);
            }
            self.reclaim_space()?;
        }
        if self.size_bytes()? > policy.max_bytes {
            if interrupted() {
                return Ok(report);
            }
            report.trimmed_for_size = self.enforce_size_cap(policy.max_bytes)?;
        }
        // Only a run that got this far counts as done; an interrupted one is redone by
        // a later run (what it committed stays, so there is simply less to do).
        self.set_meta("last_maintenance", &tally_core::time::format(now))?;
        report.completed = true;
        report.bytes_after = self.size_bytes()?;
        Ok(report)
    }

    /// Deletes the oldest raw events until the store is under 90% of `max_bytes` (or no
    /// raw events are left); returns how many were deleted.
    pub fn enforce_size_cap(&mut self, max_bytes: u64) -> Result<u64, StoreError> {
        let target = max_bytes / 10 * 9;
        let mut deleted_total = 0;
        // Each round estimates how many events to delete from the average event size;
        // a few rounds converge even when rollups and indexes skew the average.
        for _ in 0..32 {
            let used = self.size_bytes()?;
            if (deleted_total == 0 && used <= max_bytes) || used <= target {
                break;
            }
            let events: u64 = self
                .conn
                .query_row("SELECT count(*) FROM event_rows", [], |row| row.get(0))?;
            if events == 0 {
                break;
            }
            let per_event = (used / events).max(1);
            let excess = used.saturating_sub(target);
            let to_delete = excess.div_ceil(per_event).clamp(1, DELETE_CHUNK);
            deleted_total += self.delete_oldest_raw(None, to_delete)?;
            self.reclaim_space()?;
        }
        Ok(deleted_total)
    }

    /// The store's size: pages in use plus the WAL file and the spool.
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        let page_size: u64 = self.conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        let pages: u64 = self.conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
        let free: u64 = self.conn.query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
        let files = match &self.location {
            Location::File(path) => {
                let wal = std::fs::metadata(format!("{}-wal", path.display())).map_or(0, |meta| meta.len());
                let spool = path.parent().map_or(0, |dir| crate::Spool::new(dir).size(false).bytes);
                wal + spool
            }
            Location::Memory => 0,
        };
        Ok((pages - free) * page_size + files)
    }

    /// Deletes up to `limit` of the oldest raw events (only those before `before`, in
    /// Unix milliseconds, if given) in one transaction; their rollups stay. Returns how many.
    pub fn delete_oldest_raw(&mut self, before: Option<i64>, limit: u64) -> Result<u64, StoreError> {
        let deleted = self.conn.execute(
            "DELETE FROM event_rows WHERE seq IN \
             (SELECT seq FROM event_rows WHERE ?1 IS NULL OR ts < ?1 ORDER BY ts, seq LIMIT ?2)",
            (before, limit as i64),
        )?;
        Ok(deleted as u64)
    }

    /// Deletes raw events and sessions that ended before `before`, a chunk of events per
    /// transaction (the collector's retention: unlike an app's store it keeps no session
    /// past its raw events); rollups stay. Returns the events deleted.
    pub fn expire_before(&mut self, before: Timestamp) -> Result<u64, StoreError> {
        let cutoff = crate::compact::millis(before);
        let mut deleted = 0;
        loop {
            let chunk = self.delete_oldest_raw(Some(cutoff), DELETE_CHUNK)?;
            deleted += chunk;
            if chunk < DELETE_CHUNK {
                break;
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // The ids of the sessions that go, unless another session or a kept event
        // still has the same id.
        tx.execute(
            "DELETE FROM session_ids WHERE id IN (SELECT session_id FROM session_rows WHERE ended_at < ?1) \
             AND NOT EXISTS (SELECT 1 FROM session_rows AS s WHERE s.session_id = session_ids.id AND s.ended_at >= ?1) \
             AND NOT EXISTS (SELECT 1 FROM event_rows AS e WHERE e.session_id = session_ids.id)",
            [cutoff],
        )?;
        tx.execute("DELETE FROM session_rows WHERE ended_at < ?1", [cutoff])?;
        tx.commit()?;
        Ok(deleted)
    }

    /// Deletes every raw event and session of one install, and runs `also` first in the
    /// same transaction, so it still sees them (the collector takes them back out of its
    /// aggregates there and forgets the install's own rows). Returns the events deleted.
    pub fn erase_install_with(
        &mut self,
        app: &str,
        install_id: &str,
        also: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        also(&tx)?;
        let (Some(app), Some(install)) = (
            Dictionary::Strings.id_of(&tx, app)?,
            Dictionary::InstallIds.id_of(&tx, install_id)?,
        ) else {
            // Never interned: nothing of this install is stored.
            tx.commit()?;
            return Ok(0);
        };
        // The install's session ids go too, unless another install or app uses the same.
        tx.execute(
            "DELETE FROM session_ids WHERE id IN \
             (SELECT session_id FROM session_rows WHERE install_id = ?2 AND app = ?1) \
             AND NOT EXISTS (SELECT 1 FROM session_rows AS s WHERE s.session_id = session_ids.id \
                             AND NOT (s.install_id = ?2 AND s.app = ?1)) \
             AND NOT EXISTS (SELECT 1 FROM event_rows AS e WHERE e.session_id = session_ids.id \
                             AND NOT (e.install_id = ?2 AND e.app = ?1))",
            (app, install),
        )?;
        let deleted = tx.execute(
            "DELETE FROM event_rows WHERE app = ?1 AND install_id = ?2",
            (app, install),
        )?;
        tx.execute(
            "DELETE FROM session_rows WHERE install_id = ?1 AND app = ?2",
            (install, app),
        )?;
        // The install id itself goes too once nothing refers to it (another app may
        // share it), so an erased install leaves no trace in `strings`.
        tx.execute(
            "DELETE FROM install_ids WHERE id = ?1 \
             AND NOT EXISTS (SELECT 1 FROM event_rows WHERE install_id = ?1) \
             AND NOT EXISTS (SELECT 1 FROM session_rows WHERE install_id = ?1)",
            [install],
        )?;
        tx.commit()?;
        Ok(deleted as u64)
    }

    /// Returns free pages to the OS and empties the WAL, as far as other readers allow.
    fn reclaim_space(&mut self) -> Result<(), StoreError> {
        // Each step of this pragma frees one page, so it must be stepped to the end
        // (`execute_batch` steps once).
        let mut vacuum = self.conn.prepare("PRAGMA incremental_vacuum")?;
        let mut steps = vacuum.query([])?;
        while steps.next()?.is_some() {}
        if matches!(self.location, Location::File(_)) {
            // Busy is fine here: another process is reading, and the WAL is reused later.
            let _: (i64, i64, i64) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        }
        Ok(())
    }

    /// Sets a value in `meta`.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )?;
        Ok(())
    }
}
