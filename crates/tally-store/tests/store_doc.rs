//! `docs/STORE.md` documents every table and column of a freshly created store, with
//! the declared type, and nothing the store does not have.

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
            current = heading
                .strip_prefix('`')
                .and_then(|rest| rest.strip_suffix('`'))
                .map(str::to_owned);
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

/// The tables and columns of a new store, from `PRAGMA table_info`.
fn created() -> Schema {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), &OpenOptions::default()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join(tally_store::DB_FILE_NAME)).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut schema = Schema::new();
    for table in tables {
        let columns = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .unwrap()
            .query_map([], |row| Ok((row.get::<_, String>(1)?, row.get::<_, String>(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        schema.insert(table, columns);
    }
    schema
}

#[test]
fn the_store_document_matches_the_schema_the_code_creates() {
    let (documented, created) = (documented(), created());
    assert!(
        documented.contains_key("events"),
        "the parser found no tables: {documented:?}"
    );
    for (table, columns) in &created {
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
