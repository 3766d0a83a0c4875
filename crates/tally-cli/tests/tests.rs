//! Integration tests of the `tally` binary, built as one test binary.
//!
//! Each module drives the real binary (and, for sync, the real `nexus`) end to end:
//! `cli` the local views with golden outputs, `report_html` the HTML report in headless
//! Chromium, `collector` `tally serve` on SQLite and PostgreSQL, `sync` uploads from an
//! app to a collector, `otlp` OpenTelemetry in and out, `dashboard` the collector's page
//! and `view` the local one in headless Chromium, `deploy` the Prometheus, Grafana and
//! systemd kit, `shell` completions and man pages `ingest` loading batch files, `disk` full and
//! read-only file systems (`support` starts collectors and the browser for them). Golden
//! snapshots are named after the module path
//! (`snapshots/tests__cli__*.snap`).

mod cli;
mod collector;
mod dashboard;
mod deploy;
mod disk;
mod ingest;
mod otlp;
mod report_html;
mod shell;
mod support;
// The SDK's tests own the scripted collector; `sync` uses only part of it.
#[path = "../../tally/tests/scripted_collector.rs"]
#[allow(dead_code)]
mod scripted_collector;
mod sync;
mod view;
