//! Counts-only upload (`upload counts`): per complete UTC day, the events not yet sent,
//! counted per type, name, command, outcome and error category with a duration
//! histogram ([`tally_core::counts::DayCounts`]), to `POST /v1/counts`. Never an event.
//!
//! One rule keeps the two modes from sending a day twice or skipping one: an event
//! counts as sent when its `seq` is at or below the event cursor (sent as an event) or
//! its day is at or before [`tally_store::Store::counts_through`] (sent as counts).
//! A counts pass counts exactly the events that are neither, of days before today, so
//! a day begun in `sync` mode and finished in `counts` mode sends its rest as counts.
//! The collector stores one upload per install and day; a day is marked sent once the
//! collector answered for it, so a resend after an interruption changes nothing. An
//! event recorded later with a time in a day already counted (a clock set back) is not
//! sent: the collector would not take that day again.

use std::collections::BTreeMap;
use std::io::Write;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::Deserialize;
use tally_core::counts::{DayCounts, GroupCount};
use tally_core::{Level, apply_level};
use tally_store::Store;
use tally_store::rollup::Rollup;
use tally_store::sync::SyncStream;

use super::{MAX_EVENTS_PER_REQUEST, Run, SyncError, SyncOptions, SyncReport, Transport, error_message, gzip};

/// What a counts pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CountsReport {
    /// Uploads (one per install and day) the collector answered for.
    pub days: u64,
    /// Events they counted.
    pub events: u64,
    /// Uploads the collector already had (an earlier, interrupted pass got them there).
    pub already_stored: u64,
    /// Events of today, left for the day after.
    pub waiting_for_today: u64,
}

/// What one upload is keyed by: the day, then app and install.
type DayKey = (Date, String, String);
/// What one group of a day is keyed by: type, name, command, outcome, error category.
type GroupKey = (String, String, Option<String>, Option<bool>, Option<String>);

/// Whether an event at `ts` is covered by counts already uploaded through `counted`.
pub(crate) fn covers(counted: Option<Date>, ts: Timestamp) -> bool {
    counted.is_some_and(|through| day_of(ts) <= through)
}

fn day_of(ts: Timestamp) -> Date {
    ts.to_zoned(jiff::tz::TimeZone::UTC).date()
}

#[derive(Deserialize)]
struct CountsAnswer {
    stored: bool,
}

/// Uploads the counts of every complete day with events not yet sent, oldest day
/// first; `since` is when upload was turned on and `now` decides which days are
/// complete. A dry run writes each request body to `dry_run_out` and changes nothing.
pub fn sync_counts(
    store: &mut Store,
    level: Level,
    since: Timestamp,
    now: Timestamp,
    transport: &mut dyn Transport,
    options: &SyncOptions,
    dry_run_out: &mut dyn Write,
) -> Result<CountsReport, SyncError> {
    let today = day_of(now);
    let pass = Pass::read(store, level, since, today)?;
    let mut report = CountsReport {
        waiting_for_today: pass.waiting,
        ..CountsReport::default()
    };
    let mut scratch = SyncReport::default();
    let mut run = Run {
        transport,
        options,
        report: &mut scratch,
    };
    for (key, groups) in &pass.days {
        let body = body(key, groups);
        let events: u64 = groups.values().map(|rollup| rollup.count).sum();
        if options.dry_run {
            dry_run_out.write_all(&body)?;
            dry_run_out.write_all(b"\n")?;
            report.days += 1;
            report.events += events;
            continue;
        }
        let response = run.send_with_retries(&gzip(&body), groups.len())?;
        if !(200..300).contains(&response.status) {
            return Err(SyncError::Refused {
                status: response.status,
                message: error_message(&response.body),
            });
        }
        let answer: CountsAnswer = serde_json::from_slice(&response.body).map_err(|err| SyncError::Refused {
            status: response.status,
            message: format!("an answer that is not a counts result ({err})"),
        })?;
        store.set_counts_through(key.0)?;
        report.days += 1;
        if answer.stored {
            report.events += events;
        } else {
            report.already_stored += 1;
        }
    }
    if !options.dry_run {
        if let Some(seq) = pass.answered_through {
            store.acknowledge(SyncStream::Recent, seq, &[], tally_core::time::now_millis())?;
        }
        store.finish_sync(tally_core::time::now_millis())?;
    }
    Ok(report)
}

/// The unsent events of complete days, counted, and how far the event cursor may move.
struct Pass {
    days: BTreeMap<DayKey, BTreeMap<GroupKey, Rollup>>,
    /// The highest `seq` before the first event still unsent after this pass.
    answered_through: Option<i64>,
    /// Events of today or later, left for when their day is complete.
    waiting: u64,
}

impl Pass {
    /// Reads every pending recent event in `seq` order, with `level` applied again.
    fn read(store: &Store, level: Level, since: Timestamp, today: Date) -> Result<Pass, SyncError> {
        let counted = store.counts_through()?;
        let mut pass = Pass {
            days: BTreeMap::new(),
            answered_through: None,
            waiting: 0,
        };
        let mut prefix = true;
        let mut after = store.sync_cursor(SyncStream::Recent)?;
        loop {
            let page = store.pending_events(SyncStream::Recent, after, since, MAX_EVENTS_PER_REQUEST)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = *last;
            for (seq, event) in page {
                let day = day_of(event.ts);
                if day >= today {
                    pass.waiting += 1;
                    prefix = false;
                    continue;
                }
                if prefix {
                    pass.answered_through = Some(seq);
                }
                if covers(counted, event.ts) {
                    continue;
                }
                let Some(event) = apply_level(event, level) else {
                    continue;
                };
                let group = (
                    event.kind,
                    event.name,
                    event.command,
                    event.success,
                    event.error_category,
                );
                pass.days
                    .entry((day, event.app, event.install_id))
                    .or_default()
                    .entry(group)
                    .or_default()
                    .add(event.duration_ms);
            }
        }
        Ok(pass)
    }
}

/// The exact JSON of one day's upload: only what [`GroupCount`] holds.
fn body(key: &DayKey, groups: &BTreeMap<GroupKey, Rollup>) -> Vec<u8> {
    let (day, app, install_id) = key;
    let counts = DayCounts {
        app: app.clone(),
        install_id: install_id.clone(),
        day: *day,
        counts: groups
            .iter()
            .map(|((kind, name, command, success, error_category), rollup)| GroupCount {
                kind: kind.clone(),
                name: name.clone(),
                command: command.clone(),
                success: *success,
                error_category: error_category.clone(),
                count: rollup.count,
                duration_count: rollup.duration_count,
                duration_total_ms: rollup.duration_total_ms,
                histogram: rollup.histogram.counts.to_vec(),
            })
            .collect(),
    };
    serde_json::to_vec(&counts).unwrap_or_default()
}
