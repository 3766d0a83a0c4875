//! Ingest through the collector's HTTP API against writing the same batches straight into
//! the same kind of store, in the same run (see the "Collector" section of
//! `docs/BENCHMARKS.md`).
//!
//! `cargo bench -p tally-server --bench ingest`; PostgreSQL too when
//! `TALLY_TEST_POSTGRES_URL` names a cluster (each side gets a fresh database there).
//!
//! **Batch throughput.** Every side writes batches of [`BATCH`] new events (one install and
//! session per batch, fresh UUIDv7s, a dozen event names, times spread over the last
//! hour) into a store of its own:
//!
//! - `direct`: `Storage::insert(batch)` called one batch after the other: the baseline.
//! - `http, 1 client`: the collector (`tally_server::app` served by axum on 127.0.0.1:0
//!   in this process's tokio runtime) receiving `POST /v1/events/batch` with a gzip body,
//!   one request at a time over one keep-alive connection. Same shape as the baseline,
//!   so the ratio is the cost of HTTP, gzip, JSON, validation and the group-commit hop.
//! - `http, 4 clients`: the same with four clients at once, where group commit may put
//!   several requests in one transaction.
//!
//! Request bodies are serialized and gzipped before the clock starts; the events of the
//! direct side are built before it too. Sides alternate in rotating order for
//! [`ROUNDS`] rounds of [`BATCHES_PER_ROUND`] batches each, so a change of machine load
//! hits all sides alike; the table gives events/s over all rounds and the median of the
//! per-round ratios, which the verdict (target ≥ 0.5x) uses.
//!
//! **Single-event latency.** One client sends `POST /v1/events` (one uncompressed event)
//! on a fixed schedule, [`LATENCY_RATE`] requests/s for `TALLY_BENCH_LATENCY_SECONDS`
//! (default 10) seconds, one request at a time; latency is counted from the scheduled
//! send time, so a slow answer also delays (and is charged to) the next ones. The baseline
//! is an axum handler that reads the body and answers 202, served and called the same way.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use tally_core::Event;
use tally_server::AppState;
use tally_server::config::ServerConfig;
use tally_server::storage::sqlite::SqliteStorage;
use tally_server::storage::{Role, Storage};
use tokio::runtime::Runtime;

use crate::common::{
    BATCH, BATCHES_PER_ROUND, CLIENTS, Databases, ROUNDS, Running, URL_VARIABLE, WARM_UP_BATCHES, Workload, agent,
    bench_config, gzip_body, median, post_batch, send_all, serve, serve_collector,
};

/// Single-event requests per second.
const LATENCY_RATE: u32 = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "collector ingest: {BATCH} events per batch, {ROUNDS} rounds of {BATCHES_PER_ROUND} batches per side; \
         {} logical CPUs",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut sqlite_files = 0;
    let mut sqlite = || {
        sqlite_files += 1;
        let path = dir.path().join(format!("side-{sqlite_files}.db"));
        Arc::new(SqliteStorage::open(&path).expect("open a SQLite store")) as Arc<dyn Storage>
    };
    request_work(&runtime);
    throughput(&runtime, "sqlite", &mut sqlite);
    layers(&runtime, "sqlite", &mut sqlite);
    latency(&runtime, "sqlite", sqlite());

    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => {
            let databases = Databases::new(url);
            let mut postgres = || databases.fresh_store(&runtime);
            throughput(&runtime, "postgres", &mut postgres);
            layers(&runtime, "postgres", &mut postgres);
            latency(&runtime, "postgres", postgres());
        }
        _ => println!("\n(postgres: {URL_VARIABLE} is not set, so the PostgreSQL runs are skipped)"),
    }
}

// ---------------------------------------------------------------------------------------
// Batch throughput

#[derive(Clone, Copy)]
enum Side {
    Direct,
    Http1,
    HttpConcurrent,
}

impl Side {
    const ALL: [Side; 3] = [Side::Direct, Side::Http1, Side::HttpConcurrent];

    fn label(self) -> String {
        match self {
            Side::Direct => "direct Storage::insert (baseline)".to_owned(),
            Side::Http1 => "http, 1 client".to_owned(),
            Side::HttpConcurrent => format!("http, {CLIENTS} clients"),
        }
    }
}

fn throughput(runtime: &Runtime, backend: &str, fresh_store: &mut dyn FnMut() -> Arc<dyn Storage>) {
    let direct = fresh_store();
    let single = serve_collector(runtime, fresh_store());
    let concurrent = serve_collector(runtime, fresh_store());
    let single_agent = [agent()];
    let concurrent_agents: Vec<ureq::Agent> = (0..CLIENTS).map(|_| agent()).collect();
    let mut workload = Workload::new();

    let run = |side: Side, batches: usize, workload: &mut Workload| -> Duration {
        match side {
            Side::Direct => {
                let events: Vec<Vec<Event>> = (0..batches).map(|_| workload.batch(BATCH)).collect();
                let began = Instant::now();
                for batch in events {
                    let stored = runtime.block_on(direct.insert(batch)).expect("insert");
                    assert!(stored.iter().all(|new| *new));
                }
                began.elapsed()
            }
            Side::Http1 | Side::HttpConcurrent => {
                let bodies: Vec<Vec<u8>> = (0..batches).map(|_| gzip_body(&workload.batch(BATCH))).collect();
                match side {
                    Side::Http1 => send_all(&single, &single_agent, bodies),
                    _ => send_all(&concurrent, &concurrent_agents, bodies),
                }
            }
        }
    };

    for side in Side::ALL {
        run(side, WARM_UP_BATCHES, &mut workload);
    }
    let mut totals = [Duration::ZERO; 3];
    let mut ratios: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        let mut times = [Duration::ZERO; 3];
        for offset in 0..Side::ALL.len() {
            let index = (round + offset) % Side::ALL.len();
            times[index] = run(Side::ALL[index], BATCHES_PER_ROUND, &mut workload);
            totals[index] += times[index];
        }
        // Throughput ratio: the direct side's time over the HTTP side's.
        ratios[0].push(times[0].as_secs_f64() / times[1].as_secs_f64());
        ratios[1].push(times[0].as_secs_f64() / times[2].as_secs_f64());
    }

    let events = (ROUNDS * BATCHES_PER_ROUND * BATCH) as f64;
    println!("\n{backend}: batch ingest, {} events per side", events as u64);
    println!("| side | events/s | ms per batch | ratio to direct (all rounds) | ratio, median round | target |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for (index, side) in Side::ALL.iter().enumerate() {
        let rate = events / totals[index].as_secs_f64();
        let per_batch = totals[index].as_secs_f64() * 1e3 / (ROUNDS * BATCHES_PER_ROUND) as f64;
        if index == 0 {
            println!("| {} | {rate:.0} | {per_batch:.2} | 1 | 1 | |", side.label());
        } else {
            let ratio = totals[0].as_secs_f64() / totals[index].as_secs_f64();
            // The verdict uses the median round: a burst of another process's work then
            // spoils one round instead of the whole figure.
            let median = median(&mut ratios[index - 1]);
            let verdict = if median >= 0.5 {
                "≥ 0.5x: met"
            } else {
                "≥ 0.5x: NOT met"
            };
            println!(
                "| {} | {rate:.0} | {per_batch:.2} | {ratio:.2}x | {median:.2}x | {verdict} |",
                side.label()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Where a request's time goes

/// Times, without HTTP or storage, the steps the collector takes on a batch request's
/// body before handing its events to the group commit: the same calls as
/// `POST /v1/events/batch` (`read_json_body`, `parse_json`), then per event what
/// `ingest::accept` does (serialize the value to measure it, deserialize an `Event`,
/// validate it).
fn request_work(runtime: &Runtime) {
    const SAMPLES: usize = 400;
    let config = ServerConfig::default();
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().expect("a header"));
    headers.insert("content-encoding", "gzip".parse().expect("a header"));
    let mut workload = Workload::new();
    let bodies: Vec<Vec<u8>> = (0..SAMPLES).map(|_| gzip_body(&workload.batch(BATCH))).collect();
    let mut steps: [(&str, Vec<Duration>); 5] = [
        ("gunzip and depth check (read_json_body)", Vec::new()),
        ("parse to serde_json::Value (parse_json)", Vec::new()),
        ("serialize each event again to measure it", Vec::new()),
        ("serde_json::from_value::<Event>", Vec::new()),
        ("Event::validate", Vec::new()),
    ];
    for body in bodies {
        let began = Instant::now();
        let bytes = runtime
            .block_on(tally_server::body::read_json_body(
                &headers,
                axum::body::Body::from(body),
                &config,
            ))
            .expect("a readable body");
        steps[0].1.push(began.elapsed());
        let began = Instant::now();
        let value = tally_server::body::parse_json(&bytes).expect("JSON");
        steps[1].1.push(began.elapsed());
        let values = value["events"].as_array().expect("events").clone();
        let began = Instant::now();
        for value in &values {
            std::hint::black_box(serde_json::to_vec(value).expect("serialize").len());
        }
        steps[2].1.push(began.elapsed());
        let began = Instant::now();
        let events: Vec<Event> = values
            .into_iter()
            .map(|value| serde_json::from_value(value).expect("an event"))
            .collect();
        steps[3].1.push(began.elapsed());
        let began = Instant::now();
        for event in &events {
            event.validate().expect("valid");
        }
        steps[4].1.push(began.elapsed());
    }
    // The HTTP part alone: the same bodies posted to a handler that only reads them.
    let base = serve(
        runtime,
        Router::new().route("/v1/events/batch", post(|_body: Bytes| async { StatusCode::OK })),
    );
    let agent = agent();
    let mut round_trips: Vec<Duration> = (0..SAMPLES)
        .map(|index| {
            let body = gzip_body(&workload.batch(BATCH));
            let began = Instant::now();
            let mut response = agent
                .post(&format!("{base}/v1/events/batch"))
                .header(
                    "Authorization",
                    "Bearer tly_ingest_000000000000_00000000000000000000000000000000",
                )
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip")
                .send(&body[..])
                .expect("an answer");
            response.body_mut().read_to_vec().expect("a body");
            let elapsed = began.elapsed();
            assert_eq!(response.status(), 200, "request {index}");
            elapsed
        })
        .collect();
    println!(
        "\none {BATCH}-event gzip batch ({} bytes): HTTP round trip to a handler that only reads the body, median {}",
        gzip_body(&workload.batch(BATCH)).len(),
        show(percentile(&mut round_trips, 0.5))
    );
    println!("server-side work on the same batches before the commit, median of {SAMPLES}");
    println!("| step | median |");
    println!("| --- | ---: |");
    let mut sum = Duration::ZERO;
    for (step, times) in &mut steps {
        let median = percentile(times, 0.5);
        sum += median;
        println!("| {step} | {} |", show(median));
    }
    println!("| sum | {} |", show(sum));
}

/// One batch at a time through ever more of the collector, each layer into a fresh store
/// of its own, interleaved batch by batch: `Storage::insert`; the group-commit task
/// (`Committer::commit`); the `events.track_batch` action on the parsed body (validation,
/// then the commit); and a whole HTTP request.
fn layers(runtime: &Runtime, backend: &str, fresh_store: &mut dyn FnMut() -> Arc<dyn Storage>) {
    const BATCHES: usize = 300;
    let direct = fresh_store();
    let (committer_store, action_store) = (fresh_store(), fresh_store());
    let with_committer = runtime.block_on(async { AppState::new(committer_store, bench_config()).0 });
    let with_action = runtime.block_on(async { AppState::new(action_store, bench_config()).0 });
    let key = tally_server::auth::generate("nexus", Role::Ingest, "bench", jiff::Timestamp::now())
        .expect("a key")
        .stored;
    let http = serve_collector(runtime, fresh_store());
    let (agent, url, bearer) = (
        agent(),
        format!("{}/v1/events/batch", http.base),
        format!("Bearer {}", http.key),
    );
    let mut workload = Workload::new();
    let mut times: [Vec<Duration>; 4] = Default::default();
    for _ in 0..BATCHES {
        let batch = workload.batch(BATCH);
        let began = Instant::now();
        runtime.block_on(direct.insert(batch)).expect("insert");
        times[0].push(began.elapsed());

        let batch = workload.batch(BATCH);
        let began = Instant::now();
        runtime
            .block_on(with_committer.committer.commit(batch))
            .expect("commit");
        times[1].push(began.elapsed());

        let payload = serde_json::json!({ "events": workload.batch(BATCH) });
        let began = Instant::now();
        runtime
            .block_on(tally_server::actions::ingest::track_batch(&with_action, &key, payload))
            .expect("track_batch");
        times[2].push(began.elapsed());

        let body = gzip_body(&workload.batch(BATCH));
        let began = Instant::now();
        post_batch(&agent, &url, &bearer, &body);
        times[3].push(began.elapsed());
    }
    println!(
        "\n{backend}: one {BATCH}-event batch at a time through more and more of the collector, median of {BATCHES}"
    );
    println!("| layer | median per batch | added by the layer |");
    println!("| --- | ---: | ---: |");
    let labels = [
        "Storage::insert",
        "+ group commit (Committer::commit)",
        "+ the action: validation of a parsed body (ingest::track_batch)",
        "+ HTTP: gzip, JSON parsing, key, rate limit, answer (POST /v1/events/batch)",
    ];
    let mut previous = None;
    for (label, times) in labels.iter().zip(&mut times) {
        let median = percentile(times, 0.5);
        let added = previous.map_or_else(String::new, |previous: Duration| {
            format!("{:+.3} ms", (median.as_secs_f64() - previous.as_secs_f64()) * 1e3)
        });
        println!("| {label} | {} | {added} |", show(median));
        previous = Some(median);
    }
}

// ---------------------------------------------------------------------------------------
// Single-event latency

fn latency(runtime: &Runtime, backend: &str, store: Arc<dyn Storage>) {
    let seconds: u32 = std::env::var("TALLY_BENCH_LATENCY_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10);
    let requests = (LATENCY_RATE * seconds) as usize;
    let collector = serve_collector(runtime, store);
    let baseline = Running {
        base: serve(
            runtime,
            Router::new().route("/v1/events", post(|_body: Bytes| async { StatusCode::ACCEPTED })),
        ),
        key: collector.key.clone(),
    };
    let mut workload = Workload::new();
    let mut bodies = || -> Vec<Vec<u8>> {
        workload
            .batch(requests + 20)
            .iter()
            .map(|event| serde_json::to_vec(event).expect("serialize"))
            .collect()
    };
    let (baseline_bodies, collector_bodies) = (bodies(), bodies());

    println!("\n{backend}: single-event POST /v1/events, {LATENCY_RATE} requests/s for {seconds} s, one at a time");
    println!("| server | p50 | p90 | p99 | max | requests sent late |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut medians = Vec::new();
    let mut p99s = Vec::new();
    for (label, running, bodies) in [
        ("do-nothing axum handler (baseline)", &baseline, &baseline_bodies),
        ("collector", &collector, &collector_bodies),
    ] {
        let (mut latencies, late) = on_schedule(running, bodies, requests);
        let p50 = percentile(&mut latencies, 0.50);
        let p99 = percentile(&mut latencies, 0.99);
        println!(
            "| {label} | {} | {} | {} | {} | {late} of {requests} |",
            show(p50),
            show(percentile(&mut latencies, 0.90)),
            show(p99),
            show(percentile(&mut latencies, 1.0)),
        );
        medians.push(p50);
        p99s.push(p99);
    }
    println!(
        "collector against baseline: p50 {:.1}x (+{}), p99 {:.1}x (+{})",
        medians[1].as_secs_f64() / medians[0].as_secs_f64(),
        show(medians[1].saturating_sub(medians[0])),
        p99s[1].as_secs_f64() / p99s[0].as_secs_f64(),
        show(p99s[1].saturating_sub(p99s[0])),
    );
}

/// Sends one request per slot of the schedule; returns each latency, counted from the
/// slot's start, and how many requests went out after their slot because the previous
/// answer came late.
fn on_schedule(running: &Running, bodies: &[Vec<u8>], requests: usize) -> (Vec<Duration>, usize) {
    let agent = agent();
    let url = format!("{}/v1/events", running.base);
    let bearer = format!("Bearer {}", running.key);
    let send = |body: &[u8]| {
        let mut response = agent
            .post(&url)
            .header("Authorization", &bearer)
            .header("Content-Type", "application/json")
            .send(body)
            .expect("an answer");
        assert_eq!(response.status(), 202);
        response.body_mut().read_to_vec().expect("a body");
    };
    for body in &bodies[requests..] {
        send(body);
    }
    let interval = Duration::from_secs(1) / LATENCY_RATE;
    let start = Instant::now() + interval;
    let mut latencies = Vec::with_capacity(requests);
    let mut late = 0;
    for (index, body) in bodies[..requests].iter().enumerate() {
        let slot = start + interval * index as u32;
        let now = Instant::now();
        if now < slot {
            std::thread::sleep(slot - now);
        } else if now > slot + Duration::from_micros(100) {
            late += 1;
        }
        send(body);
        latencies.push(slot.elapsed());
    }
    (latencies, late)
}

fn percentile(values: &mut [Duration], fraction: f64) -> Duration {
    values.sort_unstable();
    let index = ((values.len() - 1) as f64 * fraction).round() as usize;
    values[index]
}

fn show(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}
