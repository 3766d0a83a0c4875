//! Ingest: one event, a batch, and the event check they share with `tally ingest`.

use axum::http::StatusCode;
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};
use tally_core::Event;

use crate::AppState;
use crate::actions::ActionResult;
use crate::config::ServerConfig;
use crate::error::AppError;
use crate::storage::ApiKey;

/// How far in the future an event's `ts` may be: clocks drift, but not by days.
pub const MAX_CLOCK_SKEW_HOURS: i64 = 24;

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

/// `duration_ms` written as a number with no fraction (`1500.0`) as the whole number it
/// is: JSON Schema (and so /openapi.json) counts it as an integer, and so does the
/// collector.
fn whole_numbers(mut value: Value) -> Value {
    if let Some(duration) = value.get_mut("duration_ms")
        && let Some(float) = duration.as_f64()
        && duration.is_f64()
        && float.fract() == 0.0
        && (0.0..=u64::MAX as f64).contains(&float)
    {
        *duration = Value::from(float as u64);
    }
    value
}

/// Turns one JSON value into a valid event: within `max_event_bytes`, the event shape,
/// and every rule of `Event::validate`. HTTP ingest and `tally ingest` share it.
pub(crate) fn parse_event(value: Value, max_event_bytes: usize) -> Result<Event, Refusal> {
    let size = tally_core::event::json_len(&value);
    if size > max_event_bytes {
        return Err(Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_large",
            message: format!("event is {size} bytes of JSON; limit max_event_bytes = {max_event_bytes}"),
        });
    }
    let event: Event = serde_json::from_value(whole_numbers(value)).map_err(|err| invalid(err.to_string()))?;
    event.validate().map_err(|err| invalid(err.to_string()))?;
    Ok(event)
}

/// Turns one JSON value into a valid event of `app`, not more than
/// [`MAX_CLOCK_SKEW_HOURS`] after `now`.
fn accept(value: Value, app: &str, now: Timestamp, max_event_bytes: usize) -> Result<Event, Refusal> {
    let event = parse_event(value, max_event_bytes)?;
    let latest = now.checked_add(MAX_CLOCK_SKEW_HOURS.hours()).unwrap_or(event.ts);
    if event.ts > latest {
        return Err(invalid(format!(
            "ts: must not be more than {MAX_CLOCK_SKEW_HOURS} hours in the future (got {})",
            tally_core::time::format(event.ts)
        )));
    }
    if event.app != app {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: format!("this key writes app {app:?}, not {:?}", event.app),
        });
    }
    Ok(event)
}

/// One refused event of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Its position in the batch.
    pub index: usize,
    /// Its `id` as sent (`null` when it had none).
    pub id: Value,
    /// The error code, as an HTTP error would have it.
    pub code: &'static str,
    /// `field: rule`.
    pub message: String,
}

/// A batch after its check: the events to store, and those refused.
pub struct CheckedBatch {
    /// Valid events of the app, in batch order.
    pub events: Vec<Event>,
    /// Refused events, in batch order.
    pub rejected: Vec<Rejected>,
}

/// Checks a batch body, `{"events": [...]}` and nothing else, of at most
/// `max_batch_events` events, each of `app` and not from the future. HTTP batches and
/// `tally ingest` files both go through here, so they refuse the same things.
pub fn check_batch(payload: Value, app: &str, now: Timestamp, config: &ServerConfig) -> Result<CheckedBatch, AppError> {
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
    let limit = config.max_batch_events;
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
        match accept(value, app, now, config.max_event_bytes) {
            Ok(event) => events.push(event),
            Err(refusal) => rejected.push(Rejected {
                index,
                id,
                code: refusal.code,
                message: refusal.message,
            }),
        }
    }
    Ok(CheckedBatch { events, rejected })
}

/// `events.track`.
pub async fn track(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let event = accept(payload, &key.app, (state.clock)(), state.config.max_event_bytes).map_err(|refusal| {
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
    let CheckedBatch { events, rejected } = check_batch(payload, &key.app, (state.clock)(), &state.config)?;
    let stored = state.committer.commit(events).await?;
    let accepted = stored.iter().filter(|new| **new).count();
    let duplicates = stored.len() - accepted;
    state
        .metrics
        .record_events(accepted as u64, duplicates as u64, rejected.len() as u64);
    let rejected: Vec<Value> = rejected
        .into_iter()
        .map(|refused| {
            json!({"index": refused.index, "id": refused.id, "code": refused.code, "message": refused.message})
        })
        .collect();
    Ok((
        StatusCode::OK,
        json!({"accepted": accepted, "duplicates": duplicates, "rejected": rejected}),
    ))
}
