//! CORS for browsers, on the ingest routes only.
//!
//! A web page on another origin may post events when its origin is listed in
//! `cors_allowed_origins` (empty by default, so no browser may). Only `POST
//! /v1/events` and `POST /v1/events/batch` ever carry CORS headers: the admin routes
//! (reads, erasure, the stream, `/metrics`) never do, so a page can never read or erase
//! data even with an admin key in hand. No answer ever allows credentials: keys travel
//! in `Authorization` or in the beacon form's query (see [`crate::beacon`]), never in
//! cookies, so `*` is safe where it is configured.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// How long a browser may cache a preflight answer: Chromium's own cap.
pub const PREFLIGHT_MAX_AGE_SECONDS: u32 = 7_200;
/// The request headers a page may send to an ingest route.
pub const ALLOWED_HEADERS: &str = "authorization, content-type, content-encoding";
/// The response headers a page may read: the SDK waits as `Retry-After` says.
const EXPOSED_HEADERS: &str = "retry-after";

/// Whether `method path` is an ingest route, the only routes with CORS.
pub fn is_ingest(method: &Method, path: &str) -> bool {
    *method == Method::POST && matches!(path, "/v1/events" | "/v1/events/batch")
}

/// Whether `origin` (as a browser sends it) may post events, by the configured list.
fn allowed<'a>(origins: &[String], origin: &'a HeaderValue) -> Option<&'a HeaderValue> {
    let text = origin.to_str().ok()?;
    origins
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(text))
        .then_some(origin)
}

/// The middleware: answers preflights of ingest routes and adds the CORS headers to
/// their answers when the origin is allowed; everything else passes untouched.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origins = &state.config.cors_allowed_origins;
    let path = request.uri().path();
    if request.method() == Method::OPTIONS {
        let requested = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|value| Method::from_bytes(value.as_bytes()).ok());
        if let (Some(method), Some(origin)) = (requested, request.headers().get(header::ORIGIN))
            && is_ingest(&method, path)
            && let Some(origin) = allowed(origins, origin)
        {
            return preflight(origin.clone());
        }
        return next.run(request).await;
    }
    if !is_ingest(request.method(), path) || origins.is_empty() {
        return next.run(request).await;
    }
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|origin| allowed(origins, origin))
        .cloned();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // The answer depends on Origin whether or not it was allowed, so caches must key on it.
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    response
}

/// 204 with what a page may send and how long it may remember that.
fn preflight(origin: HeaderValue) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers: &mut HeaderMap = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(PREFLIGHT_MAX_AGE_SECONDS),
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static("origin, access-control-request-method, access-control-request-headers"),
    );
    response
}

/// Checks one configured origin: `*`, or `scheme://host[:port]` exactly as a browser
/// sends it in `Origin` (no path, no trailing slash).
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{origin:?} must start with http:// or https://, or be \"*\""))?;
    let host_ok = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if host_ok {
        Ok(())
    } else {
        Err(format!(
            "{origin:?} must be scheme://host[:port] as browsers send it in Origin: no path, no trailing slash"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_as_browsers_send_them() {
        for good in ["*", "https://app.example", "http://127.0.0.1:8000", "http://[::1]:3000"] {
            assert_eq!(check_origin(good), Ok(()), "{good}");
        }
        for bad in [
            "app.example",
            "https://app.example/",
            "https://a.example/path",
            "https://",
            "null",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_posts_to_the_ingest_routes_are_ingest() {
        assert!(is_ingest(&Method::POST, "/v1/events"));
        assert!(is_ingest(&Method::POST, "/v1/events/batch"));
        assert!(!is_ingest(&Method::GET, "/v1/events"));
        assert!(!is_ingest(&Method::POST, "/v1/actions"));
        assert!(!is_ingest(&Method::DELETE, "/v1/installs/x"));
    }
}
