//! Tally events as OpenTelemetry log records, for `export --format otlp` and the OTLP
//! sync transport: the inverse of the collector's `/v1/logs` mapping (`docs/API.md`,
//! "OTLP logs"), so that what Tally writes, Tally (or any OTLP receiver) reads back.
//!
//! The resource carries `service.name` (the app) and `service.version`; each record
//! carries the event's time, `eventName` `<type>.<name>`, and every field of the event as
//! an attribute (`tally.id`, `tally.type`, `session.id`, ...), props under their own keys.
//! Only what the event holds goes out: the event was already hashed, redacted and
//! levelled, so nothing here can add a name or path.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tally_core::{Event, PropValue};

/// The instrumentation scope of every record Tally writes.
pub const SCOPE_NAME: &str = "tally";

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn text(value: &str) -> Value {
    Value::StringValue(value.to_owned())
}

/// The resource of `app` at `version`.
pub fn resource(app: &str, version: &str) -> Resource {
    Resource {
        attributes: vec![kv("service.name", text(app)), kv("service.version", text(version))],
        ..Resource::default()
    }
}

/// The scope Tally's records are under.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    }
}

/// One event as a log record. Failures (`success = false` or an error category) are
/// `ERROR`, everything else `INFO`, so OTel tools can filter on severity.
pub fn log_record(event: &Event) -> LogRecord {
    let nanos = u64::try_from(event.ts.as_nanosecond()).unwrap_or(0);
    let failed = event.success == Some(false) || event.error_category.is_some();
    let severity = if failed {
        SeverityNumber::Error
    } else {
        SeverityNumber::Info
    };
    let event_name = format!("{}.{}", event.kind, event.name);
    let mut attributes = vec![
        kv("tally.id", text(&event.id.to_string())),
        kv("tally.type", text(&event.kind)),
        kv("tally.name", text(&event.name)),
        kv("tally.source", text(event.source.as_str())),
        kv("session.id", text(&event.session_id)),
        kv("tally.install_id", text(&event.install_id)),
    ];
    let optional = [
        ("tally.command", &event.command),
        ("tally.workspace", &event.workspace),
        ("tally.target_type", &event.target_type),
        ("tally.target_id", &event.target_id),
        ("tally.error_category", &event.error_category),
        ("tally.error_message", &event.error_message),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            attributes.push(kv(key, text(value)));
        }
    }
    if let Some(duration) = event.duration_ms {
        attributes.push(kv(
            "tally.duration_ms",
            Value::IntValue(i64::try_from(duration).unwrap_or(i64::MAX)),
        ));
    }
    if let Some(success) = event.success {
        attributes.push(kv("tally.success", Value::BoolValue(success)));
    }
    for (key, value) in &event.props {
        let value = match value {
            PropValue::Bool(value) => Value::BoolValue(*value),
            PropValue::Int(value) => Value::IntValue(*value),
            PropValue::Float(value) => Value::DoubleValue(*value),
            PropValue::Str(value) => text(value),
        };
        attributes.push(kv(key, value));
    }
    LogRecord {
        time_unix_nano: nanos,
        observed_time_unix_nano: nanos,
        severity_number: severity as i32,
        severity_text: if failed { "ERROR" } else { "INFO" }.to_owned(),
        body: Some(AnyValue {
            value: Some(text(&event_name)),
        }),
        attributes,
        event_name,
        ..LogRecord::default()
    }
}

/// A request holding `events`, one `ResourceLogs` per run of events of the same app and
/// version.
pub fn request(events: &[Event]) -> ExportLogsServiceRequest {
    let mut resource_logs: Vec<ResourceLogs> = Vec::new();
    let mut current: Option<(&str, &str)> = None;
    for event in events {
        let key = (event.app.as_str(), event.app_version.as_str());
        if current != Some(key) {
            current = Some(key);
            resource_logs.push(ResourceLogs {
                resource: Some(resource(key.0, key.1)),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            });
        }
        if let Some(scope_logs) = resource_logs
            .last_mut()
            .and_then(|resource| resource.scope_logs.first_mut())
        {
            scope_logs.log_records.push(log_record(event));
        }
    }
    ExportLogsServiceRequest { resource_logs }
}
