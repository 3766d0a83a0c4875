//! The production backend: PostgreSQL, shared by any number of collectors.
//!
//! Collectors keep no state of their own that another collector could contradict: the
//! database dedupes events by their primary key `(id, ts)`, and every aggregate is
//! changed by an upsert that adds to what is stored. So two collectors may receive the
//! same retried batch at once and the event is still stored, and counted, once.
//!
//! A pool of connections ([`POOL_SIZE`]) serves all requests. [`PostgresStorage::connect`]
//! migrates the schema first (`migrations`). `events` is partitioned by month
//! (`partitions`) so that retention drops whole months; a batch is written by
//! `batch` in one transaction, retried a few times when PostgreSQL aborts it for a
//! deadlock or serialization failure against another collector.
//!
//! Connections use no TLS (the workspace builds without OpenSSL): run the collector
//! next to its database or through a TLS-terminating proxy.

mod activity;
mod batch;
mod daily;
mod migrations;
mod partitions;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use jiff::Timestamp;
use jiff::civil::Date;
use tally_core::Event;
use tally_core::counts::DayCounts;
use tally_core::time::{HourKey, Period};
use tally_store::histogram::Histogram;
use tally_store::rollup::{Rollup, RollupKey};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use self::batch::Batch;
use self::partitions::Month;
use super::{
    ApiKey, CountsSummary, Erasure, EventQuery, GROUP_INSTALLS_CAP, GroupInstalls, InstallSummary, KeyRegistration,
    SessionSummary, Storage, StorageError, TotalRow,
};

/// Connections per collector.
pub const POOL_SIZE: usize = 16;

/// How long opening a connection may take before the database counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for a free connection before the collector answers 503.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at one batch when PostgreSQL aborts it for a conflict with another writer.
const INSERT_ATTEMPTS: u32 = 5;

/// The collector's PostgreSQL store.
pub struct PostgresStorage {
    pool: Pool,
    /// Months known to have a partition, so that most batches skip the catalog. Another
    /// collector's retention may detach one meanwhile; the insert then fails, this set is
    /// cleared and the batch retried.
    partitions: Mutex<HashSet<Month>>,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

/// What went wrong talking to PostgreSQL, before it becomes a [`StorageError`].
#[derive(Debug)]
enum PostgresError {
    Db(tokio_postgres::Error),
    Pool(PoolError),
    /// The schema in the database is not one this build can use.
    Schema(String),
    /// A value could not be converted to or from its stored form.
    Data(String),
}

impl From<tokio_postgres::Error> for PostgresError {
    fn from(err: tokio_postgres::Error) -> Self {
        PostgresError::Db(err)
    }
}

impl From<PoolError> for PostgresError {
    fn from(err: PoolError) -> Self {
        PostgresError::Pool(err)
    }
}

impl PostgresError {
    fn db(&self) -> Option<&tokio_postgres::Error> {
        match self {
            PostgresError::Db(err) | PostgresError::Pool(PoolError::Backend(err)) => Some(err),
            _ => None,
        }
    }

    fn code(&self) -> Option<&SqlState> {
        self.db().and_then(tokio_postgres::Error::code)
    }

    /// An insert routed a row to a month whose partition is gone (another collector's
    /// retention detached it after this one cached it).
    fn is_missing_partition(&self) -> bool {
        self.db()
            .and_then(tokio_postgres::Error::as_db_error)
            .is_some_and(|db| *db.code() == SqlState::CHECK_VIOLATION && db.message().starts_with("no partition"))
    }

    /// The events insert of a batch expected to be all new found one stored already
    /// (`batch::INSERT_ALL_NEW_EVENTS`; SQLSTATE `TA001`, raised by
    /// `tally_expect_all_stored`, migration 12).
    fn is_stored_already(&self) -> bool {
        matches!(self, PostgresError::Db(err) if err.code().map(SqlState::code) == Some("TA001"))
    }

    /// Worth running the same transaction again.
    fn is_transient(&self) -> bool {
        matches!(
            self.code(),
            Some(&SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED)
        ) || self.is_missing_partition()
    }

    /// The database cannot be reached, refuses connections or is overloaded: the
    /// client may retry later.
    fn is_unavailable(&self) -> bool {
        match self {
            PostgresError::Pool(PoolError::Timeout(_) | PoolError::Closed) => true,
            PostgresError::Db(err) | PostgresError::Pool(PoolError::Backend(err)) => match err.code() {
                Some(code) => {
                    let code = code.code();
                    // 08: connection exception, 53: insufficient resources, 57P0x: the
                    // server is shutting down or starting, 28: the login was refused,
                    // 3D000: no such database; and conflicts that outlived the retries.
                    ["08", "53", "57P0", "28"].iter().any(|class| code.starts_with(class))
                        || ["3D000", "40001", "40P01", "55P03", "57014"].contains(&code)
                }
                None => {
                    err.is_closed()
                        || std::error::Error::source(err).is_some_and(|source| source.is::<std::io::Error>())
                        || err.to_string().starts_with("timeout")
                }
            },
            _ => false,
        }
    }
}

/// An error with every cause it wraps, for logs.
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl From<PostgresError> for StorageError {
    fn from(err: PostgresError) -> Self {
        let unavailable = err.is_unavailable();
        let text = match err {
            PostgresError::Db(err) => describe(&err),
            PostgresError::Pool(err) => describe(&err),
            PostgresError::Schema(text) | PostgresError::Data(text) => text,
        };
        if unavailable {
            StorageError::Unavailable(format!("postgresql: {text}"))
        } else {
            StorageError::Internal(format!("postgresql: {text}"))
        }
    }
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(err: tokio_postgres::Error) -> Self {
        PostgresError::from(err).into()
    }
}

impl From<PoolError> for StorageError {
    fn from(err: PoolError) -> Self {
        PostgresError::from(err).into()
    }
}

impl PostgresStorage {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`) and
    /// brings its schema up to date. Fails with [`StorageError::Unavailable`] when the
    /// database cannot be reached.
    pub async fn connect(url: &str) -> Result<PostgresStorage, StorageError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|err: tokio_postgres::Error| {
            StorageError::Internal(format!("database URL: {}", describe(&err)))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tally-serve");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|err| StorageError::Internal(format!("connection pool: {err}")))?;
        let store = PostgresStorage {
            pool,
            partitions: Mutex::default(),
        };
        let mut client = store.client().await?;
        migrations::migrate(&mut client).await?;
        Ok(store)
    }

    /// Brings the database at `url` to schema `version` and no further, so that tests
    /// can build a database as each earlier collector left it and upgrade it.
    #[doc(hidden)]
    pub async fn migrate_to(url: &str, version: i32) -> Result<(), StorageError> {
        let (mut client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|err| StorageError::from(PostgresError::from(err)))?;
        tokio::spawn(connection);
        migrations::migrate_to(&mut client, version).await?;
        Ok(())
    }

    /// The schema version this build writes.
    #[doc(hidden)]
    pub const SCHEMA_VERSION: i32 = migrations::LATEST_VERSION;

    async fn client(&self) -> Result<Object, PostgresError> {
        Ok(self.pool.get().await?)
    }

    fn known_partitions(&self) -> std::sync::MutexGuard<'_, HashSet<Month>> {
        self.partitions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One attempt at storing `batch`: its missing partitions first, then one
    /// transaction for the events and everything they change.
    async fn try_insert(&self, batch: &Batch, months: &BTreeSet<Month>) -> Result<Vec<bool>, PostgresError> {
        let mut client = self.client().await?;
        let missing: BTreeSet<Month> = {
            let known = self.known_partitions();
            months.iter().filter(|month| !known.contains(month)).copied().collect()
        };
        if !missing.is_empty() {
            partitions::ensure(&mut client, &missing).await?;
            self.known_partitions().extend(missing);
        }
        batch::write(client, batch).await
    }
}

/// One install's raw events.
async fn install_events(
    tx: &deadpool_postgres::Transaction<'_>,
    app: &str,
    install_id: &str,
) -> Result<Vec<Event>, PostgresError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE app = $1 AND install_id = $2");
    let rows = tx.query(&sql, &[&app, &install_id]).await?;
    rows.iter().map(event_from_row).collect()
}

/// One install's counts-only days, as they were uploaded.
async fn install_uploads(
    tx: &deadpool_postgres::Transaction<'_>,
    app: &str,
    install_id: &str,
) -> Result<Vec<DayCounts>, PostgresError> {
    let rows = tx
        .query(
            "SELECT day, counts FROM count_uploads WHERE app = $1 AND install_id = $2 ORDER BY day",
            &[&app, &install_id],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let counts: serde_json::Value = row.try_get(1)?;
            Ok(DayCounts {
                app: app.to_owned(),
                install_id: install_id.to_owned(),
                day: row.try_get(0)?,
                counts: serde_json::from_value(counts)
                    .map_err(|err| PostgresError::Data(format!("count_uploads.counts: {err}")))?,
            })
        })
        .collect()
}

/// Takes `rollups` back out of the hourly rollups, in key order; a row left with no
/// event goes. Shortest and longest durations cannot be taken back and are cleared
/// when no timed event is left.
async fn subtract_rollups(
    tx: &deadpool_postgres::Transaction<'_>,
    table: &'static str,
    rollups: &BTreeMap<RollupKey, Rollup>,
) -> Result<(), PostgresError> {
    let update = tx
        .prepare_cached(&format!(
            "UPDATE {table} AS m SET count = m.count - $8, duration_count = m.duration_count - $9, \
             duration_total_ms = m.duration_total_ms - $10, \
             duration_min_ms = CASE WHEN m.duration_count - $9 <= 0 THEN NULL ELSE m.duration_min_ms END, \
             duration_max_ms = CASE WHEN m.duration_count - $9 <= 0 THEN NULL ELSE m.duration_max_ms END, \
             histogram = ARRAY(SELECT greatest(coalesce(h.mine, 0) - coalesce(h.theirs, 0), 0) \
               FROM unnest(m.histogram, $11::int8[]) WITH ORDINALITY AS h(mine, theirs, bucket) ORDER BY h.bucket) \
             WHERE hour = $1 AND app = $2 AND type = $3 AND name = $4 AND command = $5 AND success = $6 \
               AND error_category = $7",
        ))
        .await?;
    let delete = tx
        .prepare_cached(&format!(
            "DELETE FROM {table} WHERE hour = $1 AND app = $2 AND type = $3 AND name = $4 AND command = $5 \
             AND success = $6 AND error_category = $7 AND count <= 0",
        ))
        .await?;
    for (key, rollup) in rollups {
        let success = key.success as i16;
        let hour = key.hour.to_string();
        let histogram: Vec<i64> = rollup
            .histogram
            .counts
            .iter()
            .map(|count| batch::saturating_i64(*count))
            .collect();
        tx.execute(
            &update,
            &[
                &hour,
                &key.app,
                &key.kind,
                &key.name,
                &key.command,
                &success,
                &key.error_category,
                &batch::saturating_i64(rollup.count),
                &batch::saturating_i64(rollup.duration_count),
                &batch::saturating_i64(rollup.duration_total_ms),
                &histogram,
            ],
        )
        .await?;
        tx.execute(
            &delete,
            &[
                &hour,
                &key.app,
                &key.kind,
                &key.name,
                &key.command,
                &success,
                &key.error_category,
            ],
        )
        .await?;
    }
    Ok(())
}

impl PostgresStorage {
    /// [`Storage::erase_install`] in one transaction.
    async fn try_erase(&self, app: &str, install_id: &str) -> Result<Erasure, PostgresError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Holding the install row keeps a concurrent batch of this install from adding
        // to what is being taken out.
        tx.execute(
            "SELECT 1 FROM installs WHERE app = $1 AND install_id = $2 FOR UPDATE",
            &[&app, &install_id],
        )
        .await?;
        let events = install_events(&tx, app, install_id).await?;
        let uploads = install_uploads(&tx, app, install_id).await?;
        let super::Contribution {
            rollups,
            totals,
            events: uncounted,
        } = super::contributions(&events, &uploads);
        subtract_rollups(&tx, "metrics", &rollups).await?;
        subtract_rollups(&tx, "metrics_daily", &super::activity::to_days(&rollups)).await?;
        for ((kind, name, success), count) in &totals {
            let success = *success as i16;
            tx.execute(
                "UPDATE totals SET count = count - $5 WHERE app = $1 AND type = $2 AND name = $3 AND success = $4",
                &[&app, kind, name, &success, &batch::saturating_i64(*count)],
            )
            .await?;
            tx.execute(
                "DELETE FROM totals WHERE app = $1 AND type = $2 AND name = $3 AND success = $4 AND count <= 0",
                &[&app, kind, name, &success],
            )
            .await?;
        }
        let deleted = tx
            .execute(
                "DELETE FROM events WHERE app = $1 AND install_id = $2",
                &[&app, &install_id],
            )
            .await?;
        for table in [
            "sessions",
            "installs",
            "group_installs",
            "install_days",
            "count_uploads",
            "install_keys",
            "install_nonces",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE app = $1 AND install_id = $2"),
                &[&app, &install_id],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Erasure {
            events: deleted,
            counted_days: uploads.len() as u64,
            uncounted,
        })
    }

    /// One install's day of counts in one transaction; see [`Storage::insert_counts`].
    async fn try_insert_counts(&self, counts: &DayCounts) -> Result<bool, PostgresError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let groups =
            serde_json::to_value(&counts.counts).map_err(|err| PostgresError::Data(format!("counts: {err}")))?;
        let events: u64 = counts.counts.iter().map(|group| group.count).sum();
        let claimed = tx
            .execute(
                "INSERT INTO count_uploads (app, install_id, day, events, counts, received_at) \
                 VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT DO NOTHING",
                &[
                    &counts.app,
                    &counts.install_id,
                    &counts.day,
                    &batch::saturating_i64(events),
                    &groups,
                ],
            )
            .await?;
        if claimed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let statements = batch::Statements::prepare(&tx).await?;
        let rollups = super::counts_rollups(counts);
        batch::add_rollups(&tx, &statements.rollups, &rollups).await?;
        // A day's counts land in its first hour: the per-day key already.
        batch::add_rollups(&tx, &statements.daily_rollups, &rollups).await?;
        let totals = super::counts_totals(counts)
            .into_iter()
            .map(|((kind, name, success), count)| {
                ((counts.app.as_str(), kind, name, success), batch::saturating_i64(count))
            })
            .collect();
        batch::add_totals(&tx, &statements.totals, &totals).await?;
        let seen = super::day_start(counts.day);
        let installs = BTreeMap::from([((counts.app.as_str(), counts.install_id.as_str()), (seen, seen))]);
        batch::see_installs(&tx, &statements.installs, &installs).await?;
        batch::add_group_installs(&tx, &statements.group_installs, &super::counts_groups(counts)).await?;
        let days = BTreeMap::from([(
            (counts.app.as_str(), counts.install_id.as_str(), counts.day),
            super::activity::COUNTS_HOURS,
        )]);
        activity::record_install_days(&tx, &statements.install_days, &days).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// How long to wait before attempt `attempt + 1`: growing, with jitter so that two
/// collectors that collided do not collide again.
fn backoff(attempt: u32) -> Duration {
    let jitter = getrandom::u32().unwrap_or(0) % 10;
    Duration::from_millis(u64::from(5 * 2u32.pow(attempt) + jitter))
}

/// `events` columns in the order [`event_from_row`] reads them.
const EVENT_COLUMNS: &str = "id, ts, app, app_version, source, type, name, command, session_id, install_id, \
     workspace, target_type, target_id, duration_ms, success, error_category, error_message, props";

fn event_from_row(row: &Row) -> Result<Event, PostgresError> {
    let source: &str = row.try_get(4)?;
    let props: Option<serde_json::Value> = row.try_get(17)?;
    Ok(Event {
        id: row.try_get(0)?,
        ts: row.try_get(1)?,
        app: row.try_get(2)?,
        app_version: row.try_get(3)?,
        source: source
            .parse()
            .map_err(|err: String| PostgresError::Data(format!("stored event: {err}")))?,
        kind: row.try_get(5)?,
        name: row.try_get(6)?,
        command: row.try_get(7)?,
        session_id: row.try_get(8)?,
        install_id: row.try_get(9)?,
        workspace: row.try_get(10)?,
        target_type: row.try_get(11)?,
        target_id: row.try_get(12)?,
        duration_ms: row.try_get::<_, Option<i64>>(13)?.map(|d| d.max(0) as u64),
        success: row.try_get(14)?,
        error_category: row.try_get(15)?,
        error_message: row.try_get(16)?,
        props: match props {
            Some(value) => serde_json::from_value(value)
                .map_err(|err| PostgresError::Data(format!("stored event props: {err}")))?,
            None => tally_core::Props::new(),
        },
    })
}

/// Reads a rollup row selected as hour, app, type, name, command, success, error
/// category, count, duration count, total, minimum, maximum, histogram (or NULL when
/// the row has no durations).
fn rollup_from_row(row: &Row) -> Result<(RollupKey, Rollup), PostgresError> {
    let hour: &str = row.try_get(0)?;
    let key = RollupKey {
        hour: hour
            .parse()
            .map_err(|err: tally_core::time::InvalidHour| PostgresError::Data(err.to_string()))?,
        app: row.try_get(1)?,
        kind: row.try_get(2)?,
        name: row.try_get(3)?,
        command: row.try_get(4)?,
        success: row.try_get::<_, i16>(5)?.into(),
        error_category: row.try_get(6)?,
    };
    // NULL for a row without durations, whose histogram is empty by construction: not
    // sending its buckets keeps a month of rollups small on the wire.
    let counts: Vec<i64> = row
        .try_get::<_, Option<Vec<i64>>>(12)?
        .unwrap_or_else(|| vec![0; tally_store::histogram::BUCKETS]);
    let mut histogram = Histogram::default();
    if counts.len() != histogram.counts.len() {
        return Err(PostgresError::Data(format!(
            "metrics.histogram has {} buckets, not {}",
            counts.len(),
            histogram.counts.len()
        )));
    }
    for (slot, count) in histogram.counts.iter_mut().zip(counts) {
        *slot = count.max(0) as u64;
    }
    let rollup = Rollup {
        count: row.try_get::<_, i64>(7)?.max(0) as u64,
        duration_count: row.try_get::<_, i64>(8)?.max(0) as u64,
        duration_total_ms: row.try_get::<_, i64>(9)?.max(0) as u64,
        duration_min_ms: row.try_get::<_, Option<i64>>(10)?.map(|v| v.max(0) as u64),
        duration_max_ms: row.try_get::<_, Option<i64>>(11)?.map(|v| v.max(0) as u64),
        histogram,
    };
    Ok((key, rollup))
}

const KEY_COLUMNS: &str = "id, app, role, secret_hash, label, created_at, revoked_at";

fn key_from_row(row: &Row) -> Result<ApiKey, PostgresError> {
    let role: &str = row.try_get(2)?;
    let hash: &[u8] = row.try_get(3)?;
    Ok(ApiKey {
        id: row.try_get(0)?,
        app: row.try_get(1)?,
        role: role.parse().map_err(PostgresError::Data)?,
        secret_hash: hash
            .try_into()
            .map_err(|_| PostgresError::Data("api_keys.secret_hash is not 32 bytes".into()))?,
        label: row.try_get(4)?,
        created_at: row.try_get(5)?,
        revoked_at: row.try_get(6)?,
    })
}

/// Times are kept to the millisecond, like everywhere else in Tally.
fn millis(ts: Timestamp) -> Timestamp {
    tally_core::time::truncate_to_millis(ts)
}

/// `ts`, or the start of year 1 when it is earlier: an open start such as
/// [`Period::ALL`]'s (year -9999) is before PostgreSQL's `timestamptz` range (which
/// begins in 4714 BC) and would fail the query. No stored time is that early, so no row
/// is left out.
fn representable(ts: Timestamp) -> Timestamp {
    const EARLIEST: Timestamp = Timestamp::constant(-62_135_596_800, 0);
    ts.max(EARLIEST)
}

/// `period` with both ends [`representable`].
fn representable_period(period: &Period) -> Period {
    Period {
        from: representable(period.from),
        to: representable(period.to),
    }
}

#[async_trait]
impl Storage for PostgresStorage {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn insert(&self, events: Vec<Event>) -> Result<Vec<bool>, StorageError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let batch = Batch::new(events);
        let months = batch.months();
        let mut attempt = 0;
        loop {
            match self.try_insert(&batch, &months).await {
                Ok(stored) => return Ok(stored),
                Err(err) if err.is_transient() && attempt + 1 < INSERT_ATTEMPTS => {
                    if err.is_missing_partition() {
                        self.known_partitions().clear();
                    }
                    tracing::debug!(attempt, error = ?err, "retrying a batch after a conflict");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    async fn rollups(&self, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StorageError> {
        let (from, to) = period.hours();
        let (from, to) = (from.to_string(), to.to_string());
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT hour, app, type, name, command, success, error_category, count, duration_count, \
                 duration_total_ms, duration_min_ms, duration_max_ms, \
                 CASE WHEN duration_count > 0 THEN histogram END \
                 FROM metrics WHERE app = $1 AND hour >= $2 AND hour < $3 \
                 ORDER BY hour, type, name, command, success, error_category",
            )
            .await?;
        let rows = client.query(&statement, &[&app, &from, &to]).await?;
        Ok(rows.iter().map(rollup_from_row).collect::<Result<_, _>>()?)
    }

    async fn daily_rollups(&self, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StorageError> {
        let mut client = self.client().await?;
        Ok(daily::read(&mut client, app, &representable_period(period)).await?)
    }

    async fn active_installs_in(&self, app: &str, windows: &[Period]) -> Result<Vec<u64>, StorageError> {
        let windows: Vec<_> = windows
            .iter()
            .map(|window| super::activity::ActivityWindow::of(&representable_period(window)))
            .collect();
        let mut client = self.client().await?;
        Ok(activity::count_installs_in(&mut client, app, &windows).await?)
    }

    async fn sessions(&self, app: &str, period: &Period) -> Result<SessionSummary, StorageError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT count(*), avg(duration_ms)::float8 FROM sessions \
                 WHERE app = $1 AND started_at >= $2 AND started_at < $3",
            )
            .await?;
        let Period { from, to } = representable_period(period);
        let row = client.query_one(&statement, &[&app, &from, &to]).await?;
        Ok(SessionSummary {
            count: row.try_get::<_, i64>(0)? as u64,
            avg_duration_ms: row.try_get(1)?,
        })
    }

    async fn active_installs(&self, since: &[Timestamp]) -> Result<Vec<(String, Vec<u64>)>, StorageError> {
        let client = self.client().await?;
        // One index range count per app and start, like the embedded backend, rather than
        // a join that would read every install row for every start.
        let statement = client
            .prepare_cached(
                "SELECT apps.app, ARRAY(\
                   SELECT (SELECT count(*) FROM installs i WHERE i.app = apps.app AND i.last_seen >= s.since) \
                   FROM unnest($1::timestamptz[]) WITH ORDINALITY AS s(since, position) ORDER BY s.position) \
                 FROM (SELECT DISTINCT app FROM installs) AS apps ORDER BY apps.app",
            )
            .await?;
        let rows = client.query(&statement, &[&since]).await?;
        let active = rows
            .iter()
            .map(|row| {
                let counts: Vec<i64> = row.try_get(1)?;
                Ok((row.try_get(0)?, counts.into_iter().map(|count| count as u64).collect()))
            })
            .collect::<Result<_, tokio_postgres::Error>>()?;
        Ok(active)
    }

    async fn named_counts(&self, name: &str, from_hours: &[HourKey]) -> Result<Vec<(String, Vec<u64>)>, StorageError> {
        if from_hours.is_empty() {
            return Ok(Vec::new());
        }
        let from_hours: Vec<String> = from_hours.iter().map(HourKey::to_string).collect();
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT m.app, s.position, sum(m.count)::bigint \
                 FROM metrics m JOIN unnest($2::text[]) WITH ORDINALITY AS s(since, position) ON m.hour >= s.since \
                 WHERE m.name = $1 GROUP BY m.app, s.position ORDER BY m.app, s.position",
            )
            .await?;
        let rows = client.query(&statement, &[&name, &from_hours]).await?;
        let mut counts: Vec<(String, Vec<u64>)> = Vec::new();
        for row in &rows {
            let app: String = row.try_get(0)?;
            let position: i64 = row.try_get(1)?;
            let count: i64 = row.try_get(2)?;
            if counts.last().is_none_or(|(last, _)| *last != app) {
                counts.push((app, vec![0; from_hours.len()]));
            }
            if let Some((_, app_counts)) = counts.last_mut()
                && let Some(slot) = usize::try_from(position - 1)
                    .ok()
                    .and_then(|index| app_counts.get_mut(index))
            {
                *slot = count as u64;
            }
        }
        Ok(counts)
    }

    async fn insert_counts(&self, counts: &DayCounts) -> Result<bool, StorageError> {
        let mut attempt = 0;
        loop {
            match self.try_insert_counts(counts).await {
                Ok(stored) => return Ok(stored),
                Err(err) if err.is_transient() && attempt + 1 < INSERT_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    async fn counts_summary(&self, app: &str, from: Date, to: Date) -> Result<CountsSummary, StorageError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT count(*), count(DISTINCT install_id), coalesce(sum(events), 0)::bigint FROM count_uploads \
                 WHERE app = $1 AND day >= $2 AND day < $3",
            )
            .await?;
        let row = client.query_one(&statement, &[&app, &from, &to]).await?;
        Ok(CountsSummary {
            uploads: row.try_get::<_, i64>(0)? as u64,
            installs: row.try_get::<_, i64>(1)? as u64,
            events: row.try_get::<_, i64>(2)? as u64,
        })
    }

    async fn group_installs(&self, app: Option<&str>) -> Result<Vec<GroupInstalls>, StorageError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT app, type, name, command, least(installs::int8, $2) FROM group_install_counts \
                 WHERE ($1::text IS NULL OR app = $1) AND installs > 0 \
                 ORDER BY app, type, name, command",
            )
            .await?;
        let cap = GROUP_INSTALLS_CAP as i64;
        let rows = client.query(&statement, &[&app, &cap]).await?;
        let groups = rows
            .iter()
            .map(|row| {
                Ok(GroupInstalls {
                    app: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    name: row.try_get(2)?,
                    command: row.try_get(3)?,
                    installs: row.try_get::<_, i64>(4)? as u64,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()?;
        Ok(groups)
    }

    async fn totals(&self) -> Result<Vec<TotalRow>, StorageError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT app, type, name, success, count FROM totals ORDER BY app, type, name, success")
            .await?;
        let rows = client.query(&statement, &[]).await?;
        let totals = rows
            .iter()
            .map(|row| {
                Ok(TotalRow {
                    app: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    name: row.try_get(2)?,
                    success: row.try_get::<_, i16>(3)?.into(),
                    count: row.try_get::<_, i64>(4)? as u64,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()?;
        Ok(totals)
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StorageError> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE app = $1");
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&query.app];
        for (column, value) in query.equal_to() {
            params.push(value);
            sql.push_str(&format!(" AND {column} = ${}", params.len()));
        }
        let from = representable(query.period.from);
        if query.period.from != Period::ALL.from {
            params.push(&from);
            sql.push_str(&format!(" AND ts >= ${}", params.len()));
        }
        if query.period.to != Period::ALL.to {
            params.push(&query.period.to);
            sql.push_str(&format!(" AND ts < ${}", params.len()));
        }
        if let Some((ts, id)) = &query.after {
            params.push(ts);
            params.push(id);
            sql.push_str(&format!(" AND (ts, id) > (${}, ${})", params.len() - 1, params.len()));
        }
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        params.push(&limit);
        sql.push_str(&format!(" ORDER BY ts, id LIMIT ${}", params.len()));
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await?;
        let rows = client.query(&statement, &params).await?;
        Ok(rows.iter().map(event_from_row).collect::<Result<_, _>>()?)
    }

    async fn erase_install(&self, app: &str, install_id: &str) -> Result<Erasure, StorageError> {
        let mut attempt = 0;
        loop {
            match self.try_erase(app, install_id).await {
                Ok(erasure) => return Ok(erasure),
                Err(err) if err.is_transient() && attempt + 1 < INSERT_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    async fn register_install_key(
        &self,
        app: &str,
        install_id: &str,
        key_hash: [u8; 32],
    ) -> Result<KeyRegistration, StorageError> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO install_keys (app, install_id, key_hash, registered_at) VALUES ($1, $2, $3, now()) \
                 ON CONFLICT DO NOTHING",
                &[&app, &install_id, &key_hash.as_slice()],
            )
            .await?;
        if inserted > 0 {
            return Ok(KeyRegistration::Registered);
        }
        Ok(match self.install_key(app, install_id).await? {
            Some(stored) if stored == key_hash => KeyRegistration::Unchanged,
            _ => KeyRegistration::Conflict,
        })
    }

    async fn install_key(&self, app: &str, install_id: &str) -> Result<Option<[u8; 32]>, StorageError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT key_hash FROM install_keys WHERE app = $1 AND install_id = $2",
                &[&app, &install_id],
            )
            .await?;
        row.map(|row| {
            let bytes: Vec<u8> = row.try_get(0)?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| StorageError::Internal("install_keys.key_hash is not 32 bytes".into()))
        })
        .transpose()
    }

    async fn spend_nonce(
        &self,
        app: &str,
        install_id: &str,
        nonce: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM install_nonces WHERE expires_at < $1", &[&now])
            .await?;
        let inserted = client
            .execute(
                "INSERT INTO install_nonces (app, install_id, nonce, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[&app, &install_id, &nonce, &expires],
            )
            .await?;
        Ok(inserted > 0)
    }

    async fn install_summary(&self, app: &str, install_id: &str) -> Result<InstallSummary, StorageError> {
        let mut client = self.client().await?;
        // One snapshot for the three reads.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let events = install_events(&tx, app, install_id).await?;
        let uploads = install_uploads(&tx, app, install_id).await?;
        let seen = tx
            .query_opt(
                "SELECT first_seen, last_seen FROM installs WHERE app = $1 AND install_id = $2",
                &[&app, &install_id],
            )
            .await?;
        tx.commit().await?;
        let (first_seen, last_seen) = match seen {
            Some(row) => (Some(row.try_get(0)?), Some(row.try_get(1)?)),
            None => (None, None),
        };
        Ok(super::summarize(&events, &uploads, first_seen, last_seen))
    }

    async fn expire(&self, before: Timestamp) -> Result<u64, StorageError> {
        let mut client = self.client().await?;
        partitions::detach_before(&mut client, before).await?;
        self.known_partitions().clear();
        let mut deleted = partitions::drop_detached(&mut client).await?;
        // What is left older than `before` lies in the partition of its month.
        let tx = client.transaction().await?;
        deleted += tx.execute("DELETE FROM events WHERE ts < $1", &[&before]).await?;
        tx.execute("DELETE FROM sessions WHERE ended_at < $1", &[&before])
            .await?;
        // An install's group memberships go with its install row.
        tx.execute(
            "DELETE FROM group_installs AS g USING installs AS i \
             WHERE i.app = g.app AND i.install_id = g.install_id AND i.last_seen < $1",
            &[&before],
        )
        .await?;
        // So does its daily activity: the days before the cutoff's go by date below, and
        // an expiring install's last ones can only be on the cutoff's day. `install_days`
        // then never names an install the installs table no longer has
        // (`ActivityWindow::answered_by_last_seen`).
        tx.execute(
            "DELETE FROM install_days AS d USING installs AS i \
             WHERE i.app = d.app AND i.install_id = d.install_id AND i.last_seen < $1 \
               AND d.day = ($1 AT TIME ZONE 'UTC')::date",
            &[&before],
        )
        .await?;
        tx.execute("DELETE FROM installs WHERE last_seen < $1", &[&before])
            .await?;
        tx.execute(
            "DELETE FROM count_uploads WHERE day < ($1 AT TIME ZONE 'UTC')::date",
            &[&before],
        )
        .await?;
        tx.execute(
            "DELETE FROM install_days WHERE day < ($1 AT TIME ZONE 'UTC')::date",
            &[&before],
        )
        .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn put_key(&self, key: &ApiKey) -> Result<(), StorageError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO api_keys (id, app, role, secret_hash, label, created_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &key.id,
                    &key.app,
                    &key.role.as_str(),
                    &&key.secret_hash[..],
                    &key.label,
                    &millis(key.created_at),
                    &key.revoked_at.map(millis),
                ],
            )
            .await?;
        Ok(())
    }

    async fn key(&self, id: &str) -> Result<Option<ApiKey>, StorageError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
            .await?;
        let row = client.query_opt(&statement, &[&id]).await?;
        Ok(row.as_ref().map(key_from_row).transpose()?)
    }

    async fn keys(&self) -> Result<Vec<ApiKey>, StorageError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY app, created_at, id"
            ))
            .await?;
        let rows = client.query(&statement, &[]).await?;
        Ok(rows.iter().map(key_from_row).collect::<Result<_, _>>()?)
    }

    async fn revoke_key(&self, id: &str, at: Timestamp) -> Result<bool, StorageError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
                &[&id, &millis(at)],
            )
            .await?;
        Ok(changed > 0)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }
}
