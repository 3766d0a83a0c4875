//! The HTTP side of the collector: the router, the middleware that counts every
//! request, and thin adapters from each route to what it runs. The REST routes of the
//! API run the same [`Action`]s as `POST /v1/actions` ([`actions`]); what an action does
//! lives in [`crate::actions`], which knows nothing of HTTP.
//!
//! - [`access`]: the key, role and rate-limit check in front of every API route.
//! - [`actions`]: the action registry and `GET`/`POST /v1/actions`.
//! - [`stream`]: `GET /v1/stream`. [`openapi`]: `GET /openapi.json`.
//!
//! The dashboard's page, login and data routes ([`crate::dashboard`]) are merged in.

pub mod access;
pub mod actions;
pub mod openapi;
pub mod stream;

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;
use crate::config::MetricsAccess;
use crate::error::{AppError, InternalDetail};
use crate::routes::actions::Action;

/// The router of every route, with its request counting.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(post_event).get(get_events))
        .route("/v1/events/batch", post(post_batch))
        .route("/v1/counts", post(post_counts))
        .route("/v1/actions", post(actions::post_action).get(actions::list_actions))
        .route("/v1/logs", post(crate::otlp::post_logs))
        .route("/v1/stats", get(get_stats))
        .route("/v1/stream", get(stream::stream))
        .route("/v1/installs/{id}", delete(delete_install))
        .route("/v1/installs/self/key", post(post_install_key))
        .route("/v1/installs/self/remote", post(post_install_remote))
        .route("/v1/installs/self/forget", post(post_install_forget))
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::handler))
        .merge(crate::dashboard::routes())
        .fallback(no_route)
        .layer(middleware::from_fn(crate::beacon::layer))
        .layer(middleware::from_fn_with_state(state.clone(), crate::cors::layer))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts and times every request, and logs a 5xx once with its internal detail.
/// Bad client input is not an error of the collector and is not logged as one.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        let detail = response
            .extensions()
            .get::<InternalDetail>()
            .map_or("", |detail| detail.0.as_str());
        tracing::error!(%method, %route, status = status.as_u16(), detail, "request failed");
    }
    if route != "/v1/stream" {
        state.metrics.record_request(&route, status.as_u16(), started.elapsed());
    }
    response
}

/// `POST /v1/events`.
async fn post_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    Action::Track.call_with_body(&state, &headers, body).await
}

/// `POST /v1/events/batch`.
async fn post_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    Action::TrackBatch.call_with_body(&state, &headers, body).await
}

/// `POST /v1/counts`.
async fn post_counts(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    Action::UploadCounts.call_with_body(&state, &headers, body).await
}

/// A query string as `action`'s payload: a parameter its schema types as an integer
/// becomes a number when it is one; every other value stays a string, so the action's
/// own check names the parameter and the rule.
fn query_payload(action: Action, query: BTreeMap<String, String>) -> Value {
    let schema = action.schema();
    Value::Object(
        query
            .into_iter()
            .map(|(key, value)| {
                let integer = schema["properties"][&key]["type"] == "integer";
                let typed = match value.parse::<u64>() {
                    Ok(number) if integer => Value::from(number),
                    _ => Value::String(value),
                };
                (key, typed)
            })
            .collect(),
    )
}

/// `GET /v1/events`.
async fn get_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Response, AppError> {
    Action::ListEvents
        .call(&state, &headers, query_payload(Action::ListEvents, query))
        .await
}

/// `GET /v1/stats`.
async fn get_stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Response, AppError> {
    Action::Stats
        .call(&state, &headers, query_payload(Action::Stats, query))
        .await
}

/// `DELETE /v1/installs/{id}`.
async fn delete_install(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(install_id): Path<String>,
) -> Result<Response, AppError> {
    Action::EraseInstall
        .call(&state, &headers, json!({"install_id": install_id}))
        .await
}

/// `POST /v1/installs/self/key`.
async fn post_install_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    Action::RegisterInstallKey.call_with_body(&state, &headers, body).await
}

/// `POST /v1/installs/self/remote`.
async fn post_install_remote(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    Action::RemoteInstall.call_with_body(&state, &headers, body).await
}

/// `POST /v1/installs/self/forget`.
async fn post_install_forget(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    Action::ForgetInstall.call_with_body(&state, &headers, body).await
}

/// A JSON 404 for unknown routes, in the same error shape as everything else.
async fn no_route() -> Response {
    AppError::not_found("no such route; GET /openapi.json lists every route").into_response()
}

/// `GET /healthz`: the process is up.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: storage answers.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    state.store.ping().await?;
    Ok(Json(json!({"status": "ready", "backend": state.store.backend()})))
}

/// `GET /metrics`: behind `metrics_token` when one is set; without one, open only when
/// the collector listens on loopback ([`crate::config::ServerConfig::metrics_access`]).
/// OpenMetrics when the scraper accepts it, the Prometheus text format otherwise.
async fn get_metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    match state.config.metrics_access() {
        MetricsAccess::Token(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(crate::auth::bearer_token);
            if !presented.is_some_and(|presented| crate::auth::same_secret(presented, token)) {
                return Err(AppError::unauthorized(
                    "/metrics needs Authorization: Bearer <metrics_token>",
                ));
            }
        }
        MetricsAccess::Loopback => {}
        MetricsAccess::Closed => {
            return Err(AppError::forbidden(
                "/metrics is closed: the collector listens beyond loopback and no metrics_token is set; \
                 set metrics_token (see docs/SECURITY.md)",
            ));
        }
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let text = crate::metrics::render(&state, (state.clock)(), openmetrics).await?;
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}
