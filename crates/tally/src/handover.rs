//! What the host's thread and the flush thread share, so that the host can save its
//! run's events itself when the flush thread does not answer within the exit budget
//! (a store being opened or folded on a starved CPU, a slow disk).
//!
//! The thread publishes a [`Finisher`] (the identity and settings events are finished
//! with) as soon as it has one, and keeps finished but uncommitted events in
//! [`Shared::pending`] until they are committed or spooled, holding its lock only
//! while it moves or finishes events in memory (it writes a copy). At exit the host
//! takes that lock, finishes what is still queued and spools everything: each event is
//! then in at least one place, and should a commit or spool of the thread race the
//! host's spool, the fold skips the events already stored by id.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tally_core::{Event, EventContext, KeyedHasher, Level, Source, ValidationError};
use tally_store::{DropCounts, Spool};

use crate::environment;
use crate::worker::{Buffer, Queued};

/// How events of this run are finished (hashed, redacted, levelled, validated).
#[derive(Clone)]
pub(crate) struct Finisher {
    pub(crate) app: String,
    pub(crate) app_version: String,
    pub(crate) source: Source,
    pub(crate) session_id: String,
    pub(crate) install_id: String,
    pub(crate) hasher: KeyedHasher,
    pub(crate) level: Level,
    /// Print each finished event on stderr (debug mode).
    pub(crate) debug: bool,
}

impl Finisher {
    pub(crate) fn finish(&self, item: Queued) -> Result<Option<Event>, ValidationError> {
        let context = EventContext {
            app: &self.app,
            app_version: &self.app_version,
            source: self.source,
            session_id: &self.session_id,
            install_id: &self.install_id,
            hasher: &self.hasher,
            level: self.level,
        };
        let builder = match item {
            Queued::Event(builder) => builder,
            Queued::SessionStart(builder) if self.level >= Level::Enhanced => environment::describe(builder),
            Queued::SessionStart(builder) => builder,
        };
        let event = builder.finish(&context)?;
        if let (true, Some(event)) = (self.debug, &event) {
            eprintln!("{}", event.to_json());
        }
        Ok(event)
    }
}

/// The state both threads hold.
pub(crate) struct Shared {
    pub(crate) buffer: Buffer,
    /// Finished events not yet committed or spooled.
    pub(crate) pending: Mutex<Vec<Event>>,
    finisher: Mutex<Option<Arc<Finisher>>>,
    /// The finisher before the identity is known (its `install_id` empty): the host
    /// completes it from the spool's identity cache if the thread never got that far.
    unidentified: Finisher,
    pub(crate) spool: Spool,
    /// Who saves this run's events at exit: [`SPOOLING`] until one side claims it,
    /// [`WRITER`] once the thread opens the store (it then writes, folds and
    /// maintains), [`HOST_EXITING`] once the host spools its own events at exit.
    phase: AtomicU8,
}

const SPOOLING: u8 = 0;
const WRITER: u8 = 1;
const HOST_EXITING: u8 = 2;

impl Shared {
    pub(crate) fn new(buffer: Buffer, spool: Spool, unidentified: Finisher) -> Shared {
        Shared {
            buffer,
            pending: Mutex::new(Vec::new()),
            finisher: Mutex::new(None),
            unidentified,
            spool,
            phase: AtomicU8::new(SPOOLING),
        }
    }

    /// The thread's claim to open the store; false once the host is exiting, whose
    /// process would cut any fold short.
    pub(crate) fn claim_writer(&self) -> bool {
        self.claim(WRITER) || self.phase.load(Ordering::Acquire) == WRITER
    }

    /// The host's claim to spool its own events at exit; false once the thread writes.
    pub(crate) fn claim_host_exit(&self) -> bool {
        self.claim(HOST_EXITING)
    }

    fn claim(&self, phase: u8) -> bool {
        self.phase
            .compare_exchange(SPOOLING, phase, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn pending(&self) -> MutexGuard<'_, Vec<Event>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn finisher(&self) -> Option<Arc<Finisher>> {
        self.finisher.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn publish(&self, finisher: Option<Arc<Finisher>>) {
        *self.finisher.lock().unwrap_or_else(PoisonError::into_inner) = finisher;
    }

    /// The thread's finisher, or one made from the spool's identity cache when the
    /// thread has not published one yet.
    pub(crate) fn finisher_or_cached(&self) -> Option<Arc<Finisher>> {
        self.finisher().or_else(|| {
            let identity = self.spool.read_identity()?;
            Some(Arc::new(Finisher {
                install_id: identity.install_id,
                hasher: KeyedHasher::new(&identity.secret),
                ..self.unidentified.clone()
            }))
        })
    }

    fn explain(&self, message: std::fmt::Arguments<'_>) {
        if self.unidentified.debug {
            eprintln!("tally: {}: {message}", self.unidentified.app);
        }
    }

    /// Spools everything finished or queued from the host's thread at exit. Returns
    /// whether nothing was lost.
    pub(crate) fn save_on_host(&self) -> bool {
        // The thread holds this lock only while it moves or finishes events in memory
        // (never while it waits for the store or the disk), so this wait is short.
        let mut pending = self.pending();
        let Some(finisher) = self.finisher_or_cached() else {
            // Without the identity nothing can be hashed, so nothing may be written.
            let lost = pending.is_empty() && self.buffer.is_empty();
            self.explain(format_args!(
                "the flush thread did not answer in time and there is no identity to hash events with; they are lost"
            ));
            return lost;
        };
        if finisher.level == Level::Off {
            pending.clear();
            while self.buffer.pop().is_some() {}
            return true;
        }
        let mut drops = DropCounts::default();
        while let Some(item) = self.buffer.pop() {
            match finisher.finish(item) {
                Ok(Some(event)) => pending.push(event),
                Ok(None) => {}
                Err(_) => drops.invalid += 1,
            }
        }
        drops.buffer_full = self.buffer.dropped.swap(0, Ordering::Relaxed);
        if pending.is_empty() && drops.is_empty() {
            return true;
        }
        let used = self.spool.used_bytes();
        let saved = self.spool.write(&pending, drops, used);
        if finisher.debug {
            match &saved {
                Ok(written) => eprintln!(
                    "tally: {}: {written} events spooled in {}, for the next writer to fold in",
                    finisher.app,
                    self.spool.dir().display()
                ),
                Err(err) => eprintln!(
                    "tally: {}: {} events lost: the flush thread did not answer in time and the spool cannot be \
written ({err})",
                    finisher.app,
                    pending.len()
                ),
            }
        }
        if saved.is_ok() {
            pending.clear();
        }
        saved.is_ok()
    }
}
