//! Sync: uploading the user's events to the collector, only with consent, exactly once.
//!
//! Nothing here runs unless the user set upload to `sync` or `auto`. Events go in
//! `seq` order, at most [`MAX_EVENTS_PER_REQUEST`] and [`MAX_BODY_BYTES`] per gzip
//! request, with the level in force *now* applied again (a field the user has since
//! turned off is not sent). An event counts as sent only once the collector answered
//! for it, and the store's cursor moves in the same transaction that records the
//! refusals; an interrupted sync resumes where it stopped. Events recorded before
//! upload was turned on are sent only with `include_history`.
//!
//! Retries: only network errors and 429, 502, 503, 504, with exponential backoff and
//! full jitter, honouring `Retry-After`. A 413 splits the batch. Refused events are kept
//! aside with the reason and never retried. Any other answer stops the sync with its
//! message, and nothing of that batch is marked sent.

pub(crate) mod auto;
mod counts;
pub mod install;
mod otlp;
mod transport;

use std::io::Write;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Deserialize;
use tally_core::{Event, Level, apply_level};
use tally_store::Store;
use tally_store::sync::{Refusal, SyncStream};

pub use counts::{CountsReport, sync_counts};
pub use otlp::{OtlpTransport, network_transport};
pub use transport::{DirTransport, HttpTransport, Response, Transport, TransportError};

/// Events in one request, at most; the collector's batch limit.
pub const MAX_EVENTS_PER_REQUEST: usize = 1_000;
/// Uncompressed JSON per request, at most: under the collector's 5 MiB body limit.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt (doubled each time, then randomised).
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Options of one sync.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Also send events recorded before upload was turned on.
    pub include_history: bool,
    /// Write each request body to this writer instead of sending anything.
    pub dry_run: bool,
    /// How often and how long to retry a request that got no usable answer.
    pub retry: RetryPolicy,
    /// Give up (leaving the rest for next time) once this passes.
    pub deadline: Option<Instant>,
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// Events the collector answered for.
    pub sent: u64,
    /// Newly stored by the collector.
    pub accepted: u64,
    /// Already stored there (an earlier, interrupted sync got them through).
    pub duplicates: u64,
    /// Refused, kept aside with the reason.
    pub rejected: u64,
    /// Requests answered.
    pub requests: u64,
    /// Requests repeated after a retryable failure.
    pub retries: u64,
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The store could not be read or updated.
    #[error("{0}")]
    Store(#[from] tally_store::StoreError),
    /// The collector could not be reached, or stayed unavailable, after every retry.
    #[error(
        "the collector at {destination} is unreachable after {attempts} attempts ({last}); nothing was lost, run sync again later"
    )]
    Unreachable {
        /// The URL or directory batches were going to.
        destination: String,
        /// Attempts made, the first included.
        attempts: u32,
        /// What the last attempt met (a network error, or the retryable status and its
        /// message).
        last: String,
    },
    /// The collector refused the request as a whole.
    #[error("the collector answered {status}: {message}")]
    Refused {
        /// The HTTP status, one that retrying cannot change (401, 400, ...).
        status: u16,
        /// The collector's `error.message`, or the start of its body.
        message: String,
    },
    /// The time budget ran out; what was sent is marked, the rest waits.
    #[error("the time budget ran out; the rest waits for the next sync")]
    OutOfTime,
    /// Writing the dry run failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Deserialize)]
struct BatchAnswer {
    accepted: u64,
    duplicates: u64,
    #[serde(default)]
    rejected: Vec<RejectedEntry>,
}

#[derive(Deserialize)]
struct RejectedEntry {
    index: usize,
    code: String,
    message: String,
}

/// Uploads what is pending in `store` through `transport`, with `level` applied again.
/// `since` is when upload was turned on; `dry_run_out` receives the request bodies of
/// a dry run. `progress` is told (events answered, events pending) after each request.
pub fn sync(
    store: &mut Store,
    level: Level,
    since: Timestamp,
    transport: &mut dyn Transport,
    options: &SyncOptions,
    dry_run_out: &mut dyn Write,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SyncReport, SyncError> {
    let streams: &[SyncStream] = if options.include_history {
        &[SyncStream::History, SyncStream::Recent]
    } else {
        &[SyncStream::Recent]
    };
    let total: u64 = streams
        .iter()
        .map(|stream| store.pending_count(*stream, since))
        .sum::<Result<u64, _>>()?;
    // Days already uploaded as counts (`upload counts`) are never sent again as events.
    let counted = store.counts_through()?;
    let mut report = SyncReport::default();
    let mut run = Run {
        transport,
        options,
        report: &mut report,
    };
    for stream in streams {
        let mut after = store.sync_cursor(*stream)?;
        loop {
            let pending = store.pending_events(*stream, after, since, MAX_EVENTS_PER_REQUEST)?;
            let Some((last_seq, _)) = pending.last() else {
                break;
            };
            after = *last_seq;
            let pending: Vec<_> = pending
                .into_iter()
                .filter(|(_, event)| !counts::covers(counted, event.ts))
                .collect();
            for batch in split_by_size(pending, level) {
                if options.dry_run {
                    dry_run_out.write_all(&run.transport.readable_body(&batch_body(&batch)))?;
                    dry_run_out.write_all(b"\n")?;
                    run.report.sent += batch.len() as u64;
                    continue;
                }
                run.send(store, *stream, &batch)?;
                progress(run.report.sent, total);
            }
            if !options.dry_run {
                // Every event of the page was answered for or needs no answer (level
                // off, or counted already).
                store.acknowledge(*stream, after, &[], tally_core::time::now_millis())?;
            }
        }
    }
    if !options.dry_run {
        store.finish_sync(tally_core::time::now_millis())?;
    }
    Ok(report)
}

/// One event ready to go: its `seq`, and the event as the level in force allows.
type Outgoing = (i64, Event);

/// Applies `level` and groups events into requests under [`MAX_BODY_BYTES`].
fn split_by_size(pending: Vec<(i64, Event)>, level: Level) -> Vec<Vec<Outgoing>> {
    let mut batches = Vec::new();
    let mut current: Vec<Outgoing> = Vec::new();
    let mut bytes = 0;
    for (seq, event) in pending {
        // The level is applied again at upload: what the user turned off since
        // recording is not sent. `off` never reaches here (sync refuses to run).
        let Some(event) = apply_level(event, level) else {
            continue;
        };
        let size = event.to_json().len() + 1;
        if !current.is_empty() && bytes + size > MAX_BODY_BYTES {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push((seq, event));
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// The exact JSON of a request body.
fn batch_body(batch: &[Outgoing]) -> Vec<u8> {
    let events: Vec<&Event> = batch.iter().map(|(_, event)| event).collect();
    serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap_or_default()
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

pub(crate) struct Run<'a> {
    transport: &'a mut dyn Transport,
    options: &'a SyncOptions,
    report: &'a mut SyncReport,
}

impl Run<'_> {
    /// Sends `batch`, splitting it on 413, and records the answer in the store.
    fn send(&mut self, store: &mut Store, stream: SyncStream, batch: &[Outgoing]) -> Result<(), SyncError> {
        let response = self.send_with_retries(&gzip(&batch_body(batch)), batch.len())?;
        let now = tally_core::time::now_millis();
        match response.status {
            200..=299 => {
                let answer: BatchAnswer = serde_json::from_slice(&response.body).map_err(|err| SyncError::Refused {
                    status: response.status,
                    message: format!("an answer that is not a batch result ({err})"),
                })?;
                let refusals: Vec<Refusal> = answer
                    .rejected
                    .iter()
                    .filter_map(|entry| {
                        let (_, event) = batch.get(entry.index)?;
                        Some(Refusal {
                            id: event.id.to_string(),
                            ts: event.ts,
                            code: entry.code.clone(),
                            message: entry.message.clone(),
                        })
                    })
                    .collect();
                let last = batch.last().map_or(0, |(seq, _)| *seq);
                store.acknowledge(stream, last, &refusals, now)?;
                self.report.requests += 1;
                self.report.sent += batch.len() as u64;
                self.report.accepted += answer.accepted;
                self.report.duplicates += answer.duplicates;
                self.report.rejected += refusals.len() as u64;
                Ok(())
            }
            413 if batch.len() > 1 => {
                let (first, second) = batch.split_at(batch.len() / 2);
                self.send(store, stream, first)?;
                self.send(store, stream, second)
            }
            413 => {
                // One event alone is too large: the collector will never take it.
                let (seq, event) = &batch[0];
                let refusal = Refusal {
                    id: event.id.to_string(),
                    ts: event.ts,
                    code: "too_large".into(),
                    message: error_message(&response.body),
                };
                store.acknowledge(stream, *seq, &[refusal], now)?;
                self.report.requests += 1;
                self.report.sent += 1;
                self.report.rejected += 1;
                Ok(())
            }
            status => Err(SyncError::Refused {
                status,
                message: error_message(&response.body),
            }),
        }
    }

    pub(crate) fn send_with_retries(&mut self, body: &[u8], events: usize) -> Result<Response, SyncError> {
        let policy = self.options.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.transport.send(body, events);
            let (retry_after, last) = match result {
                Ok(response) if matches!(response.status, 429 | 502 | 503 | 504) => (
                    response.retry_after,
                    format!("HTTP {}: {}", response.status, error_message(&response.body)),
                ),
                Ok(response) => return Ok(response),
                Err(err) => (None, err.0),
            };
            if attempt >= policy.max_attempts.max(1) {
                return Err(SyncError::Unreachable {
                    destination: self.transport.destination(),
                    attempts: attempt,
                    last,
                });
            }
            let delay = retry_after.unwrap_or_else(|| full_jitter(policy, attempt));
            if let Some(deadline) = self.options.deadline
                && Instant::now() + delay > deadline
            {
                return Err(SyncError::OutOfTime);
            }
            std::thread::sleep(delay);
            self.report.retries += 1;
        }
    }
}

/// A random delay between zero and the capped exponential backoff for `attempt`.
fn full_jitter(policy: RetryPolicy, attempt: u32) -> Duration {
    let exponential = policy
        .base_delay
        .saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX))
        .min(policy.max_delay);
    // Randomness from the standard library's per-process hash keys and the clock:
    // jitter only has to spread clients apart, not be unpredictable.
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos() ^ u128::from(attempt));
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    exponential.mul_f64(unit)
}

/// The `message` of a collector error body, or the body itself.
pub(crate) fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_under_the_capped_backoff() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for attempt in 1..10 {
            let cap = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1));
            assert!(full_jitter(policy, attempt) <= cap);
        }
    }
}
