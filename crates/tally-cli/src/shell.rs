//! `tally completions SHELL` and `tally man`: the shell's view of the command line,
//! generated from the same clap definition that parses it, so they never drift.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};

/// Options of `tally completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// Options of `tally man`.
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write tally.1 and one page per subcommand (tally-serve.1, ...) into this directory
    /// instead of printing tally.1.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell`.
pub(crate) fn completions<C: CommandFactory>(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut command = C::command();
    let mut stdout = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, "tally", &mut stdout);
    stdout.flush().context("cannot write the completion script")?;
    Ok(())
}

/// Prints the man page, or writes every page into `--out-dir`.
pub(crate) fn man<C: CommandFactory>(args: &ManArgs) -> anyhow::Result<()> {
    let command = C::command();
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            println!("wrote the man pages into {}", dir.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            clap_mangen::Man::new(command)
                .render(&mut stdout)
                .context("cannot write the man page")?;
            stdout.flush().context("cannot write the man page")?;
        }
    }
    Ok(())
}
