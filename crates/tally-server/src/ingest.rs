//! Ingest: one event, a batch, and the HTTP routes in front of them.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::ToSpan;
use serde_json::{Value, json};
use tally_core::Event;

use crate::AppState;
use crate::actions::{self, ActionResult};
use crate::body::{parse_json, read_json_body};
use crate::error::AppError;
use crate::storage::{ApiKey, Role};

/// How far in the future an event's `ts` may be: clocks drift, but not by days.
const MAX_CLOCK_SKEW_HOURS: i64 = 24;

/// Why one event was refused.
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

fn invalid(message: String) -> Refusal {
    Refusal {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid_event",
        message,
    }
}

/// Turns one JSON value into a valid event: within `max_event_bytes`, the event shape,
/// and every rule of `Event::validate`. HTTP ingest and `tally ingest` share it.
pub(crate) fn parse_event(value: Value, max_event_bytes: usize) -> Result<Event, Refusal> {
    let size = serde_json::to_vec(&value)
        .map(|bytes| bytes.len())
        .unwrap_or(usize::MAX);
    if size > max_event_bytes {
        return Err(Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_large",
            message: format!("event is {size} bytes of JSON; limit max_event_bytes = {max_event_bytes}"),
        });
    }
    let event: Event = serde_json::from_value(value).map_err(|err| invalid(err.to_string()))?;
    event.validate().map_err(|err| invalid(err.to_string()))?;
    Ok(event)
}

/// Turns one JSON value into a valid event of the key's app, not from the future.
fn accept(state: &AppState, key: &ApiKey, value: Value) -> Result<Event, Refusal> {
    let event = parse_event(value, state.config.max_event_bytes)?;
    let latest = (state.clock)()
        .checked_add(MAX_CLOCK_SKEW_HOURS.hours())
        .unwrap_or(event.ts);
    if event.ts > latest {
        return Err(invalid(format!(
            "ts: must not be more than {MAX_CLOCK_SKEW_HOURS} hours in the future (got {})",
            tally_core::time::format(event.ts)
        )));
    }
    if event.app != key.app {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: format!("this key writes app {:?}, not {:?}", key.app, event.app),
        });
    }
    Ok(event)
}

/// `events.track`.
pub async fn track(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let event = accept(state, key, payload).map_err(|refusal| {
        state.metrics.record_events(0, 0, 1);
        AppError {
            status: refusal.status,
            code: refusal.code,
            message: refusal.message,
            retry_after: None,
            detail: None,
        }
    })?;
    let (id, ts) = (event.id, event.ts);
    let stored = state.committer.commit(vec![event]).await?;
    let new = stored.first().copied().unwrap_or(false);
    state.metrics.record_events(u64::from(new), u64::from(!new), 0);
    Ok((
        StatusCode::ACCEPTED,
        json!({"id": id, "created_at": tally_core::time::format(ts)}),
    ))
}

/// `events.track_batch`.
pub async fn track_batch(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let Value::Object(mut body) = payload else {
        return Err(AppError::bad_request(
            "malformed_batch",
            "body must be an object {\"events\": [...]}",
        ));
    };
    let Some(Value::Array(values)) = body.remove("events") else {
        return Err(AppError::bad_request(
            "malformed_batch",
            "events: must be an array of events",
        ));
    };
    if let Some(extra) = body.keys().next() {
        return Err(AppError::bad_request(
            "malformed_batch",
            format!("unknown field {extra:?}; only events is allowed"),
        ));
    }
    let limit = state.config.max_batch_events;
    if values.len() > limit {
        return Err(AppError::too_large(format!(
            "batch has {} events; limit max_batch_events = {limit}",
            values.len()
        )));
    }
    let mut events = Vec::with_capacity(values.len());
    let mut rejected = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        let id = value.get("id").cloned().unwrap_or(Value::Null);
        match accept(state, key, value) {
            Ok(event) => events.push(event),
            Err(refusal) => rejected.push(json!({
                "index": index, "id": id, "code": refusal.code, "message": refusal.message,
            })),
        }
    }
    let stored = state.committer.commit(events).await?;
    let accepted = stored.iter().filter(|new| **new).count();
    let duplicates = stored.len() - accepted;
    state
        .metrics
        .record_events(accepted as u64, duplicates as u64, rejected.len() as u64);
    Ok((
        StatusCode::OK,
        json!({"accepted": accepted, "duplicates": duplicates, "rejected": rejected}),
    ))
}

/// Authenticates for `role`, applies the key's rate limit, and runs `action`.
pub async fn run_action(
    state: &AppState,
    headers: &HeaderMap,
    action: &'static actions::Action,
    payload: Value,
) -> Result<Response, AppError> {
    let key = authorize(state, headers, action.role).await?;
    let (status, body) = (action.run)(state, &key, payload).await?;
    Ok((status, Json(body)).into_response())
}

/// Checks the key and its rate limit.
pub async fn authorize(state: &AppState, headers: &HeaderMap, role: Role) -> Result<ApiKey, AppError> {
    let key = state.keys.authenticate(state.store.as_ref(), headers, role).await?;
    state.limiter.check(&key.id)?;
    Ok(key)
}

/// `POST /v1/events`.
pub async fn post_event(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, AppError> {
    let action = actions::find("events.track").ok_or_else(|| AppError::internal("events.track is not registered"))?;
    // The key is checked before the body is read, so an unauthenticated client cannot
    // make the collector decompress anything.
    let key = authorize(&state, &headers, action.role).await?;
    let payload = parse_json(&read_json_body(&headers, body, &state.config).await?)?;
    let (status, body) = (action.run)(&state, &key, payload).await?;
    Ok((status, Json(body)).into_response())
}

/// `POST /v1/events/batch`.
pub async fn post_batch(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, AppError> {
    let action = actions::find("events.track_batch")
        .ok_or_else(|| AppError::internal("events.track_batch is not registered"))?;
    let key = authorize(&state, &headers, action.role).await?;
    let payload = parse_json(&read_json_body(&headers, body, &state.config).await?)?;
    let (status, body) = (action.run)(&state, &key, payload).await?;
    Ok((status, Json(body)).into_response())
}

/// `POST /v1/actions`: `{"action": "...", "payload": {...}}`.
pub async fn post_action(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, AppError> {
    // The key must be valid before the body is read, as on every route; its role is
    // checked once the envelope names the action.
    let key = state.keys.identify(state.store.as_ref(), &headers).await?;
    state.limiter.check(&key.id)?;
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
    let action = actions::find(&name).ok_or_else(|| {
        let known: Vec<&str> = actions::ACTIONS.iter().map(|action| action.name).collect();
        AppError::bad_request(
            "unknown_action",
            format!("action: {name:?} is not one of {}", known.join(", ")),
        )
    })?;
    let payload = envelope.remove("payload").unwrap_or_else(|| json!({}));
    crate::auth::check_role(&key, action.role)?;
    let (status, body) = (action.run)(&state, &key, payload).await?;
    Ok((status, Json(body)).into_response())
}

/// `GET /v1/actions`: every action with its role and payload schema.
pub async fn list_actions() -> Json<Value> {
    let actions: Vec<Value> = actions::ACTIONS
        .iter()
        .map(|action| {
            json!({
                "name": action.name,
                "role": action.role.as_str(),
                "summary": action.summary,
                "route": action.route,
                "schema": (action.schema)(),
            })
        })
        .collect();
    Json(json!({"actions": actions}))
}
