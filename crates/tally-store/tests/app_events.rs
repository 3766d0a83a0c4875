//! Events as the Nexus CLI records them, finished the way the SDK finishes them.

use tally_core::hashing::SECRET_LEN;
use tally_core::{Event, EventBuilder, EventContext, KeyedHasher, Level, Source, Timestamp};

/// The install every test event comes from.
pub(crate) const INSTALL_ID: &str = "0193a0b1-0000-4000-8000-0000000000aa";

/// One run of the app: its session, and the hasher its events are finished with.
pub(crate) struct AppRun {
    session_id: String,
    hasher: KeyedHasher,
}

impl AppRun {
    pub(crate) fn new(session_id: &str) -> AppRun {
        AppRun {
            session_id: session_id.to_owned(),
            hasher: KeyedHasher::new(&[1; SECRET_LEN]),
        }
    }

    /// Finishes `builder` at level full, as the SDK does before storing.
    pub(crate) fn record(&self, builder: EventBuilder) -> Event {
        let context = EventContext {
            app: "nexus",
            app_version: "1.4.2",
            source: Source::Cli,
            session_id: &self.session_id,
            install_id: INSTALL_ID,
            hasher: &self.hasher,
            level: Level::Full,
        };
        builder
            .finish(&context)
            .expect("test events are valid")
            .expect("level full keeps every event")
    }
}

/// `nexus task done`: 12 ms, successful, at `ts`.
pub(crate) fn task_done(ts: Timestamp) -> EventBuilder {
    Event::builder("command", "command_executed")
        .command("task done")
        .duration_ms(12)
        .success(true)
        .ts(ts)
}

/// The moment the tests treat as now.
pub(crate) fn now() -> Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

/// `ms` milliseconds before `ts`.
pub(crate) fn before(ts: Timestamp, ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ts.as_millisecond() - ms).unwrap()
}

/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 24 * 60 * 60 * 1000;
