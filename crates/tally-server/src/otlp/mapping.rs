//! OTLP log records to Tally events, as `docs/API.md` ("OTLP logs") documents.
//!
//! A record maps when its attributes name the event (`tally.type` and `tally.name`, or
//! `event.name` / the record's `eventName` as `<type>.<name>`). Everything else either
//! fills a field of the event, becomes a prop under the event format's limits, or is
//! deliberately not stored: the body, severity, trace context, resource attributes other
//! than those named below, and attributes in namespaces that carry paths, source code or
//! free text (`code.*`, `exception.*`, ...). The result passes `Event::validate` like any
//! event sent to `/v1/events`.
//!
//! The id is derived from the mapped content and the record's full-precision time, so the
//! same record sent twice (an exporter's retry, or once as protobuf and once as JSON) is
//! one event. A record that carries `tally.id` (Tally's own export) keeps its id.

use jiff::Timestamp;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use sha2::{Digest, Sha256};
use tally_core::{Event, PropValue, Props, Source};
use uuid::Uuid;

/// Attribute namespaces never stored: they carry file paths, URLs, source locations,
/// stack traces, free-text messages, or details that identify a person or a machine
/// (OpenTelemetry semantic conventions), which Tally never keeps in clear.
pub const DROPPED_PREFIXES: [&str; 13] = [
    "code.",
    "exception.",
    "log.",
    "thread.",
    "process.",
    "file.",
    "url.",
    "user.",
    "enduser.",
    "client.",
    "host.",
    "network.",
    "user_agent.",
];
/// Trace context the OTel logging bridges copy into attributes; the trace is not stored.
pub const DROPPED_KEYS: [&str; 4] = ["otelTraceID", "otelSpanID", "otelTraceSampled", "otelServiceName"];

/// `app_version`, `session_id` and `install_id` when the record and its resource do not say.
pub const UNKNOWN_VERSION: &str = "unknown";
/// See [`UNKNOWN_VERSION`].
pub const DEFAULT_SESSION: &str = "otlp";
/// See [`UNKNOWN_VERSION`].
pub const DEFAULT_INSTALL: &str = "otlp";

/// What a record must satisfy besides the event format.
pub struct Rules<'a> {
    /// The app of the key that sent the request.
    pub app: &'a str,
    /// The latest acceptable `ts` (now plus the allowed clock skew).
    pub latest: Timestamp,
    /// Largest event as compact JSON (`max_event_bytes`).
    pub max_event_bytes: usize,
}

/// One record that did not map, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `resourceLogs[i].scopeLogs[j].logRecords[k]`.
    pub location: String,
    /// The field or attribute at fault and the rule it broke.
    pub reason: String,
}

/// The events of a request, in request order, and the records refused.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Valid events of the key's app.
    pub events: Vec<Event>,
    /// Records that did not map.
    pub refused: Vec<Refused>,
}

/// Maps every record of `request`.
pub fn map_request(request: &ExportLogsServiceRequest, rules: &Rules<'_>) -> Mapped {
    let mut mapped = Mapped::default();
    for (r, resource_logs) in request.resource_logs.iter().enumerate() {
        let attributes = resource_logs
            .resource
            .as_ref()
            .map_or(&[][..], |resource| &resource.attributes[..]);
        let resource = ResourceFacts::read(attributes);
        for (s, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            for (k, record) in scope_logs.log_records.iter().enumerate() {
                match resource
                    .as_ref()
                    .map_err(String::clone)
                    .and_then(|facts| map_record(record, facts, rules))
                {
                    Ok(event) => mapped.events.push(event),
                    Err(reason) => mapped.refused.push(Refused {
                        location: format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{k}]"),
                        reason,
                    }),
                }
            }
        }
    }
    mapped
}

/// What the resource says about every record under it.
#[derive(Clone, Copy, Default)]
struct ResourceFacts<'a> {
    app: Option<&'a str>,
    version: Option<&'a str>,
    session: Option<&'a str>,
    install: Option<&'a str>,
    instance: Option<&'a str>,
    source: Option<&'a str>,
}

impl<'a> ResourceFacts<'a> {
    /// A resource attribute of the wrong type refuses every record under it.
    fn read(attributes: &'a [KeyValue]) -> Result<ResourceFacts<'a>, String> {
        let mut facts = ResourceFacts::default();
        for attribute in attributes {
            let slot = match attribute.key.as_str() {
                "service.name" => &mut facts.app,
                "service.version" => &mut facts.version,
                "session.id" => &mut facts.session,
                "tally.install_id" => &mut facts.install,
                "service.instance.id" => &mut facts.instance,
                "tally.source" => &mut facts.source,
                _ => continue,
            };
            *slot = Some(string_value(attribute, "resource attribute")?);
        }
        Ok(facts)
    }
}

fn string_value<'a>(attribute: &'a KeyValue, what: &str) -> Result<&'a str, String> {
    match attribute.value.as_ref().and_then(|value| value.value.as_ref()) {
        Some(Value::StringValue(text)) => Ok(text),
        other => Err(format!(
            "{what} {}: must be a string (got {})",
            attribute.key,
            kind_of(other)
        )),
    }
}

fn kind_of(value: Option<&Value>) -> &'static str {
    match value {
        None => "no value",
        Some(Value::StringValue(_)) => "a string",
        Some(Value::BoolValue(_)) => "a bool",
        Some(Value::IntValue(_)) => "an int",
        Some(Value::DoubleValue(_)) => "a double",
        Some(Value::ArrayValue(_)) => "an array",
        Some(Value::KvlistValue(_)) => "a map",
        Some(Value::BytesValue(_)) => "bytes",
        Some(Value::StringValueStrindex(_)) => "a string table index",
    }
}

/// The record's own attributes that fill event fields.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<&'a str>,
    name: Option<&'a str>,
    event_name: Option<&'a str>,
    id: Option<&'a str>,
    source: Option<&'a str>,
    install: Option<&'a str>,
    session: Option<&'a str>,
    command: Option<&'a str>,
    workspace: Option<&'a str>,
    target_type: Option<&'a str>,
    target_id: Option<&'a str>,
    error_category: Option<&'a str>,
    error_message: Option<&'a str>,
    duration_ms: Option<u64>,
    success: Option<bool>,
    props: Props,
}

impl<'a> Fields<'a> {
    fn read(attributes: &'a [KeyValue]) -> Result<Fields<'a>, String> {
        let mut fields = Fields::default();
        for attribute in attributes {
            fields.take(attribute)?;
        }
        Ok(fields)
    }

    fn take(&mut self, attribute: &'a KeyValue) -> Result<(), String> {
        let key = attribute.key.as_str();
        let text = || string_value(attribute, "attribute").map(Some);
        match key {
            "tally.type" => self.kind = text()?,
            "tally.name" => self.name = text()?,
            "event.name" => self.event_name = text()?,
            "tally.id" => self.id = text()?,
            "tally.source" => self.source = text()?,
            "tally.install_id" => self.install = text()?,
            "session.id" | "tally.session_id" => self.session = text()?,
            "tally.command" => self.command = text()?,
            "tally.workspace" => self.workspace = text()?,
            "tally.target_type" => self.target_type = text()?,
            "tally.target_id" => self.target_id = text()?,
            "tally.error_category" => self.error_category = text()?,
            "tally.error_message" => self.error_message = text()?,
            "tally.duration_ms" => match value_of(attribute) {
                Some(Value::IntValue(ms)) if *ms >= 0 => self.duration_ms = Some(*ms as u64),
                other => {
                    return Err(format!(
                        "attribute tally.duration_ms: must be an int of at least 0 (got {})",
                        kind_of(other)
                    ));
                }
            },
            "tally.success" => match value_of(attribute) {
                Some(Value::BoolValue(success)) => self.success = Some(*success),
                other => {
                    return Err(format!(
                        "attribute tally.success: must be a bool (got {})",
                        kind_of(other)
                    ));
                }
            },
            _ if key.starts_with("tally.") => {
                return Err(format!(
                    "attribute {key}: not a field of the event format (see docs/API.md, OTLP logs)"
                ));
            }
            _ if DROPPED_KEYS.contains(&key) || DROPPED_PREFIXES.iter().any(|prefix| key.starts_with(prefix)) => {}
            _ => {
                let prop = prop_value(attribute)?;
                self.props.insert(key.replace('.', "_"), prop);
            }
        }
        Ok(())
    }

    /// `(type, name)`: `tally.type` with `tally.name`, else the event name split at its
    /// first dot (`browser.page_view` is type `browser`, name `page_view`; further dots
    /// become `_`; a name without a dot has type `event`).
    fn kind_and_name(&self, record_event_name: &'a str) -> Result<(String, String), String> {
        match (self.kind, self.name) {
            (Some(kind), Some(name)) => return Ok((kind.to_owned(), name.to_owned())),
            (Some(_), None) => return Err("attribute tally.name: is required with tally.type".into()),
            (None, Some(_)) => return Err("attribute tally.type: is required with tally.name".into()),
            (None, None) => {}
        }
        let event_name = Some(record_event_name)
            .filter(|name| !name.is_empty())
            .or(self.event_name)
            .ok_or(
                "no event type and name: set the attributes tally.type and tally.name, or event.name as <type>.<name>",
            )?;
        Ok(match event_name.split_once('.') {
            Some((kind, name)) => (kind.to_owned(), name.replace('.', "_")),
            None => ("event".to_owned(), event_name.to_owned()),
        })
    }
}

/// A prop from an attribute: props are flat, so only scalar values map.
fn prop_value(attribute: &KeyValue) -> Result<PropValue, String> {
    match value_of(attribute) {
        Some(Value::StringValue(text)) => Ok(PropValue::Str(text.clone())),
        Some(Value::BoolValue(value)) => Ok(PropValue::Bool(*value)),
        Some(Value::IntValue(value)) => Ok(PropValue::Int(*value)),
        Some(Value::DoubleValue(value)) => Ok(PropValue::Float(*value)),
        other => Err(format!(
            "attribute {}: props are flat, a string, number or bool (got {})",
            attribute.key,
            kind_of(other)
        )),
    }
}

fn value_of(attribute: &KeyValue) -> Option<&Value> {
    attribute.value.as_ref().and_then(|value| value.value.as_ref())
}

fn map_record(record: &LogRecord, resource: &ResourceFacts<'_>, rules: &Rules<'_>) -> Result<Event, String> {
    let nanos = match (record.time_unix_nano, record.observed_time_unix_nano) {
        (0, 0) => return Err("timeUnixNano: one of timeUnixNano and observedTimeUnixNano must be set".into()),
        (0, observed) => observed,
        (time, _) => time,
    };
    let ts = Timestamp::from_nanosecond(i128::from(nanos))
        .map(tally_core::time::truncate_to_millis)
        .map_err(|err| format!("timeUnixNano: not a time Tally can store ({err})"))?;
    if ts > rules.latest {
        return Err(format!(
            "timeUnixNano: must not be more than 24 hours in the future (got {})",
            tally_core::time::format(ts)
        ));
    }
    let app = resource.app.unwrap_or(rules.app);
    if app != rules.app {
        return Err(format!(
            "resource attribute service.name: this key writes app {:?}, not {app:?}",
            rules.app
        ));
    }
    let fields = Fields::read(&record.attributes)?;
    let (kind, name) = fields.kind_and_name(&record.event_name)?;
    let source = match fields.source.or(resource.source) {
        Some(source) => source
            .parse::<Source>()
            .map_err(|err| format!("attribute tally.{err}"))?,
        None => Source::Backend,
    };
    let owned = |value: Option<&str>| value.map(str::to_owned);
    let mut event = Event {
        id: Uuid::nil(),
        ts,
        app: app.to_owned(),
        app_version: resource.version.unwrap_or(UNKNOWN_VERSION).to_owned(),
        source,
        kind,
        name,
        command: owned(fields.command),
        session_id: fields
            .session
            .or(resource.session)
            .unwrap_or(DEFAULT_SESSION)
            .to_owned(),
        install_id: fields
            .install
            .or(resource.install)
            .or(resource.instance)
            .unwrap_or(DEFAULT_INSTALL)
            .to_owned(),
        workspace: owned(fields.workspace),
        target_type: owned(fields.target_type),
        target_id: owned(fields.target_id),
        duration_ms: fields.duration_ms,
        success: fields.success,
        error_category: owned(fields.error_category),
        // Other OTel SDKs do not scrub: the collector redacts, as the Tally SDK does.
        error_message: fields.error_message.map(tally_core::redact),
        props: fields.props,
    };
    event.id = match fields.id {
        Some(id) => Uuid::parse_str(id).map_err(|err| format!("attribute tally.id: must be a UUIDv7 ({err})"))?,
        None => derived_id(&event, nanos),
    };
    event.validate().map_err(|err| err.to_string())?;
    let size = event.json_len();
    if size > rules.max_event_bytes {
        return Err(format!(
            "event is {size} bytes of JSON; limit max_event_bytes = {}",
            rules.max_event_bytes
        ));
    }
    Ok(event)
}

/// A UUIDv7 whose timestamp is the event's and whose other 74 bits come from a SHA-256
/// of the mapped event (with a nil id) and the record's time in nanoseconds: the same
/// record always gets the same id, and records differing in anything stored differ.
pub fn derived_id(event: &Event, nanos: u64) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(event.to_json().as_bytes());
    hasher.update(nanos.to_be_bytes());
    let digest = hasher.finalize();
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    let millis = u64::try_from(event.ts.as_millisecond()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn text(value: &str) -> Value {
        Value::StringValue(value.into())
    }

    fn request(resource: Vec<KeyValue>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: resource,
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    fn record(attributes: Vec<KeyValue>) -> LogRecord {
        LogRecord {
            time_unix_nano: 1_764_000_000_123_456_789,
            attributes,
            ..LogRecord::default()
        }
    }

    const RULES: Rules<'static> = Rules {
        app: "nexus",
        latest: Timestamp::MAX,
        max_event_bytes: tally_core::limits::MAX_EVENT_BYTES,
    };

    #[test]
    fn an_event_name_maps_to_type_and_name_and_the_rest_to_fields_and_props() {
        let mapped = map_request(
            &request(
                vec![
                    kv("service.name", text("nexus")),
                    kv("service.version", text("1.4.2")),
                    kv("host.name", text("laptop-of-alice")),
                ],
                vec![record(vec![
                    kv("event.name", text("workspace.created.from_template")),
                    kv("session.id", text("s-1")),
                    kv("tally.duration_ms", Value::IntValue(1200)),
                    kv("http.route", text("/w")),
                    kv("code.file.path", text("/home/alice/app.py")),
                    kv("file.path", text("/home/alice/notes.txt")),
                    kv("url.full", text("https://example.com/alice?q=secret")),
                    kv("enduser.id", text("alice")),
                    kv("tally.error_message", text("cannot open /home/alice/x")),
                ])],
            ),
            &RULES,
        );
        assert_eq!(mapped.refused, vec![]);
        let event = &mapped.events[0];
        assert_eq!(
            (event.kind.as_str(), event.name.as_str()),
            ("workspace", "created_from_template")
        );
        assert_eq!(
            (event.app_version.as_str(), event.session_id.as_str()),
            ("1.4.2", "s-1")
        );
        assert_eq!(event.install_id, DEFAULT_INSTALL);
        assert_eq!(event.duration_ms, Some(1200));
        assert_eq!(event.ts, "2025-11-24T16:00:00.123Z".parse().unwrap());
        assert_eq!(event.props.len(), 1, "{:?}", event.props);
        assert_eq!(event.props["http_route"], PropValue::Str("/w".into()));
        let stored = event.to_json();
        assert!(!stored.contains("alice"), "{stored}");
        assert_eq!(event.id.get_version_num(), 7);
        assert_eq!(event.id.get_timestamp().unwrap().to_unix().0, 1_764_000_000);
    }

    #[test]
    fn the_id_depends_on_content_and_full_time_only() {
        let one = |nanos: u64, name: &str| {
            let mut rec = record(vec![kv("event.name", text(name))]);
            rec.time_unix_nano = nanos;
            map_request(&request(vec![], vec![rec]), &RULES).events[0].id
        };
        assert_eq!(
            one(1_000_000_000_000_000_001, "a.b"),
            one(1_000_000_000_000_000_001, "a.b")
        );
        assert_ne!(
            one(1_000_000_000_000_000_001, "a.b"),
            one(1_000_000_000_000_000_002, "a.b")
        );
        assert_ne!(
            one(1_000_000_000_000_000_001, "a.b"),
            one(1_000_000_000_000_000_001, "a.c")
        );
    }

    #[test]
    fn unmappable_records_say_where_and_why() {
        let mapped = map_request(
            &request(
                vec![kv("service.name", text("nexus"))],
                vec![
                    record(vec![]),
                    record(vec![kv("event.name", text("a.b")), kv("tally.color", text("red"))]),
                    record(vec![kv("tally.type", text("a"))]),
                    record(vec![
                        kv("event.name", text("a.b")),
                        kv("list", Value::ArrayValue(Default::default())),
                    ]),
                    LogRecord {
                        attributes: vec![kv("event.name", text("a.b"))],
                        ..LogRecord::default()
                    },
                    record(vec![kv("event.name", text("Page View"))]),
                ],
            ),
            &RULES,
        );
        assert!(mapped.events.is_empty());
        let reasons: Vec<&str> = mapped.refused.iter().map(|refused| refused.reason.as_str()).collect();
        assert!(reasons[0].starts_with("no event type and name"), "{}", reasons[0]);
        assert!(
            reasons[1].starts_with("attribute tally.color: not a field"),
            "{}",
            reasons[1]
        );
        assert_eq!(reasons[2], "attribute tally.name: is required with tally.type");
        assert!(reasons[3].contains("attribute list: props are flat") && reasons[3].contains("an array"));
        assert!(reasons[4].starts_with("timeUnixNano: one of"));
        assert!(reasons[5].starts_with("name: must be 1 to 64"), "{}", reasons[5]);
        assert_eq!(mapped.refused[3].location, "resourceLogs[0].scopeLogs[0].logRecords[3]");
    }

    #[test]
    fn another_apps_service_name_is_refused() {
        let mapped = map_request(
            &request(
                vec![kv("service.name", text("billing"))],
                vec![record(vec![kv("event.name", text("a.b"))])],
            ),
            &RULES,
        );
        assert_eq!(
            mapped.refused[0].reason,
            "resource attribute service.name: this key writes app \"nexus\", not \"billing\""
        );
    }
}
