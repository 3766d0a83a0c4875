//! Full and read-only file systems, made for real: small tmpfs mounts (the tests run as
//! root in CI; elsewhere without the right to mount they are skipped with a note, and
//! under `CI` they fail). A full disk must never cost a panic, a half-written file, a
//! failed host command, or an event the collector acknowledged.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::json;

use crate::collector::{Collector, agent, ci, commands, create_key, id_of, list_events, post_json};

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`512k`) with extra `options` (`ro`); `None` after a
    /// note when this process may not mount, which fails under CI.
    fn mount(size: &str, options: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mut all = format!("size={size},mode=0755");
        if !options.is_empty() {
            all = format!("{all},{options}");
        }
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &all, "tmpfs"])
            .arg(dir.path())
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(err) => err.to_string(),
                };
                assert!(
                    !ci(),
                    "CI must run the disk-full tests: cannot mount a tmpfs ({why}); run as root"
                );
                eprintln!("note: skipping a disk test, cannot mount a tmpfs: {why}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `dir` with one file, up to the last byte it takes.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0x5au8; 4096];
    while file.write_all(&block).is_ok() {}
    // The last partial block, byte by byte.
    while file.write_all(&[0]).is_ok() {}
    let _ = file.flush();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tally --app nexus ARGS` on the store in `store` and the config file `config`.
fn tally(store: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["--app", "nexus"])
        .args(args)
        .env("NEXUS_TELEMETRY_DIR", store)
        .env("NEXUS_TELEMETRY_CONFIG", config)
        .env_remove("TALLY_APP")
        .env_remove("DO_NOT_TRACK")
        .env_remove("NEXUS_TELEMETRY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A store with the demo's history in a temporary directory, and its config file.
fn demo_store() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let (store, config) = (temp.path().join("store"), temp.path().join("telemetry.toml"));
    let output = tally(&store, &config, &["demo"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    (temp, store, config)
}

#[test]
fn export_onto_a_full_disk_leaves_the_earlier_file_whole() {
    let Some(disk) = Tmpfs::mount("256k", "") else { return };
    let (_temp, store, config) = demo_store();
    let target = disk.path().join("export.jsonl");
    std::fs::write(&target, "{\"an\":\"earlier, complete export\"}\n").unwrap();
    let output = tally(
        &store,
        &config,
        &["export", "--format", "ndjson", "-o", target.to_str().unwrap()],
    );
    let complaint = text(&output.stderr);
    assert!(!output.status.success(), "the export cannot fit in 256 KiB");
    assert!(complaint.contains("No space left on device"), "{complaint}");
    assert!(complaint.contains("left as it was"), "{complaint}");
    assert!(!complaint.contains("panicked"), "{complaint}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "{\"an\":\"earlier, complete export\"}\n"
    );
    let names: Vec<String> = std::fs::read_dir(disk.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["export.jsonl"], "no temporary file left behind");
}

#[test]
fn sync_onto_a_read_only_directory_says_so_once() {
    let Some(disk) = Tmpfs::mount("64k", "ro") else { return };
    let (temp, store, config) = demo_store();
    let set = tally(&store, &config, &["config", "set", "upload", "sync"]);
    assert!(set.status.success(), "{}", text(&set.stderr));
    let output = tally(
        &store,
        &config,
        &["sync", "--include-history", "--to-dir", disk.path().to_str().unwrap()],
    );
    let complaint = text(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(complaint.matches("is not writable").count(), 1, "{complaint}");
    assert!(!complaint.contains("unreachable"), "{complaint}");
    assert!(complaint.contains(disk.path().to_str().unwrap()), "{complaint}");

    // Nothing was marked sent: a writable directory then gets every event.
    let writable = temp.path().join("batches");
    let output = tally(
        &store,
        &config,
        &["sync", "--include-history", "--to-dir", writable.to_str().unwrap()],
    );
    let said = text(&output.stdout);
    assert!(output.status.success(), "{said}{}", text(&output.stderr));
    // The demo's 5,001 events, and those `config set` recorded.
    assert!(said.starts_with("uploaded 5,0"), "{said}");
    assert!(said.contains("0 already there, 0 refused"), "{said}");
}

/// The `nexus` binary next to `tally` (the sync tests build it when missing).
fn nexus(home: &Path, store: &Path, config: &Path, args: &[&str]) -> Output {
    let binary = Path::new(env!("CARGO_BIN_EXE_tally")).with_file_name("nexus");
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "nexus"])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p nexus failed");
    }
    Command::new(binary)
        .args(args)
        .env("NEXUS_HOME", home)
        .env("NEXUS_TELEMETRY_DIR", store)
        .env("NEXUS_TELEMETRY_CONFIG", config)
        .env_remove("DO_NOT_TRACK")
        .env_remove("NEXUS_TELEMETRY")
        .env_remove("NEXUS_TELEMETRY_DEBUG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Folds the spool of short runs into the store, as any `tally` command that opens it does.
fn fold_spool(store: &Path, config: &Path) {
    let output = tally(store, config, &["status"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// How many raw events the store holds, and how many its rollups count: equal exactly
/// when every batch committed whole (events and rollups in one transaction).
fn events_and_rollups(store: &Path) -> (i64, i64) {
    let db = rusqlite::Connection::open(store.join("telemetry.db")).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
    let events: i64 = db
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap();
    let counted: i64 = db
        .query_row("SELECT coalesce(sum(count), 0) FROM metrics", [], |row| row.get(0))
        .unwrap();
    (events, counted)
}

#[test]
fn the_app_keeps_working_when_its_store_has_no_space_and_records_again_after() {
    let Some(disk) = Tmpfs::mount("1m", "") else { return };
    let home = tempfile::tempdir().unwrap();
    let store = disk.path().join("telemetry");
    let config = home.path().join("telemetry.toml");
    let run = |args: &[&str]| {
        let output = nexus(home.path(), &store, &config, args);
        assert!(
            output.status.success(),
            "nexus {args:?} failed on a full disk: {}",
            text(&output.stderr)
        );
        assert!(!text(&output.stderr).contains("panicked"));
        text(&output.stdout)
    };
    run(&["workspace", "create", "alpha"]);
    fold_spool(&store, &config);
    let (before, _) = events_and_rollups(&store);
    assert!(before > 0);

    let filler = fill(disk.path());
    for round in 0..5 {
        let said = run(&["task", "done", &format!("t{round}"), "--workspace", "alpha"]);
        assert!(!said.is_empty(), "the command did its work");
    }
    // Read once there is room again: even a reader needs space for its shared memory.
    // Short runs spool what they record; `tally status` folds the spool in first.
    std::fs::remove_file(filler).unwrap();
    fold_spool(&store, &config);
    let (during, counted) = events_and_rollups(&store);
    assert_eq!(during, counted, "a batch committed in part");

    run(&["task", "done", "after", "--workspace", "alpha"]);
    fold_spool(&store, &config);
    let (after, counted) = events_and_rollups(&store);
    assert_eq!(after, counted);
    assert!(
        after > during,
        "recording resumed once space was freed ({during} -> {after})"
    );
}

#[test]
fn a_collector_out_of_space_answers_503_and_loses_nothing_it_acknowledged() {
    let Some(disk) = Tmpfs::mount("4m", "") else { return };
    let db = disk.path().join("collector.db");
    let db = db.to_str().unwrap();
    let (ingest, admin) = (create_key(db, "nexus", "ingest"), create_key(db, "nexus", "admin"));
    let collector = Collector::start(db, None);
    let agent = agent();
    let url = collector.url("/v1/events/batch");
    let mut acknowledged = Vec::new();
    let first = commands("nexus", 50);
    let reply = post_json(&agent, &url, &ingest, &json!({"events": first})).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    acknowledged.extend(first.iter().map(id_of));

    let filler = fill(disk.path());
    let mut refused = None;
    for _ in 0..40 {
        let batch = commands("nexus", 500);
        let reply = post_json(&agent, &url, &ingest, &json!({"events": batch})).unwrap();
        match reply.status {
            200 => {
                assert_eq!(reply.json()["accepted"], 500, "{}", reply.body);
                acknowledged.extend(batch.iter().map(id_of));
            }
            503 => {
                let retry: u64 = reply
                    .headers
                    .get("Retry-After")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_else(|| panic!("503 without Retry-After: {:?}", reply.headers));
                assert!(retry >= 1);
                refused = Some(batch);
                break;
            }
            other => panic!("a full disk answered {other}: {}\n{}", reply.body, collector.stderr()),
        }
    }
    let refused = refused.expect("the collector never ran out of space");

    std::fs::remove_file(filler).unwrap();
    let reply = post_json(&agent, &url, &ingest, &json!({"events": refused})).unwrap();
    assert_eq!(reply.status, 200, "after space was freed: {}", reply.body);
    assert_eq!(reply.json()["accepted"], 500, "the refused batch had left no trace");
    acknowledged.extend(refused.iter().map(id_of));

    let mut stored: Vec<String> = list_events(&agent, &collector, &admin).iter().map(id_of).collect();
    stored.sort();
    acknowledged.sort();
    assert_eq!(stored, acknowledged, "every acknowledged event, each once");
}
