//! The same dashboard for one user's own store (`tally view`): read-only, no sign-in, on
//! loopback only.
//!
//! Two checks guard it, because any web page the user visits can make their browser
//! send requests to 127.0.0.1:
//! - the `Host` header must be a loopback name (`127.0.0.1`, `localhost`, `[::1]`, with
//!   the port), which a page on another domain cannot forge, even after re-binding its
//!   DNS name to 127.0.0.1;
//! - a random token: the URL `tally view` prints carries `?token=...`, which the page
//!   trades for an HttpOnly, SameSite=Strict cookie (and a redirect that drops the token
//!   from the address bar); every other request needs that cookie or the token.
//!
//! Only `GET` and `HEAD` are served; nothing is written and no stream is offered.
//! [`serve`] runs it for a store file until Ctrl-C; `tally view` and host apps
//! (`nexus telemetry view`) call it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use super::{index, script, secured, style};
use crate::config::ServerConfig;
use crate::error::AppError;
use crate::storage::{
    ApiKey, CountsSummary, Erasure, EventQuery, GroupInstalls, InstallSummary, KeyRegistration, Role, SessionSummary,
    Storage, StorageError, TotalRow,
};
use crate::{AppState, ServeError};
use jiff::Timestamp;
use jiff::civil::Date;
use tally_core::Event;
use tally_core::counts::DayCounts;
use tally_core::time::{HourKey, Period};
use tally_store::rollup::{Rollup, RollupKey};

/// The cookie holding the view's token.
const COOKIE: &str = "tally_view";

/// What one `tally view` serves.
#[derive(Clone)]
struct View {
    app: String,
    token: String,
}

/// The read-only router for `app`'s local store, guarded by `token`.
pub fn app(state: AppState, app: &str, token: &str) -> Router {
    let view = View {
        app: app.to_owned(),
        token: token.to_owned(),
    };
    Router::new()
        .route("/", get(index))
        .route("/dashboard/app.js", get(script))
        .route("/dashboard/app.css", get(style))
        .route("/dashboard/api/session", get(session))
        .route("/dashboard/api/stats", get(stats))
        .layer(middleware::from_fn_with_state(view.clone(), guard))
        .layer(Extension(view))
        .with_state(state)
}

/// Whether `host` (a `Host` header) names this machine's loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name == "::1"
        || name.eq_ignore_ascii_case("localhost")
        || name.starts_with("127.") && name.parse::<std::net::Ipv4Addr>().is_ok()
}

fn query_token(uri: &axum::http::Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(str::to_owned)
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_owned))
}

/// Equal in time independent of where the inputs differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(status: StatusCode, message: &str) -> Response {
    secured(
        (status, message.to_owned()).into_response(),
        "text/plain; charset=utf-8",
        "no-store",
    )
}

async fn guard(State(view): State<View>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    if !host.is_some_and(is_loopback_host) {
        return refuse(
            StatusCode::FORBIDDEN,
            "tally view answers only requests addressed to 127.0.0.1 or localhost",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "tally view is read-only");
    }
    let from_query = query_token(request.uri()).filter(|token| same_secret(token, &view.token));
    if from_query.is_some() && request.uri().path() == "/" {
        // Trade the token for a cookie, and take it out of the address bar and history.
        let mut response = StatusCode::SEE_OTHER.into_response();
        let headers = response.headers_mut();
        headers.insert(header::LOCATION, HeaderValue::from_static("/"));
        if let Ok(cookie) =
            HeaderValue::from_str(&format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", view.token))
        {
            headers.insert(header::SET_COOKIE, cookie);
        }
        return response;
    }
    let from_cookie = cookie_token(request.headers()).filter(|token| same_secret(token, &view.token));
    if from_query.is_none() && from_cookie.is_none() {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this page needs the address `tally view` printed, with its token",
        );
    }
    next.run(request).await
}

async fn session(Extension(view): Extension<View>) -> Response {
    let body = json!({ "apps": [view.app], "read_only": true });
    secured(Json(body).into_response(), "application/json", "no-store")
}

async fn stats(
    State(state): State<AppState>,
    Extension(view): Extension<View>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Response, AppError> {
    let key = ApiKey {
        id: String::new(),
        app: view.app.clone(),
        role: Role::Admin,
        secret_hash: [0; 32],
        label: "tally view".to_owned(),
        created_at: jiff::Timestamp::UNIX_EPOCH,
        revoked_at: None,
    };
    let payload = Value::Object(query.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
    let (status, body) = crate::actions::stats::get(&state, &key, payload).await?;
    Ok(secured(
        (status, Json(body)).into_response(),
        "application/json",
        "no-store",
    ))
}

/// Serves `app`'s store file at `path` on 127.0.0.1:`port` (0: a free one) until Ctrl-C;
/// `ready` gets the address to open, token included, once the server listens.
pub async fn serve(path: &Path, app_name: &str, port: u16, ready: impl FnOnce(&str)) -> Result<(), ServeError> {
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(|err| ServeError::Io(std::io::Error::other(err.to_string())))?;
    let token = hex::encode(random);
    let opened = tally_store::Store::open_file(path, &tally_store::OpenOptions::default())
        .map_err(|err| ServeError::Io(std::io::Error::other(format!("{}: {err}", path.display()))))?;
    let store: Arc<dyn Storage> = Arc::new(LocalStore {
        store: Arc::new(Mutex::new(opened)),
        path: path.to_owned(),
    });
    // One user's own store holds one install: small-count suppression (which protects
    // installs from each other on a collector) would only hide their own names.
    let config = ServerConfig {
        min_installs: 0,
        ..ServerConfig::default()
    };
    let (state, _committer) = AppState::new(store, config);
    let router = app(state, app_name, &token);
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })?;
    ready(&format!("http://{}/?token={token}", listener.local_addr()?));
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Starts the platform's opener for `url`; a failure is returned for the caller to
/// mention, since the address is printed anyway.
pub fn open_in_browser(url: &str) -> std::io::Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(drop)
}

/// The user's store seen through the collector's storage interface. It is a
/// `tally-store` store without the collector's own tables (installs, totals, keys), and
/// none are made in it: active installs are counted from its sessions (its one install,
/// or several after a restore), lifetime totals from its rollups, and every write is
/// refused.
struct LocalStore {
    store: Arc<Mutex<tally_store::Store>>,
    path: PathBuf,
}

/// Every write `tally view` refuses.
fn read_only() -> StorageError {
    StorageError::Internal("tally view is read-only".to_owned())
}

impl LocalStore {
    /// Runs `work` with the store on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&tally_store::Store) -> Result<T, tally_store::StoreError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(work(&store)?)
        })
        .await
        .map_err(|err| StorageError::Internal(err.to_string()))?
    }
}

#[async_trait::async_trait]
impl Storage for LocalStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn insert(&self, _events: Vec<Event>) -> Result<Vec<bool>, StorageError> {
        Err(read_only())
    }

    async fn insert_counts(&self, _counts: &DayCounts) -> Result<bool, StorageError> {
        Err(read_only())
    }

    async fn counts_summary(&self, _app: &str, _from: Date, _to: Date) -> Result<CountsSummary, StorageError> {
        // A local store receives no counts-only uploads.
        Ok(CountsSummary::default())
    }

    async fn rollups(&self, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StorageError> {
        let (app, period) = (app.to_owned(), *period);
        self.read(move |store| store.rollups(Some(&app), &period)).await
    }

    async fn daily_rollups(&self, app: &str, period: &Period) -> Result<Vec<(RollupKey, Rollup)>, StorageError> {
        let (app, period) = (app.to_owned(), *period);
        self.read(move |store| store.daily_rollups(&app, &period)).await
    }

    async fn active_installs_in(&self, app: &str, windows: &[Period]) -> Result<Vec<u64>, StorageError> {
        // A local store keeps no install activity table: its sessions say when its
        // install (or installs, after a restore) was active.
        let (app, windows) = (app.to_owned(), windows.to_vec());
        self.read(move |store| store.installs_with_sessions(&app, &windows))
            .await
    }

    async fn sessions(&self, app: &str, period: &Period) -> Result<SessionSummary, StorageError> {
        let (app, period) = (app.to_owned(), *period);
        self.read(move |store| store.session_summary(Some(&app), &period)).await
    }

    async fn active_installs(&self, since: &[Timestamp]) -> Result<Vec<(String, Vec<u64>)>, StorageError> {
        let path = self.path.clone();
        let since: Vec<String> = since.iter().map(|ts| tally_core::time::format(*ts)).collect();
        tokio::task::spawn_blocking(move || {
            let failed = |err: rusqlite::Error| StorageError::Internal(err.to_string());
            let db = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(failed)?;
            let mut apps: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            let mut statement = db
                .prepare("SELECT app, count(DISTINCT install_id) FROM sessions WHERE ended_at >= ?1 GROUP BY app")
                .map_err(failed)?;
            for (index, start) in since.iter().enumerate() {
                let rows = statement
                    .query_map([start], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
                    })
                    .map_err(failed)?;
                for row in rows {
                    let (app, count) = row.map_err(failed)?;
                    apps.entry(app).or_insert_with(|| vec![0; since.len()])[index] = count;
                }
            }
            Ok(apps.into_iter().collect())
        })
        .await
        .map_err(|err| StorageError::Internal(err.to_string()))?
    }

    async fn named_counts(&self, name: &str, from_hours: &[HourKey]) -> Result<Vec<(String, Vec<u64>)>, StorageError> {
        let (name, from_hours) = (name.to_owned(), from_hours.to_vec());
        self.read(move |store| store.named_counts(&name, &from_hours)).await
    }

    async fn totals(&self) -> Result<Vec<TotalRow>, StorageError> {
        let rollups = self.read(|store| store.rollups(None, &Period::ALL)).await?;
        let mut totals: BTreeMap<(String, String, String, i64), u64> = BTreeMap::new();
        for (key, rollup) in rollups {
            *totals.entry((key.app, key.kind, key.name, key.success)).or_default() += rollup.count;
        }
        Ok(totals
            .into_iter()
            .map(|((app, kind, name, success), count)| TotalRow {
                app,
                kind,
                name,
                success,
                count,
            })
            .collect())
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StorageError> {
        let query = query.clone();
        self.read(move |store| store.query_events(&query)).await
    }

    async fn group_installs(&self, _app: Option<&str>) -> Result<Vec<GroupInstalls>, StorageError> {
        // Suppression is off for the local view (see `serve`), so this is never needed.
        Ok(Vec::new())
    }

    async fn erase_install(&self, _app: &str, _install_id: &str) -> Result<Erasure, StorageError> {
        Err(read_only())
    }

    async fn register_install_key(
        &self,
        _app: &str,
        _install_id: &str,
        _key_hash: [u8; 32],
    ) -> Result<KeyRegistration, StorageError> {
        Err(read_only())
    }

    async fn install_key(&self, _app: &str, _install_id: &str) -> Result<Option<[u8; 32]>, StorageError> {
        Ok(None)
    }

    async fn spend_nonce(
        &self,
        _app: &str,
        _install_id: &str,
        _nonce: &str,
        _expires: Timestamp,
        _now: Timestamp,
    ) -> Result<bool, StorageError> {
        Err(read_only())
    }

    async fn install_summary(&self, _app: &str, _install_id: &str) -> Result<InstallSummary, StorageError> {
        Err(read_only())
    }

    async fn expire(&self, _before: Timestamp) -> Result<u64, StorageError> {
        Err(read_only())
    }

    async fn put_key(&self, _key: &ApiKey) -> Result<(), StorageError> {
        Err(read_only())
    }

    async fn key(&self, _id: &str) -> Result<Option<ApiKey>, StorageError> {
        Ok(None)
    }

    async fn keys(&self) -> Result<Vec<ApiKey>, StorageError> {
        Ok(Vec::new())
    }

    async fn revoke_key(&self, _id: &str, _at: Timestamp) -> Result<bool, StorageError> {
        Err(read_only())
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.read(|store| store.data_version().map(drop)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_pass() {
        for host in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:9000",
            "127.0.0.1",
            "127.1.2.3:80",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.test:8080",
            "127.0.0.1.evil.test",
            "localhost.evil.test:80",
            "0.0.0.0:80",
            "[::2]:1",
            "",
            "10.0.0.1:80",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
