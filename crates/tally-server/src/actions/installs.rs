//! Installs: `installs.erase` (an admin erases one install), and what an install does
//! for itself, proving who it is (`tally_core::proof`): `installs.register_key`,
//! `installs.remote` (what the collector holds about it) and `installs.forget`.

use axum::http::StatusCode;
use jiff::ToSpan;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tally_core::proof::{InstallProof, MAX_PROOF_AGE_SECS, NONCE_HEX_LEN, proof_message};

use crate::AppState;
use crate::actions::ActionResult;
use crate::error::AppError;
use crate::storage::{ApiKey, Erasure, KeyRegistration};

/// `installs.erase`: everything stored about one install, with the admin key.
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
    let erased = state.store.erase_install(&key.app, &install_id).await?;
    Ok((StatusCode::OK, erasure_json(&install_id, erased)))
}

/// What an erasure answers.
fn erasure_json(install_id: &str, erased: Erasure) -> Value {
    json!({
        "install_id": install_id,
        "deleted_events": erased.events,
        "deleted_counted_days": erased.counted_days,
        "uncounted_events": erased.uncounted,
    })
}

/// Longest accepted `install_id`, as in events.
const MAX_INSTALL_ID: usize = tally_core::limits::MAX_ID_LEN;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    install_id: String,
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Proven {
    install_id: String,
    /// Absent is refused as unauthenticated (401), not as malformed.
    proof: Option<InstallProof>,
}

/// `installs.register_key`: an install registers its public key with its first upload;
/// the collector keeps only the key's SHA-256. The first key of an install stays until
/// the install is erased.
pub async fn register_key(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let registration: Registration =
        serde_json::from_value(payload).map_err(|err| AppError::bad_request("invalid_parameter", err.to_string()))?;
    check_install_id(&registration.install_id)?;
    let public = public_key(&registration.key)?;
    let hash: [u8; 32] = Sha256::digest(public).into();
    match state
        .store
        .register_install_key(&key.app, &registration.install_id, hash)
        .await?
    {
        KeyRegistration::Registered => Ok((StatusCode::OK, json!({"registered": "new"}))),
        KeyRegistration::Unchanged => Ok((StatusCode::OK, json!({"registered": "unchanged"}))),
        KeyRegistration::Conflict => Err(AppError::conflict(
            "key: another key is registered for this install; it stays until the install is erased",
        )),
    }
}

/// `installs.remote`: what the collector holds about the install that proves itself.
pub async fn remote(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let install_id = prove(state, key, "installs.remote", payload).await?;
    let summary = state.store.install_summary(&key.app, &install_id).await?;
    Ok((
        StatusCode::OK,
        json!({
            "install_id": install_id,
            "events": summary.raw_events + summary.counted_events,
            "raw_events": summary.raw_events,
            "counted_days": summary.counted_days,
            "counted_events": summary.counted_events,
            "first_seen": summary.first_seen.map(tally_core::time::format),
            "last_seen": summary.last_seen.map(tally_core::time::format),
            "by_name": summary.by_name.iter().map(|(kind, name, count)| json!({
                "type": kind, "name": name, "count": count,
            })).collect::<Vec<_>>(),
        }),
    ))
}

/// `installs.forget`: erases the install that proves itself, as `installs.erase` does.
pub async fn forget(state: &AppState, key: &ApiKey, payload: Value) -> ActionResult {
    let install_id = prove(state, key, "installs.forget", payload).await?;
    let erased = state.store.erase_install(&key.app, &install_id).await?;
    Ok((StatusCode::OK, erasure_json(&install_id, erased)))
}

/// Checks the payload's proof for `action` and returns the install it proves, or 401
/// saying which check failed. The signature is checked before the nonce is spent, so
/// a forged proof costs no storage.
async fn prove(state: &AppState, key: &ApiKey, action: &str, payload: Value) -> Result<String, AppError> {
    let proven: Proven =
        serde_json::from_value(payload).map_err(|err| AppError::bad_request("invalid_parameter", err.to_string()))?;
    check_install_id(&proven.install_id)?;
    let proof = proven.proof.as_ref().ok_or_else(|| {
        AppError::unauthorized("proof: required; only the install itself, signing with its key, may do this")
    })?;
    let public = public_key(&proof.key)?;
    let registered = state
        .store
        .install_key(&key.app, &proven.install_id)
        .await?
        .ok_or_else(|| AppError::unauthorized("install_id: no key is registered for this install of this app"))?;
    let presented: [u8; 32] = Sha256::digest(public).into();
    if presented != registered {
        return Err(AppError::unauthorized(
            "proof.key: not the key registered for this install",
        ));
    }
    let now = (state.clock)();
    if (now.as_second() - proof.ts).abs() > MAX_PROOF_AGE_SECS {
        return Err(AppError::unauthorized(format!(
            "proof.ts: must be within {MAX_PROOF_AGE_SECS} seconds of the collector's clock (got {})",
            proof.ts
        )));
    }
    let nonce_ok = proof.nonce.len() == NONCE_HEX_LEN && proof.nonce.bytes().all(|b| b.is_ascii_hexdigit());
    if !nonce_ok {
        return Err(AppError::unauthorized(format!(
            "proof.nonce: must be {NONCE_HEX_LEN} hex digits"
        )));
    }
    let signature =
        hex::decode(&proof.signature).map_err(|_| AppError::unauthorized("proof.signature: must be 128 hex digits"))?;
    let message = proof_message(action, &key.app, &proven.install_id, proof.ts, &proof.nonce);
    UnparsedPublicKey::new(&ED25519, public)
        .verify(&message, &signature)
        .map_err(|_| AppError::unauthorized(format!("proof.signature: not a signature of {action} by this install")))?;
    let expires = now.checked_add((2 * MAX_PROOF_AGE_SECS).seconds()).unwrap_or(now);
    if !state
        .store
        .spend_nonce(&key.app, &proven.install_id, &proof.nonce, expires, now)
        .await?
    {
        return Err(AppError::unauthorized(
            "proof.nonce: already used; a proof is good for one request",
        ));
    }
    Ok(proven.install_id)
}

fn check_install_id(install_id: &str) -> Result<(), AppError> {
    let ok = !install_id.is_empty()
        && install_id.len() <= MAX_INSTALL_ID
        && install_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "invalid_parameter",
            format!("install_id: must be 1 to {MAX_INSTALL_ID} characters of A-Z, a-z, 0-9 and . _ - + :"),
        ))
    }
}

/// The 32 bytes of a hex Ed25519 public key.
fn public_key(hex_key: &str) -> Result<[u8; 32], AppError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut bytes).map_err(|_| {
        AppError::bad_request(
            "invalid_parameter",
            "key: must be 64 hex digits (an Ed25519 public key)",
        )
    })?;
    Ok(bytes)
}
