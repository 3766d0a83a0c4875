//! The collector's settings: defaults, a TOML file (`--config`), then flags.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use tally_core::limits;

use crate::storage::GROUP_INSTALLS_CAP;

/// Every setting of `tally serve`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// A SQLite file path, or a `postgres://` URL.
    pub db: String,
    /// Largest request body after decompression, in bytes.
    pub max_body_bytes: usize,
    /// Most events in one batch.
    pub max_batch_events: usize,
    /// Largest event, as JSON, in bytes.
    pub max_event_bytes: usize,
    /// Deepest JSON nesting.
    pub max_json_depth: usize,
    /// Requests per second each key may make, on average.
    pub rate_limit_per_second: f64,
    /// Requests a key may make at once before the average applies.
    pub rate_limit_burst: u32,
    /// Days raw events are kept; rollups and totals are kept longer.
    pub retention_days: u32,
    /// When set, `/metrics` needs `Authorization: Bearer <token>`. Without it, `/metrics`
    /// answers only when `listen` is a loopback address (see [`ServerConfig::metrics_access`]).
    pub metrics_token: Option<String>,
    /// Most clients on `/v1/stream` at once.
    pub max_stream_subscribers: usize,
    /// Most clients on `/v1/stream` at once for any one app.
    pub max_stream_subscribers_per_app: usize,
    /// Event names per app shown as their own `/metrics` label; the rest are `other`.
    pub metrics_top_names: usize,
    /// Most events one group commit writes.
    pub group_commit_max_events: usize,
    /// Web origins (`https://app.example`, or `*`) whose pages may post events to the
    /// ingest routes; none by default. See [`crate::cors`].
    pub cors_allowed_origins: Vec<String>,
    /// Aggregates name a command, feature or event only once it has been seen from at
    /// least this many distinct installs; smaller groups are counted as `other`. 0 turns
    /// suppression off.
    pub min_installs: u64,
    /// Mark the dashboard's session cookie `Secure` even without `X-Forwarded-Proto: https`.
    pub dashboard_secure_cookie: bool,
    /// Most connections open at once; more wait until one closes.
    pub max_connections: usize,
    /// Seconds a client has to send a whole request head, counted from when the
    /// connection is ready for one (so a kept-alive connection idle this long closes).
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a whole request body.
    pub body_timeout_secs: u64,
    /// Seconds a connection may go without a byte in either direction.
    pub idle_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            db: "tally-collector.db".to_owned(),
            max_body_bytes: limits::MAX_BODY_BYTES,
            max_batch_events: limits::MAX_BATCH_EVENTS,
            max_event_bytes: limits::MAX_EVENT_BYTES,
            max_json_depth: limits::MAX_JSON_DEPTH,
            rate_limit_per_second: 50.0,
            rate_limit_burst: 200,
            retention_days: 90,
            metrics_token: None,
            max_stream_subscribers: 32,
            max_stream_subscribers_per_app: 8,
            metrics_top_names: 20,
            group_commit_max_events: 10_000,
            cors_allowed_origins: Vec::new(),
            min_installs: 5,
            dashboard_secure_cookie: false,
            max_connections: 1_024,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
        }
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAccess<'a> {
    /// Whoever presents this token as a bearer token.
    Token(&'a str),
    /// Anyone who can connect: the collector listens on loopback only.
    Loopback,
    /// Nobody: the collector listens beyond loopback and has no token. `/metrics` lists
    /// every app's names, installs and counts, so it is never public by accident.
    Closed,
}

impl ServerConfig {
    /// Who may read `/metrics` under these settings.
    pub fn metrics_access(&self) -> MetricsAccess<'_> {
        match &self.metrics_token {
            Some(token) => MetricsAccess::Token(token),
            None if self.listen.ip().is_loopback() => MetricsAccess::Loopback,
            None => MetricsAccess::Closed,
        }
    }

    /// What to say at startup about `/metrics`, when it is not behind a token.
    pub fn metrics_warning(&self) -> Option<String> {
        match self.metrics_access() {
            MetricsAccess::Token(_) => None,
            MetricsAccess::Loopback => Some(format!(
                "warning: /metrics is open to anyone who can connect to {} (no metrics_token set); \
                 it lists every app's event names, installs and counts",
                self.listen
            )),
            MetricsAccess::Closed => Some(format!(
                "note: /metrics is closed (listening on {} with no metrics_token); set metrics_token to scrape it",
                self.listen
            )),
        }
    }

    /// Reads a TOML file; keys not in it keep their defaults. Errors name the key.
    pub fn load(path: &Path) -> Result<ServerConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
        let config: ServerConfig =
            toml::from_str(&text).map_err(|err| format!("{}: {}", path.display(), err.message()))?;
        config.check().map_err(|err| format!("{}: {err}", path.display()))?;
        Ok(config)
    }

    /// Checks that every value is usable.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_batch_events", self.max_batch_events),
            ("max_event_bytes", self.max_event_bytes),
            ("max_json_depth", self.max_json_depth),
            ("max_stream_subscribers", self.max_stream_subscribers),
            ("max_stream_subscribers_per_app", self.max_stream_subscribers_per_app),
            ("group_commit_max_events", self.group_commit_max_events),
            ("rate_limit_burst", self.rate_limit_burst as usize),
            ("retention_days", self.retention_days as usize),
            ("max_connections", self.max_connections),
            ("header_timeout_secs", self.header_timeout_secs as usize),
            ("body_timeout_secs", self.body_timeout_secs as usize),
            ("idle_timeout_secs", self.idle_timeout_secs as usize),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name}: must be at least 1"));
            }
        }
        if self.min_installs > GROUP_INSTALLS_CAP {
            return Err(format!(
                "min_installs: must be at most {GROUP_INSTALLS_CAP} (got {})",
                self.min_installs
            ));
        }
        if self
            .metrics_token
            .as_deref()
            .is_some_and(|token| token.trim().len() < 16)
        {
            return Err("metrics_token: must be at least 16 characters".into());
        }
        if !(self.rate_limit_per_second.is_finite() && self.rate_limit_per_second > 0.0) {
            return Err("rate_limit_per_second: must be a positive number".into());
        }
        for origin in &self.cors_allowed_origins {
            crate::cors::check_origin(origin).map_err(|rule| format!("cors_allowed_origins: {rule}"))?;
        }
        Ok(())
    }
}
