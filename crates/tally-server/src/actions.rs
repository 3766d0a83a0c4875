//! The action registry: every operation of the API, with its role and the JSON schema
//! of its payload. `POST /v1/actions {"action", "payload"}` dispatches here, and the
//! REST routes call the same entries, so the two can never drift apart.

use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::AppError;
use crate::storage::{ApiKey, Role};

/// What an action answers: a status and a JSON body.
pub type ActionResult = Result<(StatusCode, Value), AppError>;

/// One operation.
pub struct Action {
    /// Its name in `POST /v1/actions`.
    pub name: &'static str,
    /// The key role it needs.
    pub role: Role,
    /// What it does.
    pub summary: &'static str,
    /// The REST route that runs it too.
    pub route: &'static str,
    /// The JSON schema of its payload.
    pub schema: fn() -> Value,
    /// Runs it for a key already checked to have `role`.
    pub run: for<'a> fn(&'a AppState, &'a ApiKey, Value) -> BoxFuture<'a, ActionResult>,
}

/// Every action.
pub static ACTIONS: &[Action] = &[
    Action {
        name: "events.track",
        role: Role::Ingest,
        summary: "Store one event; answers 202 {id, created_at}. Sending the same event again is a success and stores it once.",
        route: "POST /v1/events",
        schema: event_schema,
        run: |state, key, payload| Box::pin(crate::ingest::track(state, key, payload)),
    },
    Action {
        name: "events.track_batch",
        role: Role::Ingest,
        summary: "Store many events; answers 200 {accepted, duplicates, rejected[]}: one bad event never fails the others.",
        route: "POST /v1/events/batch",
        schema: batch_schema,
        run: |state, key, payload| Box::pin(crate::ingest::track_batch(state, key, payload)),
    },
    Action {
        name: "stats.get",
        role: Role::Admin,
        summary: "Chart-ready aggregates of the key's app for a period.",
        route: "GET /v1/stats",
        schema: stats_schema,
        run: |state, key, payload| Box::pin(crate::stats::get(state, key, payload)),
    },
    Action {
        name: "events.list",
        role: Role::Admin,
        summary: "Raw events of the key's app, oldest first, filtered, with cursor pagination.",
        route: "GET /v1/events",
        schema: list_schema,
        run: |state, key, payload| Box::pin(crate::read::list(state, key, payload)),
    },
    Action {
        name: "installs.erase",
        role: Role::Admin,
        summary: "Erase every raw event, session and install record of one install of the key's app.",
        route: "DELETE /v1/installs/{id}",
        schema: erase_schema,
        run: |state, key, payload| Box::pin(crate::read::erase(state, key, payload)),
    },
];

/// The action called `name`.
pub fn find(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|action| action.name == name)
}

/// The JSON schema of one event, with the limits of `docs/API.md`.
pub fn event_schema() -> Value {
    use tally_core::limits::*;
    let name = json!({"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": MAX_NAME_LEN});
    let hashed = json!({"type": "string", "pattern": "^h1:[0-9a-f]{24}$"});
    let token = json!({"type": "string", "pattern": "^[A-Za-z0-9._+:-]+$", "maxLength": MAX_ID_LEN});
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "ts", "app", "app_version", "source", "type", "name", "session_id", "install_id"],
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "UUIDv7; the dedupe key"},
            "ts": {"type": "string", "format": "date-time"},
            "app": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$", "maxLength": MAX_APP_LEN},
            "app_version": {"type": "string", "pattern": "^[A-Za-z0-9._+:-]+$", "maxLength": MAX_APP_VERSION_LEN},
            "source": {"enum": ["cli", "web", "mobile", "backend", "extension"]},
            "type": name,
            "name": name,
            "command": {"type": "string", "pattern": "^[a-z][a-z0-9 _.:-]*$", "maxLength": MAX_COMMAND_LEN},
            "session_id": token,
            "install_id": token,
            "workspace": hashed,
            "target_type": name,
            "target_id": hashed,
            "duration_ms": {"type": "integer", "minimum": 0, "maximum": MAX_DURATION_MS},
            "success": {"type": "boolean"},
            "error_category": name,
            "error_message": {"type": "string", "maxLength": MAX_ERROR_MESSAGE_LEN},
            "props": {
                "type": "object",
                "maxProperties": MAX_PROPS,
                "propertyNames": {"pattern": "^[a-z][a-z0-9_]*$", "maxLength": MAX_NAME_LEN},
                "additionalProperties": {"type": ["string", "number", "boolean"], "maxLength": MAX_PROP_STRING_LEN}
            }
        }
    })
}

fn batch_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["events"],
        "properties": {"events": {"type": "array", "maxItems": tally_core::limits::MAX_BATCH_EVENTS, "items": event_schema()}}
    })
}

fn stats_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "app": {"type": "string", "description": "must be the key's app; defaults to it"},
            "from": {"type": "string", "format": "date-time", "description": "default: 7 days before `to`"},
            "to": {"type": "string", "format": "date-time", "description": "default: now"},
            "bucket": {"enum": ["hour", "day", "week"], "description": "default: day"}
        }
    })
}

fn list_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "app": {"type": "string"},
            "type": {"type": "string"},
            "name": {"type": "string"},
            "install_id": {"type": "string"},
            "session_id": {"type": "string"},
            "from": {"type": "string", "format": "date-time"},
            "to": {"type": "string", "format": "date-time"},
            "limit": {"type": ["integer", "string"], "minimum": 1, "maximum": crate::read::MAX_PAGE},
            "cursor": {"type": "string", "description": "next_cursor of the previous page"}
        }
    })
}

fn erase_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["install_id"],
        "properties": {"install_id": {"type": "string"}}
    })
}
