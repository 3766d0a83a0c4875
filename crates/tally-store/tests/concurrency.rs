//! Several writers, each with its own connection, on one file at once.

use std::sync::Barrier;

use tally_core::Event;
use tally_store::{DropCounts, OpenOptions, Store, StoreError};

use crate::app_events::{AppRun, before, now, task_done};

const WRITERS: usize = 4;
const BATCHES_PER_WRITER: usize = 250;
const EVENTS_PER_BATCH: usize = 4;

/// One writer: opens the store when the others do, then writes its batches.
fn write_batches(dir: &std::path::Path, writer: usize, start: &Barrier) -> Result<(), StoreError> {
    let run = AppRun::new(&format!("0198a0b1-0000-7000-8000-00000000d00{writer}"));
    start.wait();
    let mut store = Store::open(dir, &OpenOptions::default())?;
    for batch in 0..BATCHES_PER_WRITER {
        let events: Vec<Event> = (0..EVENTS_PER_BATCH)
            .map(|i| run.record(task_done(before(now(), (batch * EVENTS_PER_BATCH + i) as i64))))
            .collect();
        let outcome = store.insert_batch(
            &events,
            DropCounts {
                buffer_full: 1,
                invalid: 0,
                ..DropCounts::default()
            },
        )?;
        assert_eq!(outcome.inserted, EVENTS_PER_BATCH);
    }
    Ok(())
}

#[test]
fn four_writers_on_one_new_file_lose_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    // All writers open the file at the same moment, so they also race to create it and
    // its schema, as processes of one app do on its first run.
    let start = Barrier::new(WRITERS);
    let results: Vec<Result<(), StoreError>> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (dir, start) = (&dir, &start);
                scope.spawn(move || write_batches(dir, writer, start))
            })
            .collect();
        writers.into_iter().map(|writer| writer.join().unwrap()).collect()
    });
    for (writer, result) in results.iter().enumerate() {
        assert!(result.is_ok(), "writer {writer}: {result:?}");
    }

    let store = Store::open(&dir, &OpenOptions::default()).unwrap();
    let per_writer = (BATCHES_PER_WRITER * EVENTS_PER_BATCH) as u64;
    assert_eq!(store.event_count().unwrap(), WRITERS as u64 * per_writer);
    for writer in 0..WRITERS {
        let session = store
            .session(&format!("0198a0b1-0000-7000-8000-00000000d00{writer}"))
            .unwrap()
            .unwrap();
        assert_eq!(session.commands_executed as u64, per_writer, "writer {writer}");
    }
    assert_eq!(
        store.drop_counts().unwrap().buffer_full,
        (WRITERS * BATCHES_PER_WRITER) as u64
    );
    assert_eq!(store.totals().unwrap(), store.raw_totals().unwrap());
    store.quick_check().unwrap();
}

/// Opening alone, many times over: the window in which one process has made the schema
/// and another is still looking at the new file is small, so try it often.
#[test]
fn processes_opening_one_new_file_at_once_all_see_a_store() {
    const ROUNDS: usize = 40;
    const OPENERS: usize = 8;
    for round in 0..ROUNDS {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("store");
        let start = Barrier::new(OPENERS);
        let results: Vec<Result<Store, StoreError>> = std::thread::scope(|scope| {
            let openers: Vec<_> = (0..OPENERS)
                .map(|_| {
                    let (dir, start) = (&dir, &start);
                    scope.spawn(move || {
                        start.wait();
                        Store::open(dir, &OpenOptions::default())
                    })
                })
                .collect();
            openers.into_iter().map(|opener| opener.join().unwrap()).collect()
        });
        for (opener, result) in results.iter().enumerate() {
            assert!(
                result.is_ok(),
                "round {round}, opener {opener}: {:?}",
                result.as_ref().err()
            );
        }
    }
}
