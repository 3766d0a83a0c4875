//! How a value is kept in the compact layout of `event_rows` and `session_rows`
//! (schema version 7), and how it reads back.
//!
//! Event ids are their 16 bytes, times Unix milliseconds, keyed hashes (`h1:` and 24
//! hex digits) their 12 bytes, and the values that repeat on every event are kept once
//! in a dictionary and referenced by number: names and the like in `strings`, install
//! ids in `install_ids`, session ids in `session_ids` (the 16 bytes of a lower-case
//! UUID, any other session id as its text). Every conversion is exact: what reads
//! back is byte for byte what was written (RFC 3339 with three fractional digits,
//! lower-case UUID text), so the documented event format does not change. The views
//! `events` and `sessions` (see [`crate::schema`]) apply the same rules in SQL.

use std::collections::HashMap;

use jiff::Timestamp;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension};
use tally_core::hashing::HASH_PREFIX;

use crate::StoreError;

/// `ts` as Unix milliseconds, rounded down like its RFC 3339 text is.
pub(crate) fn millis(ts: Timestamp) -> i64 {
    ts.as_nanosecond().div_euclid(1_000_000) as i64
}

/// The instant `ms` Unix milliseconds name.
pub(crate) fn timestamp(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(ms).map_err(|err| StoreError::Invalid(format!("stored time {ms}: {err}")))
}

/// The stored form of an optional period end: `None` leaves that end open.
pub(crate) fn bound(ts: Timestamp) -> Option<i64> {
    (ts != Timestamp::MIN && ts != Timestamp::MAX).then(|| millis(ts))
}

/// A session id's stored form: the 16 bytes of a lower-case hyphenated UUID, otherwise
/// the text as given (it is any token the client chose).
pub(crate) fn token(text: &str) -> Value {
    match uuid::Uuid::try_parse(text) {
        Ok(uuid) if text.len() == 36 && uuid.hyphenated().to_string() == text => Value::Blob(uuid.as_bytes().to_vec()),
        _ => Value::Text(text.to_owned()),
    }
}

/// Reads what [`token`] stored.
pub(crate) fn read_token(value: ValueRef<'_>, column: &str) -> Result<String, StoreError> {
    match value {
        ValueRef::Blob(bytes) => Ok(read_uuid(bytes, column)?.hyphenated().to_string()),
        ValueRef::Text(text) => text_of(text, column),
        other => Err(StoreError::Invalid(format!(
            "{column}: unexpected {:?}",
            other.data_type()
        ))),
    }
}

/// A keyed hash's stored form: the 12 bytes after `h1:` when it has that shape,
/// otherwise the text as given.
pub(crate) fn hash(text: &str) -> Value {
    if tally_core::hashing::is_hashed(text)
        && let Ok(bytes) = hex::decode(&text[HASH_PREFIX.len()..])
    {
        return Value::Blob(bytes);
    }
    Value::Text(text.to_owned())
}

/// Reads what [`hash`] stored (NULL reads as `None`).
pub(crate) fn read_hash(value: ValueRef<'_>, column: &str) -> Result<Option<String>, StoreError> {
    match value {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(bytes) => Ok(Some(format!("{HASH_PREFIX}{}", hex::encode(bytes)))),
        ValueRef::Text(text) => text_of(text, column).map(Some),
        other => Err(StoreError::Invalid(format!(
            "{column}: unexpected {:?}",
            other.data_type()
        ))),
    }
}

/// An event id as stored.
pub(crate) fn read_uuid(bytes: &[u8], column: &str) -> Result<uuid::Uuid, StoreError> {
    uuid::Uuid::from_slice(bytes).map_err(|err| StoreError::Invalid(format!("{column}: {err}")))
}

fn text_of(bytes: &[u8], column: &str) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|err| StoreError::Invalid(format!("{column}: {err}")))
}

/// A table of interned values: `strings` (names, versions, commands: kept as long as
/// the store), `install_ids` (erased with their install) or `session_ids` (kept as
/// long as their session; held as [`token`] gives them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dictionary {
    Strings,
    InstallIds,
    SessionIds,
}

impl Dictionary {
    fn sql(self) -> [&'static str; 3] {
        match self {
            Dictionary::Strings => [
                "SELECT id FROM strings WHERE value = ?1",
                "INSERT INTO strings (value) VALUES (?1)",
                "SELECT value FROM strings WHERE id = ?1",
            ],
            Dictionary::InstallIds => [
                "SELECT id FROM install_ids WHERE value = ?1",
                "INSERT INTO install_ids (value) VALUES (?1)",
                "SELECT value FROM install_ids WHERE id = ?1",
            ],
            Dictionary::SessionIds => [
                "SELECT id FROM session_ids WHERE value = ?1",
                "INSERT INTO session_ids (value) VALUES (?1)",
                "SELECT value FROM session_ids WHERE id = ?1",
            ],
        }
    }

    /// How `value` is held in this table.
    fn stored(self, value: &str) -> Value {
        match self {
            Dictionary::SessionIds => token(value),
            Dictionary::Strings | Dictionary::InstallIds => Value::Text(value.to_owned()),
        }
    }

    /// What a held value reads back as.
    fn read(self, value: ValueRef<'_>) -> Result<String, StoreError> {
        match (self, value) {
            (Dictionary::SessionIds, value) => read_token(value, "session_ids.value"),
            (_, ValueRef::Text(text)) => text_of(text, "strings.value"),
            (_, other) => Err(StoreError::Invalid(format!(
                "{self:?}: unexpected {:?}",
                other.data_type()
            ))),
        }
    }

    /// The number of `value`, if it was ever interned: a filter on a value never
    /// stored matches nothing.
    pub(crate) fn id_of(self, conn: &Connection, value: &str) -> Result<Option<i64>, StoreError> {
        Ok(conn
            .prepare_cached(self.sql()[0])?
            .query_row([self.stored(value)], |row| row.get(0))
            .optional()?)
    }
}

/// Interns values within one write transaction, remembering them for its length only
/// (a purge in another process can empty the tables between two transactions).
pub(crate) struct Interner<'c> {
    conn: &'c Connection,
    dictionary: Dictionary,
    known: HashMap<String, i64>,
    /// Numbers this transaction added, for [`Interner::forget_unused`].
    added: Vec<i64>,
}

impl<'c> Interner<'c> {
    pub(crate) fn new(conn: &'c Connection, dictionary: Dictionary) -> Interner<'c> {
        Interner {
            conn,
            dictionary,
            known: HashMap::new(),
            added: Vec::new(),
        }
    }

    /// Deletes the values this transaction added that no event refers to: those only a
    /// duplicate (an id already stored, so the event was skipped) brought.
    pub(crate) fn forget_unused(&self) -> Result<(), StoreError> {
        let sql = match self.dictionary {
            Dictionary::Strings => {
                "DELETE FROM strings WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM event_rows WHERE ?1 IN \
                 (app, app_version, source, type, name, command, target_type, error_category))"
            }
            Dictionary::InstallIds => {
                "DELETE FROM install_ids WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM event_rows WHERE install_id = ?1)"
            }
            Dictionary::SessionIds => {
                "DELETE FROM session_ids WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM event_rows WHERE session_id = ?1)"
            }
        };
        for id in &self.added {
            self.conn.prepare_cached(sql)?.execute([id])?;
        }
        Ok(())
    }

    /// The number of `value`, adding it when new.
    pub(crate) fn id(&mut self, value: &str) -> Result<i64, StoreError> {
        if let Some(id) = self.known.get(value) {
            return Ok(*id);
        }
        let id = match self.dictionary.id_of(self.conn, value)? {
            Some(id) => id,
            None => {
                self.conn
                    .prepare_cached(self.dictionary.sql()[1])?
                    .execute([self.dictionary.stored(value)])?;
                let id = self.conn.last_insert_rowid();
                self.added.push(id);
                id
            }
        };
        self.known.insert(value.to_owned(), id);
        Ok(id)
    }

    /// [`Interner::id`] of an optional value.
    pub(crate) fn optional(&mut self, value: Option<&str>) -> Result<Option<i64>, StoreError> {
        value.map(|value| self.id(value)).transpose()
    }
}

/// Reads interned values back within one read, remembering each number it looked up.
pub(crate) struct Strings<'c> {
    conn: &'c Connection,
    dictionary: Dictionary,
    known: HashMap<i64, String>,
}

impl<'c> Strings<'c> {
    pub(crate) fn new(conn: &'c Connection, dictionary: Dictionary) -> Strings<'c> {
        Strings {
            conn,
            dictionary,
            known: HashMap::new(),
        }
    }

    /// The value numbered `id`.
    pub(crate) fn get(&mut self, id: i64) -> Result<String, StoreError> {
        if let Some(value) = self.known.get(&id) {
            return Ok(value.clone());
        }
        let dictionary = self.dictionary;
        let value = self
            .conn
            .prepare_cached(dictionary.sql()[2])?
            .query_row([id], |row| Ok(dictionary.read(row.get_ref(0)?)))
            .optional()?
            .ok_or_else(|| StoreError::Invalid(format!("{dictionary:?} has no value numbered {id}")))??;
        self.known.insert(id, value.clone());
        Ok(value)
    }

    /// [`Strings::get`] of an optional reference.
    pub(crate) fn optional(&mut self, id: Option<i64>) -> Result<Option<String>, StoreError> {
        id.map(|id| self.get(id)).transpose()
    }
}

/// The dictionaries' readers, for reading whole events.
pub(crate) struct Lookups<'c> {
    pub(crate) strings: Strings<'c>,
    pub(crate) install_ids: Strings<'c>,
    pub(crate) session_ids: Strings<'c>,
}

impl<'c> Lookups<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Lookups<'c> {
        Lookups {
            strings: Strings::new(conn, Dictionary::Strings),
            install_ids: Strings::new(conn, Dictionary::InstallIds),
            session_ids: Strings::new(conn, Dictionary::SessionIds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uuids_become_blobs() {
        let canonical = "0198a0b1-0000-7000-8000-000000000001";
        assert!(matches!(token(canonical), Value::Blob(_)));
        for other in [
            "0198A0B1-0000-7000-8000-000000000001",
            "0198a0b100007000800000000000000001",
            "{0198a0b1-0000-7000-8000-000000000001}",
            "run-42",
        ] {
            assert!(matches!(token(other), Value::Text(_)), "{other}");
        }
        let Value::Blob(bytes) = token(canonical) else {
            unreachable!()
        };
        assert_eq!(read_token(ValueRef::Blob(&bytes), "session_id").unwrap(), canonical);
    }

    #[test]
    fn hashes_round_trip() {
        let hashed = "h1:00ff00ff00ff00ff00ff00ff";
        let Value::Blob(bytes) = hash(hashed) else {
            panic!("a keyed hash is stored as its bytes")
        };
        assert_eq!(bytes.len(), 12);
        assert_eq!(
            read_hash(ValueRef::Blob(&bytes), "workspace").unwrap().as_deref(),
            Some(hashed)
        );
        assert!(matches!(hash("h1:00FF00FF00FF00FF00FF00FF"), Value::Text(_)));
    }

    #[test]
    fn times_round_trip_through_milliseconds() {
        for text in [
            "2026-11-22T10:00:00.000Z",
            "1969-12-31T23:59:59.999Z",
            "0001-01-01T00:00:00.001Z",
        ] {
            let ts = tally_core::time::parse(text).unwrap();
            assert_eq!(tally_core::time::format(timestamp(millis(ts)).unwrap()), text);
        }
    }
}
