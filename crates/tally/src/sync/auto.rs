//! `auto` upload: the flush thread starts at most one background upload per interval,
//! across every process of the app.
//!
//! The upload runs on a thread of its own with its own connection and a time budget, so
//! neither recording nor the host's exit ever waits for it; if the process exits
//! mid-request, the next sync resends and the collector's dedupe stores each event once.
//! Which process uploads is settled through the store (`claim_auto_sync`), with a lease
//! so that an upload cut off by an exit is tried again soon.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tally_core::Level;
use tally_store::{OpenOptions, Store};

use crate::UploadMode;
use crate::config::Settings;

/// Longest a background upload keeps going; the rest waits for the next one.
const AUTO_UPLOAD_BUDGET: Duration = Duration::from_secs(30);
/// An upload cut off (its process exited) is tried again after this, not after a
/// whole interval.
const AUTO_UPLOAD_LEASE: Duration = Duration::from_secs(120);

/// Starts a background upload if `settings` ask for `auto`, something was recorded
/// since the last one, and this process wins the interval's claim in `store`. Returns
/// a receiver that is signalled when the upload ends, or `None` when none was started
/// because none is due; an error says why a due upload could not start.
pub(crate) fn start_if_due(
    app: &str,
    settings: &Settings,
    store: &mut Store,
) -> Result<Option<Receiver<()>>, NotStarted> {
    let (Some(endpoint), Some(key), Some(since)) = (&settings.endpoint, &settings.key, settings.upload_since) else {
        return Ok(None);
    };
    if settings.upload != UploadMode::Auto || settings.level == Level::Off {
        return Ok(None);
    }
    if *store.location() == tally_store::Location::Memory {
        return Ok(None);
    }
    // Nothing recorded since the last upload: no upload, and no slot used up.
    if !store
        .pending_count(tally_store::sync::SyncStream::Recent, since)
        .is_ok_and(|pending| pending > 0)
    {
        return Ok(None);
    }
    if !claim(store, settings.auto_interval)? {
        return Ok(None);
    }
    let (dir, level, debug, app) = (settings.dir.clone(), settings.level, settings.debug, app.to_owned());
    let (endpoint, key, kind) = (endpoint.clone(), key.clone(), settings.endpoint_kind);
    let (finished, upload_done) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("tally-upload".into())
        .spawn(move || {
            let result = upload(&dir, level, since, kind, &endpoint, &key);
            let _ = finished.send(());
            if debug {
                match result {
                    Ok(report) => eprintln!("tally: {app}: background upload sent {} events", report.sent),
                    Err(err) => eprintln!("tally: {app}: background upload stopped: {err}"),
                }
            }
        })
        .map_err(|err| NotStarted(err.to_string()))?;
    Ok(Some(upload_done))
}

/// Why a due background upload did not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NotStarted(String);

/// Claims this interval's upload for this process, unless another process holds it.
fn claim(store: &mut Store, interval: Duration) -> Result<bool, NotStarted> {
    let now = jiff::Timestamp::now();
    let interval = jiff::SignedDuration::try_from(interval).unwrap_or(jiff::SignedDuration::ZERO);
    let lease = jiff::SignedDuration::try_from(AUTO_UPLOAD_LEASE).unwrap_or(jiff::SignedDuration::ZERO);
    store
        .claim_auto_sync(
            now,
            now.checked_sub(interval).unwrap_or(now),
            now.checked_sub(lease).unwrap_or(now),
        )
        .map_err(|err| NotStarted(err.to_string()))
}

/// One upload on the background thread, with a connection of its own and a time budget.
fn upload(
    dir: &std::path::Path,
    level: Level,
    since: jiff::Timestamp,
    kind: crate::config::EndpointKind,
    endpoint: &str,
    key: &str,
) -> Result<super::SyncReport, super::SyncError> {
    let mut store = Store::open(dir, &OpenOptions::default())?;
    let options = super::SyncOptions {
        deadline: Some(Instant::now() + AUTO_UPLOAD_BUDGET),
        ..super::SyncOptions::default()
    };
    // The install's key goes with its first upload to a Tally collector; a failure
    // waits for the next one.
    if kind == crate::config::EndpointKind::Tally {
        let _ = super::install::register(&mut store, endpoint, key);
    }
    let mut transport = super::network_transport(kind, endpoint, key);
    let report = super::sync(
        &mut store,
        level,
        since,
        transport.as_mut(),
        &options,
        &mut std::io::sink(),
        &mut |_, _| {},
    )?;
    store.auto_sync_done(jiff::Timestamp::now())?;
    Ok(report)
}
