//! `docs/STORE.md` documents every table and column of a freshly created store, with
//! the declared type, every view and its columns, and nothing the store does not have.

use std::collections::BTreeMap;

use tally_store::{OpenOptions, Store};

/// Table name -> (column, declared type), in order.
type Schema = BTreeMap<String, Vec<(String, String)>>;

/// The `### \`table\`` sections and their `| \`column\` | TYPE | meaning |` rows.
fn documented() -> Schema {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/STORE.md"))
        .expect("read docs/STORE.md");
    let mut schema = Schema::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            // "### `table`", or "### `view` (view)".
            current = heading
                .strip_prefix('`')
                .and_then(|rest| rest.split_once('`'))
                .map(|(name, _)| name.to_owned());
            if let Some(table) = &current {
                schema.insert(table.clone(), Vec::new());
            }
            continue;
        }
        if line.starts_with("## ") {
            current = None;
        }
        let (Some(table), Some(row)) = (&current, line.strip_prefix("| `")) else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        let column = cells[0].trim_end_matches('`').to_owned();
        let declared = cells.get(1).map(|cell| cell.trim().to_owned()).unwrap_or_default();
        schema.get_mut(table).expect("table section").push((column, declared));
    }
    schema
}

/// The tables and views of a new store with their columns, from `PRAGMA table_info`
/// (a view's columns have the type their expression gives, often none: only their
/// names are compared).
fn created() -> (Schema, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), &OpenOptions::default()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join(tally_store::DB_FILE_NAME)).unwrap();
    let names = |kind: &str| -> Vec<String> {
        conn.prepare("SELECT name FROM sqlite_master WHERE type = ?1 AND name NOT LIKE 'sqlite_%'")
            .unwrap()
            .query_map([kind], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let views = names("view");
    let mut schema = Schema::new();
    for table in names("table").into_iter().chain(views.clone()) {
        let columns = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .unwrap()
            .query_map([], |row| Ok((row.get::<_, String>(1)?, row.get::<_, String>(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        schema.insert(table, columns);
    }
    (schema, views)
}

#[test]
fn the_store_document_matches_the_schema_the_code_creates() {
    let (documented, (created, views)) = (documented(), created());
    assert!(
        documented.contains_key("events") && documented.contains_key("event_rows"),
        "the parser found no tables: {documented:?}"
    );
    let names =
        |columns: &[(String, String)]| -> Vec<String> { columns.iter().map(|(name, _)| name.clone()).collect() };
    for (table, columns) in &created {
        if views.contains(table) {
            assert_eq!(
                documented.get(table).map(|columns| names(columns)),
                Some(names(columns)),
                "docs/STORE.md's `{table}` view section differs from the schema (columns)"
            );
            continue;
        }
        assert_eq!(
            documented.get(table),
            Some(columns),
            "docs/STORE.md's `{table}` section differs from the schema (column, type)"
        );
    }
    for table in documented.keys() {
        assert!(
            created.contains_key(table),
            "docs/STORE.md documents `{table}`, which the store does not have"
        );
    }
}

/// What a program reading `events` and `sessions` sees is the documented text form of
/// what was stored, for times across the range, every kind of session id and hash.
#[test]
fn the_views_give_each_value_in_its_documented_text_form() {
    use crate::app_events::{AppRun, task_done};
    let mut store = Store::open_in_memory().unwrap();
    let times = [
        "2026-11-22T10:00:00.000Z",
        "2026-11-22T10:00:00.001Z",
        "2026-11-22T23:59:59.999Z",
        "2000-02-29T12:34:56.789Z",
        "1970-01-01T00:00:00.000Z",
        "1969-12-31T23:59:59.999Z",
        "0001-01-01T00:00:00.001Z",
        "9999-12-30T12:00:00.999Z",
    ];
    let sessions = [
        "0198a0b1-0000-7000-8000-000000000001",
        "0198A0B1-0000-7000-8000-000000000002",
        "run-42",
    ];
    let mut events = Vec::new();
    for (i, ts) in times.iter().enumerate() {
        let run = AppRun::new(sessions[i % sessions.len()]);
        let mut event = run.record(task_done(tally_core::time::parse(ts).unwrap()).workspace(format!("w{i}")));
        if i % 2 == 1 {
            // A value that is not a keyed hash stays as given.
            event.workspace = Some(format!("not-a-hash-{i}"));
        }
        events.push(event);
    }
    store.insert_batch(&events, tally_store::DropCounts::default()).unwrap();

    let conn = store.connection();
    let mut statement = conn
        .prepare("SELECT id, ts, session_id, workspace, install_id, name, command FROM events ORDER BY seq")
        .unwrap();
    let seen: Vec<[String; 7]> = statement
        .query_map([], |row| {
            Ok([
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
            ])
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<[String; 7]> = events
        .iter()
        .map(|event| {
            [
                event.id.to_string(),
                tally_core::time::format(event.ts),
                event.session_id.clone(),
                event.workspace.clone().unwrap(),
                event.install_id.clone(),
                event.name.clone(),
                event.command.clone().unwrap(),
            ]
        })
        .collect();
    assert_eq!(seen, expected);
    assert!(
        expected.iter().any(|row| row[3].starts_with("h1:")),
        "some hashes were stored as bytes"
    );

    let mut statement = conn
        .prepare("SELECT session_id, started_at, ended_at FROM sessions ORDER BY started_at")
        .unwrap();
    let seen: Vec<(String, String, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut expected: Vec<(String, String, String)> = sessions
        .iter()
        .map(|session| {
            let times: Vec<_> = events
                .iter()
                .filter(|event| event.session_id == *session)
                .map(|event| event.ts)
                .collect();
            let text = |ts| tally_core::time::format(ts);
            (
                (*session).to_owned(),
                text(*times.iter().min().unwrap()),
                text(*times.iter().max().unwrap()),
            )
        })
        .collect();
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(seen, expected);
}
