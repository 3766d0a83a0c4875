//! `GET /v1/stream`: committed events of the key's app, live, as server-sent events.
//!
//! Subscribers read from a broadcast channel the committer publishes to. A subscriber
//! that falls behind loses the oldest events (it is told how many, with a `lagged`
//! event) instead of slowing ingest; the number of subscribers is bounded twice: in all
//! (`max_stream_subscribers`) and per app (`max_stream_subscribers_per_app`), so one
//! app's admin holding streams open cannot lock every other app out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

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

/// The stream's free places: in all, and per app.
pub struct StreamSlots {
    total: usize,
    per_app: usize,
    open: Mutex<(usize, HashMap<String, usize>)>,
}

impl StreamSlots {
    /// Room for `total` subscribers, at most `per_app` of them for any one app.
    pub fn new(total: usize, per_app: usize) -> StreamSlots {
        StreamSlots {
            total,
            per_app,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// A place for one more subscriber of `app`, or the 503 saying which cap is full.
    fn take(self: &Arc<Self>, app: &str) -> Result<Slot, AppError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let full = |message: String| AppError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "too_many_subscribers",
            message,
            retry_after: Some(5),
            detail: None,
        };
        if open.0 >= self.total {
            return Err(full(format!(
                "the stream has its maximum of max_stream_subscribers = {} clients; retry later",
                self.total
            )));
        }
        let of_app = open.1.entry(app.to_owned()).or_insert(0);
        if *of_app >= self.per_app {
            return Err(full(format!(
                "this app has its maximum of max_stream_subscribers_per_app = {} streams open; retry later",
                self.per_app
            )));
        }
        *of_app += 1;
        open.0 += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            app: app.to_owned(),
        })
    }

    fn give_back(&self, app: &str) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.0 = open.0.saturating_sub(1);
        if let Some(of_app) = open.1.get_mut(app) {
            *of_app -= 1;
            if *of_app == 0 {
                open.1.remove(app);
            }
        }
    }
}

/// One subscriber's place, given back when dropped.
struct Slot {
    slots: Arc<StreamSlots>,
    app: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.give_back(&self.app);
    }
}

/// Holds a subscriber's slot while its stream lives.
struct Subscription {
    _slot: Slot,
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
    let slot = state.stream_slots.take(&app)?;
    state.metrics.stream_subscribers(1);
    let subscription = Subscription {
        _slot: slot,
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
