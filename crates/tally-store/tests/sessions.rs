//! The `sessions` row a run's events add up to, over several batches.

use tally_core::{Event, Timestamp};
use tally_store::read::SessionRow;
use tally_store::{DropCounts, Store};

use crate::app_events::{AppRun, task_done};

const SESSION: &str = "0198a0b1-0000-7000-8000-0000000000c1";
const OTHER_SESSION: &str = "0198a0b1-0000-7000-8000-0000000000c2";

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[test]
fn a_session_row_sums_every_batch_of_its_session() {
    let temp = tempfile::tempdir().unwrap();
    let mut store = Store::open(temp.path(), &Default::default()).unwrap();
    let run = AppRun::new(SESSION);
    let other = AppRun::new(OTHER_SESSION);

    // Batches arrive out of time order, as they do when several threads of one run
    // flush; the row must still span the earliest to the latest event.
    let first = vec![
        run.record(task_done(at("2026-11-22T10:00:05.250Z"))),
        run.record(Event::builder("workspace", "workspace_created").ts(at("2026-11-22T10:00:01.000Z"))),
        run.record(Event::builder("task", "task_completed").ts(at("2026-11-22T10:00:10.000Z"))),
        other.record(task_done(at("2026-11-22T09:00:00.000Z"))),
    ];
    store.insert_batch(&first, DropCounts::default()).unwrap();
    let second = vec![
        run.record(Event::builder("session", "session_started").ts(at("2026-11-22T09:59:59.877Z"))),
        run.record(Event::builder("error", "error_occurred").ts(at("2026-11-22T10:01:00.500Z"))),
        run.record(task_done(at("2026-11-22T10:00:30.000Z"))),
        run.record(Event::builder("task", "task_completed").ts(at("2026-11-22T10:00:40.000Z"))),
        // A retried event is not counted again.
        first[0].clone(),
    ];
    store.insert_batch(&second, DropCounts::default()).unwrap();
    // A batch within the span changes the counters and nothing else.
    let third = vec![run.record(Event::builder("workspace", "workspace_created").ts(at("2026-11-22T10:00:20.000Z")))];
    store.insert_batch(&third, DropCounts::default()).unwrap();

    assert_eq!(
        store.session(SESSION).unwrap(),
        Some(SessionRow {
            session_id: SESSION.into(),
            started_at: "2026-11-22T09:59:59.877Z".into(),
            ended_at: "2026-11-22T10:01:00.500Z".into(),
            duration_ms: 60_623,
            commands_executed: 2,
            workspaces_created: 2,
            tasks_completed: 2,
            errors_encountered: 1,
        })
    );
    assert_eq!(
        store.session(OTHER_SESSION).unwrap(),
        Some(SessionRow {
            session_id: OTHER_SESSION.into(),
            started_at: "2026-11-22T09:00:00.000Z".into(),
            ended_at: "2026-11-22T09:00:00.000Z".into(),
            duration_ms: 0,
            commands_executed: 1,
            workspaces_created: 0,
            tasks_completed: 0,
            errors_encountered: 0,
        })
    );
    assert_eq!(store.session("no-such-session").unwrap(), None);
}

#[test]
fn a_session_id_is_a_session_only_within_its_app_and_install() {
    let temp = tempfile::tempdir().unwrap();
    let mut store = Store::open(temp.path(), &Default::default()).unwrap();
    let run = AppRun::new(SESSION);
    let own = vec![
        run.record(task_done(at("2026-11-22T10:00:00.000Z"))),
        run.record(task_done(at("2026-11-22T10:00:00.001Z"))),
    ];
    store.insert_batch(&own, DropCounts::default()).unwrap();
    // Another app, and another install of the same app, reuse the session id with a time
    // 23 hours later (as a hostile or buggy client may).
    let mut foreign_app = run.record(task_done(at("2026-11-23T09:00:00.000Z")));
    foreign_app.app = "other".into();
    let mut foreign_install = run.record(task_done(at("2026-11-23T09:00:00.000Z")));
    foreign_install.install_id = "0193a0b1-0000-4000-8000-0000000000bb".into();
    store
        .insert_batch(&[foreign_app, foreign_install], DropCounts::default())
        .unwrap();

    let rows: Vec<(String, String, i64, i64)> = store
        .connection()
        .prepare("SELECT app, install_id, duration_ms, commands_executed FROM sessions ORDER BY app, install_id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [
            ("nexus".into(), crate::app_events::INSTALL_ID.into(), 1, 2),
            ("nexus".into(), "0193a0b1-0000-4000-8000-0000000000bb".into(), 0, 1),
            ("other".into(), crate::app_events::INSTALL_ID.into(), 0, 1),
        ],
        "the first session still lasts 1 ms and holds its own two commands"
    );
}

/// What the collector's `tally view` reads for charts by day: the rollups summed per UTC
/// day, and the installs that had a session in given periods.
#[test]
fn daily_rollups_sum_each_days_hours_and_sessions_tell_the_active_installs() {
    let temp = tempfile::tempdir().unwrap();
    let mut store = Store::open(temp.path(), &Default::default()).unwrap();
    let run = AppRun::new(SESSION);
    let events: Vec<Event> = [
        "2026-11-20T08:00:00Z",
        "2026-11-20T08:30:00Z",
        "2026-11-20T23:59:59Z",
        "2026-11-21T00:00:00Z",
        "2026-11-21T13:15:00Z",
    ]
    .iter()
    .enumerate()
    .map(|(index, ts)| run.record(task_done(at(ts)).duration_ms(10 + index as u64 * 100)))
    .chain([run.record(Event::builder("error", "error_occurred").ts(at("2026-11-21T13:20:00Z")))])
    .collect();
    store.insert_batch(&events, DropCounts::default()).unwrap();

    let period = tally_core::time::Period {
        from: at("2026-11-20T00:00:00Z"),
        to: at("2026-11-22T00:00:00Z"),
    };
    let daily = store.daily_rollups("nexus", &period).unwrap();
    let mut expected: std::collections::BTreeMap<_, tally_store::rollup::Rollup> = Default::default();
    for (mut key, rollup) in store.rollups(Some("nexus"), &period).unwrap() {
        key.hour = format!("{}T00", &key.hour.to_string()[..10]).parse().unwrap();
        expected.entry(key).or_default().merge(&rollup);
    }
    assert_eq!(daily, expected.into_iter().collect::<Vec<_>>());
    let commands: Vec<(String, u64, u64)> = daily
        .iter()
        .filter(|(key, _)| key.name == "command_executed")
        .map(|(key, rollup)| (key.hour.to_string(), rollup.count, rollup.histogram.counts.iter().sum()))
        .collect();
    assert_eq!(
        commands,
        [("2026-11-20T00".to_owned(), 3, 3), ("2026-11-21T00".to_owned(), 2, 2)]
    );
    // Part of a day reads only its hours.
    let evening = tally_core::time::Period {
        from: at("2026-11-20T12:00:00Z"),
        to: at("2026-11-21T12:00:00Z"),
    };
    let counts: Vec<u64> = store
        .daily_rollups("nexus", &evening)
        .unwrap()
        .iter()
        .map(|(_, rollup)| rollup.count)
        .collect();
    assert_eq!(counts, [1, 1]);

    let window = |from: &str, to: &str| tally_core::time::Period {
        from: at(from),
        to: at(to),
    };
    assert_eq!(
        store
            .installs_with_sessions(
                "nexus",
                &[
                    window("2026-11-21T10:00:00Z", "2026-11-21T11:00:00Z"),
                    window("2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"),
                    window("2026-11-19T00:00:00Z", "2026-11-20T08:00:00Z"),
                ]
            )
            .unwrap(),
        [1, 0, 0],
        "a session spanning a window counts; one after or before it does not"
    );
    assert_eq!(store.installs_with_sessions("ledger", &[period]).unwrap(), [0]);
}
