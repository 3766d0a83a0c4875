//! `nexus`: a small workspace manager that shows how a CLI embeds Tally.
//!
//! It does a little real work (directories and files under a nexus home) and records
//! the events of Nexus ADR-004: `workspace_created`, `workspace_destroyed`,
//! `task_completed`, `command_executed` and `error_occurred`.

mod app;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = app::Cli::parse();
    match app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nexus: {err}");
            ExitCode::FAILURE
        }
    }
}
