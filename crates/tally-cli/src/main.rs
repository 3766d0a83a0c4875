//! The `tally` command: inspect and control any app's Tally store, and run the
//! collector.
//!
//! `tally --app NAME <command>` finds the app's store as the SDK does (the platform data
//! directory, `<APP>_TELEMETRY_DIR`, or `--dir`) and runs the same commands a host app
//! mounts under its own name. `tally serve` and `tally keys` work on a collector's
//! database instead.

mod collector;
mod shell;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tally::cli::{DemoArgs, Target, TelemetryCommand};

/// Privacy-first telemetry: see, control and export what an app records about you, or
/// collect opted-in uploads as an app's owner.
#[derive(Debug, Parser)]
#[command(name = "tally", version, about, propagate_version = true)]
struct Cli {
    /// The app whose telemetry to work on (`nexus`).
    #[arg(long, global = true, env = "TALLY_APP")]
    app: Option<String>,
    /// The app's store directory, instead of finding it as the app does.
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Treat this time as now (RFC 3339), for reproducible output.
    #[arg(long, global = true, hide = true, value_parser = tally::cli::parse_time)]
    now: Option<jiff::Timestamp>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Telemetry(TelemetryCommand),
    /// Write a realistic, deterministic history into an empty store, to try the other commands.
    Demo(DemoArgs),
    /// Run the collector: HTTP ingest, stats, /metrics and a live stream.
    Serve(collector::ServeArgs),
    /// Make, list and revoke the collector's API keys.
    #[command(subcommand)]
    Keys(collector::KeysCommand),
    /// Load batch files written by `sync --to-dir` into a collector's database, for the
    /// app named by --app, with the checks of HTTP ingest.
    Ingest(collector::IngestArgs),
    /// Show this app's own data as the collector's dashboard, read-only, on 127.0.0.1.
    View(view::ViewArgs),
    /// Print a completion script: `tally completions bash > /etc/bash_completion.d/tally`.
    Completions(shell::CompletionsArgs),
    /// Print the man page (`tally man | man -l -`), or write every page with --out-dir.
    Man(shell::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tally: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let target = || -> anyhow::Result<Target> {
        let app = cli
            .app
            .clone()
            .context("which app? pass --app NAME (for example --app nexus) or set TALLY_APP")?;
        Ok(Target {
            app,
            dir: cli.dir.clone(),
            now: cli.now,
            invoked_as: None,
        })
    };
    match cli.command {
        Command::Telemetry(command) => tally::cli::run(&target()?, command)?,
        Command::Demo(ref args) => tally::cli::run_demo(&target()?, args, &mut std::io::stdout().lock())?,
        Command::Serve(args) => collector::serve(args)?,
        Command::Keys(command) => collector::keys(command)?,
        Command::Ingest(args) => collector::ingest(&target()?.app, args)?,
        Command::View(ref args) => view::view(&target()?, args)?,
        Command::Completions(ref args) => shell::completions::<Cli>(args)?,
        Command::Man(ref args) => shell::man::<Cli>(args)?,
    }
    Ok(())
}
