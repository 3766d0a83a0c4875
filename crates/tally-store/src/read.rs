//! Reading a store: counts, sessions and totals that combine raw events with rollups.
//!
//! Totals come from the rollups, which count every event ever stored, so they are the
//! same before and after raw events expire: that is the promise of retention.
//! [`Store::raw_totals`] computes the same figures from raw events, to check that promise.

use std::collections::BTreeMap;

use rusqlite::OptionalExtension;

use crate::rollup::Rollup;
use crate::{DropCounts, Store, StoreError};

/// One row of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The session id.
    pub session_id: String,
    /// First event, RFC 3339.
    pub started_at: String,
    /// Last event, RFC 3339.
    pub ended_at: String,
    /// `ended_at - started_at`.
    pub duration_ms: i64,
    /// `command_executed` events.
    pub commands_executed: i64,
    /// `workspace_created` events.
    pub workspaces_created: i64,
    /// `task_completed` events.
    pub tasks_completed: i64,
    /// `error_occurred` events.
    pub errors_encountered: i64,
}

/// Totals per type, name, command and outcome, over raw events and rollups.
pub type Totals = BTreeMap<(String, String, String, i64), Rollup>;

impl Store {
    /// Raw events stored.
    pub fn event_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM events", [], |row| row.get(0))?)
    }

    /// Raw events with this name.
    pub fn count_named(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM events WHERE name = ?1", [name], |row| row.get(0))?)
    }

    /// One session's row.
    pub fn session(&self, session_id: &str) -> Result<Option<SessionRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT session_id, started_at, ended_at, duration_ms, commands_executed, workspaces_created, \
                 tasks_completed, errors_encountered FROM sessions WHERE session_id = ?1",
                [session_id],
                |row| {
                    Ok(SessionRow {
                        session_id: row.get(0)?,
                        started_at: row.get(1)?,
                        ended_at: row.get(2)?,
                        duration_ms: row.get(3)?,
                        commands_executed: row.get(4)?,
                        workspaces_created: row.get(5)?,
                        tasks_completed: row.get(6)?,
                        errors_encountered: row.get(7)?,
                    })
                },
            )
            .optional()?)
    }

    /// Events the SDK dropped before they were stored, as persisted so far.
    pub fn drop_counts(&self) -> Result<DropCounts, StoreError> {
        let read = |key: &str| -> Result<u64, StoreError> {
            Ok(self.meta(key)?.and_then(|value| value.parse().ok()).unwrap_or(0))
        };
        Ok(DropCounts {
            buffer_full: read("dropped_buffer_full")?,
            invalid: read("dropped_invalid")?,
            spool_full: read("dropped_spool_full")?,
            spool_failed: read("dropped_spool_failed")?,
        })
    }

    /// Count and duration totals per type, name, command and outcome, from the rollups.
    pub fn totals(&self) -> Result<Totals, StoreError> {
        let mut totals = Totals::new();
        let mut rolled = self.conn.prepare(
            "SELECT type, name, command, success, count, duration_count, duration_total_ms, duration_min_ms, \
             duration_max_ms, histogram FROM metrics",
        )?;
        let mut rows = rolled.query([])?;
        while let Some(row) = rows.next()? {
            let key = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            totals.entry(key).or_default().merge(&Rollup::from_row_at(row, 4)?);
        }
        Ok(totals)
    }

    /// The same totals as [`Store::totals`], computed from the raw events still stored.
    pub fn raw_totals(&self) -> Result<Totals, StoreError> {
        let mut totals = Totals::new();
        let mut raw = self
            .conn
            .prepare("SELECT type, name, coalesce(command, ''), coalesce(success, -1), duration_ms FROM events")?;
        let mut rows = raw.query([])?;
        while let Some(row) = rows.next()? {
            let key = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            let duration: Option<i64> = row.get(4)?;
            totals.entry(key).or_default().add(duration.map(|d| d.max(0) as u64));
        }
        Ok(totals)
    }
}

/// Which raw events to read: `[since, until)`, either end open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventRange {
    /// Start, inclusive.
    pub since: Option<jiff::Timestamp>,
    /// End, exclusive.
    pub until: Option<jiff::Timestamp>,
}

impl EventRange {
    fn bounds(&self) -> (Option<String>, Option<String>) {
        (
            self.since.map(tally_core::time::format),
            self.until.map(tally_core::time::format),
        )
    }
}

const RANGE_FILTER: &str = "(?1 IS NULL OR ts >= ?1) AND (?2 IS NULL OR ts < ?2)";

impl Store {
    /// How many raw events `range` holds.
    pub fn count_events(&self, range: &EventRange) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM events WHERE {RANGE_FILTER}");
        Ok(self.conn.query_row(&sql, range.bounds(), |row| row.get(0))?)
    }

    /// Calls `each` with every raw event in `range`, oldest first, one at a time: memory
    /// stays constant however large the store. Stops at the first error `each` returns.
    pub fn for_each_event<E: From<StoreError>>(
        &self,
        range: &EventRange,
        mut each: impl FnMut(tally_core::Event) -> Result<(), E>,
    ) -> Result<u64, E> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE {RANGE_FILTER} ORDER BY ts, seq");
        let mut statement = self.conn.prepare(&sql).map_err(StoreError::from)?;
        let mut rows = statement.query(range.bounds()).map_err(StoreError::from)?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            each(event_from_row(row)?)?;
            count += 1;
        }
        Ok(count)
    }

    /// Removes every event, session, rollup and meta value (the install id and secret
    /// too: a new identity is made on next use, so old hashes cannot be linked to new
    /// ones), then rewrites the file so no deleted byte remains in it or its WAL.
    pub fn purge(&mut self) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "DELETE FROM events; DELETE FROM sessions; DELETE FROM metrics; DELETE FROM meta; \
             DELETE FROM sync_rejected; DELETE FROM installs; DELETE FROM totals; \
             DELETE FROM sqlite_sequence;",
        )?;
        tx.commit()?;
        self.conn.execute_batch("VACUUM")?;
        if matches!(self.location, crate::Location::File(_)) {
            let (busy, _, _): (i64, i64, i64) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
            if busy != 0 {
                return Err(StoreError::Busy(
                    "another process is reading the store; its old pages stay in the WAL until it closes".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The `events` columns [`event_from_row`] reads, in its order.
pub const EVENT_COLUMNS: &str = "id, ts, app, app_version, source, type, name, command, session_id, install_id, \
     workspace, target_type, target_id, duration_ms, success, error_category, error_message, props";

/// Reads an event from a row selected with [`EVENT_COLUMNS`].
pub fn event_from_row(row: &rusqlite::Row<'_>) -> Result<tally_core::Event, StoreError> {
    event_from_row_at(row, 0)
}

/// Reads an event from a row whose [`EVENT_COLUMNS`] start at column `first`.
pub fn event_from_row_at(row: &rusqlite::Row<'_>, first: usize) -> Result<tally_core::Event, StoreError> {
    let invalid = |what: &str, err: &dyn std::fmt::Display| StoreError::Invalid(format!("{what}: {err}"));
    let id: String = row.get(first)?;
    let ts: String = row.get(first + 1)?;
    let source: String = row.get(first + 4)?;
    let props: Option<String> = row.get(first + 17)?;
    Ok(tally_core::Event {
        id: id.parse().map_err(|err| invalid("id", &err))?,
        ts: tally_core::time::parse(&ts).map_err(|err| invalid("ts", &err))?,
        app: row.get(first + 2)?,
        app_version: row.get(first + 3)?,
        source: source.parse().map_err(|err: String| invalid("source", &err))?,
        kind: row.get(first + 5)?,
        name: row.get(first + 6)?,
        command: row.get(first + 7)?,
        session_id: row.get(first + 8)?,
        install_id: row.get(first + 9)?,
        workspace: row.get(first + 10)?,
        target_type: row.get(first + 11)?,
        target_id: row.get(first + 12)?,
        duration_ms: row.get::<_, Option<i64>>(first + 13)?.map(|d| d.max(0) as u64),
        success: row.get(first + 14)?,
        error_category: row.get(first + 15)?,
        error_message: row.get(first + 16)?,
        props: match props {
            Some(text) => serde_json::from_str(&text).map_err(|err| invalid("props", &err))?,
            None => tally_core::Props::new(),
        },
    })
}
