//! The period summaries behind the views, checked against the events they summarise.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use tally_core::time::{HourKey, Period};
use tally_core::{Event, Timestamp};
use tally_store::stats::{DayActivity, PeriodSummary};
use tally_store::{DropCounts, Store};

use crate::app_events::{AppRun, DAY_MS, before};
use crate::prng::XorShift;

/// Not on an hour boundary, so that the hour holding the boundary between this period
/// and the one before belongs to both.
fn now() -> Timestamp {
    "2026-11-22T12:34:56.789Z".parse().unwrap()
}

const COMMANDS: [&str; 4] = ["task done", "build", "workspace create", "sync"];
const CATEGORIES: [&str; 3] = ["network", "io", ""];

/// About 3,000 events over the last 60 days in 40 sessions: commands with and without a
/// duration or an outcome, failures with and without a category, and other events.
fn history() -> Vec<Event> {
    let mut random = XorShift::seeded(10);
    let mut events = Vec::new();
    for session in 0..40 {
        let run = AppRun::new(&format!("0198a0b1-0000-7000-8000-{session:012}"));
        let mut ts = before(now(), random.below(60 * DAY_MS as u64) as i64);
        for _ in 0..75 {
            ts = Timestamp::from_millisecond(
                (ts.as_millisecond() + random.below(20 * 60 * 1000) as i64).min(now().as_millisecond() - 1),
            )
            .unwrap();
            let builder = match random.below(10) {
                0 => Event::builder("workspace", "workspace_created"),
                1 => Event::builder("task", "task_completed"),
                2 => Event::builder("error", "error_occurred"),
                _ => {
                    let mut command = Event::builder("command", "command_executed").command(*random.pick(&COMMANDS));
                    if random.below(8) != 0 {
                        command = command.duration_ms(random.below(30_000));
                    }
                    match random.below(6) {
                        0 => {
                            let category = *random.pick(&CATEGORIES);
                            command = command.success(false);
                            if !category.is_empty() {
                                command = command.error_category(category);
                            }
                        }
                        1 => {}
                        _ => command = command.success(true),
                    }
                    command
                }
            };
            events.push(run.record(builder.ts(ts)));
        }
    }
    events
}

fn stored_history() -> (tempfile::TempDir, Store, Vec<Event>) {
    let temp = tempfile::tempdir().unwrap();
    let mut store = Store::open(temp.path(), &Default::default()).unwrap();
    let events = history();
    for batch in events.chunks(500) {
        store.insert_batch(batch, DropCounts::default()).unwrap();
    }
    (temp, store, events)
}

/// What a summary of `period` must say, worked out from the events themselves: every
/// event of every rollup hour the period overlaps counts.
struct Expected {
    events: u64,
    runs: BTreeMap<String, (u64, u64)>,
    by_day: BTreeMap<String, DayActivity>,
    commands_by_hour: [u64; 24],
}

fn expected(events: &[Event], period: &Period, tz: &TimeZone) -> Expected {
    let (first, end) = period.hours();
    let mut expected = Expected {
        events: 0,
        runs: BTreeMap::new(),
        by_day: BTreeMap::new(),
        commands_by_hour: [0; 24],
    };
    for event in events {
        let hour = HourKey::of(event.ts);
        if hour < first || end <= hour {
            continue;
        }
        let local = hour.start().to_zoned(tz.clone());
        let day = expected
            .by_day
            .entry(local.strftime("%Y-%m-%d").to_string())
            .or_default();
        expected.events += 1;
        day.events += 1;
        if event.name == "command_executed" {
            let failed = u64::from(event.success == Some(false));
            let runs = expected.runs.entry(event.command.clone().unwrap()).or_default();
            runs.0 += 1;
            runs.1 += failed;
            day.commands += 1;
            day.failures += failed;
            expected.commands_by_hour[local.hour() as usize] += 1;
        }
    }
    expected
}

fn check(summary: &PeriodSummary, expected: &Expected) {
    assert_eq!(summary.events, expected.events);
    let runs: BTreeMap<String, (u64, u64)> = summary
        .by_command
        .iter()
        .map(|command| (command.command.clone(), (command.runs, command.failures)))
        .collect();
    assert_eq!(runs, expected.runs);
    assert_eq!(summary.by_day, expected.by_day);
    assert_eq!(summary.commands_by_hour, expected.commands_by_hour);
}

#[test]
fn one_pass_over_two_periods_equals_two_summaries() {
    let (_temp, store, events) = stored_history();
    // UTC, a zone with a half-hour offset, and one that leaves summer time inside the
    // previous month.
    for zone in ["UTC", "Asia/Kolkata", "Europe/Paris"] {
        let tz = TimeZone::get(zone).unwrap();
        for days in [1, 7, 30] {
            let period = Period::last_days(now(), days);
            let (current, previous) = store.summarize_with_previous(&period, &tz).unwrap();
            assert_eq!(current, store.summarize(&period, &tz).unwrap(), "{zone}, {days} days");
            assert_eq!(
                previous,
                store.summarize(&period.previous(), &tz).unwrap(),
                "{zone}, {days} days"
            );
            check(&current, &expected(&events, &period, &tz));
            check(&previous, &expected(&events, &period.previous(), &tz));
        }
    }
    // The month is no trivial case: both periods hold commands and sessions, and the
    // boundary hour is in both.
    let period = Period::last_days(now(), 30);
    let (current, previous) = store.summarize_with_previous(&period, &TimeZone::UTC).unwrap();
    assert!(current.commands.runs > 100 && previous.commands.runs > 100);
    assert!(current.sessions > 0 && previous.sessions > 0);
    assert!(!current.errors_by_category.is_empty() && current.commands.durations.duration_count > 0);
    let boundary = HourKey::of(period.from).start().strftime("%Y-%m-%d").to_string();
    assert!(current.by_day.contains_key(&boundary) && previous.by_day.contains_key(&boundary));
}

#[test]
fn an_empty_store_summarises_to_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open(temp.path(), &Default::default()).unwrap();
    let period = Period::last_days(now(), 7);
    let (current, previous) = store.summarize_with_previous(&period, &TimeZone::UTC).unwrap();
    assert_eq!(current, PeriodSummary::default());
    assert_eq!(previous, PeriodSummary::default());
}
