//! `tally serve` end to end: real collector processes listening on 127.0.0.1, real
//! sockets, real SIGKILLs and SIGTERMs, each test checking what a client or the app's
//! owner would notice.
//!
//! The PostgreSQL tests need a cluster: `./scripts/test` starts a throwaway one and sets
//! `TALLY_TEST_POSTGRES_URL`; each test makes a database of its own there. Without the
//! variable they are skipped with a note, except under CI, where they fail. The
//! `/metrics` test needs Prometheus's `promtool` in the same way.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tally_core::{Event, EventContext, KeyedHasher, Level, Source};

const URL_VARIABLE: &str = "TALLY_TEST_POSTGRES_URL";
const PROMTOOL: &str = "/usr/bin/promtool";

// ---------------------------------------------------------------------------------------
// The collector process

/// A running `tally serve`, killed when dropped.
pub(crate) struct Collector {
    child: Child,
    /// `http://127.0.0.1:PORT`, read from the line `tally serve` prints on stderr.
    base: String,
    /// Everything it wrote to stderr so far, for failure messages.
    log: Arc<Mutex<String>>,
}

impl Collector {
    /// Starts `tally serve` on a free port of 127.0.0.1 and waits until it listens.
    pub(crate) fn start(db: &str, config: Option<&Path>) -> Collector {
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
        let log = Arc::new(Mutex::new(String::new()));
        let (listening, address) = mpsc::channel();
        // The pipe is drained for the whole life of the process, so a chatty collector
        // never blocks on a full pipe.
        let reader = thread::spawn({
            let log = Arc::clone(&log);
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.strip_prefix("tally serve: listening on ") {
                        let _ = listening.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                    }
                    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        match address.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => Collector { child, base, log },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                let _ = reader.join();
                panic!(
                    "tally serve --db {} did not start ({status:?}); its stderr:\n{}",
                    redact(db),
                    log.lock().unwrap_or_else(PoisonError::into_inner)
                );
            }
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stderr(&self) -> String {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// SIGKILL, and waits until the process is gone.
    fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL the collector");
        self.child.wait().expect("reap the collector")
    }

    /// SIGTERM, the signal a service manager stops the collector with.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the process to exit by itself.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the collector") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the collector did not exit within {within:?}; its stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's peak resident memory so far (`VmHWM`), in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/PID/status");
        let line = status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .expect("VmHWM in /proc/PID/status");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|value| value.parse().ok())
            .expect("VmHWM in kB");
        kib * 1024
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tally keys create`: the key is the last line of its output.
pub(crate) fn create_key(db: &str, app: &str, role: &str) -> String {
    let output = tally(&[
        "keys", "create", "--db", db, "--app", app, "--role", role, "--label", "test",
    ]);
    output.lines().last().expect("a key on the last line").trim().to_owned()
}

/// Runs `tally ARGS`, insists on success and returns stdout.
fn tally(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .env_remove("TALLY_DB")
        .output()
        .expect("run tally");
    let shown: Vec<String> = args.iter().map(|arg| redact(arg)).collect();
    assert!(
        output.status.success(),
        "tally {shown:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// A database URL without its password, for messages.
fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}***{}", &text[..scheme + 3], &text[at..]),
        _ => text.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

/// What a client saw.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: ureq::http::HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn reply(mut response: ureq::http::Response<ureq::Body>) -> Result<Reply, ureq::Error> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()?;
    Ok(Reply { status, headers, body })
}

/// A POST with any headers and body; `Err` only when no HTTP answer came back.
fn post_raw(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Reply, ureq::Error> {
    let mut request = agent.post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.send(body)?)
}

/// A JSON POST with a key.
pub(crate) fn post_json(agent: &ureq::Agent, url: &str, key: &str, body: &Value) -> Result<Reply, ureq::Error> {
    let bearer = format!("Bearer {key}");
    post_raw(
        agent,
        url,
        &[("Authorization", &bearer), ("Content-Type", "application/json")],
        &serde_json::to_vec(body).expect("serialize"),
    )
}

/// A GET with an optional key and extra headers.
pub(crate) fn get(agent: &ureq::Agent, url: &str, key: Option<&str>, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent.get(url);
    if let Some(key) = key {
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.call().unwrap_or_else(|err| panic!("GET {url}: {err}")))
        .unwrap_or_else(|err| panic!("GET {url}: {err}"))
}

/// Every event of the admin key's app, through `GET /v1/events` page by page.
pub(crate) fn list_events(agent: &ureq::Agent, collector: &Collector, admin: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = collector.url("/v1/events?limit=1000");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page = get(agent, &url, Some(admin), &[]);
        assert_eq!(page.status, 200, "GET /v1/events: {}", page.body);
        let page = page.json();
        events.extend(page["events"].as_array().expect("events").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
}

/// The sum of the `tally_events_total` samples of a `/metrics` exposition.
fn events_total(exposition: &str) -> u64 {
    exposition
        .lines()
        .filter(|line| line.starts_with("tally_events_total{") || line.starts_with("tally_events_total "))
        .map(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("sample without a number: {line}")) as u64
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// Events

/// `count` valid events of `app`, each with its own UUIDv7, over the last few minutes,
/// from a few installs and sessions, under `names` in turn.
pub(crate) fn make_events(app: &str, count: usize, names: &[(&'static str, &'static str)]) -> Vec<Value> {
    let hasher = KeyedHasher::new(&[7; 32]);
    let now = tally_core::time::now_millis();
    (0..count)
        .map(|index| {
            let session = format!("session-{}", index % 29);
            let install = format!("install-{}", index % 13);
            let context = EventContext {
                app,
                app_version: "1.4.2",
                source: Source::Cli,
                session_id: &session,
                install_id: &install,
                hasher: &hasher,
                level: Level::Enhanced,
            };
            let (kind, name) = names[index % names.len()];
            let ts = now - jiff::SignedDuration::from_millis((count - index) as i64 * 7);
            let event: Event = Event::builder(kind, name)
                .command("task done")
                .duration_ms(index as u64 % 500)
                .success(index % 5 != 0)
                .ts(ts)
                .finish(&context)
                .expect("a valid event")
                .expect("kept at level enhanced");
            serde_json::to_value(event).expect("serialize an event")
        })
        .collect()
}

pub(crate) fn commands(app: &str, count: usize) -> Vec<Value> {
    make_events(app, count, &[("command", "command_executed")])
}

pub(crate) fn id_of(event: &Value) -> String {
    event["id"].as_str().expect("an id").to_owned()
}

/// A small random source for kill points; the seed is printed so a failure can be
/// replayed with `TALLY_TEST_SEED`.
struct Random(u64);

impl Random {
    fn new(test: &str) -> Random {
        let seed = std::env::var("TALLY_TEST_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            });
        eprintln!("{test}: TALLY_TEST_SEED={seed}");
        Random(seed | 1)
    }

    /// A number in `range` (xorshift64*).
    fn below(&mut self, range: std::ops::Range<u64>) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        range.start + self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % (range.end - range.start)
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

/// A database of its own on the test cluster, dropped (with its connections) at the end.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// `None` (after a note) when no cluster is configured outside CI; panics under CI.
    fn create(test: &str) -> Option<PgDatabase> {
        let admin_url = match std::env::var(URL_VARIABLE) {
            Ok(url) if !url.is_empty() => url,
            _ if ci() => panic!(
                "{URL_VARIABLE} is not set, and CI is: the PostgreSQL collector tests must run in CI. \
                 Run ./scripts/test, which starts a throwaway PostgreSQL cluster"
            ),
            _ => {
                eprintln!(
                    "note: {test}: {URL_VARIABLE} is not set, so its PostgreSQL part is skipped; \
                     ./scripts/test starts a throwaway cluster and runs it"
                );
                return None;
            }
        };
        let name = format!("tally_cli_test_{}", tally_core::Uuid::new_v4().simple());
        pg_execute(&admin_url, &format!("CREATE DATABASE {name}"));
        let url = with_database_name(&admin_url, &name);
        Some(PgDatabase { admin_url, name, url })
    }

    /// How many rows `events` holds, and how many distinct ids.
    fn event_counts(&self) -> (i64, i64) {
        pg_runtime().block_on(async {
            let client = pg_connect(&self.url).await;
            let row = client
                .query_one("SELECT count(*), count(DISTINCT id) FROM events", &[])
                .await
                .expect("count events");
            (row.get(0), row.get(1))
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // FORCE ends the connections of collectors that are still shutting down.
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin_url = self.admin_url.clone();
        let dropped = thread::spawn(move || pg_execute(&admin_url, &drop)).join();
        if dropped.is_err() {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

pub(crate) fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

fn pg_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|err| panic!("{URL_VARIABLE}={}: cannot connect: {err}", redact(url)));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn pg_execute(url: &str, sql: &str) {
    pg_runtime().block_on(async {
        pg_connect(url)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    });
}

/// `url` with its database name replaced by `name`.
fn with_database_name(url: &str, name: &str) -> String {
    let authority = url.find("://").map_or(0, |index| index + 3);
    let rest = &url[authority..];
    let query = rest.find('?').unwrap_or(rest.len());
    let path = rest[..query].find('/').unwrap_or(query);
    format!("{}{}/{name}{}", &url[..authority], &rest[..path], &rest[query..])
}

// ---------------------------------------------------------------------------------------
// SQLite

/// A collector database file in a temporary directory.
struct SqliteFile {
    _dir: tempfile::TempDir,
    path: String,
}

fn sqlite_file() -> SqliteFile {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("collector.db").to_string_lossy().into_owned();
    SqliteFile { _dir: dir, path }
}

/// Every stored event id, as many times as it is stored.
fn sqlite_event_ids(path: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the collector's database");
    let mut statement = conn.prepare("SELECT id FROM events").expect("prepare");
    statement
        .query_map([], |row| row.get::<_, String>(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("read ids")
}

// ---------------------------------------------------------------------------------------
// 1. Two collectors, one PostgreSQL database

#[test]
fn two_collectors_on_one_postgres_database_store_each_event_once() {
    let Some(database) = PgDatabase::create("two_collectors_on_one_postgres_database_store_each_event_once") else {
        return;
    };
    let ingest = create_key(&database.url, "nexus", "ingest");
    let admin = create_key(&database.url, "nexus", "admin");
    let collectors = [
        Collector::start(&database.url, None),
        Collector::start(&database.url, None),
    ];
    let events = commands("nexus", 2_000);

    // Who sends what: the ranges overlap, both across the two collectors and on the same
    // collector (a client retrying while its first attempt is still in flight).
    let plans: [(usize, std::ops::Range<usize>, usize); 5] = [
        (0, 0..1_200, 40),
        (1, 800..2_000, 70),
        (0, 1_100..1_300, 50),
        (1, 0..300, 100),
        (0, 1_700..2_000, 13),
    ];
    let sent: usize = plans.iter().map(|(_, range, _)| range.len()).sum();
    let outcomes: Vec<(u64, u64)> = thread::scope(|scope| {
        let workers: Vec<_> = plans
            .iter()
            .map(|(target, range, batch)| {
                let (collector, events, ingest) = (&collectors[*target], &events[range.clone()], &ingest);
                scope.spawn(move || {
                    let agent = agent();
                    let (mut accepted, mut duplicates) = (0, 0);
                    for chunk in events.chunks(*batch) {
                        let reply = post_json(
                            &agent,
                            &collector.url("/v1/events/batch"),
                            ingest,
                            &json!({"events": chunk}),
                        )
                        .unwrap_or_else(|err| panic!("collector {target}: {err}"));
                        assert!(
                            reply.is_success(),
                            "collector {target} answered {}: {}",
                            reply.status,
                            reply.body
                        );
                        let body = reply.json();
                        assert_eq!(body["rejected"], json!([]), "{}", reply.body);
                        accepted += body["accepted"].as_u64().expect("accepted");
                        duplicates += body["duplicates"].as_u64().expect("duplicates");
                    }
                    (accepted, duplicates)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a sender"))
            .collect()
    });
    let accepted: u64 = outcomes.iter().map(|(accepted, _)| accepted).sum();
    let duplicates: u64 = outcomes.iter().map(|(_, duplicates)| duplicates).sum();
    assert_eq!(
        accepted, 2_000,
        "each event is reported newly stored by exactly one answer"
    );
    assert_eq!(duplicates as usize, sent - 2_000);

    let agent = agent();
    let listed = list_events(&agent, &collectors[1], &admin);
    let listed_ids: Vec<String> = listed.iter().map(id_of).collect();
    let distinct: HashSet<&String> = listed_ids.iter().collect();
    assert_eq!(listed_ids.len(), 2_000, "GET /v1/events lists every event once");
    assert_eq!(distinct.len(), 2_000);
    let expected: HashSet<String> = events.iter().map(id_of).collect();
    assert_eq!(distinct, expected.iter().collect::<HashSet<_>>());
    assert_eq!(database.event_counts(), (2_000, 2_000), "rows in events, distinct ids");
    for collector in &collectors {
        let metrics = get(&agent, &collector.url("/metrics"), None, &[]);
        assert_eq!(
            events_total(&metrics.body),
            2_000,
            "tally_events_total on {}",
            collector.base
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. Crash safety

const CRASH_EVENTS: usize = 3_000;
const CRASH_BATCH: usize = 50;
const CRASH_KILLS: usize = 5;

/// A client sends [`CRASH_EVENTS`] events in batches, retrying each batch (same ids) on
/// connection errors and 5xx until it gets a 2xx, while the collector is SIGKILLed
/// [`CRASH_KILLS`] times at random points and restarted on the same database. Returns the
/// acknowledged ids and the last collector.
fn send_through_crashes(db: &str, ingest: &str, random: &mut Random) -> (HashSet<String>, Collector) {
    let events = commands("nexus", CRASH_EVENTS);
    let batches: Vec<Vec<Value>> = events.chunks(CRASH_BATCH).map(<[Value]>::to_vec).collect();
    let mut collector = Collector::start(db, None);
    let base = Arc::new(Mutex::new(collector.base.clone()));
    let acknowledged_batches = Arc::new(AtomicUsize::new(0));
    // Kill points: after a random number of acknowledged batches, plus a few random
    // milliseconds so the kill lands anywhere in the next request: reading it, waiting
    // for the group commit, inside the transaction, or writing the answer.
    let mut kill_after: Vec<usize> = (0..CRASH_KILLS)
        .map(|_| random.below(1..batches.len() as u64 - 1) as usize)
        .collect();
    kill_after.sort_unstable();

    let client = thread::spawn({
        let (base, acknowledged_batches, ingest) =
            (Arc::clone(&base), Arc::clone(&acknowledged_batches), ingest.to_owned());
        move || {
            let agent = agent();
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut acknowledged = HashSet::new();
            let (mut retries, mut committed_unanswered) = (0, 0);
            for batch in batches {
                loop {
                    assert!(Instant::now() < deadline, "the client gave up after {retries} retries");
                    let url = format!(
                        "{}/v1/events/batch",
                        base.lock().unwrap_or_else(PoisonError::into_inner)
                    );
                    match post_json(&agent, &url, &ingest, &json!({"events": batch})) {
                        Ok(reply) if reply.is_success() => {
                            let body = reply.json();
                            assert_eq!(body["rejected"], json!([]), "{}", reply.body);
                            // Committed by an attempt whose answer the kill cut off.
                            committed_unanswered += body["duplicates"].as_u64().unwrap_or(0);
                            acknowledged.extend(batch.iter().map(id_of));
                            acknowledged_batches.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Ok(reply) if reply.status >= 500 => {}
                        Ok(reply) => panic!("{url} answered {}: {}", reply.status, reply.body),
                        // The collector is dead or restarting; try again, at its new port.
                        Err(_) => {}
                    }
                    retries += 1;
                    thread::sleep(Duration::from_millis(5));
                }
            }
            eprintln!(
                "the client needed {retries} retries; {committed_unanswered} events were committed \
                 by an attempt that got no answer"
            );
            acknowledged
        }
    });

    for (kill, after) in kill_after.iter().enumerate() {
        while acknowledged_batches.load(Ordering::SeqCst) < *after && !client.is_finished() {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_millis(random.below(0..25)));
        let status = collector.kill();
        assert_eq!(status.signal(), Some(9), "kill {kill}: {status:?}");
        collector = Collector::start(db, None);
        *base.lock().unwrap_or_else(PoisonError::into_inner) = collector.base.clone();
    }
    let acknowledged = client.join().expect("the client");
    eprintln!("killed after {kill_after:?} acknowledged batches");
    (acknowledged, collector)
}

#[test]
fn events_acknowledged_before_sigkill_are_stored_exactly_once_sqlite() {
    let file = sqlite_file();
    let ingest = create_key(&file.path, "nexus", "ingest");
    let mut random = Random::new("events_acknowledged_before_sigkill_are_stored_exactly_once_sqlite");
    let (acknowledged, collector) = send_through_crashes(&file.path, &ingest, &mut random);
    assert_eq!(
        acknowledged.len(),
        CRASH_EVENTS,
        "the client retried until every batch was acknowledged"
    );

    let metrics = get(&agent(), &collector.url("/metrics"), None, &[]);
    assert_eq!(
        events_total(&metrics.body),
        CRASH_EVENTS as u64,
        "tally_events_total counts each event once"
    );
    drop(collector);
    let stored = sqlite_event_ids(&file.path);
    let distinct: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), distinct.len(), "no event is stored twice");
    assert_eq!(
        distinct, acknowledged,
        "every acknowledged event is stored, and nothing else"
    );
}

#[test]
fn events_acknowledged_before_sigkill_are_stored_exactly_once_postgres() {
    let test = "events_acknowledged_before_sigkill_are_stored_exactly_once_postgres";
    let Some(database) = PgDatabase::create(test) else {
        return;
    };
    let ingest = create_key(&database.url, "nexus", "ingest");
    let admin = create_key(&database.url, "nexus", "admin");
    let mut random = Random::new(test);
    let (acknowledged, collector) = send_through_crashes(&database.url, &ingest, &mut random);
    assert_eq!(
        acknowledged.len(),
        CRASH_EVENTS,
        "the client retried until every batch was acknowledged"
    );

    let agent = agent();
    let metrics = get(&agent, &collector.url("/metrics"), None, &[]);
    assert_eq!(
        events_total(&metrics.body),
        CRASH_EVENTS as u64,
        "tally_events_total counts each event once"
    );
    let listed: HashSet<String> = list_events(&agent, &collector, &admin).iter().map(id_of).collect();
    assert_eq!(
        listed, acknowledged,
        "every acknowledged event is stored, and nothing else"
    );
    assert_eq!(
        database.event_counts(),
        (CRASH_EVENTS as i64, CRASH_EVENTS as i64),
        "rows in events, distinct ids: no event is stored twice"
    );
}

// ---------------------------------------------------------------------------------------
// 3. A gzip bomb

/// One gzip member holding `mib` MiB of zeros, about 1 KB per MiB, built without ever
/// holding (or even compressing) more than 1 MiB of zeros.
///
/// Deflating 1 GiB takes tens of seconds in a debug build, so the stream is assembled:
/// after a full flush the compressor starts afresh, so every further MiB of zeros
/// compresses to the same bytes, and those bytes are repeated. The trailer's CRC-32 is
/// computed without the data too ([`crc32_of_zeros`]). The test decompresses a small
/// bomb built the same way to show the construction is valid gzip.
fn gzip_of_zeros(mib: u32) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let zeros = vec![0u8; 1 << 20];
    let mut deflate = Compress::new(Compression::best(), false);
    let mut next_mib = || {
        let mut out = Vec::with_capacity(64 * 1024);
        deflate
            .compress_vec(&zeros, &mut out, FlushCompress::Full)
            .expect("deflate");
        out
    };
    let (first, second, third) = (next_mib(), next_mib(), next_mib());
    assert_eq!(second, third, "a MiB of zeros after a full flush always deflates alike");
    // The gzip header: magic, deflate, no flags, no time, best compression, Unix.
    let mut bomb = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
    bomb.extend_from_slice(&first);
    for _ in 1..mib {
        bomb.extend_from_slice(&second);
    }
    // The last, empty, final block.
    let mut last = Vec::with_capacity(64);
    deflate
        .compress_vec(&[], &mut last, FlushCompress::Finish)
        .expect("deflate");
    bomb.extend_from_slice(&last);
    let size = u64::from(mib) << 20;
    bomb.extend_from_slice(&crc32_of_zeros(size).to_le_bytes());
    bomb.extend_from_slice(&(size as u32).to_le_bytes());
    bomb
}

/// CRC-32 (gzip's) of `len` zero bytes. Feeding a zero byte is a linear map of the CRC
/// register, held as its 32 columns; feeding `len` of them is that map to the power `len`.
fn crc32_of_zeros(len: u64) -> u32 {
    type Map = [u32; 32];
    let apply = |map: &Map, vector: u32| {
        (0..32)
            .filter(|bit| vector >> bit & 1 == 1)
            .fold(0, |sum, bit| sum ^ map[bit])
    };
    let compose = |outer: &Map, inner: &Map| -> Map { std::array::from_fn(|bit| apply(outer, inner[bit])) };
    let mut power: Map = std::array::from_fn(|bit| {
        let mut register = 1u32 << bit;
        for _ in 0..8 {
            register = if register & 1 == 1 {
                (register >> 1) ^ 0xedb8_8320
            } else {
                register >> 1
            };
        }
        register
    });
    let mut result: Map = std::array::from_fn(|bit| 1 << bit);
    let mut remaining = len;
    while remaining > 0 {
        if remaining & 1 == 1 {
            result = compose(&power, &result);
        }
        power = compose(&power, &power);
        remaining >>= 1;
    }
    !apply(&result, !0)
}

#[test]
fn a_gzip_bomb_is_refused_within_bounded_memory() {
    let file = sqlite_file();
    let ingest = create_key(&file.path, "nexus", "ingest");
    let collector = Collector::start(&file.path, None);
    let small = gzip_of_zeros(3);
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(small.as_slice())
        .read_to_end(&mut unzipped)
        .expect("the construction is valid gzip, CRC and length included");
    assert!(unzipped.len() == 3 << 20 && unzipped.iter().all(|byte| *byte == 0));
    let bomb = gzip_of_zeros(1024);
    assert!(bomb.len() < 2_000_000, "the bomb is {} bytes compressed", bomb.len());

    let bearer = format!("Bearer {ingest}");
    let reply = post_raw(
        &agent(),
        &collector.url("/v1/events/batch"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &bomb,
    )
    .expect("an answer");
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.error_code(), "too_large");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("max_body_bytes"),
        "the message names the limit: {}",
        reply.body
    );
    let peak = collector.peak_rss();
    eprintln!("peak RSS after the bomb: {} MiB", peak / (1024 * 1024));
    assert!(
        peak < 200 * 1024 * 1024,
        "the collector's peak RSS was {} MiB while refusing a 1 GiB gzip bomb",
        peak / (1024 * 1024)
    );
    let health = get(&agent(), &collector.url("/healthz"), None, &[]);
    assert_eq!(health.status, 200, "the collector still answers");
}

// ---------------------------------------------------------------------------------------
// 4. Bodies that are not events

#[test]
fn malformed_bodies_are_refused_with_the_right_status() {
    let file = sqlite_file();
    let ingest = create_key(&file.path, "nexus", "ingest");
    let collector = Collector::start(&file.path, None);
    let agent = agent();
    let bearer = format!("Bearer {ingest}");
    let post = |path: &str, content_type: &str, encoding: Option<&str>, body: &[u8]| {
        let mut headers = vec![("Authorization", bearer.as_str()), ("Content-Type", content_type)];
        if let Some(encoding) = encoding {
            headers.push(("Content-Encoding", encoding));
        }
        post_raw(&agent, &collector.url(path), &headers, body).expect("an answer")
    };

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for path in ["/v1/events", "/v1/events/batch"] {
        let reply = post(path, "application/json", None, deep.as_bytes());
        assert_eq!(
            (reply.status, reply.error_code().as_str()),
            (400, "too_deep"),
            "{path}: {}",
            reply.body
        );

        let reply = post(path, "application/json", None, b"this is not JSON");
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert_eq!(reply.error_code(), "malformed_json");

        let event = serde_json::to_vec(&commands("nexus", 1)[0]).expect("serialize");
        let reply = post(path, "text/plain", None, &event);
        assert_eq!(reply.status, 415, "{path}: {}", reply.body);
        assert_eq!(reply.error_code(), "unsupported_media_type");

        let reply = post(path, "application/json", Some("br"), &event);
        assert_eq!(reply.status, 415, "{path}: {}", reply.body);
        assert_eq!(reply.error_code(), "unsupported_media_type");
    }
    let stored = sqlite_event_ids(&file.path);
    assert!(stored.is_empty(), "nothing was stored: {stored:?}");
}

// ---------------------------------------------------------------------------------------
// 5. Keys

#[test]
fn keys_are_checked_by_role_and_app_and_revocation_takes_effect() {
    let file = sqlite_file();
    let db = file.path.as_str();
    let ingest = create_key(db, "nexus", "ingest");
    let admin = create_key(db, "nexus", "admin");
    let other_ingest = create_key(db, "other", "ingest");
    let collector = Collector::start(db, None);
    let agent = agent();
    let events = commands("nexus", 3);
    let single = collector.url("/v1/events");

    let no_key = post_raw(
        &agent,
        &single,
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(&events[0]).expect("serialize"),
    )
    .expect("an answer");
    assert_eq!(no_key.status, 401, "{}", no_key.body);
    assert_eq!(no_key.error_code(), "unauthorized");
    assert_eq!(no_key.header("WWW-Authenticate"), Some("Bearer"));

    let unknown = "tly_ingest_0123456789ab_0123456789abcdef0123456789abcdef";
    for key in ["not-a-key", "tly_ingest_xyz_123", unknown] {
        let reply = post_json(&agent, &single, key, &events[0]).expect("an answer");
        assert_eq!(reply.status, 401, "key {key:?}: {}", reply.body);
        assert_eq!(reply.header("WWW-Authenticate"), Some("Bearer"), "key {key:?}");
    }

    let reply = post_json(&agent, &single, &admin, &events[0]).expect("an answer");
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (403, "forbidden"),
        "admin key on ingest: {}",
        reply.body
    );
    let stats = get(&agent, &collector.url("/v1/stats"), Some(&ingest), &[]);
    assert_eq!(
        (stats.status, stats.error_code().as_str()),
        (403, "forbidden"),
        "ingest key on stats: {}",
        stats.body
    );

    // An ingest key of app "other" sending an event of app "nexus".
    let reply = post_json(&agent, &single, &other_ingest, &events[0]).expect("an answer");
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (403, "forbidden"),
        "{}",
        reply.body
    );
    let others_event = commands("other", 1).remove(0);
    let reply = post_json(
        &agent,
        &collector.url("/v1/events/batch"),
        &other_ingest,
        &json!({"events": [others_event, events[1]]}),
    )
    .expect("an answer");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["accepted"], 1, "{body}");
    let rejected = body["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 1, "{body}");
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["code"], "forbidden");
    assert_eq!(rejected[0]["id"], events[1]["id"]);

    // The key works (and is now cached) until it is revoked; then it stops within 6 s.
    let reply = post_json(&agent, &single, &ingest, &events[2]).expect("an answer");
    assert_eq!(reply.status, 202, "{}", reply.body);
    let key_id = ingest.split('_').nth(2).expect("tly_ingest_<id>_<secret>");
    let revoked = tally(&["keys", "revoke", "--db", db, key_id]);
    assert!(revoked.contains(key_id), "{revoked}");
    let revoked_at = Instant::now();
    let fresh = commands("nexus", 200);
    let mut fresh = fresh.iter();
    loop {
        let reply = post_json(&agent, &single, &ingest, fresh.next().expect("enough events")).expect("an answer");
        if reply.status == 401 {
            break;
        }
        assert_eq!(reply.status, 202, "{}", reply.body);
        assert!(
            revoked_at.elapsed() < Duration::from_secs(6),
            "a revoked key still worked {:?} after `tally keys revoke`",
            revoked_at.elapsed()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(6));
}

// ---------------------------------------------------------------------------------------
// 6. Rate limits

#[test]
fn a_key_past_its_rate_limit_is_told_when_to_retry() {
    let file = sqlite_file();
    let ingest = create_key(&file.path, "nexus", "ingest");
    let config = tempfile::NamedTempFile::new().expect("a config file");
    std::fs::write(config.path(), "rate_limit_per_second = 1\nrate_limit_burst = 2\n").expect("write the config");
    let collector = Collector::start(&file.path, Some(config.path()));
    let agent = agent();
    let events = commands("nexus", 3);
    let replies: Vec<Reply> = events
        .iter()
        .map(|event| post_json(&agent, &collector.url("/v1/events"), &ingest, event).expect("an answer"))
        .collect();
    assert_eq!(replies[0].status, 202, "{}", replies[0].body);
    assert_eq!(replies[1].status, 202, "{}", replies[1].body);
    let limited = &replies[2];
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.error_code(), "rate_limited");
    let retry_after: u64 = limited
        .header("Retry-After")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in seconds: {:?}", limited.headers));
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
}

// ---------------------------------------------------------------------------------------
// 7. /metrics

#[test]
fn metrics_pass_promtool_and_count_every_event() {
    if !Path::new(PROMTOOL).exists() {
        assert!(
            !ci(),
            "{PROMTOOL} is missing, and CI is set: install the prometheus package"
        );
        eprintln!("note: {PROMTOOL} is missing, so the /metrics format check is skipped (apt-get install prometheus)");
        return;
    }
    let file = sqlite_file();
    let ingest = create_key(&file.path, "nexus", "ingest");
    let collector = Collector::start(&file.path, None);
    let agent = agent();

    ingest_437_events_with_a_resent_batch(&agent, &collector, &ingest);

    let metrics = get(&agent, &collector.url("/metrics"), None, &[]);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("Content-Type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{:?}",
        metrics.headers
    );
    promtool_check_metrics(&metrics.body);
    assert_eq!(
        events_total(&metrics.body),
        437,
        "tally_events_total adds up to the events ingested"
    );
    assert!(
        metrics
            .body
            .contains(r#"tally_events_total{app="nexus",type="other",name="other"}"#),
        "names past the top 20 are summed as other:\n{}",
        metrics.body
    );

    let openmetrics = get(
        &agent,
        &collector.url("/metrics"),
        None,
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    );
    assert_eq!(openmetrics.status, 200);
    assert!(
        openmetrics
            .header("Content-Type")
            .unwrap_or_default()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        openmetrics.headers
    );
    assert!(openmetrics.body.trim_end().ends_with("# EOF"), "{}", openmetrics.body);
    assert_eq!(events_total(&openmetrics.body), 437);
}

/// Ingests 437 events with 25 names (more than `/metrics` labels, so some are summed
/// as `other`), in batches and one by one, then resends a batch that must store nothing.
fn ingest_437_events_with_a_resent_batch(agent: &ureq::Agent, collector: &Collector, ingest: &str) {
    let names: Vec<(&'static str, &'static str)> = (0..25)
        .map(|index| match index % 3 {
            0 => ("command", &*String::leak(format!("command_{index}"))),
            1 => ("feature", &*String::leak(format!("feature_{index}"))),
            _ => ("error", &*String::leak(format!("error_{index}"))),
        })
        .collect();
    let events = make_events("nexus", 437, &names);
    for chunk in events[..400].chunks(100) {
        let reply = post_json(
            agent,
            &collector.url("/v1/events/batch"),
            ingest,
            &json!({"events": chunk}),
        )
        .expect("an answer");
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["accepted"], chunk.len(), "{}", reply.body);
    }
    for event in &events[400..] {
        let reply = post_json(agent, &collector.url("/v1/events"), ingest, event).expect("an answer");
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    // A resent batch stores nothing and must not be counted again.
    let reply = post_json(
        agent,
        &collector.url("/v1/events/batch"),
        ingest,
        &json!({"events": &events[..50]}),
    )
    .expect("an answer");
    assert_eq!(reply.json()["duplicates"], 50, "{}", reply.body);
}

/// Fails the test, showing the exposition, unless `promtool check metrics` accepts it.
fn promtool_check_metrics(exposition: &str) {
    let mut promtool = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    promtool
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(exposition.as_bytes())
        .expect("feed promtool");
    let checked = promtool.wait_with_output().expect("promtool's verdict");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n--- the exposition:\n{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr),
        exposition
    );
}

// ---------------------------------------------------------------------------------------
// 8. SIGTERM

#[test]
fn sigterm_while_clients_send_exits_zero_and_keeps_every_acknowledged_event() {
    let file = sqlite_file();
    let ingest = create_key(&file.path, "nexus", "ingest");
    let mut collector = Collector::start(&file.path, None);
    let acknowledged_batches = AtomicUsize::new(0);
    let stopped = AtomicBool::new(false);
    let events = commands("nexus", 20_000);

    let (acknowledged, server_errors, exit) = thread::scope(|scope| {
        let clients: Vec<_> = events
            .chunks(events.len() / 4)
            .map(|mine| {
                let (url, ingest) = (collector.url("/v1/events/batch"), &ingest);
                let (acknowledged_batches, stopped) = (&acknowledged_batches, &stopped);
                scope.spawn(move || {
                    let agent = agent();
                    let mut acknowledged = Vec::new();
                    let mut server_errors = Vec::new();
                    for batch in mine.chunks(20) {
                        match post_json(&agent, &url, ingest, &json!({"events": batch})) {
                            Ok(reply) if reply.is_success() => {
                                acknowledged.extend(batch.iter().map(id_of));
                                acknowledged_batches.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(reply) if reply.status >= 500 => {
                                server_errors.push(format!("{}: {}", reply.status, reply.body))
                            }
                            Ok(reply) => panic!("{} {}", reply.status, reply.body),
                            // The collector stopped listening: this client is done.
                            Err(_) if stopped.load(Ordering::SeqCst) => break,
                            Err(err) => panic!("before SIGTERM: {err}"),
                        }
                    }
                    (acknowledged, server_errors)
                })
            })
            .collect();
        while acknowledged_batches.load(Ordering::SeqCst) < 20 {
            thread::sleep(Duration::from_millis(2));
        }
        stopped.store(true, Ordering::SeqCst);
        collector.terminate();
        let exit = collector.wait_exit(Duration::from_secs(30));
        let mut acknowledged = HashSet::new();
        let mut server_errors = Vec::new();
        for client in clients {
            let (mine, errors) = client.join().expect("a client");
            acknowledged.extend(mine);
            server_errors.extend(errors);
        }
        (acknowledged, server_errors, exit)
    });
    eprintln!(
        "{} events acknowledged before the collector stopped",
        acknowledged.len()
    );
    assert!(exit.success(), "exit status {exit:?}; stderr:\n{}", collector.stderr());
    assert!(server_errors.is_empty(), "5xx while draining: {server_errors:?}");
    assert!(
        acknowledged.len() < events.len(),
        "the clients were still sending when SIGTERM came"
    );
    let stored = sqlite_event_ids(&file.path);
    let distinct: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), distinct.len(), "no event is stored twice");
    let lost: Vec<&String> = acknowledged.difference(&distinct).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events were not stored: {lost:?}",
        lost.len()
    );
}

#[test]
fn events_total_sums_labelled_samples() {
    let exposition = "# TYPE tally_events_total counter\n\
        tally_events_total{app=\"a\",type=\"command\",name=\"x\"} 3\n\
        tally_events_total{app=\"b\",type=\"other\",name=\"other\"} 4\n\
        tally_events_total_created 1\n";
    assert_eq!(events_total(exposition), 7);
    assert_eq!(redact("postgres://u:secret@h/db"), "postgres://***@h/db");
}
