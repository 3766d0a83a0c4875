//! Batched writes.
//!
//! A batch is one `BEGIN IMMEDIATE` transaction: the events, the session counters and
//! rollups they change and the drop counters all commit together or not at all. An event whose id is
//! already stored is skipped and counted as a duplicate, which makes a retried batch
//! harmless.

use std::collections::BTreeMap;

use rusqlite::{Transaction, TransactionBehavior};
use tally_core::Event;

use crate::compact::{self, Dictionary, Interner};
use crate::rollup::{Rollup, RollupKey, add_rollups, rollups_of};
use crate::sessions::session_deltas;
use crate::{Store, StoreError};

/// Events the SDK had to give up before they reached the store, persisted with the
/// next batch so that `status` can show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounts {
    /// Dropped because the in-memory buffer was full (oldest first).
    pub buffer_full: u64,
    /// Dropped because they broke a validation rule.
    pub invalid: u64,
    /// Not spooled at exit because the spool was at its size bound.
    pub spool_full: u64,
    /// Lost on the way through the spool: a spool file could not be written (full
    /// disk, unwritable directory) or a record of one was torn by a crash.
    pub spool_failed: u64,
}

impl DropCounts {
    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Every drop, whatever the reason.
    pub fn total(&self) -> u64 {
        self.buffer_full + self.invalid + self.spool_full + self.spool_failed
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: DropCounts) {
        self.buffer_full += other.buffer_full;
        self.invalid += other.invalid;
        self.spool_full += other.spool_full;
        self.spool_failed += other.spool_failed;
    }

    /// The `meta` key each count is kept under, with the count.
    pub(crate) fn by_key(&self) -> [(&'static str, u64); 4] {
        [
            ("dropped_buffer_full", self.buffer_full),
            ("dropped_invalid", self.invalid),
            ("dropped_spool_full", self.spool_full),
            ("dropped_spool_failed", self.spool_failed),
        ]
    }
}

/// What a committed batch did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// How many events were newly stored.
    pub inserted: usize,
    /// How many events had an id already stored, and were skipped.
    pub duplicates: usize,
    /// Per event of the batch, in order: whether it was newly stored (false: duplicate).
    pub stored: Vec<bool>,
}

const INSERT_EVENT: &str = "INSERT OR IGNORE INTO event_rows (id, ts, app, app_version, source, type, name, \
     command, session_id, install_id, workspace, target_type, target_id, duration_ms, success, error_category, \
     error_message, props) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

const UPSERT_SESSION: &str = "INSERT INTO session_rows (install_id, app, session_id, started_at, ended_at, \
     duration_ms, commands_executed, workspaces_created, tasks_completed, errors_encountered) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?5 - ?4, ?6, ?7, ?8, ?9) \
     ON CONFLICT (install_id, app, session_id) DO UPDATE SET \
       started_at = min(started_at, excluded.started_at), \
       ended_at = max(ended_at, excluded.ended_at), \
       duration_ms = max(ended_at, excluded.ended_at) - min(started_at, excluded.started_at), \
       commands_executed = commands_executed + excluded.commands_executed, \
       workspaces_created = workspaces_created + excluded.workspaces_created, \
       tasks_completed = tasks_completed + excluded.tasks_completed, \
       errors_encountered = errors_encountered + excluded.errors_encountered";

impl Store {
    /// Stores `events` and adds `drops` to the drop counters, all in one transaction.
    /// On any error nothing of the batch is stored.
    pub fn insert_batch(&mut self, events: &[Event], drops: DropCounts) -> Result<BatchOutcome, StoreError> {
        self.insert_batch_with(events, drops, |_, _, _| Ok(()))
    }

    /// Like [`Store::insert_batch`], and runs `also` with the newly stored events and the
    /// hourly rollups they added inside the same transaction, so that a caller's own
    /// tables (the collector's installs, totals and per-day rollups) commit or roll back
    /// with the batch.
    pub fn insert_batch_with(
        &mut self,
        events: &[Event],
        drops: DropCounts,
        also: impl FnOnce(&rusqlite::Transaction<'_>, &[&Event], &BTreeMap<RollupKey, Rollup>) -> Result<(), StoreError>,
    ) -> Result<BatchOutcome, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (outcome, new_events) = insert_events(&tx, events)?;
        upsert_sessions(&tx, &new_events)?;
        let rollups = rollups_of(new_events.iter().copied());
        add_rollups(&tx, &rollups)?;
        also(&tx, &new_events, &rollups)?;
        add_drop_counts(&tx, drops)?;
        tx.commit()?;
        Ok(outcome)
    }
}

/// Inserts every event whose id is not stored yet; returns what happened to each and
/// the newly stored ones, in batch order.
fn insert_events<'e>(tx: &Transaction<'_>, events: &'e [Event]) -> Result<(BatchOutcome, Vec<&'e Event>), StoreError> {
    let mut outcome = BatchOutcome {
        stored: Vec::with_capacity(events.len()),
        ..BatchOutcome::default()
    };
    let mut new_events = Vec::with_capacity(events.len());
    let mut insert = tx.prepare_cached(INSERT_EVENT)?;
    let mut strings = Interner::new(tx, Dictionary::Strings);
    let mut install_ids = Interner::new(tx, Dictionary::InstallIds);
    let mut session_ids = Interner::new(tx, Dictionary::SessionIds);
    for event in events {
        let props = if event.props.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&event.props).map_err(|err| StoreError::Invalid(err.to_string()))?)
        };
        let changed = insert.execute(rusqlite::params![
            event.id.as_bytes(),
            compact::millis(event.ts),
            strings.id(&event.app)?,
            strings.id(&event.app_version)?,
            strings.id(event.source.as_str())?,
            strings.id(&event.kind)?,
            strings.id(&event.name)?,
            strings.optional(event.command.as_deref())?,
            session_ids.id(&event.session_id)?,
            install_ids.id(&event.install_id)?,
            event.workspace.as_deref().map(compact::hash),
            strings.optional(event.target_type.as_deref())?,
            event.target_id.as_deref().map(compact::hash),
            event.duration_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX)),
            event.success,
            strings.optional(event.error_category.as_deref())?,
            event.error_message,
            props,
        ])?;
        outcome.stored.push(changed > 0);
        if changed == 0 {
            outcome.duplicates += 1;
        } else {
            outcome.inserted += 1;
            new_events.push(event);
        }
    }
    // A duplicate interned its values before it was skipped; the store keeps only
    // values its events hold.
    if outcome.duplicates > 0 {
        for interner in [&strings, &install_ids, &session_ids] {
            interner.forget_unused()?;
        }
    }
    Ok((outcome, new_events))
}

/// Folds the new events into their sessions' rows ([`crate::sessions`] has the rule).
fn upsert_sessions(tx: &Transaction<'_>, new_events: &[&Event]) -> Result<(), StoreError> {
    let sessions = session_deltas(new_events.iter().copied());
    if sessions.is_empty() {
        return Ok(());
    }
    let mut upsert = tx.prepare_cached(UPSERT_SESSION)?;
    let mut strings = Interner::new(tx, Dictionary::Strings);
    let mut install_ids = Interner::new(tx, Dictionary::InstallIds);
    let mut session_ids = Interner::new(tx, Dictionary::SessionIds);
    for ((_, _, session_id), delta) in &sessions {
        upsert.execute(rusqlite::params![
            install_ids.id(delta.install_id)?,
            strings.id(delta.app)?,
            session_ids.id(session_id)?,
            compact::millis(delta.started_at),
            compact::millis(delta.ended_at),
            delta.commands_executed,
            delta.workspaces_created,
            delta.tasks_completed,
            delta.errors_encountered,
        ])?;
    }
    Ok(())
}

/// Adds what the SDK dropped before this batch to the counters `status` shows.
fn add_drop_counts(tx: &Transaction<'_>, drops: DropCounts) -> Result<(), StoreError> {
    if drops.is_empty() {
        return Ok(());
    }
    let mut add = tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER)",
    )?;
    for (key, count) in drops.by_key() {
        if count > 0 {
            add.execute((key, count.to_string()))?;
        }
    }
    Ok(())
}
