//! The store's typed error.

use std::path::PathBuf;

/// What can go wrong with a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file or its directory could not be created or moved.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`create directory`).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file was written by a newer Tally; it is left untouched.
    #[error("store schema version {found} is newer than this build supports ({supported}); upgrade the app")]
    NewerSchema {
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The file is not a SQLite database or its pages are damaged.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The file or its directory cannot be written.
    #[error("store is read-only: {0}")]
    ReadOnly(String),
    /// The file is a database of another program (or not a Tally store); it is left
    /// exactly as it was, neither changed nor moved aside.
    #[error("{path} is not a Tally store ({why}); it was left untouched")]
    NotOurs {
        /// The file.
        path: PathBuf,
        /// What gave it away (another application id, tables Tally never makes).
        why: String,
    },
    /// Another process kept the operation from finishing; retry later.
    #[error("store busy: {0}")]
    Busy(String),
    /// A stored value is not what this build wrote (for example a malformed id).
    #[error("stored value is invalid: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether another writer held the store past the busy timeout; the work can be
    /// retried later without loss.
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Busy(_))
            || matches!(self, StoreError::Sqlite(err) if matches!(
                err.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ))
    }

    /// Whether the disk (or the file system's quota) is full: nothing was written, and
    /// the same work can succeed once space is freed.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            // SQLite reports a write that met ENOSPC as SQLITE_FULL.
            StoreError::Sqlite(err) => matches!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull)),
            _ => false,
        }
    }

    /// Whether the file is damaged or not a database, so it should be moved aside.
    pub fn is_corrupt(&self) -> bool {
        match self {
            StoreError::Corrupt(_) => true,
            StoreError::Sqlite(err) => matches!(
                err.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            ),
            _ => false,
        }
    }

    /// Whether the location cannot be written at all.
    pub fn is_read_only(&self) -> bool {
        match self {
            StoreError::ReadOnly(_) => true,
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::ReadOnlyFilesystem
                    | std::io::ErrorKind::NotADirectory
            ),
            StoreError::Sqlite(err) => matches!(
                err.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::ReadOnly
                        | rusqlite::ErrorCode::CannotOpen
                        | rusqlite::ErrorCode::PermissionDenied
                )
            ),
            _ => false,
        }
    }
}
