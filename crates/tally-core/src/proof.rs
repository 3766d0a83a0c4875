//! Install proof: how an install shows the collector that it is itself, to read or
//! erase what the collector holds about it (`installs.remote`, `installs.forget`).
//!
//! Each install has an Ed25519 key pair derived from its secret ([`key_seed`]), so it
//! needs no new local state and the hashing secret never leaves the machine. The
//! public key is registered with the install's first upload; the collector stores only
//! its SHA-256. A request carries an [`InstallProof`]: the public key (which the
//! collector checks against the stored hash), a time, a fresh nonce and a signature of
//! [`proof_message`], which names the action, app and install. The collector refuses a
//! proof older than [`MAX_PROOF_AGE_SECS`] or whose nonce it has seen, so a captured
//! proof cannot be replayed, and one install's proof names no other install.
//!
//! Signing and verifying live with their users (the SDK's `upload` feature and the
//! collector); this module is the pure contract both follow.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::hashing::SECRET_LEN;

/// What every signed message starts with, so a signature means nothing elsewhere.
pub const PROOF_CONTEXT: &str = "tally-install-proof-v1";
/// How far a proof's time may be from the collector's clock, either way, in seconds.
pub const MAX_PROOF_AGE_SECS: i64 = 300;
/// Hex digits of a nonce (16 random bytes).
pub const NONCE_HEX_LEN: usize = 32;

/// A signed claim to be one install, for one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallProof {
    /// The install's Ed25519 public key, 64 hex digits.
    pub key: String,
    /// When it was made, Unix seconds.
    pub ts: i64,
    /// 32 random hex digits, never used twice.
    pub nonce: String,
    /// Ed25519 signature of [`proof_message`], 128 hex digits.
    pub signature: String,
}

/// The bytes an install signs to run `action` on its own data.
pub fn proof_message(action: &str, app: &str, install_id: &str, ts: i64, nonce: &str) -> Vec<u8> {
    format!("{PROOF_CONTEXT}\n{action}\n{app}\n{install_id}\n{ts}\n{nonce}").into_bytes()
}

/// The 32-byte Ed25519 seed of the install whose hashing secret is `secret`: a one-way
/// derivation, so the key reveals nothing about the secret.
pub fn key_seed(secret: &[u8; SECRET_LEN]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(b"tally install proof key v1");
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_action_app_install_time_and_nonce() {
        assert_eq!(
            String::from_utf8(proof_message("installs.forget", "nexus", "i-1", 1_700_000_000, "ab")).unwrap(),
            "tally-install-proof-v1\ninstalls.forget\nnexus\ni-1\n1700000000\nab"
        );
    }

    #[test]
    fn the_seed_depends_on_the_secret_only_and_is_not_it() {
        let secret = [7u8; SECRET_LEN];
        assert_eq!(key_seed(&secret), key_seed(&secret));
        assert_ne!(key_seed(&secret), key_seed(&[8u8; SECRET_LEN]));
        assert_ne!(key_seed(&secret), secret);
    }
}
