//! Reading a store: counts, sessions and totals that combine raw events with rollups.
//!
//! Totals come from the rollups, which count every event ever stored, so they are the
//! same before and after raw events expire: that is the promise of retention.
//! [`Store::raw_totals`] computes the same figures from raw events, to check that promise.

use std::collections::BTreeMap;

use rusqlite::OptionalExtension;
use tally_core::time::Period;

use crate::compact::{self, Dictionary, Lookups, Strings};
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
            .query_row("SELECT count(*) FROM event_rows", [], |row| row.get(0))?)
    }

    /// Raw events with this name.
    pub fn count_named(&self, name: &str) -> Result<u64, StoreError> {
        // The value is looked up inside the query, so that both read one snapshot.
        Ok(self.conn.query_row(
            "SELECT count(*) FROM event_rows WHERE name = (SELECT id FROM strings WHERE value = ?1)",
            [name],
            |row| row.get(0),
        )?)
    }

    /// One session's row.
    pub fn session(&self, session_id: &str) -> Result<Option<SessionRow>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT started_at, ended_at, duration_ms, commands_executed, workspaces_created, \
                 tasks_completed, errors_encountered FROM session_rows \
                 WHERE session_id = (SELECT id FROM session_ids WHERE value = ?1)",
                [compact::token(session_id)],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        [row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?],
                    ))
                },
            )
            .optional()?;
        let Some((
            started_at,
            ended_at,
            [
                duration_ms,
                commands_executed,
                workspaces_created,
                tasks_completed,
                errors_encountered,
            ],
        )) = row
        else {
            return Ok(None);
        };
        Ok(Some(SessionRow {
            session_id: session_id.to_owned(),
            started_at: tally_core::time::format(compact::timestamp(started_at)?),
            ended_at: tally_core::time::format(compact::timestamp(ended_at)?),
            duration_ms,
            commands_executed,
            workspaces_created,
            tasks_completed,
            errors_encountered,
        }))
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
        let mut strings = Strings::new(&self.conn, Dictionary::Strings);
        let mut raw = self
            .conn
            .prepare("SELECT type, name, command, coalesce(success, -1), duration_ms FROM event_rows")?;
        let mut rows = raw.query([])?;
        while let Some(row) = rows.next()? {
            let key = (
                strings.get(row.get(0)?)?,
                strings.get(row.get(1)?)?,
                strings.optional(row.get(2)?)?.unwrap_or_default(),
                row.get(3)?,
            );
            let duration: Option<i64> = row.get(4)?;
            totals.entry(key).or_default().add(duration.map(|d| d.max(0) as u64));
        }
        Ok(totals)
    }
}

const RANGE_FILTER: &str = "(?1 IS NULL OR e.ts >= ?1) AND (?2 IS NULL OR e.ts < ?2)";

impl Store {
    /// How many raw events `period` holds.
    pub fn count_events(&self, period: &Period) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM event_rows AS e WHERE {RANGE_FILTER}");
        let bounds = (compact::bound(period.from), compact::bound(period.to));
        Ok(self.conn.query_row(&sql, bounds, |row| row.get(0))?)
    }

    /// Calls `each` with every raw event in `period`, oldest first, one at a time: memory
    /// stays constant however large the store. Stops at the first error `each` returns.
    pub fn for_each_event<E: From<StoreError>>(
        &self,
        period: &Period,
        mut each: impl FnMut(tally_core::Event) -> Result<(), E>,
    ) -> Result<u64, E> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM event_rows AS e WHERE {RANGE_FILTER} ORDER BY e.ts, e.seq");
        let mut statement = self.conn.prepare(&sql).map_err(StoreError::from)?;
        let bounds = (compact::bound(period.from), compact::bound(period.to));
        let mut rows = statement.query(bounds).map_err(StoreError::from)?;
        let mut lookups = Lookups::new(&self.conn);
        let mut count = 0;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            each(event_from_row_at(row, 0, &mut lookups)?)?;
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
        // Values are looked up inside the query, so that it reads one snapshot; a value
        // never interned matches no event.
        let mut sql = format!(
            "SELECT {EVENT_COLUMNS} FROM event_rows AS e WHERE e.app = (SELECT id FROM strings WHERE value = ?)"
        );
        let mut params: Vec<rusqlite::types::Value> = vec![query.app.clone().into()];
        for (column, value) in query.equal_to() {
            let (dictionary, stored) = match column {
                "install_id" => ("install_ids", value.clone().into()),
                "session_id" => ("session_ids", compact::token(value)),
                _ => ("strings", value.clone().into()),
            };
            sql.push_str(&format!(
                " AND e.{column} = (SELECT id FROM {dictionary} WHERE value = ?)"
            ));
            params.push(stored);
        }
        if let Some(from) = compact::bound(query.period.from) {
            sql.push_str(" AND e.ts >= ?");
            params.push(from.into());
        }
        if let Some(to) = compact::bound(query.period.to) {
            sql.push_str(" AND e.ts < ?");
            params.push(to.into());
        }
        if let Some((ts, id)) = query.after {
            // The blob's bytes order as the id's lower-case text does.
            let ts = compact::millis(ts);
            sql.push_str(" AND (e.ts > ? OR (e.ts = ? AND e.id > ?))");
            params.extend([ts.into(), ts.into(), id.as_bytes().to_vec().into()]);
        }
        sql.push_str(&format!(" ORDER BY e.ts, e.id LIMIT {}", query.limit));
        events_where(&self.conn, &sql, rusqlite::params_from_iter(params))
    }
}

/// One install's raw events (for the collector, which takes them back out of its
/// aggregates before erasing the install); `conn` may be inside a transaction.
pub fn install_events(
    conn: &rusqlite::Connection,
    app: &str,
    install_id: &str,
) -> Result<Vec<tally_core::Event>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM event_rows AS e WHERE e.app = (SELECT id FROM strings WHERE value = ?1) \
         AND e.install_id = (SELECT id FROM install_ids WHERE value = ?2)"
    );
    events_where(conn, &sql, (app, install_id))
}

/// Runs `sql` (which selects [`EVENT_COLUMNS`]) and reads every row as an event.
fn events_where(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<tally_core::Event>, StoreError> {
    let mut statement = conn.prepare(sql)?;
    let mut rows = statement.query(params)?;
    let mut lookups = Lookups::new(conn);
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(event_from_row_at(row, 0, &mut lookups)?);
    }
    Ok(events)
}

/// The `event_rows AS e` columns [`event_from_row_at`] reads, in its order.
pub(crate) const EVENT_COLUMNS: &str = "e.id, e.ts, e.app, e.app_version, e.source, e.type, e.name, e.command, \
     e.session_id, e.install_id, e.workspace, e.target_type, e.target_id, e.duration_ms, e.success, \
     e.error_category, e.error_message, e.props";

/// Reads an event from a row whose [`EVENT_COLUMNS`] start at column `first`, looking
/// interned values up through `lookups` (which must read the same connection).
pub(crate) fn event_from_row_at(
    row: &rusqlite::Row<'_>,
    first: usize,
    lookups: &mut Lookups<'_>,
) -> Result<tally_core::Event, StoreError> {
    let invalid = |what: &str, err: &dyn std::fmt::Display| StoreError::Invalid(format!("{what}: {err}"));
    let id = match row.get_ref(first)? {
        rusqlite::types::ValueRef::Blob(bytes) => compact::read_uuid(bytes, "id")?,
        other => return Err(invalid("id", &format_args!("unexpected {:?}", other.data_type()))),
    };
    let strings = &mut lookups.strings;
    let source = strings.get(row.get(first + 4)?)?;
    let props: Option<String> = row.get(first + 17)?;
    Ok(tally_core::Event {
        id,
        ts: compact::timestamp(row.get(first + 1)?)?,
        app: strings.get(row.get(first + 2)?)?,
        app_version: strings.get(row.get(first + 3)?)?,
        source: source.parse().map_err(|err: String| invalid("source", &err))?,
        kind: strings.get(row.get(first + 5)?)?,
        name: strings.get(row.get(first + 6)?)?,
        command: strings.optional(row.get(first + 7)?)?,
        session_id: lookups.session_ids.get(row.get(first + 8)?)?,
        install_id: lookups.install_ids.get(row.get(first + 9)?)?,
        workspace: compact::read_hash(row.get_ref(first + 10)?, "workspace")?,
        target_type: lookups.strings.optional(row.get(first + 11)?)?,
        target_id: compact::read_hash(row.get_ref(first + 12)?, "target_id")?,
        duration_ms: row.get::<_, Option<i64>>(first + 13)?.map(|d| d.max(0) as u64),
        success: row.get(first + 14)?,
        error_category: lookups.strings.optional(row.get(first + 15)?)?,
        error_message: row.get(first + 16)?,
        props: match props {
            Some(text) => serde_json::from_str(&text).map_err(|err| invalid("props", &err))?,
            None => tally_core::Props::new(),
        },
    })
}
