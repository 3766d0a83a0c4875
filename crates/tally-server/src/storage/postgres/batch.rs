//! The write path: one batch of events in one transaction, in named steps.
//!
//! 1. The batch's distinct events in one `INSERT ... SELECT FROM unnest(...) ON CONFLICT
//!    DO NOTHING`, one binary array parameter per column.
//! 2. [`Aggregates`]: the sessions, hourly and daily rollups, installs, install days,
//!    totals and group members the new events change, folded in memory (one row per key,
//!    however many events share it) and written by one multi-row upsert per table.
//!
//! **Flights.** A transaction's statements are sent at once (pipelined) and answered in
//! order; the server still runs them one after the other, so the collector waits once
//! per flight instead of once per statement. Almost every batch is new, so it is
//! written in one flight ([`Batch::write_all_new`]): `BEGIN`, the insert, the upserts
//! folded from all its events, `COMMIT`. The insert fails unless it stored every event
//! (`tally_expect_all_stored`), which aborts the transaction, so the upserts fail and
//! PostgreSQL answers the `COMMIT` by rolling back: a batch holding an event stored
//! already (a client's retry, or another collector's concurrent copy) leaves nothing
//! and is written again in two flights ([`Batch::write_in_two_flights`]): `BEGIN` with
//! the insert, which returns exactly the events this transaction stored (not a
//! duplicate of a committed event, nor of one a concurrent transaction is committing),
//! then the upserts of those with `COMMIT`.
//!
//! This holds only because no statement of a flight is sent after its `COMMIT`: each is
//! prepared beforehand ([`Statements`]; one still being prepared would go out late,
//! outside the transaction), and a flight's futures are polled by `join!` (every one of
//! them at once, then each to its answer) and not `try_join!`: that stops polling at
//! the first error, and an answer can arrive before the next statement is polled (the
//! thread only has to be descheduled between the two), so `COMMIT` would never be sent
//! and the connection would stay in a failed transaction. The flight's error is the
//! first in its order. Should any statement fail, PostgreSQL answers the `COMMIT` that
//! follows it by rolling the transaction back. A connection whose transaction did not
//! end (an error, or the write dropped midway) is rolled back or closed by [`write`]
//! before anyone else can use it.
//!
//! Binary `COPY` into a staging table and one `INSERT ... SELECT ... ON CONFLICT` was
//! measured as the first step too (`benches/writes.rs` keeps it as a side): for the
//! events alone it ran at 0.63x of a plain binary `COPY`, against 0.88x for this insert
//! (`docs/BENCHMARKS.md` §5), since the rows are written twice and the temporary table
//! is emptied at every commit, while the `unnest` insert already sends binary arrays in
//! one message.
//!
//! Every statement touches its rows in a fixed order (events by id, aggregates by key),
//! so two collectors writing overlapping batches wait for each other instead of
//! deadlocking; the caller retries the rare deadlock or serialization failure anyway.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::LazyLock;

use deadpool_postgres::{GenericClient, Object};
use jiff::Timestamp;
use tally_core::Event;
use tally_store::histogram::BUCKETS;
use tally_store::rollup::{Rollup, RollupKey, rollups_of};
use tally_store::sessions::{SessionDelta, session_deltas};
use tokio_postgres::Statement;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use super::PostgresError;
use super::partitions::Month;
use crate::storage::activity;

/// The batch's distinct events in one insert, one binary array per column, skipping
/// any stored already; both events statements are this with their own ending.
macro_rules! insert_events {
    () => {
        "INSERT INTO events (id, ts, app, app_version, source, type, name, command, session_id, install_id, \
         workspace, target_type, target_id, duration_ms, success, error_category, error_message, props) \
         SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int8[], \
         $15::bool[], $16::text[], $17::text[], $18::jsonb[]) \
         ON CONFLICT DO NOTHING"
    };
}

/// The events insert returning the keys it stored.
const INSERT_EVENTS: &str = concat!(insert_events!(), " RETURNING id, ts");

/// The events insert of a batch expected to be all new: `tally_expect_all_stored`
/// (migration 12) fails the statement, and so the transaction, unless it stored all `$19`.
const INSERT_ALL_NEW_EVENTS: &str = concat!(
    "WITH stored AS (",
    insert_events!(),
    " RETURNING 1) SELECT tally_expect_all_stored(count(*), $19) FROM stored"
);

const UPSERT_SESSIONS: &str = "INSERT INTO sessions AS s (session_id, app, install_id, started_at, ended_at, \
     duration_ms, commands_executed, workspaces_created, tasks_completed, errors_encountered) \
     SELECT d.session_id, d.app, d.install_id, d.started_at, d.ended_at, \
       round((extract(epoch FROM d.ended_at) - extract(epoch FROM d.started_at)) * 1000)::bigint, \
       d.commands, d.workspaces, d.tasks, d.errors \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int8[], \
       $7::int8[], $8::int8[], $9::int8[]) \
       AS d(session_id, app, install_id, started_at, ended_at, commands, workspaces, tasks, errors) \
     ON CONFLICT (app, install_id, session_id) DO UPDATE SET \
       started_at = least(s.started_at, excluded.started_at), \
       ended_at = greatest(s.ended_at, excluded.ended_at), \
       duration_ms = round((extract(epoch FROM greatest(s.ended_at, excluded.ended_at)) \
         - extract(epoch FROM least(s.started_at, excluded.started_at))) * 1000)::bigint, \
       commands_executed = s.commands_executed + excluded.commands_executed, \
       workspaces_created = s.workspaces_created + excluded.workspaces_created, \
       tasks_completed = s.tasks_completed + excluded.tasks_completed, \
       errors_encountered = s.errors_encountered + excluded.errors_encountered";

/// The upsert that adds rollups to `table`: `metrics` (hourly) or `metrics_daily` (keyed
/// by the day's first hour), which have the same columns and key.
///
/// Histograms travel as one flat array, `BUCKETS` counts per rollup row in row order,
/// because PostgreSQL arrays of arrays cannot be unnested one row at a time. A stored
/// histogram is added to bucket by bucket, by index: a function scan returns
/// `generate_series` in order and `ARRAY(...)` keeps its rows' order, and this was
/// measured faster than unnesting both arrays with their ordinality and sorting.
fn upsert_rollups_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} AS m (hour, app, type, name, command, success, error_category, count, \
         duration_count, duration_total_ms, duration_min_ms, duration_max_ms, histogram) \
         SELECT r.hour, r.app, r.type, r.name, r.command, r.success, r.error_category, r.count, r.duration_count, \
           r.duration_total_ms, r.duration_min_ms, r.duration_max_ms, \
           ($13::int8[])[((r.ord - 1) * {BUCKETS} + 1)::int : (r.ord * {BUCKETS})::int] \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int2[], $7::text[], \
           $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[]) WITH ORDINALITY \
           AS r(hour, app, type, name, command, success, error_category, count, duration_count, \
             duration_total_ms, duration_min_ms, duration_max_ms, ord) \
         ON CONFLICT (hour, app, type, name, command, success, error_category) DO UPDATE SET \
           count = m.count + excluded.count, \
           duration_count = m.duration_count + excluded.duration_count, \
           duration_total_ms = m.duration_total_ms + excluded.duration_total_ms, \
           duration_min_ms = least(m.duration_min_ms, excluded.duration_min_ms), \
           duration_max_ms = greatest(m.duration_max_ms, excluded.duration_max_ms), \
           histogram = ARRAY(SELECT coalesce(m.histogram[b], 0) + coalesce(excluded.histogram[b], 0) \
             FROM generate_series(1, {BUCKETS}) AS b)"
    )
}

const UPSERT_INSTALLS: &str = "INSERT INTO installs AS i (app, install_id, first_seen, last_seen) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) \
     ON CONFLICT (app, install_id) DO UPDATE SET \
       first_seen = least(i.first_seen, excluded.first_seen), \
       last_seen = greatest(i.last_seen, excluded.last_seen)";

const UPSERT_TOTALS: &str = "INSERT INTO totals AS t (app, type, name, success, count) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::int8[]) \
     ON CONFLICT (app, type, name, success) DO UPDATE SET count = t.count + excluded.count";

/// Adds each (group, install) pair not yet stored while its group holds fewer than
/// `GROUP_INSTALLS_CAP` installs, by the group's count (`group_install_counts`, which a
/// trigger keeps). The pairs come sorted, so rows are locked in key order. Concurrent
/// batches may overshoot the cap by their own size; readers clamp.
fn insert_group_installs_sql() -> String {
    format!(
        "INSERT INTO group_installs (app, type, name, command, install_id) \
         SELECT d.app, d.type, d.name, d.command, d.install_id \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
           AS d(app, type, name, command, install_id) \
         WHERE coalesce((SELECT c.installs FROM group_install_counts AS c WHERE c.app = d.app \
             AND c.type = d.type AND c.name = d.name AND c.command = d.command), 0) < {} \
         ON CONFLICT DO NOTHING",
        crate::storage::GROUP_INSTALLS_CAP
    )
}

/// What makes two events the same stored event.
type EventKey = (Uuid, Timestamp);

/// The write path's statements, prepared on one connection (or found in its cache)
/// before a flight is sent: see the module's "Flights".
pub(super) struct Statements {
    insert_events: Statement,
    insert_all_new: Statement,
    sessions: Statement,
    pub(super) rollups: Statement,
    pub(super) daily_rollups: Statement,
    pub(super) installs: Statement,
    pub(super) totals: Statement,
    pub(super) group_installs: Statement,
    pub(super) install_days: Statement,
}

impl Statements {
    pub(super) async fn prepare(client: &impl GenericClient) -> Result<Statements, PostgresError> {
        static UPSERT_ROLLUPS: LazyLock<String> = LazyLock::new(|| upsert_rollups_sql("metrics"));
        static UPSERT_DAILY_ROLLUPS: LazyLock<String> = LazyLock::new(|| upsert_rollups_sql("metrics_daily"));
        static INSERT_GROUP_INSTALLS: LazyLock<String> = LazyLock::new(insert_group_installs_sql);
        Ok(Statements {
            insert_events: client.prepare_cached(INSERT_EVENTS).await?,
            insert_all_new: client.prepare_cached(INSERT_ALL_NEW_EVENTS).await?,
            sessions: client.prepare_cached(UPSERT_SESSIONS).await?,
            rollups: client.prepare_cached(&UPSERT_ROLLUPS).await?,
            daily_rollups: client.prepare_cached(&UPSERT_DAILY_ROLLUPS).await?,
            installs: client.prepare_cached(UPSERT_INSTALLS).await?,
            totals: client.prepare_cached(UPSERT_TOTALS).await?,
            group_installs: client.prepare_cached(&INSERT_GROUP_INSTALLS).await?,
            install_days: client.prepare_cached(super::activity::UPSERT_INSTALL_DAYS).await?,
        })
    }
}

/// Writes `batch` on `client` in one transaction (one flight, or two: see the module's
/// "Flights"); returns per event whether it was newly stored. On an error the
/// transaction is rolled back before the connection goes back to the pool.
pub(super) async fn write(client: Object, batch: &Batch) -> Result<Vec<bool>, PostgresError> {
    let statements = Statements::prepare(&client).await?;
    let open = OpenTransaction(Some(client));
    let result = batch.write(open.client(), &statements).await;
    if result.is_ok() || open.client().batch_execute("ROLLBACK").await.is_ok() {
        open.ended();
    }
    result
}

/// A pooled connection inside a transaction [`write`] began. Unless
/// [`OpenTransaction::ended`] says the transaction is over, dropping it (an error whose
/// `ROLLBACK` failed too, or the write itself dropped midway) closes the connection, so
/// the server rolls the transaction back, instead of handing it to the next writer.
struct OpenTransaction(Option<Object>);

impl OpenTransaction {
    fn client(&self) -> &Object {
        self.0
            .as_ref()
            .expect("the connection is held until the transaction ends")
    }

    /// The transaction is over: the connection goes back to the pool.
    fn ended(mut self) {
        drop(self.0.take());
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
    }
}

/// A batch ready to write: its events with times cut to milliseconds (what the store
/// keeps, as in the embedded backend), and which of them are the first of their key.
pub(super) struct Batch {
    events: Vec<Event>,
    /// Indexes of the first event of each key, sorted by key (the lock order).
    unique: Vec<usize>,
}

impl Batch {
    pub(super) fn new(mut events: Vec<Event>) -> Batch {
        for event in &mut events {
            event.ts = tally_core::time::truncate_to_millis(event.ts);
        }
        let mut seen = HashSet::with_capacity(events.len());
        let mut unique: Vec<usize> = (0..events.len())
            .filter(|&index| seen.insert(key(&events[index])))
            .collect();
        unique.sort_by_key(|&index| key(&events[index]));
        Batch { events, unique }
    }

    /// The months the batch's events fall in.
    pub(super) fn months(&self) -> BTreeSet<Month> {
        self.unique
            .iter()
            .map(|&index| Month::of(self.events[index].ts))
            .collect()
    }

    /// Begins a transaction and writes the batch in it, ending with `COMMIT`; returns
    /// per event whether it was newly stored. On an error the transaction may still be
    /// open: the caller ([`write`]) rolls it back.
    async fn write(&self, client: &Object, statements: &Statements) -> Result<Vec<bool>, PostgresError> {
        if self.write_all_new(client, statements).await? {
            return Ok(self.first_of_their_keys());
        }
        self.write_in_two_flights(client, statements).await
    }

    /// The whole transaction in one flight, for a batch none of whose events is stored
    /// yet (a retried batch is the exception): the insert, checked by
    /// `tally_expect_all_stored` (migration 12) to have stored every event, the upserts
    /// of all of them, and `COMMIT`. `false` when the check failed: PostgreSQL then
    /// rolled the transaction back at that `COMMIT`, and nothing of the batch is stored.
    async fn write_all_new(&self, client: &Object, statements: &Statements) -> Result<bool, PostgresError> {
        let unique: Vec<&Event> = self.unique.iter().map(|&index| &self.events[index]).collect();
        // `BEGIN` cannot fail on a connection that is not inside a transaction, which
        // `OpenTransaction` sees to, so the insert never runs outside this one. The
        // aggregates are folded after the insert is sent, while the server runs it.
        let (begun, inserted, upserted, committed) = futures_util::join!(
            async { Ok(client.batch_execute("BEGIN").await?) },
            self.insert_all_new(client, &statements.insert_all_new),
            async { Aggregates::of(&unique).write(client, statements).await },
            async { Ok(client.batch_execute("COMMIT").await?) },
        );
        match begun.and(inserted).and(upserted).and(committed) {
            Ok(()) => Ok(true),
            Err(err) if err.is_stored_already() => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The transaction in two flights: `BEGIN` with the insert, which returns the events
    /// it stored, then the upserts of those with `COMMIT`.
    async fn write_in_two_flights(&self, client: &Object, statements: &Statements) -> Result<Vec<bool>, PostgresError> {
        let (begun, stored) = futures_util::join!(
            async { Ok(client.batch_execute("BEGIN").await?) },
            self.insert_events(client, &statements.insert_events),
        );
        let stored = begun.and(stored)?;
        let flags = self.newly_stored(&stored);
        let new: Vec<&Event> = self
            .events
            .iter()
            .zip(&flags)
            .filter_map(|(event, new)| new.then_some(event))
            .collect();
        let aggregates = (!new.is_empty()).then(|| Aggregates::of(&new));
        let (upserted, committed) = futures_util::join!(
            async {
                match aggregates {
                    Some(aggregates) => aggregates.write(client, statements).await,
                    None => Ok(()),
                }
            },
            async { Ok(client.batch_execute("COMMIT").await?) },
        );
        upserted.and(committed)?;
        Ok(flags)
    }

    /// Inserts the unique events; returns the keys this transaction stored.
    async fn insert_events(
        &self,
        client: &impl GenericClient,
        statement: &Statement,
    ) -> Result<HashSet<EventKey>, PostgresError> {
        let columns = EventColumns::of(self.unique.iter().map(|&index| &self.events[index]));
        let rows = client.query(statement, &columns.params()).await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// Inserts the unique events by [`INSERT_ALL_NEW_EVENTS`], which fails
    /// ([`PostgresError::is_stored_already`]) unless every one of them is new.
    async fn insert_all_new(&self, client: &impl GenericClient, statement: &Statement) -> Result<(), PostgresError> {
        let columns = EventColumns::of(self.unique.iter().map(|&index| &self.events[index]));
        let sent = self.unique.len() as i64;
        let mut params = columns.params().to_vec();
        params.push(&sent);
        client.query_one(statement, &params).await?;
        Ok(())
    }

    /// Per event, whether it is the first of its key in the batch and `stored` holds
    /// its key: a later copy in the same batch is a duplicate, as is an event already
    /// stored.
    fn newly_stored(&self, stored: &HashSet<EventKey>) -> Vec<bool> {
        self.events
            .iter()
            .zip(self.first_of_their_keys())
            .map(|(event, first)| first && stored.contains(&key(event)))
            .collect()
    }

    /// Per event, whether it is the first of its key in the batch.
    fn first_of_their_keys(&self) -> Vec<bool> {
        let mut first = vec![false; self.events.len()];
        for &index in &self.unique {
            first[index] = true;
        }
        first
    }
}

/// The events' columns as one array each: the events insert's parameters.
struct EventColumns<'e> {
    ids: Vec<Uuid>,
    timestamps: Vec<Timestamp>,
    apps: Vec<&'e str>,
    app_versions: Vec<&'e str>,
    sources: Vec<&'e str>,
    kinds: Vec<&'e str>,
    names: Vec<&'e str>,
    commands: Vec<Option<&'e str>>,
    session_ids: Vec<&'e str>,
    install_ids: Vec<&'e str>,
    workspaces: Vec<Option<&'e str>>,
    target_types: Vec<Option<&'e str>>,
    target_ids: Vec<Option<&'e str>>,
    durations: Vec<Option<i64>>,
    successes: Vec<Option<bool>>,
    error_categories: Vec<Option<&'e str>>,
    error_messages: Vec<Option<&'e str>>,
    props: Vec<Option<Json<&'e tally_core::Props>>>,
}

impl<'e> EventColumns<'e> {
    fn of(events: impl ExactSizeIterator<Item = &'e Event>) -> EventColumns<'e> {
        let count = events.len();
        let mut columns = EventColumns {
            ids: Vec::with_capacity(count),
            timestamps: Vec::with_capacity(count),
            apps: Vec::with_capacity(count),
            app_versions: Vec::with_capacity(count),
            sources: Vec::with_capacity(count),
            kinds: Vec::with_capacity(count),
            names: Vec::with_capacity(count),
            commands: Vec::with_capacity(count),
            session_ids: Vec::with_capacity(count),
            install_ids: Vec::with_capacity(count),
            workspaces: Vec::with_capacity(count),
            target_types: Vec::with_capacity(count),
            target_ids: Vec::with_capacity(count),
            durations: Vec::with_capacity(count),
            successes: Vec::with_capacity(count),
            error_categories: Vec::with_capacity(count),
            error_messages: Vec::with_capacity(count),
            props: Vec::with_capacity(count),
        };
        for event in events {
            columns.ids.push(event.id);
            columns.timestamps.push(event.ts);
            columns.apps.push(event.app.as_str());
            columns.app_versions.push(event.app_version.as_str());
            columns.sources.push(event.source.as_str());
            columns.kinds.push(event.kind.as_str());
            columns.names.push(event.name.as_str());
            columns.commands.push(event.command.as_deref());
            columns.session_ids.push(event.session_id.as_str());
            columns.install_ids.push(event.install_id.as_str());
            columns.workspaces.push(event.workspace.as_deref());
            columns.target_types.push(event.target_type.as_deref());
            columns.target_ids.push(event.target_id.as_deref());
            columns.durations.push(event.duration_ms.map(saturating_i64));
            columns.successes.push(event.success);
            columns.error_categories.push(event.error_category.as_deref());
            columns.error_messages.push(event.error_message.as_deref());
            // Serialized straight into the parameter's bytes (`Json`), without building a
            // `serde_json::Value` first.
            columns
                .props
                .push((!event.props.is_empty()).then_some(Json(&event.props)));
        }
        columns
    }

    /// The parameters `$1` to `$18`, in the statements' column order.
    fn params(&self) -> [&(dyn ToSql + Sync); 18] {
        [
            &self.ids,
            &self.timestamps,
            &self.apps,
            &self.app_versions,
            &self.sources,
            &self.kinds,
            &self.names,
            &self.commands,
            &self.session_ids,
            &self.install_ids,
            &self.workspaces,
            &self.target_types,
            &self.target_ids,
            &self.durations,
            &self.successes,
            &self.error_categories,
            &self.error_messages,
            &self.props,
        ]
    }
}

/// Step 2: what a batch's new events add to the aggregate tables, one entry per row
/// each table gets.
struct Aggregates<'e> {
    sessions: BTreeMap<(&'e str, &'e str, &'e str), SessionDelta<'e>>,
    rollups: BTreeMap<RollupKey, Rollup>,
    installs: BTreeMap<(&'e str, &'e str), (Timestamp, Timestamp)>,
    totals: BTreeMap<(&'e str, &'e str, &'e str, i64), i64>,
    groups: BTreeSet<(&'e str, &'e str, &'e str, &'e str, &'e str)>,
    /// The hours of each (app, install, UTC day) the events fall in.
    install_days: BTreeMap<(&'e str, &'e str, jiff::civil::Date), i32>,
    /// The rollups per day.
    daily: BTreeMap<RollupKey, Rollup>,
}

impl<'e> Aggregates<'e> {
    /// Folds the new events in memory.
    fn of(new: &[&'e Event]) -> Aggregates<'e> {
        // The session rule is the store's (`tally_store::sessions`).
        let sessions = session_deltas(new.iter().copied());
        let installs = crate::storage::install_sightings(new);
        let totals = crate::storage::total_counts(new);
        let rollups = rollups_of(new.iter().copied());
        let groups = new.iter().flat_map(|event| crate::storage::groups_of(event)).collect();
        Aggregates {
            sessions,
            daily: activity::to_days(&rollups),
            rollups,
            installs,
            totals,
            groups,
            install_days: activity::install_days(new.iter().copied()),
        }
    }

    /// Sends one upsert per table at once (`join!`, as the module's "Flights" says); the
    /// server runs them one after the other in this order. The first error in that order.
    async fn write(self, client: &impl GenericClient, statements: &Statements) -> Result<(), PostgresError> {
        let (sessions, rollups, installs, totals, groups, install_days, daily) = futures_util::join!(
            add_sessions(client, &statements.sessions, &self.sessions),
            add_rollups(client, &statements.rollups, &self.rollups),
            see_installs(client, &statements.installs, &self.installs),
            add_totals(client, &statements.totals, &self.totals),
            add_group_installs(client, &statements.group_installs, &self.groups),
            super::activity::record_install_days(client, &statements.install_days, &self.install_days),
            add_rollups(client, &statements.daily_rollups, &self.daily),
        );
        sessions
            .and(rollups)
            .and(installs)
            .and(totals)
            .and(groups)
            .and(install_days)
            .and(daily)
    }
}

fn key(event: &Event) -> EventKey {
    (event.id, event.ts)
}

pub(super) fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Folds session deltas into their sessions' rows.
async fn add_sessions(
    client: &impl GenericClient,
    statement: &Statement,
    sessions: &BTreeMap<(&str, &str, &str), SessionDelta<'_>>,
) -> Result<(), PostgresError> {
    let session_ids: Vec<&str> = sessions.keys().map(|(_, _, session)| *session).collect();
    let deltas: Vec<&SessionDelta<'_>> = sessions.values().collect();
    let apps: Vec<&str> = deltas.iter().map(|delta| delta.app).collect();
    let install_ids: Vec<&str> = deltas.iter().map(|delta| delta.install_id).collect();
    let started: Vec<Timestamp> = deltas.iter().map(|delta| delta.started_at).collect();
    let ended: Vec<Timestamp> = deltas.iter().map(|delta| delta.ended_at).collect();
    let commands: Vec<i64> = deltas.iter().map(|delta| delta.commands_executed).collect();
    let workspaces: Vec<i64> = deltas.iter().map(|delta| delta.workspaces_created).collect();
    let tasks: Vec<i64> = deltas.iter().map(|delta| delta.tasks_completed).collect();
    let errors: Vec<i64> = deltas.iter().map(|delta| delta.errors_encountered).collect();
    client
        .execute(
            statement,
            &[
                &session_ids,
                &apps,
                &install_ids,
                &started,
                &ended,
                &commands,
                &workspaces,
                &tasks,
                &errors,
            ],
        )
        .await?;
    Ok(())
}

/// Adds `rollups` to the table of `statement` (`Statements::rollups`, hourly, or
/// `daily_rollups`) in key order, so concurrent batches lock rows in the same order.
pub(super) async fn add_rollups(
    client: &impl GenericClient,
    statement: &Statement,
    rollups: &BTreeMap<RollupKey, Rollup>,
) -> Result<(), PostgresError> {
    if rollups.is_empty() {
        return Ok(());
    }
    let keys: Vec<&RollupKey> = rollups.keys().collect();
    let values: Vec<&Rollup> = rollups.values().collect();
    let hours: Vec<String> = keys.iter().map(|key| key.hour.to_string()).collect();
    let apps: Vec<&str> = keys.iter().map(|key| key.app.as_str()).collect();
    let kinds: Vec<&str> = keys.iter().map(|key| key.kind.as_str()).collect();
    let names: Vec<&str> = keys.iter().map(|key| key.name.as_str()).collect();
    let commands: Vec<&str> = keys.iter().map(|key| key.command.as_str()).collect();
    let successes: Vec<i16> = keys.iter().map(|key| key.success as i16).collect();
    let categories: Vec<&str> = keys.iter().map(|key| key.error_category.as_str()).collect();
    let counts: Vec<i64> = values.iter().map(|rollup| saturating_i64(rollup.count)).collect();
    let duration_counts: Vec<i64> = values.iter().map(|r| saturating_i64(r.duration_count)).collect();
    let totals: Vec<i64> = values.iter().map(|r| saturating_i64(r.duration_total_ms)).collect();
    let mins: Vec<Option<i64>> = values.iter().map(|r| r.duration_min_ms.map(saturating_i64)).collect();
    let maxes: Vec<Option<i64>> = values.iter().map(|r| r.duration_max_ms.map(saturating_i64)).collect();
    let histograms: Vec<i64> = values
        .iter()
        .flat_map(|rollup| rollup.histogram.counts.map(saturating_i64))
        .collect();
    client
        .execute(
            statement,
            &[
                &hours,
                &apps,
                &kinds,
                &names,
                &commands,
                &successes,
                &categories,
                &counts,
                &duration_counts,
                &totals,
                &mins,
                &maxes,
                &histograms,
            ],
        )
        .await?;
    Ok(())
}

/// Widens each install's first and last seen to include the given times.
pub(super) async fn see_installs(
    client: &impl GenericClient,
    statement: &Statement,
    installs: &BTreeMap<(&str, &str), (Timestamp, Timestamp)>,
) -> Result<(), PostgresError> {
    let apps: Vec<&str> = installs.keys().map(|(app, _)| *app).collect();
    let install_ids: Vec<&str> = installs.keys().map(|(_, install_id)| *install_id).collect();
    let first_seen: Vec<Timestamp> = installs.values().map(|(first, _)| *first).collect();
    let last_seen: Vec<Timestamp> = installs.values().map(|(_, last)| *last).collect();
    client
        .execute(statement, &[&apps, &install_ids, &first_seen, &last_seen])
        .await?;
    Ok(())
}

/// Adds to the lifetime totals per (app, type, name, outcome), in key order.
pub(super) async fn add_totals(
    client: &impl GenericClient,
    statement: &Statement,
    totals: &BTreeMap<(&str, &str, &str, i64), i64>,
) -> Result<(), PostgresError> {
    let apps: Vec<&str> = totals.keys().map(|(app, ..)| *app).collect();
    let kinds: Vec<&str> = totals.keys().map(|(_, kind, ..)| *kind).collect();
    let names: Vec<&str> = totals.keys().map(|(_, _, name, _)| *name).collect();
    // The column is a smallint; the outcome is -1, 0 or 1.
    let successes: Vec<i16> = totals.keys().map(|(.., success)| *success as i16).collect();
    let counts: Vec<i64> = totals.values().copied().collect();
    client
        .execute(statement, &[&apps, &kinds, &names, &successes, &counts])
        .await?;
    Ok(())
}

/// Remembers that each install was seen in each group, as (app, type, name, command,
/// install id), up to the cap per group.
pub(super) async fn add_group_installs(
    client: &impl GenericClient,
    statement: &Statement,
    pairs: &BTreeSet<(&str, &str, &str, &str, &str)>,
) -> Result<(), PostgresError> {
    let apps: Vec<&str> = pairs.iter().map(|pair| pair.0).collect();
    let kinds: Vec<&str> = pairs.iter().map(|pair| pair.1).collect();
    let names: Vec<&str> = pairs.iter().map(|pair| pair.2).collect();
    let commands: Vec<&str> = pairs.iter().map(|pair| pair.3).collect();
    let install_ids: Vec<&str> = pairs.iter().map(|pair| pair.4).collect();
    client
        .execute(statement, &[&apps, &kinds, &names, &commands, &install_ids])
        .await?;
    Ok(())
}
