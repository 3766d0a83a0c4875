//! Sync through the OTLP transport against a scripted receiver: the request is OTLP
//! protobuf at `/v1/logs` with every field of each event, the retry rules are the sync
//! pass's own, and records an OTLP answer only counts as refused are found one by one
//! and kept aside with the receiver's reason.

use std::io::Read;
use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use tally::sync::{OtlpTransport, RetryPolicy, SyncOptions, SyncReport};
use tally::{Event, Level};
use tally_core::{EventContext, KeyedHasher, Source};
use tally_store::sync::SyncStream;
use tally_store::{DropCounts, OpenOptions, Store};

use crate::scripted_collector::{Answer, Request, ScriptedCollector};

const KEY: &str = "tly_ingest_0123456789ab_0123456789abcdef0123456789abcdef";

const QUICK_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base_delay: Duration::from_millis(20),
    max_delay: Duration::from_millis(100),
};

struct Local {
    _temp: tempfile::TempDir,
    store: Store,
    since: Timestamp,
    events: Vec<Event>,
}

impl Local {
    /// A store holding `count` commands recorded after upload was turned on.
    fn with_commands(count: usize) -> Local {
        let temp = tempfile::tempdir().unwrap();
        let mut store = Store::open(&temp.path().join("store"), &OpenOptions::default()).unwrap();
        let identity = store.identity().unwrap();
        let since = tally_core::time::now_millis().checked_sub(1.hour()).unwrap();
        let hasher = KeyedHasher::new(&identity.secret);
        let context = EventContext {
            app: "testapp",
            app_version: "1.0.0",
            source: Source::Cli,
            session_id: "session-1",
            install_id: &identity.install_id,
            hasher: &hasher,
            level: Level::Full,
        };
        let events: Vec<Event> = (0..count)
            .map(|i| {
                Event::builder("command", "command_executed")
                    .command("build")
                    .duration_ms(1_000 + i as u64)
                    .success(i != 1)
                    .workspace("my-secret-project")
                    .prop("jobs", 4)
                    .ts(since.checked_add((60_000 + i as i64).milliseconds()).unwrap())
                    .finish(&context)
                    .unwrap()
                    .unwrap()
            })
            .collect();
        store.insert_batch(&events, DropCounts::default()).unwrap();
        Local {
            _temp: temp,
            store,
            since,
            events,
        }
    }

    fn sync(&mut self, receiver: &ScriptedCollector) -> SyncReport {
        let options = SyncOptions {
            retry: QUICK_RETRY,
            ..SyncOptions::default()
        };
        let mut transport = OtlpTransport::new(&receiver.endpoint(), KEY);
        tally::sync::sync(
            &mut self.store,
            Level::Full,
            self.since,
            &mut transport,
            &options,
            &mut std::io::sink(),
            &mut |_, _| {},
        )
        .unwrap()
    }

    fn pending(&self) -> u64 {
        self.store.pending_count(SyncStream::Recent, self.since).unwrap()
    }
}

/// The OTLP request a scripted receiver got.
fn otlp_request(request: &Request) -> ExportLogsServiceRequest {
    assert_eq!(request.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(request.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&request.body[..])
        .read_to_end(&mut bytes)
        .unwrap();
    ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap()
}

fn tally_ids(request: &Request) -> Vec<String> {
    otlp_request(request).resource_logs[0].scope_logs[0]
        .log_records
        .iter()
        .map(|record| {
            let id = record.attributes.iter().find(|kv| kv.key == "tally.id").unwrap();
            match id.value.as_ref().and_then(|value| value.value.as_ref()) {
                Some(Value::StringValue(id)) => id.clone(),
                other => panic!("tally.id is {other:?}"),
            }
        })
        .collect()
}

/// A 200 whose protobuf body says `rejected` records were refused (small numbers and
/// ASCII text encode as valid UTF-8, which the scripted receiver's body holds).
fn partial(rejected: i64, message: &str) -> Answer {
    let body = ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: rejected,
            error_message: message.to_owned(),
        }),
    }
    .encode_to_vec();
    Answer::Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "application/x-protobuf".into())],
        body: String::from_utf8(body).unwrap(),
    }
}

fn accepted() -> Answer {
    Answer::Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "application/x-protobuf".into())],
        body: String::new(),
    }
}

#[test]
fn a_sync_sends_otlp_protobuf_with_every_field_and_retries_as_the_batch_api_does() {
    let mut local = Local::with_commands(3);
    let receiver = ScriptedCollector::start(|n, _| match n {
        0 => Answer::Reply {
            status: 503,
            headers: vec![("Retry-After".into(), "1".into())],
            body: String::new(),
        },
        _ => accepted(),
    });
    let report = local.sync(&receiver);
    assert_eq!((report.sent, report.accepted, report.retries), (3, 3, 1));
    assert_eq!(local.pending(), 0);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].head.starts_with("POST /v1/logs "), "{}", requests[0].head);
    // The retry came no sooner than Retry-After said.
    assert!(requests[1].arrived - requests[0].arrived >= Duration::from_secs(1));
    let request = otlp_request(&requests[1]);
    let resource = request.resource_logs[0].resource.as_ref().unwrap();
    assert_eq!(resource.attributes[0].key, "service.name");
    let ids: Vec<String> = local.events.iter().map(|event| event.id.to_string()).collect();
    assert_eq!(tally_ids(&requests[1]), ids);
    let record = &request.resource_logs[0].scope_logs[0].log_records[1];
    assert_eq!(record.event_name, "command.command_executed");
    assert_eq!(record.severity_text, "ERROR", "the failed command");
    assert_eq!(
        record.time_unix_nano,
        u64::try_from(local.events[1].ts.as_nanosecond()).unwrap()
    );
    let keys: Vec<&str> = record.attributes.iter().map(|kv| kv.key.as_str()).collect();
    for key in [
        "tally.workspace",
        "tally.duration_ms",
        "tally.success",
        "tally.command",
        "jobs",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let bytes = format!("{request:?}");
    assert!(!bytes.contains("my-secret-project"), "the workspace went in clear");
}

#[test]
fn records_an_otlp_answer_only_counts_are_found_one_by_one_and_kept_aside() {
    let mut local = Local::with_commands(3);
    let receiver = ScriptedCollector::start(|n, _| match n {
        0 => partial(1, "1 log record(s) refused"),
        2 => partial(1, "name: not for this receiver"),
        _ => accepted(),
    });
    let report = local.sync(&receiver);
    assert_eq!((report.sent, report.accepted, report.rejected), (3, 2, 1));
    assert_eq!(local.pending(), 0);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 4, "the batch, then each record alone");
    let ids: Vec<String> = local.events.iter().map(|event| event.id.to_string()).collect();
    for (request, id) in requests[1..].iter().zip(&ids) {
        assert_eq!(tally_ids(request), vec![id.clone()]);
    }
    let refusals: Vec<(String, String, String)> = local
        .store
        .connection()
        .prepare("SELECT id, code, message FROM sync_rejected")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        refusals,
        vec![(
            ids[1].clone(),
            "otlp_rejected".to_owned(),
            "name: not for this receiver".to_owned()
        )]
    );
}
