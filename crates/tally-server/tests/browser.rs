//! What browsers need from the collector: CORS on the ingest routes only, and the
//! `sendBeacon` form (ingest key in the query, `text/plain` JSON body).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tally_core::{Event, EventContext, KeyedHasher, Level, Source};
use tally_server::config::ServerConfig;
use tally_server::storage::{Role, Storage};
use tally_server::{AppState, app};
use tower::ServiceExt;

use crate::support::{backends, sqlite};

const PAGE: &str = "https://app.example";

struct Collector {
    router: Router,
    ingest: String,
    admin: String,
}

async fn collector(store: Arc<dyn Storage>, origins: &[&str]) -> Collector {
    let mut keys = Vec::new();
    for role in [Role::Ingest, Role::Admin] {
        let key = tally_server::auth::generate("nexus", role, "test", jiff::Timestamp::now()).unwrap();
        store.put_key(&key.stored).await.unwrap();
        keys.push(key.secret);
    }
    let config = ServerConfig {
        cors_allowed_origins: origins.iter().map(|origin| (*origin).to_owned()).collect(),
        ..ServerConfig::default()
    };
    let (state, _committer) = AppState::new(store, config);
    Collector {
        router: app(state),
        admin: keys.pop().unwrap(),
        ingest: keys.pop().unwrap(),
    }
}

fn web_event() -> Event {
    let hasher = KeyedHasher::new(&[5; 32]);
    let context = EventContext {
        app: "nexus",
        app_version: "2.0.0",
        source: Source::Web,
        session_id: "s-web",
        install_id: "install-web",
        hasher: &hasher,
        level: Level::Basic,
    };
    Event::builder("feature", "page_view".to_owned())
        .finish(&context)
        .unwrap()
        .unwrap()
}

fn batch(events: &[Event]) -> String {
    json!({"events": events}).to_string()
}

impl Collector {
    async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, headers, body)
    }

    async fn preflight(&self, path: &str, origin: &str, method: &str) -> (StatusCode, HeaderMap) {
        let request = Request::options(path)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization, content-type")
            .body(Body::empty())
            .unwrap();
        let (status, headers, _) = self.send(request).await;
        (status, headers)
    }

    async fn stored(&self) -> Vec<Value> {
        let request = Request::get("/v1/events?limit=1000")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.admin))
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"].as_array().unwrap().clone()
    }
}

fn has_cors(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| name.as_str().starts_with("access-control-"))
}

#[tokio::test]
async fn an_allowed_origin_gets_a_preflight_answer_for_the_ingest_routes() {
    let collector = collector(sqlite().store, &[PAGE, "http://localhost:3000"]).await;
    for path in ["/v1/events", "/v1/events/batch"] {
        let (status, headers) = collector.preflight(path, PAGE, "POST").await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{path}");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], PAGE);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");
        let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        for needed in ["authorization", "content-type", "content-encoding"] {
            assert!(allowed.contains(needed), "{allowed}");
        }
        assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "7200");
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }
}

#[tokio::test]
async fn no_cors_headers_by_default_for_other_origins_or_on_admin_routes() {
    let closed = collector(sqlite().store, &[]).await;
    let (status, headers) = closed.preflight("/v1/events/batch", PAGE, "POST").await;
    assert!(!has_cors(&headers), "CORS is off by default: {headers:?}");
    assert_ne!(status, StatusCode::NO_CONTENT);

    let open = collector(sqlite().store, &[PAGE]).await;
    let (_, headers) = open.preflight("/v1/events/batch", "https://evil.example", "POST").await;
    assert!(!has_cors(&headers), "{headers:?}");
    // Admin routes never answer a browser, even from an allowed origin or with `*`.
    let any = collector(sqlite().store, &["*"]).await;
    for collector in [&open, &any] {
        for (path, method) in [
            ("/v1/events", "GET"),
            ("/v1/stats", "GET"),
            ("/v1/installs/x", "DELETE"),
            ("/v1/stream", "GET"),
            ("/v1/actions", "POST"),
            ("/metrics", "GET"),
        ] {
            let (_, headers) = collector.preflight(path, PAGE, method).await;
            assert!(!has_cors(&headers), "{method} {path}: {headers:?}");
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header(header::ORIGIN, PAGE)
                .header(header::AUTHORIZATION, format!("Bearer {}", collector.admin))
                .body(Body::empty())
                .unwrap();
            let response = collector.router.clone().oneshot(request).await.unwrap();
            assert!(
                !has_cors(response.headers()),
                "{method} {path}: {:?}",
                response.headers()
            );
        }
    }
}

#[tokio::test]
async fn a_post_from_an_allowed_origin_can_read_its_answer_and_retry_after() {
    for origins in [&[PAGE][..], &["*"][..]] {
        let collector = collector(sqlite().store, origins).await;
        let request = Request::post("/v1/events/batch")
            .header(header::ORIGIN, PAGE)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {}", collector.ingest))
            .body(Body::from(batch(&[web_event()])))
            .unwrap();
        let (status, headers, body) = collector.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["accepted"], 1);
        // The page's own origin is echoed, never `*`, so no credentials rule can bite.
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], PAGE);
        assert_eq!(headers[header::ACCESS_CONTROL_EXPOSE_HEADERS], "retry-after");
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
        assert!(headers.get_all(header::VARY).iter().any(|value| value == "origin"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beacon_with_the_ingest_key_in_the_query_is_committed_once() {
    for backend in backends().await {
        let name = backend.name;
        let collector = collector(Arc::clone(&backend.store), &[PAGE]).await;
        let events = [web_event(), web_event()];
        for _ in 0..2 {
            // What navigator.sendBeacon(url, string) sends: no Authorization, text/plain.
            let request = Request::post(format!("/v1/events/batch?key={}", collector.ingest))
                .header(header::ORIGIN, PAGE)
                .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
                .body(Body::from(batch(&events)))
                .unwrap();
            let (status, _, body) = collector.send(request).await;
            assert_eq!(status, StatusCode::OK, "{name}: {body}");
            assert_eq!(body["rejected"], json!([]), "{name}");
        }
        let request = Request::post(format!("/v1/events?key={}", collector.ingest))
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(serde_json::to_string(&web_event()).unwrap()))
            .unwrap();
        let (status, _, body) = collector.send(request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
        assert_eq!(
            collector.stored().await.len(),
            3,
            "{name}: a resent beacon stores nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_beacon_form_refuses_admin_keys_other_routes_and_other_types() {
    for backend in backends().await {
        let name = backend.name;
        let collector = collector(Arc::clone(&backend.store), &[PAGE]).await;
        let body = batch(&[web_event()]);
        let post = |uri: String, content_type: &str| {
            Request::post(uri)
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body.clone()))
                .unwrap()
        };
        let (status, _, answer) = collector
            .send(post(format!("/v1/events/batch?key={}", collector.admin), "text/plain"))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("ingest keys only")
        );

        let (status, _, answer) = collector
            .send(post(
                format!("/v1/events/batch?key={}", collector.ingest),
                "application/x-www-form-urlencoded",
            ))
            .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{name}: {answer}");

        // text/plain without the query key is not the beacon form.
        let mut request = post("/v1/events/batch".to_owned(), "text/plain");
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {}", collector.ingest).parse().unwrap(),
        );
        let (status, _, _) = collector.send(request).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{name}");

        // Both forms at once are ambiguous.
        let mut request = post(format!("/v1/events/batch?key={}", collector.ingest), "text/plain");
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {}", collector.ingest).parse().unwrap(),
        );
        let (status, _, _) = collector.send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");

        // The query key opens nothing else: the admin routes still want Authorization.
        let request = Request::get(format!("/v1/events?key={}", collector.admin))
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = collector.send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        let request = Request::post(format!("/v1/actions?key={}", collector.ingest))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"action": "events.track_batch", "payload": {"events": []}}).to_string(),
            ))
            .unwrap();
        let (status, _, _) = collector.send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(
            collector.stored().await.is_empty(),
            "{name}: nothing refused was stored"
        );
    }
}

#[test]
fn a_bad_origin_in_the_config_is_refused_with_its_name() {
    let config = ServerConfig {
        cors_allowed_origins: vec!["https://app.example/".into()],
        ..ServerConfig::default()
    };
    let err = config.check().unwrap_err();
    assert!(err.starts_with("cors_allowed_origins:"), "{err}");
    assert!(err.contains("no trailing slash"), "{err}");
}

#[test]
fn openapi_describes_the_beacon_form_and_cors() {
    let document = tally_server::routes::openapi::document();
    assert_eq!(
        document["components"]["securitySchemes"]["ingestKeyQuery"]["in"],
        "query"
    );
    for path in ["/v1/events", "/v1/events/batch"] {
        let post = &document["paths"][path]["post"];
        assert!(
            post["security"]
                .as_array()
                .unwrap()
                .contains(&json!({"ingestKeyQuery": []})),
            "{path}"
        );
    }
    // text/plain is taken only with the key in the query, which a content type listed
    // beside the bearer form would misstate, so the query scheme says it.
    let beacon = document["components"]["securitySchemes"]["ingestKeyQuery"]["description"]
        .as_str()
        .unwrap();
    assert!(beacon.contains("text/plain"), "{beacon}");
    let admin = &document["paths"]["/v1/stats"]["get"]["security"];
    assert!(!admin.as_array().unwrap().contains(&json!({"ingestKeyQuery": []})));
    let description = document["info"]["description"].as_str().unwrap();
    assert!(description.contains("cors_allowed_origins"));
}
