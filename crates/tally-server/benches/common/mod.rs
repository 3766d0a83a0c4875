//! What the collector benches share: the batches they send, a collector served on
//! 127.0.0.1, clients that post gzip batches at once, and throwaway PostgreSQL
//! databases (`ingest.rs` and `writes.rs` include it as `mod common`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use axum::Router;
use tally_core::{Event, EventContext, KeyedHasher, Level, Source};
use tally_server::config::ServerConfig;
use tally_server::storage::postgres::PostgresStorage;
use tally_server::storage::{Role, Storage};
use tally_server::{AppState, app};
use tokio::runtime::Runtime;

/// Events per request and per direct insert.
pub(crate) const BATCH: usize = 100;

/// Batches each side writes per round.
pub(crate) const BATCHES_PER_ROUND: usize = 40;
/// Rounds per side, unless a bench lets `TALLY_BENCH_ROUNDS` say otherwise.
pub(crate) const ROUNDS: usize = 20;
/// Batches each side writes, untimed, before the first round.
pub(crate) const WARM_UP_BATCHES: usize = 10;
/// Clients of the concurrent HTTP sides.
pub(crate) const CLIENTS: usize = 4;

/// Names the PostgreSQL cluster the PostgreSQL runs use, as in the tests.
pub(crate) const URL_VARIABLE: &str = "TALLY_TEST_POSTGRES_URL";

// ---------------------------------------------------------------------------------------
// Events and bodies

/// Batches of new events, each batch from one install and session.
pub(crate) struct Workload {
    next_batch: usize,
    now: jiff::Timestamp,
    hasher: KeyedHasher,
}

impl Workload {
    pub(crate) fn new() -> Workload {
        Workload {
            next_batch: 0,
            now: tally_core::time::now_millis(),
            hasher: KeyedHasher::new(&[9; 32]),
        }
    }

    pub(crate) fn batch(&mut self, size: usize) -> Vec<Event> {
        const NAMES: [(&str, &str); 12] = [
            ("command", "command_executed"),
            ("command", "command_executed"),
            ("command", "command_executed"),
            ("feature", "search_used"),
            ("feature", "export_used"),
            ("feature", "theme_changed"),
            ("workspace", "workspace_created"),
            ("task", "task_completed"),
            ("task", "task_completed"),
            ("error", "error_occurred"),
            ("session", "session_started"),
            ("session", "session_ended"),
        ];
        let number = self.next_batch;
        self.next_batch += 1;
        let session = format!("session-{number}");
        let install = format!("install-{}", number % 997);
        let context = EventContext {
            app: "nexus",
            app_version: "1.4.2",
            source: Source::Cli,
            session_id: &session,
            install_id: &install,
            hasher: &self.hasher,
            level: Level::Enhanced,
        };
        let start = self.now - jiff::SignedDuration::from_secs((number % 3_600) as i64);
        (0..size)
            .map(|index| {
                let (kind, name) = NAMES[index % NAMES.len()];
                let mut builder = Event::builder(kind, name)
                    .ts(start + jiff::SignedDuration::from_millis(index as i64 * 11))
                    .duration_ms(index as u64 * 37 % 4_000)
                    .success(index % 9 != 0);
                if kind == "command" {
                    builder = builder.command(["task done", "workspace create", "sync"][index % 3]);
                }
                if kind == "error" {
                    builder = builder.error_category("io");
                }
                if kind == "feature" {
                    builder = builder.prop("variant", "b").prop("count", (index % 7) as i64);
                }
                builder
                    .workspace("acme")
                    .finish(&context)
                    .expect("a valid event")
                    .expect("kept at level enhanced")
            })
            .collect()
    }
}

pub(crate) fn gzip_body(events: &[Event]) -> Vec<u8> {
    let json = serde_json::to_vec(&serde_json::json!({ "events": events })).expect("serialize a batch");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&json).expect("gzip");
    encoder.finish().expect("gzip")
}

// ---------------------------------------------------------------------------------------
// Servers and clients

/// A collector on `store`, served on 127.0.0.1 in `runtime`, with an ingest key.
pub(crate) struct Running {
    pub(crate) base: String,
    pub(crate) key: String,
}

pub(crate) fn serve_collector(runtime: &Runtime, store: Arc<dyn Storage>) -> Running {
    let key = tally_server::auth::generate("nexus", Role::Ingest, "bench", jiff::Timestamp::now()).expect("a key");
    runtime.block_on(store.put_key(&key.stored)).expect("store the key");
    let router = runtime.block_on(async { app(AppState::new(store, bench_config()).0) });
    Running {
        base: serve(runtime, router),
        key: key.secret,
    }
}

/// The defaults, without the rate limit: it would measure itself, and the bench is one
/// key sending flat out.
pub(crate) fn bench_config() -> ServerConfig {
    ServerConfig {
        rate_limit_per_second: 1e9,
        rate_limit_burst: u32::MAX,
        ..ServerConfig::default()
    }
}

/// Serves `router` on a free port of 127.0.0.1; returns `http://ADDR`.
pub(crate) fn serve(runtime: &Runtime, router: Router) -> String {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))
        .expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("the bound address");
    runtime.spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

pub(crate) fn post_batch(agent: &ureq::Agent, url: &str, bearer: &str, body: &[u8]) {
    let mut response = agent
        .post(url)
        .header("Authorization", bearer)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .send(body)
        .expect("an answer");
    let status = response.status();
    let text = response.body_mut().read_to_string().expect("a body");
    assert!(
        status == 200 && text.contains(&format!("\"accepted\":{BATCH}")),
        "{status}: {text}"
    );
}

/// Sends `bodies` from `clients` threads at once; returns the time from the first
/// request to the last answer.
pub(crate) fn send_all(running: &Running, agents: &[ureq::Agent], bodies: Vec<Vec<u8>>) -> Duration {
    let url = format!("{}/v1/events/batch", running.base);
    let bearer = format!("Bearer {}", running.key);
    let next = AtomicUsize::new(0);
    let start = Barrier::new(agents.len() + 1);
    // The scope joins every client before it returns.
    let began = std::thread::scope(|scope| {
        for agent in agents {
            let (url, bearer, bodies, next, start) = (&url, &bearer, &bodies, &next, &start);
            scope.spawn(move || {
                start.wait();
                while let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                    post_batch(agent, url, bearer, body);
                }
            });
        }
        start.wait();
        Instant::now()
    });
    began.elapsed()
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

/// Fresh databases on the cluster `TALLY_TEST_POSTGRES_URL` names, dropped at the end.
pub(crate) struct Databases {
    admin_url: String,
    made: std::sync::Mutex<Vec<String>>,
}

impl Databases {
    pub(crate) fn new(admin_url: String) -> Databases {
        Databases {
            admin_url,
            made: std::sync::Mutex::default(),
        }
    }

    /// The URL of a new, empty database.
    pub(crate) fn fresh_url(&self, runtime: &Runtime) -> String {
        let name = format!("tally_bench_{}", tally_core::Uuid::new_v4().simple());
        runtime.block_on(execute(&self.admin_url, &format!("CREATE DATABASE {name}")));
        let url = with_database_name(&self.admin_url, &name);
        self.made.lock().expect("the list of databases").push(name);
        url
    }

    /// A collector's store on a new database.
    pub(crate) fn fresh_store(&self, runtime: &Runtime) -> Arc<dyn Storage> {
        let url = self.fresh_url(runtime);
        Arc::new(
            runtime
                .block_on(PostgresStorage::connect(&url))
                .expect("connect to the bench database"),
        )
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        for name in self.made.lock().expect("the list of databases").drain(..) {
            runtime.block_on(execute(
                &self.admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ));
        }
    }
}

async fn execute(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|err| panic!("{URL_VARIABLE}: cannot connect: {err}"));
    let connection = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    drop(client);
    let _ = connection.await;
}

/// `url` with its database name replaced by `name`.
fn with_database_name(url: &str, name: &str) -> String {
    let authority = url.find("://").map_or(0, |index| index + 3);
    let rest = &url[authority..];
    let query = rest.find('?').unwrap_or(rest.len());
    let path = rest[..query].find('/').unwrap_or(query);
    format!("{}{}/{name}{}", &url[..authority], &rest[..path], &rest[query..])
}
