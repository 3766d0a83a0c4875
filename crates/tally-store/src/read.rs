//! Reading a store: counts, sessions and totals that combine raw events with rollups.
//!
//! Totals come from the rollups, which count every event ever stored, so they are the
//! same before and after raw events expire: that is the promise of retention.
//! [`Store::raw_totals`] computes the same figures from raw events, to check that promise.

use std::collections::BTreeMap;

use rusqlite::OptionalExtension;
use tally_core::time::Period;

use crate::rollup::Rollup;
use crate::{DropCounts, Store, StoreError};

/// One row of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The id every event of the session carries.
    pub session_id: String,
    /// Its earliest event, RFC 3339 as stored.
    pub started_at: String,
    /// Its latest event, RFC 3339 as stored.
    pub ended_at: String,
    /// `ended_at - started_at` in milliseconds.
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

const RANGE_FILTER: &str = "(?1 IS NULL OR ts >= ?1) AND (?2 IS NULL OR ts < ?2)";

impl Store {
    /// How many raw events `period` holds.
    pub fn count_events(&self, period: &Period) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM events WHERE {RANGE_FILTER}");
        Ok(self.conn.query_row(&sql, period.text_bounds(), |row| row.get(0))?)
    }

    /// Calls `each` with every raw event in `period`, oldest first, one at a time: memory
    /// stays constant however large the store. Stops at the first error `each` returns.
    pub fn for_each_event<E: From<StoreError>>(
        &self,
        period: &Period,
        mut each: impl FnMut(tally_core::Event) -> Result<(), E>,
    ) -> Result<u64, E> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE {RANGE_FILTER} ORDER BY ts, seq");
        let mut statement = self.conn.prepare(&sql).map_err(StoreError::from)?;
        let mut rows = statement.query(period.text_bounds()).map_err(StoreError::from)?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            each(event_from_row(row)?)?;
            count += 1;
        }
        Ok(count)
    }
}

/// A page of one app's raw events, as the collector's `GET /v1/events` lists them:
/// oldest first by (`ts`, `id`), after a cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventQuery {
    /// The app whose events are listed (the collector puts the key's app here).
    pub app: String,
    /// Only events of this type, when set.
    pub kind: Option<String>,
    /// Only events of this name, when set.
    pub name: Option<String>,
    /// Only events of this install, when set.
    pub install_id: Option<String>,
    /// Only events of this session, when set.
    pub session_id: Option<String>,
    /// Only events whose `ts` lies inside.
    pub period: Period,
    /// The cursor: only events strictly after this (`ts`, `id`).
    pub after: Option<(jiff::Timestamp, uuid::Uuid)>,
    /// At most this many events.
    pub limit: usize,
}

impl EventQuery {
    /// The `events` columns the query sets, with the value each must equal (besides
    /// `app`); both collector backends build their `WHERE` from this.
    pub fn equal_to(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("type", &self.kind),
            ("name", &self.name),
            ("install_id", &self.install_id),
            ("session_id", &self.session_id),
        ]
        .into_iter()
        .filter_map(|(column, value)| Some((column, value.as_ref()?)))
    }
}

impl Store {
    /// The events `query` selects, ordered by (`ts`, `id`).
    pub fn query_events(&self, query: &EventQuery) -> Result<Vec<tally_core::Event>, StoreError> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE app = ?");
        let mut params: Vec<String> = vec![query.app.clone()];
        for (column, value) in query.equal_to() {
            sql.push_str(&format!(" AND {column} = ?"));
            params.push(value.clone());
        }
        let (from, to) = query.period.text_bounds();
        if let Some(from) = from {
            sql.push_str(" AND ts >= ?");
            params.push(from);
        }
        if let Some(to) = to {
            sql.push_str(" AND ts < ?");
            params.push(to);
        }
        if let Some((ts, id)) = query.after {
            let ts = tally_core::time::format(ts);
            sql.push_str(" AND (ts > ? OR (ts = ? AND id > ?))");
            params.extend([ts.clone(), ts, id.to_string()]);
        }
        sql.push_str(&format!(" ORDER BY ts, id LIMIT {}", query.limit));
        let mut statement = self.conn.prepare(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
        let mut events = Vec::new();
        while let Some(row) = rows.next()? {
            events.push(event_from_row(row)?);
        }
        Ok(events)
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
