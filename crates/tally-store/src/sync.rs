//! What the SDK's sync needs from the store: which events are still to upload, and
//! recording what the collector answered.
//!
//! Events are uploaded in `seq` order (local insertion order), in two streams split by
//! the moment upload was turned on: [`SyncStream::Recent`] (events at or after it,
//! what `sync` sends) and [`SyncStream::History`] (events before it, sent only when the
//! user asks). Each stream has a cursor: the highest `seq` of the stream the collector
//! has answered for. A cursor only moves forward, in the same transaction that records
//! the refusals of that answer, so an interrupted sync resumes exactly where it stopped
//! and never sends an answered event again.
//!
//! In counts mode whole days go instead: [`Store::counts_through`] is the last day
//! uploaded as counts, and events of it or earlier count as sent in both modes.

use jiff::Timestamp;
use rusqlite::{OptionalExtension, TransactionBehavior};
use tally_core::Event;
use tally_core::time::format;

use crate::compact::{Lookups, millis};
use crate::read::{EVENT_COLUMNS, event_from_row_at};
use crate::{Store, StoreError};

/// Which events a sync pass uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStream {
    /// Events recorded at or after upload was turned on.
    Recent,
    /// Events recorded before, uploaded only with the user's explicit request.
    History,
}

impl SyncStream {
    fn cursor_key(self) -> &'static str {
        match self {
            SyncStream::Recent => "sync_cursor",
            SyncStream::History => "sync_history_cursor",
        }
    }

    /// The SQL condition selecting this stream's events by `ts` against `?2`.
    fn filter(self) -> &'static str {
        match self {
            SyncStream::Recent => "e.ts >= ?2",
            SyncStream::History => "e.ts < ?2",
        }
    }
}

/// An event the collector refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The refused event's id.
    pub id: String,
    /// The refused event's time, shown next to its id so a user can find it.
    pub ts: Timestamp,
    /// The collector's code (`invalid_event`, `too_large`).
    pub code: String,
    /// The collector's message, naming the field and the rule the event broke.
    pub message: String,
}

/// The sync state `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncStatus {
    /// Recent events still to upload.
    pub pending: u64,
    /// Events the collector refused, ever (they are never sent again).
    pub rejected: u64,
    /// When the last sync finished; `None` before the first.
    pub last_sync: Option<Timestamp>,
    /// The most recent refusals, newest first.
    pub recent_refusals: Vec<Refusal>,
}

impl Store {
    /// The highest `seq` of `stream` the collector has answered for (0: none).
    pub fn sync_cursor(&self, stream: SyncStream) -> Result<i64, StoreError> {
        Ok(self
            .meta(stream.cursor_key())?
            .and_then(|value| value.parse().ok())
            .unwrap_or(0))
    }

    /// Up to `limit` events of `stream` after `after_seq`, in `seq` order, with their
    /// `seq`; `since` is when upload was turned on.
    pub fn pending_events(
        &self,
        stream: SyncStream,
        after_seq: i64,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<(i64, Event)>, StoreError> {
        let sql = format!(
            "SELECT e.seq, {EVENT_COLUMNS} FROM event_rows AS e WHERE e.seq > ?1 AND {} ORDER BY e.seq LIMIT ?3",
            stream.filter()
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        let mut rows = statement.query((after_seq, millis(since), limit as i64))?;
        let mut lookups = Lookups::new(&self.conn);
        let mut events = Vec::new();
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            events.push((seq, event_from_row_at(row, 1, &mut lookups)?));
        }
        Ok(events)
    }

    /// How many events of `stream` are still to upload.
    pub fn pending_count(&self, stream: SyncStream, since: Timestamp) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT count(*) FROM event_rows AS e WHERE e.seq > ?1 AND {}",
            stream.filter()
        );
        Ok(self
            .conn
            .query_row(&sql, (self.sync_cursor(stream)?, millis(since)), |row| row.get(0))?)
    }

    /// Records that the collector answered for every event of `stream` up to `seq`,
    /// keeping its refusals; one transaction. The cursor never moves back.
    pub fn acknowledge(
        &mut self,
        stream: SyncStream,
        seq: i64,
        refusals: &[Refusal],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let at = format(at);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO sync_rejected (id, ts, code, message, rejected_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for refusal in refusals {
                insert.execute((&refusal.id, format(refusal.ts), &refusal.code, &refusal.message, &at))?;
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET \
                 value = CAST(max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
                (stream.cursor_key(), seq.to_string()),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The last UTC day uploaded as counts (`upload counts`): every event of that day
    /// and earlier counts as sent, in either mode, so no day is ever sent twice.
    pub fn counts_through(&self) -> Result<Option<jiff::civil::Date>, StoreError> {
        Ok(self.meta("counts_through")?.and_then(|value| value.parse().ok()))
    }

    /// Records that the counts of `day` were answered for; the day never moves back.
    pub fn set_counts_through(&mut self, day: jiff::civil::Date) -> Result<(), StoreError> {
        // `YYYY-MM-DD` text orders as the days do.
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('counts_through', ?1) ON CONFLICT (key) DO UPDATE SET \
             value = max(value, excluded.value)",
            [day.to_string()],
        )?;
        Ok(())
    }

    /// Notes the end of a sync.
    pub fn finish_sync(&mut self, at: Timestamp) -> Result<(), StoreError> {
        self.set_meta("last_sync", &format(at))
    }

    /// The sync state for `status`; `since` is when upload was turned on.
    pub fn sync_status(&self, since: Timestamp) -> Result<SyncStatus, StoreError> {
        let rejected: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sync_rejected", [], |row| row.get(0))?;
        let mut statement = self
            .conn
            .prepare_cached("SELECT id, ts, code, message FROM sync_rejected ORDER BY rejected_at DESC, id LIMIT 5")?;
        let mut rows = statement.query([])?;
        let mut recent_refusals = Vec::new();
        while let Some(row) = rows.next()? {
            let ts: String = row.get(1)?;
            recent_refusals.push(Refusal {
                id: row.get(0)?,
                ts: parse_stored("sync_rejected.ts", &ts)?,
                code: row.get(2)?,
                message: row.get(3)?,
            });
        }
        let last_sync = self.meta("last_sync")?;
        Ok(SyncStatus {
            pending: self.pending_count(SyncStream::Recent, since)?,
            rejected: rejected as u64,
            last_sync: last_sync
                .as_deref()
                .map(|at| parse_stored("last_sync", at))
                .transpose()?,
            recent_refusals,
        })
    }

    /// Claims the next background upload, across processes: true when no upload
    /// finished after `done_before` and none started after `started_before` (an
    /// attempt cut off by its process's exit is tried again once that lease passes).
    pub fn claim_auto_sync(
        &mut self,
        now: Timestamp,
        done_before: Timestamp,
        started_before: Timestamp,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let read = |key: &str| -> Result<Option<Timestamp>, StoreError> {
            let text: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
                .optional()?;
            text.map(|text| parse_stored(key, &text)).transpose()
        };
        let done = read("auto_sync_done_at")?;
        let started = read("auto_sync_started_at")?;
        // An attempt is in flight when it started after the last one finished; it
        // holds the slot until its lease passes.
        let in_flight = match (&started, &done) {
            (Some(started), Some(done)) => started > done,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let leased = in_flight && started.is_some_and(|started| started >= started_before);
        let due = done.is_none_or(|done| done < done_before) && !leased;
        if due {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('auto_sync_started_at', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [format(now)],
            )?;
        }
        tx.commit()?;
        Ok(due)
    }

    /// Notes that a background upload finished; the next waits a whole interval.
    pub fn auto_sync_done(&mut self, at: Timestamp) -> Result<(), StoreError> {
        self.set_meta("auto_sync_done_at", &format(at))
    }
}

/// Reads a time this module stored.
fn parse_stored(what: &str, text: &str) -> Result<Timestamp, StoreError> {
    tally_core::time::parse(text).map_err(|err| StoreError::Invalid(format!("{what} {text:?}: {err}")))
}
