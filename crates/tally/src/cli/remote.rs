//! `remote` and `forget`: what the app's collector holds about this install, and
//! erasing it there (and with `--local`, here). The install proves who it is with a
//! key derived from its secret (`crate::sync::install`), so no one else can read or
//! erase its data this way, and the ingest key alone cannot either.
//!
//! Without tally's `upload` feature both explain that this build never talks to a
//! collector.

#[cfg(not(feature = "upload"))]
pub(crate) fn show(target: &super::Target, _out: &mut dyn std::io::Write) -> Result<(), super::CliError> {
    Err(no_upload(target))
}

#[cfg(not(feature = "upload"))]
pub(crate) fn forget(
    target: &super::Target,
    _local: bool,
    _yes: bool,
    _out: &mut dyn std::io::Write,
) -> Result<(), super::CliError> {
    Err(no_upload(target))
}

#[cfg(not(feature = "upload"))]
fn no_upload(target: &super::Target) -> super::CliError {
    super::CliError::Usage(format!(
        "this build of {} never talks to a collector (it was built without tally's `upload` feature), so no \
         collector holds anything from it; `purge` deletes what is kept here",
        target.app
    ))
}

#[cfg(feature = "upload")]
pub(crate) use with_upload::{forget, show};

#[cfg(feature = "upload")]
mod with_upload {
    use std::io::{BufRead, Write};

    use serde_json::Value;

    use super::super::{CliError, Target, human, interactive};
    use crate::sync::install::{self, InstallError};

    /// The collector and ingest key to ask, or how to set them.
    fn collector(target: &Target) -> Result<(String, String), CliError> {
        let settings = target.settings();
        let command = target.command();
        match (settings.endpoint, settings.key) {
            (Some(endpoint), Some(key)) => Ok((endpoint, key)),
            (None, _) => Err(CliError::Usage(format!(
                "no collector endpoint is set, so no collector was sent anything from this install \
                 (`{command} config set endpoint URL` names one)"
            ))),
            (Some(_), None) => Err(CliError::Usage(format!(
                "no ingest key is set: `{command} config set key KEY`"
            ))),
        }
    }

    /// What went wrong, in the user's words; `what` says what did not happen.
    fn explain(err: InstallError, endpoint: &str, what: &str) -> CliError {
        match err {
            InstallError::Unreachable { reason, .. } => CliError::Usage(format!(
                "the collector at {endpoint} could not be reached ({reason}): {what}; try again when it answers"
            )),
            InstallError::Refused { status: 401, message } => CliError::Usage(format!(
                "the collector at {endpoint} did not accept this install's proof ({message}): {what}. It holds \
                 no key for this install when nothing was uploaded from it yet, or its data was already erased"
            )),
            other => CliError::Usage(format!("{other}: {what}")),
        }
    }

    /// `remote`.
    pub(crate) fn show(target: &Target, out: &mut dyn Write) -> Result<(), CliError> {
        let (endpoint, key) = collector(target)?;
        let Some(mut store) = target.open_existing()? else {
            writeln!(
                out,
                "{} has recorded nothing on this machine, so its collector holds nothing from this install",
                target.app
            )?;
            return Ok(());
        };
        let answer = install::remote(&mut store, &target.app, &endpoint, &key)
            .map_err(|err| explain(err, &endpoint, "nothing was read"))?;
        write_remote(&answer, &endpoint, out)
    }

    fn write_remote(answer: &Value, endpoint: &str, out: &mut dyn Write) -> Result<(), CliError> {
        let number = |field: &str| answer[field].as_u64().unwrap_or(0);
        writeln!(
            out,
            "the collector at {endpoint} holds for this install ({}):",
            answer["install_id"].as_str().unwrap_or("?")
        )?;
        writeln!(
            out,
            "  events:     {} ({} as events, {} in {} days of counts)",
            human::count(number("events")),
            human::count(number("raw_events")),
            human::count(number("counted_events")),
            human::count(number("counted_days"))
        )?;
        for (label, field) in [("first seen", "first_seen"), ("last seen", "last_seen")] {
            let label = format!("{label}:");
            writeln!(out, "  {label:<11} {}", answer[field].as_str().unwrap_or("never"))?;
        }
        let names = answer["by_name"].as_array().cloned().unwrap_or_default();
        if !names.is_empty() {
            writeln!(out, "  by name:")?;
            for item in names {
                writeln!(
                    out,
                    "    {:<40} {:>8}",
                    format!(
                        "{} {}",
                        item["type"].as_str().unwrap_or(""),
                        item["name"].as_str().unwrap_or("")
                    ),
                    human::count(item["count"].as_u64().unwrap_or(0))
                )?;
            }
        }
        Ok(())
    }

    /// `forget [--local]`: the collector first; this machine only once the collector
    /// has erased its copy, because the local store holds the key that proves this
    /// install to it.
    pub(crate) fn forget(target: &Target, local: bool, yes: bool, out: &mut dyn Write) -> Result<(), CliError> {
        let (endpoint, key) = collector(target)?;
        let Some(mut store) = target.open_existing()? else {
            writeln!(
                out,
                "{} has recorded nothing on this machine, so neither its collector nor this machine holds \
                 anything from this install",
                target.app
            )?;
            return Ok(());
        };
        if !yes && !confirm(target, &endpoint, local)? {
            writeln!(out, "nothing erased")?;
            return Ok(());
        }
        let nothing = if local {
            "nothing was erased there, and nothing here either (this machine's store holds the key that proves \
             this install)"
        } else {
            "nothing was erased there"
        };
        let answer = install::forget(&mut store, &target.app, &endpoint, &key)
            .map_err(|err| explain(err, &endpoint, nothing))?;
        let number = |field: &str| answer[field].as_u64().unwrap_or(0);
        writeln!(
            out,
            "the collector at {endpoint} erased this install: {} events and {} days of counts, and took {} \
             events out of its totals; a later upload starts fresh",
            human::count(number("deleted_events")),
            human::count(number("deleted_counted_days")),
            human::count(number("uncounted_events"))
        )?;
        if local {
            let status = store.status()?;
            store.purge()?;
            writeln!(
                out,
                "and on this machine: purged {} events, {} sessions and all rollups; this install gets a new \
                 identity",
                human::count(status.events),
                human::count(status.sessions)
            )?;
        }
        Ok(())
    }

    fn confirm(target: &Target, endpoint: &str, local: bool) -> Result<bool, CliError> {
        if !interactive() {
            return Err(CliError::Usage(
                "forget erases this install's data at the collector; pass --yes to confirm when not on a terminal"
                    .into(),
            ));
        }
        eprint!(
            "Erase everything the collector at {endpoint} holds about this install of {}{}? This cannot be undone. \
             [y/N] ",
            target.app,
            if local {
                ", and its telemetry on this machine"
            } else {
                ""
            }
        );
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }
}
