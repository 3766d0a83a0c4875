//! `record` (feature `cli`): events from the command line land as the SDK's would, under
//! the same consent, level and hashing; bad arguments change nothing.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use tally::Source;
use tally::cli::{RecordArgs, Target, TelemetryCommand};

use crate::child;

const CANARY: &str = "canary-workspace-7f3a91";

fn args() -> RecordArgs {
    RecordArgs {
        kind: None,
        name: None,
        command: None,
        duration_ms: None,
        success: false,
        failure: false,
        error_category: None,
        error_message: None,
        workspace: None,
        target: None,
        props: Vec::new(),
        stdin: false,
        app_version: "2.0.1".into(),
        source: Source::Cli,
        session: None,
        strict: false,
    }
}

/// Runs `record` with the arguments the parent passed in `RECORD_CASE`, and prints the
/// error if any.
#[test]
fn child_record() {
    if !child::active() {
        return;
    }
    let mut args = args();
    match std::env::var("RECORD_CASE").unwrap().as_str() {
        "one" => {
            args.kind = Some("workspace".into());
            args.name = Some("workspace_created".into());
            args.command = Some("workspace create".into());
            args.duration_ms = Some(42);
            args.success = true;
            args.workspace = Some(CANARY.into());
            args.target = Some(format!("task={CANARY}-task"));
            args.props = vec!["template=rust".into(), "files=3".into()];
        }
        "bad" => {
            args.kind = Some("workspace".into());
            args.name = Some("Workspace Created".into());
        }
        "stdin" => {
            args.stdin = true;
            args.session = Some("script-run-1".into());
        }
        "strict" => {
            args.kind = Some("command".into());
            args.name = Some("command_executed".into());
            args.strict = true;
        }
        other => panic!("unknown case {other}"),
    }
    match tally::cli::run(&Target::new(child::APP), TelemetryCommand::Record(Box::new(args))) {
        Ok(()) => println!("RESULT ok"),
        Err(err) => println!("RESULT error {err}"),
    }
}

fn record(case: &str, dir: &Path, configure: impl FnOnce(&mut std::process::Command)) -> Vec<String> {
    let mut command = child::command("record::child_record", dir);
    command.env("RECORD_CASE", case);
    configure(&mut command);
    child::results(&child::run(&mut command))
}

#[test]
fn one_event_lands_hashed_and_joins_no_session_events() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let results = record("one", &dir, |command| {
        command.env("TESTAPP_TELEMETRY", "enhanced");
    });
    assert_eq!(results, ["ok"]);

    let db = child::open_db(&dir);
    let (name, command, workspace, target_type, target_id, duration, success, props, version): (
        String,
        String,
        String,
        String,
        String,
        i64,
        bool,
        String,
        String,
    ) = db
        .query_row(
            "SELECT name, command, workspace, target_type, target_id, duration_ms, success, props, app_version \
             FROM events",
            [],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                    row.get(8)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        (name.as_str(), command.as_str(), duration, success, version.as_str()),
        ("workspace_created", "workspace create", 42, true, "2.0.1")
    );
    assert!(tally_core::hashing::is_hashed(&workspace), "{workspace}");
    assert!(tally_core::hashing::is_hashed(&target_id), "{target_id}");
    assert_eq!(target_type, "task");
    assert_eq!(props, r#"{"files":3,"template":"rust"}"#);
    // One process, one event: no session_started or session_ended around it.
    let events: i64 = db
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap();
    assert_eq!(events, 1);
    drop(db);
    for file in ["telemetry.db", "telemetry.db-wal", "telemetry.db-shm"] {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(CANARY.len()).any(|window| window == CANARY.as_bytes()),
            "{file} holds the workspace name in clear"
        );
    }
}

#[test]
fn basic_level_keeps_no_names_and_do_not_track_writes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    assert_eq!(record("one", &dir, |_| {}), ["ok"]);
    let workspace: Option<String> = child::open_db(&dir)
        .query_row("SELECT workspace FROM events", [], |row| row.get(0))
        .unwrap();
    assert_eq!(workspace, None, "basic keeps no workspace, not even hashed");

    let off = temp.path().join("off");
    assert_eq!(
        record("strict", &off, |command| {
            command.env("DO_NOT_TRACK", "1");
        }),
        ["ok"],
        "telemetry off is not a failure, even with --strict"
    );
    assert!(!off.exists(), "DO_NOT_TRACK created {}", off.display());
}

#[test]
fn a_bad_argument_names_the_flag_and_rule_and_creates_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let results = record("bad", &dir, |_| {});
    assert_eq!(results.len(), 1);
    assert!(
        results[0].starts_with("error --name: must be 1 to 64 characters of a-z, 0-9 and _"),
        "{results:?}"
    );
    assert!(!dir.exists());
}

#[test]
fn stdin_lines_land_in_the_given_session_and_one_bad_line_refuses_all() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let lines = concat!(
        r#"{"type":"command","name":"command_executed","command":"deploy","duration_ms":900,"success":false,"error_category":"io"}"#,
        "\n\n",
        r#"{"type":"task","name":"task_completed","target_type":"task","target":"t1"}"#,
        "\n",
        r#"{"type":"error","name":"error_occurred","command":"deploy","error_category":"io"}"#,
        "\n",
    );
    let run = |input: &str| {
        let mut command = child::command("record::child_record", &dir);
        command.env("RECORD_CASE", "stdin").stdin(Stdio::piped());
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut process = command.spawn().unwrap();
        process.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let output = process.wait_with_output().unwrap();
        assert!(output.status.success());
        child::results(&output)
    };
    assert_eq!(
        run(&format!("{lines}{{\"type\":\"x\",\"name\":\"y\",\"argv\":\"s\"}}\n")).len(),
        1
    );
    assert!(!dir.exists(), "a bad line must leave no store behind");

    assert_eq!(run(lines), ["ok"]);
    let db = child::open_db(&dir);
    let sessions: Vec<String> = db
        .prepare("SELECT DISTINCT session_id FROM events")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sessions, ["script-run-1"]);
    let (commands, tasks, errors): (i64, i64, i64) = db
        .query_row(
            "SELECT commands_executed, tasks_completed, errors_encountered FROM sessions",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!((commands, tasks, errors), (1, 1, 1));
}

#[test]
fn strict_fails_when_the_store_cannot_be_written_and_otherwise_exits_ok() {
    let temp = tempfile::tempdir().unwrap();
    // A file where the store directory should be: nothing can be written there.
    let dir = temp.path().join("not-a-dir");
    std::fs::write(&dir, "x").unwrap();
    let results = record("strict", &dir, |_| {});
    assert_eq!(results.len(), 1);
    assert!(
        results[0].starts_with("error 1 of 1 events were not written"),
        "{results:?}"
    );
    let mut command = child::command("record::child_record", &dir);
    command.env("RECORD_CASE", "one");
    assert_eq!(child::results(&child::run(&mut command)), ["ok"]);
}
