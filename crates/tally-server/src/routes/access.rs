//! Who may call a route: the presented key, its role, and its rate limit, checked
//! before any body is read so that an unauthenticated client cannot make the collector
//! decompress anything.

use axum::http::HeaderMap;

use crate::AppState;
use crate::error::AppError;
use crate::storage::{ApiKey, Role};

/// The valid key presented in `headers`, with `role`, within its rate limit.
pub(crate) async fn authorize(state: &AppState, headers: &HeaderMap, role: Role) -> Result<ApiKey, AppError> {
    let key = state.keys.authenticate(state.store.as_ref(), headers, role).await?;
    state.limiter.check(&key.id)?;
    Ok(key)
}

/// The valid key presented in `headers`, whatever its role, within its rate limit; for
/// `POST /v1/actions`, whose role is known only once its body names the action.
pub(crate) async fn identify(state: &AppState, headers: &HeaderMap) -> Result<ApiKey, AppError> {
    let key = state.keys.identify(state.store.as_ref(), headers).await?;
    state.limiter.check(&key.id)?;
    Ok(key)
}
