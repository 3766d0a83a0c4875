//! Integration tests of the `tally` binary, built as one test binary.
//!
//! Each module drives the real binary (and, for sync, the real `nexus`) end to end:
//! `cli` the local views with golden outputs, `report_html` the HTML report in headless
//! Chromium, `collector` `tally serve` on SQLite and PostgreSQL, `sync` uploads from an
//! app to a collector, `ingest` loading batch files, `disk` full and read-only file systems. Golden snapshots are named after the module path
//! (`snapshots/tests__cli__*.snap`).

mod cli;
mod collector;
mod deploy;
mod disk;
mod ingest;
mod report_html;
// The SDK's tests own the scripted collector; `sync` uses only part of it.
#[path = "../../tally/tests/scripted_collector.rs"]
#[allow(dead_code)]
mod scripted_collector;
mod sync;
