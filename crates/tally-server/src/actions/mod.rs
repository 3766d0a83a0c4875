//! What each operation of the API does, as plain async functions of the state, the
//! checked key and a JSON payload. They know neither HTTP routes nor the action
//! registry: `routes` decides which key may call which of them and how.
//!
//! - [`ingest`]: one event or a batch, and the event check `tally ingest` shares.
//! - [`counts`]: a counts-only upload of one install and day.
//! - [`stats`]: chart-ready aggregates and the engagement score.
//! - [`events`]: raw events with cursor pagination.
//! - [`installs`]: erasing one install.

pub mod counts;
pub mod events;
pub mod ingest;
pub mod installs;
pub mod stats;

use axum::http::StatusCode;
use jiff::Timestamp;
use serde_json::Value;

use crate::error::AppError;

/// What an action answers: a status and a JSON body.
pub type ActionResult = Result<(StatusCode, Value), AppError>;

/// Parses the time in parameter `field`, naming the field and the format when it is not
/// one.
pub(crate) fn parse_time(field: &str, text: &str) -> Result<Timestamp, AppError> {
    tally_core::time::parse(text).map_err(|_| {
        AppError::bad_request(
            "invalid_parameter",
            format!("{field}: must be an RFC 3339 time such as 2026-11-22T00:00:00Z (got {text:?})"),
        )
    })
}

/// Refuses a payload field set to `null`: the schemas give every field a type, and an
/// absent field, not a null one, means "the default".
pub(crate) fn reject_nulls(payload: &Value) -> Result<(), AppError> {
    if let Some((field, _)) = payload
        .as_object()
        .and_then(|fields| fields.iter().find(|(_, value)| value.is_null()))
    {
        return Err(AppError::bad_request(
            "invalid_parameter",
            format!("{field}: must not be null; leave it out for the default"),
        ));
    }
    Ok(())
}
