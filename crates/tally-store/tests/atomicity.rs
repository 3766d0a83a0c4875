//! A batch is stored whole or not at all, and a batch sent again is stored once.

use tally_core::Event;
use tally_store::read::{SessionRow, Totals};
use tally_store::{BatchOutcome, DropCounts, Store};

use crate::app_events::{AppRun, before, now, task_done};

const EARLIER_SESSION: &str = "0198a0b1-0000-7000-8000-00000000000a";
const NEW_SESSION: &str = "0198a0b1-0000-7000-8000-00000000000b";

/// Everything a failed batch must leave as it was.
#[derive(Debug, PartialEq)]
struct Visible {
    events: u64,
    earlier_session: Option<SessionRow>,
    new_session: Option<SessionRow>,
    drops: DropCounts,
    totals: Totals,
}

fn visible(store: &Store) -> Visible {
    Visible {
        events: store.event_count().unwrap(),
        earlier_session: store.session(EARLIER_SESSION).unwrap(),
        new_session: store.session(NEW_SESSION).unwrap(),
        drops: store.drop_counts().unwrap(),
        totals: store.totals().unwrap(),
    }
}

/// 25 events of a session already stored, then (when `poisoned`) one the test trigger
/// refuses, then 25 events of a new session, counting toward every session counter.
fn mixed_batch(poisoned: bool) -> Vec<Event> {
    let earlier = AppRun::new(EARLIER_SESSION);
    let new = AppRun::new(NEW_SESSION);
    let names = [
        "command_executed",
        "workspace_created",
        "task_completed",
        "error_occurred",
    ];
    let mut events: Vec<Event> = (0..25)
        .map(|i| earlier.record(task_done(before(now(), 1_000 - i))))
        .collect();
    if poisoned {
        events.push(earlier.record(Event::builder("command", "poison").ts(now())));
    }
    events.extend((0..25).map(|i| {
        let name = names[i as usize % names.len()];
        new.record(Event::builder("command", name).ts(before(now(), 500 - i)))
    }));
    events
}

#[test]
fn a_batch_that_fails_midway_leaves_no_trace() {
    let mut store = Store::open_in_memory().unwrap();
    let earlier = AppRun::new(EARLIER_SESSION);
    let first: Vec<Event> = (0..3)
        .map(|i| earlier.record(task_done(before(now(), 5_000 - i))))
        .collect();
    let drops = DropCounts {
        buffer_full: 2,
        invalid: 1,
        ..DropCounts::default()
    };
    store.insert_batch(&first, drops).unwrap();
    let before_failures = visible(&store);

    // Each trigger fails the batch at a later step of the transaction: while the events
    // go in, after they are in (updating a session) and at the very end (the second
    // drop counter, after the first was added).
    let failures = [
        (
            "an event",
            "BEFORE INSERT ON event_rows WHEN NEW.name = (SELECT id FROM strings WHERE value = 'poison')",
            true,
        ),
        ("a session", "BEFORE UPDATE ON session_rows", false),
        (
            "a drop counter",
            "BEFORE UPDATE ON meta WHEN NEW.key = 'dropped_invalid'",
            false,
        ),
    ];
    for (step, trigger, poisoned) in failures {
        store
            .connection()
            .execute_batch(&format!(
                "CREATE TEMP TRIGGER fail_batch {trigger} BEGIN SELECT RAISE(ABORT, 'poison'); END"
            ))
            .unwrap();
        let drops = DropCounts {
            buffer_full: 5,
            invalid: 3,
            ..DropCounts::default()
        };
        let err = store.insert_batch(&mixed_batch(poisoned), drops).unwrap_err();
        assert!(err.to_string().contains("poison"), "failing at {step}: {err}");
        assert_eq!(visible(&store), before_failures, "failing at {step}");
        store
            .connection()
            .execute_batch("DROP TRIGGER temp.fail_batch")
            .unwrap();
    }

    // The same batch goes in once nothing refuses it, so the failures above were the
    // triggers and not the batch.
    let outcome = store
        .insert_batch(
            &mixed_batch(false),
            DropCounts {
                buffer_full: 5,
                invalid: 3,
                ..DropCounts::default()
            },
        )
        .unwrap();
    assert_eq!(outcome.inserted, 50);
    let after = visible(&store);
    assert_eq!(after.events, 53);
    assert_eq!(after.earlier_session.unwrap().commands_executed, 28);
    assert_eq!(after.new_session.unwrap().errors_encountered, 6);
    assert_eq!(
        after.drops,
        DropCounts {
            buffer_full: 7,
            invalid: 4,
            ..DropCounts::default()
        }
    );
}

#[test]
fn a_batch_sent_twice_is_stored_once() {
    let mut store = Store::open_in_memory().unwrap();
    let batch = mixed_batch(false);
    let outcome = store.insert_batch(&batch, DropCounts::default()).unwrap();
    assert_eq!(
        outcome,
        BatchOutcome {
            inserted: 50,
            duplicates: 0,
            stored: vec![true; 50],
        }
    );
    let once = visible(&store);

    let outcome = store.insert_batch(&batch, DropCounts::default()).unwrap();
    assert_eq!(
        outcome,
        BatchOutcome {
            inserted: 0,
            duplicates: 50,
            stored: vec![false; 50],
        }
    );
    assert_eq!(visible(&store), once, "a retried batch changed the store");

    // A retry that overlaps new events stores only the new ones, and an event repeated
    // within one batch is stored once.
    let run = AppRun::new(NEW_SESSION);
    let fresh = run.record(task_done(now()));
    let overlapping = [batch[0].clone(), fresh.clone(), batch[49].clone(), fresh];
    let outcome = store.insert_batch(&overlapping, DropCounts::default()).unwrap();
    assert_eq!(
        outcome,
        BatchOutcome {
            inserted: 1,
            duplicates: 3,
            stored: vec![false, true, false, false],
        }
    );
    assert_eq!(store.event_count().unwrap(), 51);
    let session = store.session(NEW_SESSION).unwrap().unwrap();
    assert_eq!(
        session.commands_executed,
        once.new_session.unwrap().commands_executed + 1
    );
}

#[test]
fn a_duplicate_leaves_none_of_its_own_values_in_the_dictionaries() {
    let mut store = Store::open_in_memory().unwrap();
    let first = AppRun::new(EARLIER_SESSION).record(task_done(now()));
    store
        .insert_batch(std::slice::from_ref(&first), DropCounts::default())
        .unwrap();

    // The same id again, claiming another command, session and install.
    let mut resent = AppRun::new("another-session").record(task_done(now()).command("never counted"));
    resent.id = first.id;
    resent.install_id = "another-install".into();
    let outcome = store.insert_batch(&[resent], DropCounts::default()).unwrap();
    assert_eq!(outcome.duplicates, 1);
    let count = |sql: &str| -> i64 { store.connection().query_row(sql, [], |row| row.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM strings WHERE value = 'never counted'"), 0);
    assert_eq!(
        count("SELECT count(*) FROM session_ids WHERE value = 'another-session'"),
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM install_ids WHERE value = 'another-install'"),
        0
    );
    // What the stored event uses stays.
    assert_eq!(count("SELECT count(*) FROM strings WHERE value = 'task done'"), 1);
    assert_eq!(store.session(EARLIER_SESSION).unwrap().unwrap().commands_executed, 1);
}
