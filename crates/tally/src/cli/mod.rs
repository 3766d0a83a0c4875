//! The user's own view of their telemetry: status, consent, stats, insights, a live
//! dashboard, reports, export, upload, and what the collector holds about this install
//! (`remote`, `forget`) (feature `cli`).
//!
//! A host mounts [`TelemetryCommand`] as a clap subcommand (`nexus telemetry ...`), and
//! may mount [`StatsArgs`] and [`InsightsArgs`] as short forms (`nexus stats --week`);
//! the `tally` binary offers the same for any app (`tally --app nexus stats`). Every
//! command reads the store the SDK writes, found the same way the SDK finds it.

mod consent;
mod dashboard;
mod demo;
mod export;
mod export_otlp;
mod human;
mod insights;
mod output_file;
mod record;
mod remote;
mod report;
mod stats;
mod status;
mod sync;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use jiff::Timestamp;
use tally_core::Level;
use tally_store::{OpenOptions, Store};

pub use demo::{DemoArgs, run_demo};
pub use record::RecordArgs;

use crate::config::{ConfigError, Settings};

/// How long a command waits for another process's lock to fold the spool in.
const FOLD_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

/// The commands a host mounts under its own name (`nexus telemetry <command>`).
#[derive(Debug, Clone, Subcommand)]
pub enum TelemetryCommand {
    /// Show the level, upload mode, store location and size, and what it holds.
    Status,
    /// Turn recording on (at the configured level, `basic` if none).
    On,
    /// Turn recording off; a running app stops within a second.
    Off,
    /// Set the level: off, basic, enhanced or full (see docs/PRIVACY.md).
    Level {
        /// off, basic, enhanced or full.
        #[arg(value_parser = parse_level)]
        level: Level,
    },
    /// Delete every event, session and rollup, leaving no trace in the file.
    Purge {
        /// Do not ask (required when not on a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Usage summary and top commands.
    Stats(StatsArgs),
    /// Slow commands, error hotspots and suggestions.
    Insights(InsightsArgs),
    /// A live terminal dashboard; `q` quits.
    Dashboard,
    /// A weekly or monthly report (HTML with charts, Markdown or text).
    Report(ReportArgs),
    /// Export events (JSON, NDJSON, CSV) or metrics (OpenMetrics).
    Export(ExportArgs),
    /// Upload pending events to the app's collector (only when upload is sync or auto).
    Sync(SyncArgs),
    /// Show what the app's collector holds about this install (event count, first and
    /// last seen, counts by name), proving to it who this install is.
    Remote,
    /// Erase what the app's collector holds about this install; with --local, this
    /// machine's telemetry too.
    Forget {
        /// Also delete every event, session and rollup here, once the collector has
        /// erased its copy.
        #[arg(long)]
        local: bool,
        /// Do not ask (required when not on a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Show or change the upload settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Record an event as the app would (for scripts and other languages).
    // Boxed: its many flags would otherwise make every command as large.
    Record(Box<RecordArgs>),
}

/// `sync`: upload pending events.
#[derive(Debug, Clone, Default, Args)]
pub struct SyncArgs {
    /// Print the exact request bodies that would be sent, one per line, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also upload events recorded before upload was turned on.
    #[arg(long)]
    pub include_history: bool,
    /// Write the batches as files into this directory instead of sending them (for
    /// machines that may not connect; `tally ingest` loads them into a collector).
    #[arg(long)]
    pub to_dir: Option<PathBuf>,
}

/// `config`: the upload settings.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Set one setting: upload (local, sync, auto or counts), endpoint (the collector's URL) or key
    /// (an ingest key).
    Set {
        /// upload, endpoint or key.
        #[arg(value_enum)]
        setting: Setting,
        /// local, sync, auto or counts for upload; a URL for endpoint; an ingest key for key.
        value: String,
    },
    /// Show the settings in force, and where each comes from.
    Show,
}

/// A setting `config set` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Setting {
    /// local (nothing leaves the machine), sync (only an explicit `sync`) or auto.
    Upload,
    /// The collector's base URL, such as https://telemetry.example.com.
    Endpoint,
    /// The collector's ingest key for this app (tly_ingest_...).
    Key,
    /// What speaks at the endpoint: tally (the batch API) or otlp (OTLP/HTTP logs).
    EndpointKind,
}

/// Which period a summary covers.
#[derive(Debug, Clone, Copy, Default, Args)]
#[group(multiple = false)]
pub struct PeriodArgs {
    /// The last 24 hours.
    #[arg(long)]
    pub day: bool,
    /// The last 7 days.
    #[arg(long)]
    pub week: bool,
    /// The last 30 days (the default).
    #[arg(long)]
    pub month: bool,
}

impl PeriodArgs {
    /// Days covered and a label ("Last 7 Days").
    pub fn days(&self) -> (i64, &'static str) {
        if self.day {
            (1, "Last 24 Hours")
        } else if self.week {
            (7, "Last 7 Days")
        } else {
            (30, "Last 30 Days")
        }
    }
}

/// `stats`: the usage box and top commands.
#[derive(Debug, Clone, Default, Args)]
pub struct StatsArgs {
    /// The period summarised (`--day`, `--week`, or by default `--month`).
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `insights`: slow commands, failures and suggestions.
#[derive(Debug, Clone, Default, Args)]
pub struct InsightsArgs {
    /// Slowest commands, with p50/p95 and the trend against the previous period.
    #[arg(long)]
    pub slow: bool,
    /// Failure rates and error categories per command.
    #[arg(long)]
    pub errors: bool,
    /// The period looked at (`--day`, `--week`, or by default `--month`).
    #[command(flatten)]
    pub period: PeriodArgs,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A self-contained page with SVG charts that opens offline.
    Html,
    /// Markdown.
    Md,
    /// Plain text.
    Text,
}

/// `report`: the period's report.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The last 7 days (the default).
    #[arg(long, conflicts_with = "month")]
    pub week: bool,
    /// The last 30 days.
    #[arg(long)]
    pub month: bool,
    /// html, md or text.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON array of events.
    Json,
    /// One event per line.
    Ndjson,
    /// RFC 4180 CSV, one event per row.
    Csv,
    /// Counters and duration histograms in OpenMetrics text format.
    Openmetrics,
    /// OTLP JSON (`resourceLogs`): one log record per event, for OpenTelemetry tools.
    Otlp,
}

/// `export`: events or metrics, streamed.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// json, ndjson and csv write events; openmetrics writes counters and histograms.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Only events at or after this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<Timestamp>,
    /// Only events before this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<Timestamp>,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// What went wrong in a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    // Transparent: each wraps an error that says everything, and a `source` repeating
    // it would be printed twice by `{:#}`.
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] tally_store::StoreError),
    /// The config file could not be read or written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Output could not be written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A sync stopped; what was sent is marked, nothing was lost.
    #[cfg(feature = "upload")]
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    /// The command was used wrongly; the message says how to use it.
    #[error("{0}")]
    Usage(String),
    /// `record --strict`: the events were not written.
    #[error("{0}")]
    Write(String),
}

/// Which app's data a command works on.
#[derive(Debug, Clone)]
pub struct Target {
    /// The app whose store and config file are used, as the SDK was opened with it (`nexus`).
    pub app: String,
    /// The store directory, when given explicitly (`--dir`).
    pub dir: Option<PathBuf>,
    /// The time to treat as now, for reproducible output; the clock otherwise.
    pub now: Option<Timestamp>,
    /// How the user runs these commands, for hints (`nexus telemetry`); by default
    /// `tally --app APP`.
    pub invoked_as: Option<String>,
}

impl Target {
    /// The app's data, found as the SDK finds it.
    pub fn new(app: impl Into<String>) -> Target {
        Target {
            app: app.into(),
            dir: None,
            now: None,
            invoked_as: None,
        }
    }

    /// The command prefix to quote in hints: `nexus telemetry` or `tally --app nexus`.
    #[cfg_attr(not(feature = "upload"), allow(dead_code))]
    fn command(&self) -> String {
        self.invoked_as
            .clone()
            .unwrap_or_else(|| format!("tally --app {}", self.app))
    }

    /// Settings as the SDK would resolve them, with `--dir` applied.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::resolve(&self.app).0;
        if let Some(dir) = &self.dir {
            settings.dir = dir.clone();
        }
        settings
    }

    fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(tally_core::time::now_millis)
    }

    fn store_file(&self) -> PathBuf {
        self.settings().dir.join(tally_store::DB_FILE_NAME)
    }

    /// Opens the store if it exists, with the events other processes spooled folded
    /// in; reading commands never create one. A fold kept from finishing (another
    /// process holds the store) leaves the rest spooled, which `status` shows.
    fn open_existing(&self) -> Result<Option<Store>, CliError> {
        let settings = self.settings();
        if !settings.dir.join(tally_store::DB_FILE_NAME).exists() {
            return Ok(None);
        }
        let options = OpenOptions::default();
        let mut store = Store::open(&settings.dir, &options)?;
        // A command does not wait out another process's long write for this: what
        // stays spooled is shown by `status` and folded by the next writer.
        store.set_busy_timeout(FOLD_BUSY_TIMEOUT)?;
        if let Err(err) = store.fold_spools(&|| false) {
            if settings.debug {
                eprintln!("tally: {}: spooled events not folded in yet: {err}", self.app);
            }
        }
        store.set_busy_timeout(options.busy_timeout)?;
        Ok(Some(store))
    }

    /// Opens the store, or explains that nothing was recorded yet.
    fn open_required(&self) -> Result<Store, CliError> {
        self.open_existing()?.ok_or_else(|| {
            CliError::Usage(format!(
                "no telemetry recorded yet for {} (no store at {}); run the app first, or try `tally demo --app {}`",
                self.app,
                self.store_file().display(),
                self.app
            ))
        })
    }

    /// "Nexus" for `nexus`.
    fn title(&self) -> String {
        let mut chars = self.app.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }
}

/// Runs `command` for `target`, writing to standard output.
pub fn run(target: &Target, command: TelemetryCommand) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match command {
        TelemetryCommand::Status => status::run(target, &mut out),
        TelemetryCommand::On => consent::set_level(target, None, &mut out),
        TelemetryCommand::Off => consent::set_level(target, Some(Level::Off), &mut out),
        TelemetryCommand::Level { level } => consent::set_level(target, Some(level), &mut out),
        TelemetryCommand::Purge { yes } => consent::purge(target, yes, &mut out),
        TelemetryCommand::Stats(args) => stats::run(target, &args, &mut out),
        TelemetryCommand::Insights(args) => insights::run(target, &args, &mut out),
        TelemetryCommand::Dashboard => {
            drop(out);
            dashboard::run(target)
        }
        TelemetryCommand::Report(args) => report::run(target, &args, &mut out),
        TelemetryCommand::Export(args) => export::run(target, &args, &mut out),
        TelemetryCommand::Sync(args) => sync::run(target, &args, &mut out),
        TelemetryCommand::Remote => remote::show(target, &mut out),
        TelemetryCommand::Forget { local, yes } => remote::forget(target, local, yes, &mut out),
        TelemetryCommand::Config(ConfigCommand::Set { setting, value }) => {
            consent::set_setting(target, setting, &value, &mut out)
        }
        TelemetryCommand::Config(ConfigCommand::Show) => status::show_config(target, &mut out),
        TelemetryCommand::Record(args) => record::run(target, &args),
    };
    match result {
        // The reader went away (`| head`): what it wanted was written.
        Err(CliError::Io(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn parse_level(text: &str) -> Result<Level, String> {
    text.parse()
}

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 timestamp.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        return date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|zoned| zoned.timestamp())
            .map_err(|err| err.to_string());
    }
    tally_core::time::parse(text).map_err(|_| {
        format!("expected an RFC 3339 time such as 2026-11-22T10:00:00Z, or a date such as 2026-11-22 (got {text:?})")
    })
}

/// Writes to `path`, or to `out` when there is none.
fn with_output(
    path: Option<&PathBuf>,
    out: &mut dyn Write,
    write: impl FnOnce(&mut dyn Write) -> Result<(), CliError>,
) -> Result<(), CliError> {
    match path {
        Some(path) => output_file::write_atomically(path, write),
        None => write(out),
    }
}

/// Whether a person is at the terminal (for prompts and progress bars).
fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}
