//! The [`Telemetry`] handle a host app holds.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_core::{Event, EventBuilder, Level, Source};

use crate::command::CommandGuard;
use crate::config::{FlushSettings, Settings};
use crate::testing::CaptureSink;
use crate::worker::{Queued, WorkerConfig, WorkerHandle};

/// A cheap, cloneable handle that records events for one app run (one session).
///
/// When telemetry is off the handle holds nothing and every call returns at once.
/// Dropping the last clone ends the session: it records `session_ended` and gives the
/// flush thread up to the shutdown timeout (default 100 ms) to write what is buffered.
#[derive(Clone, Default)]
pub struct Telemetry {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    app: String,
    level: Level,
    session_id: String,
    started: Instant,
    /// Whether this handle began the session (and so records its start and end), or
    /// joined one another run owns ([`TelemetryBuilder::join_session`]).
    owns_session: bool,
    sink: Sink,
}

pub(crate) enum Sink {
    Worker(WorkerHandle),
    Capture(CaptureSink),
}

impl Sink {
    fn push(&self, item: Queued) {
        match self {
            Sink::Worker(worker) => worker.push(item),
            Sink::Capture(capture) => capture.push(item),
        }
    }
}

impl Telemetry {
    /// Starts configuring telemetry for `app` (lowercase letters, digits, `-`, `_`).
    pub fn builder(app: impl Into<String>) -> TelemetryBuilder {
        TelemetryBuilder {
            app: app.into(),
            version: "0.0.0".to_owned(),
            source: Source::Cli,
            enabled: true,
            flush: FlushSettings::default(),
            first_run_notice: true,
            off_hint: None,
            dir: None,
            session: None,
        }
    }

    /// A handle that records nothing.
    pub fn disabled() -> Telemetry {
        Telemetry { inner: None }
    }

    pub(crate) fn from_sink(app: &str, level: Level, session_id: String, sink: Sink) -> Telemetry {
        Telemetry::with_sink(app, level, session_id, sink, true)
    }

    fn with_sink(app: &str, level: Level, session_id: String, sink: Sink, owns_session: bool) -> Telemetry {
        let telemetry = Telemetry {
            inner: Some(Arc::new(Inner {
                app: app.to_owned(),
                level,
                session_id,
                started: Instant::now(),
                owns_session,
                sink,
            })),
        };
        if let Some(inner) = telemetry.inner.as_ref().filter(|inner| inner.owns_session) {
            inner.sink.push(Queued::SessionStart(
                Event::builder("session", "session_started").stamp(),
            ));
        }
        telemetry
    }

    /// Records an event. Never blocks and never fails: the event is buffered and
    /// written by the flush thread; if the buffer is full the oldest event is dropped
    /// and counted.
    #[inline]
    pub fn record(&self, event: EventBuilder) {
        if let Some(inner) = &self.inner {
            inner.sink.push(Queued::Event(event.stamp()));
        }
    }

    /// Records the event `build` returns, calling it only when telemetry is on: with
    /// telemetry off this costs one branch, whatever the event. Use it where events are
    /// recorded in a hot loop.
    #[inline]
    pub fn record_with(&self, build: impl FnOnce() -> EventBuilder) {
        if let Some(inner) = &self.inner {
            inner.sink.push(Queued::Event(build().stamp()));
        }
    }

    /// Starts timing `command` (a subcommand path such as `workspace create`, never
    /// its arguments); see [`CommandGuard`].
    pub fn command(&self, command: impl Into<Cow<'static, str>>) -> CommandGuard {
        CommandGuard::new(self, command.into())
    }

    /// Writes everything buffered, waiting at most the shutdown timeout. Returns whether
    /// the write finished in time (always true when telemetry is off).
    pub fn flush(&self) -> bool {
        match self.inner.as_deref().map(|inner| &inner.sink) {
            Some(Sink::Worker(worker)) => worker.flush(),
            _ => true,
        }
    }

    /// How many events the flush thread has committed to the store so far (0 when
    /// telemetry is off). With [`Telemetry::flush`], a host that must know whether its
    /// events landed (such as `tally record --strict`) can tell.
    pub fn events_written(&self) -> u64 {
        match self.inner.as_deref().map(|inner| &inner.sink) {
            Some(Sink::Worker(worker)) => worker.written(),
            _ => 0,
        }
    }

    /// Whether events are being recorded.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The level in force for this run.
    pub fn level(&self) -> Level {
        self.inner.as_ref().map_or(Level::Off, |inner| inner.level)
    }

    /// The app name.
    pub fn app(&self) -> Option<&str> {
        self.inner.as_deref().map(|inner| inner.app.as_str())
    }

    /// This run's session id.
    pub fn session_id(&self) -> Option<&str> {
        self.inner.as_deref().map(|inner| inner.session_id.as_str())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.owns_session {
            let ended = Event::builder("session", "session_ended")
                .duration(self.started.elapsed())
                .stamp();
            self.sink.push(Queued::Event(ended));
        }
        if let Sink::Worker(worker) = &self.sink {
            // Bounded by the shutdown timeout: a locked or slow store costs the host at
            // most that long, and what was not committed in time is spooled for the next
            // writer, never waited for.
            worker.shutdown();
        }
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("app", &self.app())
            .field("level", &self.level())
            .finish_non_exhaustive()
    }
}

/// Configures and opens a [`Telemetry`] handle.
#[derive(Debug, Clone)]
#[must_use = "call open() to get a Telemetry handle"]
pub struct TelemetryBuilder {
    app: String,
    version: String,
    source: Source,
    enabled: bool,
    flush: FlushSettings,
    first_run_notice: bool,
    off_hint: Option<String>,
    dir: Option<std::path::PathBuf>,
    session: Option<String>,
}

impl TelemetryBuilder {
    /// The app's version (recorded on every event).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The kind of program (default `cli`).
    pub fn source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// `false` turns telemetry off for this run, as a host's own `--no-telemetry` flag would.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Events held in memory before the oldest are dropped (default 10,000).
    pub fn buffer_capacity(mut self, capacity: usize) -> Self {
        self.flush.buffer_capacity = capacity;
        self
    }

    /// Most events written per transaction (default 500).
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.flush.max_batch = max_batch;
        self
    }

    /// How often buffered events are written (default 1 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush.flush_interval = interval;
        self
    }

    /// Longest the host waits in `flush()` and on exit (default 100 ms).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.flush.shutdown_timeout = timeout;
        self
    }

    /// How long the flush thread waits for another process's write lock (default 5 s).
    /// The host never waits on it.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.flush.busy_timeout = timeout;
        self
    }

    /// Whether to print the first-run notice (default yes). A host that shows its own
    /// notice turns this off.
    pub fn first_run_notice(mut self, show: bool) -> Self {
        self.first_run_notice = show;
        self
    }

    /// The command that turns telemetry off, quoted in the first-run notice
    /// (default `tally --app APP off`).
    pub fn off_command(mut self, command: impl Into<String>) -> Self {
        self.off_hint = Some(command.into());
        self
    }

    /// Stores events in `dir` instead of the directory the config file and environment
    /// name (as `tally --dir` does).
    pub fn dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Records into session `id`, which another run owns, instead of starting one: events
    /// carry `id`, and no `session_started` or `session_ended` is recorded. For callers
    /// that record a few events per process on behalf of a longer run, such as `tally
    /// record --session`.
    pub fn join_session(mut self, id: impl Into<String>) -> Self {
        self.session = Some(id.into());
        self
    }

    /// Opens telemetry. Never fails and never panics: on any problem the handle records
    /// nothing, and with `<APP>_TELEMETRY_DEBUG=1` says why on stderr.
    pub fn open(self) -> Telemetry {
        let (mut settings, problem) = Settings::resolve(&self.app);
        if let Some(dir) = &self.dir {
            settings.dir = dir.clone();
        }
        let debug = |message: std::fmt::Arguments<'_>| {
            if settings.debug {
                eprintln!("tally: {}: {message}", self.app);
            }
        };
        if let Err(err) = tally_core::validate::check_app(&self.app) {
            debug(format_args!("telemetry off: {err}"));
            return Telemetry::disabled();
        }
        if let Some(err) = problem {
            debug(format_args!("telemetry off: config file unusable: {err}"));
            return Telemetry::disabled();
        }
        if !self.enabled {
            debug(format_args!("telemetry off: turned off by the app"));
            return Telemetry::disabled();
        }
        if settings.level == Level::Off {
            debug(format_args!("telemetry off: {}", settings.level_source));
            return Telemetry::disabled();
        }
        if self.first_run_notice && !settings.dir.join(tally_store::DB_FILE_NAME).exists() {
            let off = self
                .off_hint
                .clone()
                .unwrap_or_else(|| format!("tally --app {} off", self.app));
            eprintln!("{}", first_run_notice(&self.app, &settings, &off));
        }
        debug(format_args!(
            "recording at level {} ({}) into {}",
            settings.level,
            settings.level_source,
            settings.dir.display()
        ));
        let level = settings.level;
        let owns_session = self.session.is_none();
        let session_id = self.session.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let worker = WorkerHandle::start(WorkerConfig {
            app: self.app.clone(),
            app_version: self.version.clone(),
            source: self.source,
            session_id: session_id.clone(),
            settings: settings.clone(),
            flush: self.flush,
        });
        match worker {
            Ok(worker) => Telemetry::with_sink(&self.app, level, session_id, Sink::Worker(worker), owns_session),
            Err(err) => {
                debug(format_args!("telemetry off: cannot start the flush thread: {err}"));
                Telemetry::disabled()
            }
        }
    }
}

/// The text shown once, on the first run that records.
pub fn first_run_notice(app: &str, settings: &Settings, off_command: &str) -> String {
    let prefix = crate::config::env_prefix(app);
    let upload = match (settings.upload, &settings.endpoint) {
        (crate::UploadMode::Local, _) | (_, None) => "is never uploaded unless you turn upload on".to_owned(),
        (crate::UploadMode::Sync, Some(endpoint)) => format!("is uploaded to {endpoint} only when you run sync"),
        (crate::UploadMode::Auto, Some(endpoint)) => {
            format!("is uploaded to {endpoint} in the background (upload: auto)")
        }
        (crate::UploadMode::Counts, Some(endpoint)) => {
            format!("is uploaded to {endpoint} only as per-day counts, when you run sync (upload: counts)")
        }
    };
    format!(
        "{app} records usage telemetry on this machine (level: {level}): which commands run, how long they \
take and whether they fail; names you type are stored only as keyed hashes.\n\
It is kept in {dir} and {upload}.\n\
To turn it off: `{off_command}`, or set {prefix}_TELEMETRY=off or DO_NOT_TRACK=1.",
        level = settings.level,
        dir = settings.dir.join(tally_store::DB_FILE_NAME).display(),
    )
}
