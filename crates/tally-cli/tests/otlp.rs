//! OpenTelemetry in and out, end to end with real processes: `tally export --format otlp`
//! is taken by a real `tally serve`'s `/v1/logs`; `tally sync` with `endpoint-kind otlp`
//! uploads there only with consent and each event once; and the real OpenTelemetry Python
//! SDK (`scripts/otel/emit_logs.py`, in the virtualenv .ci/run makes from
//! `scripts/otel/requirements.txt`) sends log records that arrive as events, once.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// A running `tally serve` on SQLite, killed when dropped.
struct Collector {
    child: Child,
    base: String,
    db: PathBuf,
    ingest: String,
    admin: String,
}

impl Collector {
    fn start(dir: &Path) -> Collector {
        let db = dir.join("collector.db");
        let ingest = create_key(&db, "ingest");
        let admin = create_key(&db, "admin");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(&db)
            .env("TALLY_LOG", "warn")
            .env_remove("TALLY_DB")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tally serve");
        let stderr = child.stderr.take().unwrap();
        let (listening, address) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("tally serve: listening on ") {
                    let _ = listening.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
            }
        });
        let base = address
            .recv_timeout(Duration::from_secs(60))
            .expect("tally serve did not say where it listens");
        Collector {
            child,
            base,
            db,
            ingest,
            admin,
        }
    }

    /// `POST /v1/logs` with an OTLP JSON body; returns the status and the answer.
    fn post_logs_json(&self, body: &[u8]) -> (u16, Value) {
        let mut response = ureq::post(&format!("{}/v1/logs", self.base))
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Bearer {}", self.ingest))
            .config()
            .http_status_as_error(false)
            .build()
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Every event stored for nexus, through `GET /v1/events`.
    fn events(&self) -> Vec<Value> {
        let mut response = ureq::get(&format!("{}/v1/events?limit=1000", self.base))
            .header("Authorization", format!("Bearer {}", self.admin))
            .call()
            .unwrap();
        let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert!(body["next_cursor"].is_null(), "more than one page: {body}");
        body["events"].as_array().unwrap().clone()
    }

    /// How many rows the collector's database holds (duplicates would show here).
    fn stored_rows(&self) -> u64 {
        let conn = rusqlite::Connection::open_with_flags(&self.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        conn.query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .unwrap()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create_key(db: &Path, role: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["keys", "create", "--app", "nexus", "--role", role, "--db"])
        .arg(db)
        .env_remove("TALLY_DB")
        .output()
        .unwrap();
    succeeded("tally keys create", output)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned()
}

fn succeeded(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A user's nexus store and config, driven with `tally --app nexus`.
struct User {
    temp: tempfile::TempDir,
}

impl User {
    /// A store with a deterministic demo history of about `events` events.
    fn with_history(events: u32) -> User {
        let user = User {
            temp: tempfile::tempdir().unwrap(),
        };
        user.ok(&["demo", "--events", &events.to_string(), "--days", "3"]);
        user
    }

    fn tally(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["--app", "nexus"])
            .args(args)
            .env("NEXUS_TELEMETRY_DIR", self.temp.path().join("store"))
            .env("NEXUS_TELEMETRY_CONFIG", self.temp.path().join("telemetry.toml"))
            .env_remove("DO_NOT_TRACK")
            .env_remove("NEXUS_TELEMETRY")
            .env_remove("TALLY_APP")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(&format!("tally {args:?}"), self.tally(args))
    }

    fn local_ids(&self) -> BTreeSet<String> {
        self.ok(&["export", "--format", "ndjson"])
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
}

fn ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Log records in an OTLP/JSON request.
fn record_count(request: &Value) -> usize {
    request["resourceLogs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|resource| resource["scopeLogs"].as_array().unwrap())
        .map(|scope| scope["logRecords"].as_array().unwrap().len())
        .sum()
}

#[test]
fn an_otlp_export_is_taken_by_the_collectors_logs_route_event_for_event() {
    let user = User::with_history(400);
    let export = user.ok(&["export", "--format", "otlp"]);
    let document: Value = serde_json::from_str(&export).expect("the export is one JSON document");
    let records = record_count(&document);
    let local = user.local_ids();
    assert_eq!(records, local.len());

    let server = tempfile::tempdir().unwrap();
    let collector = Collector::start(server.path());
    let (status, answer) = collector.post_logs_json(export.as_bytes());
    assert_eq!((status, &answer), (200, &serde_json::json!({})), "{answer}");
    // Every event arrives under its own id; sending the export again stores nothing.
    let (status, _) = collector.post_logs_json(export.as_bytes());
    assert_eq!(status, 200);
    assert_eq!(collector.stored_rows(), local.len() as u64);
    assert_eq!(ids(&collector.events()), local);

    // No event in range: a valid, empty document, which the route takes.
    let none = user.ok(&["export", "--format", "otlp", "--since", "2100-01-01"]);
    assert_eq!(
        serde_json::from_str::<Value>(&none).unwrap(),
        serde_json::json!({"resourceLogs": []})
    );
    assert_eq!(collector.post_logs_json(none.as_bytes()).0, 200);
}

#[test]
fn sync_to_an_otlp_endpoint_asks_for_consent_and_sends_each_event_once() {
    let user = User::with_history(300);
    let server = tempfile::tempdir().unwrap();
    let collector = Collector::start(server.path());
    user.ok(&["config", "set", "endpoint", &collector.base]);
    user.ok(&["config", "set", "endpoint-kind", "otlp"]);
    user.ok(&["config", "set", "key", &collector.ingest]);

    // Upload is still local: nothing leaves.
    let said = user.ok(&["sync", "--include-history"]);
    assert!(said.contains("upload is local"), "{said}");
    assert_eq!(collector.stored_rows(), 0);
    let shown = user.ok(&["config", "show"]);
    assert!(shown.contains("endpoint-kind otlp"), "{shown}");

    user.ok(&["config", "set", "upload", "sync"]);
    // A dry run shows the OTLP requests, readably, and sends nothing.
    let dry = user.ok(&["sync", "--dry-run", "--include-history"]);
    let shown: usize = dry
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| record_count(&serde_json::from_str(line).unwrap()))
        .sum();
    assert_eq!(shown, user.local_ids().len(), "{dry}");
    assert_eq!(collector.stored_rows(), 0);
    let said = user.ok(&["sync", "--include-history"]);
    let local = user.local_ids();
    assert_eq!(ids(&collector.events()), local, "{said}");
    assert_eq!(collector.stored_rows(), local.len() as u64);
    // A second sync has nothing left to send.
    user.ok(&["sync", "--include-history"]);
    assert_eq!(collector.stored_rows(), local.len() as u64);

    // The collector holds what the user's store holds, field for field, as the level
    // in force (basic) allows.
    let sent: Vec<Value> = collector.events();
    let exported: Vec<Value> = user
        .ok(&["export", "--format", "ndjson"])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let first = &sent[0];
    let original = exported.iter().find(|event| event["id"] == first["id"]).unwrap();
    for field in [
        "ts",
        "app",
        "app_version",
        "source",
        "type",
        "name",
        "session_id",
        "install_id",
    ] {
        assert_eq!(first[field], original[field], "{field}");
    }

    let bad = user.tally(&["config", "set", "endpoint-kind", "grpc"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("endpoint-kind: must be tally or otlp"));
}

/// The virtualenv with the OpenTelemetry Python SDK: `TALLY_OTEL_PYTHON`, or the one
/// .ci/run makes in `target/venv-otel`.
fn otel_python() -> Option<PathBuf> {
    let path = std::env::var_os("TALLY_OTEL_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/venv-otel/bin/python"),
        PathBuf::from,
    );
    path.exists().then_some(path)
}

#[test]
fn python_sdk_log_records_arrive_as_events_once() {
    let Some(python) = otel_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the OpenTelemetry Python SDK virtualenv is missing (target/venv-otel): .ci/run makes it from scripts/otel/requirements.txt"
        );
        eprintln!(
            "note: skipping the OpenTelemetry Python SDK test: no target/venv-otel \
             (python3 -m venv target/venv-otel && target/venv-otel/bin/pip install -r scripts/otel/requirements.txt)"
        );
        return;
    };
    let server = tempfile::tempdir().unwrap();
    let collector = Collector::start(server.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/otel/emit_logs.py");
    let emit = |count: &str| {
        let output = Command::new(&python)
            .arg(&script)
            .args(["--endpoint", &format!("{}/v1/logs", collector.base)])
            .args(["--key", &collector.ingest, "--app", "nexus", "--version", "2.0.1"])
            .args(["--session", "py-session-1", "--instance", "install-1", "--count", count])
            .args(["--fixed-time", "1764000000123456789"])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        succeeded("emit_logs.py", output)
    };
    emit("5");
    // Again, only the fixed-time record: the SDK sends it, the collector already has it.
    emit("0");

    let events = collector.events();
    assert_eq!(collector.stored_rows(), 6, "{events:#?}");
    let commands: Vec<&Value> = events.iter().filter(|event| event["type"] == "command").collect();
    assert_eq!(commands.len(), 5);
    let attempts: BTreeSet<i64> = commands
        .iter()
        .map(|event| event["props"]["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, (0..5).collect());
    for event in &commands {
        assert_eq!(event["name"], "executed");
        assert_eq!(event["app"], "nexus");
        assert_eq!(event["app_version"], "2.0.1");
        assert_eq!(event["session_id"], "py-session-1");
        assert_eq!(event["install_id"], "install-1");
        assert_eq!(event["command"], "note open");
        assert_eq!(event["success"], true);
        assert_eq!(event["source"], "backend");
        let duration = event["duration_ms"].as_u64().unwrap();
        assert_eq!(duration, 40 + event["props"]["attempt"].as_u64().unwrap());
        assert_eq!(event["props"].as_object().unwrap().len(), 1, "{event}");
    }
    let created = events.iter().find(|event| event["type"] == "workspace").unwrap();
    assert_eq!(created["name"], "created");
    assert_eq!(created["ts"], "2025-11-24T16:00:00.123Z");
    assert_eq!(created["props"]["template"], "rust");
    // The message, the source file and the function are never stored.
    let stored = serde_json::to_string(&events).unwrap();
    for secret in ["alice", "private-notes", "emit_logs", "opened", "main"] {
        assert!(!stored.contains(secret), "{secret:?} stored: {stored}");
    }
    for file in [collector.db.clone(), collector.db.with_extension("db-wal")] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(!bytes.windows(5).any(|window| window == b"alice"), "{}", file.display());
    }
}
