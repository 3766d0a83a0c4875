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
