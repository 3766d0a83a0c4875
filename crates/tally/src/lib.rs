//! Tally's SDK: privacy-first telemetry that an app embeds to learn how it is used,
//! without ever slowing down, blocking or crashing the app.
//!
//! ```no_run
//! use tally::{Event, Telemetry};
//!
//! let telemetry = Telemetry::builder("nexus").version("1.4.2").open();
//! let command = telemetry.command("workspace create");
//! // ... create the workspace ...
//! telemetry.record(Event::builder("workspace", "workspace_created").workspace("my-project"));
//! command.success();
//! ```
//!
//! The primary type is [`Telemetry`], a cheap handle. [`Telemetry::record`] pushes the
//! event into a bounded in-memory queue and returns; a background thread hashes the
//! names the user typed, applies the telemetry [`Level`], and writes batches to the
//! app's SQLite store (`tally-store`). Settings come from a TOML file and the
//! environment ([`config`]); `DO_NOT_TRACK` and `<APP>_TELEMETRY=off` turn everything
//! off, in which case no file is created, no thread is started, and `record` returns
//! after one branch.
//!
//! The key design decision: the host's thread never waits on anything another process
//! can hold. Opening the store, migrations, hashing, writing and maintenance all happen
//! on the flush thread; the host waits only in [`Telemetry::flush`] and at exit, and
//! then at most the shutdown timeout (100 ms by default).
//!
//! # Layout
//! - `telemetry`: [`Telemetry`] and [`TelemetryBuilder`].
//! - [`config`]: the config file, environment overrides and [`config::Settings`].
//! - `worker`: the buffer and the flush thread.
//! - `command`: [`CommandGuard`], which times a command.
//! - `environment`: OS, arch, CPU count and CI, read without spawning processes.
//! - [`input`]: events described as JSON, for `tally record` and the C ABI.
//! - `sync` (feature `upload`): uploads to a collector, only with consent, exactly once;
//!   with it, `auto` upload on a background thread.
//! - `otlp` (features `upload` or `cli`): events as OpenTelemetry log records (OTLP export
//!   and upload).
//! - [`testing`]: a test double that captures events in memory.
//! - `cli` (feature `cli`): the user's own commands, as a clap subcommand a host mounts.
//!
//! # Features
//! - `upload` (on by default): uploading to a collector, the `sync` module and command,
//!   and `auto` upload. It brings an HTTP client with TLS (ureq, rustls) and gzip
//!   (flate2). An app that never uploads depends on `tally` with
//!   `default-features = false` and compiles none of them; in such a build
//!   `config set upload sync|auto` is refused with a message saying why, `sync`
//!   explains that it cannot upload, `status` says so next to an upload mode set by
//!   another build, and `auto` in the config file uploads nothing (debug mode says so).
//!   Batch files for `tally ingest` (`sync --to-dir`) are gzip, so they need the
//!   feature too.
//! - `cli` (off by default): the user's own commands (clap, ratatui, indicatif).

#[cfg(feature = "cli")]
pub mod cli;
mod command;
pub mod config;
mod environment;
mod handover;
pub mod input;
#[cfg(any(feature = "upload", feature = "cli"))]
pub mod otlp;
#[cfg(feature = "upload")]
pub mod sync;
mod telemetry;
pub mod testing;
mod worker;

pub use command::CommandGuard;
pub use config::{Settings, UploadMode};
pub use environment::ci_detected;
pub use tally_core::{Event, EventBuilder, Level, PropValue, Source};
pub use telemetry::{Telemetry, TelemetryBuilder, first_run_notice};
