//! The storage contract: every promise of the `Storage` trait, checked the same way
//! against both backends.
//!
//! Each check is one async function. [`contract!`] runs it once on SQLite (a file in a
//! temporary directory) and once on PostgreSQL (a fresh database of its own, see
//! `support/postgres.rs`). Checks that need a second collector on the same data, or to
//! look at rows the trait does not return (session counters, first-seen times,
//! histograms), take the whole [`Backend`]; the rest take just the store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use jiff::{Timestamp, ToSpan};
use tally_core::counts::{DayCounts, GroupCount};
use tally_core::time::{HourKey, Period};
use tally_core::{Event, PropValue, Source};
use tally_server::storage::activity::sum_by_day;
use tally_server::storage::postgres::PostgresStorage;
use tally_server::storage::sqlite::SqliteStorage;
use tally_server::storage::{ApiKey, EventQuery, Role, Storage, StorageError, TotalRow};
use uuid::Uuid;

use crate::support::postgres::TestDatabase;

/// Runs each listed check on both backends, as `sqlite::NAME` and `postgres::NAME`.
macro_rules! contract {
    (store: [$($store_check:ident),* $(,)?], backend: [$($backend_check:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $store_check() {
                    let backend = super::Backend::sqlite();
                    super::$store_check(backend.store()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $backend_check() {
                    let backend = super::Backend::sqlite();
                    super::$backend_check(&backend).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $store_check() {
                    let Some(backend) = super::Backend::postgres().await else { return };
                    super::$store_check(backend.store()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $backend_check() {
                    let Some(backend) = super::Backend::postgres().await else { return };
                    super::$backend_check(&backend).await;
                }
            )*
        }
    };
}

contract! {
    store: [
        an_empty_batch_changes_nothing,
        a_repeated_batch_is_stored_once,
        events_round_trip_and_page_in_order_across_identical_timestamps,
        event_filters_select_exactly_the_matching_events,
        rollups_and_totals_count_each_event_once,
        daily_rollups_equal_the_hourly_rows_summed_per_day,
        active_installs_in_counts_each_install_once_per_window,
        erase_install_removes_one_install_and_what_it_added,
        events_spanning_three_months_are_stored_and_read_back,
        keys_round_trip_and_revocation_keeps_the_first_time,
        ping_answers,
        concurrent_batches_with_overlapping_events_store_and_count_each_once,
    ],
    backend: [
        two_collectors_inserting_the_same_events_store_each_once,
        session_counters_count_new_events_only,
        rollup_histograms_and_duration_bounds_merge_across_batches,
        installs_keep_first_and_last_seen,
        expire_drops_old_months_and_trims_the_boundary_month,
        a_batch_the_database_refuses_changes_nothing,
        batches_resending_stored_events_count_each_event_once,
    ],
}

/// A store under test, with a way to open a second collector on the same data and to
/// read the rows the trait does not return.
enum Backend {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
        store: Arc<dyn Storage>,
    },
    Postgres {
        database: TestDatabase,
        store: Arc<dyn Storage>,
    },
}

/// What [`Backend::snapshot`] reads.
#[derive(Debug, PartialEq)]
struct Snapshot {
    events: Vec<Event>,
    totals: Vec<TotalRow>,
    rollups: Vec<RollupRow>,
    installs: Vec<InstallRow>,
    sessions: [Option<SessionCounters>; 2],
    groups: Vec<tally_server::storage::GroupInstalls>,
}

/// One `sessions` row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionCounters {
    started_at: Timestamp,
    ended_at: Timestamp,
    duration_ms: i64,
    commands_executed: i64,
    workspaces_created: i64,
    tasks_completed: i64,
    errors_encountered: i64,
}

/// One `installs` row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct InstallRow {
    app: String,
    install_id: String,
    first_seen: Timestamp,
    last_seen: Timestamp,
}

/// The duration statistics of one rollup row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RollupDurations {
    hour: String,
    name: String,
    min_ms: Option<i64>,
    max_ms: Option<i64>,
    histogram: Vec<i64>,
}

impl Backend {
    fn sqlite() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.db");
        let store = Arc::new(SqliteStorage::open(&path).unwrap());
        Backend::Sqlite { _dir: dir, path, store }
    }

    async fn postgres() -> Option<Backend> {
        let database = TestDatabase::create().await?;
        let store = database.open().await;
        Some(Backend::Postgres { database, store })
    }

    fn store(&self) -> Arc<dyn Storage> {
        match self {
            Backend::Sqlite { store, .. } | Backend::Postgres { store, .. } => Arc::clone(store),
        }
    }

    /// A second collector on the same data.
    async fn another_collector(&self) -> Arc<dyn Storage> {
        match self {
            Backend::Sqlite { path, .. } => Arc::new(SqliteStorage::open(path).unwrap()),
            Backend::Postgres { database, .. } => database.open().await,
        }
    }

    /// Makes the database itself refuse any event named `name`, as a row it cannot store
    /// would be refused, so that a batch fails in the middle of its write.
    async fn refuse_events_named(&self, name: &str) {
        match self {
            Backend::Sqlite { path, .. } => {
                Self::sqlite_connection(path)
                    .execute_batch(&format!(
                        "CREATE TRIGGER refuse BEFORE INSERT ON event_rows \
                         WHEN NEW.name = (SELECT id FROM strings WHERE value = '{name}') \
                         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
                    ))
                    .unwrap();
            }
            Backend::Postgres { database, .. } => {
                database
                    .client()
                    .await
                    .batch_execute(&format!(
                        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
                           $$BEGIN RAISE EXCEPTION 'refused by the test'; END$$; \
                         CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW \
                           WHEN (NEW.name = '{name}') EXECUTE FUNCTION refuse();"
                    ))
                    .await
                    .unwrap();
            }
        }
    }

    /// Everything a batch can change that readers see, for before/after comparisons.
    async fn snapshot(&self) -> Snapshot {
        let store = self.store();
        Snapshot {
            events: all_events(&store, "nexus").await,
            totals: store.totals().await.unwrap(),
            rollups: rollup_rows(store.as_ref(), "nexus", "2026-01-01T00", "2027-01-01T00").await,
            installs: self.installs().await,
            sessions: [self.session("session-1").await, self.session("session-2").await],
            groups: store.group_installs(None).await.unwrap(),
        }
    }

    fn sqlite_connection(path: &PathBuf) -> rusqlite::Connection {
        rusqlite::Connection::open(path).unwrap()
    }

    async fn session(&self, session_id: &str) -> Option<SessionCounters> {
        let columns = "started_at, ended_at, duration_ms, commands_executed, workspaces_created, tasks_completed, \
                       errors_encountered";
        match self {
            Backend::Sqlite { path, .. } => {
                let conn = Self::sqlite_connection(path);
                let sql = format!("SELECT {columns} FROM sessions WHERE session_id = ?1");
                let mut statement = conn.prepare(&sql).unwrap();
                let mut rows = statement.query([session_id]).unwrap();
                let row = rows.next().unwrap()?;
                Some(SessionCounters {
                    started_at: tally_core::time::parse(&row.get::<_, String>(0).unwrap()).unwrap(),
                    ended_at: tally_core::time::parse(&row.get::<_, String>(1).unwrap()).unwrap(),
                    duration_ms: row.get(2).unwrap(),
                    commands_executed: row.get(3).unwrap(),
                    workspaces_created: row.get(4).unwrap(),
                    tasks_completed: row.get(5).unwrap(),
                    errors_encountered: row.get(6).unwrap(),
                })
            }
            Backend::Postgres { database, .. } => {
                let sql = format!("SELECT {columns} FROM sessions WHERE session_id = $1");
                let row = database.client().await.query_opt(&sql, &[&session_id]).await.unwrap()?;
                Some(SessionCounters {
                    started_at: row.get(0),
                    ended_at: row.get(1),
                    duration_ms: row.get(2),
                    commands_executed: row.get(3),
                    workspaces_created: row.get(4),
                    tasks_completed: row.get(5),
                    errors_encountered: row.get(6),
                })
            }
        }
    }

    async fn installs(&self) -> Vec<InstallRow> {
        let sql = "SELECT app, install_id, first_seen, last_seen FROM installs";
        let mut installs: Vec<InstallRow> = match self {
            Backend::Sqlite { path, .. } => {
                let conn = Self::sqlite_connection(path);
                let mut statement = conn.prepare(sql).unwrap();
                statement
                    .query_map([], |row| {
                        Ok(InstallRow {
                            app: row.get(0)?,
                            install_id: row.get(1)?,
                            first_seen: tally_core::time::parse(&row.get::<_, String>(2)?).unwrap(),
                            last_seen: tally_core::time::parse(&row.get::<_, String>(3)?).unwrap(),
                        })
                    })
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Backend::Postgres { database, .. } => database
                .client()
                .await
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|row| InstallRow {
                    app: row.get(0),
                    install_id: row.get(1),
                    first_seen: row.get(2),
                    last_seen: row.get(3),
                })
                .collect(),
        };
        installs.sort();
        installs
    }

    async fn rollup_durations(&self, app: &str) -> Vec<RollupDurations> {
        let sql = "SELECT hour, name, duration_min_ms, duration_max_ms, histogram FROM metrics WHERE app = $1";
        let mut durations: Vec<RollupDurations> = match self {
            Backend::Sqlite { path, .. } => {
                let conn = Self::sqlite_connection(path);
                let mut statement = conn.prepare(&sql.replace("$1", "?1")).unwrap();
                statement
                    .query_map([app], |row| {
                        Ok(RollupDurations {
                            hour: row.get(0)?,
                            name: row.get(1)?,
                            min_ms: row.get(2)?,
                            max_ms: row.get(3)?,
                            histogram: serde_json::from_str(&row.get::<_, String>(4)?).unwrap(),
                        })
                    })
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Backend::Postgres { database, .. } => database
                .client()
                .await
                .query(sql, &[&app])
                .await
                .unwrap()
                .iter()
                .map(|row| RollupDurations {
                    hour: row.get(0),
                    name: row.get(1),
                    min_ms: row.get(2),
                    max_ms: row.get(3),
                    histogram: row.get(4),
                })
                .collect(),
        };
        durations.sort();
        durations
    }
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// A minimal event of app `nexus`, install `install-a`, session `session-1`.
fn event(name: &str, ts: &str) -> Event {
    Event {
        id: Uuid::now_v7(),
        ts: at(ts),
        app: "nexus".into(),
        app_version: "1.4.2".into(),
        source: Source::Cli,
        kind: name.split('_').next().unwrap_or(name).into(),
        name: name.into(),
        command: None,
        session_id: "session-1".into(),
        install_id: "install-a".into(),
        workspace: None,
        target_type: None,
        target_id: None,
        duration_ms: None,
        success: None,
        error_category: None,
        error_message: None,
        props: BTreeMap::new(),
    }
}

/// An event with every optional field set and props of every kind.
fn full_event(ts: &str) -> Event {
    Event {
        command: Some("workspace create".into()),
        workspace: Some("h1:9f2c00112233445566778899".into()),
        target_type: Some("task".into()),
        target_id: Some("h1:07ab00112233445566778899".into()),
        duration_ms: Some(1_234),
        success: Some(false),
        error_category: Some("io".into()),
        error_message: Some("permission denied on <path>".into()),
        source: Source::Web,
        props: BTreeMap::from([
            ("template".into(), PropValue::Str("rust \"quoted\" ünïcode".into())),
            ("services_count".into(), PropValue::Int(3)),
            ("largest".into(), PropValue::Int(i64::MAX)),
            ("negative".into(), PropValue::Int(-42)),
            ("ratio".into(), PropValue::Float(0.25)),
            ("whole_float".into(), PropValue::Float(3.0)),
            ("tiny".into(), PropValue::Float(1e-7)),
            ("dry_run".into(), PropValue::Bool(true)),
        ]),
        ..event("workspace_created", ts)
    }
}

/// The period of the rollup hours `[from, to)` (`YYYY-MM-DDTHH`).
fn hours(from: &str, to: &str) -> Period {
    let start = |hour: &str| hour.parse::<HourKey>().unwrap().start();
    Period {
        from: start(from),
        to: start(to),
    }
}

/// A rollup row as the contract compares it: key, count, durations reported and their sum.
type RollupRow = (String, String, String, String, i64, String, [u64; 3]);

/// Every rollup row of `app` in the hours `[from, to)`, as [`RollupRow`]s.
async fn rollup_rows(store: &dyn Storage, app: &str, from: &str, to: &str) -> Vec<RollupRow> {
    let rollups = store.rollups(app, &hours(from, to)).await.unwrap();
    rollups
        .into_iter()
        .map(|(key, rollup)| {
            assert_eq!(key.app, app);
            (
                key.hour.to_string(),
                key.kind,
                key.name,
                key.command,
                key.success,
                key.error_category,
                [rollup.count, rollup.duration_count, rollup.duration_total_ms],
            )
        })
        .collect()
}

fn query(app: &str) -> EventQuery {
    EventQuery {
        app: app.into(),
        limit: 100_000,
        ..EventQuery::default()
    }
}

async fn all_events(store: &Arc<dyn Storage>, app: &str) -> Vec<Event> {
    store.events(&query(app)).await.unwrap()
}

fn sorted(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by_key(|event| (event.ts, event.id));
    events
}

fn total(app: &str, kind: &str, name: &str, success: i64, count: u64) -> TotalRow {
    TotalRow {
        app: app.into(),
        kind: kind.into(),
        name: name.into(),
        success,
        count,
    }
}

async fn an_empty_batch_changes_nothing(store: Arc<dyn Storage>) {
    assert_eq!(store.insert(Vec::new()).await.unwrap(), Vec::<bool>::new());
    assert!(all_events(&store, "nexus").await.is_empty());
    assert!(store.totals().await.unwrap().is_empty());
    assert!(
        store
            .active_installs(&[Timestamp::UNIX_EPOCH])
            .await
            .unwrap()
            .is_empty()
    );
}

/// Batch after batch holding stored events and new ones, each after one the database
/// refused, as a client retrying with more queued sends them. PostgreSQL first writes
/// such a batch as if all new, fails its check, rolls back and writes it again: a
/// connection left inside that rollback (its `COMMIT` never sent, which takes a
/// scheduling accident, hence the rounds and the reads between) would fail the second
/// write. With the flight's futures under `try_join!`, 8 of 10 runs failed.
async fn batches_resending_stored_events_count_each_event_once(backend: &Backend) {
    let store = backend.store();
    backend.refuse_events_named("refused_event").await;
    let mut sent: Vec<Event> = Vec::new();
    for round in 0..20 {
        let new = event("command_executed", &format!("2026-11-22T01:{round:02}:00.000Z"));
        let refused = event("refused_event", &format!("2026-11-22T02:{round:02}:00.000Z"));
        let mut batch: Vec<Event> = sent.iter().rev().take(2).cloned().collect();
        batch.push(new.clone());
        let mut with_refused = batch.clone();
        with_refused.push(refused);
        assert!(store.insert(with_refused).await.is_err(), "round {round}");
        assert_eq!(backend.snapshot().await.events, sorted(sent.clone()), "round {round}");
        let expected: Vec<bool> = batch.iter().map(|event| event.id == new.id).collect();
        assert_eq!(store.insert(batch).await.unwrap(), expected, "round {round}");
        sent.push(new);
    }
    assert_eq!(all_events(&store, "nexus").await, sorted(sent));
    assert_eq!(
        store.totals().await.unwrap(),
        vec![total("nexus", "command", "command_executed", -1, 20)]
    );
}

async fn a_repeated_batch_is_stored_once(store: Arc<dyn Storage>) {
    let batch: Vec<Event> = (0..5)
        .map(|second| event("command_executed", &format!("2026-11-22T01:02:0{second}.456Z")))
        .collect();
    assert_eq!(store.insert(batch.clone()).await.unwrap(), vec![true; 5]);
    assert_eq!(
        store.insert(batch.clone()).await.unwrap(),
        vec![false; 5],
        "the same batch again"
    );

    let fresh: Vec<Event> = (0..2)
        .map(|second| event("task_completed", &format!("2026-11-22T01:03:0{second}.000Z")))
        .collect();
    let overlapping = vec![batch[3].clone(), fresh[0].clone(), batch[0].clone(), fresh[1].clone()];
    assert_eq!(store.insert(overlapping).await.unwrap(), vec![false, true, false, true]);

    // Repeats inside one batch: the first copy is new, later copies are not.
    let once = event("error_occurred", "2026-11-22T01:04:00.000Z");
    let twice = vec![
        once.clone(),
        batch[1].clone(),
        once.clone(),
        fresh[1].clone(),
        once.clone(),
    ];
    assert_eq!(
        store.insert(twice).await.unwrap(),
        vec![true, false, false, false, false]
    );

    let mut expected = batch;
    expected.extend(fresh);
    expected.push(once);
    assert_eq!(all_events(&store, "nexus").await, sorted(expected));
    assert_eq!(
        store.totals().await.unwrap(),
        vec![
            total("nexus", "command", "command_executed", -1, 5),
            total("nexus", "error", "error_occurred", -1, 1),
            total("nexus", "task", "task_completed", -1, 2),
        ]
    );
}

async fn two_collectors_inserting_the_same_events_store_each_once(backend: &Backend) {
    let first = backend.store();
    let second = backend.another_collector().await;
    let start = at("2026-11-22T00:00:00Z");
    let events: Vec<Event> = (0..1_000i64)
        .map(|index| Event {
            ts: start.checked_add((index * 7).seconds()).unwrap(),
            // A session belongs to one install (session-3 to install-3), as sessions are
            // keyed within their install.
            session_id: format!("session-{}", index % 50),
            install_id: format!("install-{}", index % 25),
            duration_ms: Some(index as u64),
            success: Some(index % 3 != 0),
            ..event("command_executed", "2026-11-22T00:00:00Z")
        })
        .collect();
    // The two collectors get the events in different batches and orders, as after a
    // client's retry to another collector behind a load balancer.
    let forward: Vec<Vec<Event>> = events.chunks(100).map(<[Event]>::to_vec).collect();
    let backward: Vec<Vec<Event>> = events
        .iter()
        .rev()
        .cloned()
        .collect::<Vec<_>>()
        .chunks(250)
        .map(<[Event]>::to_vec)
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let run = |store: Arc<dyn Storage>, batches: Vec<Vec<Event>>, barrier: Arc<tokio::sync::Barrier>| {
        tokio::spawn(async move {
            barrier.wait().await;
            let mut stored = BTreeMap::new();
            for batch in batches {
                let ids: Vec<Uuid> = batch.iter().map(|event| event.id).collect();
                let flags = store.insert(batch).await.unwrap();
                stored.extend(ids.into_iter().zip(flags));
            }
            stored
        })
    };
    let one = run(first.clone(), forward, barrier.clone());
    let other = run(second.clone(), backward, barrier);
    let (one, other) = (one.await.unwrap(), other.await.unwrap());
    for event in &events {
        assert!(
            one[&event.id] ^ other[&event.id],
            "event {} must be new to exactly one collector",
            event.id
        );
    }

    assert_eq!(all_events(&first, "nexus").await, events);
    assert_eq!(all_events(&second, "nexus").await.len(), 1_000);
    let totals = first.totals().await.unwrap();
    assert_eq!(totals.iter().map(|row| row.count).sum::<u64>(), 1_000);
    assert_eq!(totals.iter().find(|row| row.success == 0).unwrap().count, 334);
    let rollups = first
        .rollups("nexus", &hours("2026-11-22T00", "2026-11-23T00"))
        .await
        .unwrap();
    assert_eq!(rollups.iter().map(|(_, row)| row.count).sum::<u64>(), 1_000);
    assert_eq!(
        rollups.iter().map(|(_, row)| row.duration_total_ms).sum::<u64>(),
        (0..1_000).sum::<u64>()
    );
    let session = backend.session("session-3").await.unwrap();
    assert_eq!(session.commands_executed, 20);
    assert_eq!(session.started_at, start.checked_add(21.seconds()).unwrap());
    assert_eq!(session.ended_at, start.checked_add((953 * 7).seconds()).unwrap());
    let active = first.active_installs(&[start]).await.unwrap();
    assert_eq!(active, vec![("nexus".to_owned(), vec![25])]);
}

async fn session_counters_count_new_events_only(backend: &Backend) {
    let store = backend.store();
    let batch = vec![
        event("command_executed", "2026-11-22T01:00:05.000Z"),
        event("command_executed", "2026-11-22T01:00:00.250Z"),
        event("workspace_created", "2026-11-22T01:00:10.000Z"),
        event("task_completed", "2026-11-22T01:00:20.000Z"),
        event("error_occurred", "2026-11-22T01:00:30.000Z"),
        event("feature_used", "2026-11-22T01:00:40.000Z"),
    ];
    store.insert(batch.clone()).await.unwrap();
    store.insert(batch.clone()).await.unwrap();
    let expected = SessionCounters {
        started_at: at("2026-11-22T01:00:00.250Z"),
        ended_at: at("2026-11-22T01:00:40.000Z"),
        duration_ms: 39_750,
        commands_executed: 2,
        workspaces_created: 1,
        tasks_completed: 1,
        errors_encountered: 1,
    };
    assert_eq!(backend.session("session-1").await, Some(expected.clone()));

    // A later batch, with a duplicate, an event before the session's start and one
    // after its end.
    let later = vec![
        batch[0].clone(),
        event("command_executed", "2026-11-22T00:59:59.000Z"),
        event("task_completed", "2026-11-22T01:05:00.500Z"),
    ];
    assert_eq!(store.insert(later).await.unwrap(), vec![false, true, true]);
    assert_eq!(
        backend.session("session-1").await,
        Some(SessionCounters {
            started_at: at("2026-11-22T00:59:59.000Z"),
            ended_at: at("2026-11-22T01:05:00.500Z"),
            duration_ms: 301_500,
            commands_executed: 3,
            tasks_completed: 2,
            ..expected
        })
    );

    let other = Event {
        session_id: "session-2".into(),
        ..event("command_executed", "2026-11-23T10:00:00.000Z")
    };
    store.insert(vec![other]).await.unwrap();
    let day = store
        .sessions(
            "nexus",
            &Period {
                from: at("2026-11-22T00:00:00Z"),
                to: at("2026-11-23T00:00:00Z"),
            },
        )
        .await
        .unwrap();
    assert_eq!((day.count, day.avg_duration_ms), (1, Some(301_500.0)));
    let both = store
        .sessions(
            "nexus",
            &Period {
                from: at("2026-11-01T00:00:00Z"),
                to: at("2026-12-01T00:00:00Z"),
            },
        )
        .await
        .unwrap();
    assert_eq!((both.count, both.avg_duration_ms), (2, Some(150_750.0)));
    let ever = store.sessions("nexus", &Period::ALL).await.unwrap();
    assert_eq!((ever.count, ever.avg_duration_ms), (2, Some(150_750.0)));
    let before_the_epoch = store
        .sessions("nexus", &Period::before(jiff::Timestamp::UNIX_EPOCH).previous())
        .await
        .unwrap();
    assert_eq!((before_the_epoch.count, before_the_epoch.avg_duration_ms), (0, None));
    let none = store
        .sessions(
            "other",
            &Period {
                from: at("2026-11-01T00:00:00Z"),
                to: at("2026-12-01T00:00:00Z"),
            },
        )
        .await
        .unwrap();
    assert_eq!((none.count, none.avg_duration_ms), (0, None));
}

async fn rollups_and_totals_count_each_event_once(store: Arc<dyn Storage>) {
    let command = |ts: &str, success: Option<bool>, duration_ms: Option<u64>, category: Option<&str>| Event {
        command: Some("workspace create".into()),
        success,
        duration_ms,
        error_category: category.map(str::to_owned),
        ..event("command_executed", ts)
    };
    let batch = vec![
        command("2026-11-22T01:10:00Z", Some(true), Some(100), None),
        command("2026-11-22T01:20:00Z", Some(true), Some(300), None),
        command("2026-11-22T01:30:00Z", Some(false), Some(50), Some("io")),
        command("2026-11-22T02:00:00Z", Some(true), None, None),
        event("workspace_created", "2026-11-22T02:59:59.999Z"),
        Event {
            app: "other".into(),
            ..event("workspace_created", "2026-11-22T02:00:00Z")
        },
    ];
    store.insert(batch.clone()).await.unwrap();
    store.insert(batch[..3].to_vec()).await.unwrap();
    store.insert(vec![batch[5].clone(), batch[0].clone()]).await.unwrap();

    let row = |hour: &str, kind: &str, name: &str, command: &str, success: i64, category: &str, counts: [u64; 3]| {
        (
            hour.to_owned(),
            kind.to_owned(),
            name.to_owned(),
            command.to_owned(),
            success,
            category.to_owned(),
            counts,
        )
    };
    let create = "workspace create";
    assert_eq!(
        rollup_rows(&*store, "nexus", "2026-11-22T01", "2026-11-22T03").await,
        vec![
            row(
                "2026-11-22T01",
                "command",
                "command_executed",
                create,
                0,
                "io",
                [1, 1, 50]
            ),
            row(
                "2026-11-22T01",
                "command",
                "command_executed",
                create,
                1,
                "",
                [2, 2, 400]
            ),
            row("2026-11-22T02", "command", "command_executed", create, 1, "", [1, 0, 0]),
            row("2026-11-22T02", "workspace", "workspace_created", "", -1, "", [1, 0, 0]),
        ]
    );
    assert_eq!(
        store
            .rollups("nexus", &hours("2026-11-22T02", "2026-11-22T03"))
            .await
            .unwrap()
            .len(),
        2,
        "from_hour is inclusive"
    );
    assert!(
        store
            .rollups("nexus", &hours("2026-11-22T00", "2026-11-22T01"))
            .await
            .unwrap()
            .is_empty(),
        "to_hour is exclusive"
    );
    assert_eq!(
        store.totals().await.unwrap(),
        vec![
            total("nexus", "command", "command_executed", 0, 1),
            total("nexus", "command", "command_executed", 1, 3),
            total("nexus", "workspace", "workspace_created", -1, 1),
            total("other", "workspace", "workspace_created", -1, 1),
        ]
    );
}

/// A day of counts of `install` on `day`: `count` runs of `build`, half of them timed.
fn counted_day(install: &str, day: &str, count: u64) -> DayCounts {
    let mut histogram = vec![0; tally_store::histogram::BUCKETS];
    histogram[3] = count / 2;
    DayCounts {
        app: "nexus".into(),
        install_id: install.into(),
        day: day.parse().unwrap(),
        counts: vec![GroupCount {
            kind: "command".into(),
            name: "command_executed".into(),
            command: Some("build".into()),
            success: Some(true),
            error_category: None,
            count,
            duration_count: count / 2,
            duration_total_ms: count / 2 * 5,
            histogram,
        }],
    }
}

async fn daily_rollups_equal_the_hourly_rows_summed_per_day(store: Arc<dyn Storage>) {
    // Three days of commands (timed and not, failed and not), errors with categories and
    // features, in many hours; a counts-only day; and another app's events.
    let mut events = Vec::new();
    for (index, hour) in (0..72).step_by(5).enumerate() {
        let ts = at("2026-11-20T00:00:00Z")
            .checked_add(jiff::SignedDuration::from_hours(hour))
            .unwrap()
            .checked_add(jiff::SignedDuration::from_millis(index as i64 * 61_001))
            .unwrap();
        let ts = tally_core::time::format(ts);
        events.push(Event {
            command: Some(["build", "test", "deploy"][index % 3].into()),
            duration_ms: (index % 4 != 0).then_some(index as u64 * 37 + 1),
            success: Some(index % 5 != 0),
            ..event("command_executed", &ts)
        });
        events.push(Event {
            error_category: Some(["io", "network"][index % 2].into()),
            success: Some(false),
            ..event("error_occurred", &ts)
        });
        events.push(Event {
            kind: "feature".into(),
            install_id: format!("install-{}", index % 4),
            ..event("dark_mode", &ts)
        });
        events.push(Event {
            app: "ledger".into(),
            ..event("command_executed", &ts)
        });
    }
    store.insert(events).await.unwrap();
    assert!(
        store
            .insert_counts(&counted_day("install-z", "2026-11-21", 8))
            .await
            .unwrap()
    );

    for (from, to) in [
        ("2026-11-19T00", "2026-11-24T00"),
        ("2026-11-20T07", "2026-11-22T13"),
        ("2026-11-21T00", "2026-11-21T01"),
        ("2026-11-23T00", "2026-11-24T00"),
    ] {
        let period = hours(from, to);
        let hourly = store.rollups("nexus", &period).await.unwrap();
        let daily = store.daily_rollups("nexus", &period).await.unwrap();
        assert_eq!(daily, sum_by_day(hourly.clone()), "{from}..{to}");
        let events = |rows: &[(tally_store::rollup::RollupKey, tally_store::rollup::Rollup)]| {
            rows.iter().map(|(_, rollup)| rollup.count).sum::<u64>()
        };
        assert_eq!(events(&daily), events(&hourly), "{from}..{to}");
    }
    // The whole stretch: every kind of row is there, histograms and bounds summed.
    let daily = store
        .daily_rollups("nexus", &hours("2026-11-19T00", "2026-11-24T00"))
        .await
        .unwrap();
    assert!(daily.len() > 9, "{daily:?}");
    assert!(
        daily
            .iter()
            .all(|(key, _)| key.app == "nexus" && key.hour.to_string().ends_with("T00"))
    );
    let build: Vec<_> = daily
        .iter()
        .filter(|(key, rollup)| key.command == "build" && rollup.duration_count > 1)
        .collect();
    assert!(!build.is_empty(), "{daily:?}");
    for (_, rollup) in build {
        assert_eq!(rollup.histogram.counts.iter().sum::<u64>(), rollup.duration_count);
        assert!(rollup.duration_min_ms.unwrap() <= rollup.duration_max_ms.unwrap());
    }
    assert!(
        store
            .daily_rollups("nexus", &hours("2026-12-01T00", "2026-12-02T00"))
            .await
            .unwrap()
            .is_empty()
    );

    // Erasing installs takes their events out of the per-day rows too. (Shortest and
    // longest durations cannot be taken back: compared without them.)
    store.erase_install("nexus", "install-1").await.unwrap();
    store.erase_install("nexus", "install-z").await.unwrap();
    let without_bounds = |rows: Vec<(tally_store::rollup::RollupKey, tally_store::rollup::Rollup)>| {
        rows.into_iter()
            .map(|(key, rollup)| {
                (
                    key,
                    rollup.count,
                    rollup.duration_count,
                    rollup.duration_total_ms,
                    rollup.histogram,
                )
            })
            .collect::<Vec<_>>()
    };
    for (from, to) in [("2026-11-19T00", "2026-11-24T00"), ("2026-11-20T07", "2026-11-22T13")] {
        let period = hours(from, to);
        let hourly = store.rollups("nexus", &period).await.unwrap();
        let daily = store.daily_rollups("nexus", &period).await.unwrap();
        assert_eq!(
            without_bounds(daily),
            without_bounds(sum_by_day(hourly)),
            "after erasure, {from}..{to}"
        );
    }
}

async fn active_installs_in_counts_each_install_once_per_window(store: Arc<dyn Storage>) {
    let of = |install: &str, ts: &str| Event {
        install_id: install.into(),
        session_id: format!("session-{install}"),
        ..event("command_executed", ts)
    };
    store
        .insert(vec![
            of("a", "2026-11-20T10:15:00Z"),
            of("a", "2026-11-20T10:45:00Z"),
            of("b", "2026-11-20T23:59:59.999Z"),
            of("b", "2026-11-22T00:30:00Z"),
            Event {
                app: "ledger".into(),
                ..of("c", "2026-11-20T10:00:00Z")
            },
        ])
        .await
        .unwrap();
    // A counts-only day is activity in the day's first hour.
    assert!(store.insert_counts(&counted_day("d", "2026-11-21", 4)).await.unwrap());
    let window = |from: &str, to: &str| Period {
        from: at(from),
        to: at(to),
    };
    let windows = [
        (window("2026-11-20T00:00:00Z", "2026-11-23T00:00:00Z"), 3),
        (window("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z"), 1),
        (window("2026-11-20T11:00:00Z", "2026-11-20T23:00:00Z"), 0),
        (window("2026-11-20T23:00:00Z", "2026-11-21T00:00:00Z"), 1),
        (window("2026-11-20T23:00:00Z", "2026-11-21T01:00:00Z"), 2),
        (window("2026-11-21T01:00:00Z", "2026-11-22T00:00:00Z"), 0),
        (window("2026-11-21T01:00:00Z", "2026-11-22T01:00:00Z"), 1),
        // A part of an hour counts the whole hour, as the rollups do.
        (window("2026-11-20T10:50:00Z", "2026-11-20T10:51:00Z"), 1),
        (window("2026-11-24T00:00:00Z", "2026-11-30T00:00:00Z"), 0),
    ];
    let periods: Vec<Period> = windows.iter().map(|(period, _)| *period).collect();
    let expected: Vec<u64> = windows.iter().map(|(_, count)| *count).collect();
    assert_eq!(store.active_installs_in("nexus", &periods).await.unwrap(), expected);
    assert_eq!(
        store.active_installs_in("ledger", &periods[..3]).await.unwrap(),
        [1, 1, 0],
        "each app counts its own installs"
    );
    assert!(store.active_installs_in("nexus", &[]).await.unwrap().is_empty());

    // A resent batch changes nothing; erasure takes an install out of every window.
    store.insert(vec![of("a", "2026-11-20T10:15:00Z")]).await.unwrap();
    assert_eq!(store.active_installs_in("nexus", &periods).await.unwrap(), expected);
    store.erase_install("nexus", "b").await.unwrap();
    assert_eq!(
        store.active_installs_in("nexus", &periods).await.unwrap(),
        [2, 1, 0, 0, 1, 0, 0, 1, 0]
    );
}

async fn rollup_histograms_and_duration_bounds_merge_across_batches(backend: &Backend) {
    let store = backend.store();
    let timed = |ts: &str, duration_ms: Option<u64>| Event {
        duration_ms,
        ..event("command_executed", ts)
    };
    store
        .insert(vec![
            timed("2026-11-22T01:00:00Z", Some(1)),
            timed("2026-11-22T01:01:00Z", Some(40)),
            timed("2026-11-22T01:02:00Z", None),
        ])
        .await
        .unwrap();
    store
        .insert(vec![
            timed("2026-11-22T01:03:00Z", Some(400_000)),
            timed("2026-11-22T01:04:00Z", Some(45)),
            timed("2026-11-22T01:00:00Z", Some(1)),
        ])
        .await
        .unwrap();
    let mut histogram = vec![0i64; tally_store::histogram::BUCKETS];
    for duration in [1, 40, 400_000, 45, 1] {
        histogram[tally_store::histogram::bucket_of(duration)] += 1;
    }
    assert_eq!(
        backend.rollup_durations("nexus").await,
        vec![RollupDurations {
            hour: "2026-11-22T01".into(),
            name: "command_executed".into(),
            min_ms: Some(1),
            max_ms: Some(400_000),
            histogram: histogram.clone(),
        }]
    );
    // `Storage::rollups` reads the same bounds and histogram back.
    let rows = store
        .rollups("nexus", &hours("2026-11-22T01", "2026-11-22T02"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let rollup = &rows[0].1;
    assert_eq!(
        (rollup.duration_min_ms, rollup.duration_max_ms),
        (Some(1), Some(400_000))
    );
    let read: Vec<i64> = rollup.histogram.counts.iter().map(|count| *count as i64).collect();
    assert_eq!(read, histogram);
}

async fn installs_keep_first_and_last_seen(backend: &Backend) {
    let store = backend.store();
    let seen = |install: &str, ts: &str| Event {
        install_id: install.into(),
        ..event("command_executed", ts)
    };
    store
        .insert(vec![
            seen("install-a", "2026-11-20T12:00:00Z"),
            seen("install-a", "2026-11-22T12:00:00Z"),
            seen("install-b", "2026-11-15T12:00:00Z"),
            Event {
                app: "other".into(),
                ..seen("install-a", "2026-11-22T13:00:00Z")
            },
        ])
        .await
        .unwrap();
    // A late upload of older events moves first_seen back and leaves last_seen.
    store
        .insert(vec![seen("install-a", "2026-11-10T00:00:00.001Z")])
        .await
        .unwrap();
    let install = |app: &str, id: &str, first: &str, last: &str| InstallRow {
        app: app.into(),
        install_id: id.into(),
        first_seen: at(first),
        last_seen: at(last),
    };
    assert_eq!(
        backend.installs().await,
        vec![
            install("nexus", "install-a", "2026-11-10T00:00:00.001Z", "2026-11-22T12:00:00Z"),
            install("nexus", "install-b", "2026-11-15T12:00:00Z", "2026-11-15T12:00:00Z"),
            install("other", "install-a", "2026-11-22T13:00:00Z", "2026-11-22T13:00:00Z"),
        ]
    );
    let since = [
        at("2026-11-22T12:00:00Z"),
        at("2026-11-22T12:00:00.001Z"),
        at("2026-11-01T00:00:00Z"),
    ];
    assert_eq!(
        store.active_installs(&since).await.unwrap(),
        vec![("nexus".to_owned(), vec![1, 0, 2]), ("other".to_owned(), vec![1, 1, 1])]
    );
    assert_eq!(
        store.active_installs(&[]).await.unwrap(),
        vec![("nexus".to_owned(), vec![]), ("other".to_owned(), vec![])]
    );
}

async fn events_round_trip_and_page_in_order_across_identical_timestamps(store: Arc<dyn Storage>) {
    // Groups of events share a timestamp, so only the id orders them within a group.
    let mut events = Vec::new();
    for (index, second) in [0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 3, 4, 4, 4]
        .into_iter()
        .enumerate()
    {
        let ts = format!("2026-11-22T01:02:0{second}.456Z");
        events.push(if index % 4 == 0 {
            full_event(&ts)
        } else {
            Event {
                id: Uuid::new_v4(),
                ..event("command_executed", &ts)
            }
        });
    }
    let mut shuffled = events.clone();
    shuffled.reverse();
    shuffled.swap(2, 9);
    store.insert(shuffled).await.unwrap();
    let expected = sorted(events);

    for limit in [1, 4, 5, 100] {
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .events(&EventQuery {
                    after,
                    limit,
                    ..query("nexus")
                })
                .await
                .unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            after = Some((last.ts, last.id));
            paged.extend(page);
        }
        assert_eq!(paged, expected, "pages of {limit}");
    }
    let limited = store
        .events(&EventQuery {
            limit: 0,
            ..query("nexus")
        })
        .await
        .unwrap();
    assert!(limited.is_empty());
}

async fn event_filters_select_exactly_the_matching_events(store: Arc<dyn Storage>) {
    let events = vec![
        event("command_executed", "2026-11-22T01:00:00Z"),
        Event {
            install_id: "install-b".into(),
            session_id: "session-2".into(),
            ..event("command_executed", "2026-11-22T02:00:00Z")
        },
        event("workspace_created", "2026-11-22T03:00:00Z"),
        Event {
            kind: "command".into(),
            ..event("task_completed", "2026-11-22T04:00:00Z")
        },
        Event {
            app: "other".into(),
            ..event("command_executed", "2026-11-22T01:30:00Z")
        },
    ];
    store.insert(events.clone()).await.unwrap();
    let select = |query: EventQuery| {
        let store = Arc::clone(&store);
        async move { store.events(&query).await.unwrap() }
    };
    let pick = |indexes: &[usize]| indexes.iter().map(|&index| events[index].clone()).collect::<Vec<_>>();

    assert_eq!(select(query("nexus")).await, pick(&[0, 1, 2, 3]));
    assert_eq!(select(query("other")).await, pick(&[4]));
    assert_eq!(select(query("nobody")).await, pick(&[]));
    assert_eq!(
        select(EventQuery {
            kind: Some("command".into()),
            ..query("nexus")
        })
        .await,
        pick(&[0, 1, 3])
    );
    assert_eq!(
        select(EventQuery {
            kind: Some("command".into()),
            name: Some("command_executed".into()),
            ..query("nexus")
        })
        .await,
        pick(&[0, 1])
    );
    assert_eq!(
        select(EventQuery {
            install_id: Some("install-b".into()),
            ..query("nexus")
        })
        .await,
        pick(&[1])
    );
    assert_eq!(
        select(EventQuery {
            session_id: Some("session-1".into()),
            ..query("nexus")
        })
        .await,
        pick(&[0, 2, 3])
    );
    assert_eq!(
        select(EventQuery {
            period: Period {
                from: at("2026-11-22T02:00:00Z"),
                to: at("2026-11-22T04:00:00Z"),
            },
            ..query("nexus")
        })
        .await,
        pick(&[1, 2]),
        "from is inclusive, to exclusive"
    );
    assert_eq!(
        select(EventQuery {
            after: Some((events[1].ts, events[1].id)),
            name: Some("workspace_created".into()),
            ..query("nexus")
        })
        .await,
        pick(&[2])
    );
}

async fn erase_install_removes_one_install_and_what_it_added(store: Arc<dyn Storage>) {
    let of = |install: &str, session: &str, name: &str, ts: &str| Event {
        install_id: install.into(),
        session_id: session.into(),
        ..event(name, ts)
    };
    let kept = vec![
        of("install-b", "session-b", "command_executed", "2026-11-22T01:00:00Z"),
        Event {
            app: "other".into(),
            ..of("install-a", "session-o", "command_executed", "2026-11-22T01:00:00Z")
        },
    ];
    let mut events = vec![
        of("install-a", "session-a1", "command_executed", "2026-11-22T01:00:00Z"),
        of("install-a", "session-a1", "task_completed", "2026-11-22T01:10:00Z"),
        of("install-a", "session-a2", "command_executed", "2026-12-02T01:00:00Z"),
    ];
    events.extend(kept.clone());
    store.insert(events).await.unwrap();
    let totals = store.totals().await.unwrap();
    let rollups = store
        .rollups("nexus", &hours("2026-11-01T00", "2027-01-01T00"))
        .await
        .unwrap();
    let month = |store: Arc<dyn Storage>| async move {
        store
            .sessions(
                "nexus",
                &Period {
                    from: at("2026-11-01T00:00:00Z"),
                    to: at("2027-01-01T00:00:00Z"),
                },
            )
            .await
            .unwrap()
            .count
    };
    assert_eq!(month(store.clone()).await, 3);

    assert_eq!(store.erase_install("nexus", "install-a").await.unwrap().events, 3);
    assert_eq!(all_events(&store, "nexus").await, kept[..1]);
    assert_eq!(all_events(&store, "other").await, kept[1..]);
    assert_eq!(month(store.clone()).await, 1);
    assert_eq!(
        store.active_installs(&[Timestamp::UNIX_EPOCH]).await.unwrap(),
        vec![("nexus".to_owned(), vec![1]), ("other".to_owned(), vec![1])]
    );
    // Totals and rollups drop by exactly what the install added.
    let sum = |rows: Vec<u64>| rows.into_iter().sum::<u64>();
    let total_events = |totals: &[TotalRow]| sum(totals.iter().map(|row| row.count).collect());
    assert_eq!(total_events(&totals), 3 + kept.len() as u64);
    assert_eq!(total_events(&store.totals().await.unwrap()), kept.len() as u64);
    assert_eq!(sum(rollups.iter().map(|(_, rollup)| rollup.count).collect()), 4);
    let left = store
        .rollups("nexus", &hours("2026-11-01T00", "2027-01-01T00"))
        .await
        .unwrap();
    assert_eq!(
        sum(left.iter().map(|(_, rollup)| rollup.count).collect()),
        1,
        "{left:?}"
    );
    assert!(
        left.iter().all(|(_, rollup)| rollup.count > 0),
        "no empty rollup row is left"
    );
    let erased = store.erase_install("nexus", "install-a").await.unwrap();
    assert_eq!((erased.events, erased.uncounted), (0, 0));
    assert_eq!(store.erase_install("nexus", "never-seen").await.unwrap().events, 0);
}

async fn expire_drops_old_months_and_trims_the_boundary_month(backend: &Backend) {
    let store = backend.store();
    let of = |install: &str, ts: &str| Event {
        install_id: install.into(),
        session_id: format!("session-{install}"),
        ..event("command_executed", ts)
    };
    let events = vec![
        of("jan", "2026-01-03T00:00:00Z"),
        of("jan", "2026-01-31T23:59:59.999Z"),
        of("feb", "2026-02-01T00:00:00Z"),
        of("feb", "2026-02-14T23:59:59.999Z"),
        of("late", "2026-02-15T00:00:00Z"),
        of("late", "2026-03-20T00:00:00Z"),
    ];
    store.insert(events.clone()).await.unwrap();
    let totals = store.totals().await.unwrap();
    let group_sizes = |store: Arc<dyn Storage>| async move {
        let groups = store.group_installs(Some("nexus")).await.unwrap();
        groups.iter().map(|group| group.installs).collect::<Vec<_>>()
    };
    assert_eq!(group_sizes(store.clone()).await, [3]);

    let cutoff = at("2026-02-15T00:00:00Z");
    assert_eq!(store.expire(cutoff).await.unwrap(), 4);
    assert_eq!(
        group_sizes(store.clone()).await,
        [1],
        "expired installs leave their groups"
    );
    assert_eq!(all_events(&store, "nexus").await, events[4..]);
    assert_eq!(
        backend
            .installs()
            .await
            .iter()
            .map(|row| row.install_id.as_str())
            .collect::<Vec<_>>(),
        ["late"]
    );
    assert!(backend.session("session-jan").await.is_none());
    assert!(backend.session("session-feb").await.is_none());
    assert!(backend.session("session-late").await.is_some());
    assert_eq!(store.totals().await.unwrap(), totals, "expiry keeps totals");
    // Activity of the days before the cutoff's goes; the cutoff's own day stays.
    let whole = Period {
        from: at("2026-01-01T00:00:00Z"),
        to: at("2026-04-01T00:00:00Z"),
    };
    assert_eq!(store.active_installs_in("nexus", &[whole]).await.unwrap(), [1]);
    assert_eq!(
        store
            .rollups("nexus", &hours("2026-01-01T00", "2026-04-01T00"))
            .await
            .unwrap()
            .iter()
            .map(|(_, row)| row.count)
            .sum::<u64>(),
        6,
        "expiry keeps rollups"
    );

    // A late upload into an expired month is stored (its month's storage comes back),
    // and the next expiry removes it.
    let late = of("straggler", "2026-01-10T00:00:00Z");
    assert_eq!(store.insert(vec![late.clone()]).await.unwrap(), vec![true]);
    assert_eq!(all_events(&store, "nexus").await[0], late);
    assert_eq!(store.expire(cutoff).await.unwrap(), 1);
    assert_eq!(store.expire(cutoff).await.unwrap(), 0);
    assert_eq!(all_events(&store, "nexus").await, events[4..]);
    if let Backend::Postgres { database, .. } = backend {
        assert_eq!(partitions(database).await, ["events_2026_02", "events_2026_03"]);
        let leftovers = database
            .client()
            .await
            .query("SELECT relname FROM pg_class WHERE relname LIKE 'events%expired%'", &[])
            .await
            .unwrap();
        assert!(leftovers.is_empty(), "detached partitions are dropped");
    }
}

async fn events_spanning_three_months_are_stored_and_read_back(store: Arc<dyn Storage>) {
    let events = vec![
        full_event("2026-10-31T23:59:59.999Z"),
        full_event("2026-11-01T00:00:00.000Z"),
        event("command_executed", "2026-11-15T12:00:00Z"),
        event("command_executed", "2026-12-31T23:59:59.999Z"),
    ];
    assert_eq!(store.insert(events.clone()).await.unwrap(), vec![true; 4]);
    assert_eq!(all_events(&store, "nexus").await, events);
    let later = event("command_executed", "2027-02-01T00:00:00Z");
    assert_eq!(
        store.insert(vec![later.clone(), events[3].clone()]).await.unwrap(),
        vec![true, false]
    );
    assert_eq!(
        store
            .events(&EventQuery {
                period: Period::starting(at("2026-12-01T00:00:00Z")),
                ..query("nexus")
            })
            .await
            .unwrap(),
        vec![events[3].clone(), later]
    );
}

async fn keys_round_trip_and_revocation_keeps_the_first_time(store: Arc<dyn Storage>) {
    let key = |id: &str, app: &str, role: Role, created_at: &str| ApiKey {
        id: id.into(),
        app: app.into(),
        role,
        secret_hash: [id.len() as u8; 32],
        label: format!("label of {id}"),
        created_at: at(created_at),
        revoked_at: None,
    };
    let keys = vec![
        key("tk_b", "nexus", Role::Ingest, "2026-11-22T01:00:00.001Z"),
        key("tk_a", "nexus", Role::Admin, "2026-11-22T01:00:00.001Z"),
        key("tk_c", "Nexus", Role::Ingest, "2026-11-23T00:00:00Z"),
        key("tk_0", "nexus", Role::Ingest, "2026-11-21T00:00:00Z"),
        ApiKey {
            revoked_at: Some(at("2026-11-22T02:00:00Z")),
            ..key("tk_d", "other", Role::Admin, "2026-11-20T00:00:00Z")
        },
    ];
    for key in &keys {
        store.put_key(key).await.unwrap();
    }
    assert!(store.put_key(&keys[0]).await.is_err(), "a key id is stored once");
    assert_eq!(store.key("tk_b").await.unwrap(), Some(keys[0].clone()));
    assert_eq!(store.key("tk_d").await.unwrap(), Some(keys[4].clone()));
    assert_eq!(store.key("tk_missing").await.unwrap(), None);
    // Ordered by app (bytewise: uppercase first), then creation time, then id.
    let order: Vec<String> = store.keys().await.unwrap().into_iter().map(|key| key.id).collect();
    assert_eq!(order, ["tk_c", "tk_0", "tk_a", "tk_b", "tk_d"]);

    let first = at("2026-11-24T00:00:00.123Z");
    assert!(store.revoke_key("tk_a", first).await.unwrap());
    assert!(store.revoke_key("tk_a", at("2026-11-25T00:00:00Z")).await.unwrap());
    assert_eq!(store.key("tk_a").await.unwrap().unwrap().revoked_at, Some(first));
    assert!(!store.revoke_key("tk_missing", first).await.unwrap());
    assert_eq!(store.key("tk_b").await.unwrap().unwrap().revoked_at, None);
}

async fn ping_answers(store: Arc<dyn Storage>) {
    store.ping().await.unwrap();
}

/// The partitions of `events`, by name.
async fn partitions(database: &TestDatabase) -> Vec<String> {
    database
        .client()
        .await
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'events'::regclass ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_events_land_in_monthly_partitions_made_on_demand() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let store = database.open().await;
    assert!(partitions(&database).await.is_empty(), "no partition before any event");
    store
        .insert(vec![
            event("command_executed", "2026-10-31T23:59:59.999Z"),
            event("command_executed", "2026-11-01T00:00:00Z"),
            event("command_executed", "2026-11-30T00:00:00Z"),
            event("command_executed", "2026-12-15T00:00:00Z"),
        ])
        .await
        .unwrap();
    assert_eq!(
        partitions(&database).await,
        ["events_2026_10", "events_2026_11", "events_2026_12"]
    );
    let placed: Vec<(String, i64)> = database
        .client()
        .await
        .query(
            "SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        placed,
        [
            ("events_2026_10".to_owned(), 1),
            ("events_2026_11".to_owned(), 2),
            ("events_2026_12".to_owned(), 1)
        ]
    );

    // Another collector, whose cache knows no partition, writes a later month.
    let second = database.open().await;
    second
        .insert(vec![event("command_executed", "2027-03-01T00:00:00Z")])
        .await
        .unwrap();
    assert_eq!(
        partitions(&database).await.last().map(String::as_str),
        Some("events_2027_03")
    );
    assert_eq!(all_events(&store, "nexus").await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_month_expired_by_another_collector_is_recreated_on_insert() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let (writer, janitor) = (database.open().await, database.open().await);
    writer
        .insert(vec![event("command_executed", "2026-01-10T00:00:00Z")])
        .await
        .unwrap();
    // The writer still believes January has a partition when the janitor drops it.
    assert_eq!(janitor.expire(at("2026-02-01T00:00:00Z")).await.unwrap(), 1);
    assert!(partitions(&database).await.is_empty());
    let straggler = event("command_executed", "2026-01-11T00:00:00Z");
    assert_eq!(writer.insert(vec![straggler.clone()]).await.unwrap(), vec![true]);
    assert_eq!(all_events(&writer, "nexus").await, [straggler]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_collectors_starting_together_migrate_once() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = database.url().to_owned();
            tokio::spawn(async move { PostgresStorage::connect(&url).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().expect("every collector starts");
    }
    let versions: Vec<i32> = database
        .client()
        .await
        .query("SELECT version FROM tally_schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: Vec<i32> = (1..=versions.len() as i32).collect();
    assert!(!versions.is_empty());
    assert_eq!(versions, expected, "each migration applied exactly once");
    // A restart finds nothing to do.
    database.open().await.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_database_is_unavailable() {
    // Port 1 on loopback refuses connections at once.
    let err = PostgresStorage::connect("postgres://postgres@127.0.0.1:1/tally")
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    let err = PostgresStorage::connect("postgres://postgres@127.0.0.1:1/tally?connect_timeout=nope")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Internal(_)),
        "a bad URL is not an outage: {err:?}"
    );
}

async fn a_batch_the_database_refuses_changes_nothing(backend: &Backend) {
    let store = backend.store();
    let committed: Vec<Event> = (0..3)
        .map(|second| event("command_executed", &format!("2026-11-22T01:02:0{second}.000Z")))
        .collect();
    assert_eq!(store.insert(committed.clone()).await.unwrap(), vec![true; 3]);
    backend.refuse_events_named("refused_event").await;
    let before = backend.snapshot().await;

    let of_another_session = |name: &str, ts: &str| Event {
        install_id: "install-b".into(),
        session_id: "session-2".into(),
        duration_ms: Some(250),
        ..event(name, ts)
    };
    let first_new = of_another_session("task_completed", "2026-11-22T02:00:00.000Z");
    let second_new = of_another_session("error_occurred", "2026-11-22T02:00:02.000Z");
    // New events before and after the refused one, a duplicate of a committed event and
    // a repeat inside the batch.
    let batch = vec![
        first_new.clone(),
        committed[0].clone(),
        of_another_session("refused_event", "2026-11-22T02:00:01.000Z"),
        second_new.clone(),
        first_new.clone(),
    ];
    assert!(store.insert(batch).await.is_err(), "the database refused a row");
    assert_eq!(backend.snapshot().await, before, "a refused batch leaves no trace");

    // Nothing of the refused batch lingers for the next one on the same connections.
    let retried = vec![
        first_new.clone(),
        committed[0].clone(),
        second_new.clone(),
        first_new.clone(),
    ];
    assert_eq!(store.insert(retried).await.unwrap(), vec![true, false, true, false]);
    let mut expected = committed;
    expected.extend([first_new, second_new]);
    assert_eq!(all_events(&store, "nexus").await, sorted(expected));
    assert_eq!(
        store.totals().await.unwrap(),
        vec![
            total("nexus", "command", "command_executed", -1, 3),
            total("nexus", "error", "error_occurred", -1, 1),
            total("nexus", "task", "task_completed", -1, 1),
        ]
    );
    let session = backend.session("session-2").await.unwrap();
    assert_eq!((session.tasks_completed, session.errors_encountered), (1, 1));
}

async fn concurrent_batches_with_overlapping_events_store_and_count_each_once(store: Arc<dyn Storage>) {
    let start = at("2026-11-22T00:00:00Z");
    let events: Vec<Event> = (0..240i64)
        .map(|index| Event {
            ts: start.checked_add((index * 13).seconds()).unwrap(),
            install_id: format!("install-{}", index % 6),
            session_id: format!("session-{}", index % 6),
            duration_ms: Some(index as u64),
            ..event(
                ["command_executed", "task_completed"][index as usize % 2],
                "2026-11-22T00:00:00Z",
            )
        })
        .collect();
    // Eight batches of 60 events, each overlapping its neighbours by 30, in turn in
    // reverse order, and each repeating its first event at its end: every event is
    // sent two to three times, at once.
    let batches: Vec<Vec<Event>> = (0..8)
        .map(|index| {
            let mut batch: Vec<Event> = events.iter().cycle().skip(index * 30).take(60).cloned().collect();
            if index % 2 == 1 {
                batch.reverse();
            }
            batch.push(batch[0].clone());
            batch
        })
        .collect();
    let sent: usize = batches.iter().map(Vec::len).sum();
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let ids: Vec<Uuid> = batch.iter().map(|event| event.id).collect();
                let flags = store.insert(batch).await.unwrap();
                ids.into_iter().zip(flags).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut new_per_event: BTreeMap<Uuid, usize> = BTreeMap::new();
    let mut answers = 0;
    for task in tasks {
        for (id, new) in task.await.unwrap() {
            answers += 1;
            *new_per_event.entry(id).or_default() += usize::from(new);
        }
    }
    assert_eq!(answers, sent, "one answer per event sent");
    for event in &events {
        assert_eq!(
            new_per_event[&event.id], 1,
            "event {} is new to exactly one batch",
            event.id
        );
    }
    assert_eq!(all_events(&store, "nexus").await, events);
    let totals = store.totals().await.unwrap();
    assert_eq!(
        totals,
        vec![
            total("nexus", "command", "command_executed", -1, 120),
            total("nexus", "task", "task_completed", -1, 120),
        ]
    );
    let rollups = store
        .rollups("nexus", &hours("2026-11-22T00", "2026-11-23T00"))
        .await
        .unwrap();
    assert_eq!(rollups.iter().map(|(_, row)| row.count).sum::<u64>(), 240);
    assert_eq!(
        rollups.iter().map(|(_, row)| row.duration_total_ms).sum::<u64>(),
        (0..240).sum::<u64>()
    );
    let active = store.active_installs(&[start]).await.unwrap();
    assert_eq!(active, vec![("nexus".to_owned(), vec![6])]);
}
