//! `on`, `off`, `level` and `purge`: the user's controls.

use std::io::{BufRead, Write};

use tally_core::Level;

use super::{CliError, Setting, Target, human, interactive};
use crate::UploadMode;
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
    let spool = tally_store::Spool::new(&target.settings().dir);
    let Some(mut store) = target.open_existing()? else {
        spool.remove_all()?;
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
    spool.remove_all()?;
    writeln!(
        out,
        "purged {} events, {} sessions and all rollups of {}; the file holds no trace of them",
        human::count(status.events),
        human::count(status.sessions),
        target.app
    )?;
    Ok(())
}

/// `config set`: upload mode, endpoint or key, checked before anything is written.
pub(crate) fn set_setting(target: &Target, setting: Setting, value: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let settings = target.settings();
    let mut config = ConfigFile::load(&settings.config_file)?;
    let value = value.trim();
    let said = match setting {
        Setting::Upload => {
            let mode: UploadMode = value.parse().map_err(CliError::Usage)?;
            if mode != UploadMode::Local && !cfg!(feature = "upload") {
                return Err(CliError::Usage(format!(
                    "upload: this build of {} cannot upload (it was built without tally's `upload` feature), so \
                     upload stays {}; nothing was changed",
                    target.app, settings.upload
                )));
            }
            let was_on = matches!(
                config.upload,
                Some(UploadMode::Sync | UploadMode::Auto | UploadMode::Counts)
            );
            config.upload = Some(mode);
            if mode == UploadMode::Local {
                config.upload_since = None;
                "upload is now local: nothing leaves this machine".to_owned()
            } else {
                // Consent counts from now: earlier events stay local unless the user
                // asks for them with `sync --include-history`.
                if !was_on || config.upload_since.is_none() {
                    config.upload_since = Some(tally_core::time::format(tally_core::time::now_millis()));
                }
                let since = config.upload_since.as_deref().unwrap_or("now");
                match mode {
                    UploadMode::Counts => format!(
                        "upload is now counts: when you run sync, only per-day counts of events recorded from \
                         {since} on are uploaded, one upload per complete day; never an event, id, time of day, \
                         props, workspace or message"
                    ),
                    _ => {
                        let when = if mode == UploadMode::Auto {
                            "in the background, at most once an interval"
                        } else {
                            "when you run sync"
                        };
                        format!(
                            "upload is now {mode}: events recorded from {since} on are uploaded {when}; earlier ones \
                             only with `sync --include-history`"
                        )
                    }
                }
            }
        }
        Setting::Endpoint => {
            let (scheme, rest) = value.split_once("://").unwrap_or(("", ""));
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            if !(scheme == "https" || scheme == "http") || host.is_empty() || value.contains(char::is_whitespace) {
                return Err(CliError::Usage(format!(
                    "endpoint: must be an http:// or https:// URL such as https://telemetry.example.com (got {value:?})"
                )));
            }
            config.endpoint = Some(value.trim_end_matches('/').to_owned());
            format!("endpoint is now {}", value.trim_end_matches('/'))
        }
        Setting::EndpointKind => {
            let kind: crate::config::EndpointKind = value.parse().map_err(CliError::Usage)?;
            config.endpoint_kind = Some(kind);
            let endpoint = config.endpoint.as_deref().unwrap_or("<endpoint>");
            match kind {
                crate::config::EndpointKind::Tally => {
                    format!("endpoint-kind is now tally: uploads go to {endpoint}/v1/events/batch")
                }
                crate::config::EndpointKind::Otlp => format!(
                    "endpoint-kind is now otlp: uploads go to {endpoint}/v1/logs as OTLP/HTTP protobuf, \
                     with the key as Authorization: Bearer"
                ),
            }
        }
        Setting::Key => {
            let parts: Vec<&str> = value.split('_').collect();
            let otlp = config.endpoint_kind == Some(crate::config::EndpointKind::Otlp);
            // An OTLP receiver other than Tally's has keys of its own: any bearer token.
            let token = !value.is_empty() && value.len() <= 512 && value.bytes().all(|b| b.is_ascii_graphic());
            let tally_key = parts.len() == 4 && parts[0] == "tly" && parts[1] == "ingest";
            if otlp && !token {
                return Err(CliError::Usage(
                    "key: must be a bearer token of 1 to 512 printable characters without spaces".into(),
                ));
            }
            if !otlp && !tally_key {
                return Err(CliError::Usage(
                    "key: must be an ingest key made by `tally keys create --role ingest` (tly_ingest_...)".into(),
                ));
            }
            config.key = Some(value.to_owned());
            format!("key is now {}", mask_key(value))
        }
    };
    config.save(&settings.config_file)?;
    writeln!(out, "{said}")?;
    writeln!(out, "  saved in {}", settings.config_file.display())?;
    Ok(())
}

/// `tly_ingest_ab73ee3f3d77_…`: the id, never the secret.
pub(crate) fn mask_key(key: &str) -> String {
    match key.rsplit_once('_') {
        Some((public, _)) => format!("{public}_…"),
        None => "…".to_owned(),
    }
}
