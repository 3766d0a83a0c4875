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
        Ok(self.conn.query_row("SELECT count(*) FROM events", [], |row| row.get(0))?)
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
            let rollup = Rollup {
                count: row.get::<_, i64>(4)? as u64,
                duration_count: row.get::<_, i64>(5)? as u64,
                duration_total_ms: row.get::<_, i64>(6)? as u64,
                duration_min_ms: row.get::<_, Option<i64>>(7)?.map(|v| v as u64),
                duration_max_ms: row.get::<_, Option<i64>>(8)?.map(|v| v as u64),
                histogram: crate::histogram::Histogram::from_json(&row.get::<_, String>(9)?)?,
            };
            totals.entry(key).or_default().merge(&rollup);
        }
        Ok(totals)
    }

    /// The same totals as [`Store::totals`], computed from the raw events still stored.
    pub fn raw_totals(&self) -> Result<Totals, StoreError> {
        let mut totals = Totals::new();
        let mut raw = self.conn.prepare(
            "SELECT type, name, coalesce(command, ''), coalesce(success, -1), duration_ms FROM events",
        )?;
        let mut rows = raw.query([])?;
        while let Some(row) = rows.next()? {
            let key = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            let duration: Option<i64> = row.get(4)?;
            totals.entry(key).or_default().add(duration.map(|d| d.max(0) as u64));
        }
        Ok(totals)
    }
}
