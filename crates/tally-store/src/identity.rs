//! The install's identity: a random install id and the secret for keyed hashing.

use rusqlite::{OptionalExtension, TransactionBehavior};
use tally_core::hashing::SECRET_LEN;

use crate::{Store, StoreError};

/// Made once per store on first use, kept in `meta`.
#[derive(Clone)]
pub struct Identity {
    /// Random (UUIDv4), never derived from the machine or the person.
    pub install_id: String,
    /// The key for [`tally_core::KeyedHasher`]; never leaves the machine.
    pub secret: [u8; SECRET_LEN],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("install_id", &self.install_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new random identity.
    pub fn generate() -> Result<Identity, StoreError> {
        let mut secret = [0u8; SECRET_LEN];
        getrandom::fill(&mut secret)
            .map_err(|err| StoreError::Invalid(format!("no OS randomness for the install secret: {err}")))?;
        Ok(Identity {
            install_id: uuid::Uuid::new_v4().to_string(),
            secret,
        })
    }
}

impl Store {
    /// This store's identity, made on first call. Safe when processes race: the first
    /// to commit wins and every process reads the same values.
    pub fn identity(&mut self) -> Result<Identity, StoreError> {
        if let Some(identity) = self.read_identity()? {
            return Ok(identity);
        }
        self.adopt_identity(&Identity::generate()?)
    }

    /// This store's identity; a store that has none takes `candidate` (made before
    /// the store was, so that a process could hash with it already). Safe when
    /// processes race: the first to commit wins.
    pub fn adopt_identity(&mut self, candidate: &Identity) -> Result<Identity, StoreError> {
        if let Some(identity) = self.read_identity()? {
            return Ok(identity);
        }
        let (install_id, secret) = (&candidate.install_id, candidate.secret);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('install_id', ?1), ('secret', ?2)",
            (install_id, hex::encode(secret)),
        )?;
        tx.commit()?;
        self.read_identity()?
            .ok_or_else(|| StoreError::Invalid("install identity missing after creation".into()))
    }

    fn read_identity(&self) -> Result<Option<Identity>, StoreError> {
        let install_id = self.meta("install_id")?;
        let secret = self.meta("secret")?;
        let (Some(install_id), Some(secret)) = (install_id, secret) else {
            return Ok(None);
        };
        let mut decoded = [0u8; SECRET_LEN];
        hex::decode_to_slice(&secret, &mut decoded)
            .map_err(|_| StoreError::Invalid("meta.secret is not 64 hex digits".into()))?;
        let secret = decoded;
        Ok(Some(Identity { install_id, secret }))
    }

    /// A value from `meta`.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .optional()?)
    }
}
