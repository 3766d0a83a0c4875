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

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use crossbeam_queue::SegQueue;
use std::sync::atomic::AtomicUsize;
use tally_core::{Event, EventBuilder, EventContext, KeyedHasher, Level, Source};
use tally_store::{DropCounts, OpenOptions, Recovery, RetentionPolicy, Store};

use crate::config::{FlushSettings, LevelSource, Settings};
use crate::environment;

/// What the host hands to the flush thread.
pub(crate) enum Queued {
    /// An ordinary event.
    Event(EventBuilder),
    /// The session's first event; the thread adds the environment at `enhanced`.
    SessionStart(EventBuilder),
}

enum Control {
    Wake,
    Flush(Sender<()>),
    /// Flush, let a background upload use what is left of the host's time budget
    /// (the `Instant`), reply, and end.
    Shutdown(Sender<()>, Instant),
}

/// Events waiting for the flush thread, bounded by a count.
pub(crate) struct Buffer {
    queue: SegQueue<Queued>,
    len: AtomicUsize,
    capacity: usize,
    /// Dropped because the buffer was full, not yet persisted.
    dropped: AtomicU64,
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

    fn pop(&self) -> Option<Queued> {
        let item = self.queue.pop()?;
        self.len.fetch_sub(1, Ordering::Relaxed);
        Some(item)
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The host's end of the flush thread.
pub(crate) struct WorkerHandle {
    buffer: Arc<Buffer>,
    control: Sender<Control>,
    max_batch: usize,
    shutdown_timeout: Duration,
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
        let buffer = Arc::new(Buffer::new(config.flush.buffer_capacity));
        // A few slots: wake-ups beyond the first are redundant and are simply not sent.
        let (control, control_rx) = crossbeam_channel::bounded(4);
        let handle = WorkerHandle {
            buffer: Arc::clone(&buffer),
            control,
            max_batch: config.flush.max_batch.max(1),
            shutdown_timeout: config.flush.shutdown_timeout,
        };
        let worker = Worker::new(config, buffer);
        std::thread::Builder::new()
            .name("tally-flush".into())
            .spawn(move || worker.run(&control_rx))?;
        Ok(handle)
    }

    /// Buffers an event; never blocks.
    pub(crate) fn push(&self, item: Queued) {
        if self.buffer.push(item) + 1 == self.max_batch {
            // Full or disconnected both mean the thread needs no further nudge.
            let _ = self.control.try_send(Control::Wake);
        }
    }

    /// Events committed to the store so far.
    pub(crate) fn written(&self) -> u64 {
        self.buffer.written.load(Ordering::Relaxed)
    }

    /// Asks the thread to write everything buffered and waits up to the shutdown
    /// timeout. Returns whether it finished in time.
    pub(crate) fn flush(&self) -> bool {
        self.request(|reply, _| Control::Flush(reply))
    }

    /// Like [`WorkerHandle::flush`], and the thread exits afterwards.
    pub(crate) fn shutdown(&self) -> bool {
        self.request(Control::Shutdown)
    }

    fn request(&self, message: impl FnOnce(Sender<()>, Instant) -> Control) -> bool {
        let deadline = Instant::now() + self.shutdown_timeout;
        let (reply, replied) = crossbeam_channel::bounded(1);
        match self.control.send_deadline(message(reply, deadline), deadline) {
            Ok(()) => replied.recv_deadline(deadline).is_ok(),
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
    buffer: Arc<Buffer>,
    store: Option<Store>,
    install_id: String,
    hasher: Option<KeyedHasher>,
    /// Finished events whose write failed; retried before anything newer.
    pending: Vec<Event>,
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

impl Worker {
    fn new(config: WorkerConfig, buffer: Arc<Buffer>) -> Worker {
        let config_modified = modified(&config.settings.config_file);
        Worker {
            app: config.app,
            app_version: config.app_version,
            source: config.source,
            session_id: config.session_id,
            settings: config.settings,
            flush: config.flush,
            buffer,
            store: None,
            install_id: String::new(),
            hasher: None,
            pending: Vec::new(),
            invalid: 0,
            config_modified,
            last_maintenance_check: None,
            upload: None,
            in_memory: false,
        }
    }

    fn run(mut self, control: &Receiver<Control>) {
        // Open now, while the host does its work, so that its exit only waits for the
        // one commit; the first flush happens on the interval, a wake-up or shutdown,
        // which for a short CLI run means all its events go in one transaction.
        // Maintenance, when due, runs meanwhile and stops as soon as the host asks for
        // anything; what it finished stays done and the rest waits for a later run.
        self.open_store();
        self.maybe_maintain(control);
        self.maybe_upload_in_background();
        loop {
            let message = control.recv_timeout(self.flush.flush_interval);
            self.reload_level();
            match message {
                Ok(Control::Wake) | Err(RecvTimeoutError::Timeout) => self.flush_all(),
                Ok(Control::Flush(reply)) => {
                    self.flush_all();
                    let _ = reply.send(());
                }
                Ok(Control::Shutdown(reply, deadline)) => {
                    self.flush_all();
                    // A background upload may finish within the host's budget; past
                    // it, the host exits and the upload is tried again later.
                    if let Some(upload) = self.upload.take() {
                        let _ = upload.recv_deadline(deadline);
                    }
                    let _ = reply.send(());
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush_all();
                    return;
                }
            }
            self.maybe_maintain(control);
        }
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

    /// Makes `store` the one events go to, with its install id and a hasher keyed by
    /// its secret; a store whose identity cannot be read is not used.
    fn adopt(&mut self, mut store: Store) -> Result<(), tally_store::StoreError> {
        let identity = store.identity()?;
        self.install_id = identity.install_id;
        self.hasher = Some(KeyedHasher::new(&identity.secret));
        self.store = Some(store);
        Ok(())
    }

    /// Writes everything buffered, one transaction per `max_batch` events.
    fn flush_all(&mut self) {
        if self.settings.level == Level::Off {
            while self.buffer.pop().is_some() {}
            self.pending.clear();
            return;
        }
        if self.store.is_none() {
            self.open_store();
        }
        loop {
            self.finish_queued();
            let drops = DropCounts {
                buffer_full: self.buffer.dropped.swap(0, Ordering::Relaxed),
                invalid: std::mem::take(&mut self.invalid),
            };
            if self.pending.is_empty() && drops.is_empty() {
                return;
            }
            if !self.write_pending(drops) {
                return;
            }
            if self.buffer.is_empty() {
                return;
            }
        }
    }

    /// Moves events from the queue to `pending`, finishing each (hash, redact, level,
    /// validate) on the way, until a batch is full.
    fn finish_queued(&mut self) {
        let Some(hasher) = &self.hasher else {
            return;
        };
        let context = EventContext {
            app: &self.app,
            app_version: &self.app_version,
            source: self.source,
            session_id: &self.session_id,
            install_id: &self.install_id,
            hasher,
            level: self.settings.level,
        };
        while self.pending.len() < self.flush.max_batch {
            let Some(item) = self.buffer.pop() else {
                break;
            };
            let builder = match item {
                Queued::Event(builder) => builder,
                Queued::SessionStart(builder) if context.level >= Level::Enhanced => environment::describe(builder),
                Queued::SessionStart(builder) => builder,
            };
            match builder.finish(&context) {
                Ok(Some(event)) => {
                    if self.settings.debug {
                        eprintln!("{}", event.to_json());
                    }
                    self.pending.push(event);
                }
                Ok(None) => {}
                Err(err) => {
                    self.invalid += 1;
                    if self.settings.debug {
                        eprintln!("tally: {}: event dropped: {err}", self.app);
                    }
                }
            }
        }
    }

    /// Returns whether the pending batch was committed.
    fn write_pending(&mut self, drops: DropCounts) -> bool {
        for attempt in 0..2 {
            let Some(store) = self.store.as_mut() else {
                break;
            };
            match store.insert_batch(&self.pending, drops) {
                Ok(_) => {
                    if !self.in_memory {
                        self.buffer
                            .written
                            .fetch_add(self.pending.len() as u64, Ordering::Relaxed);
                    }
                    self.pending.clear();
                    // Without fsyncs this costs a few page copies; it spares the next
                    // process to open the store from reading a long WAL.
                    let _ = store.checkpoint_now(self.flush.busy_timeout);
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
                        self.pending.len()
                    ));
                    break;
                }
            }
        }
        // Put the counts back so the next successful batch persists them.
        self.buffer.dropped.fetch_add(drops.buffer_full, Ordering::Relaxed);
        self.invalid += drops.invalid;
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
        self.hasher = None;
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
