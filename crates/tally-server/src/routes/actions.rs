//! The action registry: every operation of the API, with its role and the JSON schema
//! of its payload. `POST /v1/actions {"action", "payload"}` dispatches here, and the
//! REST routes call the same [`Action`]s, so the two can never drift apart.
//!
//! An action is an enum variant, so a REST route names its action at compile time; only
//! `POST /v1/actions` turns a name from a request body into one, and an unknown name is
//! the client's 400.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::actions::{ActionResult, counts, events, ingest, installs, stats};
use crate::auth::check_role;
use crate::body::{parse_json, read_json_body};
use crate::error::AppError;
use crate::routes::access::{authorize, identify};
use crate::storage::{ApiKey, Role};

/// One operation of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `events.track`: store one event.
    Track,
    /// `events.track_batch`: store many, each accepted or refused on its own.
    TrackBatch,
    /// `counts.upload`: one install's counts of one day, stored once.
    UploadCounts,
    /// `stats.get`: aggregates of the key's app for a period.
    Stats,
    /// `events.list`: one page of raw events.
    ListEvents,
    /// `installs.erase`: everything stored about one install.
    EraseInstall,
    /// `installs.register_key`: an install registers its public key.
    RegisterInstallKey,
    /// `installs.remote`: what the collector holds about the install that proves itself.
    RemoteInstall,
    /// `installs.forget`: erases the install that proves itself.
    ForgetInstall,
}

impl Action {
    /// Every action, in the order `GET /v1/actions` lists them.
    pub const ALL: [Action; 9] = [
        Action::Track,
        Action::TrackBatch,
        Action::UploadCounts,
        Action::Stats,
        Action::ListEvents,
        Action::EraseInstall,
        Action::RegisterInstallKey,
        Action::RemoteInstall,
        Action::ForgetInstall,
    ];

    /// Its name in `POST /v1/actions`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Track => "events.track",
            Action::TrackBatch => "events.track_batch",
            Action::UploadCounts => "counts.upload",
            Action::Stats => "stats.get",
            Action::ListEvents => "events.list",
            Action::EraseInstall => "installs.erase",
            Action::RegisterInstallKey => "installs.register_key",
            Action::RemoteInstall => "installs.remote",
            Action::ForgetInstall => "installs.forget",
        }
    }

    /// The action called `name`, or the client's error listing the known names.
    pub fn named(name: &str) -> Result<Action, AppError> {
        Action::ALL
            .into_iter()
            .find(|action| action.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Action::ALL.iter().map(|action| action.name()).collect();
                AppError::bad_request(
                    "unknown_action",
                    format!("action: {name:?} is not one of {}", known.join(", ")),
                )
            })
    }

    /// The key role it needs.
    pub fn role(self) -> Role {
        match self {
            Action::Track
            | Action::TrackBatch
            | Action::UploadCounts
            | Action::RegisterInstallKey
            | Action::RemoteInstall
            | Action::ForgetInstall => Role::Ingest,
            Action::Stats | Action::ListEvents | Action::EraseInstall => Role::Admin,
        }
    }

    /// What it does, for `GET /v1/actions`.
    pub fn summary(self) -> &'static str {
        match self {
            Action::Track => {
                "Store one event; answers 202 {id, created_at}. Sending the same event again is a success and stores it once."
            }
            Action::TrackBatch => {
                "Store many events; answers 200 {accepted, duplicates, rejected[]}: one bad event never fails the others."
            }
            Action::UploadCounts => {
                "Store one install's counts of one complete day (counts-only upload mode); answers 200 {stored}: a day already stored changes nothing."
            }
            Action::Stats => "Chart-ready aggregates of the key's app for a period.",
            Action::ListEvents => "Raw events of the key's app, oldest first, filtered, with cursor pagination.",
            Action::EraseInstall => {
                "Erase one install of the key's app: its raw events, sessions, counts-only days, key and install record, and what they added to the rollups and totals."
            }
            Action::RegisterInstallKey => {
                "Register an install's Ed25519 public key (done with its first upload); the collector keeps its SHA-256, and the first key stays until the install is erased."
            }
            Action::RemoteInstall => {
                "What the collector holds about the install that signs the request: event count, first and last seen, counts by name."
            }
            Action::ForgetInstall => {
                "Erase the install that signs the request, as installs.erase does; its later uploads start fresh."
            }
        }
    }

    /// The REST route that runs it too.
    pub fn route(self) -> &'static str {
        match self {
            Action::Track => "POST /v1/events",
            Action::TrackBatch => "POST /v1/events/batch",
            Action::UploadCounts => "POST /v1/counts",
            Action::Stats => "GET /v1/stats",
            Action::ListEvents => "GET /v1/events",
            Action::EraseInstall => "DELETE /v1/installs/{id}",
            Action::RegisterInstallKey => "POST /v1/installs/self/key",
            Action::RemoteInstall => "POST /v1/installs/self/remote",
            Action::ForgetInstall => "POST /v1/installs/self/forget",
        }
    }

    /// The JSON schema of its payload.
    pub fn schema(self) -> Value {
        match self {
            Action::Track => event_schema(),
            Action::TrackBatch => batch_schema(),
            Action::UploadCounts => counts_schema(),
            Action::Stats => stats_schema(),
            Action::ListEvents => list_schema(),
            Action::EraseInstall => erase_schema(),
            Action::RegisterInstallKey => register_schema(),
            Action::RemoteInstall | Action::ForgetInstall => proven_schema(),
        }
    }

    /// Runs it for a key already checked to have [`Action::role`].
    async fn run(self, state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
        match self {
            Action::Track => ingest::track(state, key, payload).await,
            Action::TrackBatch => ingest::track_batch(state, key, payload).await,
            Action::UploadCounts => counts::upload(state, key, payload).await,
            Action::Stats => stats::get(state, key, payload).await,
            Action::ListEvents => events::list(state, key, payload).await,
            Action::EraseInstall => installs::erase(state, key, payload).await,
            Action::RegisterInstallKey => installs::register_key(state, key, payload).await,
            Action::RemoteInstall => installs::remote(state, key, payload).await,
            Action::ForgetInstall => installs::forget(state, key, payload).await,
        }
    }

    /// Checks the key presented in `headers` for this action, then runs it on `payload`.
    pub(crate) async fn call(
        self,
        state: &AppState,
        headers: &HeaderMap,
        payload: Value,
    ) -> Result<Response, AppError> {
        let key = authorize(state, headers, self.role()).await?;
        self.answer(state, &key, payload).await
    }

    /// Checks the key, then reads the JSON body and runs this action on it.
    pub(crate) async fn call_with_body(
        self,
        state: &AppState,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, AppError> {
        let key = authorize(state, headers, self.role()).await?;
        let payload = parse_json(&read_json_body(headers, body, &state.config).await?)?;
        self.answer(state, &key, payload).await
    }

    async fn answer(self, state: &AppState, key: &ApiKey, payload: Value) -> Result<Response, AppError> {
        let (status, body) = self.run(state, key, payload).await?;
        Ok((status, Json(body)).into_response())
    }
}

/// `POST /v1/actions`: `{"action": "...", "payload": {...}}`.
pub async fn post_action(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, AppError> {
    // The key must be valid before the body is read, as on every route; its role is
    // checked once the envelope names the action.
    let key = identify(&state, &headers).await?;
    let envelope = parse_json(&read_json_body(&headers, body, &state.config).await?)?;
    let Value::Object(mut envelope) = envelope else {
        return Err(AppError::bad_request(
            "malformed_action",
            "body must be {\"action\": \"...\", \"payload\": {...}}",
        ));
    };
    let name = match envelope.remove("action") {
        Some(Value::String(name)) => name,
        _ => {
            return Err(AppError::bad_request(
                "malformed_action",
                "action: must be a string naming an action",
            ));
        }
    };
    let action = Action::named(&name)?;
    let payload = envelope.remove("payload").unwrap_or_else(|| json!({}));
    if let Some(extra) = envelope.keys().next() {
        return Err(AppError::bad_request(
            "malformed_action",
            format!("unknown field {extra:?}; only action and payload are allowed"),
        ));
    }
    check_role(&key, action.role())?;
    action.answer(&state, &key, payload).await
}

/// `GET /v1/actions`: every action with its role and payload schema.
pub async fn list_actions() -> Json<Value> {
    let actions: Vec<Value> = Action::ALL
        .iter()
        .map(|action| {
            json!({
                "name": action.name(),
                "role": action.role().as_str(),
                "summary": action.summary(),
                "route": action.route(),
                "schema": action.schema(),
            })
        })
        .collect();
    Json(json!({"actions": actions}))
}

/// A hyphenated UUID whose version digit is 7, as `Event::validate` requires.
pub(crate) const UUID_V7_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// An app name, as `check_app` requires.
pub(crate) const APP_PATTERN: &str = "^[a-z][a-z0-9_-]*$";

/// A page cursor as this collector gives them out: `<ms since epoch>.<uuid>`.
pub(crate) const CURSOR_PATTERN: &str =
    "^[0-9]{1,14}\\.[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// The JSON schema of one event, with the limits of `docs/API.md`.
pub(crate) fn event_schema() -> Value {
    use tally_core::limits::*;
    let name = json!({"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": MAX_NAME_LEN});
    let hashed = json!({"type": "string", "pattern": "^h1:[0-9a-f]{24}$"});
    let token = json!({"type": "string", "pattern": "^[A-Za-z0-9._+:-]+$", "maxLength": MAX_ID_LEN});
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "ts", "app", "app_version", "source", "type", "name", "session_id", "install_id"],
        "dependentRequired": {"target_type": ["target_id"], "target_id": ["target_type"]},
        "properties": {
            "id": {"type": "string", "pattern": UUID_V7_PATTERN, "description": "UUIDv7 (version digit 7), hyphenated; the dedupe key"},
            "ts": {"type": "string", "format": "date-time", "description": "RFC 3339; at most 24 hours after the collector's clock"},
            "app": {"type": "string", "pattern": APP_PATTERN, "maxLength": MAX_APP_LEN},
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

/// A batch: any JSON values as its events, because each is checked on its own (as an
/// [`event_schema`] event of the key's app) and a bad one is listed in `rejected` while
/// the others are stored; a batch with a bad event is still a valid batch.
pub(crate) fn batch_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["events"],
        "properties": {"events": {
            "type": "array",
            "maxItems": tally_core::limits::MAX_BATCH_EVENTS,
            "description": "each item is checked as an Event on its own; those that are not valid events of the key's app are listed in `rejected`, the rest are stored",
            "items": {}
        }}
    })
}

/// The JSON schema of a counts-only upload (`tally_core::counts::DayCounts`).
pub(crate) fn counts_schema() -> Value {
    use tally_core::limits::*;
    let name = json!({"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": MAX_NAME_LEN});
    let count = json!({"type": "integer", "minimum": 0});
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["app", "install_id", "day", "counts"],
        "properties": {
            "app": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$", "maxLength": MAX_APP_LEN},
            "install_id": {"type": "string", "pattern": "^[A-Za-z0-9._+:-]+$", "maxLength": MAX_ID_LEN},
            "day": {"type": "string", "format": "date", "description": "a complete UTC day, YYYY-MM-DD"},
            "counts": {
                "type": "array",
                "minItems": 1,
                "maxItems": tally_core::counts::MAX_GROUPS_PER_DAY,
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["type", "name", "count", "duration_count", "duration_total_ms", "histogram"],
                    "properties": {
                        "type": name,
                        "name": name,
                        "command": {"type": "string", "pattern": "^[a-z][a-z0-9 _.:-]*$", "maxLength": MAX_COMMAND_LEN},
                        "success": {"type": "boolean"},
                        "error_category": name,
                        "count": {"type": "integer", "minimum": 1},
                        "duration_count": count,
                        "duration_total_ms": count,
                        "histogram": {
                            "type": "array",
                            "items": count,
                            "minItems": tally_store::histogram::BUCKETS,
                            "maxItems": tally_store::histogram::BUCKETS,
                            "description": "durations per bucket of tally_store::histogram::BUCKET_BOUNDS_MS; adds up to duration_count"
                        }
                    }
                }
            }
        }
    })
}

fn stats_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "app": {"type": "string", "pattern": APP_PATTERN, "maxLength": tally_core::limits::MAX_APP_LEN, "description": "must be the key's app; defaults to it"},
            "from": {"type": "string", "format": "date-time", "description": "default: 7 days before `to`; must be before `to`"},
            "to": {"type": "string", "format": "date-time", "description": "default: now"},
            "bucket": {"enum": ["hour", "day", "week"], "description": "default: day; from..to may span at most 5,000 buckets"}
        }
    })
}

fn list_schema() -> Value {
    // Filters: any string; one that no event has matches nothing.
    let name = json!({"type": "string"});
    let token = json!({"type": "string"});
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "app": {"type": "string", "pattern": APP_PATTERN, "maxLength": tally_core::limits::MAX_APP_LEN, "description": "must be the key's app; defaults to it"},
            "type": name,
            "name": name,
            "install_id": token,
            "session_id": token,
            "from": {"type": "string", "format": "date-time", "description": "inclusive"},
            "to": {"type": "string", "format": "date-time", "description": "exclusive"},
            "limit": {"type": "integer", "minimum": 1, "maximum": events::MAX_PAGE, "description": "default 100"},
            "cursor": {"type": "string", "pattern": CURSOR_PATTERN, "description": "next_cursor of the previous page"}
        }
    })
}

fn erase_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["install_id"],
        "properties": {"install_id": {"type": "string", "minLength": 1, "maxLength": tally_core::limits::MAX_ID_LEN}}
    })
}

fn register_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["install_id", "key"],
        "properties": {
            "install_id": {"type": "string"},
            "key": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "the install's Ed25519 public key"}
        }
    })
}

/// A request signed by the install it is about (`tally_core::proof`).
pub(crate) fn proven_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["install_id", "proof"],
        "properties": {
            "install_id": {"type": "string"},
            "proof": {
                "type": "object",
                "additionalProperties": false,
                "required": ["key", "ts", "nonce", "signature"],
                "description": "Ed25519 signature of \"tally-install-proof-v1\\n{action}\\n{app}\\n{install_id}\\n{ts}\\n{nonce}\" by the install's registered key",
                "properties": {
                    "key": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "ts": {"type": "integer", "description": "Unix seconds, within 300 s of the collector's clock"},
                    "nonce": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "never used twice"},
                    "signature": {"type": "string", "pattern": "^[0-9a-f]{128}$"}
                }
            }
        }
    })
}

/// The body of `POST /v1/actions`: one of the actions by name, with its payload's own
/// schema, and nothing else.
pub(crate) fn envelope_schema() -> Value {
    let variants: Vec<Value> = Action::ALL
        .iter()
        .map(|action| {
            let payload = action.schema();
            let needs_payload = payload.get("required").is_some();
            let required: Vec<&str> = if needs_payload {
                vec!["action", "payload"]
            } else {
                vec!["action"]
            };
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": required,
                "properties": {"action": {"const": action.name()}, "payload": payload}
            })
        })
        .collect();
    json!({"oneOf": variants})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_found_by_its_own_name_only() {
        for action in Action::ALL {
            assert_eq!(Action::named(action.name()).ok(), Some(action));
        }
        let error = Action::named("events.nope").unwrap_err();
        assert_eq!(error.code, "unknown_action");
        assert!(
            error
                .message
                .contains("events.track, events.track_batch, counts.upload, stats.get, events.list, installs.erase, installs.register_key, installs.remote, installs.forget"),
            "{}",
            error.message
        );
    }
}
