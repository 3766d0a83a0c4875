//! `installs.erase`: every raw event, session and install record of one install.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;
use crate::actions::ActionResult;
use crate::error::AppError;
use crate::storage::ApiKey;

/// `installs.erase`.
pub async fn erase(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let install_id = payload
        .get("install_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= tally_core::limits::MAX_ID_LEN)
        .ok_or_else(|| AppError::bad_request("invalid_parameter", "install_id: must be a non-empty string"))?
        .to_owned();
    let deleted = state.store.erase_install(&key.app, &install_id).await?;
    Ok((
        StatusCode::OK,
        json!({"install_id": install_id, "deleted_events": deleted}),
    ))
}
