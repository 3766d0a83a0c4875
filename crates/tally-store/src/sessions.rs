//! What counts as a session, and what a batch of events changes in one.
//!
//! A session is every event sharing a `session_id` within one app and install (a session
//! id comes from the client, so another app or install reusing it makes a session of its
//! own, never a change to this one); it starts at its earliest event and
//! ends at its latest, and its duration is the time between the two. Four event names
//! are counted per session (the columns of Nexus ADR-003). The rule lives here once:
//! this store's write path and the collector's PostgreSQL backend both fold a batch
//! with [`session_deltas`] and upsert the result, each in its own SQL dialect (an
//! upsert keeps the earlier start, the later end, adds the counters and recomputes the
//! duration from the two ends). [`SessionSummary`] is what the stats views read back.

use std::collections::BTreeMap;

use jiff::Timestamp;
use tally_core::Event;
use tally_core::time::Period;

use crate::compact;
use crate::{Store, StoreError};

/// How one session's row changes with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDelta<'a> {
    /// The session's app.
    pub app: &'a str,
    /// The session's install.
    pub install_id: &'a str,
    /// The earliest event of the batch in this session.
    pub started_at: Timestamp,
    /// The latest event of the batch in this session.
    pub ended_at: Timestamp,
    /// `command_executed` events of the batch.
    pub commands_executed: i64,
    /// `workspace_created` events of the batch.
    pub workspaces_created: i64,
    /// `task_completed` events of the batch.
    pub tasks_completed: i64,
    /// `error_occurred` events of the batch.
    pub errors_encountered: i64,
}

impl<'a> SessionDelta<'a> {
    fn starting_with(event: &'a Event) -> SessionDelta<'a> {
        SessionDelta {
            app: &event.app,
            install_id: &event.install_id,
            started_at: event.ts,
            ended_at: event.ts,
            commands_executed: 0,
            workspaces_created: 0,
            tasks_completed: 0,
            errors_encountered: 0,
        }
    }

    fn add(&mut self, event: &Event) {
        self.started_at = self.started_at.min(event.ts);
        self.ended_at = self.ended_at.max(event.ts);
        match event.name.as_str() {
            "command_executed" => self.commands_executed += 1,
            "workspace_created" => self.workspaces_created += 1,
            "task_completed" => self.tasks_completed += 1,
            "error_occurred" => self.errors_encountered += 1,
            _ => {}
        }
    }
}

/// What identifies a session: (app, install id, session id), the key of `sessions`.
pub type SessionKey<'a> = (&'a str, &'a str, &'a str);

/// The change each session of `events` (newly stored ones) makes, by [`SessionKey`].
pub fn session_deltas<'a>(events: impl IntoIterator<Item = &'a Event>) -> BTreeMap<SessionKey<'a>, SessionDelta<'a>> {
    let mut sessions: BTreeMap<SessionKey<'_>, SessionDelta<'_>> = BTreeMap::new();
    for event in events {
        sessions
            .entry((event.app.as_str(), event.install_id.as_str(), event.session_id.as_str()))
            .or_insert_with(|| SessionDelta::starting_with(event))
            .add(event);
    }
    sessions
}

/// Sessions that started in a period.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SessionSummary {
    /// Sessions whose first event lies in the period (a session is counted once, in
    /// the period it started in, however long it ran).
    pub count: u64,
    /// Their mean duration; `None` when there were none.
    pub avg_duration_ms: Option<f64>,
}

impl Store {
    /// For each of `periods`: how many distinct installs of `app` had a session during it
    /// (started before its end and ended at or after its start), counted at hour
    /// resolution like the rollups: a period covers every hour it overlaps.
    pub fn installs_with_sessions(&self, app: &str, periods: &[Period]) -> Result<Vec<u64>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT count(DISTINCT install_id) FROM session_rows \
             WHERE app = (SELECT id FROM strings WHERE value = ?1) AND started_at < ?3 AND ended_at >= ?2",
        )?;
        periods
            .iter()
            .map(|period| {
                let (from, to) = period.hours();
                let (from, to) = (compact::millis(from.start()), compact::millis(to.start()));
                let count: i64 = statement.query_row((app, from, to), |row| row.get(0))?;
                Ok(count as u64)
            })
            .collect()
    }

    /// The sessions of `app` (of every app when `None`) that started in `period`.
    pub fn session_summary(&self, app: Option<&str>, period: &Period) -> Result<SessionSummary, StoreError> {
        // Unbounded ends are the extreme instants, outside every stored time, so the
        // plain range keeps the `session_rows_started_at` index.
        let (from, to) = (compact::millis(period.from), compact::millis(period.to));
        // One app is filtered with a plain `app = (its number)` rather than `(?3 IS NULL OR ...)`,
        // which no index can serve: a collector's index on (app, started_at, duration_ms)
        // then answers the whole query.
        let read = |row: &rusqlite::Row<'_>| Ok((row.get(0)?, row.get(1)?));
        let (count, average): (i64, Option<f64>) = match app {
            Some(app) => self
                .conn
                .prepare_cached(
                    "SELECT count(*), avg(duration_ms) FROM session_rows \
                     WHERE app = (SELECT id FROM strings WHERE value = ?3) AND started_at >= ?1 AND started_at < ?2",
                )?
                .query_row((from, to, app), read)?,
            None => self
                .conn
                .prepare_cached(
                    "SELECT count(*), avg(duration_ms) FROM session_rows WHERE started_at >= ?1 AND started_at < ?2",
                )?
                .query_row((from, to), read)?,
        };
        Ok(SessionSummary {
            count: count as u64,
            avg_duration_ms: average,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_folds_into_one_delta_per_session() {
        let at = |text: &str| text.parse::<Timestamp>().unwrap();
        let event = |session: &str, name: &str, ts: &str| -> Event {
            serde_json::from_value(serde_json::json!({
                "id": uuid::Uuid::now_v7(), "ts": ts, "app": "nexus", "app_version": "1.0",
                "source": "cli", "type": "command", "name": name,
                "session_id": session, "install_id": "i-1",
            }))
            .unwrap()
        };
        let events = [
            event("a", "command_executed", "2026-11-22T10:00:05Z"),
            event("a", "error_occurred", "2026-11-22T10:00:01Z"),
            event("a", "command_executed", "2026-11-22T10:00:09Z"),
            event("b", "session_started", "2026-11-22T11:00:00Z"),
        ];
        let deltas = session_deltas(&events);
        assert_eq!(deltas.len(), 2);
        let a = &deltas[&("nexus", "i-1", "a")];
        assert_eq!(
            (a.started_at, a.ended_at),
            (at("2026-11-22T10:00:01Z"), at("2026-11-22T10:00:09Z"))
        );
        assert_eq!(
            (a.commands_executed, a.errors_encountered, a.tasks_completed),
            (2, 1, 0)
        );
        assert_eq!(deltas[&("nexus", "i-1", "b")].commands_executed, 0);
    }
}
