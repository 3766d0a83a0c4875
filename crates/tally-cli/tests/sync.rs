//! Sync end to end with the real binaries: `nexus` records and runs `nexus sync`, a
//! `tally serve` (SQLite) or a scripted collector receives, and each test checks what
//! the user or the app's owner would see: the same numbers on both sides, every event
//! stored once even when the collector dies mid-sync, nothing sent without consent, and
//! no name the user typed in any request.
//!
//! `nexus` is built into the same directory as `tally` by `cargo test --workspace`.
//! Run alone (`cargo test -p tally-cli`), cargo builds only `tally`, so [`nexus_binary`]
//! builds `nexus` once if it is missing; an older `nexus` left there is used as is.

use crate::scripted_collector;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use scripted_collector::{Answer, Request, ScriptedCollector, read_message};

/// A well-formed ingest key for the scripted collector, which does not check it.
const SCRIPTED_KEY: &str = "tly_ingest_0123456789ab_0123456789abcdef0123456789abcdef";

/// The `nexus` binary next to `tally`, brought up to date once per run: a binary left
/// from an older build would write an older store schema than `tally` reads.
fn nexus_binary() -> &'static Path {
    static NEXUS: OnceLock<PathBuf> = OnceLock::new();
    NEXUS.get_or_init(|| {
        let path = Path::new(env!("CARGO_BIN_EXE_tally")).with_file_name("nexus");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "nexus"])
            .status()
            .expect("run cargo build -p nexus");
        assert!(status.success(), "cargo build -p nexus failed");
        path
    })
}

// ---------------------------------------------------------------------------------------
// One user's machine

/// A user of nexus: a home for workspaces, a telemetry store and a config file of their own.
struct User {
    temp: tempfile::TempDir,
    home: PathBuf,
    dir: PathBuf,
    config: PathBuf,
}

impl User {
    fn new() -> User {
        let temp = tempfile::tempdir().unwrap();
        User {
            home: temp.path().join("home"),
            dir: temp.path().join("telemetry"),
            config: temp.path().join("telemetry.toml"),
            temp,
        }
    }

    fn environment(&self, command: &mut Command) {
        command
            .env("NEXUS_HOME", &self.home)
            .env("NEXUS_TELEMETRY_DIR", &self.dir)
            .env("NEXUS_TELEMETRY_CONFIG", &self.config)
            .env("TZ", "UTC")
            .env_remove("DO_NOT_TRACK")
            .env_remove("NEXUS_TELEMETRY")
            .env_remove("NEXUS_TELEMETRY_DEBUG")
            .env_remove("TALLY_APP")
            .stdin(Stdio::null());
    }

    fn nexus(&self, args: &[&str]) -> Output {
        let mut command = Command::new(nexus_binary());
        command.args(args);
        self.environment(&mut command);
        command.output().expect("run nexus")
    }

    /// `tally --app nexus ARGS`, on this user's store and config.
    fn tally(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
        command.args(["--app", "nexus"]).args(args);
        self.environment(&mut command);
        command.output().expect("run tally")
    }

    /// Runs nexus, insists on success, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        succeeded(&format!("nexus {args:?}"), self.nexus(args))
    }

    /// Runs nexus, insists on failure, returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.nexus(args);
        assert!(
            !output.status.success(),
            "nexus {args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stderr).unwrap()
    }

    /// Points upload at `endpoint` with `key`, in `mode`.
    fn configure_upload(&self, endpoint: &str, key: &str, mode: &str) {
        self.ok(&["telemetry", "config", "set", "endpoint", endpoint]);
        self.ok(&["telemetry", "config", "set", "key", key]);
        self.ok(&["telemetry", "config", "set", "upload", mode]);
    }

    /// A few minutes of work: workspaces and tasks, some of them failing.
    fn work(&self) {
        self.ok(&["workspace", "create", "alpha", "--template", "rust"]);
        self.fails(&["workspace", "create", "alpha"]);
        self.ok(&["task", "done", "write-tests", "--workspace", "alpha"]);
        self.fails(&["task", "done", "ship", "--workspace", "missing"]);
        self.ok(&["workspace", "create", "beta"]);
        self.ok(&["workspace", "destroy", "beta"]);
        self.fails(&["workspace", "destroy", "beta"]);
        self.ok(&["workspace", "destroy", "alpha"]);
    }

    /// Every stored event, as `export` shows it.
    fn stored_events(&self) -> Vec<Value> {
        serde_json::from_str(&self.ok(&["telemetry", "export", "--format", "json"])).unwrap()
    }

    fn stored_ids(&self) -> Vec<String> {
        self.stored_events().iter().map(id_of).collect()
    }

    /// Every stored event's id, read in SQL (faster than an export for a big store).
    fn stored_ids_in_sql(&self) -> Vec<String> {
        let db = rusqlite::Connection::open(self.dir.join("telemetry.db")).unwrap();
        let mut statement = db.prepare("SELECT id FROM events").unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn succeeded(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn id_of(event: &Value) -> String {
    event["id"].as_str().expect("an event id").to_owned()
}

/// The events of every request, in order of arrival.
fn sent_events(requests: &[Request]) -> Vec<Value> {
    requests.iter().flat_map(Request::events).collect()
}

fn sent_ids(requests: &[Request]) -> Vec<String> {
    sent_events(requests).iter().map(id_of).collect()
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

// ---------------------------------------------------------------------------------------
// The real collector

/// A running `tally serve`, killed when dropped.
struct Collector {
    child: Child,
    /// `http://127.0.0.1:PORT`, read from the line `tally serve` prints on stderr.
    base: String,
}

impl Collector {
    fn start(db: &Path) -> Collector {
        // The users here are one or two installs: small-count suppression (tested in
        // tally-server) would fold every name into `other`.
        let config = db.with_extension("toml");
        std::fs::write(&config, "min_installs = 0\n").unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--db")
            .arg(db)
            .env("TALLY_LOG", "warn")
            .env_remove("TALLY_DB")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tally serve");
        let stderr = child.stderr.take().unwrap();
        let (listening, address) = mpsc::channel();
        // Drained for the life of the process, so it never blocks on a full pipe.
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
        Collector { child, base }
    }

    /// `127.0.0.1:PORT`.
    fn address(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// `GET /v1/stats` for `from..to`, with an admin key.
    fn stats(&self, admin: &str, from: &str, to: &str) -> Value {
        let url = format!("{}/v1/stats?from={from}&to={to}", self.base);
        let mut response = ureq::get(&url)
            .header("Authorization", format!("Bearer {admin}"))
            .call()
            .unwrap_or_else(|err| panic!("GET {url}: {err}"));
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tally keys create`: the key is the last line of its output.
fn create_key(db: &Path, role: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["keys", "create", "--app", "nexus", "--role", role, "--db"])
        .arg(db)
        .env_remove("TALLY_DB")
        .output()
        .unwrap();
    let stdout = succeeded("tally keys create", output);
    stdout.lines().last().unwrap().trim().to_owned()
}

/// Every event id the collector's database holds, as many times as it holds it.
fn collector_ids(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut statement = conn.prepare("SELECT id FROM events").unwrap();
    statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn after_sync_the_collectors_stats_equal_the_users_own() {
    let temp = tempfile::tempdir().unwrap();
    let db = temp.path().join("collector.db");
    let (ingest, admin) = (create_key(&db, "ingest"), create_key(&db, "admin"));
    let collector = Collector::start(&db);
    let user = User::new();
    user.configure_upload(&collector.base, &ingest, "sync");
    user.work();
    user.work();

    let stored = user.stored_ids().len();
    let said = user.ok(&["sync"]);
    assert!(
        said.contains(&format!("uploaded {stored} events")) && said.contains(&format!("{stored} stored")),
        "{said}"
    );

    let local: Value = serde_json::from_str(&user.ok(&["stats", "--json"])).unwrap();
    let (from, to) = (
        local["period"]["from"].as_str().unwrap(),
        local["period"]["to"].as_str().unwrap(),
    );
    let remote = collector.stats(&admin, from, to);
    let totals = &remote["totals"];
    assert_eq!(local["events"], stored);
    assert_eq!(totals["events"], local["events"]);
    assert_eq!(totals["commands"], local["commands_run"]);
    assert_eq!(totals["sessions"], local["sessions"]);
    assert_eq!(totals["errors"], local["errors"]);
    // Per command: runs and failures.
    let per_command = |commands: &Value| -> Vec<(String, u64, u64)> {
        sorted(
            commands
                .as_array()
                .unwrap()
                .iter()
                .map(|command| {
                    (
                        command["command"].as_str().unwrap().to_owned(),
                        command["runs"].as_u64().unwrap(),
                        command["failures"].as_u64().unwrap(),
                    )
                })
                .collect(),
        )
    };
    let commands = per_command(&local["top_commands"]);
    assert_eq!(per_command(&remote["commands"]), commands);
    let failures: u64 = commands.iter().map(|(_, _, failed)| failed).sum();
    assert_eq!(totals["failures"], failures);
    assert_eq!(failures, 6, "the work failed six times: {commands:?}");
}

/// Stands between `nexus sync` and the collector, forwarding each request on a
/// connection of its own. Request number `cut_at` (from 1) is forwarded and answered,
/// so the collector committed it; then `cut` runs and the client's connection is
/// dropped without the answer: a collector that dies at the worst moment.
struct CuttingProxy {
    address: SocketAddr,
    upstream: Arc<Mutex<String>>,
}

/// What the proxy does at the cut, once.
type Cut = Box<dyn FnOnce() + Send>;

impl CuttingProxy {
    fn start(upstream: String, cut_at: usize, cut: impl FnOnce() + Send + 'static) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = CuttingProxy {
            address: listener.local_addr().unwrap(),
            upstream: Arc::new(Mutex::new(upstream)),
        };
        let upstream = Arc::clone(&proxy.upstream);
        let requests = Arc::new(AtomicUsize::new(0));
        let cut: Arc<Mutex<Option<Cut>>> = Arc::new(Mutex::new(Some(Box::new(cut))));
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (upstream, requests, cut) = (Arc::clone(&upstream), Arc::clone(&requests), Arc::clone(&cut));
                thread::spawn(move || {
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    let mut client = client;
                    while let Some(request) = read_message(&mut reader) {
                        let number = requests.fetch_add(1, Ordering::SeqCst) + 1;
                        let address = upstream.lock().unwrap_or_else(PoisonError::into_inner).clone();
                        // A dead collector: the client sees its connection closed.
                        let Ok(mut server) = TcpStream::connect(&address) else {
                            return;
                        };
                        if server.write_all(request.head.as_bytes()).is_err()
                            || server.write_all(b"\r\n").is_err()
                            || server.write_all(&request.body).is_err()
                        {
                            return;
                        }
                        let Some(answer) = read_message(&mut BufReader::new(server)) else {
                            return;
                        };
                        if number == cut_at {
                            if let Some(cut) = cut.lock().unwrap_or_else(PoisonError::into_inner).take() {
                                cut();
                            }
                            return;
                        }
                        let relayed = client.write_all(answer.head.as_bytes()).is_ok()
                            && client.write_all(b"\r\n").is_ok()
                            && client.write_all(&answer.body).is_ok();
                        if !relayed {
                            return;
                        }
                    }
                });
            }
        });
        proxy
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

#[test]
fn a_collector_killed_mid_sync_loses_nothing_and_stores_each_event_once() {
    let temp = tempfile::tempdir().unwrap();
    let db = temp.path().join("collector.db");
    let (ingest, admin) = (create_key(&db, "ingest"), create_key(&db, "admin"));
    let mut collector = Collector::start(&db);
    let pid = collector.child.id().to_string();
    // The third batch (the fourth request: the install's key registration comes first)
    // is committed, then the collector is SIGKILLed before the client hears back.
    let proxy = CuttingProxy::start(collector.address(), 4, move || {
        let killed = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        assert!(killed.success());
    });

    let user = User::new();
    succeeded("tally demo", user.tally(&["demo", "--events", "5000", "--days", "7"]));
    let recorded = user.stored_ids_in_sql().len();
    assert!(recorded > 4_000, "{recorded} events: several batches of 1,000");
    // Demo events predate consent: they leave only with --include-history.
    user.configure_upload(&proxy.endpoint(), &ingest, "sync");

    let stderr = user.fails(&["sync", "--include-history"]);
    assert!(
        stderr.contains("unreachable after 6 attempts") && stderr.contains("nothing was lost, run sync again later"),
        "{stderr}"
    );
    let status = collector.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the collector was SIGKILLed"
    );
    assert_eq!(user.stored_ids_in_sql().len(), recorded, "nothing was deleted locally");
    let stored_so_far = collector_ids(&db).len();
    assert_eq!(stored_so_far, 3_000, "three batches committed, the third unanswered");

    let collector = Collector::start(&db);
    *proxy.upstream.lock().unwrap() = collector.address();
    let said = user.ok(&["sync", "--include-history"]);
    // The third batch again: the collector already has it.
    assert!(said.contains("1,000 already there"), "{said}");
    assert!(said.contains(&format!("{} stored", human(recorded - 3_000))), "{said}");

    let stored = collector_ids(&db);
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(stored.len(), recorded, "every event reached the collector");
    assert_eq!(distinct.len(), recorded, "no event is stored twice");
    let local: HashSet<String> = user.stored_ids_in_sql().into_iter().collect();
    assert!(stored.iter().all(|id| local.contains(id)), "and nothing else");
    // The rollups behind the stats counted each event once too.
    let now = jiff::Timestamp::now();
    let from = tally_core::time::format(now.checked_sub(jiff::SignedDuration::from_hours(24 * 8)).unwrap());
    let to = tally_core::time::format(now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap());
    assert_eq!(collector.stats(&admin, &from, &to)["totals"]["events"], recorded);
}

/// `1,234`, as the CLI writes counts.
fn human(count: usize) -> String {
    let digits = count.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[test]
fn batches_written_to_a_directory_load_into_a_collector_exactly_once() {
    let user = User::new();
    user.ok(&["telemetry", "config", "set", "upload", "sync"]);
    user.work();
    let stored = user.stored_ids();
    let batches = user.temp.path().join("batches");
    let said = user.ok(&["sync", "--to-dir", batches.to_str().unwrap()]);
    assert!(said.contains(&format!("uploaded {} events", stored.len())), "{said}");
    let files: Vec<PathBuf> = sorted(
        std::fs::read_dir(&batches)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect(),
    );
    assert!(!files.is_empty());
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("batch-") && name.ends_with(".json.gz"), "{name}");
    }
    assert!(
        user.ok(&["sync", "--to-dir", batches.to_str().unwrap()])
            .contains("nothing to upload")
    );
    assert_eq!(std::fs::read_dir(&batches).unwrap().count(), files.len(), "sent once");

    let db = user.temp.path().join("collector.db");
    assert_eq!(ingest(&db, &files), (stored.len(), 0));
    assert_eq!(sorted(collector_ids(&db)), sorted(stored.clone()));
    assert_eq!(
        ingest(&db, &files),
        (0, stored.len()),
        "loading again reports duplicates"
    );
    assert_eq!(collector_ids(&db).len(), stored.len(), "and stores nothing");
}

/// `tally --app nexus ingest --db DB FILES...`: events stored and already there, over every file.
fn ingest(db: &Path, files: &[PathBuf]) -> (usize, usize) {
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["--app", "nexus", "ingest", "--db"])
        .arg(db)
        .args(files)
        .env_remove("TALLY_DB")
        .output()
        .unwrap();
    let said = succeeded("tally ingest", output);
    assert_eq!(said.lines().count(), files.len(), "one line per file: {said}");
    let (mut stored, mut duplicates) = (0, 0);
    for line in said.lines() {
        let counts = line.rsplit_once(": ").unwrap().1;
        let numbers: Vec<usize> = counts
            .split(", ")
            .map(|part| part.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(numbers[2], 0, "nothing refused: {line}");
        stored += numbers[0];
        duplicates += numbers[1];
    }
    (stored, duplicates)
}

// ---------------------------------------------------------------------------------------
// Consent, against a scripted collector

#[test]
fn in_local_mode_sync_makes_no_connection_and_says_how_to_turn_upload_on() {
    let collector = ScriptedCollector::accepting();
    let user = User::new();
    user.ok(&["telemetry", "config", "set", "endpoint", &collector.endpoint()]);
    user.ok(&["telemetry", "config", "set", "key", SCRIPTED_KEY]);
    user.work();
    let batches = user.temp.path().join("batches");
    for args in [
        vec!["sync"],
        vec!["sync", "--include-history"],
        vec!["sync", "--to-dir", batches.to_str().unwrap()],
    ] {
        let said = user.ok(&args);
        assert!(said.contains("upload is local"), "{args:?}: {said}");
        assert!(
            said.contains("nexus telemetry config set upload sync"),
            "{args:?}: {said}"
        );
    }
    assert!(!batches.exists(), "nothing written for another machine either");

    // Turned on, then back off: off again.
    user.ok(&["telemetry", "config", "set", "upload", "sync"]);
    user.ok(&["telemetry", "config", "set", "upload", "local"]);
    user.work();
    assert!(user.ok(&["sync", "--include-history"]).contains("upload is local"));
    assert_eq!(collector.connections(), 0);
}

#[test]
fn events_recorded_before_upload_was_turned_on_leave_only_with_include_history() {
    let collector = ScriptedCollector::accepting();
    let user = User::new();
    user.work();
    let before: HashSet<String> = user.stored_ids().into_iter().collect();
    user.configure_upload(&collector.endpoint(), SCRIPTED_KEY, "sync");
    user.ok(&["task", "done", "after-consent"]);
    let after: HashSet<String> = user
        .stored_ids()
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert!(!before.is_empty() && !after.is_empty());

    user.ok(&["sync"]);
    let sent: HashSet<String> = sent_ids(&collector.requests()).into_iter().collect();
    assert_eq!(sent, after, "only what was recorded after consent");

    let said = user.ok(&["sync", "--include-history"]);
    assert!(said.contains(&format!("uploaded {} events", before.len())), "{said}");
    let sent = sent_ids(&collector.requests());
    assert_eq!(sent.len(), before.len() + after.len(), "no event sent twice");
    let sent: HashSet<String> = sent.into_iter().collect();
    assert_eq!(sent, before.union(&after).cloned().collect());
}

#[test]
fn the_level_in_force_at_upload_time_is_applied_again() {
    const STRIPPED: [&str; 5] = ["workspace", "target_type", "target_id", "props", "error_message"];
    let collector = ScriptedCollector::accepting();
    let user = User::new();
    user.configure_upload(&collector.endpoint(), SCRIPTED_KEY, "sync");
    user.ok(&["telemetry", "level", "full"]);
    user.work();
    let stored = user.stored_events();
    for field in STRIPPED {
        assert!(
            stored.iter().any(|event| event.get(field).is_some()),
            "recorded at full, the store holds {field}"
        );
    }

    user.ok(&["telemetry", "level", "basic"]);
    user.ok(&["sync"]);
    let sent = sent_events(&collector.requests());
    assert_eq!(sent.len(), stored.len());
    for event in &sent {
        for field in STRIPPED {
            assert!(event.get(field).is_none(), "{field} sent at level basic: {event}");
        }
    }
}

#[test]
fn a_dry_run_prints_exactly_the_bodies_sync_then_sends_and_sends_nothing() {
    let collector = ScriptedCollector::accepting();
    let user = User::new();
    user.configure_upload(&collector.endpoint(), SCRIPTED_KEY, "sync");
    user.ok(&["telemetry", "level", "enhanced"]);
    user.work();
    let stored = user.stored_ids();

    let output = user.nexus(&["sync", "--dry-run"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let printed = succeeded("nexus sync --dry-run", output);
    assert!(
        stderr.contains(&format!("{} events would be sent", stored.len())) && stderr.contains("nothing was sent"),
        "{stderr}"
    );
    let bodies: Vec<Vec<u8>> = printed.lines().map(|line| line.as_bytes().to_vec()).collect();
    for body in &bodies {
        let value: Value = serde_json::from_slice(body).unwrap();
        let object = value.as_object().unwrap();
        assert_eq!(object.keys().collect::<Vec<_>>(), ["events"]);
        assert!(object["events"].is_array());
    }
    assert_eq!(collector.connections(), 0, "a dry run sends nothing");

    user.ok(&["sync"]);
    let sent: Vec<Vec<u8>> = collector.requests().iter().map(Request::json_bytes).collect();
    assert_eq!(sorted(sent), sorted(bodies), "the same bodies, byte for byte");
    assert_eq!(sorted(sent_ids(&collector.requests())), sorted(stored));
}

#[test]
fn a_workspace_name_never_reaches_the_collector() {
    const CANARY: &str = "canary-x8k-workspace";
    let collector = ScriptedCollector::accepting();
    let user = User::new();
    user.configure_upload(&collector.endpoint(), SCRIPTED_KEY, "sync");
    user.ok(&["telemetry", "level", "full"]);
    user.ok(&["workspace", "create", CANARY, "--template", "node"]);
    // Failures whose messages name it: in a sentence, in a path, as a bad name.
    assert!(user.fails(&["workspace", "create", CANARY]).contains(CANARY));
    std::fs::create_dir_all(user.home.join("workspaces").join(CANARY).join("tasks.done")).unwrap();
    assert!(
        user.fails(&["task", "done", "t1", "--workspace", CANARY])
            .contains(CANARY)
    );
    assert!(
        user.fails(&["workspace", "destroy", &format!("{CANARY}-gone")])
            .contains(CANARY)
    );
    assert!(
        user.fails(&["workspace", "create", &format!(".{CANARY}")])
            .contains(CANARY)
    );
    user.ok(&["task", "done", &format!("{CANARY}-task")]);
    user.ok(&["workspace", "destroy", CANARY]);

    user.ok(&["sync"]);
    let requests = collector.requests();
    let sent = sent_events(&requests);
    assert_eq!(sent.len(), user.stored_ids().len());
    assert!(
        sent.iter().filter(|event| event.get("error_message").is_some()).count() >= 4,
        "at full, the failures' messages are sent"
    );
    for request in &requests {
        let body = request.json_bytes();
        assert!(
            !body.windows(CANARY.len()).any(|window| window == CANARY.as_bytes()),
            "the workspace name is in a body: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(!request.head.contains(CANARY));
    }
}

// ---------------------------------------------------------------------------------------
// What the user sees when the collector says no

#[test]
fn a_refusing_collector_stops_sync_with_its_message_and_status_shows_refused_events() {
    const REASON: &str = "props.template: must be one of empty, rust, node, python";
    let collector = ScriptedCollector::start(|n, request| match n {
        0 => Answer::error(400, "malformed_batch", "events: must be an array of events"),
        1 => Answer::refuse(request, &[0], REASON),
        _ => Answer::accept_all(request),
    });
    let user = User::new();
    user.configure_upload(&collector.endpoint(), SCRIPTED_KEY, "sync");
    user.work();
    let stored = user.stored_events();

    let stderr = user.fails(&["sync"]);
    assert!(
        stderr.contains("the collector answered 400: events: must be an array of events"),
        "{stderr}"
    );
    let status = user.ok(&["telemetry", "status"]);
    assert!(
        status.contains(&format!("sync:       {} pending, 0 refused", stored.len())),
        "nothing was marked sent: {status}"
    );

    let said = user.ok(&["sync"]);
    assert!(said.contains("1 refused (`status` shows why)"), "{said}");
    let status = user.ok(&["telemetry", "status"]);
    assert!(
        status.contains("sync:       0 pending, 1 refused by the collector"),
        "{status}"
    );
    let first = &stored[0];
    let line = format!(
        "refused {} ({}): invalid_event: {REASON}",
        id_of(first),
        first["ts"].as_str().unwrap()
    );
    assert!(status.contains(&line), "{status}");

    assert!(user.ok(&["sync"]).contains("nothing to upload"));
    assert_eq!(collector.requests().len(), 2, "the refused event is not sent again");
}

// ---------------------------------------------------------------------------------------
// `auto`

#[test]
fn in_auto_mode_a_collector_that_never_answers_does_not_hold_up_nexus() {
    let collector = ScriptedCollector::start(|_, _| Answer::Hang);
    let user = User::new();
    user.configure_upload(&collector.endpoint(), SCRIPTED_KEY, "sync");
    user.work();
    user.ok(&["telemetry", "config", "set", "upload", "auto"]);
    // Every run is due for an upload.
    let mut config = std::fs::read_to_string(&user.config).unwrap();
    config.push_str("auto_interval_minutes = 0\n");
    std::fs::write(&user.config, config).unwrap();
    for run in 0..3 {
        let started = Instant::now();
        user.ok(&["task", "done", &format!("t{run}")]);
        let took = started.elapsed();
        // Far above a normal run, far below ureq's 60 s timeout or the 30 s budget.
        assert!(took < Duration::from_secs(3), "run {run} took {took:?}");
    }
}

#[test]
fn in_auto_mode_what_short_nexus_runs_record_reaches_the_collector() {
    let collector = ScriptedCollector::accepting();
    let user = User::new();
    user.configure_upload(&collector.endpoint(), SCRIPTED_KEY, "auto");
    for run in 0..5 {
        user.ok(&["task", "done", &format!("t{run}")]);
    }
    assert!(
        !collector.requests().is_empty(),
        "five runs in auto mode, and nothing reached the collector"
    );
}

// ---------------------------------------------------------------------------------------
// Counts-only upload (`upload counts`)

/// What a counts upload may hold, per day and per group: nothing else.
const DAY_FIELDS: [&str; 4] = ["app", "counts", "day", "install_id"];
const GROUP_FIELDS: [&str; 9] = [
    "command",
    "count",
    "duration_count",
    "duration_total_ms",
    "error_category",
    "histogram",
    "name",
    "success",
    "type",
];

fn utc_day(offset_days: i64) -> jiff::civil::Date {
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    today.checked_add(jiff::Span::new().days(offset_days)).unwrap()
}

/// Noon UTC of `day`, or a time on it given as `HH:MM`.
fn at(day: jiff::civil::Date, time: &str) -> jiff::Timestamp {
    format!("{day}T{time}:00Z").parse().unwrap()
}

#[test]
fn counts_upload_bytes_hold_only_counts_and_equal_the_dry_run() {
    const CANARY: &str = "canary-x8k-workspace";
    let collector = ScriptedCollector::start(|_, _| Answer::json(200, serde_json::json!({"stored": true})));
    let user = User::new();
    user.configure_upload(&collector.endpoint(), SCRIPTED_KEY, "counts");
    user.ok(&["telemetry", "level", "full"]);
    user.ok(&["workspace", "create", CANARY, "--template", "node"]);
    assert!(user.fails(&["workspace", "create", CANARY]).contains(CANARY));
    user.ok(&["task", "done", &format!("{CANARY}-task"), "--workspace", CANARY]);
    user.ok(&["workspace", "destroy", CANARY]);
    let stored = user.stored_events();
    let mut secrets: Vec<String> = vec![CANARY.to_owned(), "h1:".to_owned()];
    for event in &stored {
        for field in ["id", "session_id", "ts", "workspace", "target_id", "error_message"] {
            if let Some(value) = event.get(field).and_then(Value::as_str) {
                secrets.push(value.to_owned());
            }
        }
    }
    assert!(
        stored.iter().any(|event| event.get("workspace").is_some()),
        "the canary was recorded"
    );

    // Today is not complete: nothing goes.
    let printed = succeeded("tally sync --dry-run", user.tally(&["sync", "--dry-run"]));
    assert!(printed.is_empty(), "{printed}");
    // As of tomorrow it is.
    let tomorrow = format!("{}T00:00:01Z", utc_day(1));
    let output = user.tally(&["--now", &tomorrow, "sync", "--dry-run"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let printed = succeeded("tally sync --dry-run", output);
    assert!(
        stderr.contains("1 days of counts") && stderr.contains("nothing was sent"),
        "{stderr}"
    );
    assert_eq!(collector.connections(), 0, "a dry run sends nothing");
    let bodies: Vec<Vec<u8>> = printed.lines().map(|line| line.as_bytes().to_vec()).collect();
    assert_eq!(bodies.len(), 1);

    let said = succeeded("tally sync", user.tally(&["--now", &tomorrow, "sync"]));
    assert!(said.contains("uploaded counts of 1 days"), "{said}");
    let requests = collector.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].head.starts_with("POST /v1/counts "), "{}", requests[0].head);
    assert_eq!(requests[0].json_bytes(), bodies[0], "the dry run shows the exact bytes");

    let body = &bodies[0];
    for secret in &secrets {
        assert!(
            !body.windows(secret.len()).any(|window| window == secret.as_bytes()),
            "{secret:?} is in the upload: {}",
            String::from_utf8_lossy(body)
        );
    }
    let upload: Value = serde_json::from_slice(body).unwrap();
    let mut keys: Vec<&str> = upload.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, DAY_FIELDS);
    assert_eq!(upload["day"], utc_day(0).to_string());
    let mut counted = 0;
    for group in upload["counts"].as_array().unwrap() {
        for key in group.as_object().unwrap().keys() {
            assert!(GROUP_FIELDS.contains(&key.as_str()), "{key} is sent: {group}");
        }
        counted += group["count"].as_u64().unwrap();
    }
    assert_eq!(counted as usize, stored.len(), "every event counted once");
    // Sent once: a second sync has nothing to send.
    let said = succeeded("tally sync", user.tally(&["--now", &tomorrow, "sync"]));
    assert!(said.contains("nothing to upload"), "{said}");
    assert_eq!(collector.requests().len(), 1);
}

/// Stores `count` command events at `ts` in the user's store, as nexus would have.
fn record_at(user: &User, ts: jiff::Timestamp, count: usize, command: &str) {
    let hasher = tally_core::KeyedHasher::new(&[9; 32]);
    let context = tally_core::EventContext {
        app: "nexus",
        app_version: "1.0.0",
        source: tally_core::Source::Cli,
        session_id: "s-counts",
        install_id: "install-counts",
        hasher: &hasher,
        level: tally_core::Level::Basic,
    };
    let events: Vec<tally_core::Event> = (0..count)
        .map(|n| {
            let mut event = tally_core::Event::builder("command", "command_executed".to_owned())
                .command(command.to_owned())
                .duration_ms(10 * (n as u64 + 1))
                .success(n % 3 != 0)
                .finish(&context)
                .unwrap()
                .unwrap();
            event.ts = ts;
            event
        })
        .collect();
    std::fs::create_dir_all(&user.dir).unwrap();
    let mut store =
        tally_store::Store::open_file(&user.dir.join("telemetry.db"), &tally_store::OpenOptions::default()).unwrap();
    store.insert_batch(&events, tally_store::DropCounts::default()).unwrap();
}

/// Events the user's own rollups count on `day`.
fn local_events_on(user: &User, day: jiff::civil::Date) -> u64 {
    let db = rusqlite::Connection::open(user.dir.join("telemetry.db")).unwrap();
    db.query_row(
        "SELECT coalesce(sum(count), 0) FROM metrics WHERE hour LIKE ?1",
        [format!("{day}T%")],
        |row| row.get::<_, i64>(0),
    )
    .unwrap() as u64
}

#[test]
fn switching_between_sync_and_counts_never_sends_a_day_twice_or_skips_one() {
    let temp = tempfile::tempdir().unwrap();
    let db = temp.path().join("collector.db");
    let ingest = create_key(&db, "ingest");
    let admin = create_key(&db, "admin");
    let collector = Collector::start(&db);
    let user = User::new();
    let days = [utc_day(-3), utc_day(-2), utc_day(-1), utc_day(0)];
    let tally = |args: &[&str]| succeeded(&format!("tally {args:?}"), user.tally(args));
    tally(&["config", "set", "endpoint", &collector.base]);
    tally(&["config", "set", "key", &ingest]);
    tally(&["config", "set", "upload", "sync"]);
    // Upload counts from before the first day here, so no event waits for --include-history.
    let config = std::fs::read_to_string(&user.config).unwrap();
    let config: String = config
        .lines()
        .map(|line| {
            if line.starts_with("upload_since") {
                format!("upload_since = \"{}T00:00:00.000Z\"\n", utc_day(-4))
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&user.config, config).unwrap();

    // Day 1 and the morning of day 2 go as events.
    record_at(&user, at(days[0], "12:00"), 4, "workspace create");
    record_at(&user, at(days[1], "08:00"), 3, "task done");
    assert!(tally(&["sync"]).contains("uploaded 7 events"));

    // The rest of day 2, day 3 and today, then counts: day 2's rest and day 3 go as
    // counts, today waits.
    record_at(&user, at(days[1], "20:00"), 5, "task done");
    record_at(&user, at(days[2], "12:00"), 6, "workspace destroy");
    record_at(&user, at(days[3], "00:00"), 2, "task done");
    tally(&["config", "set", "upload", "counts"]);
    let said = tally(&["sync"]);
    assert!(said.contains("uploaded counts of 2 days (11 events"), "{said}");
    assert!(said.contains("2 events of today wait"), "{said}");
    assert!(tally(&["sync"]).contains("nothing to upload"));
    let status = tally(&["status"]);
    assert!(
        status.contains(&format!("counts:     every day through {} uploaded", days[2])),
        "{status}"
    );

    // Back to sync: only today's events go, as events.
    tally(&["config", "set", "upload", "sync"]);
    assert!(tally(&["sync"]).contains("uploaded 2 events"));
    // And counts again tomorrow: today went as events already.
    tally(&["config", "set", "upload", "counts"]);
    let tomorrow = format!("{}T00:00:01Z", utc_day(1));
    assert!(tally(&["--now", &tomorrow, "sync"]).contains("nothing to upload"));

    assert_eq!(
        collector_ids(&db).len(),
        4 + 3 + 2,
        "raw events: only what went as events"
    );
    let mut total = 0;
    for day in days {
        let next = day.tomorrow().unwrap();
        let stats = collector.stats(&admin, &format!("{day}T00:00:00Z"), &format!("{next}T00:00:00Z"));
        let local = local_events_on(&user, day);
        assert_eq!(stats["totals"]["events"].as_u64(), Some(local), "{day}: {stats}");
        total += local;
    }
    assert_eq!(total, 20);
    let from = format!("{}T00:00:00Z", days[0]);
    let to = format!("{}T00:00:00Z", utc_day(1));
    let stats = collector.stats(&admin, &from, &to);
    assert_eq!(stats["totals"]["events"], 20, "{stats}");
    assert_eq!(
        stats["counts_only"],
        serde_json::json!({"present": true, "uploads": 2, "installs": 1, "events": 11})
    );
}

// ---------------------------------------------------------------------------------------
// What the collector holds about this install: `remote` and `forget`

/// Rows naming `install_id` in every table of the collector's database that has one.
fn collector_rows_of(db: &Path, install_id: &str) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = conn
        .prepare(
            "SELECT m.name FROM sqlite_schema AS m, pragma_table_info(m.name) AS c \
             WHERE m.type = 'table' AND c.name = 'install_id' ORDER BY m.name",
        )
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .into_iter()
        .map(|table| {
            let count = conn
                .query_row(
                    &format!("SELECT count(*) FROM {table} WHERE install_id = ?1"),
                    [install_id],
                    |row| row.get(0),
                )
                .unwrap();
            (table, count)
        })
        .collect()
}

fn install_id_of(user: &User) -> String {
    user.stored_events()[0]["install_id"].as_str().unwrap().to_owned()
}

#[test]
fn remote_shows_and_forget_erases_only_this_installs_data_at_the_collector() {
    let temp = tempfile::tempdir().unwrap();
    let db = temp.path().join("collector.db");
    let ingest = create_key(&db, "ingest");
    let admin = create_key(&db, "admin");
    let collector = Collector::start(&db);
    let (alice, bob) = (User::new(), User::new());
    for user in [&alice, &bob] {
        user.configure_upload(&collector.base, &ingest, "sync");
        user.work();
        user.ok(&["telemetry", "sync"]);
    }
    let (alice_id, alice_events) = (install_id_of(&alice), alice.stored_ids().len());
    let bob_events = bob.stored_ids().len();

    let shown = alice.ok(&["telemetry", "remote"]);
    assert!(shown.contains(&alice_id), "{shown}");
    assert!(
        shown.contains(&format!(
            "events:     {} ({} as events",
            human(alice_events),
            human(alice_events)
        )),
        "{shown}"
    );
    assert!(shown.contains("command command_executed"), "{shown}");
    assert!(
        shown.contains("first seen: 20") && shown.contains("last seen:  20"),
        "{shown}"
    );

    // The collector unreachable: it says so, and nothing is erased anywhere.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    alice.ok(&["telemetry", "config", "set", "endpoint", &format!("http://{closed}")]);
    let said = alice.fails(&["telemetry", "forget", "--local", "--yes"]);
    assert!(
        said.contains("could not be reached") && said.contains("nothing was erased there, and nothing here either"),
        "{said}"
    );
    assert_eq!(alice.stored_ids().len(), alice_events);
    alice.ok(&["telemetry", "config", "set", "endpoint", &collector.base]);
    let from = format!("{}T00:00:00Z", utc_day(-1));
    let to = format!("{}T00:00:00Z", utc_day(1));
    let before = collector.stats(&admin, &from, &to);
    assert_eq!(
        before["totals"]["events"].as_u64(),
        Some((alice_events + bob_events) as u64)
    );

    // Forget: the collector holds no row of alice's install, and its totals drop.
    let said = alice.ok(&["telemetry", "forget", "--yes"]);
    assert!(
        said.contains(&format!("erased this install: {} events", human(alice_events))),
        "{said}"
    );
    for (table, rows) in collector_rows_of(&db, &alice_id) {
        assert_eq!(rows, 0, "{table} still holds alice's install");
    }
    assert!(
        collector_rows_of(&db, &alice_id).len() >= 7,
        "every table with an install_id was checked"
    );
    let after = collector.stats(&admin, &from, &to);
    assert_eq!(after["totals"]["events"].as_u64(), Some(bob_events as u64), "{after}");
    assert_eq!(collector_ids(&db).len(), bob_events, "bob's events stay");
    // Local data stays without --local.
    assert_eq!(alice.stored_ids().len(), alice_events);
    // Erased: nothing to show, and the message says why.
    let said = alice.fails(&["telemetry", "remote"]);
    assert!(said.contains("did not accept this install's proof"), "{said}");

    // Later uploads start fresh; forget --local then erases both sides.
    alice.ok(&["workspace", "create", "gamma"]);
    alice.ok(&["telemetry", "sync"]);
    let fresh = alice.stored_ids().len() - alice_events;
    let shown = alice.ok(&["telemetry", "remote"]);
    assert!(
        shown.contains(&format!("events:     {fresh} ({fresh} as events")),
        "{shown}"
    );
    let said = alice.ok(&["telemetry", "forget", "--local", "--yes"]);
    assert!(
        said.contains(&format!("erased this install: {fresh} events")) && said.contains("on this machine: purged"),
        "{said}"
    );
    assert!(collector_rows_of(&db, &alice_id).iter().all(|(_, rows)| *rows == 0));
    let status = alice.ok(&["telemetry", "status"]);
    assert!(!status.contains(&alice_id), "{status}");
    assert_eq!(alice.stored_ids().len(), 0);
}
