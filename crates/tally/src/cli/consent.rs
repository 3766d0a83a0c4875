//! `on`, `off`, `level` and `purge`: the user's controls.

use std::io::{BufRead, Write};

use tally_core::Level;

use super::{CliError, Target, human, interactive};
use crate::config::{ConfigFile, LevelSource};

/// Writes the level to the config file; `None` means `on`: the configured level if it
/// is not `off`, `basic` otherwise.
pub(crate) fn set_level(target: &Target, level: Option<Level>, out: &mut dyn Write) -> Result<(), CliError> {
    let settings = target.settings();
    let mut config = ConfigFile::load(&settings.config_file)?;
    let level = level.unwrap_or(match config.level {
        Some(level) if level != Level::Off => level,
        _ => Level::Basic,
    });
    config.level = Some(level);
    config.save(&settings.config_file)?;
    let what = if level == Level::Off {
        "off: nothing is recorded (running apps stop within a second)".to_owned()
    } else {
        format!("on at level {level}")
    };
    writeln!(out, "{} telemetry is now {what}", target.app)?;
    writeln!(out, "  saved in {}", settings.config_file.display())?;
    // The environment outranks the file; say so when it will keep the new level from
    // taking effect.
    let effective = target.settings();
    if effective.level != level {
        let reason = match effective.level_source {
            LevelSource::DoNotTrack => "DO_NOT_TRACK is set in this environment".to_owned(),
            LevelSource::Environment(name) => format!("{name} is set in this environment"),
            other => other.to_string(),
        };
        writeln!(
            out,
            "  note: {reason}, so the level in force here is {}",
            effective.level
        )?;
    }
    Ok(())
}

/// Deletes everything recorded, after asking on a terminal.
pub(crate) fn purge(target: &Target, yes: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let Some(mut store) = target.open_existing()? else {
        writeln!(out, "nothing to purge: {} has no telemetry store", target.app)?;
        return Ok(());
    };
    let status = store.status()?;
    if !yes {
        if !interactive() {
            return Err(CliError::Usage(
                "purge deletes every event, session and rollup; pass --yes to confirm when not on a terminal".into(),
            ));
        }
        eprint!(
            "Delete all {} events and {} sessions of {}, and their rollups? This cannot be undone. [y/N] ",
            human::count(status.events),
            human::count(status.sessions),
            target.app
        );
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            writeln!(out, "nothing deleted")?;
            return Ok(());
        }
    }
    store.purge()?;
    writeln!(
        out,
        "purged {} events, {} sessions and all rollups of {}; the file holds no trace of them",
        human::count(status.events),
        human::count(status.sessions),
        target.app
    )?;
    Ok(())
}
