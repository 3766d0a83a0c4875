//! The spool: finished events a process could not (or chose not to) commit before it
//! exited, kept next to the store until a writer folds them in.
//!
//! A short-lived process appends its events to a file of its own in `spool/` (no lock,
//! a few microseconds) instead of opening SQLite at exit; a store held by another
//! process past the exit budget leaves its events there too. The next writer of the
//! store, every CLI command that opens it and the flush thread of a running app fold
//! the files in with [`Store::fold_spools`], in the same all-or-nothing batches (with
//! rollups and session counters) as any other write.
//!
//! # Format
//! `spool/<unix ms>-<pid>-<random>.spool`, written whole as `<name>.part` and renamed,
//! so a folder never sees a file being written. Text lines:
//! - `tally-spool 1` (the format version; a file with another first line is left alone);
//! - `<checksum> E <event as wire JSON>` per event, already hashed, redacted and levelled;
//! - `<checksum> D <buffer_full> <invalid> <spool_full> <spool_failed>`: drop counts.
//!
//! `<checksum>` is 16 hex digits of FNV-1a 64 over the rest of the line after the space.
//! A line whose checksum does not match (a torn tail after a crash, or damage) ends the
//! file: it and what follows are skipped and counted as lost, never misread.
//!
//! # Folding, exactly once
//! A folder claims a file by renaming it to `<name>.claimed-<unix ms>` (one renamer
//! wins), inserts its events in one transaction that also writes the marker
//! `meta['spool_folded:<name>']`, then deletes the file. A folder that dies after the
//! rename leaves a claim that another folder takes over once its pid is gone (on
//! Linux) or it is [`STALE_AFTER`] old; a marker already present means the claim was committed and only the file is
//! removed, and an event id already stored is skipped by the store's dedupe, so a
//! file is counted once whatever crashes in between. Markers older than a day are
//! removed. A `.part` file whose writer is gone (its pid, on Linux) or that is older
//! than [`STALE_AFTER`] belongs to a writer that died mid-write, and is folded as far
//! as its records are whole.
//!
//! The identity file (`spool/identity`) caches the store's install id and hashing
//! secret, so a spooling process can finish (hash) its events without opening
//! SQLite; a folder drops (without counting, as purge would) spooled events of
//! another identity, and rewrites the cache when it is stale. `purge` removes the
//! whole directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tally_core::Event;
use tally_core::hashing::SECRET_LEN;

use crate::{DropCounts, Identity, Store, StoreError};

/// The spool directory inside a store's directory.
pub const SPOOL_DIR: &str = "spool";
/// Longest the spool may grow (all its files); past it, events are dropped and counted.
pub const MAX_SPOOL_BYTES: u64 = 8 * 1024 * 1024;
/// From this many files on, the spool's bytes are counted for its bound.
pub const EXACT_SIZE_FROM: u64 = 16;
/// A claim or partly written file older than this belongs to a process that died.
pub const STALE_AFTER: Duration = Duration::from_secs(10);
/// Most events folded in one transaction.
const FOLD_BATCH: usize = 500;
/// How long a fold marker is kept.
const MARKER_DAYS: i64 = 1;

const HEADER: &str = "tally-spool 1";
const IDENTITY_FILE: &str = "identity";
const IDENTITY_HEADER: &str = "tally-identity 1";
const SPOOL_EXT: &str = ".spool";
const PART_EXT: &str = ".part";
const CLAIM_MARK: &str = ".claimed-";

/// What a spool holds, for `status` and for deciding when to fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolSize {
    /// Files waiting (ready, claimed or partly written).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Event records in them (counted by lines; a torn line may be counted).
    pub events: u64,
}

/// What [`Store::fold_spools`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FoldReport {
    /// Files folded and removed.
    pub files: u64,
    /// Events newly stored.
    pub inserted: u64,
    /// Events already stored (a fold retried after a crash).
    pub duplicates: u64,
    /// Events of another identity (a purged or replaced store), dropped.
    pub stale: u64,
    /// Whether every ready file was folded (false: stopped early or busy).
    pub completed: bool,
}

/// One process's spool, in `<store dir>/spool`.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// The spool of the store in `store_dir`.
    pub fn new(store_dir: &Path) -> Spool {
        Spool {
            dir: store_dir.join(SPOOL_DIR),
        }
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counts files and bytes (and, with `count_events`, event records) waiting.
    pub fn size(&self, count_events: bool) -> SpoolSize {
        let mut size = SpoolSize::default();
        for (path, kind) in self.entries() {
            if kind == Kind::Other {
                continue;
            }
            size.files += 1;
            size.bytes += std::fs::metadata(&path).map_or(0, |meta| meta.len());
            if count_events {
                let bytes = std::fs::read(&path).unwrap_or_default();
                size.events += bytes.split(|&b| b == b'\n').filter(|line| is_event_line(line)).count() as u64;
            }
        }
        size
    }

    /// The bytes the spool holds, for its bound: counted exactly once
    /// [`EXACT_SIZE_FROM`] files wait, and taken as none below that (so that a short
    /// run's exit reads one directory and stats no file; a spool of so few files is
    /// far below its bound).
    pub fn used_bytes(&self) -> u64 {
        if self.count_files() < EXACT_SIZE_FROM {
            0
        } else {
            self.size(false).bytes
        }
    }

    /// How many spool files wait (names only: one directory read).
    pub fn count_files(&self) -> u64 {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        read.filter_map(Result::ok)
            .filter(|entry| Kind::of(&entry.file_name().to_string_lossy()) != Kind::Other)
            .count() as u64
    }

    /// Writes `events` and `drops` as one new spool file. Events that would take the
    /// spool past [`MAX_SPOOL_BYTES`] are not written and are counted in
    /// `spool_full` instead; returns how many events were written.
    pub fn write(&self, events: &[Event], mut drops: DropCounts, used_bytes: u64) -> std::io::Result<usize> {
        let mut text = String::with_capacity(64 + events.len() * 512);
        text.push_str(HEADER);
        text.push('\n');
        let mut written = 0;
        for event in events {
            let line = format!("E {}", event.to_json());
            if used_bytes + (text.len() + line.len() + 18) as u64 > MAX_SPOOL_BYTES {
                drops.spool_full += (events.len() - written) as u64;
                break;
            }
            push_record(&mut text, &line);
            written += 1;
        }
        if !drops.is_empty() {
            let line = format!(
                "D {} {} {} {}",
                drops.buffer_full, drops.invalid, drops.spool_full, drops.spool_failed
            );
            push_record(&mut text, &line);
        }
        if written == 0 && drops.is_empty() {
            return Ok(0);
        }
        std::fs::create_dir_all(&self.dir)?;
        let name = new_name();
        let part = self.dir.join(format!("{name}{PART_EXT}"));
        let mut file = std::fs::File::create_new(&part)?;
        if let Err(err) = file.write_all(text.as_bytes()) {
            drop(file);
            let _ = std::fs::remove_file(&part);
            return Err(err);
        }
        drop(file);
        std::fs::rename(&part, self.dir.join(format!("{name}{SPOOL_EXT}")))?;
        Ok(written)
    }

    /// The cached identity of the store, if present and whole.
    pub fn read_identity(&self) -> Option<Identity> {
        let text = std::fs::read_to_string(self.dir.join(IDENTITY_FILE)).ok()?;
        let body = text.strip_suffix('\n')?;
        let (checksum, rest) = body.split_once(' ')?;
        if checksum != format!("{:016x}", fnv1a(rest.as_bytes())) {
            return None;
        }
        let mut parts = rest.strip_prefix(IDENTITY_HEADER)?.split_ascii_whitespace();
        let install_id = parts.next()?.to_owned();
        let mut secret = [0u8; SECRET_LEN];
        hex::decode_to_slice(parts.next()?, &mut secret).ok()?;
        Some(Identity { install_id, secret })
    }

    /// Caches `identity` (written whole, then renamed over the old file).
    pub fn write_identity(&self, identity: &Identity) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let rest = format!(
            "{IDENTITY_HEADER} {} {}",
            identity.install_id,
            hex::encode(identity.secret)
        );
        let tmp = self.dir.join(format!("{IDENTITY_FILE}.{}{PART_EXT}", new_name()));
        std::fs::write(&tmp, format!("{:016x} {rest}\n", fnv1a(rest.as_bytes())))?;
        std::fs::rename(&tmp, self.dir.join(IDENTITY_FILE))
    }

    /// Caches `identity` unless an identity is cached already; returns the one cached.
    /// Processes racing to make the first identity of a new store all get the same.
    pub fn create_identity(&self, identity: &Identity) -> std::io::Result<Identity> {
        std::fs::create_dir_all(&self.dir)?;
        let rest = format!(
            "{IDENTITY_HEADER} {} {}",
            identity.install_id,
            hex::encode(identity.secret)
        );
        let tmp = self.dir.join(format!("{IDENTITY_FILE}.{}{PART_EXT}", new_name()));
        std::fs::write(&tmp, format!("{:016x} {rest}\n", fnv1a(rest.as_bytes())))?;
        // A hard link never replaces an existing file: the first process wins.
        let linked = std::fs::hard_link(&tmp, self.dir.join(IDENTITY_FILE));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(identity.clone()),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => self
                .read_identity()
                .ok_or_else(|| std::io::Error::other("the cached identity is damaged")),
            Err(err) => Err(err),
        }
    }

    /// Removes the spool and the identity cache (`purge`).
    pub fn remove_all(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    fn entries(&self) -> Vec<(PathBuf, Kind)> {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        read.filter_map(Result::ok)
            .map(|entry| {
                let name = entry.file_name();
                let kind = Kind::of(&name.to_string_lossy());
                (entry.path(), kind)
            })
            .collect()
    }

    /// The files ready to fold, oldest first: written whole, or left by a process
    /// that died while writing or folding them.
    fn ready(&self) -> Vec<(String, PathBuf)> {
        let now = now_ms();
        let stale = STALE_AFTER.as_millis() as i64;
        let mut ready: Vec<(String, PathBuf)> = Vec::new();
        for (path, kind) in self.entries() {
            let take = match &kind {
                Kind::Ready(_) => true,
                Kind::Claimed { at, pid, .. } => now - at >= stale || !process_alive(*pid),
                Kind::Part(name) => {
                    writer_pid(name).is_some_and(|pid| !process_alive(pid))
                        || std::fs::metadata(&path)
                            .and_then(|meta| meta.modified())
                            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age >= STALE_AFTER))
                }
                Kind::Other => false,
            };
            if let (true, Some(name)) = (take, kind.name()) {
                ready.push((name.to_owned(), path));
            }
        }
        ready.sort();
        ready
    }

    /// Claims one file by renaming it; `None` when another folder won the rename.
    fn claim(&self, name: String, path: &Path) -> Option<Claimed> {
        let claim = self
            .dir
            .join(format!("{name}{CLAIM_MARK}{}-{}", now_ms(), std::process::id()));
        std::fs::rename(path, &claim).ok()?;
        Some(Claimed { name, path: claim })
    }

    /// Gives a claimed file back (its fold did not commit), for the next folder.
    fn release(&self, claimed: &Claimed) {
        let _ = std::fs::rename(&claimed.path, self.dir.join(format!("{}{SPOOL_EXT}", claimed.name)));
    }
}

/// The pid in a spool file's name (`<unix ms>-<pid>-<random>`).
fn writer_pid(name: &str) -> Option<u32> {
    name.split('-').nth(1)?.parse().ok()
}

/// Whether process `pid` is alive; where that cannot be told cheaply, assume so (a
/// claim is then taken over only once it is stale).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Ready(String),
    Claimed { name: String, at: i64, pid: u32 },
    Part(String),
    Other,
}

impl Kind {
    fn of(file: &str) -> Kind {
        if let Some(name) = file.strip_suffix(SPOOL_EXT) {
            return Kind::Ready(name.to_owned());
        }
        if let Some((name, claim)) = file.split_once(CLAIM_MARK) {
            let (at, pid) = claim.split_once('-').unwrap_or((claim, ""));
            if let (Ok(at), Ok(pid)) = (at.parse(), pid.parse()) {
                return Kind::Claimed {
                    name: name.to_owned(),
                    at,
                    pid,
                };
            }
        }
        match file.strip_suffix(PART_EXT) {
            Some(name) if !name.starts_with(IDENTITY_FILE) => Kind::Part(name.to_owned()),
            _ => Kind::Other,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Kind::Ready(name) | Kind::Claimed { name, .. } | Kind::Part(name) => Some(name),
            Kind::Other => None,
        }
    }
}

struct Claimed {
    name: String,
    path: PathBuf,
}

/// A claimed file's whole records.
#[derive(Default)]
struct Contents {
    events: Vec<Event>,
    drops: DropCounts,
}

impl Store {
    /// Folds every spool file of this store's directory into it, one transaction per
    /// batch of files, asking `stop` between batches; see the module docs for why each
    /// file counts once even across crashes.
    pub fn fold_spools(&mut self, stop: &dyn Fn() -> bool) -> Result<FoldReport, StoreError> {
        let mut report = FoldReport::default();
        let Some(dir) = self.dir() else {
            report.completed = true;
            return Ok(report);
        };
        let spool = Spool::new(&dir);
        let mut ready = spool.ready().into_iter().peekable();
        if ready.peek().is_none() {
            report.completed = true;
            return Ok(report);
        }
        // A store that has no identity yet (its first run exited before committing)
        // takes the cached one its spooled events were hashed with.
        let cached = spool.read_identity();
        let identity = match &cached {
            Some(cached) => self.adopt_identity(cached)?,
            None => self.identity()?,
        };
        if cached.is_none_or(|cached| cached.install_id != identity.install_id) {
            let _ = spool.write_identity(&identity);
        }
        // A fold told to stop as soon as it can (its host is exiting) first checks that
        // the store takes writes now: claiming, reading and releasing a backlog of files
        // for a held store would cost that exit milliseconds for nothing.
        if stop() && !self.takes_writes_now()? {
            return Ok(report);
        }
        while ready.peek().is_some() {
            // The first batch is folded whatever `stop` says: a short run that found a
            // backlog opens the store to fold it, and its host usually asks to exit
            // before the store is open. Stopping then would leave the backlog to the
            // next run, which would pay for the open again, and the next.
            if report.files > 0 && stop() {
                return Ok(report);
            }
            let mut batch = Vec::new();
            let mut events = 0;
            while events < FOLD_BATCH {
                let Some((name, path)) = ready.next() else {
                    break;
                };
                if let Some(file) = spool.claim(name, &path) {
                    let contents = read_claimed(&file.path);
                    events += contents.events.len();
                    batch.push((file, contents));
                }
            }
            // A marker conflict means another folder committed one of these files
            // meanwhile; the second attempt leaves it out.
            let folded = self
                .fold_batch(&batch, &identity.install_id, &mut report)
                .and_then(|done| match done {
                    true => Ok(true),
                    false => self.fold_batch(&batch, &identity.install_id, &mut report),
                });
            match folded {
                Ok(_) => {
                    for (file, _) in &batch {
                        let _ = std::fs::remove_file(&file.path);
                    }
                }
                Err(err) => {
                    for (file, _) in &batch {
                        spool.release(file);
                    }
                    return Err(err);
                }
            }
        }
        report.completed = true;
        Ok(report)
    }

    /// Whether a write transaction starts within the busy timeout.
    fn takes_writes_now(&mut self) -> Result<bool, StoreError> {
        match self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        {
            // Dropped: rolled back, nothing written.
            Ok(_probe) => Ok(true),
            Err(err) => {
                let err = StoreError::from(err);
                if err.is_busy() { Ok(false) } else { Err(err) }
            }
        }
    }

    fn fold_batch(
        &mut self,
        batch: &[(Claimed, Contents)],
        install_id: &str,
        report: &mut FoldReport,
    ) -> Result<bool, StoreError> {
        // Files whose marker is stored were committed by a folder that died before
        // removing them.
        let fresh: Vec<&(Claimed, Contents)> = batch
            .iter()
            .filter(|(file, _)| {
                self.meta(&marker(&file.name))
                    .map(|found| found.is_none())
                    .unwrap_or(true)
            })
            .collect();
        let mut events = Vec::new();
        let mut drops = DropCounts::default();
        let mut stale = 0;
        for (_, contents) in &fresh {
            for event in &contents.events {
                if event.install_id == install_id {
                    events.push(event.clone());
                } else {
                    stale += 1;
                }
            }
            drops.add(contents.drops);
        }
        let names: Vec<&str> = fresh.iter().map(|(file, _)| file.name.as_str()).collect();
        let now = tally_core::time::format(tally_core::time::now_millis());
        let expired = tally_core::time::format(
            tally_core::time::now_millis()
                .checked_sub(jiff::SignedDuration::from_hours(24 * MARKER_DAYS))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        );
        let outcome = self.insert_batch_with(&events, drops, |tx, _, _| {
            // A plain INSERT: if another folder committed one of these files meanwhile,
            // this fails and the whole batch rolls back, to be retried without it.
            let mut add = tx.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2)")?;
            for name in &names {
                add.execute((marker(name), &now))?;
            }
            tx.execute(
                "DELETE FROM meta WHERE key GLOB 'spool_folded:*' AND value < ?1",
                [&expired],
            )?;
            Ok(())
        });
        match outcome {
            Ok(outcome) => {
                report.files += batch.len() as u64;
                report.inserted += outcome.inserted as u64;
                report.duplicates += outcome.duplicates as u64;
                report.stale += stale;
                Ok(true)
            }
            Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)))
                if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// The directory of a file store.
    fn dir(&self) -> Option<PathBuf> {
        match &self.location {
            crate::Location::File(path) => path.parent().map(Path::to_owned),
            crate::Location::Memory => None,
        }
    }
}

fn marker(name: &str) -> String {
    format!("spool_folded:{name}")
}

/// Reads a claimed file's whole records; a bad record ends the file and what it and
/// the rest held is counted as lost (`spool_failed`).
fn read_claimed(path: &Path) -> Contents {
    let mut contents = Contents::default();
    let Ok(bytes) = std::fs::read(path) else {
        return contents;
    };
    let mut lines = bytes.split_inclusive(|&b| b == b'\n');
    if lines.next() != Some(format!("{HEADER}\n").as_bytes()) {
        // A torn header (the writer died at once) holds nothing; anything else is a
        // format this build does not know.
        return contents;
    }
    let mut lost = 0;
    for line in lines {
        // Past the first bad line nothing is trusted: each line left is a record lost.
        if lost > 0 || parse_record(line, &mut contents).is_none() {
            lost += 1;
        }
    }
    contents.drops.spool_failed += lost;
    contents
}

fn parse_record(line: &[u8], contents: &mut Contents) -> Option<()> {
    let line = std::str::from_utf8(line.strip_suffix(b"\n")?).ok()?;
    let (checksum, rest) = line.split_once(' ')?;
    if checksum.len() != 16 || u64::from_str_radix(checksum, 16).ok()? != fnv1a(rest.as_bytes()) {
        return None;
    }
    if let Some(json) = rest.strip_prefix("E ") {
        contents.events.push(serde_json::from_str(json).ok()?);
    } else if let Some(counts) = rest.strip_prefix("D ") {
        let mut numbers = counts.split(' ').map(str::parse::<u64>);
        let mut next = || numbers.next().and_then(Result::ok);
        contents.drops.add(DropCounts {
            buffer_full: next()?,
            invalid: next()?,
            spool_full: next()?,
            spool_failed: next()?,
        });
    } else {
        return None;
    }
    Some(())
}

fn is_event_line(line: &[u8]) -> bool {
    line.get(16..19) == Some(b" E ")
}

fn push_record(text: &mut String, line: &str) {
    text.push_str(&format!("{:016x} ", fnv1a(line.as_bytes())));
    text.push_str(line);
    text.push('\n');
}

/// FNV-1a, 64 bits: enough to tell a torn or damaged line from a whole one.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `<unix ms>-<pid>-<random>`: sorts by time and never repeats across processes.
fn new_name() -> String {
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    format!("{:013}-{}-{}", now_ms(), std::process::id(), hex::encode(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_record_ends_the_file_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.spool");
        let mut text = format!("{HEADER}\n");
        push_record(&mut text, "D 1 2 0 0");
        push_record(&mut text, "D 1 0 0 0");
        text.truncate(text.len() - 3);
        std::fs::write(&path, &text).unwrap();
        let contents = read_claimed(&path);
        assert_eq!(contents.drops.buffer_full, 1);
        assert_eq!(contents.drops.invalid, 2);
        assert_eq!(contents.drops.spool_failed, 1);
    }

    #[test]
    fn names_are_classified() {
        assert_eq!(Kind::of("1-2-ab.spool"), Kind::Ready("1-2-ab".into()));
        assert_eq!(
            Kind::of("1-2-ab.claimed-77-9"),
            Kind::Claimed {
                name: "1-2-ab".into(),
                at: 77,
                pid: 9
            }
        );
        assert_eq!(Kind::of("1-2-ab.part"), Kind::Part("1-2-ab".into()));
        assert_eq!(Kind::of("identity"), Kind::Other);
        assert_eq!(Kind::of("identity.1-2-ab.part"), Kind::Other);
    }
}
