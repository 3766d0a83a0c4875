//! The commands, and the telemetry each records.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use tally::{Event, Telemetry};

/// A workspace manager.
#[derive(Debug, Parser)]
#[command(name = "nexus", version, about)]
pub(crate) struct Cli {
    /// Where workspaces live (default: ~/.nexus).
    #[arg(long, env = "NEXUS_HOME", global = true)]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// See and control what nexus records about your usage.
    #[command(subcommand)]
    Telemetry(TelemetryCli),
    /// Your usage summary (short for `telemetry stats`).
    Stats(tally::cli::StatsArgs),
    /// Slow commands, failures and suggestions (short for `telemetry insights`).
    Insights(tally::cli::InsightsArgs),
    /// Upload your usage to the nexus team, if you turned upload on (short for `telemetry sync`).
    Sync(tally::cli::SyncArgs),
    /// Create or destroy workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Work with tasks.
    #[command(subcommand)]
    Task(TaskCommand),
}

/// `nexus telemetry ...`: the commands every Tally host mounts, plus `view`.
#[derive(Debug, Subcommand)]
enum TelemetryCli {
    #[command(flatten)]
    Shared(tally::cli::TelemetryCommand),
    /// Your usage as a web page on this machine only (read-only, 127.0.0.1, a random token).
    View {
        /// Open the page in the default browser too.
        #[arg(long)]
        open: bool,
    },
}

#[derive(Debug, Subcommand)]
enum WorkspaceCommand {
    /// Create a workspace.
    Create {
        /// Letters, digits, `.`, `_` and `-`: it names a directory under the home (telemetry
        /// stores only a keyed hash of it).
        name: String,
        /// What to put in it.
        #[arg(long, value_enum, default_value_t = Template::Empty)]
        template: Template,
    },
    /// Destroy a workspace and everything in it.
    Destroy {
        /// The name it was created with.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// Mark a task done.
    Done {
        /// What the task is called (telemetry stores only a keyed hash of it).
        name: String,
        /// The workspace the task belongs to.
        #[arg(long, short)]
        workspace: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Template {
    Empty,
    Rust,
    Node,
    Python,
}

impl Template {
    fn as_str(self) -> &'static str {
        match self {
            Template::Empty => "empty",
            Template::Rust => "rust",
            Template::Node => "node",
            Template::Python => "python",
        }
    }

    /// Files the template creates, with their contents.
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Template::Empty => &[],
            Template::Rust => &[
                (
                    "Cargo.toml",
                    "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
                ),
                ("src/main.rs", "fn main() {}\n"),
            ],
            Template::Node => &[
                ("package.json", "{\"name\": \"app\", \"version\": \"0.1.0\"}\n"),
                ("index.js", "\n"),
            ],
            Template::Python => &[
                ("pyproject.toml", "[project]\nname = \"app\"\nversion = \"0.1.0\"\n"),
                ("app.py", "\n"),
            ],
        }
    }
}

/// A failure of a command, with the fixed category telemetry records for it.
#[derive(Debug, thiserror::Error)]
enum NexusError {
    #[error("invalid name {0:?}: use letters, digits, '.', '_' and '-', not starting with '.'")]
    InvalidName(String),
    #[error("workspace {0:?} already exists")]
    AlreadyExists(String),
    #[error("workspace {0:?} does not exist")]
    NotFound(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl NexusError {
    fn category(&self) -> &'static str {
        match self {
            NexusError::InvalidName(_) => "invalid_name",
            NexusError::AlreadyExists(_) => "already_exists",
            NexusError::NotFound(_) => "not_found",
            NexusError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => "permission",
            NexusError::Io { .. } => "io",
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NexusError {
    let path = path.to_owned();
    move |source| NexusError::Io { action, path, source }
}

/// The commands that do nexus's own work, and are recorded.
enum Work {
    Workspace(WorkspaceCommand),
    Task(TaskCommand),
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    // Looking at or changing telemetry is not itself recorded: `off` and `purge` must
    // not leave a trace behind them.
    let target = tally::cli::Target {
        invoked_as: Some("nexus telemetry".to_owned()),
        ..tally::cli::Target::new("nexus")
    };
    let work = match cli.command {
        Command::Telemetry(TelemetryCli::Shared(command)) => return Ok(tally::cli::run(&target, command)?),
        Command::Telemetry(TelemetryCli::View { open }) => return view(&target, open),
        Command::Stats(args) => return Ok(tally::cli::run(&target, tally::cli::TelemetryCommand::Stats(args))?),
        Command::Insights(args) => {
            return Ok(tally::cli::run(&target, tally::cli::TelemetryCommand::Insights(args))?);
        }
        Command::Sync(args) => return Ok(tally::cli::run(&target, tally::cli::TelemetryCommand::Sync(args))?),
        Command::Workspace(command) => Work::Workspace(command),
        Command::Task(command) => Work::Task(command),
    };
    run_work(cli.home, work)
}

/// `nexus telemetry view`: the same page as `tally view --app nexus`.
fn view(target: &tally::cli::Target, open: bool) -> anyhow::Result<()> {
    let path = target.settings().dir.join("telemetry.db");
    if !path.exists() {
        anyhow::bail!(
            "no telemetry recorded yet (no store at {}); use nexus first",
            path.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(tally_server::dashboard::local::serve(&path, "nexus", 0, |url| {
        println!("nexus telemetry, read-only, on this machine only:");
        println!("{url}");
        println!("(Ctrl-C stops it)");
        if open && let Err(err) = tally_server::dashboard::local::open_in_browser(url) {
            eprintln!("nexus: cannot start a browser ({err}); open the address above yourself");
        }
    }))?;
    Ok(())
}

fn run_work(home: Option<PathBuf>, work: Work) -> anyhow::Result<()> {
    let telemetry = Telemetry::builder("nexus")
        .version(env!("CARGO_PKG_VERSION"))
        .off_command("nexus telemetry off")
        .open();
    let home = match home {
        Some(home) => home,
        None => std::env::home_dir()
            .ok_or_else(|| anyhow::anyhow!("no home directory: set NEXUS_HOME or pass --home"))?
            .join(".nexus"),
    };
    let (command_path, outcome) = match work {
        Work::Workspace(WorkspaceCommand::Create { name, template }) => {
            let mut guard = telemetry.command("workspace create");
            guard.workspace(&name);
            (guard, create_workspace(&telemetry, &home, &name, template))
        }
        Work::Workspace(WorkspaceCommand::Destroy { name }) => {
            let mut guard = telemetry.command("workspace destroy");
            guard.workspace(&name);
            (guard, destroy_workspace(&telemetry, &home, &name))
        }
        Work::Task(TaskCommand::Done { name, workspace }) => {
            let mut guard = telemetry.command("task done");
            guard.target("task", &name);
            if let Some(workspace) = &workspace {
                guard.workspace(workspace);
            }
            (guard, complete_task(&telemetry, &home, &name, workspace.as_deref()))
        }
    };
    match outcome {
        Ok(message) => {
            command_path.success();
            println!("{message}");
            Ok(())
        }
        Err(err) => {
            command_path.failure(err.category(), &err);
            Err(err.into())
        }
    }
}

fn check_name(name: &str) -> Result<(), NexusError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(NexusError::InvalidName(name.to_owned()))
    }
}

fn workspace_dir(home: &Path, name: &str) -> PathBuf {
    home.join("workspaces").join(name)
}

fn create_workspace(telemetry: &Telemetry, home: &Path, name: &str, template: Template) -> Result<String, NexusError> {
    check_name(name)?;
    let dir = workspace_dir(home, name);
    let parent = home.join("workspaces");
    fs::create_dir_all(&parent).map_err(io_error("create", &parent))?;
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(NexusError::AlreadyExists(name.to_owned()));
        }
        Err(err) => return Err(io_error("create", &dir)(err)),
    }
    for (file, contents) in template.files() {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_error("create", parent))?;
        }
        fs::write(&path, contents).map_err(io_error("write", &path))?;
    }
    let manifest = dir.join("nexus.toml");
    fs::write(&manifest, format!("template = \"{}\"\n", template.as_str())).map_err(io_error("write", &manifest))?;
    telemetry.record(
        Event::builder("workspace", "workspace_created")
            .command("workspace create")
            .workspace(name)
            .prop("template", template.as_str())
            .prop("files_count", template.files().len() + 1),
    );
    Ok(format!("created workspace {name} at {}", dir.display()))
}

fn destroy_workspace(telemetry: &Telemetry, home: &Path, name: &str) -> Result<String, NexusError> {
    check_name(name)?;
    let dir = workspace_dir(home, name);
    match fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(NexusError::NotFound(name.to_owned())),
        Err(err) => return Err(io_error("remove", &dir)(err)),
    }
    telemetry.record(
        Event::builder("workspace", "workspace_destroyed")
            .command("workspace destroy")
            .workspace(name),
    );
    Ok(format!("destroyed workspace {name}"))
}

fn complete_task(
    telemetry: &Telemetry,
    home: &Path,
    name: &str,
    workspace: Option<&str>,
) -> Result<String, NexusError> {
    check_name(name)?;
    let dir = match workspace {
        Some(workspace) => {
            check_name(workspace)?;
            let dir = workspace_dir(home, workspace);
            if !dir.is_dir() {
                return Err(NexusError::NotFound(workspace.to_owned()));
            }
            dir
        }
        None => {
            fs::create_dir_all(home).map_err(io_error("create", home))?;
            home.to_owned()
        }
    };
    let log = dir.join("tasks.done");
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io_error("open", &log))?;
    writeln!(file, "{name}").map_err(io_error("write", &log))?;
    let mut event = Event::builder("task", "task_completed")
        .command("task done")
        .target("task", name);
    if let Some(workspace) = workspace {
        event = event.workspace(workspace);
    }
    telemetry.record(event);
    Ok(format!("task {name} done"))
}
