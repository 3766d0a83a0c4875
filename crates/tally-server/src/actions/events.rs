//! `events.list`: raw events of the key's app, oldest first, with cursor pagination.

use axum::http::StatusCode;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use tally_core::time::Period;

use crate::AppState;
use crate::actions::{ActionResult, parse_time, reject_nulls};
use crate::auth::check_reads;
use crate::error::AppError;
use crate::storage::{ApiKey, EventQuery};

/// Most events in one page.
pub const MAX_PAGE: usize = 1_000;
const DEFAULT_PAGE: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRequest {
    app: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    install_id: Option<String>,
    session_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<Value>,
    cursor: Option<String>,
}

/// `<ms since epoch>.<uuid>` of the last event of a page.
fn cursor_of(event: &tally_core::Event) -> String {
    format!("{}.{}", event.ts.as_millisecond(), event.id)
}

fn parse_cursor(text: &str) -> Result<(jiff::Timestamp, uuid::Uuid), AppError> {
    let malformed = || AppError::bad_request("invalid_parameter", "cursor: not a cursor this collector gave out");
    let (millis, id) = text.split_once('.').ok_or_else(malformed)?;
    let ts = millis
        .parse::<i64>()
        .ok()
        .and_then(|millis| jiff::Timestamp::from_millisecond(millis).ok())
        .ok_or_else(malformed)?;
    Ok((ts, id.parse().map_err(|_| malformed())?))
}

/// `events.list`.
pub async fn list(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    reject_nulls(&payload)?;
    let request: ListRequest =
        serde_json::from_value(payload).map_err(|err| AppError::bad_request("invalid_parameter", err.to_string()))?;
    check_reads(key, request.app.as_deref())?;
    let limit = match &request.limit {
        None => DEFAULT_PAGE,
        Some(value) => value
            .as_u64()
            .filter(|limit| (1..=MAX_PAGE as u64).contains(limit))
            .map(|limit| limit as usize)
            .ok_or_else(|| {
                AppError::bad_request(
                    "invalid_parameter",
                    format!("limit: must be a whole number from 1 to {MAX_PAGE}"),
                )
            })?,
    };
    let query = EventQuery {
        app: key.app.clone(),
        kind: request.kind,
        name: request.name,
        install_id: request.install_id,
        session_id: request.session_id,
        period: Period {
            from: optional_time("from", request.from.as_deref())?.unwrap_or(Period::ALL.from),
            to: optional_time("to", request.to.as_deref())?.unwrap_or(Period::ALL.to),
        },
        after: request.cursor.as_deref().map(parse_cursor).transpose()?,
        limit,
    };
    let events = state.store.events(&query).await?;
    let next_cursor = (events.len() == limit).then(|| events.last().map(cursor_of)).flatten();
    Ok((StatusCode::OK, json!({"events": events, "next_cursor": next_cursor})))
}

/// An optional time parameter, checked when present.
fn optional_time(field: &str, text: Option<&str>) -> Result<Option<Timestamp>, AppError> {
    text.map(|text| parse_time(field, text)).transpose()
}
