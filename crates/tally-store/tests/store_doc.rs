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
    let names = |columns: &[(String, String)]| -> Vec<String> { columns.iter().map(|(name, _)| name.clone()).collect() };
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
