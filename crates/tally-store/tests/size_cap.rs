//! The size cap: a store grown past it is trimmed back under it, oldest raw events
//! first, and totals, which the rollups keep, do not change.

use std::path::Path;

use tally_core::Event;
use tally_store::{DB_FILE_NAME, DropCounts, RetentionPolicy, Store};

use crate::app_events::{AppRun, before, now};

const CAP_BYTES: u64 = 1024 * 1024;
const GROWN_BYTES: u64 = 3 * CAP_BYTES;

/// What the store takes on disk: the database file and its WAL.
fn bytes_on_disk(dir: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            std::fs::metadata(dir.join(format!("{DB_FILE_NAME}{suffix}")))
                .map(|meta| meta.len())
                .unwrap_or(0)
        })
        .sum()
}

fn bytes_in_pages(store: &Store) -> u64 {
    let pages: u64 = store
        .connection()
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap();
    let page_size: u64 = store
        .connection()
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .unwrap();
    pages * page_size
}

/// A failed sync with a long message and a few properties, like the events that make a
/// store grow fastest.
fn failed_sync(run: &AppRun, sequence: i64) -> Event {
    run.record(
        Event::builder("command", "command_executed")
            .command("sync")
            .duration_ms(sequence as u64 % 5_000)
            .success(sequence % 3 != 0)
            .error_category("network")
            .error_message(format!(
                "sync {sequence} failed: the server closed the connection before the upload \
                 finished; the batch will be retried at the next flush with exponential backoff"
            ))
            .prop("attempt", sequence % 7)
            .prop("remote", "origin")
            .prop("pending_events", sequence % 1_000)
            // One event per second, all within retention, so only the cap folds them.
            .ts(before(now(), (100_000 - sequence) * 1_000)),
    )
}

#[test]
fn the_size_cap_keeps_the_newest_events_within_the_cap() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let mut store = Store::open(dir, &Default::default()).unwrap();
    let run = AppRun::new("0198a0b1-0000-7000-8000-0000000000a1");
    let mut events = Vec::new();
    while bytes_in_pages(&store) < GROWN_BYTES {
        let batch: Vec<Event> = (0..500).map(|i| failed_sync(&run, events.len() as i64 + i)).collect();
        store.insert_batch(&batch, DropCounts::default()).unwrap();
        events.extend(batch);
    }
    assert!(bytes_on_disk(dir) > GROWN_BYTES);
    let totals = store.totals().unwrap();

    let policy = RetentionPolicy {
        retention_days: 90,
        max_bytes: CAP_BYTES,
    };
    let report = store.run_maintenance(&policy, now(), &|| false).unwrap();

    assert_eq!(report.expired_for_age, 0);
    assert!(report.trimmed_for_size > 0);
    let on_disk = bytes_on_disk(dir);
    assert!(
        on_disk <= CAP_BYTES,
        "{on_disk} bytes on disk, over the cap of {CAP_BYTES}"
    );
    assert_eq!(store.totals().unwrap(), totals);
    let kept = store.event_count().unwrap();
    assert_eq!(kept, events.len() as u64 - report.trimmed_for_size);
    // The events were made oldest first: the kept ones must be the newest.
    let oldest_kept: String = store
        .connection()
        .query_row("SELECT id FROM events ORDER BY ts LIMIT 1", [], |row| row.get(0))
        .unwrap();
    assert_eq!(oldest_kept, events[events.len() - kept as usize].id.to_string());
    store.quick_check().unwrap();

    // Reopened, the store still sits under the cap: nothing was left for a later
    // checkpoint to write back.
    drop(store);
    let store = Store::open(dir, &Default::default()).unwrap();
    assert_eq!(store.event_count().unwrap(), kept);
    drop(store);
    assert!(bytes_on_disk(dir) <= CAP_BYTES);
}
