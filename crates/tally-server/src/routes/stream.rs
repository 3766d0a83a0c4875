//! `GET /v1/stream`: committed events of the key's app, live, as server-sent events.
//!
//! Subscribers read from a broadcast channel the committer publishes to. A subscriber
//! that falls behind loses the oldest events (it is told how many, with a `lagged`
//! event) instead of slowing ingest; the number of subscribers is bounded.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::AppState;
use crate::error::AppError;
use crate::metrics::CollectorMetrics;
use crate::routes::access::authorize;
use crate::storage::Role;

/// Holds a subscriber's slot while its stream lives.
struct Subscription {
    _permit: tokio::sync::OwnedSemaphorePermit,
    metrics: Arc<CollectorMetrics>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.metrics.stream_subscribers(-1);
    }
}

/// `GET /v1/stream` (role admin): the key's app's events as they commit.
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, AppError> {
    let key = authorize(&state, &headers, Role::Admin).await?;
    subscribe(&state, key.app)
}

/// The live stream of `app`'s committed events; the dashboard's stream shares it.
pub(crate) fn subscribe(
    state: &AppState,
    app: String,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>>, AppError> {
    let permit = Arc::clone(&state.stream_slots)
        .try_acquire_owned()
        .map_err(|_| AppError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "too_many_subscribers",
            message: format!(
                "the stream has its maximum of max_stream_subscribers = {} clients; retry later",
                state.config.max_stream_subscribers
            ),
            retry_after: Some(5),
            detail: None,
        })?;
    state.metrics.stream_subscribers(1);
    let subscription = Subscription {
        _permit: permit,
        metrics: Arc::clone(&state.metrics),
    };
    let events = BroadcastStream::new(state.stream.subscribe()).filter_map(move |item| {
        // The closure owns the subscription, so the slot is freed when the client goes.
        let _alive = &subscription;
        let message = match item {
            Ok(event) if event.app == app => Some(Ok(SseEvent::default()
                .event("event")
                .id(event.id.to_string())
                .data(event.to_json()))),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                Some(Ok(SseEvent::default().event("lagged").data(missed.to_string())))
            }
        };
        std::future::ready(message)
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
