//! The background flush thread and the buffer between it and the host.
//!
//! The host's side is [`WorkerHandle::push`]: one push into a lock-free queue bounded by
//! a counter (past `buffer_capacity` the oldest event is dropped and counted) and, once
//! per `max_batch` events, a non-blocking wake-up. It never touches SQLite, the file
//! system or a lock another process can hold, which is why `record()` cannot block. The
//! queue grows in small segments as events arrive, so opening telemetry allocates
//! nothing up front: a short CLI run pays only for the events it records.
//!
//! The thread owns everything slow: opening (and if need be recovering) the store,
//! the install identity and keyed hasher, finishing events (hashing, redaction, level),
//! batched writes, and maintenance. A batch that cannot be written because another
//! process holds the store stays in memory and is retried; nothing is dropped silently.
//!
//! Exit: what the thread cannot commit within the host's budget is finished and
//! written to the spool (`tally_store::spool`), which the next writer folds in. A
//! short-lived process whose store already has an identity cache skips SQLite
//! altogether: the host's thread hashes its events with the cached secret and spools
//! them at exit (`crate::handover`), and only a process that finds a backlog of spool
//! files, lives past the first flush interval or fills a batch opens the store (and
//! folds the backlog while the host works).
//! Writes wait for another process's lock in slices of [`BUSY_SLICE`], so a
//! shutdown request is never stuck behind a busy wait longer than that.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use crossbeam_queue::SegQueue;
use std::sync::atomic::AtomicUsize;
use tally_core::{EventBuilder, KeyedHasher, Level, Source};
use tally_store::{DropCounts, OpenOptions, Recovery, RetentionPolicy, Spool, Store};

use crate::config::{FlushSettings, LevelSource, Settings};
use crate::handover::{Finisher, Shared};

/// What the host hands to the flush thread.
pub(crate) enum Queued {
    /// An ordinary event.
    Event(EventBuilder),
    /// The session's first event; the thread adds the environment at `enhanced`.
    SessionStart(EventBuilder),
}

enum Control {
    Wake,
    /// Write everything by the `Instant`; reply whether it was.
    Flush(Sender<bool>, Instant),
    /// Write (or spool) everything by the first `Instant`, let a background upload use
    /// what is left of the host's time budget (until the second), reply, and end.
    Shutdown(Sender<bool>, Instant, Instant),
}

/// Events waiting for the flush thread, bounded by a count.
pub(crate) struct Buffer {
    queue: SegQueue<Queued>,
    len: AtomicUsize,
    capacity: usize,
    /// Dropped because the buffer was full, not yet persisted.
    pub(crate) dropped: AtomicU64,
    /// Events committed to the store by this run.
    written: AtomicU64,
}

impl Buffer {
    fn new(capacity: usize) -> Buffer {
        Buffer {
            queue: SegQueue::new(),
            len: AtomicUsize::new(0),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    /// Adds `item`, dropping the oldest when over capacity; returns the length before.
    fn push(&self, item: Queued) -> usize {
        let before = self.len.fetch_add(1, Ordering::Relaxed);
        self.queue.push(item);
        if before >= self.capacity && self.pop().is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        before
    }

    pub(crate) fn pop(&self) -> Option<Queued> {
        let item = self.queue.pop()?;
        self.len.fetch_sub(1, Ordering::Relaxed);
        Some(item)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The host's end of the flush thread.
pub(crate) struct WorkerHandle {
    shared: Arc<Shared>,
    control: Sender<Control>,
    max_batch: usize,
    shutdown_timeout: Duration,
    /// A new store is made by the thread, never by the host's spool.
    store_file: PathBuf,
    /// In `auto` upload mode the flush thread must reach the store, where background
    /// uploads start, so the host never takes the spool's shortcut at exit.
    auto_upload: bool,
}

/// What the flush thread needs to know about the app and its settings.
pub(crate) struct WorkerConfig {
    pub(crate) app: String,
    pub(crate) app_version: String,
    pub(crate) source: Source,
    pub(crate) session_id: String,
    pub(crate) settings: Settings,
    pub(crate) flush: FlushSettings,
}

impl WorkerHandle {
    /// Starts the flush thread.
    pub(crate) fn start(config: WorkerConfig) -> std::io::Result<WorkerHandle> {
        let unidentified = Finisher {
            app: config.app.clone(),
            app_version: config.app_version.clone(),
            source: config.source,
            session_id: config.session_id.clone(),
            install_id: String::new(),
            hasher: KeyedHasher::new(&[0; tally_core::hashing::SECRET_LEN]),
            level: config.settings.level,
            debug: config.settings.debug,
        };
        let shared = Arc::new(Shared::new(
            Buffer::new(config.flush.buffer_capacity),
            Spool::new(&config.settings.dir),
            unidentified,
        ));
        // A few slots: wake-ups beyond the first are redundant and are simply not sent.
        let (control, control_rx) = crossbeam_channel::bounded(4);
        let handle = WorkerHandle {
            shared: Arc::clone(&shared),
            control,
            max_batch: config.flush.max_batch.max(1),
            shutdown_timeout: config.flush.shutdown_timeout,
            store_file: config.settings.dir.join(tally_store::DB_FILE_NAME),
            auto_upload: config.settings.upload == crate::UploadMode::Auto,
        };
        let worker = Worker::new(config, shared);
        std::thread::Builder::new()
            .name("tally-flush".into())
            .spawn(move || worker.run(&control_rx))?;
        Ok(handle)
    }

    /// Buffers an event; never blocks.
    pub(crate) fn push(&self, item: Queued) {
        if self.shared.buffer.push(item) + 1 == self.max_batch {
            // Full or disconnected both mean the thread needs no further nudge.
            let _ = self.control.try_send(Control::Wake);
        }
    }

    /// Events committed to the store so far.
    pub(crate) fn written(&self) -> u64 {
        self.shared.buffer.written.load(Ordering::Relaxed)
    }

    /// Asks the thread to write everything buffered and waits up to the shutdown
    /// timeout. Returns whether it finished in time.
    pub(crate) fn flush(&self) -> bool {
        self.request(Control::Flush)
    }

    /// Like [`WorkerHandle::flush`], and the thread exits afterwards. What the thread
    /// has not saved (committed or spooled) shortly before the timeout, the host
    /// spools itself.
    pub(crate) fn shutdown(&self) -> bool {
        let deadline = Instant::now() + self.shutdown_timeout;
        if self.spool_on_host(deadline) {
            return true;
        }
        let handover = deadline - HOST_TAKEOVER.min(self.shutdown_timeout / 4);
        let (reply, replied) = crossbeam_channel::bounded(1);
        let message = Control::Shutdown(reply, handover, deadline);
        if self.control.send_deadline(message, deadline).is_err() {
            return self.shared.save_on_host();
        }
        if let Ok(saved) = replied.recv_deadline(handover) {
            return saved;
        }
        // Without an identity the host cannot hash, so it gives the thread (opening,
        // perhaps replacing, the store) the whole budget.
        if self.shared.finisher_or_cached().is_none() {
            return replied.recv_deadline(deadline).unwrap_or(false);
        }
        let saved = self.shared.save_on_host();
        // A background upload may still use the rest of the budget.
        let _ = replied.recv_deadline(deadline);
        saved
    }

    /// A short run (the thread has not opened the store, and there is no backlog for
    /// it to fold) spools its events from the host's thread: one small file, and no
    /// wait for the thread to be scheduled. Returns whether it did.
    fn spool_on_host(&self, deadline: Instant) -> bool {
        let shared = &self.shared;
        if self.auto_upload
            || !self.store_file.exists()
            || shared.spool.count_files() >= FOLD_BACKLOG
            || shared.finisher_or_cached().is_none()
            || !shared.claim_host_exit()
        {
            return false;
        }
        if !shared.save_on_host() {
            return false;
        }
        // The thread has nothing left to do; it ends on this or when the handle goes.
        let (reply, _) = crossbeam_channel::bounded(1);
        let _ = self.control.try_send(Control::Shutdown(reply, deadline, deadline));
        true
    }

    fn request(&self, message: impl FnOnce(Sender<bool>, Instant) -> Control) -> bool {
        self.request_by(message, Instant::now() + self.shutdown_timeout)
    }

    fn request_by(&self, message: impl FnOnce(Sender<bool>, Instant) -> Control, deadline: Instant) -> bool {
        let (reply, replied) = crossbeam_channel::bounded(1);
        match self.control.send_deadline(message(reply, deadline), deadline) {
            Ok(()) => replied.recv_deadline(deadline).unwrap_or(false),
            Err(_) => false,
        }
    }
}

struct Worker {
    app: String,
    app_version: String,
    source: Source,
    session_id: String,
    settings: Settings,
    flush: FlushSettings,
    shared: Arc<Shared>,
    store: Option<Store>,
    /// Whether the thread has opened the store and done its start-up work (folding,
    /// maintenance, upload); until then it only spools.
    writer: bool,
    spool: Spool,
    /// Events lost on the way to the spool, not yet persisted.
    spool_failed: u64,
    /// How events are finished, once the identity is known (also published to the host).
    finisher: Option<Arc<Finisher>>,
    identity: Option<tally_store::Identity>,
    invalid: u64,
    config_modified: Option<SystemTime>,
    last_maintenance_check: Option<Instant>,
    /// Signals when a background upload started by this thread ends.
    upload: Option<Receiver<()>>,
    /// The store is in memory (the file could not be opened): writes are not counted
    /// as written.
    in_memory: bool,
}

/// How often a long-running app checks whether maintenance is due.
const MAINTENANCE_CHECK_EVERY: Duration = Duration::from_secs(60 * 60);
/// How old the last maintenance may be before the next runs.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest one write waits for another process's lock; a write that meets a longer
/// lock is retried after this long, and meanwhile the thread answers the host.
pub(crate) const BUSY_SLICE: Duration = Duration::from_millis(20);
/// How often a running app folds other processes' spools in, at most.
const FOLD_EVERY: Duration = Duration::from_secs(1);
/// A process that finds this many spool files opens the store and folds them: the
/// cost of opening the store is shared by this many short runs.
const FOLD_BACKLOG: u64 = 64;
/// Longest a run's exit, or its fold at start, waits for another process's lock:
/// spooling instead is as safe and costs microseconds.
const SHORT_WAIT: Duration = Duration::from_millis(2);
/// What is kept of the thread's exit deadline for spooling what could not be committed.
const EXIT_SPOOL_MARGIN: Duration = Duration::from_millis(5);
/// How long before its timeout the host stops waiting for the thread and saves what
/// is left itself (at most a quarter of the timeout).
const HOST_TAKEOVER: Duration = Duration::from_millis(30);

impl Worker {
    fn new(config: WorkerConfig, shared: Arc<Shared>) -> Worker {
        let config_modified = modified(&config.settings.config_file);
        let spool = shared.spool.clone();
        Worker {
            app: config.app,
            app_version: config.app_version,
            source: config.source,
            session_id: config.session_id,
            settings: config.settings,
            flush: config.flush,
            shared,
            store: None,
            writer: false,
            spool,
            spool_failed: 0,
            finisher: None,
            identity: None,
            invalid: 0,
            config_modified,
            last_maintenance_check: None,
            upload: None,
            in_memory: false,
        }
    }

    fn run(mut self, control: &Receiver<Control>) {
        // A writer opens the store now, while the host does its work, so that its exit
        // only waits for the one commit; maintenance, when due, runs meanwhile and stops
        // as soon as the host asks for anything. A short run that can spool instead
        // never opens it.
        if !self.start_spooling() {
            self.become_writer(control);
        }
        let mut last_flush = Instant::now();
        let mut last_fold = Instant::now();
        loop {
            let wait = if self.shared.pending().is_empty() {
                self.flush.flush_interval.min(FOLD_EVERY)
            } else {
                BUSY_SLICE
            };
            let message = control.recv_timeout(wait);
            self.reload_level();
            match message {
                Ok(Control::Wake) => {
                    self.become_writer(control);
                    self.flush_all();
                    last_flush = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.become_writer(control);
                    if last_fold.elapsed() >= FOLD_EVERY {
                        self.fold(control);
                        last_fold = Instant::now();
                    }
                    if !self.shared.pending().is_empty() || last_flush.elapsed() >= self.flush.flush_interval {
                        self.flush_all();
                        last_flush = Instant::now();
                    }
                }
                Ok(Control::Flush(reply, deadline)) => {
                    self.become_writer(control);
                    let _ = reply.send(self.flush_by(deadline));
                    last_flush = Instant::now();
                }
                Ok(Control::Shutdown(reply, save_by, deadline)) => {
                    let saved = self.flush_at_exit(save_by);
                    // A background upload may finish within the host's budget; past
                    // it, the host exits and the upload is tried again later.
                    if let Some(upload) = self.upload.take() {
                        let _ = upload.recv_deadline(deadline);
                    }
                    let _ = reply.send(saved);
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush_at_exit(Instant::now() + self.flush.shutdown_timeout);
                    return;
                }
            }
            if self.writer {
                self.maybe_maintain(control);
            }
        }
    }

    /// Decides whether this run may skip the store and spool at exit: it may when the
    /// store exists with an identity cache, nothing needs the store now (background
    /// upload) and the spool holds no backlog to fold.
    fn start_spooling(&mut self) -> bool {
        // Known before anything slow, so that the host can save this run's events
        // at exit whatever the store does. A new store's first runs make the
        // identity the store then adopts.
        let store_exists = self.settings.dir.join(tally_store::DB_FILE_NAME).exists();
        let identity = self.spool.read_identity().or_else(|| {
            let candidate = tally_store::Identity::generate().ok()?;
            (!store_exists).then(|| self.spool.create_identity(&candidate).ok())?
        });
        let Some(identity) = identity else {
            return false;
        };
        self.set_identity(identity);
        if self.settings.upload == crate::UploadMode::Auto || !store_exists {
            return false;
        }
        self.spool.count_files() < FOLD_BACKLOG
    }

    /// Finishes events with `identity` from now on, and lets the host do so too.
    fn set_identity(&mut self, identity: tally_store::Identity) {
        if self
            .identity
            .as_ref()
            .is_some_and(|known| known.install_id == identity.install_id && known.secret == identity.secret)
        {
            return;
        }
        self.identity = Some(identity.clone());
        self.finisher = Some(Arc::new(Finisher {
            app: self.app.clone(),
            app_version: self.app_version.clone(),
            source: self.source,
            session_id: self.session_id.clone(),
            install_id: identity.install_id,
            hasher: KeyedHasher::new(&identity.secret),
            level: self.settings.level,
            debug: self.settings.debug,
        }));
        self.publish();
    }

    fn publish(&self) {
        self.shared.publish(self.finisher.clone());
    }

    /// Opens the store and does the start-up work a writer owes: fold the spool,
    /// maintenance when due, a background upload when due.
    fn become_writer(&mut self, control: &Receiver<Control>) {
        if self.writer || !self.shared.claim_writer() {
            return;
        }
        self.writer = true;
        self.open_store();
        // A held store is not waited for here: the spool stays for a later fold.
        if let Some(store) = &self.store {
            let _ = store.set_busy_timeout(SHORT_WAIT);
        }
        self.fold(control);
        if let Some(store) = &self.store {
            let _ = store.set_busy_timeout(BUSY_SLICE);
        }
        self.maybe_maintain(control);
        self.maybe_upload_in_background();
    }

    /// Folds other processes' spool files into the store, stopping between batches
    /// when the host asks for anything.
    fn fold(&mut self, control: &Receiver<Control>) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        // The first batch is folded even when the host is already waiting to exit
        // (`Store::fold_spools`); then a held store is not waited for at all.
        let host_waiting = !control.is_empty();
        if host_waiting {
            let _ = store.set_busy_timeout(Duration::ZERO);
        }
        let folded = store.fold_spools(&|| !control.is_empty());
        if host_waiting {
            let _ = store.set_busy_timeout(BUSY_SLICE);
        }
        match folded {
            Ok(report) if report.files > 0 => self.debug(format_args!(
                "folded {} spool files: {} events stored, {} already stored, {} of a purged store dropped",
                report.files, report.inserted, report.duplicates, report.stale
            )),
            Ok(_) => {}
            Err(err) => self.debug(format_args!("spooled events wait for a later fold: {err}")),
        }
    }

    /// Writes everything buffered, retrying a busy store until `deadline`; returns
    /// whether everything was written.
    fn flush_by(&mut self, deadline: Instant) -> bool {
        loop {
            if self.flush_all() {
                return true;
            }
            if Instant::now() + BUSY_SLICE >= deadline || self.store.is_none() {
                return false;
            }
        }
    }

    /// Commits what the budget allows and spools the rest; returns whether nothing
    /// was lost.
    fn flush_at_exit(&mut self, deadline: Instant) -> bool {
        if self.settings.level == Level::Off {
            return self.flush_all();
        }
        if let Some(store) = &self.store {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(EXIT_SPOOL_MARGIN)
                .min(SHORT_WAIT);
            if !left.is_zero() && store.set_busy_timeout(left).is_ok() && self.flush_all() {
                return true;
            }
        }
        self.spool_rest(deadline)
    }

    /// Finishes everything still buffered and writes it, with `pending`, to a spool
    /// file; if the spool cannot be written, tries the store. Returns whether nothing
    /// was lost.
    fn spool_rest(&mut self, deadline: Instant) -> bool {
        let shared = Arc::clone(&self.shared);
        if self.finisher.is_none() {
            let mut lost = shared.pending().len();
            while shared.buffer.pop().is_some() {
                lost += 1;
            }
            self.debug(format_args!(
                "{lost} events lost: no install identity to hash them with"
            ));
            return lost == 0;
        }
        let batch = self.take_batch(usize::MAX);
        let drops = self.take_drops();
        if batch.is_empty() && drops.is_empty() {
            return true;
        }
        let used = self.spool.used_bytes();
        match self.spool.write(&batch, drops, used) {
            Ok(written) => {
                if written < batch.len() {
                    self.debug(format_args!(
                        "{} events dropped: the spool is at its bound of {} bytes",
                        batch.len() - written,
                        tally_store::spool::MAX_SPOOL_BYTES
                    ));
                }
                forget(&mut shared.pending(), &batch);
                true
            }
            Err(err) => {
                self.debug(format_args!(
                    "cannot spool {} events in {} ({err}); trying the store",
                    batch.len(),
                    self.spool.dir().display()
                ));
                self.restore_drops(drops);
                self.write_directly(deadline)
            }
        }
    }

    /// The last resort at exit when the spool cannot be written.
    fn write_directly(&mut self, deadline: Instant) -> bool {
        if self.store.is_none() {
            self.open_store();
        }
        if let Some(store) = &self.store {
            let left = deadline.saturating_duration_since(Instant::now());
            if store.set_busy_timeout(left).is_ok() && self.flush_all() {
                return true;
            }
        }
        let lost = self.shared.pending().len() as u64;
        self.spool_failed += lost;
        self.debug(format_args!(
            "{lost} events lost: neither the spool nor the store could be written (a full disk or an unwritable \
directory); the next write that succeeds in this process counts them"
        ));
        false
    }

    fn debug(&self, message: std::fmt::Arguments<'_>) {
        if self.settings.debug {
            eprintln!("tally: {}: {message}", self.app);
        }
    }

    fn open_store(&mut self) {
        if self.store.is_some() {
            return;
        }
        let options = OpenOptions {
            busy_timeout: self.flush.busy_timeout,
            ..OpenOptions::default()
        };
        let opened = Store::open_or_recover(&self.settings.dir, &options).or_else(|err| {
            // Not recoverable in place (for example a lock held past the busy timeout
            // while creating the schema): keep this run's events in memory instead.
            Store::open_in_memory().map(|store| {
                (
                    store,
                    Recovery::InMemory {
                        reason: err.to_string(),
                    },
                )
            })
        });
        let (store, recovery) = match opened {
            Ok(opened) => opened,
            Err(err) => {
                self.debug(format_args!("no store, recording nothing: {err}"));
                return;
            }
        };
        match &recovery {
            Recovery::None => {}
            Recovery::MovedAside { reason, moved_to } => {
                self.debug(format_args!(
                    "{reason}; moved it to {} and started afresh",
                    moved_to.display()
                ));
            }
            Recovery::InMemory { reason } => {
                self.in_memory = true;
                self.debug(format_args!("{reason}; keeping this run's events in memory only"));
            }
        }
        if let Err(err) = self.adopt(store) {
            self.debug(format_args!("cannot read the install identity: {err}"));
        }
    }

    /// Makes `store` the one events go to: it takes the identity this run already
    /// hashes with (or keeps its own), the spool caches it, and the finisher is keyed
    /// by it. A store whose identity cannot be read is not used.
    fn adopt(&mut self, mut store: Store) -> Result<(), tally_store::StoreError> {
        let identity = match &self.identity {
            Some(candidate) => store.adopt_identity(candidate),
            None => store.identity(),
        }?;
        if *store.location() != tally_store::Location::Memory {
            self.cache_identity(&identity);
        }
        let _ = store.set_busy_timeout(BUSY_SLICE);
        self.store = Some(store);
        self.set_identity(identity);
        Ok(())
    }

    /// Keeps the spool's copy of the identity current, so later runs can spool
    /// without opening the store.
    fn cache_identity(&self, identity: &tally_store::Identity) {
        let cached = self.spool.read_identity();
        if cached.is_some_and(|cached| cached.install_id == identity.install_id && cached.secret == identity.secret) {
            return;
        }
        if let Err(err) = self.spool.write_identity(identity) {
            self.debug(format_args!(
                "cannot cache the identity in {} ({err}); every run opens the store",
                self.spool.dir().display()
            ));
        }
    }

    /// Writes everything buffered, one transaction per `max_batch` events; returns
    /// whether everything was written (with telemetry off: discarded).
    fn flush_all(&mut self) -> bool {
        let shared = Arc::clone(&self.shared);
        let mut pending = shared.pending();
        if self.settings.level == Level::Off {
            while shared.buffer.pop().is_some() {}
            pending.clear();
            return true;
        }
        drop(pending);
        if self.store.is_none() {
            return false;
        }
        loop {
            let batch = self.take_batch(self.flush.max_batch);
            let drops = self.take_drops();
            if batch.is_empty() && drops.is_empty() {
                return true;
            }
            if !self.write_pending(&batch, drops) {
                return false;
            }
            forget(&mut shared.pending(), &batch);
            if shared.buffer.is_empty() {
                return true;
            }
        }
    }

    /// Finishes queued events into `pending` (up to `limit`) and returns a copy of
    /// it to write: the events stay in `pending` until written, where the host can
    /// still save them, and the lock is not held while writing.
    fn take_batch(&mut self, limit: usize) -> Vec<tally_core::Event> {
        let shared = Arc::clone(&self.shared);
        let mut pending = shared.pending();
        self.finish_queued(&mut pending, limit);
        pending.clone()
    }

    fn take_drops(&mut self) -> DropCounts {
        DropCounts {
            buffer_full: self.shared.buffer.dropped.swap(0, Ordering::Relaxed),
            invalid: std::mem::take(&mut self.invalid),
            spool_failed: std::mem::take(&mut self.spool_failed),
            ..DropCounts::default()
        }
    }

    /// Puts counts back that were not persisted, for the next write.
    fn restore_drops(&mut self, drops: DropCounts) {
        self.shared
            .buffer
            .dropped
            .fetch_add(drops.buffer_full, Ordering::Relaxed);
        self.invalid += drops.invalid;
        self.spool_failed += drops.spool_failed;
    }

    /// Moves events from the queue to `pending`, finishing each (hash, redact, level,
    /// validate) on the way, until `pending` holds `limit`.
    fn finish_queued(&mut self, pending: &mut Vec<tally_core::Event>, limit: usize) {
        let Some(finisher) = self.finisher.clone() else {
            return;
        };
        while pending.len() < limit {
            let Some(item) = self.shared.buffer.pop() else {
                break;
            };
            match finisher.finish(item) {
                Ok(Some(event)) => pending.push(event),
                Ok(None) => {}
                Err(err) => {
                    self.invalid += 1;
                    self.debug(format_args!("event dropped: {err}"));
                }
            }
        }
    }

    /// Returns whether the pending batch was committed.
    fn write_pending(&mut self, pending: &[tally_core::Event], drops: DropCounts) -> bool {
        for attempt in 0..2 {
            let Some(store) = self.store.as_mut() else {
                break;
            };
            match store.insert_batch(pending, drops) {
                Ok(_) => {
                    if !self.in_memory {
                        self.shared
                            .buffer
                            .written
                            .fetch_add(pending.len() as u64, Ordering::Relaxed);
                    }
                    // Without fsyncs this costs a few page copies; it spares the next
                    // process to open the store from reading a long WAL.
                    let _ = store.checkpoint_now(BUSY_SLICE);
                    return true;
                }
                Err(err) if err.is_corrupt() && attempt == 0 => {
                    // The damaged file is moved aside and the batch retried once on a
                    // fresh store.
                    self.replace_corrupt_store(err.to_string());
                }
                Err(err) => {
                    self.debug(format_args!(
                        "{} events kept in memory, will retry: {err}",
                        pending.len()
                    ));
                    break;
                }
            }
        }
        // Put the counts back so the next successful batch persists them.
        self.restore_drops(drops);
        false
    }

    /// Picks up a level changed in the config file (`tally off`) while the app runs,
    /// unless the environment decides the level.
    fn reload_level(&mut self) {
        if !matches!(
            self.settings.level_source,
            LevelSource::ConfigFile | LevelSource::Default
        ) {
            return;
        }
        let now = modified(&self.settings.config_file);
        if now == self.config_modified {
            return;
        }
        self.config_modified = now;
        let settings = Settings::resolve(&self.app).0;
        if settings.level != self.settings.level {
            self.debug(format_args!("level is now {}", settings.level));
        }
        self.settings.level = settings.level;
        self.settings.level_source = settings.level_source;
        if let Some(finisher) = &self.finisher {
            let mut changed = Finisher::clone(finisher);
            changed.level = settings.level;
            self.finisher = Some(Arc::new(changed));
            self.publish();
        }
    }

    /// In `auto` upload mode, starts at most one background upload per interval, across
    /// every process of the app (`sync::auto`).
    fn maybe_upload_in_background(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        #[cfg(feature = "upload")]
        match crate::sync::auto::start_if_due(&self.app, &self.settings, store) {
            Ok(started) => self.upload = started,
            Err(err) => self.debug(format_args!("background upload not started: {err}")),
        }
        #[cfg(not(feature = "upload"))]
        if self.settings.upload == crate::UploadMode::Auto && *store.location() != tally_store::Location::Memory {
            self.debug(format_args!(
                "upload is auto, but this build cannot upload (tally's `upload` feature is off); events stay local"
            ));
        }
    }

    fn replace_corrupt_store(&mut self, reason: String) {
        self.store = None;
        self.finisher = None;
        self.identity = None;
        self.publish();
        let options = OpenOptions {
            busy_timeout: self.flush.busy_timeout,
            ..OpenOptions::default()
        };
        match Store::replace_corrupt(&self.settings.dir, &options, reason) {
            Ok((store, Recovery::MovedAside { reason, moved_to })) => {
                self.debug(format_args!(
                    "{reason}; moved it to {} and started afresh",
                    moved_to.display()
                ));
                if let Err(err) = self.adopt(store) {
                    self.debug(format_args!("cannot read the install identity: {err}"));
                }
            }
            Ok(_) => {}
            Err(err) => self.debug(format_args!("cannot replace the damaged store: {err}")),
        }
    }

    fn maybe_maintain(&mut self, control: &Receiver<Control>) {
        if self
            .last_maintenance_check
            .is_some_and(|checked| checked.elapsed() < MAINTENANCE_CHECK_EVERY)
        {
            return;
        }
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if !maintenance_due(store, &self.settings.retention) {
            self.last_maintenance_check = Some(Instant::now());
            return;
        }
        let now = jiff::Timestamp::now();
        // Stop between chunks as soon as the host asks for anything.
        let report = match store.run_maintenance(&self.settings.retention, now, &|| !control.is_empty()) {
            Ok(report) => report,
            Err(err) => {
                self.debug(format_args!("maintenance failed: {err}"));
                return;
            }
        };
        if !report.completed {
            return;
        }
        // Damaged data pages pass every read `open` does; look for them once a day, as
        // long as the host lets the check finish (a write that meets damage also
        // replaces the store).
        let waiting = control.clone();
        let damage = match store.quick_check_unless(move || !waiting.is_empty()) {
            Err(err) if err.is_corrupt() => Some(err.to_string()),
            _ => None,
        };
        self.last_maintenance_check = Some(Instant::now());
        self.debug(format_args!(
            "maintenance: deleted {} expired and {} over-size raw events, {} -> {} bytes",
            report.expired_for_age, report.trimmed_for_size, report.bytes_before, report.bytes_after
        ));
        if let Some(reason) = damage {
            self.replace_corrupt_store(reason);
        }
    }
}

/// Removes `saved` from the front of `pending`, unless the host took them meanwhile
/// (then `pending` no longer starts with them).
fn forget(pending: &mut Vec<tally_core::Event>, saved: &[tally_core::Event]) {
    if pending.first().map(|event| event.id) == saved.first().map(|event| event.id) {
        pending.drain(..saved.len().min(pending.len()));
    }
}

/// Maintenance is due when it never ran, last ran a day ago, or the store is over its cap.
fn maintenance_due(store: &Store, policy: &RetentionPolicy) -> bool {
    let last = store
        .meta("last_maintenance")
        .ok()
        .flatten()
        .and_then(|text| tally_core::time::parse(&text).ok());
    let stale = last.is_none_or(|last| {
        let age = jiff::Timestamp::now().duration_since(last);
        age.as_secs() >= MAINTENANCE_EVERY.as_secs() as i64
    });
    stale || store.size_bytes().is_ok_and(|size| size > policy.max_bytes)
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|meta| meta.modified()).ok()
}
