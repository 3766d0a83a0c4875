//! Keyed hashing of anything a user named.
//!
//! Workspace, task and file names are never stored in clear. Each becomes
//! `h1:` followed by the first 12 bytes (24 hex digits) of HMAC-SHA256 under a secret
//! made at random on first run and kept in the local store. The same name maps to the
//! same token on one install, so counts per workspace still work, while a dictionary
//! attack needs the secret, which never leaves the machine. The `h1` tag names the
//! scheme so that it can change without old tokens being misread.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of every keyed hash.
pub const HASH_PREFIX: &str = "h1:";
/// Bytes of the HMAC kept: 96 bits, far beyond collisions among one install's names.
const HASH_BYTES: usize = 12;
/// Length of a keyed hash including its prefix.
pub const HASHED_LEN: usize = HASH_PREFIX.len() + 2 * HASH_BYTES;
/// Length of the per-install secret, in bytes.
pub const SECRET_LEN: usize = 32;

/// Hashes user-named identifiers under one install's secret.
#[derive(Clone)]
pub struct KeyedHasher {
    // The keyed state is computed once; each hash clones it instead of re-keying.
    mac: Hmac<Sha256>,
}

impl KeyedHasher {
    /// A hasher keyed by `secret`.
    pub fn new(secret: &[u8; SECRET_LEN]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac takes any key length");
        KeyedHasher { mac }
    }

    /// The `h1:` token for `value`.
    pub fn hash(&self, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut token = String::with_capacity(HASHED_LEN);
        token.push_str(HASH_PREFIX);
        token.push_str(&hex::encode(&digest[..HASH_BYTES]));
        token
    }
}

impl std::fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even in debug output.
        f.write_str("KeyedHasher(..)")
    }
}

/// Whether `value` has the shape of a keyed hash: `h1:` and 24 lowercase hex digits.
pub fn is_hashed(value: &str) -> bool {
    value.len() == HASHED_LEN
        && value.starts_with(HASH_PREFIX)
        && value[HASH_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_token_other_secret_other_token() {
        let a = KeyedHasher::new(&[1; SECRET_LEN]);
        let b = KeyedHasher::new(&[2; SECRET_LEN]);
        assert_eq!(a.hash("my-workspace"), a.hash("my-workspace"));
        assert_ne!(a.hash("my-workspace"), b.hash("my-workspace"));
        assert_ne!(a.hash("my-workspace"), a.hash("my-workspace2"));
    }

    #[test]
    fn token_shape() {
        let token = KeyedHasher::new(&[7; SECRET_LEN]).hash("secret-project");
        assert!(is_hashed(&token), "{token}");
        assert!(!token.contains("secret"));
        assert!(!is_hashed("h1:short"));
        assert!(!is_hashed("secret-project-name-padded-to-27"));
    }

    #[test]
    fn matches_hmac_sha256_test_vector() {
        // RFC 4231 test case 2 uses key "Jefe"; check our truncation of a full HMAC
        // computed with a 32-byte key against an independent computation.
        let key = [0x0b; SECRET_LEN];
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        mac.update(b"Hi There");
        let full = hex::encode(mac.finalize().into_bytes());
        assert_eq!(KeyedHasher::new(&key).hash("Hi There"), format!("h1:{}", &full[..24]));
    }
}
