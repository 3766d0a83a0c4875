//! API keys: how they look, how they are checked, and per-key rate limits.
//!
//! A key is `tly_<role>_<id>_<secret>`: `id` (12 hex digits) finds the stored key;
//! only the SHA-256 of the whole key is stored, and it is compared in constant time.
//! Keys are cached for [`KEY_CACHE_TTL`], so a revocation takes effect within that time
//! on every collector.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::storage::{ApiKey, Role, Storage};

/// How long a looked-up key (or its absence) is trusted.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// A new key and its stored form.
pub struct NewKey {
    /// The whole key, shown once to the person who made it.
    pub secret: String,
    /// The stored form: the key's hash, app, role and label, never the key itself.
    pub stored: ApiKey,
}

/// Makes a key for `app` with `role`.
pub fn generate(app: &str, role: Role, label: &str, now: jiff::Timestamp) -> Result<NewKey, String> {
    let mut random = [0u8; 22];
    getrandom::fill(&mut random).map_err(|err| format!("no OS randomness: {err}"))?;
    let id = hex::encode(&random[..6]);
    let role_tag = match role {
        Role::Ingest => "ingest",
        Role::Admin => "admin",
    };
    let secret = format!("tly_{role_tag}_{id}_{}", hex::encode(&random[6..]));
    let stored = ApiKey {
        id,
        app: app.to_owned(),
        role,
        secret_hash: Sha256::digest(secret.as_bytes()).into(),
        label: label.to_owned(),
        created_at: now,
        revoked_at: None,
    };
    Ok(NewKey { secret, stored })
}

/// The credentials of an `Authorization` value in the `Bearer` scheme, whose name is
/// case-insensitive (RFC 9110, section 11.1): `bearer KEY` is `Bearer KEY`.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The id inside a presented key, if it has the right shape.
fn key_id(presented: &str) -> Option<&str> {
    let mut parts = presented.split('_');
    let (Some("tly"), Some(_role), Some(id), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let hex = |text: &str| text.bytes().all(|b| b.is_ascii_hexdigit());
    (id.len() == 12 && hex(id) && secret.len() == 32 && hex(secret)).then_some(id)
}

/// Whether a presented secret equals the configured one, in time independent of where
/// they differ (their lengths are not secret).
pub fn same_secret(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Equal in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Looks keys up through a short-lived cache.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Option<ApiKey>, Instant)>>,
}

impl KeyCache {
    /// Finds the key presented in `Authorization: Bearer ...` and checks it has `role`.
    pub async fn authenticate(&self, store: &dyn Storage, headers: &HeaderMap, role: Role) -> Result<ApiKey, AppError> {
        let key = self.identify(store, headers).await?;
        check_role(&key, role)?;
        Ok(key)
    }

    /// Finds the valid, unrevoked key presented in `Authorization: Bearer ...`, whatever
    /// its role.
    pub async fn identify(&self, store: &dyn Storage, headers: &HeaderMap) -> Result<ApiKey, AppError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| AppError::unauthorized("missing Authorization: Bearer <key>"))?;
        let presented = value
            .to_str()
            .ok()
            .and_then(bearer_token)
            .ok_or_else(|| AppError::unauthorized("Authorization must be `Bearer <key>`"))?;
        let id = key_id(presented).ok_or_else(|| AppError::unauthorized("malformed key"))?;
        let key = self.lookup(store, id).await?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let key = match key {
            Some(key) if constant_time_eq(&digest, &key.secret_hash) && key.revoked_at.is_none() => key,
            _ => return Err(AppError::unauthorized("invalid or revoked key")),
        };
        Ok(key)
    }

    async fn lookup(&self, store: &dyn Storage, id: &str) -> Result<Option<ApiKey>, AppError> {
        if let Some((key, fetched)) = self.entries.lock().unwrap_or_else(PoisonError::into_inner).get(id)
            && fetched.elapsed() < KEY_CACHE_TTL
        {
            return Ok(key.clone());
        }
        let key = store.key(id).await?;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        // Unknown ids are cached too, so guessing cannot hammer the database; the map
        // is cleared when it grows large, which bounds its memory.
        if entries.len() > 10_000 {
            entries.clear();
        }
        entries.insert(id.to_owned(), (key.clone(), Instant::now()));
        Ok(key)
    }
}

/// Refuses a key without `role`.
pub fn check_role(key: &ApiKey, role: Role) -> Result<(), AppError> {
    if key.role == role {
        Ok(())
    } else {
        Err(AppError::forbidden(format!(
            "this route needs an {} key; this is an {} key",
            role.as_str(),
            key.role.as_str()
        )))
    }
}

/// Refuses a read of `requested` by a key of another app. Every read names the app only
/// to be explicit (it defaults to the key's own), so this is the one check that a key
/// never reads another app's data.
pub fn check_reads(key: &ApiKey, requested: Option<&str>) -> Result<(), AppError> {
    match requested {
        Some(app) if app != key.app => Err(AppError::forbidden(format!(
            "this key reads app {:?}, not {app:?}",
            key.app
        ))),
        _ => Ok(()),
    }
}

/// A token bucket per key: `burst` requests at once, refilled at `per_second`.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter with these rates.
    pub fn new(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key_id`, or says how many seconds until one is free.
    pub fn check(&self, key_id: &str) -> Result<(), AppError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, last) = buckets.entry(key_id.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64;
            Err(AppError::rate_limited(
                wait,
                format!(
                    "rate limit of {} requests per second (burst {}) passed for this key; retry after {wait} s",
                    self.per_second, self.burst
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash() {
        let key = generate("nexus", Role::Ingest, "ci", jiff::Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(key_id(&key.secret), Some(key.stored.id.as_str()));
        let digest: [u8; 32] = Sha256::digest(key.secret.as_bytes()).into();
        assert!(constant_time_eq(&digest, &key.stored.secret_hash));
        assert!(!key.secret.contains("nexus"));
        assert_eq!(key_id("tly_ingest_abc_def"), None);
        assert_eq!(key_id("Bearer"), None);
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer k", "bearer k", "BEARER k", "bEaReR   k "] {
            assert_eq!(bearer_token(value), Some("k"), "{value:?}");
        }
        for value in ["Basic k", "Bearer", "Bearer ", "Bearerk", "k"] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn the_bucket_refuses_past_its_burst() {
        let limiter = RateLimiter::new(1.0, 3);
        for _ in 0..3 {
            limiter.check("k").unwrap();
        }
        let err = limiter.check("k").unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.retry_after, Some(1));
        limiter.check("other").unwrap();
    }
}
