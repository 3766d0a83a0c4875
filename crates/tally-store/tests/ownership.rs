//! A store marks itself (`PRAGMA application_id` and its schema version) and refuses a
//! database that is not one: another program's file, reached directly or through a
//! symlink, is neither changed, adopted, purged nor moved aside.

use std::path::Path;

use rusqlite::Connection;
use tally_store::schema::{APPLICATION_ID, LATEST_VERSION};
use tally_store::{DB_FILE_NAME, DropCounts, OpenOptions, Recovery, Store, StoreError};

use crate::app_events::{AppRun, now, task_done};

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_store_carries_tallys_application_id_and_schema_version() {
    let temp = tempfile::tempdir().unwrap();
    drop(Store::open(temp.path(), &OpenOptions::default()).unwrap());
    let conn = Connection::open(temp.path().join(DB_FILE_NAME)).unwrap();
    let id: i32 = conn.query_row("PRAGMA application_id", [], |row| row.get(0)).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
    assert_eq!((id, version), (APPLICATION_ID, LATEST_VERSION));
    // Reopening a marked store works as before.
    let mut store = Store::open(temp.path(), &OpenOptions::default()).unwrap();
    store
        .insert_batch(&[AppRun::new("s").record(task_done(now()))], DropCounts::default())
        .unwrap();
}

/// Another program's databases: one with tables of its own, one marked with its id.
fn foreign_databases(dir: &Path) -> Vec<std::path::PathBuf> {
    let accounts = dir.join("accounts.db");
    let conn = Connection::open(&accounts).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = DELETE; CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT); \
         INSERT INTO accounts (email) VALUES ('someone@example.com');",
    )
    .unwrap();
    drop(conn);
    let fossil = dir.join("marked.db");
    let conn = Connection::open(&fossil).unwrap();
    conn.execute_batch("PRAGMA application_id = 252006673; CREATE TABLE events (x);")
        .unwrap();
    drop(conn);
    // Named like ours, with another program's tables in it.
    let lookalike = dir.join("lookalike.db");
    let conn = Connection::open(&lookalike).unwrap();
    conn.execute_batch("CREATE TABLE events (id TEXT); CREATE TABLE meta (key, value); CREATE TABLE songs (title);")
        .unwrap();
    drop(conn);
    vec![accounts, fossil, lookalike]
}

#[test]
fn another_programs_database_is_refused_and_left_untouched() {
    let elsewhere = tempfile::tempdir().unwrap();
    for foreign in foreign_databases(elsewhere.path()) {
        for through_symlink in [false, true] {
            let temp = tempfile::tempdir().unwrap();
            let path = temp.path().join(DB_FILE_NAME);
            if through_symlink {
                std::os::unix::fs::symlink(&foreign, &path).unwrap();
            } else {
                std::fs::copy(&foreign, &path).unwrap();
            }
            let bytes = std::fs::read(&path).unwrap();
            let before = files_in(temp.path());
            let case = format!("{} (symlink: {through_symlink})", foreign.display());

            let err = Store::open(temp.path(), &OpenOptions::default()).unwrap_err();
            assert!(matches!(err, StoreError::NotOurs { .. }), "{case}: {err:?}");
            assert!(err.to_string().contains("is not a Tally store"), "{case}: {err}");

            let (mut store, recovery) = Store::open_or_recover(temp.path(), &OpenOptions::default()).unwrap();
            assert!(matches!(recovery, Recovery::InMemory { .. }), "{case}: {recovery:?}");
            // The run still records, in memory; the file is not the place.
            store
                .insert_batch(&[AppRun::new("s").record(task_done(now()))], DropCounts::default())
                .unwrap();
            store.purge().unwrap();
            drop(store);

            assert_eq!(std::fs::read(&path).unwrap(), bytes, "{case}: the file changed");
            assert_eq!(
                files_in(temp.path()),
                before,
                "{case}: something was moved aside or added"
            );
            if through_symlink {
                assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
            }
        }
    }
}

#[test]
fn a_store_from_before_stores_were_marked_is_adopted_and_marked() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join(DB_FILE_NAME);
    {
        let mut conn = Connection::open(&path).unwrap();
        tally_store::schema::migrate_to(&mut conn, 4).unwrap();
        // As a build from before the mark wrote it.
        conn.pragma_update(None, "application_id", 0).unwrap();
    }
    drop(Store::open(temp.path(), &OpenOptions::default()).unwrap());
    let conn = Connection::open(&path).unwrap();
    let id: i32 = conn.query_row("PRAGMA application_id", [], |row| row.get(0)).unwrap();
    assert_eq!(id, APPLICATION_ID);
}
