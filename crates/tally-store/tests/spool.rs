//! Spooled events reach the store once, whatever happened to the files in between.

use tally_core::hashing::SECRET_LEN;
use tally_store::{DropCounts, Identity, OpenOptions, Spool, Store};

use crate::app_events::{AppRun, INSTALL_ID, before, now, task_done};

const SESSION: &str = "0198a0b1-0000-7000-8000-0000000000c1";

fn store_with_identity(dir: &std::path::Path) -> Store {
    let mut store = Store::open(dir, &OpenOptions::default()).unwrap();
    let identity = Identity {
        install_id: INSTALL_ID.to_owned(),
        secret: [1; SECRET_LEN],
    };
    store.adopt_identity(&identity).unwrap();
    Spool::new(dir).write_identity(&identity).unwrap();
    store
}

fn spool_three(dir: &std::path::Path) -> std::path::PathBuf {
    let run = AppRun::new(SESSION);
    let events: Vec<_> = (0..3).map(|i| run.record(task_done(before(now(), i)))).collect();
    let drops = DropCounts {
        buffer_full: 2,
        ..DropCounts::default()
    };
    assert_eq!(Spool::new(dir).write(&events, drops, 0).unwrap(), 3);
    spool_files(dir).pop().unwrap()
}

fn spool_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("spool"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "spool"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_file_folded_again_after_a_crash_counts_nothing_twice() {
    let temp = tempfile::tempdir().unwrap();
    let mut store = store_with_identity(temp.path());
    let file = spool_three(temp.path());
    let bytes = std::fs::read(&file).unwrap();
    let report = store.fold_spools(&|| false).unwrap();
    assert_eq!((report.files, report.inserted), (1, 3));
    assert!(spool_files(temp.path()).is_empty(), "a folded file is removed");
    // The folder died after its commit, before removing the file: it comes back.
    std::fs::write(&file, &bytes).unwrap();
    let again = store.fold_spools(&|| false).unwrap();
    assert_eq!((again.files, again.inserted), (1, 0));
    assert_eq!(store.event_count().unwrap(), 3);
    assert_eq!(store.drop_counts().unwrap().buffer_full, 2, "drop counts added once");
    let rolled: u64 = store.totals().unwrap().values().map(|rollup| rollup.count).sum();
    assert_eq!(rolled, 3);
}

#[test]
fn a_torn_record_is_skipped_and_counted_never_misread() {
    let temp = tempfile::tempdir().unwrap();
    let mut store = store_with_identity(temp.path());
    let file = spool_three(temp.path());
    let bytes = std::fs::read(&file).unwrap();
    // Cut inside the third event: the drop-count record after it is lost too.
    let third = bytes
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'\n')
        .nth(2)
        .unwrap()
        .0;
    std::fs::write(&file, &bytes[..third + 40]).unwrap();
    let report = store.fold_spools(&|| false).unwrap();
    assert_eq!(report.inserted, 2);
    assert_eq!(store.drop_counts().unwrap().spool_failed, 1);
}

#[test]
fn events_of_another_identity_are_dropped_as_a_purge_would() {
    let temp = tempfile::tempdir().unwrap();
    let mut store = Store::open(temp.path(), &OpenOptions::default()).unwrap();
    store.identity().unwrap(); // not the one the events were hashed with
    spool_three(temp.path());
    let report = store.fold_spools(&|| false).unwrap();
    assert_eq!((report.inserted, report.stale), (0, 3));
    assert_eq!(store.event_count().unwrap(), 0);
}

#[test]
fn a_claim_of_a_live_process_is_left_to_it() {
    let temp = tempfile::tempdir().unwrap();
    let mut store = store_with_identity(temp.path());
    let file = spool_three(temp.path());
    let name = file.file_stem().unwrap().to_string_lossy().into_owned();
    let now = jiff::Timestamp::now().as_millisecond();
    let claimed = file.with_file_name(format!("{name}.claimed-{now}-{}", std::process::id()));
    std::fs::rename(&file, &claimed).unwrap();
    assert_eq!(store.fold_spools(&|| false).unwrap().inserted, 0);
    // Its owner gone (no such pid), the claim is taken over.
    let dead = file.with_file_name(format!("{name}.claimed-{now}-{}", u32::MAX - 1));
    std::fs::rename(&claimed, &dead).unwrap();
    assert_eq!(store.fold_spools(&|| false).unwrap().inserted, 3);
}

/// A short run that finds a backlog opens the store to fold it, and its host has usually
/// asked to exit by the time the store is open: the first batch is folded all the same,
/// or every following run would open the store for nothing.
#[test]
fn a_fold_asked_to_stop_at_once_still_folds_its_first_batch() {
    let temp = tempfile::tempdir().unwrap();
    let mut store = store_with_identity(temp.path());
    for _ in 0..64 {
        spool_three(temp.path());
    }
    let report = store.fold_spools(&|| true).unwrap();
    assert_eq!((report.files, report.inserted), (64, 192));
    assert!(spool_files(temp.path()).is_empty());
    assert_eq!(store.event_count().unwrap(), 192);
}

/// ... but not for a store another process holds: the exiting host would pay for
/// claiming, reading and releasing every file, and fold nothing.
#[test]
fn a_fold_asked_to_stop_at_once_leaves_a_held_store_and_its_files_alone() {
    let temp = tempfile::tempdir().unwrap();
    let mut store = store_with_identity(temp.path());
    store.set_busy_timeout(std::time::Duration::ZERO).unwrap();
    let files: Vec<_> = (0..4).map(|_| spool_three(temp.path())).collect();
    let holder = rusqlite::Connection::open(temp.path().join(tally_store::DB_FILE_NAME)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let report = store.fold_spools(&|| true).unwrap();
    assert_eq!(report.files, 0);
    assert!(files.iter().all(|file| file.exists()), "every file stays, unclaimed");
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(store.fold_spools(&|| true).unwrap().files, 4);
}
