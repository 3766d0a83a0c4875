//! `tally ingest`: loads batch files written by `sync --to-dir` into a collector's
//! store, with the same checks and dedupe as HTTP ingest, for machines that may not
//! connect to the collector.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::config::ServerConfig;
use crate::storage::Storage;

/// What one file held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileReport {
    /// Events newly stored.
    pub accepted: usize,
    /// Events already stored.
    pub duplicates: usize,
    /// Events refused, with the reason: (index in the file, `field: rule`).
    pub rejected: Vec<(usize, String)>,
}

/// Reads `path` (a gzip or plain `{"events": [...]}` body) and stores its valid events.
/// A file that cannot be read at all is an error; bad events inside it are refused one
/// by one.
pub async fn ingest_file(store: &dyn Storage, path: &Path, config: &ServerConfig) -> Result<FileReport, String> {
    let raw = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let limit = config.max_body_bytes;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|err| format!("{}: not valid gzip: {err}", path.display()))?;
        out
    } else {
        raw
    };
    if bytes.len() > limit {
        return Err(format!(
            "{}: larger than max_body_bytes = {limit} bytes after decompression",
            path.display()
        ));
    }
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|err| format!("{}: not a batch body: {err}", path.display()))?;
    let Some(values) = body.get("events").and_then(Value::as_array) else {
        return Err(format!("{}: events: must be an array of events", path.display()));
    };
    let mut report = FileReport::default();
    let mut events = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        match crate::actions::ingest::parse_event(value.clone(), config.max_event_bytes) {
            Ok(event) => events.push(event),
            Err(refusal) => report.rejected.push((index, refusal.message)),
        }
    }
    for chunk in events.chunks(config.max_batch_events.max(1)) {
        let stored = store.insert(chunk.to_vec()).await.map_err(|err| err.to_string())?;
        let new = stored.iter().filter(|new| **new).count();
        report.accepted += new;
        report.duplicates += stored.len() - new;
    }
    Ok(report)
}
