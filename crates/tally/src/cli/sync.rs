//! `sync`: upload pending events, only when the user turned upload on.

use std::io::Write;

use tally_core::Level;

use super::{CliError, SyncArgs, Target, human, interactive};
use crate::UploadMode;
use crate::config::ConfigFile;
use crate::sync::{DirTransport, SyncOptions, Transport, network_transport};

pub(crate) fn run(target: &Target, args: &SyncArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let settings = target.settings();
    let command = target.command();
    if settings.upload == UploadMode::Local {
        writeln!(
            out,
            "upload is local: nothing leaves this machine, and sync made no connection.\n\
             To upload to {}'s collector:\n  {command} config set endpoint URL\n  {command} config set key KEY\n  \
             {command} config set upload sync",
            target.app
        )?;
        return Ok(());
    }
    if settings.level == Level::Off {
        return Err(CliError::Usage(format!(
            "telemetry for {} is off, so nothing is uploaded; `{command} on` turns it back on",
            target.app
        )));
    }
    let mut transport: Box<dyn Transport> = match (&args.to_dir, &settings.endpoint, &settings.key) {
        (Some(dir), _, _) => Box::new(DirTransport::new(dir.clone()).map_err(|err| CliError::Usage(err.0))?),
        (None, Some(endpoint), Some(key)) => network_transport(settings.endpoint_kind, endpoint, key),
        (None, None, _) => {
            return Err(CliError::Usage(format!(
                "no collector endpoint is set: `{command} config set endpoint URL`"
            )));
        }
        (None, Some(_), None) => {
            return Err(CliError::Usage(format!(
                "no ingest key is set: `{command} config set key KEY`"
            )));
        }
    };
    let Some(mut store) = target.open_existing()? else {
        writeln!(out, "nothing to upload: {} has recorded nothing yet", target.app)?;
        return Ok(());
    };
    // A config edited by hand may turn upload on without saying when: the first sync
    // takes that moment as now, so no earlier event leaves without --include-history.
    let since = match settings.upload_since {
        Some(since) => since,
        None => {
            let now = tally_core::time::now_millis();
            let mut config = ConfigFile::load(&settings.config_file)?;
            config.upload_since = Some(tally_core::time::format(now));
            config.save(&settings.config_file)?;
            now
        }
    };
    let options = SyncOptions {
        include_history: args.include_history,
        dry_run: args.dry_run,
        ..SyncOptions::default()
    };
    let bar = (!args.dry_run && interactive()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events sent")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut progress = |done: u64, total: u64| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let destination = transport.destination();
    let result = crate::sync::sync(
        &mut store,
        settings.level,
        since,
        transport.as_mut(),
        &options,
        out,
        &mut progress,
    );
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result?;
    if args.dry_run {
        eprintln!(
            "dry run: {} events would be sent to {destination}, in the request bodies above; nothing was sent",
            human::count(report.sent)
        );
    } else if report.sent == 0 {
        let history = if args.include_history {
            0
        } else {
            store.pending_count(tally_store::sync::SyncStream::History, &tally_core::time::format(since))?
        };
        if history > 0 {
            writeln!(
                out,
                "nothing to upload from after upload was turned on ({}); {} earlier events stay local unless you \
                 run `{command} sync --include-history`",
                tally_core::time::format(since),
                human::count(history)
            )?;
        } else {
            writeln!(out, "nothing to upload: every event is already at {destination}")?;
        }
    } else {
        writeln!(
            out,
            "uploaded {} events to {destination} in {} requests: {} stored, {} already there, {} refused{}",
            human::count(report.sent),
            human::count(report.requests),
            human::count(report.accepted),
            human::count(report.duplicates),
            human::count(report.rejected),
            if report.rejected > 0 {
                " (`status` shows why)"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}
