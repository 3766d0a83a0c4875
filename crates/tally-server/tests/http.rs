//! The HTTP contract, driven through the router with `oneshot`: what a client sends and
//! what it gets back, on every backend.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tally_core::{Event, EventContext, KeyedHasher, Level, Source};
use tally_server::config::ServerConfig;
use tally_server::storage::{Role, Storage};
use tally_server::{AppState, app};
use tower::ServiceExt;

use crate::support::{backends, sqlite};

pub(crate) struct Collector {
    pub(crate) router: Router,
    pub(crate) store: Arc<dyn Storage>,
    pub(crate) ingest: String,
    pub(crate) admin: String,
    pub(crate) other_app_ingest: String,
}

pub(crate) async fn collector(store: Arc<dyn Storage>, config: ServerConfig) -> Collector {
    let mut keys = Vec::new();
    for (app, role) in [("nexus", Role::Ingest), ("nexus", Role::Admin), ("other", Role::Ingest)] {
        let key = tally_server::auth::generate(app, role, "test", jiff::Timestamp::now()).unwrap();
        store.put_key(&key.stored).await.unwrap();
        keys.push(key.secret);
    }
    let (state, _committer) = AppState::new(Arc::clone(&store), config);
    Collector {
        router: app(state),
        store,
        other_app_ingest: keys.pop().unwrap(),
        admin: keys.pop().unwrap(),
        ingest: keys.pop().unwrap(),
    }
}

pub(crate) fn event(app: &str, name: &str, session: &str, install: &str) -> Event {
    let hasher = KeyedHasher::new(&[3; 32]);
    let context = EventContext {
        app,
        app_version: "1.4.2",
        source: Source::Cli,
        session_id: session,
        install_id: install,
        hasher: &hasher,
        level: Level::Enhanced,
    };
    Event::builder("command", name.to_owned())
        .command("task done")
        .duration_ms(42)
        .success(true)
        .workspace("secret-workspace")
        .finish(&context)
        .unwrap()
        .unwrap()
}

fn nexus_event() -> Event {
    event("nexus", "command_executed", "s-1", "install-1")
}

impl Collector {
    pub(crate) async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, headers, body)
    }

    pub(crate) async fn post(&self, path: &str, key: &str, body: &Value) -> (StatusCode, Value) {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    pub(crate) async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let request = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    pub(crate) async fn stored(&self) -> Vec<Value> {
        let (status, body) = self.get("/v1/events?limit=1000", &self.admin).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"].as_array().unwrap().clone()
    }
}

pub(crate) fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_committed_once_however_often_it_is_sent() {
    for backend in backends().await {
        let collector = collector(Arc::clone(&backend.store), ServerConfig::default()).await;
        let backend = backend.name;
        let event = nexus_event();
        let body = serde_json::to_value(&event).unwrap();
        for _ in 0..3 {
            let (status, answer) = collector.post("/v1/events", &collector.ingest, &body).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{backend}: {answer}");
            assert_eq!(answer["id"], event.id.to_string());
            assert_eq!(answer["created_at"], tally_core::time::format(event.ts));
        }
        let stored = collector.stored().await;
        assert_eq!(stored.len(), 1, "{backend}");
        assert_eq!(
            serde_json::from_value::<Event>(stored[0].clone()).unwrap(),
            event,
            "{backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_per_event_and_one_bad_event_fails_nothing_else() {
    for backend in backends().await {
        let collector = collector(Arc::clone(&backend.store), ServerConfig::default()).await;
        let backend = backend.name;
        let good: Vec<Event> = (0..5).map(|_| nexus_event()).collect();
        let mut bad_name = serde_json::to_value(nexus_event()).unwrap();
        bad_name["name"] = json!("Not A Name");
        let mut huge = serde_json::to_value(nexus_event()).unwrap();
        huge["props"] = json!({"note": "x".repeat(9_000)});
        let foreign = serde_json::to_value(event("other", "command_executed", "s-2", "install-2")).unwrap();
        let mut events: Vec<Value> = good.iter().map(|event| serde_json::to_value(event).unwrap()).collect();
        events.insert(1, bad_name);
        events.insert(3, huge);
        events.push(foreign);
        events.push(json!("not an event"));
        // NUL, which PostgreSQL cannot store: refused by rule on every backend, rather
        // than failing the whole batch (and every retry of it) on one.
        let mut nul_prop = serde_json::to_value(nexus_event()).unwrap();
        nul_prop["props"] = json!({"note": "a\u{0}b"});
        let mut nul_message = serde_json::to_value(nexus_event()).unwrap();
        nul_message["error_message"] = json!("bad\u{0}");
        events.push(nul_prop);
        events.push(nul_message);
        let (status, answer) = collector
            .post("/v1/events/batch", &collector.ingest, &json!({"events": events}))
            .await;
        assert_eq!(status, StatusCode::OK, "{backend}: {answer}");
        assert_eq!(answer["accepted"], 5, "{backend}: {answer}");
        assert_eq!(answer["duplicates"], 0);
        let rejected = answer["rejected"].as_array().unwrap();
        let summary: Vec<(u64, &str)> = rejected
            .iter()
            .map(|entry| (entry["index"].as_u64().unwrap(), entry["code"].as_str().unwrap()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, "invalid_event"),
                (3, "too_large"),
                (7, "forbidden"),
                (8, "invalid_event"),
                (9, "invalid_event"),
                (10, "invalid_event")
            ]
        );
        for (entry, field) in [(&rejected[4], "props.note:"), (&rejected[5], "error_message:")] {
            let message = entry["message"].as_str().unwrap();
            assert!(message.starts_with(field) && message.contains("NUL"), "{answer}");
        }
        assert!(
            rejected[0]["message"].as_str().unwrap().starts_with("name:"),
            "{answer}"
        );
        assert!(
            rejected[1]["message"].as_str().unwrap().contains("max_event_bytes"),
            "{answer}"
        );

        // The same batch again: everything valid is a duplicate, nothing is stored twice.
        let (_, again) = collector
            .post("/v1/events/batch", &collector.ingest, &json!({"events": events}))
            .await;
        assert_eq!(
            (again["accepted"].as_u64(), again["duplicates"].as_u64()),
            (Some(0), Some(5)),
            "{again}"
        );
        assert_eq!(collector.stored().await.len(), 5, "{backend}");
    }
}

/// `(accepted, duplicates)` of a batch answer.
fn counts(answer: &Value) -> (u64, u64) {
    (
        answer["accepted"]
            .as_u64()
            .unwrap_or_else(|| panic!("no accepted: {answer}")),
        answer["duplicates"]
            .as_u64()
            .unwrap_or_else(|| panic!("no duplicates: {answer}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_count_repeats_within_and_across_batches() {
    for backend in backends().await {
        let collector = collector(Arc::clone(&backend.store), ServerConfig::default()).await;
        let backend = backend.name;
        let [a, b, c, d] = [(); 4].map(|()| nexus_event());
        let batch = |events: Vec<&Event>| json!({"events": events});
        let (status, answer) = collector
            .post("/v1/events/batch", &collector.ingest, &batch(vec![&a, &b, &a, &c, &b]))
            .await;
        assert_eq!(status, StatusCode::OK, "{backend}: {answer}");
        assert_eq!(counts(&answer), (3, 2), "{backend}: repeats inside one batch: {answer}");
        let (status, answer) = collector
            .post("/v1/events/batch", &collector.ingest, &batch(vec![&c, &d, &a, &d]))
            .await;
        assert_eq!(status, StatusCode::OK, "{backend}: {answer}");
        assert_eq!(
            counts(&answer),
            (1, 3),
            "{backend}: stored before and repeated: {answer}"
        );
        assert_eq!(collector.stored().await.len(), 4, "{backend}");
        let (_, stats) = collector.get("/v1/stats?bucket=day", &collector.admin).await;
        assert_eq!(stats["totals"]["events"], 4, "{backend}: {stats}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_with_overlapping_events_are_counted_once() {
    for backend in backends().await {
        let collector = Arc::new(collector(Arc::clone(&backend.store), ServerConfig::default()).await);
        let backend = backend.name;
        let events: Vec<Event> = (0..120)
            .map(|index| {
                let (session, install) = (format!("s-{}", index % 4), format!("install-{}", index % 4));
                event("nexus", "command_executed", &session, &install)
            })
            .collect();
        // Eight requests of 30 events at once, each overlapping the next by 15: every
        // event is sent twice, and group commit may put both copies in one transaction.
        let requests: Vec<_> = (0..8)
            .map(|index| {
                let batch: Vec<Event> = events.iter().cycle().skip(index * 15).take(30).cloned().collect();
                let collector = Arc::clone(&collector);
                tokio::spawn(async move {
                    collector
                        .post("/v1/events/batch", &collector.ingest, &json!({"events": batch}))
                        .await
                })
            })
            .collect();
        let (mut accepted, mut duplicates) = (0, 0);
        for request in requests {
            let (status, answer) = request.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{backend}: {answer}");
            let (new, repeated) = counts(&answer);
            accepted += new;
            duplicates += repeated;
        }
        assert_eq!((accepted, duplicates), (120, 120), "{backend}");
        assert_eq!(collector.stored().await.len(), 120, "{backend}");
        let (_, stats) = collector.get("/v1/stats?bucket=day", &collector.admin).await;
        assert_eq!(stats["totals"]["events"], 120, "{backend}: {stats}");
        assert_eq!(stats["active_installs"]["24h"], 4, "{backend}: {stats}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_media_types_are_answered_with_their_status() {
    let backend = sqlite();
    let store = Arc::clone(&backend.store);
    let config = ServerConfig {
        max_batch_events: 3,
        max_body_bytes: 64 * 1024,
        ..ServerConfig::default()
    };
    let collector = collector(store, config).await;
    let events: Vec<Value> = (0..4).map(|_| serde_json::to_value(nexus_event()).unwrap()).collect();
    let (status, answer) = collector
        .post("/v1/events/batch", &collector.ingest, &json!({"events": events}))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_batch_events = 3"),
        "{answer}"
    );

    let big = json!({"events": [], "padding": "x".repeat(70 * 1024)});
    let (status, answer) = collector.post("/v1/events/batch", &collector.ingest, &big).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );

    let request = Request::post("/v1/events")
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::AUTHORIZATION, format!("Bearer {}", collector.ingest))
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, answer) = collector.send(request).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );

    let (status, answer) = collector
        .post("/v1/events", &collector.ingest, &json!({"id": "not-a-uuid"}))
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_event")
    );

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let request = Request::post("/v1/events/batch")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {}", collector.ingest))
        .body(Body::from(deep))
        .unwrap();
    let (status, _, answer) = collector.send(request).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::BAD_REQUEST, "too_deep"));

    // gzip is accepted.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let event = nexus_event();
    std::io::Write::write_all(&mut encoder, json!({"events": [event]}).to_string().as_bytes()).unwrap();
    let request = Request::post("/v1/events/batch")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_ENCODING, "gzip")
        .header(header::AUTHORIZATION, format!("Bearer {}", collector.ingest))
        .body(Body::from(encoder.finish().unwrap()))
        .unwrap();
    let (status, _, answer) = collector.send(request).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_roles_and_apps_are_enforced() {
    let backend = sqlite();
    let store = Arc::clone(&backend.store);
    let collector = collector(store, ServerConfig::default()).await;
    let body = serde_json::to_value(nexus_event()).unwrap();
    let request = Request::post("/v1/events")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, headers, answer) = collector.send(request).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let (status, _) = collector
        .post(
            "/v1/events",
            "tly_ingest_000000000000_00000000000000000000000000000000",
            &body,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = collector.post("/v1/events", &collector.admin, &body).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, _) = collector.get("/v1/stats", &collector.ingest).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = collector.post("/v1/events", &collector.other_app_ingest, &body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("\"other\""));
    let (status, _) = collector.get("/v1/stats?app=other", &collector.admin).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(collector.stored().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_share_the_rest_handlers() {
    let backend = sqlite();
    let store = Arc::clone(&backend.store);
    let collector = collector(store, ServerConfig::default()).await;
    let (status, listed) = collector.get("/v1/actions", "").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = listed["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "events.track",
            "events.track_batch",
            "counts.upload",
            "stats.get",
            "events.list",
            "installs.erase",
            "installs.register_key",
            "installs.remote",
            "installs.forget"
        ]
    );
    assert_eq!(listed["actions"][0]["schema"]["required"][0], "id");

    let event = nexus_event();
    let (status, answer) = collector
        .post(
            "/v1/actions",
            &collector.ingest,
            &json!({"action": "events.track", "payload": event}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (status, answer) = collector
        .post(
            "/v1/actions",
            &collector.ingest,
            &json!({"action": "stats.get", "payload": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = collector
        .post(
            "/v1/actions",
            &collector.admin,
            &json!({"action": "events.list", "payload": {"limit": 10}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["events"].as_array().unwrap().len(), 1);
    let (status, answer) = collector
        .post("/v1/actions", &collector.admin, &json!({"action": "nope"}))
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::BAD_REQUEST, "unknown_action")
    );
    assert!(answer["error"]["message"].as_str().unwrap().contains("events.track"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_page_with_a_cursor_and_an_install_can_be_erased() {
    for backend in backends().await {
        let collector = collector(Arc::clone(&backend.store), ServerConfig::default()).await;
        let backend = backend.name;
        let mut events: Vec<Event> = (0..25)
            .map(|i| event("nexus", "command_executed", "s-1", &format!("i-{}", i % 3)))
            .collect();
        // Identical timestamps must not lose or repeat events across pages.
        let ts = events[0].ts;
        for event in &mut events {
            event.ts = ts;
        }
        let (status, _) = collector
            .post("/v1/events/batch", &collector.ingest, &json!({"events": events}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let mut seen = Vec::new();
        let mut path = "/v1/events?limit=10".to_owned();
        loop {
            let (status, page) = collector.get(&path, &collector.admin).await;
            assert_eq!(status, StatusCode::OK, "{backend}: {page}");
            seen.extend(
                page["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/v1/events?limit=10&cursor={cursor}"),
                None => break,
            }
        }
        let mut expected: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        expected.sort();
        assert_eq!(seen, expected, "{backend}: every event once, in (ts, id) order");

        let (status, filtered) = collector.get("/v1/events?install_id=i-1", &collector.admin).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(filtered["events"].as_array().unwrap().len(), 8);
        let (status, _) = collector.get("/v1/events?cursor=garbage", &collector.admin).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let request = Request::delete("/v1/installs/i-1")
            .header(header::AUTHORIZATION, format!("Bearer {}", collector.admin))
            .body(Body::empty())
            .unwrap();
        let (status, _, answer) = collector.send(request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["deleted_events"], 8, "{backend}");
        assert_eq!(collector.stored().await.len(), 17, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_chart_ready() {
    for backend in backends().await {
        let collector = collector(Arc::clone(&backend.store), ServerConfig::default()).await;
        let backend = backend.name;
        let mut events = Vec::new();
        for install in ["a", "b"] {
            let session = format!("session-{install}");
            events.push(event("nexus", "session_started", &session, install));
            events.push(event("nexus", "command_executed", &session, install));
            let mut failed = event("nexus", "command_executed", &session, install);
            failed.success = Some(false);
            failed.error_category = Some("io".into());
            events.push(failed);
        }
        let (status, _) = collector
            .post("/v1/events/batch", &collector.ingest, &json!({"events": events}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, stats) = collector.get("/v1/stats?bucket=day", &collector.admin).await;
        assert_eq!(status, StatusCode::OK, "{backend}: {stats}");
        assert_eq!(stats["totals"]["events"], 6, "{stats}");
        assert_eq!(stats["totals"]["commands"], 4);
        assert_eq!(stats["totals"]["failures"], 2);
        assert_eq!(stats["sessions"]["count"], 2, "{backend}: {stats}");
        assert_eq!(stats["active_installs"]["24h"], 2);
        // Seven days by default, one point per day even when empty.
        let series = stats["series"].as_array().unwrap();
        assert!((7..=8).contains(&series.len()), "{}", series.len());
        assert_eq!(
            series
                .iter()
                .map(|point| point["events"].as_u64().unwrap())
                .sum::<u64>(),
            6
        );
        let score = stats["engagement"]["score"].as_u64().unwrap();
        assert!((1..=100).contains(&score), "{stats}");
        // Every event here reports an outcome (the session starts succeed), two of six fail.
        assert!(
            (stats["error_rate"].as_f64().unwrap() - 2.0 / 6.0).abs() < 1e-9,
            "{stats}"
        );
        let (status, answer) = collector.get("/v1/stats?bucket=month", &collector.admin).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(answer["error"]["message"].as_str().unwrap().starts_with("bucket:"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_bound_their_labels() {
    for backend in backends().await {
        let config = ServerConfig {
            metrics_top_names: 3,
            // One install sends everything here; suppression has its own test.
            min_installs: 0,
            ..ServerConfig::default()
        };
        let collector = collector(Arc::clone(&backend.store), config).await;
        let mut events: Vec<Event> = (0..6)
            .flat_map(|n| (0..=n).map(move |_| event("nexus", &format!("name_{n}"), "s", "i")))
            .collect();
        events.push(event("nexus", "session_started", "s", "i"));
        events.push(event("nexus", "session_started", "s2", "i"));
        let (status, _) = collector
            .post("/v1/events/batch", &collector.ingest, &json!({"events": events}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, text) = collector.get("/metrics", "").await;
        assert_eq!(status, StatusCode::OK);
        let text = text.as_str().unwrap();
        let name = backend.name;
        let event_lines: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("tally_events_total{"))
            .collect();
        // The three most frequent names keep their label; the other four (3 + 2 + 1
        // events, and 2 session starts) are summed as other.
        assert_eq!(event_lines.len(), 4, "{name}: {text}");
        for expected in [
            r#"tally_events_total{app="nexus",type="command",name="name_5"} 6"#,
            r#"tally_events_total{app="nexus",type="other",name="other"} 8"#,
            r#"tally_active_installs{app="nexus",period="1h"} 1"#,
            r#"tally_sessions{app="nexus",period="24h"} 2"#,
            "tally_http_request_duration_seconds_bucket",
        ] {
            assert!(text.contains(expected), "{name}: no {expected} in {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_openapi_and_unknown_routes() {
    let backend = sqlite();
    let store = Arc::clone(&backend.store);
    let collector = collector(store, ServerConfig::default()).await;
    assert_eq!(collector.get("/healthz", "").await.0, StatusCode::OK);
    let (status, ready) = collector.get("/readyz", "").await;
    assert_eq!((status, ready["status"].as_str()), (StatusCode::OK, Some("ready")));
    let (status, answer) = collector.get("/nope", "").await;
    assert_eq!((status, error_code(&answer)), (StatusCode::NOT_FOUND, "not_found"));
    let (_, document) = collector.get("/openapi.json", "").await;
    for path in [
        "/v1/events",
        "/v1/events/batch",
        "/v1/actions",
        "/v1/stats",
        "/v1/stream",
        "/v1/installs/{id}",
        "/metrics",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert!(
            document["paths"][path].is_object(),
            "openapi.json does not describe {path}"
        );
    }
    let _ = &collector.store;
}
