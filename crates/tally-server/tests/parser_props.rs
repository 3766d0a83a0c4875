//! Property tests of the ingest parser and validators, on arbitrary bytes, arbitrary
//! JSON, and valid events with one field replaced by arbitrary JSON: nothing panics,
//! every item of a batch is either stored or refused with a reason, and everything
//! accepted is a valid event of the key's app, not from the future, that round-trips.
//!
//! `PROPTEST_CASES` sets the number of cases (256 by default);
//! `scripts/fuzz-ingest-parser` runs 1,000,000 of each in release mode.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tally_core::{Event, EventContext, KeyedHasher, Level, Source};
use tally_server::actions::ingest::check_batch;
use tally_server::body::parse_json;
use tally_server::config::ServerConfig;

const APP: &str = "nexus";

fn now() -> jiff::Timestamp {
    "2026-12-01T00:00:00Z".parse().unwrap()
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        "[a-z_]{1,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}|.{0,8}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid event of `APP`, as JSON.
fn valid_event(seed: u8) -> Value {
    let hasher = KeyedHasher::new(&[seed; 32]);
    let context = EventContext {
        app: APP,
        app_version: "1.2.3",
        source: Source::Cli,
        session_id: "session-1",
        install_id: "install-1",
        hasher: &hasher,
        level: Level::Full,
    };
    let event = Event::builder("command", "command_executed")
        .command("task done")
        .duration_ms(12)
        .success(false)
        .error_category("io")
        .workspace("alpha")
        .ts(now())
        .finish(&context)
        .unwrap()
        .unwrap();
    serde_json::to_value(event).unwrap()
}

const FIELDS: &[&str] = &[
    "id",
    "ts",
    "app",
    "app_version",
    "source",
    "type",
    "name",
    "command",
    "session_id",
    "install_id",
    "workspace",
    "target_type",
    "target_id",
    "duration_ms",
    "success",
    "error_category",
    "error_message",
    "props",
    "unknown_field",
];

/// Checks a batch body and the promises about what it gives back.
fn check(body: Value) {
    let items = body.get("events").and_then(Value::as_array).map(Vec::len);
    let Ok(checked) = check_batch(body, APP, now(), &ServerConfig::default()) else {
        return;
    };
    let items = items.expect("a batch that passed its check has an events array");
    assert_eq!(checked.events.len() + checked.rejected.len(), items);
    let latest = now().checked_add(jiff::SignedDuration::from_hours(24)).unwrap();
    for event in &checked.events {
        event.validate().expect("an accepted event is valid");
        assert_eq!(event.app, APP);
        assert!(event.ts <= latest);
        let again: Event = serde_json::from_str(&event.to_json()).expect("an accepted event round-trips");
        assert_eq!(&again, event);
    }
    for refused in &checked.rejected {
        assert!(!refused.message.is_empty());
        assert!(refused.index < items);
    }
}

/// Found by the 10^6-case run: without serde_json's `float_roundtrip`, this number came
/// back one unit in the last place off, so the collector stored a different value than
/// the client sent.
#[test]
fn a_float_prop_is_stored_exactly_as_sent() {
    let mut event = valid_event(1);
    event["props"] = json!({"ratio": -3.426288801208988e-124});
    let text = event.to_string();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    let checked = check_batch(json!({"events": [parsed]}), APP, now(), &ServerConfig::default()).unwrap();
    let stored = &checked.events[0];
    let again: Event = serde_json::from_str(&stored.to_json()).unwrap();
    assert_eq!(&again, stored);
    assert_eq!(
        serde_json::to_value(stored).unwrap()["props"]["ratio"],
        json!(-3.426288801208988e-124)
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(value) = parse_json(&bytes) {
            check(value);
        }
    }

    #[test]
    fn arbitrary_json_batches_never_panic(items in prop::collection::vec(any_json(), 0..8), extra in prop::option::of(any_json())) {
        let mut body = json!({"events": items});
        if let Some(extra) = extra {
            body["extra"] = extra;
        }
        check(body);
    }

    #[test]
    fn a_valid_event_with_one_field_replaced_is_judged_on_its_own(
        seed in any::<u8>(),
        field in prop::sample::select(FIELDS),
        replacement in any_json(),
        remove in any::<bool>(),
    ) {
        let good = valid_event(seed);
        let mut changed = good.clone();
        if remove {
            changed.as_object_mut().unwrap().remove(field);
        } else {
            changed[field] = replacement;
        }
        check(json!({"events": [good, changed]}));
    }
}
