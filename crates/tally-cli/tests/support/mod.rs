//! What the deploy-kit and dashboard tests share: a real `tally serve` on a free port of
//! 127.0.0.1, keys made with `tally keys create`, and demo data loaded through its HTTP
//! ingest (so the collector's per-process counters see it too).

#![allow(dead_code, unreachable_pub)]

pub mod browser;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

/// A running `tally serve`, killed when dropped.
pub struct Collector {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Collector {
    /// Starts `tally serve --db DB` on a free port and waits until it listens.
    pub fn start(db: &str, config: Option<&Path>) -> Collector {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
        command.args(["serve", "--listen", "127.0.0.1:0", "--db", db]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env("TALLY_LOG", "warn")
            .env_remove("TALLY_DB")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tally serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (listening, address) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("tally serve: listening on ") {
                    let _ = listening.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                } else {
                    eprintln!("tally serve: {line}");
                }
            }
        });
        let base = address
            .recv_timeout(Duration::from_secs(60))
            .expect("tally serve prints the address it listens on");
        Collector { child, base }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tally ARGS` and returns its stdout; panics with its stderr when it fails.
pub fn tally(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .env_remove("TALLY_APP")
        .env_remove("TALLY_DB")
        .env_remove("DO_NOT_TRACK")
        .output()
        .expect("run tally");
    assert!(
        output.status.success(),
        "tally {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// A new key for `app` with `role` (`ingest` or `admin`).
pub fn create_key(db: &str, app: &str, role: &str) -> String {
    let stdout = tally(&["keys", "create", "--db", db, "--app", app, "--role", role]);
    stdout
        .lines()
        .last()
        .expect("the key on the last line")
        .trim()
        .to_owned()
}

/// An HTTP client that treats every status as an answer.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// The demo history of `app` (`tally demo`, `days` days ending now), as wire events.
pub fn demo_events(app: &str, days: u32, events: u32, seed: u32) -> Vec<Value> {
    let store = tempfile::tempdir().expect("a temporary directory");
    let dir = store.path().to_str().expect("UTF-8 path");
    let (days, events, seed) = (days.to_string(), events.to_string(), seed.to_string());
    tally(&[
        "--app", app, "--dir", dir, "demo", "--days", &days, "--events", &events, "--seed", &seed,
    ]);
    let exported = tally(&["--app", app, "--dir", dir, "export", "--format", "json"]);
    serde_json::from_str(&exported).expect("tally export --format json gives an array")
}

/// Posts `events` to the collector in batches; every one must be accepted.
pub fn post_events(collector: &Collector, ingest_key: &str, events: &[Value]) {
    let agent = agent();
    for chunk in events.chunks(500) {
        let mut response = agent
            .post(&collector.url("/v1/events/batch"))
            .header("Authorization", &format!("Bearer {ingest_key}"))
            .header("Content-Type", "application/json")
            .send(json!({ "events": chunk }).to_string())
            .expect("the collector answers");
        let body = response.body_mut().read_to_string().expect("a body");
        assert_eq!(response.status().as_u16(), 200, "{body}");
        let reply: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(reply["accepted"], chunk.len(), "{body}");
    }
}

/// GET `url`, optionally with a bearer key: (status, body).
pub fn get(url: &str, key: Option<&str>) -> (u16, String) {
    let mut request = agent().get(url);
    if let Some(key) = key {
        request = request.header("Authorization", &format!("Bearer {key}"));
    }
    let mut response = request.call().expect("the collector answers");
    let body = response.body_mut().read_to_string().expect("a body");
    (response.status().as_u16(), body)
}

/// Whether CI is running (a missing tool is then a failure, not a skip).
pub fn ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// `path` when it exists; otherwise a note and `None`, or a failure under CI.
pub fn tool(path: &str, package: &str) -> Option<std::path::PathBuf> {
    let path = std::path::PathBuf::from(path);
    if path.exists() {
        return Some(path);
    }
    assert!(
        !ci(),
        "{} is missing and CI is set: apt-get install {package}",
        path.display()
    );
    eprintln!(
        "note: {} is missing, so this test is skipped (apt-get install {package})",
        path.display()
    );
    None
}

/// `events` plus a feature event (`search`, `export` or `templates`) next to every
/// fifth command: the demo history has none, and the dashboards chart them.
pub fn with_features(mut events: Vec<Value>) -> Vec<Value> {
    let features = ["search", "export", "templates", "search"];
    let mut added = Vec::new();
    for (index, event) in events
        .iter()
        .filter(|e| e["name"] == "command_executed")
        .step_by(5)
        .enumerate()
    {
        let mut feature = event.clone();
        let id = event["id"].as_str().expect("an id");
        feature["id"] = Value::from(format!("{}{:012x}", &id[..24], index + 1));
        feature["type"] = Value::from("feature");
        feature["name"] = Value::from(features[index % features.len()]);
        for field in ["command", "duration_ms", "success", "error_category", "error_message"] {
            if let Some(object) = feature.as_object_mut() {
                object.remove(field);
            }
        }
        added.push(feature);
    }
    events.extend(added);
    events
}
