//! `status`: what is recorded, where, and how much.

use std::io::Write;

use tally_core::Level;

use super::human;
use super::{CliError, Target};
use crate::UploadMode;

pub(crate) fn run(target: &Target, out: &mut dyn Write) -> Result<(), CliError> {
    let settings = target.settings();
    let store_file = settings.dir.join(tally_store::DB_FILE_NAME);
    writeln!(out, "{} telemetry", target.app)?;
    let level_note = if settings.level == Level::Off {
        "nothing is recorded"
    } else {
        "see docs/PRIVACY.md"
    };
    writeln!(
        out,
        "  level:      {} ({}; {level_note})",
        settings.level, settings.level_source
    )?;
    let upload_note = match settings.upload {
        UploadMode::Local => "nothing leaves this machine",
        _ if !cfg!(feature = "upload") => "but this build cannot upload: tally's `upload` feature is off",
        UploadMode::Sync => "only an explicit sync uploads",
        UploadMode::Auto => "uploads in the background",
        UploadMode::Counts => "only an explicit sync uploads, and only per-day counts",
    };
    writeln!(out, "  upload:     {} ({upload_note})", settings.upload)?;
    if let Some(since) = settings.upload_since.filter(|_| settings.upload != UploadMode::Local) {
        writeln!(
            out,
            "  since:      {} (earlier events stay local)",
            tally_core::time::format(since)
        )?;
    }
    if let Some(endpoint) = &settings.endpoint {
        writeln!(out, "  endpoint:   {endpoint}{}", kind_note(settings.endpoint_kind))?;
    }
    if let Some(key) = &settings.key {
        writeln!(out, "  key:        {}", super::consent::mask_key(key))?;
    }
    writeln!(out, "  config:     {}", settings.config_file.display())?;
    let Some(store) = target.open_existing()? else {
        writeln!(
            out,
            "  store:      {} (not created yet: nothing recorded)",
            store_file.display()
        )?;
        write_limits(out, &settings)?;
        return Ok(());
    };
    let status = store.status()?;
    writeln!(
        out,
        "  store:      {} ({})",
        store_file.display(),
        human::bytes(status.size_bytes)
    )?;
    writeln!(
        out,
        "  events:     {} stored, {} counted in rollups",
        human::count(status.events),
        human::count(status.events_ever)
    )?;
    writeln!(out, "  sessions:   {}", human::count(status.sessions))?;
    writeln!(out, "  oldest:     {}", status.oldest.as_deref().unwrap_or("-"))?;
    writeln!(out, "  newest:     {}", status.newest.as_deref().unwrap_or("-"))?;
    let spooled = tally_store::Spool::new(&settings.dir).size(true);
    if spooled.files > 0 {
        writeln!(
            out,
            "  spooled:    {} events in {} files ({}), not folded in yet: another process holds the store",
            human::count(spooled.events),
            human::count(spooled.files),
            human::bytes(spooled.bytes)
        )?;
    }
    let drops = &status.drops;
    writeln!(
        out,
        "  dropped:    {} ({} buffer full, {} invalid, {} spool full, {} spool unwritable or torn)",
        human::count(drops.total()),
        human::count(drops.buffer_full),
        human::count(drops.invalid),
        human::count(drops.spool_full),
        human::count(drops.spool_failed)
    )?;
    if settings.upload != UploadMode::Local {
        let since = settings.upload_since.unwrap_or_else(tally_core::time::now_millis);
        let sync = store.sync_status(since)?;
        writeln!(
            out,
            "  sync:       {} pending, {} refused by the collector, last sync {}",
            human::count(sync.pending),
            human::count(sync.rejected),
            sync.last_sync
                .map_or_else(|| "never".to_owned(), tally_core::time::format)
        )?;
        if let Some(day) = store.counts_through()? {
            writeln!(
                out,
                "  counts:     every day through {day} uploaded (as events or counts); its events are not sent again"
            )?;
        }
        for refusal in &sync.recent_refusals {
            writeln!(
                out,
                "    refused {} ({}): {}: {}",
                refusal.id,
                tally_core::time::format(refusal.ts),
                refusal.code,
                refusal.message
            )?;
        }
    }
    write_limits(out, &settings)
}

/// What follows the endpoint: nothing for a Tally collector (the default).
fn kind_note(kind: crate::config::EndpointKind) -> &'static str {
    match kind {
        crate::config::EndpointKind::Otlp => " (endpoint-kind otlp: OTLP/HTTP logs at /v1/logs)",
        crate::config::EndpointKind::Tally => "",
    }
}

/// `config show`: the settings in force and where they come from.
pub(crate) fn show_config(target: &Target, out: &mut dyn Write) -> Result<(), CliError> {
    let settings = target.settings();
    writeln!(
        out,
        "{} telemetry settings ({})",
        target.app,
        settings.config_file.display()
    )?;
    writeln!(out, "  level:      {} ({})", settings.level, settings.level_source)?;
    writeln!(out, "  upload:     {}", settings.upload)?;
    writeln!(
        out,
        "  since:      {}",
        settings
            .upload_since
            .map_or_else(|| "-".to_owned(), tally_core::time::format)
    )?;
    writeln!(
        out,
        "  endpoint:   {}{}",
        settings.endpoint.as_deref().unwrap_or("-"),
        kind_note(settings.endpoint_kind)
    )?;
    writeln!(
        out,
        "  key:        {}",
        settings
            .key
            .as_deref()
            .map_or_else(|| "-".to_owned(), super::consent::mask_key)
    )?;
    writeln!(out, "  store:      {}", settings.dir.display())?;
    write_limits(out, &settings)
}

fn write_limits(out: &mut dyn Write, settings: &crate::Settings) -> Result<(), CliError> {
    writeln!(
        out,
        "  retention:  raw events {} days, rollups kept",
        settings.retention.retention_days
    )?;
    writeln!(out, "  size cap:   {}", human::bytes(settings.retention.max_bytes))?;
    Ok(())
}
