//! The collector: `tally serve` receives opted-in telemetry over HTTP, commits it to
//! embedded SQLite or PostgreSQL, and serves aggregates, Prometheus metrics and a live
//! stream to the app's owner.
//!
//! [`app`] builds the axum router from an [`AppState`]; [`serve`] binds it, runs the
//! group-commit task and retention, and drains on SIGTERM. Handlers hold storage as an
//! `Arc<dyn Storage>`, so the same routes run on either backend.
//!
//! The key design decision: a 2xx means committed. Every accepted event passes through
//! one group-commit task ([`committer`]) and a handler answers only after the
//! transaction holding its events commits, so a client that got a 2xx never needs to
//! send again, and a client that did not may retry safely: events are deduped by id.
//!
//! # Layout
//! - [`config`]: settings. [`error`]: the one error type and its JSON shape.
//! - [`auth`]: keys, their check, rate limits. [`body`]: bounded, gzip-aware bodies.
//! - [`routes`]: the router and the HTTP adapters: the action registry and its dispatch
//!   (`routes::actions`), the key check (`routes::access`), `/v1/stream`, `/metrics`,
//!   `/openapi.json`, health. The one place that knows HTTP.
//! - [`actions`]: what each action does (ingest, stats, events paging, install erasure),
//!   as functions of the state, a checked key and a payload; they know no route.
//! - [`metrics`]: the collector's own counters and the `/metrics` exposition.
//! - [`committer`]: group commit. [`storage`]: the `Storage` trait, SQLite and PostgreSQL.
//! - [`otlp`]: `POST /v1/logs`, OpenTelemetry logs mapped to events.
//! - [`cors`]: CORS on the ingest routes; [`beacon`]: their `sendBeacon` form.
//! - [`suppression`]: which groups aggregates may name (`min_installs`).
//! - [`listener`]: accepting connections, with a connection cap and header and idle
//!   timeouts.
//! - [`files`]: loading batch files written by `sync --to-dir` (`tally ingest`).

pub mod actions;
pub mod auth;
pub mod beacon;
pub mod body;
pub mod committer;
pub mod config;
pub mod cors;
pub mod dashboard;
pub mod error;
pub mod files;
pub mod listener;
pub mod metrics;
pub mod otlp;
pub mod routes;
pub mod storage;
pub mod suppression;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use jiff::{Timestamp, ToSpan};
use tally_core::Event;
use tokio::sync::broadcast;

use crate::auth::{KeyCache, RateLimiter};
use crate::committer::Committer;
use crate::config::ServerConfig;
use crate::metrics::CollectorMetrics;
use crate::storage::Storage;

/// Events buffered per live-stream subscriber before it lags.
const STREAM_BUFFER: usize = 4_096;
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60 * 60);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where events, rollups, installs and keys live: SQLite or PostgreSQL behind one
    /// trait, so handlers do not know which.
    pub store: Arc<dyn Storage>,
    /// The settings the collector started with; they do not change while it runs.
    pub config: Arc<ServerConfig>,
    /// Every accepted event goes through it; a handler answers after its events commit.
    pub committer: Committer,
    /// Recently looked-up keys, so that most requests do not query storage for theirs.
    pub keys: Arc<KeyCache>,
    /// A token bucket per key; a key past its burst is answered 429.
    pub limiter: Arc<RateLimiter>,
    /// Newly committed events, for `/v1/stream`.
    pub stream: broadcast::Sender<Arc<Event>>,
    /// Free stream subscriber places, in all and per app.
    pub stream_slots: Arc<routes::stream::StreamSlots>,
    /// The collector's own counters.
    pub metrics: Arc<CollectorMetrics>,
    /// The time; tests replace it.
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
}

impl AppState {
    /// State for `store` and `config`, with the group-commit task started; the task ends
    /// once every clone of the state is dropped.
    pub fn new(store: Arc<dyn Storage>, config: ServerConfig) -> (AppState, tokio::task::JoinHandle<()>) {
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
            stream_slots: Arc::new(routes::stream::StreamSlots::new(
                config.max_stream_subscribers,
                config.max_stream_subscribers_per_app,
            )),
            metrics,
            clock: Arc::new(tally_core::time::now_millis),
            config: Arc::new(config),
        };
        (state, task)
    }
}

/// The router: every route of [`routes`], over `state`.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}

/// Why the collector could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The `listen` address asked for.
        address: std::net::SocketAddr,
        /// Why the OS refused it (in use, no permission).
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the collector until SIGTERM or Ctrl-C, then stops accepting, answers the
/// requests in flight (each after its commit) and returns.
pub async fn serve(store: Arc<dyn Storage>, config: ServerConfig) -> Result<(), ServeError> {
    let address = config.listen;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })?;
    serve_on(listener, store, config, shutdown_signal()).await
}

/// [`serve`] on a bound `listener`, until `shutdown` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Storage>,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let local = listener.local_addr()?;
    let retention_days = config.retention_days;
    let limits = listener::Limits {
        max_connections: config.max_connections,
        header_timeout: Duration::from_secs(config.header_timeout_secs),
        idle_timeout: Duration::from_secs(config.idle_timeout_secs),
    };
    let metrics_warning = config.metrics_warning();
    let (state, committer) = AppState::new(Arc::clone(&store), config);
    let retention = tokio::spawn(run_retention(Arc::clone(&store), retention_days));
    // Tests and scripts read this line to find the port when listening on port 0.
    eprintln!("tally serve: listening on http://{local} ({} storage)", store.backend());
    if let Some(warning) = metrics_warning {
        eprintln!("tally serve: {warning}");
    }
    listener::run(listener, app(state), limits, shutdown).await;
    retention.abort();
    // The router and its state are gone; the committer finishes what was queued.
    let _ = committer.await;
    eprintln!("tally serve: stopped");
    Ok(())
}

async fn run_retention(store: Arc<dyn Storage>, days: u32) {
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
