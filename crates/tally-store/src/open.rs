//! Opening a store, and what happens when the file or its directory is unusable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::{DB_FILE_NAME, Store, StoreError, schema};

/// How durable a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Survives a crash or kill of the process, but not necessarily a power loss or OS
    /// crash, after which the file may need to be moved aside (`synchronous=OFF`). The
    /// SDK's setting: no commit or checkpoint ever waits for the disk, so a CLI's exit
    /// does not either, and a damaged store is replaced on its own.
    Off,
    /// Survives a crash of the process; a power loss may lose the last commits but
    /// never damages the file (WAL `synchronous=NORMAL`).
    Normal,
    /// Also survives power loss (`synchronous=FULL`); the collector's setting, since a
    /// 2xx there promises the events are committed.
    Full,
}

/// Settings for opening a store.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long a write waits for another process's transaction before giving up.
    pub busy_timeout: Duration,
    /// Commit durability.
    pub synchronous: Synchronous,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Off,
        }
    }
}

/// Where a store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A `telemetry.db` file.
    File(PathBuf),
    /// Memory only: the location could not be written, so this run's events are kept
    /// until the process exits and no longer.
    Memory,
}

/// What [`Store::open_or_recover`] had to do to give a usable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The file opened normally.
    None,
    /// The file was corrupt or not a database; it was moved to `moved_to` (with its
    /// `-wal` and `-shm`) and a fresh store was made.
    MovedAside {
        /// Why the file was refused.
        reason: String,
        /// Where the old file now is.
        moved_to: PathBuf,
    },
    /// The location could not be used; the store lives in memory for this run.
    InMemory {
        /// Why the file could not be used.
        reason: String,
    },
}

impl Store {
    /// Opens (creating if needed) `dir/telemetry.db`.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            action: "create directory",
            path: dir.to_owned(),
            source,
        })?;
        Store::open_file(&dir.join(DB_FILE_NAME), options)
    }

    /// Opens (creating if needed) the store file at `path`.
    pub fn open_file(path: &Path, options: &OpenOptions) -> Result<Store, StoreError> {
        Store::open_file_at(path, options, schema::LATEST_VERSION)
    }

    /// Like [`Store::open_file`], but brings the schema only up to `version` (when it is
    /// older). For a program whose own migrations of the same file were written against
    /// an earlier version of the store's tables (the collector's embedded backend), and
    /// for tests that build earlier versions.
    pub fn open_file_at(path: &Path, options: &OpenOptions, version: i64) -> Result<Store, StoreError> {
        // When several processes create the same new file at once, switching it to WAL
        // or migrating it can answer "busy" at once instead of waiting on the busy
        // handler; those steps are safe to repeat, so try again for a while.
        let started = std::time::Instant::now();
        loop {
            let conn = Connection::open(path)?;
            if conn.is_readonly(rusqlite::MAIN_DB)? {
                return Err(StoreError::ReadOnly(format!("{} cannot be written", path.display())));
            }
            match Store::prepare(conn, Location::File(path.to_owned()), options, version) {
                Err(err) if err.is_busy() && started.elapsed() < options.busy_timeout => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                result => return result,
            }
        }
    }

    /// A store that lives in memory only.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::prepare(
            Connection::open_in_memory()?,
            Location::Memory,
            &OpenOptions::default(),
            schema::LATEST_VERSION,
        )
    }

    /// Opens `dir/telemetry.db`, and when that fails makes do: a corrupt file or one
    /// that is not a database is moved aside with its `-wal` and `-shm` and replaced by a
    /// fresh store; a location that cannot be written (or holds a store from a newer
    /// version, or another program's database, neither of which may be touched) gives a
    /// store in memory for this run.
    pub fn open_or_recover(dir: &Path, options: &OpenOptions) -> Result<(Store, Recovery), StoreError> {
        match Store::open(dir, options) {
            Ok(store) => Ok((store, Recovery::None)),
            Err(err) if err.is_corrupt() => {
                let path = dir.join(DB_FILE_NAME);
                let moved_to = move_aside(&path)?;
                let store = Store::open(dir, options)?;
                Ok((
                    store,
                    Recovery::MovedAside {
                        reason: err.to_string(),
                        moved_to,
                    },
                ))
            }
            Err(err)
                if err.is_read_only() || matches!(err, StoreError::NewerSchema { .. } | StoreError::NotOurs { .. }) =>
            {
                Ok((
                    Store::open_in_memory()?,
                    Recovery::InMemory {
                        reason: err.to_string(),
                    },
                ))
            }
            Err(err) => Err(err),
        }
    }

    /// Moves a store that opened but proved damaged (a failed `quick_check`, or a
    /// corrupt page met while writing) aside with its `-wal` and `-shm`, and makes a
    /// fresh one in its place.
    pub fn replace_corrupt(dir: &Path, options: &OpenOptions, reason: String) -> Result<(Store, Recovery), StoreError> {
        let moved_to = move_aside(&dir.join(DB_FILE_NAME))?;
        let store = Store::open(dir, options)?;
        Ok((store, Recovery::MovedAside { reason, moved_to }))
    }

    /// Copies the WAL into the database and empties it, if no other connection is in the
    /// way; never waits (it gives up instead) and reports whether it finished.
    ///
    /// The first connection to open a store reads the whole WAL to rebuild its index, so
    /// a WAL left large by the last process costs the next process's start. Keeping it
    /// empty after each batch keeps a short CLI's telemetry cheap.
    pub fn checkpoint_now(&self, busy_timeout: Duration) -> Result<bool, StoreError> {
        if self.location == Location::Memory {
            return Ok(true);
        }
        self.conn.busy_timeout(Duration::ZERO)?;
        let result = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0));
        self.conn.busy_timeout(busy_timeout)?;
        match result {
            Ok(busy) => Ok(busy == 0),
            Err(err) if matches!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy)) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    fn prepare(
        mut conn: Connection,
        location: Location,
        options: &OpenOptions,
        version: i64,
    ) -> Result<Store, StoreError> {
        conn.busy_timeout(options.busy_timeout)?;
        // Before any pragma below writes to the file: another program's database, and a
        // store from a newer version, must be left untouched.
        if let Location::File(path) = &location
            && let Some(why) = schema::foreign_reason(&conn)?
        {
            return Err(StoreError::NotOurs {
                path: path.clone(),
                why,
            });
        }
        let found = schema::version(&conn)?;
        if found > schema::LATEST_VERSION {
            return Err(StoreError::NewerSchema {
                found,
                supported: schema::LATEST_VERSION,
            });
        }
        if found == 0 {
            // Must precede the first table: the file then returns freed pages to the OS
            // on `PRAGMA incremental_vacuum`, which the size cap relies on. Only for a
            // new file, since on an existing one it costs a write transaction per open.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        }
        if location != Location::Memory {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::ReadOnly(format!("journal mode stayed {mode}")));
            }
            // The last connection to close would otherwise checkpoint the WAL and delete
            // it. A CLI closes its connection as the process exits, so that work would
            // either delay the exit or be cut off halfway. Writers call
            // `Store::checkpoint_now` after their batches instead.
            conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        }
        let synchronous = match options.synchronous {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        // Deleted rows are overwritten with zeros, so purged or expired events do not
        // linger in free pages of the file.
        conn.pragma_update(None, "secure_delete", "ON")?;
        if version == schema::LATEST_VERSION {
            schema::migrate(&mut conn)?;
        } else if found < version {
            schema::migrate_to(&mut conn, version)?;
        }
        Ok(Store { conn, location })
    }
}

/// Renames `path`, `path-wal` and `path-shm` to `<name>.corrupt-<unix ms>[-wal|-shm]`.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = jiff::Timestamp::now().as_millisecond();
    let target = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        let to = PathBuf::from(format!("{}{suffix}", target.display()));
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    action: "move aside",
                    path: from,
                    source,
                });
            }
        }
    }
    Ok(target)
}
