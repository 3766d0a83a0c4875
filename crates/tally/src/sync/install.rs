//! The install's own business with the collector: registering its key with its first
//! upload, and reading (`remote`) or erasing (`forget`) what the collector holds about
//! it, each request signed as `tally_core::proof` describes.
//!
//! The Ed25519 key pair is derived from the install's secret on each use; it is never
//! stored, and the secret itself never leaves the machine.

use std::io::Read;
use std::time::Duration;

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use tally_core::proof::{key_seed, proof_message};
use tally_store::{Identity, Store};

/// `meta` key holding the endpoint the install's key was registered with.
const REGISTERED_AT: &str = "install_key_registered_with";

/// Why the collector could not be asked, or what it refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The collector did not answer.
    #[error("the collector at {url} did not answer ({reason})")]
    Unreachable {
        /// Where the request went.
        url: String,
        /// What the connection met.
        reason: String,
    },
    /// The collector answered with an error.
    #[error("the collector answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The collector's `error.message`.
        message: String,
    },
    /// The store could not be read or updated.
    #[error("{0}")]
    Store(#[from] tally_store::StoreError),
    /// The key pair could not be made from the install secret.
    #[error("the install key cannot be made: {0}")]
    Key(String),
}

fn key_pair(identity: &Identity) -> Result<Ed25519KeyPair, InstallError> {
    Ed25519KeyPair::from_seed_unchecked(&key_seed(&identity.secret)).map_err(|err| InstallError::Key(err.to_string()))
}

/// Registers this install's public key with the collector at `endpoint`, once per
/// endpoint; an upload calls it first. A collector that already holds another key for
/// this install answers 409, which is returned.
pub fn register(store: &mut Store, endpoint: &str, key: &str) -> Result<(), InstallError> {
    if store.meta(REGISTERED_AT)?.as_deref() == Some(endpoint) {
        return Ok(());
    }
    let identity = store.identity()?;
    let public = hex::encode(key_pair(&identity)?.public_key().as_ref());
    let body = json!({"install_id": identity.install_id, "key": public});
    post(endpoint, "/v1/installs/self/key", key, &body)?;
    store.set_meta(REGISTERED_AT, endpoint)?;
    Ok(())
}

/// `installs.remote`: what the collector holds about this install.
pub fn remote(store: &mut Store, app: &str, endpoint: &str, key: &str) -> Result<Value, InstallError> {
    signed(store, app, endpoint, key, "installs.remote", "/v1/installs/self/remote")
}

/// `installs.forget`: erases this install at the collector. Its key goes too, so the
/// next upload registers it again and starts fresh.
pub fn forget(store: &mut Store, app: &str, endpoint: &str, key: &str) -> Result<Value, InstallError> {
    let answer = signed(store, app, endpoint, key, "installs.forget", "/v1/installs/self/forget")?;
    store.set_meta(REGISTERED_AT, "")?;
    Ok(answer)
}

/// Sends a request for `action` on `app`'s collector, signed by this install, with a
/// fresh time and nonce.
fn signed(
    store: &mut Store,
    app: &str,
    endpoint: &str,
    key: &str,
    action: &str,
    route: &str,
) -> Result<Value, InstallError> {
    let identity = store.identity()?;
    let pair = key_pair(&identity)?;
    let ts = jiff::Timestamp::now().as_second();
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| InstallError::Key("no OS randomness for a nonce".into()))?;
    let nonce = hex::encode(nonce);
    let message = proof_message(action, app, &identity.install_id, ts, &nonce);
    let body = json!({
        "install_id": identity.install_id,
        "proof": {
            "key": hex::encode(pair.public_key().as_ref()),
            "ts": ts,
            "nonce": nonce,
            "signature": hex::encode(pair.sign(&message).as_ref()),
        }
    });
    post(endpoint, route, key, &body)
}

/// POSTs `body` as JSON with the ingest `key`; the answer's JSON on a 2xx.
fn post(endpoint: &str, route: &str, key: &str, body: &Value) -> Result<Value, InstallError> {
    let url = format!("{}{route}", endpoint.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut response = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {key}"))
        .send(body.to_string().as_bytes())
        .map_err(|err| InstallError::Unreachable {
            url: url.clone(),
            reason: err.to_string(),
        })?;
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(1 << 20)
        .read_to_end(&mut bytes)
        .map_err(|err| InstallError::Unreachable {
            url: url.clone(),
            reason: format!("reading the answer: {err}"),
        })?;
    if !(200..300).contains(&status) {
        return Err(InstallError::Refused {
            status,
            message: super::error_message(&bytes),
        });
    }
    serde_json::from_slice(&bytes).map_err(|err| InstallError::Refused {
        status,
        message: format!("an answer that is not JSON ({err})"),
    })
}
