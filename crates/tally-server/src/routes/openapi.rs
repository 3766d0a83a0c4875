//! `GET /openapi.json`: every route, its auth, parameters, bodies and error answers.
//!
//! Written out here rather than derived, so that it reads as the contract it is; a test
//! checks that every route the router serves is described.

use axum::Json;
use serde_json::{Value, json};

use crate::routes::actions::{Action, batch_schema, counts_schema, envelope_schema, event_schema, proven_schema};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The errors any authenticated route may answer.
fn common_errors(extra: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    let mut responses = serde_json::Map::new();
    for (status, description) in [
        ("400", "malformed request; the message names the parameter or limit"),
        ("401", "no key, a malformed key, or an invalid or revoked key"),
        ("403", "the key has the wrong role or belongs to another app"),
        ("429", "the key passed its rate limit; see Retry-After"),
        ("503", "storage is unavailable; nothing was stored"),
    ]
    .iter()
    .chain(extra)
    {
        responses.insert((*status).to_owned(), error_response(description));
    }
    responses
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn with(mut responses: serde_json::Map<String, Value>, status: &str, response: Value) -> Value {
    responses.insert(status.to_owned(), response);
    Value::Object(responses)
}

/// The query parameters of a GET route: the properties of its action's payload schema,
/// each with that property's own schema, so the two state the same rules.
fn query(action: Action) -> Vec<Value> {
    let schema = action.schema();
    let Some(properties) = schema["properties"].as_object() else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let mut property = property.clone();
            let description = property
                .as_object_mut()
                .and_then(|property| property.remove("description"))
                .unwrap_or(Value::Null);
            json!({"name": name, "in": "query", "required": false, "schema": property, "description": description})
        })
        .collect()
}

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for group in [ingest_paths(), admin_paths(), service_paths()] {
        if let Value::Object(group) = group {
            paths.extend(group);
        }
    }
    paths.insert("/v1/logs".to_owned(), otlp_logs());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tally collector",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Receives opted-in telemetry, stores it (SQLite or PostgreSQL) and serves aggregates. A 2xx answer to an ingest request means its events are committed; a retry of a committed event is a no-op. Every error body is {\"error\": {\"code\", \"message\"}}. CORS: POST /v1/events and POST /v1/events/batch (and their OPTIONS preflight, answered 204 with Access-Control-Allow-Methods: POST, Access-Control-Allow-Headers: authorization, content-type, content-encoding, Access-Control-Max-Age: 7200) carry Access-Control-Allow-Origin for the origins in cors_allowed_origins (none by default); no other route ever sends CORS headers, and none allows credentials."
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "tly_ingest_... or tly_admin_... keys made with `tally keys create`"},
                "ingestKeyQuery": {"type": "apiKey", "in": "query", "name": "key", "description": "The beacon form, on the ingest routes only and for ingest keys only: navigator.sendBeacon cannot set headers, so the key travels as ?key=tly_ingest_... and the body, the same JSON, may be sent as Content-Type: text/plain (taken only in this form: with the key in Authorization, text/plain is a 415). An admin key here is refused (403)."}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Event": event_schema(),
                "DayCounts": counts_schema(),
            }
        },
        "paths": paths,
    })
}

/// `POST /v1/logs`: OTLP/HTTP, so bodies and answers are protobuf or JSON, and errors are
/// `google.rpc.Status` rather than the collector's error shape.
fn otlp_logs() -> Value {
    let both = |schema: Value| json!({"application/x-protobuf": {"schema": schema.clone()}, "application/json": {"schema": schema}});
    let status = json!({"type": "object", "description": "google.rpc.Status, in the request's encoding; message starts with the collector's error code", "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}});
    let error = |description: &str| json!({"description": description, "content": both(status.clone())});
    json!({"post": {
        "summary": "OpenTelemetry logs over OTLP/HTTP (role ingest): records that name an event become events (see docs/API.md, OTLP logs); others are counted in partialSuccess. gzip bodies accepted; the answer is in the request's encoding.",
        "security": [{"bearer": []}],
        "requestBody": {"required": true, "content": both(json!({"type": "object", "description": "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest", "properties": {"resourceLogs": {"type": "array"}}}))},
        "responses": {
            "200": {"description": "every mapped record committed (or already stored)", "content": both(json!({"type": "object", "description": "ExportLogsServiceResponse", "properties": {"partialSuccess": {"type": "object", "properties": {"rejectedLogRecords": {"type": "integer"}, "errorMessage": {"type": "string", "description": "where and why, for the first records refused"}}}}}))},
            "400": error("the body is not an ExportLogsServiceRequest in its encoding (do not retry)"),
            "401": error("no key, a malformed key, or an invalid or revoked key"),
            "403": error("not an ingest key"),
            "413": error("body larger than max_body_bytes after decompression"),
            "415": error("Content-Type is neither application/x-protobuf nor application/json, or Content-Encoding is not gzip"),
            "429": error("the key passed its rate limit; retry after Retry-After seconds"),
            "503": error("storage is unavailable, nothing was stored; retry after Retry-After seconds"),
        }
    }})
}

/// The routes that take events, and `/v1/actions`.
fn ingest_paths() -> Value {
    let ingest_errors = [
        (
            "413",
            "body, batch or event larger than its limit (max_body_bytes after decompression, max_batch_events, max_event_bytes)",
        ),
        (
            "415",
            "Content-Type is not application/json, or Content-Encoding is not gzip",
        ),
        ("408", "the body did not arrive within body_timeout_secs"),
    ];
    json!({
        "/v1/events": {
            "post": {
                "summary": "Store one event (role ingest). gzip bodies accepted.",
                "security": [{"bearer": []}, {"ingestKeyQuery": []}],
                "requestBody": json_body(json!({"$ref": "#/components/schemas/Event"})),
                "responses": with(common_errors(&[ingest_errors[0], ingest_errors[1], ingest_errors[2], ("422", "the event breaks a rule; the message names the field")]), "202",
                    ok("committed (or already stored)", json!({"type": "object", "properties": {"id": {"type": "string"}, "created_at": {"type": "string", "format": "date-time", "description": "the event's ts"}}}))),
            },
            "get": {
                "summary": "Raw events of the key's app, oldest first (role admin).",
                "security": [{"bearer": []}],
                "parameters": query(Action::ListEvents),
                "responses": with(common_errors(&[]), "200", ok("a page", json!({"type": "object", "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}, "next_cursor": {"type": ["string", "null"]}}}))),
            }
        },
        "/v1/events/batch": {
            "post": {
                "summary": "Store many events (role ingest); each is accepted, a duplicate, or rejected on its own.",
                "security": [{"bearer": []}, {"ingestKeyQuery": []}],
                "requestBody": json_body(batch_schema()),
                "responses": with(common_errors(&ingest_errors), "200", ok("committed", json!({"type": "object", "properties": {
                    "accepted": {"type": "integer"}, "duplicates": {"type": "integer"},
                    "rejected": {"type": "array", "items": {"type": "object", "properties": {"index": {"type": "integer"}, "id": {}, "code": {"type": "string"}, "message": {"type": "string"}}}}}}))),
            }
        },
        "/v1/counts": {
            "post": {
                "summary": "Store one install's counts of one complete UTC day (role ingest), from an SDK in counts-only upload mode. Stored once per install and day: a resend answers stored: false and changes nothing.",
                "security": [{"bearer": []}],
                "requestBody": json_body(json!({"$ref": "#/components/schemas/DayCounts"})),
                "responses": with(common_errors(&[ingest_errors[0], ingest_errors[1], ("422", "invalid_counts: the upload breaks a rule (the message names the field), or its day is in the future or older than retention_days")]), "200",
                    ok("committed, or already stored", json!({"type": "object", "properties": {"app": {"type": "string"}, "install_id": {"type": "string"}, "day": {"type": "string", "format": "date"}, "stored": {"type": "boolean", "description": "false when this install's day was already stored; nothing changed"}, "events": {"type": "integer", "description": "events counted, 0 when not stored"}}}))),
            }
        },
        "/v1/actions": {
            "get": {
                "summary": "Every action with its role and JSON schema (no key needed).",
                "responses": {"200": ok("the actions", json!({"type": "object"}))}
            },
            "post": {
                "summary": "Run an action: {\"action\": name, \"payload\": {...}}; the answer is the same as the action's REST route.",
                "security": [{"bearer": []}],
                "requestBody": json_body(envelope_schema()),
                "responses": with(common_errors(&[ingest_errors[0], ingest_errors[1], ingest_errors[2], ("422", "invalid event")]), "200", ok("the action's answer (202 for events.track)", json!({}))),
            }
        }
    })
}

/// The answer of `/v1/stats`, with the install counts spelled out (docs/API.md lists the
/// rest of its fields).
fn stats_schema() -> Value {
    let count = json!({"type": "integer", "minimum": 0});
    let window = json!({
        "type": "object",
        "required": ["current", "previous"],
        "properties": {
            "current": {"type": "integer", "minimum": 0, "description": "installs active in the span before `to`"},
            "previous": {"type": "integer", "minimum": 0, "description": "installs active in the equally long span before that"},
        },
    });
    json!({
        "type": "object",
        "required": ["app", "from", "to", "bucket", "totals", "active_installs", "active_installs_windows", "sessions", "series", "previous"],
        "properties": {
            "app": {"type": "string"},
            "from": {"type": "string"},
            "to": {"type": "string"},
            "bucket": {"enum": ["hour", "day", "week"]},
            "totals": {"type": "object"},
            "active_installs": {
                "type": "object",
                "description": "installs last seen within 1 hour, 24 hours, 7 days and 30 days before now",
                "required": ["1h", "24h", "7d", "30d"],
                "properties": {"1h": count, "24h": count, "7d": count, "30d": count},
            },
            "active_installs_windows": {
                "type": "object",
                "description": "installs active in the 24 hours, 7 days and 30 days before `to`, and in the equally long span before each, from the per-day install activity at hour resolution",
                "required": ["24h", "7d", "30d"],
                "properties": {"24h": window, "7d": window, "30d": window},
            },
            "sessions": {"type": "object"},
            "series": {"type": "array", "items": {"type": "object"}},
            "previous": {
                "type": "object",
                "description": "the totals of the equally long period just before `from`, for comparisons",
                "required": ["from", "to", "totals", "sessions", "error_rate"],
                "properties": {
                    "from": {"type": "string"},
                    "to": {"type": "string"},
                    "totals": {"type": "object"},
                    "sessions": {"type": "object"},
                    "error_rate": {"type": "number"},
                },
            },
        },
    })
}

/// The admin's routes: aggregates, the live stream, erasure.
fn admin_paths() -> Value {
    json!({
        "/v1/stats": {
            "get": {
                "summary": "Chart-ready aggregates of the key's app (role admin); see docs/API.md for the engagement score.",
                "security": [{"bearer": []}],
                "parameters": query(Action::Stats),
                "responses": with(common_errors(&[]), "200", ok("aggregates", stats_schema())),
            }
        },
        "/v1/stream": {
            "get": {
                "summary": "Committed events of the key's app as server-sent events (role admin); `lagged` events say how many a slow client missed.",
                "security": [{"bearer": []}],
                "responses": with(common_errors(&[]), "200", json!({"description": "text/event-stream"})),
            }
        },
        "/v1/installs/self/key": {
            "post": {
                "summary": "Register the install's Ed25519 public key (role ingest), with its first upload; the collector keeps its SHA-256.",
                "security": [{"bearer": []}],
                "requestBody": json_body(Action::RegisterInstallKey.schema()),
                "responses": with(common_errors(&[("409", "another key is registered for this install"), ("413", "body larger than max_body_bytes"), ("415", "Content-Type is not application/json, or Content-Encoding is not gzip")]), "200", ok("registered", json!({"type": "object", "properties": {"registered": {"enum": ["new", "unchanged"]}}}))),
            }
        },
        "/v1/installs/self/remote": {
            "post": {
                "summary": "What the collector holds about the install that signs the request (role ingest plus install proof).",
                "security": [{"bearer": []}],
                "requestBody": json_body(proven_schema()),
                "responses": with(common_errors(&[("413", "body larger than max_body_bytes"), ("415", "Content-Type is not application/json, or Content-Encoding is not gzip")]), "200", ok("the install's data", json!({"type": "object", "properties": {
                    "install_id": {"type": "string"}, "events": {"type": "integer"}, "raw_events": {"type": "integer"},
                    "counted_days": {"type": "integer"}, "counted_events": {"type": "integer"},
                    "first_seen": {"type": ["string", "null"]}, "last_seen": {"type": ["string", "null"]},
                    "by_name": {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"}, "name": {"type": "string"}, "count": {"type": "integer"}}}}}}))),
            }
        },
        "/v1/installs/self/forget": {
            "post": {
                "summary": "Erase the install that signs the request (role ingest plus install proof), as DELETE /v1/installs/{id} does.",
                "security": [{"bearer": []}],
                "requestBody": json_body(proven_schema()),
                "responses": with(common_errors(&[("413", "body larger than max_body_bytes"), ("415", "Content-Type is not application/json, or Content-Encoding is not gzip")]), "200", ok("erased", erasure_schema())),
            }
        },
        "/v1/installs/{id}": {
            "delete": {
                "summary": "Erase one install (role admin): its raw events, sessions, counts-only days, key and install record, and what they added to rollups and totals.",
                "security": [{"bearer": []}],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": with(common_errors(&[]), "200", ok("erased", erasure_schema())),
            }
        }
    })
}

fn erasure_schema() -> Value {
    json!({"type": "object", "properties": {
        "install_id": {"type": "string"},
        "deleted_events": {"type": "integer", "description": "raw events deleted"},
        "deleted_counted_days": {"type": "integer", "description": "counts-only days deleted"},
        "uncounted_events": {"type": "integer", "description": "events taken back out of rollups and totals"}
    }})
}

/// The routes for operators: metrics, health, this document.
fn service_paths() -> Value {
    json!({
        "/metrics": {
            "get": {
                "summary": "Prometheus text format; OpenMetrics with Accept: application/openmetrics-text. Bearer metrics_token when configured.",
                "responses": {"200": {"description": "metrics"}, "401": error_response("metrics_token is configured and was not presented"), "403": error_response("/metrics is closed: the collector listens beyond loopback and has no metrics_token")}
            }
        },
        "/healthz": {"get": {"summary": "The process is up.", "responses": {"200": ok("up", json!({"type": "object"}))}}},
        "/readyz": {"get": {"summary": "Storage answers.", "responses": {"200": ok("ready", json!({"type": "object"})), "503": error_response("storage unavailable")}}},
        "/openapi.json": {"get": {"summary": "This document.", "responses": {"200": ok("OpenAPI 3.1", json!({"type": "object"}))}}}
    })
}

/// `GET /openapi.json`.
pub async fn handler() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules the server enforces, stated where a client generator reads them.
    #[test]
    fn the_document_states_the_real_rules() {
        let document = document();
        let parameter = |path: &str, name: &str| -> Value {
            document["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|parameter| parameter["name"] == name)
                .unwrap_or_else(|| panic!("{path} has no parameter {name}"))["schema"]
                .clone()
        };
        assert_eq!(parameter("/v1/events", "limit")["type"], "integer");
        assert_eq!(parameter("/v1/events", "limit")["maximum"], 1_000);
        assert_eq!(parameter("/v1/events", "from")["format"], "date-time");
        assert_eq!(parameter("/v1/stats", "bucket")["enum"], json!(["hour", "day", "week"]));
        let stats = &document["paths"]["/v1/stats"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(
            stats["properties"]["active_installs_windows"]["required"],
            json!(["24h", "7d", "30d"])
        );
        let event = &document["components"]["schemas"]["Event"];
        assert_eq!(event["additionalProperties"], false);
        let pattern = event["properties"]["id"]["pattern"].as_str().unwrap();
        assert!(pattern.contains("-7[0-9a-fA-F]{3}-"), "{pattern}");
        let envelope =
            &document["paths"]["/v1/actions"]["post"]["requestBody"]["content"]["application/json"]["schema"];
        let variants = envelope["oneOf"].as_array().unwrap();
        assert_eq!(variants.len(), Action::ALL.len());
        for (variant, action) in variants.iter().zip(Action::ALL) {
            assert_eq!(variant["properties"]["action"]["const"], action.name());
            assert_eq!(variant["properties"]["payload"], action.schema());
            assert_eq!(variant["additionalProperties"], false);
        }
        let batch =
            &document["paths"]["/v1/events/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(batch["additionalProperties"], false);
    }
}
