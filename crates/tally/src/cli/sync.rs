//! `sync`: upload pending events, only when the user turned upload on.
//!
//! Without tally's `upload` feature the command exists (hosts mount the same enum) but
//! explains that this build cannot upload, and sends nothing.

/// Says that this build cannot upload; nothing is sent and nothing changes.
#[cfg(not(feature = "upload"))]
pub(crate) fn run(
    target: &super::Target,
    _args: &super::SyncArgs,
    _out: &mut dyn std::io::Write,
) -> Result<(), super::CliError> {
    Err(super::CliError::Usage(format!(
        "this build of {} cannot upload: it was built without tally's `upload` feature, so sync sent nothing \
         and every event stays in the local store",
        target.app
    )))
}

#[cfg(feature = "upload")]
pub(crate) use upload::run;

#[cfg(feature = "upload")]
mod upload {
    use std::io::Write;

    use jiff::Timestamp;
    use tally_core::Level;

    use super::super::{CliError, SyncArgs, Target, human, interactive};
    use crate::config::EndpointKind;
    use crate::config::{ConfigFile, Settings};
    use crate::sync::{DirTransport, HttpTransport, SyncOptions, SyncReport, Transport, network_transport};
    use crate::{UploadMode, sync};

    pub(crate) fn run(target: &Target, args: &SyncArgs, out: &mut dyn Write) -> Result<(), CliError> {
        let settings = target.settings();
        if settings.upload == UploadMode::Local {
            return explain_local(target, out);
        }
        if settings.level == Level::Off {
            return Err(CliError::Usage(format!(
                "telemetry for {} is off, so nothing is uploaded; `{} on` turns it back on",
                target.app,
                target.command()
            )));
        }
        if settings.upload == UploadMode::Counts {
            return run_counts(target, args, &settings, out);
        }
        let mut transport = transport(target, args, &settings)?;
        let Some(mut store) = target.open_existing()? else {
            writeln!(out, "nothing to upload: {} has recorded nothing yet", target.app)?;
            return Ok(());
        };
        let since = upload_since(&settings)?;
        if !args.dry_run && args.to_dir.is_none() {
            register(target, &mut store, &settings);
        }
        let options = SyncOptions {
            include_history: args.include_history,
            dry_run: args.dry_run,
            ..SyncOptions::default()
        };
        let bar = (!args.dry_run && interactive()).then(progress_bar);
        let mut progress = |done: u64, total: u64| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(done);
            }
        };
        let result = sync::sync(
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
        let destination = transport.destination();
        if args.dry_run {
            eprintln!(
                "dry run: {} events would be sent to {destination}, in the request bodies above; nothing was sent",
                human::count(report.sent)
            );
            Ok(())
        } else if report.sent == 0 {
            explain_nothing_sent(target, args, &mut store, since, &destination, out)
        } else {
            write_summary(&report, &destination, out)
        }
    }

    /// `upload counts`: per-day counts of complete days to `POST /v1/counts`.
    fn run_counts(target: &Target, args: &SyncArgs, settings: &Settings, out: &mut dyn Write) -> Result<(), CliError> {
        let command = target.command();
        if args.include_history {
            return Err(CliError::Usage(format!(
                "--include-history: upload is counts, which uploads only days recorded since upload was turned on; \
                 to send earlier events, `{command} config set upload sync` first. Nothing was sent"
            )));
        }
        if args.to_dir.is_some() {
            return Err(CliError::Usage(format!(
                "--to-dir: upload is counts, and batch files carry events (`tally ingest` loads events only); \
                 sync counts straight to the collector, or `{command} config set upload sync`. Nothing was written"
            )));
        }
        if settings.endpoint_kind == EndpointKind::Otlp {
            return Err(CliError::Usage(format!(
                "upload is counts, which only a Tally collector takes (POST /v1/counts), and the endpoint is an OTLP \
                 receiver; `{command} config set upload sync` sends events to it instead. Nothing was sent"
            )));
        }
        let (endpoint, key) = match (&settings.endpoint, &settings.key) {
            (Some(endpoint), Some(key)) => (endpoint, key),
            (None, _) => {
                return Err(CliError::Usage(format!(
                    "no collector endpoint is set: `{command} config set endpoint URL`"
                )));
            }
            (Some(_), None) => {
                return Err(CliError::Usage(format!(
                    "no ingest key is set: `{command} config set key KEY`"
                )));
            }
        };
        let mut transport = HttpTransport::counts(endpoint, key);
        let Some(mut store) = target.open_existing()? else {
            writeln!(out, "nothing to upload: {} has recorded nothing yet", target.app)?;
            return Ok(());
        };
        let since = upload_since(settings)?;
        if !args.dry_run {
            register(target, &mut store, settings);
        }
        let options = SyncOptions {
            dry_run: args.dry_run,
            ..SyncOptions::default()
        };
        // `--now` decides which days are complete, as it sets the time for the views.
        let now = target.now();
        let report = sync::sync_counts(&mut store, settings.level, since, now, &mut transport, &options, out)?;
        let destination = transport.destination();
        let waiting = if report.waiting_for_today > 0 {
            format!(
                "; {} events of today wait until the day is complete",
                human::count(report.waiting_for_today)
            )
        } else {
            String::new()
        };
        if args.dry_run {
            eprintln!(
                "dry run: {} days of counts ({} events) would be sent to {destination}, in the request bodies above; \
                 nothing was sent{waiting}",
                human::count(report.days),
                human::count(report.events)
            );
        } else if report.days == 0 {
            writeln!(
                out,
                "nothing to upload: no complete day has events not yet sent{waiting}"
            )?;
        } else {
            writeln!(
                out,
                "uploaded counts of {} days ({} events; no event itself) to {destination}{}{waiting}",
                human::count(report.days),
                human::count(report.events),
                if report.already_stored > 0 {
                    format!("; {} days were already there", human::count(report.already_stored))
                } else {
                    String::new()
                }
            )?;
        }
        Ok(())
    }

    /// Registers this install's key with the collector before its first upload, so that
    /// `remote` and `forget` can prove the install later. Uploading goes on without it;
    /// a collector that refuses is named once.
    fn register(target: &Target, store: &mut tally_store::Store, settings: &Settings) {
        let (Some(endpoint), Some(key)) = (&settings.endpoint, &settings.key) else {
            return;
        };
        if settings.endpoint_kind == EndpointKind::Otlp {
            // An OTLP receiver keeps no installs to read or erase.
            return;
        }
        match crate::sync::install::register(store, endpoint, key) {
            Ok(()) | Err(crate::sync::install::InstallError::Unreachable { .. }) => {}
            Err(err) => eprintln!(
                "{}: the collector did not register this install's key ({err}); `remote` and `forget` will not \
                 work with it",
                target.app
            ),
        }
    }

    /// Upload is local: say so, make no connection, and say how to turn upload on.
    fn explain_local(target: &Target, out: &mut dyn Write) -> Result<(), CliError> {
        let command = target.command();
        writeln!(
            out,
            "upload is local: nothing leaves this machine, and sync made no connection.\n\
             To upload to {}'s collector:\n  {command} config set endpoint URL\n  {command} config set key KEY\n  \
             {command} config set upload sync",
            target.app
        )?;
        Ok(())
    }

    /// Where batches go: `--to-dir`, or the configured collector.
    fn transport(target: &Target, args: &SyncArgs, settings: &Settings) -> Result<Box<dyn Transport>, CliError> {
        let command = target.command();
        match (&args.to_dir, &settings.endpoint, &settings.key) {
            (Some(dir), _, _) => Ok(Box::new(
                DirTransport::new(dir.clone()).map_err(|err| CliError::Usage(err.0))?,
            )),
            (None, Some(endpoint), Some(key)) => Ok(network_transport(settings.endpoint_kind, endpoint, key)),
            (None, None, _) => Err(CliError::Usage(format!(
                "no collector endpoint is set: `{command} config set endpoint URL`"
            ))),
            (None, Some(_), None) => Err(CliError::Usage(format!(
                "no ingest key is set: `{command} config set key KEY`"
            ))),
        }
    }

    /// When upload was turned on. A config edited by hand may turn upload on without
    /// saying when: the first sync takes that moment as now, so no earlier event leaves
    /// without --include-history.
    fn upload_since(settings: &Settings) -> Result<Timestamp, CliError> {
        if let Some(since) = settings.upload_since {
            return Ok(since);
        }
        let now = tally_core::time::now_millis();
        let mut config = ConfigFile::load(&settings.config_file)?;
        config.upload_since = Some(tally_core::time::format(now));
        config.save(&settings.config_file)?;
        Ok(now)
    }

    fn progress_bar() -> indicatif::ProgressBar {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events sent")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    }

    /// Nothing was sent: either everything is already there, or what is pending was
    /// recorded before upload was turned on and waits for --include-history.
    fn explain_nothing_sent(
        target: &Target,
        args: &SyncArgs,
        store: &mut tally_store::Store,
        since: Timestamp,
        destination: &str,
        out: &mut dyn Write,
    ) -> Result<(), CliError> {
        let history = if args.include_history {
            0
        } else {
            store.pending_count(tally_store::sync::SyncStream::History, since)?
        };
        if history > 0 {
            writeln!(
                out,
                "nothing to upload from after upload was turned on ({}); {} earlier events stay local unless you \
                 run `{} sync --include-history`",
                tally_core::time::format(since),
                human::count(history),
                target.command()
            )?;
        } else {
            writeln!(out, "nothing to upload: every event is already at {destination}")?;
        }
        Ok(())
    }

    fn write_summary(report: &SyncReport, destination: &str, out: &mut dyn Write) -> Result<(), CliError> {
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
        Ok(())
    }
}

/// A build without `upload` refuses to turn upload on and explains `sync`, changing
/// nothing; these run under `cargo test -p tally --no-default-features --features cli`.
#[cfg(all(test, not(feature = "upload")))]
mod tests {
    use super::super::{CliError, Setting, SyncArgs, Target};

    /// An app name no real config file belongs to, so nothing on the machine is read.
    fn target() -> (tempfile::TempDir, Target) {
        let temp = tempfile::tempdir().unwrap();
        let mut target = Target::new(format!("tally-no-upload-test-{}", std::process::id()));
        target.dir = Some(temp.path().join("store"));
        (temp, target)
    }

    #[test]
    fn config_set_upload_sync_or_auto_is_refused_and_writes_nothing() {
        let (_temp, target) = target();
        let config_file = target.settings().config_file;
        for mode in ["sync", "auto"] {
            let mut out = Vec::new();
            let err = super::super::consent::set_setting(&target, Setting::Upload, mode, &mut out).unwrap_err();
            let CliError::Usage(message) = err else {
                panic!("expected a usage error, got {err:?}");
            };
            assert!(message.contains("cannot upload"), "{message}");
            assert!(message.contains("`upload` feature"), "{message}");
            assert!(out.is_empty());
            assert!(!config_file.exists(), "{} was written", config_file.display());
        }
    }

    #[test]
    fn sync_explains_that_this_build_cannot_upload() {
        let (_temp, target) = target();
        let mut out = Vec::new();
        let err = super::run(&target, &SyncArgs::default(), &mut out).unwrap_err();
        assert!(err.to_string().contains("cannot upload"), "{err}");
        assert!(out.is_empty());
        assert!(!target.settings().dir.exists(), "sync created a store");
    }
}
