//! The owner's web dashboard at `/`: one page, one script and one stylesheet embedded in
//! the binary, drawing its charts as SVG from the same JSON `GET /v1/stats` answers.
//!
//! Sign-in takes an admin key once and answers with a session cookie (HttpOnly,
//! SameSite=Strict, expiring, Secure behind TLS or when configured), so the key never
//! stays in the page. Every state-changing request must come from the page's own origin
//! (the `Origin` header, or `Sec-Fetch-Site: same-origin`), on top of SameSite=Strict.
//! Each data request names an app and is answered with the session's key for that app,
//! through the same code as the public routes: a key for app A never shows app B.
//!
//! Routes: `GET /` (the page), `GET /dashboard/app.js` and `/dashboard/app.css`, and under
//! `/dashboard/api/`: `session` (GET: who is signed in; POST: sign in, or add a key),
//! `signout` (POST), `stats` (the `/v1/stats` query) and `stream` (the `/v1/stream` SSE).
//! [`local`] serves the same page read-only for one user's own store (`tally view`).

pub mod local;
pub mod session;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::AppError;
use crate::routes::access::authorize;
use crate::storage::{ApiKey, Role};
use session::{COOKIE, SESSION_TTL, Sessions};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The page may load only its own script, style and data; nothing from elsewhere, no
/// inline code, no frames, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes, to merge into the collector's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/app.js", get(script))
        .route("/dashboard/app.css", get(style))
        .route("/dashboard/api/session", get(who).post(sign_in))
        .route("/dashboard/api/signout", post(sign_out))
        .route("/dashboard/api/stats", get(stats))
        .route("/dashboard/api/stream", get(stream))
        .layer(Extension(Arc::new(Sessions::default())))
}

/// Headers every dashboard answer carries.
fn secured(mut response: Response, content_type: &'static str, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, cache),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

async fn index() -> Response {
    secured(INDEX.into_response(), "text/html; charset=utf-8", "no-cache")
}

async fn script() -> Response {
    secured(SCRIPT.into_response(), "text/javascript; charset=utf-8", "no-cache")
}

async fn style() -> Response {
    secured(STYLE.into_response(), "text/css; charset=utf-8", "no-cache")
}

/// The session token in the request's cookie.
fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_owned))
        .filter(|token| token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Refuses a state-changing request that did not come from this page's origin.
fn same_origin(headers: &HeaderMap) -> Result<(), AppError> {
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok());
    let fetch_site = headers.get("sec-fetch-site").and_then(|value| value.to_str().ok());
    let matches = match (origin, host) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (None, Some(_)) => fetch_site == Some("same-origin"),
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "cross-origin request refused: the dashboard's forms only work from its own page (Origin must match Host)",
        ))
    }
}

/// Whether the cookie must be `Secure`: when configured, or when a TLS proxy says the
/// page was fetched over HTTPS.
fn secure_cookie(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.dashboard_secure_cookie
        || headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

fn cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tally_session=; Max-Age=0"))
}

/// The live admin keys of the request's session, in sign-in order.
async fn session_keys(state: &AppState, sessions: &Sessions, headers: &HeaderMap) -> Result<Vec<ApiKey>, AppError> {
    let not_signed_in = || AppError::unauthorized("not signed in, or the session expired: sign in with an admin key");
    let token = token(headers).ok_or_else(not_signed_in)?;
    let ids = sessions.key_ids(&token).ok_or_else(not_signed_in)?;
    let mut keys = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(key) = state.store.key(&id).await?
            && key.revoked_at.is_none()
            && key.role == Role::Admin
        {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(not_signed_in());
    }
    Ok(keys)
}

/// The session's key for `app`.
async fn key_for(
    state: &AppState,
    sessions: &Sessions,
    headers: &HeaderMap,
    app: Option<&str>,
) -> Result<ApiKey, AppError> {
    let keys = session_keys(state, sessions, headers).await?;
    let Some(app) = app else {
        return Ok(keys.into_iter().next().expect("session_keys returns at least one key"));
    };
    keys.into_iter()
        .find(|key| key.app == app)
        .ok_or_else(|| AppError::forbidden(format!("no key of this session reads app {app:?}")))
}

fn apps(keys: &[ApiKey]) -> Value {
    let mut apps: Vec<&str> = keys.iter().map(|key| key.app.as_str()).collect();
    apps.dedup();
    json!({ "apps": apps, "read_only": false })
}

async fn who(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let keys = session_keys(&state, &sessions, &headers).await?;
    Ok(secured(
        Json(apps(&keys)).into_response(),
        "application/json",
        "no-store",
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: String,
}

async fn sign_in(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Json(request): Json<SignIn>,
) -> Result<Response, AppError> {
    same_origin(&headers)?;
    let mut bearer = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {}", request.key.trim()))
        .map_err(|_| AppError::unauthorized("malformed key"))?;
    bearer.insert(header::AUTHORIZATION, value);
    // Ingest keys are refused here: they ship inside apps and must not read anything.
    let key = authorize(&state, &bearer, Role::Admin).await?;
    let existing = token(&headers).filter(|token| sessions.add_key(token, &key.id));
    let token = match existing {
        Some(token) => token,
        None => sessions.create(&key.id).map_err(AppError::internal)?,
    };
    let keys = session_keys(&state, &sessions, &{
        let mut with_cookie = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&format!("{COOKIE}={token}")) {
            with_cookie.insert(header::COOKIE, value);
        }
        with_cookie
    })
    .await?;
    let mut response = secured(Json(apps(&keys)).into_response(), "application/json", "no-store");
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&token, SESSION_TTL.as_secs(), secure_cookie(&state, &headers)),
    );
    Ok(response)
}

async fn sign_out(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    same_origin(&headers)?;
    if let Some(token) = token(&headers) {
        sessions.remove(&token);
    }
    let mut response = secured(StatusCode::NO_CONTENT.into_response(), "text/plain", "no-store");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0, secure_cookie(&state, &headers)));
    Ok(response)
}

async fn stats(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Response, AppError> {
    let key = key_for(&state, &sessions, &headers, query.get("app").map(String::as_str)).await?;
    let payload = Value::Object(query.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
    let (status, body) = crate::actions::stats::get(&state, &key, payload).await?;
    Ok(secured(
        (status, Json(body)).into_response(),
        "application/json",
        "no-store",
    ))
}

#[derive(Deserialize)]
struct StreamQuery {
    app: Option<String>,
}

async fn stream(
    State(state): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Response, AppError> {
    let key = key_for(&state, &sessions, &headers, query.app.as_deref()).await?;
    Ok(crate::routes::stream::subscribe(&state, key.app)?.into_response())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn the_page_is_at_most_50_kb_gzipped() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for asset in [INDEX, SCRIPT, STYLE] {
            encoder.write_all(asset.as_bytes()).unwrap();
        }
        let size = encoder.finish().unwrap().len();
        assert!(size <= 50 * 1024, "{size} bytes gzipped");
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for (name, asset) in [("index.html", INDEX), ("app.js", SCRIPT), ("app.css", STYLE)] {
            // The SVG namespace is a name, not an address anything is fetched from.
            let asset = asset.replace("\"http://www.w3.org/2000/svg\"", "");
            // No other origin, no inline code the policy would block, no HTML from strings.
            for forbidden in [
                "http://",
                "https://",
                "@import",
                "url(",
                "<script>",
                " style=\"",
                " onclick",
                "innerHTML",
                "eval(",
            ] {
                assert!(!asset.contains(forbidden), "{name} contains {forbidden:?}");
            }
        }
    }

    #[test]
    fn only_a_matching_origin_may_change_state() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(
            same_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ]))
            .is_ok()
        );
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.test")])).is_err());
        assert!(
            same_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin")
            ]))
            .is_ok()
        );
        assert!(
            same_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("sec-fetch-site", "cross-site")
            ]))
            .is_err()
        );
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])).is_err());
    }

    #[test]
    fn the_session_cookie_is_locked_down() {
        let cookie = cookie("ab", 60, true);
        let text = cookie.to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Strict", "Max-Age=60", "Secure", "Path=/"] {
            assert!(text.contains(part), "{text}");
        }
        let mut headers = HeaderMap::new();
        let token = "a".repeat(64);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={token}")).unwrap(),
        );
        assert_eq!(super::token(&headers), Some(token));
    }
}
