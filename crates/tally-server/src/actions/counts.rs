//! `counts.upload` (`POST /v1/counts`): one install's counts of one complete day, from
//! an SDK in counts-only upload mode. Stored exactly once per install and day, folded
//! into the same rollups, totals and installs as events, so every aggregate counts them.

use axum::http::StatusCode;
use jiff::ToSpan;
use serde_json::{Value, json};
use tally_core::counts::DayCounts;
use tally_store::histogram::BUCKETS;

use crate::AppState;
use crate::actions::ActionResult;
use crate::error::AppError;
use crate::storage::ApiKey;

/// `counts.upload`: 200 `{"stored": true}` the first time, `{"stored": false}` (nothing
/// changed) for a day of this install already stored.
pub async fn upload(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let counts = check(state, key, payload)?;
    let stored = state.store.insert_counts(&counts).await?;
    Ok((
        StatusCode::OK,
        json!({
            "app": counts.app,
            "install_id": counts.install_id,
            "day": counts.day.to_string(),
            "stored": stored,
            "events": if stored { counts.counts.iter().map(|group| group.count).sum::<u64>() } else { 0 },
        }),
    ))
}

/// A valid upload of the key's app, for a day neither in the future nor older than
/// the collector keeps.
fn check(state: &AppState, key: &ApiKey, payload: Value) -> Result<DayCounts, AppError> {
    let counts: DayCounts = serde_json::from_value(payload).map_err(|err| AppError::invalid_counts(err.to_string()))?;
    counts
        .validate(BUCKETS)
        .map_err(|err| AppError::invalid_counts(err.to_string()))?;
    if counts.app != key.app {
        return Err(AppError::forbidden(format!(
            "this key writes app {:?}, not {:?}",
            key.app, counts.app
        )));
    }
    let now = (state.clock)();
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    if counts.day > today {
        return Err(AppError::invalid_counts(format!(
            "day: must be a complete UTC day, not after today ({today}) (got {})",
            counts.day
        )));
    }
    let oldest = now
        .checked_sub((i64::from(state.config.retention_days) * 24).hours())
        .unwrap_or(now)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    if counts.day < oldest {
        return Err(AppError::invalid_counts(format!(
            "day: must be within retention_days = {} (the oldest day kept is {oldest}; got {})",
            state.config.retention_days, counts.day
        )));
    }
    Ok(counts)
}
