//! `installs.erase`: every raw event, session and install record of one install.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;
use crate::actions::ActionResult;
use crate::error::AppError;
use crate::storage::ApiKey;

/// `installs.erase`.
pub async fn erase(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let Value::Object(mut payload) = payload else {
        return Err(AppError::bad_request(
            "invalid_parameter",
            "payload must be an object {\"install_id\": \"...\"}",
        ));
    };
    let max = tally_core::limits::MAX_ID_LEN;
    let install_id = match payload.remove("install_id") {
        Some(Value::String(id)) if (1..=max).contains(&id.chars().count()) => id,
        _ => {
            return Err(AppError::bad_request(
                "invalid_parameter",
                format!("install_id: must be a string of 1 to {max} characters"),
            ));
        }
    };
    if let Some(extra) = payload.keys().next() {
        return Err(AppError::bad_request(
            "invalid_parameter",
            format!("unknown field {extra:?}; only install_id is allowed"),
        ));
    }
    let deleted = state.store.erase_install(&key.app, &install_id).await?;
    Ok((
        StatusCode::OK,
        json!({"install_id": install_id, "deleted_events": deleted}),
    ))
}
