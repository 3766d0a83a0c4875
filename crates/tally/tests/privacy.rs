//! What reaches the disk: checked on the bytes of the store files.

use std::time::Duration;

use tally::{Event, Telemetry};
use tally_core::Level;
use tally_core::level::FIELD_LEVELS;

use crate::child;

const CANARY: &str = "canary-q7v-workspace";

#[test]
fn child_records_the_canary() {
    if !child::active() {
        return;
    }
    let telemetry = Telemetry::builder(child::APP)
        .first_run_notice(false)
        .shutdown_timeout(Duration::from_secs(10))
        .open();
    let mut command = telemetry.command("workspace create");
    command.workspace(CANARY);
    telemetry.record(
        Event::builder("workspace", "workspace_created")
            .workspace(CANARY)
            .target("task", format!("{CANARY}-task"))
            .prop("template", "rust"),
    );
    command.failure(
        "io",
        format!("cannot write /home/alice/{CANARY}/nexus.toml: workspace {CANARY} is locked"),
    );
    assert!(telemetry.flush());
    // Read the files while the connection is open, so the WAL and shared memory exist.
    let dir = std::path::PathBuf::from(std::env::var("TESTAPP_TELEMETRY_DIR").unwrap());
    for file in ["telemetry.db", "telemetry.db-wal", "telemetry.db-shm"] {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
        let found = bytes.windows(CANARY.len()).any(|window| window == CANARY.as_bytes());
        println!("RESULT {file} bytes={} canary={found}", bytes.len());
    }
}

#[test]
fn a_workspace_name_never_reaches_the_store_files_at_any_level() {
    for level in ["basic", "enhanced", "full"] {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("store");
        let output =
            child::run(child::command("privacy::child_records_the_canary", &dir).env("TESTAPP_TELEMETRY", level));
        let results = child::results(&output);
        assert_eq!(results.len(), 3, "{results:?}");
        for line in &results {
            assert!(line.ends_with("canary=false"), "level {level}: {line}");
        }
        // The WAL is usually empty here: each batch is checkpointed into the main file
        // right after it commits. Whatever it holds was checked above.
        assert!(
            results[0].contains("telemetry.db ") && !results[0].contains("bytes=0 "),
            "{results:?}"
        );
        // And after the process is gone, whatever files remain.
        for path in child::files_under(&dir) {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(CANARY.len()).any(|window| window == CANARY.as_bytes()),
                "level {level}: {} holds the canary",
                path.display()
            );
        }
        // The events are there, with the name hashed.
        let db = child::open_db(&dir);
        let workspace: Option<String> = db
            .query_row(
                "SELECT workspace FROM events WHERE name = 'workspace_created'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        match level {
            "basic" => assert_eq!(workspace, None),
            _ => assert!(workspace.unwrap().starts_with("h1:")),
        }
    }
}

#[test]
fn child_records_every_field() {
    if !child::active() {
        return;
    }
    let telemetry = Telemetry::builder(child::APP).first_run_notice(false).open();
    telemetry.record(
        Event::builder("command", "everything")
            .command("workspace create")
            .workspace("alpha")
            .target("task", "beta")
            .duration_ms(5)
            .success(false)
            .error_category("io")
            .error_message("disk full")
            .prop("template", "rust")
            .prop("peak_memory_kb", 1024),
    );
}

#[test]
fn each_level_stores_exactly_the_fields_privacy_md_lists() {
    for level in [Level::Basic, Level::Enhanced, Level::Full] {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("store");
        child::run(child::command("privacy::child_records_every_field", &dir).env("TESTAPP_TELEMETRY", level.as_str()));
        let db = child::open_db(&dir);
        let (row, props): (Vec<Option<String>>, Option<String>) = db
            .query_row(
                "SELECT id, ts, app, app_version, source, type, name, command, session_id, install_id, \
                 workspace, target_type, target_id, CAST(duration_ms AS TEXT), CAST(success AS TEXT), \
                 error_category, error_message, props FROM events WHERE name = 'everything'",
                [],
                |row| {
                    let columns = (0..17).map(|i| row.get(i)).collect::<Result<Vec<_>, _>>()?;
                    Ok((columns, row.get(17)?))
                },
            )
            .unwrap();
        let columns = [
            "id",
            "ts",
            "app",
            "app_version",
            "source",
            "type",
            "name",
            "command",
            "session_id",
            "install_id",
            "workspace",
            "target_type",
            "target_id",
            "duration_ms",
            "success",
            "error_category",
            "error_message",
        ];
        let props: serde_json::Map<String, serde_json::Value> = props
            .map(|text| serde_json::from_str(&text).unwrap())
            .unwrap_or_default();
        for (field, minimum) in FIELD_LEVELS {
            let stored = match *field {
                "props" => props.contains_key("template"),
                "props.peak_memory_kb" => props.contains_key("peak_memory_kb"),
                name => {
                    let index = columns.iter().position(|column| *column == name).unwrap();
                    row[index].is_some()
                }
            };
            assert_eq!(stored, level >= *minimum, "level {level}, field {field}");
        }
    }
}
