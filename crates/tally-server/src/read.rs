//! The admin's read side: raw events with cursor pagination, and erasing one install.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tally_core::time::Period;

use crate::AppState;
use crate::actions::{self, ActionResult};
use crate::error::AppError;
use crate::ingest::run_action;
use crate::stats::parse_time;
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
    let request: ListRequest =
        serde_json::from_value(payload).map_err(|err| AppError::bad_request("invalid_parameter", err.to_string()))?;
    if let Some(app) = &request.app
        && *app != key.app
    {
        return Err(AppError::forbidden(format!(
            "this key reads app {:?}, not {app:?}",
            key.app
        )));
    }
    let limit = match &request.limit {
        None => DEFAULT_PAGE,
        Some(value) => value
            .as_u64()
            .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
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
            from: request
                .from
                .as_deref()
                .map(|text| parse_time("from", text))
                .transpose()?
                .unwrap_or(Period::ALL.from),
            to: request
                .to
                .as_deref()
                .map(|text| parse_time("to", text))
                .transpose()?
                .unwrap_or(Period::ALL.to),
        },
        after: request.cursor.as_deref().map(parse_cursor).transpose()?,
        limit,
    };
    let events = state.store.events(&query).await?;
    let next_cursor = (events.len() == limit).then(|| events.last().map(cursor_of)).flatten();
    Ok((StatusCode::OK, json!({"events": events, "next_cursor": next_cursor})))
}

/// `installs.erase`.
pub async fn erase(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let install_id = payload
        .get("install_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= tally_core::limits::MAX_ID_LEN)
        .ok_or_else(|| AppError::bad_request("invalid_parameter", "install_id: must be a non-empty string"))?
        .to_owned();
    let deleted = state.store.erase_install(&key.app, &install_id).await?;
    Ok((
        StatusCode::OK,
        json!({"install_id": install_id, "deleted_events": deleted}),
    ))
}

fn query_payload(query: BTreeMap<String, String>) -> Value {
    Value::Object(
        query
            .into_iter()
            .map(|(key, value)| (key, Value::String(value)))
            .collect(),
    )
}

fn action(name: &str) -> Result<&'static actions::Action, AppError> {
    actions::find(name).ok_or_else(|| AppError::internal(format!("{name} is not registered")))
}

/// `GET /v1/events`.
pub async fn get_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Response, AppError> {
    run_action(&state, &headers, action("events.list")?, query_payload(query)).await
}

/// `GET /v1/stats`.
pub async fn get_stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Response, AppError> {
    run_action(&state, &headers, action("stats.get")?, query_payload(query)).await
}

/// `DELETE /v1/installs/{id}`.
pub async fn delete_install(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(install_id): Path<String>,
) -> Result<Response, AppError> {
    run_action(
        &state,
        &headers,
        action("installs.erase")?,
        json!({"install_id": install_id}),
    )
    .await
}

/// A JSON 404 for unknown routes, in the same error shape as everything else.
pub async fn no_route() -> Response {
    AppError::not_found("no such route; GET /openapi.json lists every route").into_response()
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: storage answers.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    state.store.ping().await?;
    Ok(Json(json!({"status": "ready", "backend": state.store.backend()})))
}
