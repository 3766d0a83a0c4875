//! Running a test of this binary in a child process with its own environment.
//!
//! A child test starts with `if !child::active() { return; }`: in the normal run it
//! does nothing, and the parent test runs it with `TALLY_TEST_CHILD` set.

use std::path::Path;
use std::process::{Command, Output};

/// The app name every child records as; its settings come from `TESTAPP_*`.
pub(crate) const APP: &str = "testapp";

/// Whether this process is a child started by [`run`].
pub(crate) fn active() -> bool {
    std::env::var_os("TALLY_TEST_CHILD").is_some()
}

/// A command running child test `name` with its store in `dir`.
pub(crate) fn command(name: &str, dir: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary path"));
    command
        .args(["--exact", name, "--nocapture", "--test-threads=1", "--quiet"])
        .env("TALLY_TEST_CHILD", "1")
        .env("TESTAPP_TELEMETRY_DIR", dir)
        .env("TESTAPP_TELEMETRY_CONFIG", dir.with_extension("config.toml"))
        .env_remove("DO_NOT_TRACK")
        .env_remove("TESTAPP_TELEMETRY")
        .env_remove("TESTAPP_TELEMETRY_DEBUG")
        .env_remove("RUST_BACKTRACE");
    command
}

/// Runs child test `name` and insists it succeeded.
pub(crate) fn run(command: &mut Command) -> Output {
    let output = command.output().expect("spawn child test");
    assert!(
        output.status.success(),
        "child failed: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Opens the store file of `dir` for raw SQL checks, after folding in what exiting
/// processes spooled (as every `tally` command does first).
pub(crate) fn open_db(dir: &Path) -> rusqlite::Connection {
    fold(dir);
    rusqlite::Connection::open(dir.join("telemetry.db")).expect("open telemetry.db")
}

/// Folds the spool of the store in `dir` into it.
pub(crate) fn fold(dir: &Path) -> tally_store::FoldReport {
    let mut store = tally_store::Store::open(dir, &tally_store::OpenOptions::default()).expect("open the store");
    store.fold_spools(&|| false).expect("fold the spool")
}

/// The lines a child printed between `RESULT ` markers (the rest is libtest's).
pub(crate) fn results(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("RESULT "))
        .map(str::to_owned)
        .collect()
}

/// Every file under `dir`, the spool's included.
pub(crate) fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}
