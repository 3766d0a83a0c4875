//! `POST /v1/logs`: OpenTelemetry logs over OTLP/HTTP, so an OTel SDK or Collector can
//! send to Tally.
//!
//! One route takes `application/x-protobuf` and `application/json` (optionally gzip)
//! and answers in the request's encoding, as the OTLP specification requires: 200 with
//! an `ExportLogsServiceResponse` (refused records counted in `partialSuccess`), or a
//! `google.rpc.Status` with 400 (undecodable), 401/403 (key), 413 (too large), 415
//! (another content type), 429 or 503 with `Retry-After`. The key is checked as on every
//! ingest route, before the body is read, and every mapped event goes through the group
//! committer, so a 200 means committed. [`mapping`] turns records into events.

pub mod mapping;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::ToSpan;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

use crate::AppState;
use crate::actions::ingest::MAX_CLOCK_SKEW_HOURS;
use crate::body::{check_depth, read_body};
use crate::error::AppError;
use crate::storage::Role;

/// The OTLP/HTTP binary encoding.
pub const PROTOBUF: &str = "application/x-protobuf";
/// The OTLP/HTTP JSON encoding.
pub const JSON: &str = "application/json";
/// Levels of JSON the OTLP envelope takes before an attribute's value (`resourceLogs`,
/// `scopeLogs`, `logRecords`, `attributes`, `value`), added to `max_json_depth`.
const ENVELOPE_DEPTH: usize = 10;
/// `Retry-After` when storage is unavailable: OTLP clients retry a 503 only with a hint
/// or their own backoff, and a few seconds lets a restarting database come back.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;
/// Refusals spelled out in `partialSuccess.errorMessage`; the rest are counted.
const REASONS_SHOWN: usize = 5;

/// How a request's body (and so its answer) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    /// The encoding named by `Content-Type`; anything else is a 415.
    pub fn of(headers: &HeaderMap) -> Result<Encoding, AppError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case(PROTOBUF) {
            Ok(Encoding::Protobuf)
        } else if essence.eq_ignore_ascii_case(JSON) {
            Ok(Encoding::Json)
        } else {
            Err(AppError::unsupported_media_type(format!(
                "Content-Type must be {PROTOBUF} or {JSON} (got {content_type:?})"
            )))
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

/// `google.rpc.Status` (google/rpc/status.proto: `int32 code = 1; string message = 2;`),
/// the body OTLP/HTTP prescribes for every 4xx and 5xx. Its `details` are never sent.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong, naming the field or limit.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `POST /v1/logs`.
pub async fn post_logs(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let encoding = match Encoding::of(&headers) {
        Ok(encoding) => encoding,
        Err(err) => return error_response(Encoding::Json, err),
    };
    match export(&state, &headers, body, encoding).await {
        Ok(answer) => {
            let bytes = match encoding {
                Encoding::Protobuf => answer.encode_to_vec(),
                Encoding::Json if answer.partial_success.is_none() => b"{}".to_vec(),
                Encoding::Json => serde_json::to_vec(&answer).unwrap_or_default(),
            };
            encoded(StatusCode::OK, encoding, bytes)
        }
        Err(err) => error_response(encoding, err),
    }
}

/// Authenticates, decodes, maps and commits; returns the answer for a 200.
async fn export(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<ExportLogsServiceResponse, AppError> {
    // The key is checked before the body is read, as on every ingest route.
    let key = state
        .keys
        .authenticate(state.store.as_ref(), headers, Role::Ingest)
        .await?;
    state.limiter.check(&key.id)?;
    let bytes = read_body(headers, body, &state.config).await?;
    let request = decode(encoding, &bytes, state.config.max_json_depth)?;
    let now = (state.clock)();
    let rules = mapping::Rules {
        app: &key.app,
        latest: now.checked_add(MAX_CLOCK_SKEW_HOURS.hours()).unwrap_or(now),
        max_event_bytes: state.config.max_event_bytes,
    };
    let mapped = mapping::map_request(&request, &rules);
    let stored = state.committer.commit(mapped.events).await?;
    let accepted = stored.iter().filter(|new| **new).count();
    let refused = mapped.refused.len();
    state
        .metrics
        .record_events(accepted as u64, (stored.len() - accepted) as u64, refused as u64);
    Ok(ExportLogsServiceResponse {
        partial_success: (refused > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: refused as i64,
            error_message: refusal_message(&mapped.refused),
        }),
    })
}

/// Decodes a request body; anything undecodable is a 400 naming the encoding.
pub fn decode(encoding: Encoding, bytes: &[u8], max_json_depth: usize) -> Result<ExportLogsServiceRequest, AppError> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(bytes).map_err(|err| {
            AppError::bad_request(
                "malformed_protobuf",
                format!("body is not an OTLP ExportLogsServiceRequest in protobuf: {err}"),
            )
        }),
        Encoding::Json => {
            check_depth(bytes, max_json_depth + ENVELOPE_DEPTH)?;
            serde_json::from_slice(bytes).map_err(|err| {
                AppError::bad_request(
                    "malformed_json",
                    format!("body is not an OTLP ExportLogsServiceRequest in JSON: {err}"),
                )
            })
        }
    }
}

fn refusal_message(refused: &[mapping::Refused]) -> String {
    let shown: Vec<String> = refused
        .iter()
        .take(REASONS_SHOWN)
        .map(|refusal| format!("{}: {}", refusal.location, refusal.reason))
        .collect();
    let mut message = format!(
        "{} log record(s) refused, not Tally events: {}",
        refused.len(),
        shown.join("; ")
    );
    if refused.len() > REASONS_SHOWN {
        message.push_str(&format!("; and {} more", refused.len() - REASONS_SHOWN));
    }
    message
}

fn encoded(status: StatusCode, encoding: Encoding, bytes: Vec<u8>) -> Response {
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
    response
}

/// `err` as a `google.rpc.Status` in `encoding`, keeping the status, `Retry-After`,
/// `WWW-Authenticate` and the internal detail the logging middleware reads.
fn error_response(encoding: Encoding, mut err: AppError) -> Response {
    if err.status == StatusCode::SERVICE_UNAVAILABLE && err.retry_after.is_none() {
        err.retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECS);
    }
    let status = Status {
        code: grpc_code(err.status),
        message: format!("{}: {}", err.code, err.message),
    };
    let bytes = match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&status).unwrap_or_default(),
    };
    let (mut parts, _) = err.into_response().into_parts();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

/// The `google.rpc.Code` closest to an HTTP status.
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 | 422 => 3, // INVALID_ARGUMENT
        401 => 16,                  // UNAUTHENTICATED
        403 => 7,                   // PERMISSION_DENIED
        404 => 5,                   // NOT_FOUND
        429 => 8,                   // RESOURCE_EXHAUSTED
        503 => 14,                  // UNAVAILABLE
        _ => 13,                    // INTERNAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_storage_is_a_503_with_a_retry_hint_in_the_requests_encoding() {
        let response = error_response(Encoding::Protobuf, AppError::unavailable("pool timed out"));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROTOBUF);
        let detail = response.extensions().get::<crate::error::InternalDetail>().unwrap();
        assert_eq!(detail.0, "pool timed out");
    }
}
