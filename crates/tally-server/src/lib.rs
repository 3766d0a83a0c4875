//! The collector: `tally serve` receives opted-in telemetry over HTTP, commits it to
//! embedded SQLite or PostgreSQL, and serves aggregates, Prometheus metrics and a live
//! stream to the app's owner.
//!
//! [`app`] builds the axum router from an [`AppState`]; [`serve`] binds it, runs the
//! group-commit task and retention, and drains on SIGTERM. Handlers hold storage as an
//! `Arc<dyn Store>`, so the same routes run on either backend.
//!
//! The key design decision: a 2xx means committed. Every accepted event passes through
//! one group-commit task ([`committer`]) and a handler answers only after the
//! transaction holding its events commits, so a client that got a 2xx never needs to
//! send again, and a client that did not may retry safely: events are deduped by id.
//!
//! # Layout
//! - [`config`]: settings. [`error`]: the one error type and its JSON shape.
//! - [`auth`]: keys, their check, rate limits. [`body`]: bounded, gzip-aware bodies.
//! - [`actions`]: the registry shared by `POST /v1/actions` and the REST routes.
//! - [`ingest`], [`stats`], [`read`], [`stream`], [`metrics`], [`openapi`]: the routes.
//! - [`committer`]: group commit. [`storage`]: the `Store` trait, SQLite and PostgreSQL.
//! - [`files`]: loading batch files written by `sync --to-dir` (`tally ingest`).

pub mod actions;
pub mod auth;
pub mod body;
pub mod committer;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod files;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod read;
pub mod stats;
pub mod storage;
pub mod stream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use jiff::{Timestamp, ToSpan};
use tally_core::Event;
use tokio::sync::{Semaphore, broadcast};

use crate::auth::{KeyCache, RateLimiter};
use crate::committer::Committer;
use crate::config::ServerConfig;
use crate::error::InternalDetail;
use crate::metrics::CollectorMetrics;
use crate::storage::Store;

/// Events buffered per live-stream subscriber before it lags.
const STREAM_BUFFER: usize = 4_096;
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60 * 60);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// The group-commit task.
    pub committer: Committer,
    /// Key lookups.
    pub keys: Arc<KeyCache>,
    /// Per-key rate limits.
    pub limiter: Arc<RateLimiter>,
    /// Newly committed events, for `/v1/stream`.
    pub stream: broadcast::Sender<Arc<Event>>,
    /// Free stream subscriber slots.
    pub stream_slots: Arc<Semaphore>,
    /// The collector's own counters.
    pub metrics: Arc<CollectorMetrics>,
    /// The time; tests replace it.
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
}

impl AppState {
    /// State for `store` and `config`, with the group-commit task started; the task ends
    /// once every clone of the state is dropped.
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> (AppState, tokio::task::JoinHandle<()>) {
        let metrics = Arc::new(CollectorMetrics::default());
        let (stream, _) = broadcast::channel(STREAM_BUFFER);
        let (committer, task) = Committer::start(
            Arc::clone(&store),
            config.group_commit_max_events,
            stream.clone(),
            Arc::clone(&metrics),
        );
        let state = AppState {
            store,
            committer,
            keys: Arc::new(KeyCache::default()),
            limiter: Arc::new(RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst)),
            stream,
            stream_slots: Arc::new(Semaphore::new(config.max_stream_subscribers)),
            metrics,
            clock: Arc::new(tally_core::time::now_millis),
            config: Arc::new(config),
        };
        (state, task)
    }
}

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(ingest::post_event).get(read::get_events))
        .route("/v1/events/batch", post(ingest::post_batch))
        .route("/v1/actions", post(ingest::post_action).get(ingest::list_actions))
        .route("/v1/stats", get(read::get_stats))
        .route("/v1/stream", get(stream::stream))
        .route("/v1/installs/{id}", delete(read::delete_install))
        .route("/metrics", get(metrics::handler))
        .route("/healthz", get(read::healthz))
        .route("/readyz", get(read::readyz))
        .route("/openapi.json", get(openapi::handler))
        .merge(dashboard::routes())
        .fallback(read::no_route)
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

/// Why the collector could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the collector until SIGTERM or Ctrl-C, then stops accepting, answers the
/// requests in flight (each after its commit) and returns.
pub async fn serve(store: Arc<dyn Store>, config: ServerConfig) -> Result<(), ServeError> {
    let address = config.listen;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })?;
    let local = listener.local_addr()?;
    let retention_days = config.retention_days;
    let (state, committer) = AppState::new(Arc::clone(&store), config);
    let retention = tokio::spawn(run_retention(Arc::clone(&store), retention_days));
    // Tests and scripts read this line to find the port when listening on port 0.
    eprintln!("tally serve: listening on http://{local} ({} storage)", store.backend());
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    retention.abort();
    // The router and its state are gone; the committer finishes what was queued.
    let _ = committer.await;
    eprintln!("tally serve: stopped");
    Ok(())
}

async fn run_retention(store: Arc<dyn Store>, days: u32) {
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    loop {
        tick.tick().await;
        let cutoff = Timestamp::now()
            .checked_sub((i64::from(days) * 24).hours())
            .unwrap_or(Timestamp::MIN);
        match store.expire(cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, days, "expired raw events past retention"),
            Err(err) => tracing::warn!(%err, "retention failed; will retry"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
