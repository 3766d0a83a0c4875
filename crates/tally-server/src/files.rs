//! `tally ingest`: loads batch files written by `sync --to-dir` into a collector's
//! store, for machines that may not connect to the collector. A file is checked as an
//! HTTP batch from an ingest key of the named app is ([`check_batch`]): the same app,
//! future-timestamp, size and count rules, and the same dedupe.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use jiff::Timestamp;

use crate::actions::ingest::{CheckedBatch, Rejected, check_batch};
use crate::body::parse_json;
use crate::config::ServerConfig;
use crate::storage::Storage;

/// What one file held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileReport {
    /// Events newly stored.
    pub accepted: usize,
    /// Events already stored.
    pub duplicates: usize,
    /// Events refused, with their reason.
    pub rejected: Vec<Rejected>,
}

/// `path` for a terminal: control characters (an escape sequence in a file name) are
/// shown escaped, never sent raw.
pub fn shown(path: &Path) -> String {
    escape_controls(&path.to_string_lossy())
}

/// `text` with every control character escaped (`\u{1b}`, `\n`).
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Reads `path` (a gzip or plain `{"events": [...]}` body) and stores the valid events
/// of `app`. A file that cannot be read, is not a regular file, or is not a valid batch
/// (including one of more than `max_batch_events` events) is an error and stores
/// nothing; bad events inside a valid batch are refused one by one.
pub async fn ingest_file(
    store: &dyn Storage,
    path: &Path,
    app: &str,
    now: Timestamp,
    config: &ServerConfig,
) -> Result<FileReport, String> {
    let name = shown(path);
    let bytes = read_regular(path, config.max_body_bytes).map_err(|err| format!("{name}: {err}"))?;
    let body = parse_json(&bytes).map_err(|err| format!("{name}: {}", err.message))?;
    let CheckedBatch { events, rejected } =
        check_batch(body, app, now, config).map_err(|err| format!("{name}: {}", err.message))?;
    let stored = store.insert(events).await.map_err(|err| format!("{name}: {err}"))?;
    let accepted = stored.iter().filter(|new| **new).count();
    Ok(FileReport {
        accepted,
        duplicates: stored.len() - accepted,
        rejected,
    })
}

/// The bytes of a regular file, decompressed when gzip, at most `limit` of them.
/// Anything else (a FIFO, a device, a directory) is refused without reading from it,
/// so a FIFO cannot block `tally ingest`.
fn read_regular(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let kind = std::fs::metadata(path).map_err(|err| err.to_string())?.file_type();
    if !kind.is_file() {
        return Err("not a regular file; tally ingest reads only batch files".into());
    }
    let file = open_nonblocking(path).map_err(|err| err.to_string())?;
    // Checked again on the open file, in case the path changed in between.
    if !file.metadata().map_err(|err| err.to_string())?.is_file() {
        return Err("not a regular file; tally ingest reads only batch files".into());
    }
    let mut raw = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|err| err.to_string())?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|err| format!("not valid gzip: {err}"))?;
        out
    } else {
        raw
    };
    if bytes.len() > limit {
        return Err(format!(
            "larger than max_body_bytes = {limit} bytes (after decompression)"
        ));
    }
    Ok(bytes)
}

/// Opens for reading without waiting for a writer, should `path` have become a FIFO.
#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped() {
        let name = shown(Path::new("batch-\u{1b}]0;pwned\u{7}\n.json.gz"));
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert!(name.contains("\\u{1b}]0;pwned"), "{name}");
        assert_eq!(shown(Path::new("plain-é.json")), "plain-é.json");
    }
}
