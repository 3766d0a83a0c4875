//! `POST /v1/logs`: the OTLP/HTTP logs contract, on the official example
//! (`testdata/otlp/logs.json`, from the opentelemetry-proto repository), in both
//! encodings, on every backend.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use prost::Message;
use serde_json::{Value, json};
use tally_server::config::ServerConfig;
use tally_server::otlp::Status;
use tally_server::storage::{EventQuery, Role, Storage};
use tally_server::{AppState, app};
use tower::ServiceExt;

use crate::support::{backends, sqlite};

const EXAMPLE: &str = include_str!("testdata/otlp/logs.json");
const EXPECTED_EVENT: &str = include_str!("testdata/otlp/logs.expected.json");
const PROTOBUF: &str = "application/x-protobuf";

struct Collector {
    router: Router,
    store: Arc<dyn Storage>,
    ingest: String,
    admin: String,
    other_app_ingest: String,
}

async fn collector(store: Arc<dyn Storage>, config: ServerConfig) -> Collector {
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

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|_| panic!("not JSON: {:?}", self.bytes))
    }

    fn protobuf(&self) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse::decode(self.bytes.as_slice()).unwrap()
    }

    fn status_json(&self) -> Status {
        serde_json::from_slice(&self.bytes).unwrap()
    }

    fn content_type(&self) -> &str {
        self.headers[header::CONTENT_TYPE].to_str().unwrap()
    }
}

impl Collector {
    async fn post(&self, key: Option<&str>, content_type: &str, gzip: bool, body: Vec<u8>) -> Answer {
        let mut request = Request::post("/v1/logs").header(header::CONTENT_TYPE, content_type);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = if gzip {
            request = request.header(header::CONTENT_ENCODING, "gzip");
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut encoder, &body).unwrap();
            encoder.finish().unwrap()
        } else {
            body
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            bytes: response.into_body().collect().await.unwrap().to_bytes().to_vec(),
        }
    }

    async fn stored(&self) -> Vec<Value> {
        let events = self
            .store
            .events(&EventQuery {
                app: "nexus".into(),
                kind: None,
                name: None,
                install_id: None,
                session_id: None,
                period: tally_core::time::Period::ALL,
                after: None,
                limit: 1000,
            })
            .await
            .unwrap();
        events
            .iter()
            .map(|event| serde_json::to_value(event).unwrap())
            .collect()
    }
}

/// The official example as a record Tally can map: the key's app as `service.name`, an
/// `event.name`, and without the array and map attributes (props are flat).
fn mappable_example() -> Value {
    let mut example: Value = serde_json::from_str(EXAMPLE).unwrap();
    let resource = &mut example["resourceLogs"][0];
    resource["resource"]["attributes"][0]["value"]["stringValue"] = json!("nexus");
    let record = &mut resource["scopeLogs"][0]["logRecords"][0];
    let attributes = record["attributes"].as_array_mut().unwrap();
    attributes.retain(|kv| !matches!(kv["key"].as_str(), Some("array.attribute" | "map.attribute")));
    attributes.push(json!({"key": "event.name", "value": {"stringValue": "example.logged"}}));
    example
}

fn rejected(answer: &Value) -> (i64, String) {
    let partial = &answer["partialSuccess"];
    (
        partial["rejectedLogRecords"].as_i64().unwrap_or(0),
        partial["errorMessage"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_example_is_refused_whole_and_maps_once_made_a_tally_event() {
    for backend in backends().await {
        let name = backend.name;
        let collector = collector(Arc::clone(&backend.store), ServerConfig::default()).await;

        // As published: another service, no event name. Refused, counted, never a 5xx.
        let answer = collector
            .post(Some(&collector.ingest), "application/json", false, EXAMPLE.into())
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{name}");
        assert_eq!(answer.content_type(), "application/json");
        assert_eq!(
            rejected(&answer.json()),
            (
                1,
                "1 log record(s) refused, not Tally events: resourceLogs[0].scopeLogs[0].logRecords[0]: \
                 resource attribute service.name: this key writes app \"nexus\", not \"my.service\""
                    .to_owned()
            ),
            "{name}"
        );

        // With the array attribute kept, the record breaks the flat-props rule.
        let mut with_array = mappable_example();
        with_array["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["attributes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "array.attribute", "value": {"arrayValue": {"values": [{"stringValue": "many"}]}}}));
        let answer = collector
            .post(
                Some(&collector.ingest),
                "application/json",
                false,
                with_array.to_string().into(),
            )
            .await;
        let (count, message) = rejected(&answer.json());
        assert_eq!(count, 1, "{name}");
        assert!(
            message.ends_with("attribute array.attribute: props are flat, a string, number or bool (got an array)"),
            "{name}: {message}"
        );
        assert!(collector.stored().await.is_empty(), "{name}");

        // Mappable: stored exactly as the golden file says, whatever the backend.
        let answer = collector
            .post(
                Some(&collector.ingest),
                "application/json",
                false,
                mappable_example().to_string().into(),
            )
            .await;
        assert_eq!((answer.status, answer.json()), (StatusCode::OK, json!({})), "{name}");
        let expected: Value = serde_json::from_str(EXPECTED_EVENT).unwrap();
        assert_eq!(collector.stored().await, vec![expected], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_protobuf_carry_identical_records_and_a_resend_is_a_duplicate() {
    let request: ExportLogsServiceRequest = serde_json::from_str(EXAMPLE).unwrap();
    // JSON -> protobuf -> JSON gives the same request.
    let protobuf = request.encode_to_vec();
    let from_protobuf = ExportLogsServiceRequest::decode(protobuf.as_slice()).unwrap();
    assert_eq!(from_protobuf, request);
    let json_again = serde_json::to_string(&from_protobuf).unwrap();
    assert_eq!(
        serde_json::from_str::<ExportLogsServiceRequest>(&json_again).unwrap(),
        request
    );
    let record = &request.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(record.time_unix_nano, 1_544_712_660_300_000_000);
    assert_eq!(hex::encode_upper(&record.trace_id), "5B8EFFF798038103D269B633813FC60C");
    assert_eq!(record.attributes.len(), 6);

    let backend = sqlite();
    let collector = collector(Arc::clone(&backend.store), ServerConfig::default()).await;
    let mappable: ExportLogsServiceRequest = serde_json::from_value(mappable_example()).unwrap();
    let answer = collector
        .post(Some(&collector.ingest), PROTOBUF, true, mappable.encode_to_vec())
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type(), PROTOBUF);
    assert_eq!(answer.protobuf(), ExportLogsServiceResponse::default());
    let first = collector.stored().await;
    assert_eq!(first.len(), 1);
    // The same record as JSON, gzip or not: one event, the same id.
    for gzip in [false, true] {
        let answer = collector
            .post(
                Some(&collector.ingest),
                "application/json; charset=utf-8",
                gzip,
                serde_json::to_vec(&mappable).unwrap(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(collector.stored().await, first);
    }
    // The refusal answer in protobuf carries the count and the reason.
    let refused: ExportLogsServiceRequest = serde_json::from_str(EXAMPLE).unwrap();
    let answer = collector
        .post(Some(&collector.ingest), PROTOBUF, false, refused.encode_to_vec())
        .await;
    let partial = answer.protobuf().partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("\"my.service\""),
        "{}",
        partial.error_message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_follow_the_otlp_status_codes_in_the_requests_encoding() {
    let backend = sqlite();
    let config = ServerConfig {
        rate_limit_per_second: 0.01,
        rate_limit_burst: 8,
        ..ServerConfig::default()
    };
    let collector = collector(Arc::clone(&backend.store), config).await;
    let body = || mappable_example().to_string().into_bytes();

    let answer = collector
        .post(Some(&collector.ingest), "text/plain", false, body())
        .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(answer.status_json().message.contains("application/x-protobuf"));

    let answer = collector.post(None, PROTOBUF, false, body()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.content_type(), PROTOBUF);
    assert_eq!(Status::decode(answer.bytes.as_slice()).unwrap().code, 16);
    assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");

    let answer = collector
        .post(Some(&collector.admin), "application/json", false, body())
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.status_json().code, 7);

    let answer = collector
        .post(
            Some(&collector.ingest),
            PROTOBUF,
            false,
            b"\xff\xff\xff not protobuf".to_vec(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let status = Status::decode(answer.bytes.as_slice()).unwrap();
    assert_eq!(status.code, 3);
    assert!(status.message.starts_with("malformed_protobuf: "), "{}", status.message);

    let answer = collector
        .post(
            Some(&collector.ingest),
            "application/json",
            false,
            b"{\"resourceLogs\": [".to_vec(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.status_json().message.starts_with("malformed_json: "));

    // Another app's key: the record is refused, and nothing is stored for either app.
    let answer = collector
        .post(Some(&collector.other_app_ingest), "application/json", false, body())
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        rejected(&answer.json())
            .1
            .contains("this key writes app \"other\", not \"nexus\"")
    );
    assert!(collector.stored().await.is_empty());

    // Past the key's burst: 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let answer = collector
            .post(Some(&collector.ingest), "application/json", false, body())
            .await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
    }
    let answer = limited.expect("the burst of 8 is passed within 10 requests");
    assert!(
        answer.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(answer.status_json().code, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_the_logs_route() {
    let backend = sqlite();
    let collector = collector(Arc::clone(&backend.store), ServerConfig::default()).await;
    let response = collector
        .router
        .clone()
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let document: Value = serde_json::from_slice(&bytes).unwrap();
    let post = &document["paths"]["/v1/logs"]["post"];
    assert!(
        post["requestBody"]["content"]["application/x-protobuf"].is_object(),
        "{post}"
    );
    for status in ["200", "400", "415", "429", "503"] {
        assert!(post["responses"][status].is_object(), "{status} missing");
    }
}
