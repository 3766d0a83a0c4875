//! The beacon form of the ingest routes, for pages that are closing.
//!
//! `navigator.sendBeacon` cannot set headers and, across origins, may only send a
//! CORS-safelisted content type. So `POST /v1/events` and `POST /v1/events/batch` also
//! accept the key as `?key=tly_ingest_...` with a `text/plain` (or `application/json`)
//! body holding the same JSON. This layer turns that form into the ordinary one
//! (`Authorization: Bearer`, `application/json`) before the handler runs, so the key is
//! still checked before the body is read and every limit applies unchanged.
//!
//! Only ingest keys are taken in this form: a key in a URL can end up in logs and
//! browser history, and an ingest key in a web page is public anyway, while an admin
//! key must never travel like that. The query key is ignored on every other route.

use axum::extract::Request;
use axum::http::{HeaderValue, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::cors::is_ingest;
use crate::error::AppError;

/// The query parameter holding the key.
pub const KEY_PARAMETER: &str = "key";
/// How every ingest key starts.
const INGEST_KEY_PREFIX: &str = "tly_ingest_";

/// The middleware.
pub async fn layer(request: Request, next: Next) -> Response {
    if !is_ingest(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let Some(key) = query_key(request.uri()) else {
        return next.run(request).await;
    };
    match to_ordinary_form(request, &key) {
        Ok(request) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

/// The value of `key=` in the query, if there is one.
fn query_key(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(KEY_PARAMETER)?.strip_prefix('='))
        .map(str::to_owned)
}

fn to_ordinary_form(mut request: Request, key: &str) -> Result<Request, AppError> {
    if request.headers().contains_key(header::AUTHORIZATION) {
        return Err(AppError::bad_request(
            "invalid_parameter",
            "key: send the key in Authorization or in the query, not both",
        ));
    }
    if !key.starts_with(INGEST_KEY_PREFIX) {
        return Err(AppError::forbidden(
            "key: the query form takes ingest keys only; send other keys in Authorization: Bearer",
        ));
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !(essence.eq_ignore_ascii_case("text/plain") || essence.eq_ignore_ascii_case("application/json")) {
        return Err(AppError::unsupported_media_type(format!(
            "with the key in the query, Content-Type must be text/plain or application/json (got {content_type:?})"
        )));
    }
    let bearer =
        HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| AppError::unauthorized("malformed key"))?;
    let headers = request.headers_mut();
    headers.insert(header::AUTHORIZATION, bearer);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The key leaves the URI, so nothing downstream can log it.
    let path = request.uri().path().to_owned();
    *request.uri_mut() = Uri::try_from(path).map_err(|_| AppError::bad_request("invalid_parameter", "bad path"))?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_found_among_other_parameters() {
        let uri: Uri = "/v1/events/batch?x=1&key=tly_ingest_a_b".parse().unwrap();
        assert_eq!(query_key(&uri).as_deref(), Some("tly_ingest_a_b"));
        let uri: Uri = "/v1/events/batch?keys=1".parse().unwrap();
        assert_eq!(query_key(&uri), None);
        let uri: Uri = "/v1/events/batch".parse().unwrap();
        assert_eq!(query_key(&uri), None);
    }
}
