//! Reading a request body safely: content type, gzip, size after decompression and
//! JSON depth are all checked before any JSON is parsed, so a hostile body costs at most
//! `max_body_bytes` of memory and never a deep recursion.

use std::io::Read;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::config::ServerConfig;
use crate::error::AppError;

/// The body's bytes, decompressed and checked; not yet parsed.
pub async fn read_json_body(headers: &HeaderMap, body: Body, config: &ServerConfig) -> Result<Vec<u8>, AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(AppError::unsupported_media_type(format!(
            "Content-Type must be application/json (got {:?})",
            content_type
        )));
    }
    let bytes = read_body(headers, body, config).await?;
    check_depth(&bytes, config.max_json_depth)?;
    Ok(bytes)
}

/// The body's bytes, gunzipped when `Content-Encoding: gzip`, at most `max_body_bytes`;
/// the caller has checked the content type.
pub async fn read_body(headers: &HeaderMap, body: Body, config: &ServerConfig) -> Result<Vec<u8>, AppError> {
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|value| value.to_str().unwrap_or("?"))
    {
        None | Some("identity") => false,
        Some(encoding) if encoding.eq_ignore_ascii_case("gzip") => true,
        Some(other) => {
            return Err(AppError::unsupported_media_type(format!(
                "Content-Encoding must be gzip or absent (got {other:?})"
            )));
        }
    };
    let limit = config.max_body_bytes;
    let raw = read_bounded(body, limit, Duration::from_secs(config.body_timeout_secs)).await?;
    if !gzip {
        return Ok(raw.to_vec());
    }
    // A body that inflates to little (a batch of events is a few KiB) is inflated right
    // here: handing it to the blocking pool and back costs more than inflating it. A
    // larger one starts again on the blocking pool, so that no async worker spends long
    // on one body.
    let inline_limit = limit.min(INLINE_INFLATE_BYTES);
    if let Some(bytes) = gunzip_within(&raw, inline_limit)? {
        return Ok(bytes);
    }
    if limit == inline_limit {
        return Err(too_large_inflated(limit));
    }
    tokio::task::spawn_blocking(move || gunzip_within(&raw, limit))
        .await
        .map_err(|err| AppError::internal(format!("decompression task failed: {err}")))??
        .ok_or_else(|| too_large_inflated(limit))
}

/// The most a gzip body may inflate to on an async worker (about a millisecond of work
/// at most); past it, inflating moves to the blocking pool.
const INLINE_INFLATE_BYTES: usize = 256 * 1024;

/// The body's raw bytes, at most `limit` of them, within `timeout`. Each way a read can
/// fail has its own answer: too large is 413, too slow is 408, and a body the client
/// framed wrongly (a bad chunk size, fewer bytes than its Content-Length) is 400.
async fn read_bounded(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, AppError> {
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| AppError {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "body_timeout",
            message: format!(
                "the request body did not arrive within body_timeout_secs = {} s",
                timeout.as_secs()
            ),
            retry_after: None,
            detail: None,
        })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(AppError::too_large(format!(
            "request body is larger than max_body_bytes = {limit} bytes"
        ))),
        Err(err) => Err(AppError::bad_request(
            "malformed_body",
            format!("the request body could not be read: {}", describe(err.as_ref())),
        )),
    }
}

/// An error and its causes, innermost last, as one line: hyper says "error reading a
/// body from connection" at the top and what was wrong ("invalid chunk size line",
/// "end of file before message length reached") below.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        source = cause.source();
    }
    text
}

/// `compressed` inflated, or `None` when it inflates to more than `limit` bytes: it stops
/// one byte past `limit`, so a gzip bomb costs at most that.
fn gunzip_within(compressed: &[u8], limit: usize) -> Result<Option<Vec<u8>>, AppError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|err| AppError::bad_request("malformed_gzip", format!("body is not valid gzip: {err}")))?;
    Ok((out.len() <= limit).then_some(out))
}

fn too_large_inflated(limit: usize) -> AppError {
    AppError::too_large(format!(
        "request body is larger than max_body_bytes = {limit} bytes after decompression"
    ))
}

/// Refuses JSON nested deeper than `max_depth`, by counting brackets outside strings.
pub fn check_depth(bytes: &[u8], max_depth: usize) -> Result<(), AppError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(AppError::bad_request(
                        "too_deep",
                        format!("JSON is nested deeper than max_json_depth = {max_depth}"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses checked bytes as JSON; a syntax error is a 400 that says where.
pub fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|err| AppError::bad_request("malformed_json", format!("body is not valid JSON: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_only_outside_strings() {
        assert!(check_depth(br#"{"a": [[["x"]]]}"#, 4).is_ok());
        assert!(check_depth(br#"{"a": [[[["x"]]]]}"#, 4).is_err());
        assert!(check_depth(br#"{"a": "[[[[[[[[[[\"[[[["}"#, 2).is_ok());
        let deep = "[".repeat(10_000);
        let err = check_depth(deep.as_bytes(), 16).unwrap_err();
        assert_eq!(err.code, "too_deep");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(gunzip_within(&bomb, 1 << 20).unwrap().is_none());
        let whole = gunzip_within(&bomb, 64 << 20).unwrap().unwrap();
        assert_eq!(whole.len(), 64 << 20, "a body at the limit is whole");
    }
}
