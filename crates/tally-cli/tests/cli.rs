//! The `tally` binary end to end, on a seeded demo store: golden outputs for the views,
//! exports parsed back and counted, consent and purge checked on the files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOW: &str = "2026-11-22T12:00:00Z";

struct Demo {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    config: PathBuf,
}

impl Demo {
    /// An empty sandbox: its own store directory and config file.
    fn empty() -> Demo {
        let temp = tempfile::tempdir().unwrap();
        Demo {
            dir: temp.path().join("store"),
            config: temp.path().join("telemetry.toml"),
            _temp: temp,
        }
    }

    /// A sandbox with the seeded demo history.
    fn seeded() -> Demo {
        let demo = Demo::empty();
        let output = demo.ok(&["demo", "--days", "30", "--events", "4000", "--seed", "7"]);
        assert!(output.starts_with("wrote "), "{output}");
        demo
    }

    fn tally(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
        command
            .args(["--app", "goldie", "--dir"])
            .arg(&self.dir)
            .args(["--now", NOW])
            .args(args)
            .env("TZ", "UTC")
            .env("GOLDIE_TELEMETRY_CONFIG", &self.config)
            .env_remove("GOLDIE_TELEMETRY")
            .env_remove("DO_NOT_TRACK");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.tally(args).output().unwrap()
    }

    /// Runs, insists on success, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "tally {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn db_path(&self) -> PathBuf {
        self.dir.join("telemetry.db")
    }

    fn stored_events(&self) -> i64 {
        rusqlite::Connection::open(self.db_path())
            .unwrap()
            .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .unwrap()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn stats_golden() {
    let demo = Demo::seeded();
    insta::assert_snapshot!("stats_month", demo.ok(&["stats"]));
    insta::assert_snapshot!("stats_week", demo.ok(&["stats", "--week"]));
    insta::assert_snapshot!("stats_day", demo.ok(&["stats", "--day"]));
}

#[test]
fn stats_json_agrees_with_the_store() {
    let demo = Demo::seeded();
    let json: serde_json::Value = serde_json::from_str(&demo.ok(&["stats", "--json", "--month"])).unwrap();
    let db = rusqlite::Connection::open(demo.db_path()).unwrap();
    let count = |sql: &str| -> u64 { db.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap() as u64 };
    // The demo spans exactly the 30 days, so the month holds every event.
    assert_eq!(json["events"], count("SELECT count(*) FROM events"));
    assert_eq!(
        json["workspaces_created"],
        count("SELECT count(*) FROM events WHERE name = 'workspace_created'")
    );
    assert_eq!(
        json["tasks_completed"],
        count("SELECT count(*) FROM events WHERE name = 'task_completed'")
    );
    assert_eq!(
        json["commands_run"],
        count("SELECT count(*) FROM events WHERE name = 'command_executed'")
    );
    let failed = count("SELECT count(*) FROM events WHERE name = 'command_executed' AND success = 0");
    let runs = json["commands_run"].as_u64().unwrap();
    let rate = json["success_rate"].as_f64().unwrap();
    assert!((rate - (1.0 - failed as f64 / runs as f64)).abs() < 1e-9);
    let top = json["top_commands"].as_array().unwrap();
    assert_eq!(
        top.iter().map(|command| command["runs"].as_u64().unwrap()).sum::<u64>(),
        runs
    );
}

#[test]
fn insights_golden() {
    let demo = Demo::seeded();
    let all = demo.ok(&["insights"]);
    insta::assert_snapshot!("insights", all);
    insta::assert_snapshot!("insights_slow_week", demo.ok(&["insights", "--slow", "--week"]));
    insta::assert_snapshot!("insights_errors", demo.ok(&["insights", "--errors"]));
}

#[test]
fn insights_find_what_the_demo_hides() {
    let demo = Demo::seeded();
    // The demo makes builds 45% slower in the last week and runs `task done` right after
    // `workspace create`; suggestions must cite both, with their numbers.
    let weekly = demo.ok(&["insights", "--week"]);
    assert!(weekly.contains("`build` got slower"), "{weekly}");
    let monthly = demo.ok(&["insights"]);
    assert!(monthly.contains("`workspace create` then `task done`"), "{monthly}");
    assert!(monthly.contains("`sync` fails often"), "{monthly}");
    assert!(monthly.contains("most between"), "{monthly}");
}

#[test]
fn views_of_a_store_with_nothing_yet() {
    let demo = Demo::empty();
    let output = demo.run(&["stats"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no telemetry recorded yet"), "{stderr}");
    assert!(stderr.contains("tally demo"), "{stderr}");
    assert!(!demo.dir.exists(), "a view must not create the store");
    let status = demo.ok(&["status"]);
    assert!(status.contains("not created yet"), "{status}");
}

#[test]
fn status_shows_level_upload_store_and_counts() {
    let demo = Demo::seeded();
    let status = demo.ok(&["status"]);
    let shown = status
        .replace(&demo.dir.display().to_string(), "[DIR]")
        .replace(&demo.config.display().to_string(), "[CONFIG]");
    // The file's size moves by a few pages from run to run (event ids are random, so
    // the id index splits differently): it must be shown, but stays out of the snapshot.
    let mut shown: String = shown
        .lines()
        .map(|line| match line.split_once(" (") {
            Some((head, size)) if line.trim_start().starts_with("store:") => {
                assert!(size.ends_with(" KB)") || size.ends_with(" MB)"), "{line}");
                format!("{head} ([SIZE])\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    if !status.ends_with('\n') {
        shown.pop();
    }
    insta::assert_snapshot!("status", shown);
}

#[test]
fn exports_parse_back_to_every_event() {
    let demo = Demo::seeded();
    let stored = demo.stored_events() as usize;

    let json: Vec<serde_json::Value> = serde_json::from_str(&demo.ok(&["export", "--format", "json"])).unwrap();
    assert_eq!(json.len(), stored);

    let ndjson = demo.ok(&["export", "--format", "ndjson"]);
    let lines: Vec<serde_json::Value> = ndjson.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines, json, "json and ndjson hold the same events");
    insta::assert_snapshot!(
        "export_ndjson_head",
        ndjson.lines().take(4).collect::<Vec<_>>().join("\n")
    );

    let csv = demo.ok(&["export", "--format", "csv"]);
    let records = parse_csv(&csv);
    assert_eq!(records[0][..3], ["id", "ts", "app"]);
    assert_eq!(records.len() - 1, stored);
    assert!(records.iter().all(|record| record.len() == 18));
    assert!(csv.contains("\r\n"), "RFC 4180 line ends");

    // A range keeps exactly the events inside it.
    let since = "2026-11-15";
    let until = "2026-11-20T00:00:00Z";
    let ranged: Vec<serde_json::Value> =
        serde_json::from_str(&demo.ok(&["export", "--format", "json", "--since", since, "--until", until])).unwrap();
    let inside = json
        .iter()
        .filter(|event| {
            let ts = event["ts"].as_str().unwrap();
            ("2026-11-15T00:00:00.000Z"..="2026-11-19T23:59:59.999Z").contains(&ts)
        })
        .count();
    assert_eq!(ranged.len(), inside);
    assert!(inside > 0);

    let backwards = demo.run(&["export", "--format", "json", "--since", until, "--until", since]);
    assert!(!backwards.status.success());
    assert!(String::from_utf8_lossy(&backwards.stderr).contains("must be before --until"));
}

#[test]
fn export_to_a_file() {
    let demo = Demo::seeded();
    let path = demo.dir.with_extension("ndjson");
    demo.ok(&["export", "--format", "ndjson", "-o", path.to_str().unwrap()]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), demo.stored_events() as usize);
}

/// RFC 4180: quoted fields may hold commas, doubled quotes and line breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

/// `promtool` comes with Debian's `prometheus` package, which `.ci/run` installs.
fn promtool() -> Option<PathBuf> {
    let path = Path::new("/usr/bin/promtool");
    if path.exists() {
        return Some(path.to_owned());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "promtool is missing; CI must install the prometheus package"
    );
    eprintln!("note: promtool not installed, OpenMetrics export not checked by it");
    None
}

#[test]
fn openmetrics_export_passes_promtool_and_counts_every_event() {
    let demo = Demo::seeded();
    let text = demo.ok(&["export", "--format", "openmetrics"]);
    assert!(text.ends_with("# EOF\n"));
    let total: u64 = text
        .lines()
        .filter(|line| line.starts_with("tally_events_total{"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, demo.stored_events() as u64);
    if let Some(promtool) = promtool() {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn on_off_and_level_persist_in_the_config_file() {
    let demo = Demo::empty();
    let said = demo.ok(&["off"]);
    assert!(said.contains("goldie telemetry is now off"), "{said}");
    assert_eq!(std::fs::read_to_string(&demo.config).unwrap(), "level = \"off\"\n");
    demo.ok(&["level", "full"]);
    assert_eq!(std::fs::read_to_string(&demo.config).unwrap(), "level = \"full\"\n");
    demo.ok(&["off"]);
    demo.ok(&["on"]);
    assert_eq!(std::fs::read_to_string(&demo.config).unwrap(), "level = \"basic\"\n");
    let status = demo.ok(&["status"]);
    assert!(status.contains("level:      basic (config file"), "{status}");

    // The environment outranks the file, and `on` says so.
    let output = demo.tally(&["on"]).env("DO_NOT_TRACK", "1").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("note: DO_NOT_TRACK is set"));

    let bad = demo.run(&["level", "loud"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must be one of off, basic, enhanced, full"));
    assert_eq!(std::fs::read_to_string(&demo.config).unwrap(), "level = \"basic\"\n");
}

#[test]
fn purge_needs_consent_and_leaves_no_trace_in_the_files() {
    let demo = Demo::seeded();
    let db = rusqlite::Connection::open(demo.db_path()).unwrap();
    // The id and the workspace hash as the file holds them (the compact layout keeps
    // their bytes, not their text).
    let (event_id, workspace): (Vec<u8>, Vec<u8>) = db
        .query_row(
            "SELECT id, workspace FROM event_rows WHERE workspace IS NOT NULL LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    drop(db);
    let bytes = std::fs::read(demo.db_path()).unwrap();
    assert!(contains(&bytes, &event_id) && contains(&bytes, &workspace));

    // Not on a terminal and no --yes: refused, nothing deleted.
    let refused = demo.run(&["purge"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert!(demo.stored_events() > 0);

    let said = demo.ok(&["purge", "--yes"]);
    assert!(said.starts_with("purged "), "{said}");
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", demo.db_path().display()));
        let bytes = std::fs::read(&path).unwrap_or_default();
        for needle in [
            event_id.as_slice(),
            workspace.as_slice(),
            b"workspace create",
            b"task done",
            b"command_executed",
        ] {
            assert!(!contains(&bytes, needle), "{} still holds {needle:?}", path.display());
        }
    }
    let json: serde_json::Value = serde_json::from_str(&demo.ok(&["stats", "--json"])).unwrap();
    assert_eq!(json["events"], 0);
    assert_eq!(json["sessions"], 0);
}

#[test]
fn demo_refuses_a_store_with_data_and_needs_an_app() {
    let demo = Demo::seeded();
    let again = demo.run(&["demo"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("only writes into an empty store"));

    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("status")
        .env_remove("TALLY_APP")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("pass --app NAME"));
}

#[test]
fn demo_is_deterministic() {
    let first = Demo::seeded();
    let second = Demo::seeded();
    assert_eq!(
        first.ok(&["export", "--format", "ndjson"]),
        second.ok(&["export", "--format", "ndjson"])
    );
}

/// `tally stats --json | head -c 1`: the reader leaving early is not an error.
#[test]
fn a_reader_that_stops_early_gets_no_error() {
    let demo = Demo::seeded();
    for args in [
        &["stats", "--json"][..],
        &["stats"],
        &["export", "--format", "json"],
        &["export", "--format", "csv"],
        &["export", "--format", "otlp"],
        &["report", "--month", "--format", "html"],
        &["insights"],
    ] {
        let mut child = demo
            .tally(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the child (still starting) writes a byte, so its every write fails.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "tally {args:?}: {:?} {stderr}", output.status);
        assert_eq!(stderr, "", "tally {args:?}");
    }
}
