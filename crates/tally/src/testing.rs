//! A test double for host apps: a [`Telemetry`] that captures events in memory.
//!
//! ```
//! use tally::testing;
//! use tally::Level;
//!
//! let (telemetry, captured) = testing::capture("nexus", Level::Enhanced);
//! telemetry.record(tally::Event::builder("workspace", "workspace_created").workspace("demo"));
//! let created = captured.named("workspace_created");
//! assert_eq!(created.len(), 1);
//! assert_eq!(created[0].workspace, Some(testing::hash("demo")));
//! ```
//!
//! Events are finished exactly as the real flush thread finishes them (hashing,
//! redaction, level, validation), synchronously, with a fixed secret so that tests can
//! compute the expected tokens with [`hash`].

use std::sync::{Arc, Mutex, PoisonError};

use tally_core::hashing::SECRET_LEN;
use tally_core::{Event, EventContext, KeyedHasher, Level, Source, ValidationError};

use crate::Telemetry;
use crate::telemetry::Sink;
use crate::worker::Queued;

/// The install id captured events carry.
pub const INSTALL_ID: &str = "00000000-0000-4000-8000-000000000000";
const SECRET: [u8; SECRET_LEN] = [0x7a; SECRET_LEN];

/// The keyed hash captured events carry for `name`.
pub fn hash(name: &str) -> String {
    KeyedHasher::new(&SECRET).hash(name)
}

/// A telemetry handle for `app` at `level` whose events land in the returned [`Captured`].
pub fn capture(app: &str, level: Level) -> (Telemetry, Captured) {
    let captured = Captured::default();
    if level == Level::Off {
        return (Telemetry::disabled(), captured);
    }
    let session_id = uuid::Uuid::now_v7().to_string();
    let sink = CaptureSink {
        app: app.to_owned(),
        session_id: session_id.clone(),
        level,
        hasher: KeyedHasher::new(&SECRET),
        captured: captured.clone(),
    };
    (
        Telemetry::from_sink(app, level, session_id, Sink::Capture(sink)),
        captured,
    )
}

/// The events a captured [`Telemetry`] recorded.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    state: Arc<Mutex<CapturedState>>,
}

#[derive(Debug, Default)]
struct CapturedState {
    events: Vec<Event>,
    rejected: Vec<ValidationError>,
}

impl Captured {
    fn lock(&self) -> std::sync::MutexGuard<'_, CapturedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every event recorded, in order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// The events with this name.
    pub fn named(&self, name: &str) -> Vec<Event> {
        self.lock()
            .events
            .iter()
            .filter(|event| event.name == name)
            .cloned()
            .collect()
    }

    /// Why events were refused (the real SDK drops and counts them).
    pub fn rejected(&self) -> Vec<ValidationError> {
        self.lock().rejected.clone()
    }

    /// Forgets everything captured so far.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.events.clear();
        state.rejected.clear();
    }
}

pub(crate) struct CaptureSink {
    app: String,
    session_id: String,
    level: Level,
    hasher: KeyedHasher,
    captured: Captured,
}

impl CaptureSink {
    pub(crate) fn push(&self, item: Queued) {
        let builder = match item {
            Queued::Event(builder) | Queued::SessionStart(builder) => builder,
        };
        let context = EventContext {
            app: &self.app,
            app_version: "0.0.0-test",
            source: Source::Cli,
            session_id: &self.session_id,
            install_id: INSTALL_ID,
            hasher: &self.hasher,
            level: self.level,
        };
        let mut state = self.captured.lock();
        match builder.finish(&context) {
            Ok(Some(event)) => state.events.push(event),
            Ok(None) => {}
            Err(err) => state.rejected.push(err),
        }
    }
}
