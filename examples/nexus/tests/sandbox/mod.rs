//! A temporary home, telemetry store and config for running the real `nexus` binary.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) struct Sandbox {
    _temp: tempfile::TempDir,
    pub(crate) home: PathBuf,
    pub(crate) telemetry: PathBuf,
    pub(crate) config: PathBuf,
}

impl Sandbox {
    pub(crate) fn new() -> Sandbox {
        let temp = tempfile::tempdir().unwrap();
        Sandbox {
            home: temp.path().join("nexus-home"),
            telemetry: temp.path().join("telemetry"),
            config: temp.path().join("telemetry.toml"),
            _temp: temp,
        }
    }

    pub(crate) fn nexus(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nexus"));
        command
            .args(args)
            .env("NEXUS_HOME", &self.home)
            .env("NEXUS_TELEMETRY_DIR", &self.telemetry)
            .env("NEXUS_TELEMETRY_CONFIG", &self.config)
            .env_remove("DO_NOT_TRACK")
            .env_remove("NEXUS_TELEMETRY")
            .env_remove("NEXUS_TELEMETRY_DEBUG");
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.nexus(args).output().unwrap()
    }

    /// The store for raw SQL checks, after folding in what exiting runs spooled (as
    /// every `nexus telemetry` command does first).
    pub(crate) fn db(&self) -> rusqlite::Connection {
        self.fold();
        self.raw_db()
    }

    /// The store as it is, spool not folded in.
    pub(crate) fn raw_db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.telemetry.join("telemetry.db")).unwrap()
    }

    pub(crate) fn fold(&self) -> tally_store::FoldReport {
        let mut store = tally_store::Store::open(&self.telemetry, &tally_store::OpenOptions::default()).unwrap();
        store.fold_spools(&|| false).unwrap()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.db()
            .prepare("SELECT name FROM events WHERE type != 'session' ORDER BY seq")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The spool's files (none when it does not exist).
    pub(crate) fn spool_files(&self) -> Vec<PathBuf> {
        files_under(&self.telemetry.join("spool"))
    }
}

/// Every file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}
