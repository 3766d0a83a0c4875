//! Label cardinality: after 100,000 distinct event names and 100,000 distinct commands,
//! `/metrics` stays bounded in series and bytes and `/v1/stats` in size, on every
//! backend. Bounds are asserted, never timings (docs/BENCHMARKS.md has those).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tally_core::{Event, EventContext, KeyedHasher, Level, Source};
use tally_server::config::ServerConfig;
use tally_server::storage::Role;
use tally_server::{AppState, app};
use tower::ServiceExt;

use crate::support::backends;

const DISTINCT: usize = 100_000;

fn events() -> Vec<Event> {
    let hasher = KeyedHasher::new(&[4; 32]);
    let now = jiff::Timestamp::now();
    (0..DISTINCT)
        .map(|index| {
            let session = format!("s{}", index % 100);
            let install = format!("i{}", index % 100);
            let context = EventContext {
                app: "nexus",
                app_version: "1.0.0",
                source: Source::Cli,
                session_id: &session,
                install_id: &install,
                hasher: &hasher,
                level: Level::Enhanced,
            };
            let mut event = Event::builder("command", format!("name_{index}"))
                .command(format!("cmd {index}"))
                .success(index % 7 != 0)
                .duration_ms(index as u64 % 900)
                .finish(&context)
                .unwrap()
                .unwrap();
            event.ts = now
                .checked_sub(jiff::SignedDuration::from_secs((index % 86_400) as i64))
                .unwrap();
            event
        })
        .collect()
}

async fn get(state: &AppState, path: &str, key: &str) -> (StatusCode, String) {
    let request = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_stats_stay_bounded_after_100_000_distinct_names() {
    let events = events();
    for backend in backends().await {
        let name = backend.name;
        let store = Arc::clone(&backend.store);
        for chunk in events.chunks(5_000) {
            store.insert(chunk.to_vec()).await.unwrap();
        }
        let admin = tally_server::auth::generate("nexus", Role::Admin, "test", jiff::Timestamp::now()).unwrap();
        store.put_key(&admin.stored).await.unwrap();
        let config = ServerConfig::default();
        let top = config.metrics_top_names;
        let (state, _committer) = AppState::new(Arc::clone(&store), config);

        let (status, exposition) = get(&state, "/metrics", "").await;
        assert_eq!(status, StatusCode::OK, "{name}");
        let samples: Vec<&str> = exposition
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .collect();
        let events_series = samples
            .iter()
            .filter(|line| line.starts_with("tally_events_total{"))
            .count();
        assert!(
            events_series <= top + 1,
            "{name}: {events_series} tally_events_total series for {top} top names"
        );
        assert!(samples.len() <= 300, "{name}: {} series in /metrics", samples.len());
        assert!(
            exposition.len() <= 64 * 1024,
            "{name}: /metrics is {} bytes",
            exposition.len()
        );
        // Every event is still counted, in the top names or in `other`.
        let counted: u64 = samples
            .iter()
            .filter(|line| line.starts_with("tally_events_total{"))
            .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(counted, DISTINCT as u64, "{name}");

        eprintln!(
            "{name}: /metrics after {DISTINCT} distinct names: {} series, {} bytes, {events_series} tally_events_total series",
            samples.len(),
            exposition.len()
        );
        let (status, stats) = get(&state, "/v1/stats?bucket=hour", &admin.secret).await;
        assert_eq!(status, StatusCode::OK, "{name}: {stats}");
        assert!(stats.len() <= 64 * 1024, "{name}: stats are {} bytes", stats.len());
        eprintln!("{name}: /v1/stats?bucket=hour: {} bytes", stats.len());
        let stats: Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(stats["totals"]["events"], DISTINCT, "{name}");
        assert!(stats["top_events"].as_array().unwrap().len() <= 10, "{name}");
        assert!(stats["commands"].as_array().unwrap().len() <= 10, "{name}");
        assert!(stats["series"].as_array().unwrap().len() <= 169, "{name}");
    }
}
