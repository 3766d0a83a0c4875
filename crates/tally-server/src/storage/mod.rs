//! The one storage interface the collector needs, and its two backends.
//!
//! Handlers hold an `Arc<dyn Storage>`; [`sqlite::SqliteStorage`] (embedded, the default,
//! built on `tally-store`) and [`postgres::PostgresStorage`] (production, several
//! collectors may share one database) implement it. Both promise the same behaviour,
//! and one contract test suite runs against both.
//!
//! Every write of events happens in [`Storage::insert`], one transaction per call, which
//! also keeps the sessions, hourly rollups, installs and lifetime totals in step, so
//! the read side never scans raw events for aggregates.

pub mod activity;
pub mod postgres;
pub mod sqlite;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use jiff::Timestamp;
use jiff::civil::Date;
use tally_core::Event;
use tally_core::counts::DayCounts;
use tally_core::time::{HourKey, Period};
use tally_store::histogram::Histogram;
/// The collector reads the store's rollup rows, session summaries and event pages as
/// the store defines them; both backends answer in these types.
pub use tally_store::read::EventQuery;
use tally_store::rollup::{Rollup, RollupKey};
pub use tally_store::sessions::SessionSummary;

/// Why storage could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database cannot be reached or is overloaded; the client may retry (503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else; logged, never shown to clients in detail (500).
    #[error("storage failed: {0}")]
    Internal(String),
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Write events of its app.
    Ingest,
    /// Read and erase its app's data.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ingest" => Ok(Role::Ingest),
            "admin" => Ok(Role::Admin),
            other => Err(format!("role: must be ingest or admin (got {other:?})")),
        }
    }
}

/// A stored API key. The secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The public part of the key, used to find it.
    pub id: String,
    /// The only app whose data the key reads or writes.
    pub app: String,
    /// What it may do with that app's data.
    pub role: Role,
    /// SHA-256 of the whole key.
    pub secret_hash: [u8; 32],
    /// A note for people (`ci`, `web frontend`).
    pub label: String,
    /// When it was made; `keys list` orders by it.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<Timestamp>,
}

/// Events of one app, type, name and outcome since the store began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalRow {
    /// The app that sent the events.
    pub app: String,
    /// The event type (`command`, `feature`, `error`, ...).
    pub kind: String,
    /// The event name within its type.
    pub name: String,
    /// 1 success, 0 failure, -1 not reported.
    pub success: i64,
    /// Events ever stored under these four, never lowered by retention or erasure.
    pub count: u64,
}

/// One aggregate group (an event name, or a command of one) and how many distinct
/// installs it has been seen from, counted up to [`GROUP_INSTALLS_CAP`].
///
/// Every stored event belongs to its name's group (`command` is `""`) and, when it
/// names a command, to that command's group too. Small-count suppression reads these
/// instead of scanning raw events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstalls {
    /// The app.
    pub app: String,
    /// Event type.
    pub kind: String,
    /// Event name.
    pub name: String,
    /// The command, `""` for the name's own group.
    pub command: String,
    /// Distinct installs seen in the group, at most [`GROUP_INSTALLS_CAP`].
    pub installs: u64,
}

/// Installs remembered per group. The membership table holds at most this many rows
/// per group, so it grows with the number of groups, never with events or installs;
/// `min_installs` may not exceed it.
pub const GROUP_INSTALLS_CAP: u64 = 100;

/// Each install's first and last sighting among `events`, by (app, install id): what a
/// batch widens in the installs table, on both backends.
pub fn install_sightings<'e>(events: &[&'e Event]) -> BTreeMap<(&'e str, &'e str), (Timestamp, Timestamp)> {
    let mut installs: BTreeMap<(&str, &str), (Timestamp, Timestamp)> = BTreeMap::new();
    for event in events {
        let seen = installs
            .entry((&event.app, &event.install_id))
            .or_insert((event.ts, event.ts));
        seen.0 = seen.0.min(event.ts);
        seen.1 = seen.1.max(event.ts);
    }
    installs
}

/// How many of `events` each lifetime total gains, by (app, type, name, outcome: 1
/// success, 0 failure, -1 not reported), on both backends.
pub fn total_counts<'e>(events: &[&'e Event]) -> BTreeMap<(&'e str, &'e str, &'e str, i64), i64> {
    let mut totals = BTreeMap::new();
    for event in events {
        *totals
            .entry((
                event.app.as_str(),
                event.kind.as_str(),
                event.name.as_str(),
                event.success.map_or(-1, i64::from),
            ))
            .or_default() += 1;
    }
    totals
}

/// The groups `event` belongs to, as (app, type, name, command, install id): its name's
/// group, and its command's when it names one. Both backends keep membership by this.
pub fn groups_of(event: &Event) -> impl Iterator<Item = (&str, &str, &str, &str, &str)> {
    let name = (
        event.app.as_str(),
        event.kind.as_str(),
        event.name.as_str(),
        "",
        event.install_id.as_str(),
    );
    let command = event
        .command
        .as_deref()
        .filter(|command| !command.is_empty())
        .map(|command| (name.0, name.1, name.2, command, name.4));
    std::iter::once(name).chain(command)
}

/// The counts-only uploads of one app in a period: days and installs they came from and
/// the events they counted. `/v1/stats` reports it so owners know raw events are absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CountsSummary {
    /// Uploads (one per install and day).
    pub uploads: u64,
    /// Distinct installs among them.
    pub installs: u64,
    /// Events they counted.
    pub events: u64,
}

/// Where one day's counts go in the hourly rollups: the day's first hour.
pub fn counts_hour(day: Date) -> HourKey {
    HourKey::of(day_start(day))
}

/// The rollup rows one day's counts add, in key order.
pub fn counts_rollups(counts: &DayCounts) -> BTreeMap<RollupKey, Rollup> {
    let mut rollups: BTreeMap<RollupKey, Rollup> = BTreeMap::new();
    for group in &counts.counts {
        let key = RollupKey {
            hour: counts_hour(counts.day),
            app: counts.app.clone(),
            kind: group.kind.clone(),
            name: group.name.clone(),
            command: group.command.clone().unwrap_or_default(),
            success: group.success.map_or(-1, i64::from),
            error_category: group.error_category.clone().unwrap_or_default(),
        };
        let mut histogram = Histogram::default();
        for (bucket, count) in histogram.counts.iter_mut().zip(&group.histogram) {
            *bucket = *count;
        }
        rollups.entry(key).or_default().merge(&Rollup {
            count: group.count,
            duration_count: group.duration_count,
            duration_total_ms: group.duration_total_ms,
            duration_min_ms: None,
            duration_max_ms: None,
            histogram,
        });
    }
    rollups
}

/// The groups one day's counts put their install in, as [`groups_of`] gives them.
pub fn counts_groups(counts: &DayCounts) -> BTreeSet<(&str, &str, &str, &str, &str)> {
    let mut groups = BTreeSet::new();
    for group in &counts.counts {
        let name = (
            counts.app.as_str(),
            group.kind.as_str(),
            group.name.as_str(),
            "",
            counts.install_id.as_str(),
        );
        groups.insert(name);
        if let Some(command) = group.command.as_deref().filter(|command| !command.is_empty()) {
            groups.insert((name.0, name.1, name.2, command, name.4));
        }
    }
    groups
}

/// The events one day's counts add to the lifetime totals, per (type, name, outcome).
pub fn counts_totals(counts: &DayCounts) -> BTreeMap<(&str, &str, i64), u64> {
    let mut totals = BTreeMap::new();
    for group in &counts.counts {
        *totals
            .entry((
                group.kind.as_str(),
                group.name.as_str(),
                group.success.map_or(-1, i64::from),
            ))
            .or_default() += group.count;
    }
    totals
}

/// Midnight UTC at the start of `day`: an install seen through counts is seen that day.
pub fn day_start(day: Date) -> Timestamp {
    day.at(0, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|zoned| zoned.timestamp())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// What registering an install's key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRegistration {
    /// The install had no key; this one is now its key.
    Registered,
    /// The install already had this key.
    Unchanged,
    /// The install has another key, which stays.
    Conflict,
}

/// What the collector holds about one install, for the install itself to see.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstallSummary {
    /// Raw events stored.
    pub raw_events: u64,
    /// Days received as counts only, and the events they counted.
    pub counted_days: u64,
    /// Events in those days.
    pub counted_events: u64,
    /// First and last time seen (events, or the start of a counted day).
    pub first_seen: Option<Timestamp>,
    /// The last time seen.
    pub last_seen: Option<Timestamp>,
    /// Per (type, name), raw and counted events together, in key order.
    pub by_name: Vec<(String, String, u64)>,
}

/// What erasing one install took out of every table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Erasure {
    /// Raw events deleted.
    pub events: u64,
    /// Counts-only days deleted.
    pub counted_days: u64,
    /// Events taken back out of the rollups and totals (raw and counted).
    pub uncounted: u64,
}

/// What one install's stored events and counts-only days added to the aggregates, so
/// erasing the install can take it back out.
#[derive(Debug, Default)]
pub struct Contribution {
    /// Per rollup row.
    pub rollups: BTreeMap<RollupKey, Rollup>,
    /// Per (type, name, outcome) of the lifetime totals.
    pub totals: BTreeMap<(String, String, i64), u64>,
    /// Events in all.
    pub events: u64,
}

/// The [`Contribution`] of `events` and `uploads` of one install.
pub fn contributions(events: &[Event], uploads: &[DayCounts]) -> Contribution {
    let mut rollups: BTreeMap<RollupKey, Rollup> = BTreeMap::new();
    let mut totals: BTreeMap<(String, String, i64), u64> = BTreeMap::new();
    let mut count = 0;
    for event in events {
        rollups.entry(RollupKey::of(event)).or_default().add(event.duration_ms);
        *totals
            .entry((
                event.kind.clone(),
                event.name.clone(),
                event.success.map_or(-1, i64::from),
            ))
            .or_default() += 1;
        count += 1;
    }
    for upload in uploads {
        for (key, rollup) in counts_rollups(upload) {
            rollups.entry(key).or_default().merge(&rollup);
        }
        for ((kind, name, success), events) in counts_totals(upload) {
            *totals.entry((kind.to_owned(), name.to_owned(), success)).or_default() += events;
            count += events;
        }
    }
    Contribution {
        rollups,
        totals,
        events: count,
    }
}

/// The summary of one install from its raw events and counts-only days.
pub fn summarize(
    events: &[Event],
    uploads: &[DayCounts],
    first_seen: Option<Timestamp>,
    last_seen: Option<Timestamp>,
) -> InstallSummary {
    let mut by_name: BTreeMap<(String, String), u64> = BTreeMap::new();
    for event in events {
        *by_name.entry((event.kind.clone(), event.name.clone())).or_default() += 1;
    }
    let mut counted_events = 0;
    for upload in uploads {
        for group in &upload.counts {
            *by_name.entry((group.kind.clone(), group.name.clone())).or_default() += group.count;
            counted_events += group.count;
        }
    }
    InstallSummary {
        raw_events: events.len() as u64,
        counted_days: uploads.len() as u64,
        counted_events,
        first_seen,
        last_seen,
        by_name: by_name
            .into_iter()
            .map(|((kind, name), count)| (kind, name, count))
            .collect(),
    }
}

/// The storage a collector runs on.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Which backend, for logs and `/readyz`.
    fn backend(&self) -> &'static str;

    /// Commits `events` (already validated) in one transaction, with the sessions,
    /// hourly rollups, installs (`first_seen`, `last_seen`) and lifetime totals they
    /// change. An event whose id and `ts` are already stored is skipped. Returns, per
    /// event in order, whether it was newly stored. Returning `Ok` means committed.
    async fn insert(&self, events: Vec<Event>) -> Result<Vec<bool>, StorageError>;

    /// Commits one install's counts of one day in one transaction, folded into the
    /// hourly rollups (the day's first hour), lifetime totals, installs and group
    /// membership as events are. Returns false, changing nothing, when that install's
    /// day is already stored: a resend adds nothing and replaces nothing.
    async fn insert_counts(&self, counts: &DayCounts) -> Result<bool, StorageError>;

    /// The counts-only uploads of `app` for the days `from <= day < to`.
    async fn counts_summary(&self, app: &str, from: Date, to: Date) -> Result<CountsSummary, StorageError>;

    /// Rollup rows of `app` for every hour `period` overlaps, in key order.
    async fn rollups(&self, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StorageError>;

    /// Rollup rows of `app` for every hour `period` overlaps, summed per UTC day and
    /// keyed by the day's first hour, in key order: [`activity::sum_by_day`] of
    /// [`Storage::rollups`] (the shortest and longest durations aside once an erasure
    /// took some out). The collector's backends read the whole days from their per-day
    /// rollups and only the partial end days from the hourly rows
    /// ([`activity::DailyRead`]), so a month is a few thousand rows instead of every
    /// hour's.
    async fn daily_rollups(&self, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StorageError>;

    /// For each of `windows`, in the same order: how many distinct installs of `app` were
    /// active in it, from the per-day install activity (see [`activity`]): exact for
    /// windows of whole hours, and counting every hour a window overlaps otherwise.
    async fn active_installs_in(&self, app: &str, windows: &[Period]) -> Result<Vec<u64>, StorageError>;

    /// Sessions of `app` that started in `period`.
    async fn sessions(&self, app: &str, period: &Period) -> Result<SessionSummary, StorageError>;

    /// For each app that has installs: how many were last seen at or after each of
    /// `since`, in the same order.
    async fn active_installs(&self, since: &[Timestamp]) -> Result<Vec<(String, Vec<u64>)>, StorageError>;

    /// For each app: how many events named `name` its rollups count from each of
    /// `from_hours` on, in the same order. One aggregate read, for `/metrics`.
    async fn named_counts(&self, name: &str, from_hours: &[HourKey]) -> Result<Vec<(String, Vec<u64>)>, StorageError>;

    /// Every group of `app` (of every app when `None`) with its distinct installs, in
    /// key order. Reads the bounded membership table [`Storage::insert`] keeps, never raw
    /// events.
    async fn group_installs(&self, app: Option<&str>) -> Result<Vec<GroupInstalls>, StorageError>;

    /// Lifetime totals of every app.
    async fn totals(&self) -> Result<Vec<TotalRow>, StorageError>;

    /// Events matching `query`, ordered by (`ts`, `id`).
    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StorageError>;

    /// Erases one install in one transaction: takes what its stored raw events and
    /// counts-only days added back out of the rollups and lifetime totals, then deletes
    /// its raw events, sessions, counts-only days, group memberships, daily activity,
    /// key, spent nonces and install row. Events already expired were counted without an install and stay.
    async fn erase_install(&self, app: &str, install_id: &str) -> Result<Erasure, StorageError>;

    /// Registers `key_hash` (SHA-256 of the install's public key) for an install that
    /// has none; an install's key never changes until it is erased.
    async fn register_install_key(
        &self,
        app: &str,
        install_id: &str,
        key_hash: [u8; 32],
    ) -> Result<KeyRegistration, StorageError>;

    /// The registered key hash of an install.
    async fn install_key(&self, app: &str, install_id: &str) -> Result<Option<[u8; 32]>, StorageError>;

    /// Records a proof's nonce as spent until `expires`; false when it already was (a
    /// replay). Nonces past their expiry at `now` are forgotten.
    async fn spend_nonce(
        &self,
        app: &str,
        install_id: &str,
        nonce: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StorageError>;

    /// What the collector holds about one install.
    async fn install_summary(&self, app: &str, install_id: &str) -> Result<InstallSummary, StorageError>;

    /// Deletes raw events, sessions, counts uploads, install rows and the daily install
    /// activity of days older than `before`; rollups and totals stay. Returns the events deleted.
    async fn expire(&self, before: Timestamp) -> Result<u64, StorageError>;

    /// Stores a new key.
    async fn put_key(&self, key: &ApiKey) -> Result<(), StorageError>;

    /// The key with this id, revoked or not.
    async fn key(&self, id: &str) -> Result<Option<ApiKey>, StorageError>;

    /// Every key.
    async fn keys(&self) -> Result<Vec<ApiKey>, StorageError>;

    /// Marks a key revoked; false when there is no such key.
    async fn revoke_key(&self, id: &str, at: Timestamp) -> Result<bool, StorageError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StorageError>;
}

/// Opens the store `target` names: a `postgres://` or `postgresql://` URL, or a SQLite
/// file path.
pub async fn open(target: &str) -> Result<std::sync::Arc<dyn Storage>, StorageError> {
    if target.starts_with("postgres://") || target.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(postgres::PostgresStorage::connect(target).await?))
    } else {
        Ok(std::sync::Arc::new(sqlite::SqliteStorage::open(std::path::Path::new(
            target,
        ))?))
    }
}
