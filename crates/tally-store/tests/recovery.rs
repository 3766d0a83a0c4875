//! A store that cannot be used as it is: damaged files are moved aside for a fresh
//! store, an unwritable location gives a store in memory.

use std::path::{Path, PathBuf};

use tally_core::Event;
use tally_store::{DB_FILE_NAME, DropCounts, Location, OpenOptions, Recovery, Store};

use crate::app_events::{AppRun, before, now, task_done};
use crate::prng::XorShift;

const SESSION: &str = "0198a0b1-0000-7000-8000-0000000000b1";

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

/// Opens `dir` expecting its file to be moved aside; checks the moved files and that
/// the fresh store works. Returns where the file went.
fn assert_moved_aside_for_a_fresh_store(dir: &Path, damaged: &[u8]) -> PathBuf {
    let (mut store, recovery) = Store::open_or_recover(dir, &OpenOptions::default()).unwrap();
    let Recovery::MovedAside { reason, moved_to } = recovery else {
        panic!("expected the file to be moved aside, got {recovery:?}");
    };
    assert!(!reason.is_empty());
    assert_eq!(moved_to.parent(), Some(dir));
    assert!(
        std::fs::read(&moved_to).unwrap() == damaged,
        "the moved file is not the damaged one"
    );

    assert_eq!(store.location(), &Location::File(dir.join(DB_FILE_NAME)));
    assert_eq!(store.event_count().unwrap(), 0);
    let event = AppRun::new(SESSION).record(task_done(now()));
    store.insert_batch(&[event], DropCounts::default()).unwrap();
    store.quick_check().unwrap();
    drop(store);

    let (store, recovery) = Store::open_or_recover(dir, &OpenOptions::default()).unwrap();
    assert_eq!(recovery, Recovery::None);
    assert_eq!(store.event_count().unwrap(), 1);
    moved_to
}

/// A real store of a few hundred pages, closed cleanly; returns its file.
fn build_real_store(dir: &Path) -> PathBuf {
    let mut store = Store::open(dir, &OpenOptions::default()).unwrap();
    let run = AppRun::new(SESSION);
    let events: Vec<Event> = (0..3_000)
        .map(|i| run.record(task_done(before(now(), i)).prop("step", i)))
        .collect();
    store.insert_batch(&events, DropCounts::default()).unwrap();
    // Connections do not checkpoint on close; move everything into the main file, which
    // the tests then damage.
    assert!(store.checkpoint_now(std::time::Duration::from_secs(5)).unwrap());
    drop(store);
    dir.join(DB_FILE_NAME)
}

#[test]
fn garbage_in_place_of_the_store_is_moved_aside() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let path = dir.join(DB_FILE_NAME);
    let mut random = XorShift::seeded(7);
    let garbage = random.bytes(64 * 1024);
    let (wal, shm) = (random.bytes(4096), random.bytes(32 * 1024));
    std::fs::write(&path, &garbage).unwrap();
    std::fs::write(with_suffix(&path, "-wal"), &wal).unwrap();
    std::fs::write(with_suffix(&path, "-shm"), &shm).unwrap();

    assert_moved_aside_for_a_fresh_store(dir, &garbage);
    // SQLite itself discards a WAL without a valid frame when the last connection to
    // the file closes, so whether it was moved or dropped, none of it may sit beside
    // the fresh store.
    for (suffix, old) in [("-wal", &wal), ("-shm", &shm)] {
        if let Ok(beside) = std::fs::read(with_suffix(&path, suffix)) {
            assert!(beside != *old, "the old {suffix} was left beside the fresh store");
        }
    }
}

#[test]
fn a_store_damaged_while_another_connection_has_it_open_is_moved_aside_with_its_wal_and_shm() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let path = dir.join(DB_FILE_NAME);
    // Another writer (a connection, as another process would hold) keeps the store
    // open, so SQLite cannot discard its -wal and -shm: they must move with the file.
    let mut other = Store::open(dir, &OpenOptions::default()).unwrap();
    let run = AppRun::new(SESSION);
    other
        .insert_batch(&[run.record(task_done(now()))], DropCounts::default())
        .unwrap();
    other
        .connection()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..4096].copy_from_slice(&XorShift::seeded(11).bytes(4096));
    std::fs::write(&path, &bytes).unwrap();

    let moved_to = assert_moved_aside_for_a_fresh_store(dir, &bytes);
    assert!(
        with_suffix(&moved_to, "-wal").exists(),
        "the -wal was not moved with the file"
    );
    assert!(
        with_suffix(&moved_to, "-shm").exists(),
        "the -shm was not moved with the file"
    );
    drop(other);
}

#[test]
fn a_truncated_store_is_moved_aside() {
    let temp = tempfile::tempdir().unwrap();
    let path = build_real_store(temp.path());
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.len() > 100 * 4096,
        "the store is too small to truncate meaningfully"
    );
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, &bytes).unwrap();

    assert_moved_aside_for_a_fresh_store(temp.path(), &bytes);
}

/// A real store whose bytes in `range` (of the file's length) are overwritten with
/// garbage; the header stays valid.
fn build_damaged_store(dir: &Path, range: impl Fn(usize) -> std::ops::Range<usize>) -> Vec<u8> {
    let path = build_real_store(dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let range = range(bytes.len());
    let garbage = XorShift::seeded(range.start as u64).bytes(range.len());
    bytes[range].copy_from_slice(&garbage);
    std::fs::write(&path, &bytes).unwrap();
    bytes
}

/// Sixteen pages a third into the file: events and index entries, not the schema.
fn event_pages(len: usize) -> std::ops::Range<usize> {
    let start = len / 3 / 4096 * 4096;
    start..start + 16 * 4096
}

#[test]
fn a_store_with_a_damaged_schema_page_is_moved_aside() {
    let temp = tempfile::tempdir().unwrap();
    // The first page holds the header and then the schema.
    let bytes = build_damaged_store(temp.path(), |_| 100..4096);
    assert_moved_aside_for_a_fresh_store(temp.path(), &bytes);
}

#[test]
fn damaged_event_pages_are_reported_by_quick_check() {
    let temp = tempfile::tempdir().unwrap();
    build_damaged_store(temp.path(), event_pages);
    let store = Store::open(temp.path(), &OpenOptions::default()).unwrap();
    let err = store.quick_check().unwrap_err();
    assert!(err.is_corrupt(), "{err:?}");
}

#[test]
fn a_store_with_damaged_event_pages_is_found_by_quick_check_and_replaced() {
    // Damaged data pages pass the header and schema reads of `open`; the SDK finds them
    // with `quick_check` during its daily maintenance (or when a write meets them) and
    // then replaces the store.
    let temp = tempfile::tempdir().unwrap();
    let bytes = build_damaged_store(temp.path(), event_pages);
    let (store, recovery) = Store::open_or_recover(temp.path(), &OpenOptions::default()).unwrap();
    assert_eq!(recovery, Recovery::None);
    let err = store.quick_check().unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    drop(store);
    let (mut store, recovery) = Store::replace_corrupt(temp.path(), &OpenOptions::default(), err.to_string()).unwrap();
    let Recovery::MovedAside { moved_to, .. } = recovery else {
        panic!("expected the file to be moved aside, got {recovery:?}");
    };
    assert!(
        std::fs::read(&moved_to).unwrap() == bytes,
        "the moved file is not the damaged one"
    );
    assert_eq!(store.event_count().unwrap(), 0);
    let event = AppRun::new(SESSION).record(task_done(now()));
    store.insert_batch(&[event], DropCounts::default()).unwrap();
    store.quick_check().unwrap();
}

#[test]
fn an_unwritable_location_gives_a_store_in_memory() {
    let temp = tempfile::tempdir().unwrap();
    // Tests run as root, for whom permissions do not stop a write; a directory that
    // would have to be made inside a regular file cannot be made by anyone.
    let blocker = temp.path().join("file.txt");
    std::fs::write(&blocker, "not a directory").unwrap();
    let dir = blocker.join("sub");
    // And a directory where the store file should be: no one can open it as a file.
    let occupied = temp.path().join("occupied");
    std::fs::create_dir_all(occupied.join(DB_FILE_NAME)).unwrap();

    for dir in [dir, occupied] {
        let (mut store, recovery) = Store::open_or_recover(&dir, &OpenOptions::default()).unwrap();
        assert!(
            matches!(recovery, Recovery::InMemory { .. }),
            "{}: {recovery:?}",
            dir.display()
        );
        assert_eq!(store.location(), &Location::Memory);
        let run = AppRun::new(SESSION);
        let events = [run.record(task_done(now())), run.record(task_done(now()))];
        let outcome = store.insert_batch(&events, DropCounts::default()).unwrap();
        assert_eq!(outcome.inserted, 2);
        assert_eq!(store.session(SESSION).unwrap().unwrap().commands_executed, 2);
    }
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "not a directory");
}
