//! Retention: raw events past it are deleted, and totals, which every batch already
//! added to the rollups, never change.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tally_core::limits::MAX_DURATION_MS;
use tally_core::{Event, Timestamp};
use tally_store::{DropCounts, RetentionPolicy, Store};

use crate::app_events::{AppRun, DAY_MS, before, now};
use crate::prng::XorShift;

const NAMES: [(&str, &str); 5] = [
    ("command", "command_executed"),
    ("workspace", "workspace_created"),
    ("task", "task_completed"),
    ("error", "error_occurred"),
    ("session", "session_started"),
];
const COMMANDS: [Option<&str>; 4] = [Some("task done"), Some("workspace create"), Some("sync"), None];
const OUTCOMES: [Option<bool>; 3] = [Some(true), Some(false), None];

/// An event of one of the kinds apps record, with any outcome and duration.
fn varied_event(run: &AppRun, ts: Timestamp, pick: usize, duration_ms: Option<u64>) -> Event {
    let (kind, name) = NAMES[pick % NAMES.len()];
    let mut builder = Event::builder(kind, name).ts(ts);
    if let Some(command) = COMMANDS[pick / NAMES.len() % COMMANDS.len()] {
        builder = builder.command(command);
    }
    if let Some(success) = OUTCOMES[pick / (NAMES.len() * COMMANDS.len()) % OUTCOMES.len()] {
        builder = builder.success(success);
    }
    if let Some(duration_ms) = duration_ms {
        builder = builder.duration_ms(duration_ms);
    }
    run.record(builder)
}

fn insert_all(store: &mut Store, events: &[Event]) {
    for batch in events.chunks(500) {
        let outcome = store.insert_batch(batch, DropCounts::default()).unwrap();
        assert_eq!(outcome.inserted, batch.len());
    }
}

fn raw_event_ids(store: &Store) -> BTreeSet<String> {
    let mut statement = store.connection().prepare("SELECT id FROM events").unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every column of every rollup row.
fn rollup_rows(store: &Store) -> Vec<Vec<rusqlite::types::Value>> {
    let mut statement = store
        .connection()
        .prepare(
            "SELECT * FROM metrics \
             ORDER BY hour, app, type, name, command, success, error_category",
        )
        .unwrap();
    let columns = statement.column_count();
    statement
        .query_map([], |row| (0..columns).map(|i| row.get(i)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Events counted per rollup hour (`YYYY-MM-DDTHH`).
fn events_per_rollup_hour(store: &Store) -> BTreeMap<String, u64> {
    let mut statement = store
        .connection()
        .prepare("SELECT hour, sum(count) FROM metrics GROUP BY hour")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn policy(retention_days: u32) -> RetentionPolicy {
    RetentionPolicy {
        retention_days,
        max_bytes: 1 << 40,
    }
}

#[test]
fn expiring_old_events_keeps_totals_identical() {
    let temp = tempfile::tempdir().unwrap();
    let mut store = Store::open(temp.path(), &Default::default()).unwrap();
    let mut random = XorShift::seeded(5);
    let runs: Vec<AppRun> = (0..7)
        .map(|i| AppRun::new(&format!("0198a0b1-0000-7000-8000-0000000000e{i}")))
        .collect();
    // Durations include none, zero, bucket edges and the largest allowed.
    let durations = [
        None,
        Some(0),
        Some(1),
        Some(2),
        Some(300_000),
        Some(300_001),
        Some(MAX_DURATION_MS),
    ];
    let cutoff = before(now(), 90 * DAY_MS);
    let mut events: Vec<Event> = (0..5_000)
        .map(|_| {
            let ts = before(now(), random.below(120 * DAY_MS as u64) as i64);
            let duration = if random.below(3) == 0 {
                *random.pick(&durations)
            } else {
                Some(random.below(20_000))
            };
            varied_event(random.pick(&runs), ts, random.below(60) as usize, duration)
        })
        .collect();
    // The edge of retention: one event exactly at the cutoff stays, one just before goes.
    events.push(varied_event(&runs[0], cutoff, 0, Some(5)));
    events.push(varied_event(&runs[0], before(cutoff, 1), 0, Some(5)));
    insert_all(&mut store, &events);

    let totals = store.totals().unwrap();
    assert_eq!(
        totals,
        store.raw_totals().unwrap(),
        "the rollups disagree with the events"
    );
    let mut per_hour = BTreeMap::new();
    for event in &events {
        let hour = tally_core::time::HourKey::of(event.ts).to_string();
        *per_hour.entry(hour).or_insert(0) += 1;
    }
    assert_eq!(events_per_rollup_hour(&store), per_hour);
    let rollups = rollup_rows(&store);

    let report = store.run_maintenance(&policy(90), now(), &|| false).unwrap();

    let (old, recent): (Vec<Event>, Vec<Event>) = events.iter().cloned().partition(|event| event.ts < cutoff);
    assert_eq!(report.expired_for_age, old.len() as u64);
    assert_eq!(report.trimmed_for_size, 0);
    assert_eq!(store.totals().unwrap(), totals);
    assert_eq!(rollup_rows(&store), rollups, "retention changed a rollup");
    let recent_ids: BTreeSet<String> = recent.iter().map(|event| event.id.to_string()).collect();
    assert_eq!(raw_event_ids(&store), recent_ids);
    let mut only_recent = Store::open_in_memory().unwrap();
    insert_all(&mut only_recent, &recent);
    assert_eq!(store.raw_totals().unwrap(), only_recent.raw_totals().unwrap());
    store.quick_check().unwrap();

    let report = store.run_maintenance(&policy(90), now(), &|| false).unwrap();
    assert_eq!((report.expired_for_age, report.trimmed_for_size), (0, 0));
    assert_eq!(store.totals().unwrap(), totals);
    assert_eq!(raw_event_ids(&store), recent_ids);
    assert_eq!(rollup_rows(&store), rollups);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Retention in two passes keeps totals and deletes exactly the raw events past it,
    /// whatever the ages, kinds and durations.
    #[test]
    fn retention_never_changes_totals(
        recorded in prop::collection::vec(
            (0..120 * DAY_MS, 0usize..60, prop::option::of(0..=MAX_DURATION_MS)),
            1..150,
        ),
        first_pass_days_ago in 0i64..60,
        retention_days in 0u32..130,
    ) {
        let mut store = Store::open_in_memory().unwrap();
        let run = AppRun::new("0198a0b1-0000-7000-8000-0000000000f1");
        let events: Vec<Event> = recorded
            .iter()
            .map(|(age_ms, pick, duration)| {
                varied_event(&run, before(now(), *age_ms), *pick, *duration)
            })
            .collect();
        insert_all(&mut store, &events);
        let totals = store.totals().unwrap();
        prop_assert_eq!(&store.raw_totals().unwrap(), &totals);

        let first_pass = before(now(), first_pass_days_ago * DAY_MS);
        store.run_maintenance(&policy(retention_days), first_pass, &|| false).unwrap();
        prop_assert_eq!(&store.totals().unwrap(), &totals);
        store.run_maintenance(&policy(retention_days), now(), &|| false).unwrap();
        prop_assert_eq!(&store.totals().unwrap(), &totals);

        let cutoff = before(now(), i64::from(retention_days) * DAY_MS);
        let kept: BTreeSet<String> = events
            .iter()
            .filter(|event| event.ts >= cutoff)
            .map(|event| event.id.to_string())
            .collect();
        prop_assert_eq!(raw_event_ids(&store), kept);
        let counted: u64 = events_per_rollup_hour(&store).values().sum();
        prop_assert_eq!(counted, events.len() as u64);
    }
}
