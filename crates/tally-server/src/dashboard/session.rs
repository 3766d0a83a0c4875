//! Signed-in dashboard sessions: a random token in an HttpOnly, SameSite=Strict cookie,
//! mapped in memory to the admin keys signed in with it.
//!
//! Only the SHA-256 of a token is kept, so the map holds nothing a cookie can be made
//! from. A session lasts [`SESSION_TTL`] from sign-in; each request re-reads its keys, so
//! a revoked key stops showing its app within the key cache's lifetime. Sessions live in
//! the process: a restart signs everyone out, which is the safe direction.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// Most sessions at once; past it, expired ones are dropped, then the oldest.
const MAX_SESSIONS: usize = 10_000;
/// Most keys (apps) one session holds.
pub const MAX_KEYS_PER_SESSION: usize = 32;
/// The cookie's name.
pub const COOKIE: &str = "tally_session";

struct Session {
    /// Ids of the admin keys signed in, in sign-in order.
    key_ids: Vec<String>,
    expires: Instant,
}

/// The sessions of one collector process.
#[derive(Default)]
pub struct Sessions {
    entries: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// Starts a session holding `key_id`; returns its token.
    pub fn create(&self, key_id: &str) -> Result<String, String> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|err| format!("no OS randomness: {err}"))?;
        let token = hex::encode(random);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_SESSIONS {
            let now = Instant::now();
            entries.retain(|_, session| session.expires > now);
        }
        if entries.len() >= MAX_SESSIONS
            && let Some(oldest) = entries.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            entries.remove(&oldest);
        }
        entries.insert(
            digest(&token),
            Session {
                key_ids: vec![key_id.to_owned()],
                expires: Instant::now() + SESSION_TTL,
            },
        );
        Ok(token)
    }

    /// Adds `key_id` to a live session; false when the session is gone or full.
    pub fn add_key(&self, token: &str, key_id: &str) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get_mut(&digest(token)) {
            Some(session) if session.expires > Instant::now() => {
                if !session.key_ids.iter().any(|id| id == key_id) {
                    if session.key_ids.len() >= MAX_KEYS_PER_SESSION {
                        return false;
                    }
                    session.key_ids.push(key_id.to_owned());
                }
                true
            }
            _ => false,
        }
    }

    /// The key ids of a live session.
    pub fn key_ids(&self, token: &str) -> Option<Vec<String>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let hash = digest(token);
        match entries.get(&hash) {
            Some(session) if session.expires > Instant::now() => Some(session.key_ids.clone()),
            Some(_) => {
                entries.remove(&hash);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn remove(&self, token: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&digest(token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_its_keys_until_removed() {
        let sessions = Sessions::default();
        let token = sessions.create("aaa").unwrap();
        assert_eq!(token.len(), 64);
        assert!(sessions.add_key(&token, "bbb"));
        assert!(sessions.add_key(&token, "aaa"), "adding a key twice is harmless");
        assert_eq!(sessions.key_ids(&token).unwrap(), ["aaa", "bbb"]);
        assert_eq!(sessions.key_ids("not-a-token"), None);
        assert!(!sessions.add_key("not-a-token", "ccc"));
        sessions.remove(&token);
        assert_eq!(sessions.key_ids(&token), None);
    }
}
