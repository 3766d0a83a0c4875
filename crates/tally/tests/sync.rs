//! Sync through the library, against a scripted collector: what is retried and what is
//! not, how long a retry waits, how a 413 splits a batch, what is kept aside, and that
//! an event leaves the machine once, only with consent. The `auto` mode runs in child
//! processes, as a host app would.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use jiff::{Timestamp, ToSpan};
use tally::sync::{HttpTransport, RetryPolicy, SyncError, SyncOptions, SyncReport};
use tally::{Event, Telemetry};
use tally_core::{EventBuilder, EventContext, KeyedHasher, Level, Source};
use tally_store::sync::SyncStream;
use tally_store::{DropCounts, OpenOptions, RetentionPolicy, Store};

use crate::child;
use crate::scripted_collector::{Answer, Request, ScriptedCollector};

const KEY: &str = "tly_ingest_0123456789ab_0123456789abcdef0123456789abcdef";

/// Retries that keep the tests fast; the rules are the same as the default's.
const QUICK_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base_delay: Duration::from_millis(20),
    max_delay: Duration::from_millis(100),
};

/// A store as the SDK makes it, and the moment upload was turned on.
struct Local {
    _temp: tempfile::TempDir,
    dir: std::path::PathBuf,
    store: Store,
    since: Timestamp,
    hasher: KeyedHasher,
    install_id: String,
}

impl Local {
    /// An empty store whose upload was turned on an hour ago.
    fn new() -> Local {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("store");
        let mut store = Store::open(&dir, &OpenOptions::default()).unwrap();
        let identity = store.identity().unwrap();
        Local {
            _temp: temp,
            dir,
            store,
            since: tally_core::time::now_millis().checked_sub(1.hour()).unwrap(),
            hasher: KeyedHasher::new(&identity.secret),
            install_id: identity.install_id,
        }
    }

    /// A store holding `count` commands recorded after upload was turned on.
    fn with_commands(count: usize) -> Local {
        let mut local = Local::new();
        let first = local.since.checked_add(1.minute()).unwrap();
        local.record_commands(count, first);
        local
    }

    /// Records `count` successful `build` commands, 1 ms apart from `first`.
    fn record_commands(&mut self, count: usize, first: Timestamp) -> Vec<Event> {
        let builders = (0..count)
            .map(|i| {
                Event::builder("command", "command_executed")
                    .command("build")
                    .duration_ms(1_000 + i as u64)
                    .success(true)
                    .ts(first.checked_add((i as i64).milliseconds()).unwrap())
            })
            .collect();
        self.record(builders)
    }

    /// Finishes the events as the SDK does at level `full` and stores them.
    fn record(&mut self, builders: Vec<EventBuilder>) -> Vec<Event> {
        let context = EventContext {
            app: "testapp",
            app_version: "1.0.0",
            source: Source::Cli,
            session_id: "session-1",
            install_id: &self.install_id,
            hasher: &self.hasher,
            level: Level::Full,
        };
        let events: Vec<Event> = builders
            .into_iter()
            .map(|builder| builder.finish(&context).unwrap().unwrap())
            .collect();
        self.store.insert_batch(&events, DropCounts::default()).unwrap();
        events
    }

    /// Every stored event's id, in the order they were stored.
    fn ids(&self) -> Vec<String> {
        let mut statement = self
            .store
            .connection()
            .prepare("SELECT id FROM events ORDER BY seq")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Events recorded since upload was turned on that no collector answered for yet.
    fn pending(&self) -> u64 {
        self.store.pending_count(SyncStream::Recent, self.since).unwrap()
    }

    fn sync(&mut self, collector: &ScriptedCollector) -> Result<SyncReport, SyncError> {
        self.sync_with(collector, false)
    }

    fn sync_with(&mut self, collector: &ScriptedCollector, include_history: bool) -> Result<SyncReport, SyncError> {
        let options = SyncOptions {
            include_history,
            retry: QUICK_RETRY,
            ..SyncOptions::default()
        };
        let mut transport = HttpTransport::new(&collector.endpoint(), KEY);
        tally::sync::sync(
            &mut self.store,
            Level::Full,
            self.since,
            &mut transport,
            &options,
            &mut std::io::sink(),
            &mut |_, _| {},
        )
    }
}

/// The ids of the events the collector answered 2xx for, in order of arrival.
fn accepted_ids(requests: &[Request], answered_ok: impl Fn(&Request) -> bool) -> Vec<String> {
    requests
        .iter()
        .filter(|request| answered_ok(request))
        .flat_map(Request::event_ids)
        .collect()
}

#[test]
fn an_uploaded_event_is_the_event_as_recorded_with_its_duration_and_target() {
    let mut local = Local::new();
    let recorded = local.record(vec![
        Event::builder("task", "task_completed")
            .command("task done")
            .workspace("alpha")
            .target("task", "write-tests")
            .duration_ms(420)
            .success(true)
            .prop("template", "rust")
            .ts(local.since),
        Event::builder("command", "command_executed")
            .command("workspace create")
            .duration_ms(1_250)
            .success(false)
            .error_category("io")
            .error_message("disk full")
            .ts(local.since),
    ]);
    let collector = ScriptedCollector::accepting();
    local.sync(&collector).unwrap();
    let sent = collector.requests()[0].events();
    let expected: Vec<serde_json::Value> = recorded
        .iter()
        .map(|event| serde_json::from_str(&event.to_json()).unwrap())
        .collect();
    assert_eq!(sent, expected);
}

#[test]
fn retryable_answers_and_resets_are_retried_and_the_batch_goes_through_once() {
    let failures = [
        (
            "429 without Retry-After",
            Answer::error(429, "rate_limited", "slow down"),
        ),
        ("502", Answer::error(502, "bad_gateway", "upstream down")),
        (
            "503",
            Answer::error(503, "unavailable", "storage cannot take the request"),
        ),
        ("504", Answer::error(504, "timeout", "upstream timed out")),
        ("a reset connection", Answer::Close),
    ];
    for (what, failure) in failures {
        let mut local = Local::with_commands(10);
        let collector = ScriptedCollector::start(move |n, request| {
            if n == 0 {
                failure.clone()
            } else {
                Answer::accept_all(request)
            }
        });
        let report = local.sync(&collector).unwrap_or_else(|err| panic!("{what}: {err}"));
        let requests = collector.requests();
        assert_eq!(requests.len(), 2, "{what}: one failure, one retry");
        assert_eq!(
            requests[0].json_bytes(),
            requests[1].json_bytes(),
            "{what}: the same batch again"
        );
        assert_eq!(requests[1].event_ids(), local.ids(), "{what}");
        assert_eq!((report.sent, report.accepted, report.retries), (10, 10, 1), "{what}");
        assert_eq!(local.pending(), 0, "{what}");
    }
}

#[test]
fn a_retry_after_a_429_comes_no_sooner_than_retry_after_says() {
    let mut local = Local::with_commands(10);
    let collector = ScriptedCollector::start(|n, request| {
        if n == 0 {
            Answer::error(429, "rate_limited", "this key passed its rate limit").with_header("Retry-After", "1")
        } else {
            Answer::accept_all(request)
        }
    });
    local.sync(&collector).unwrap();
    let requests = collector.requests();
    assert_eq!(requests.len(), 2);
    // The policy's own backoff is at most 100 ms: only Retry-After explains a longer wait.
    let waited = requests[1].arrived - requests[0].answered.unwrap();
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_eq!(local.pending(), 0);
}

#[test]
fn a_collector_that_stays_unavailable_is_given_up_on_and_nothing_is_lost() {
    let mut local = Local::with_commands(10);
    let collector = ScriptedCollector::start(|_, _| Answer::error(503, "unavailable", "storage is down"));
    let err = local.sync(&collector).unwrap_err();
    assert!(
        matches!(err, SyncError::Unreachable { attempts: 4, .. }),
        "gives up after max_attempts: {err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("unreachable after 4 attempts"), "{message}");
    assert!(
        message.contains("503") && message.contains("storage is down"),
        "{message}"
    );
    assert!(message.contains("nothing was lost"), "{message}");
    assert_eq!(collector.requests().len(), 4);
    assert_eq!(local.pending(), 10);

    // Nobody listening at all: connection refused, retried the same way.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut transport = HttpTransport::new(&format!("http://{closed_port}"), KEY);
    let options = SyncOptions {
        retry: QUICK_RETRY,
        ..SyncOptions::default()
    };
    let err = tally::sync::sync(
        &mut local.store,
        Level::Full,
        local.since,
        &mut transport,
        &options,
        &mut std::io::sink(),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, SyncError::Unreachable { attempts: 4, .. }), "{err:?}");
    assert!(
        err.to_string().contains(&closed_port.to_string()),
        "names the collector: {err}"
    );
    assert_eq!(local.pending(), 10);
}

#[test]
fn other_answers_stop_the_sync_at_once_with_the_collectors_message_and_mark_nothing() {
    let mut local = Local::with_commands(10);
    let answers = [
        (400, "malformed_batch", "events: must be an array of events"),
        (401, "unauthorized", "unknown or revoked key"),
        (403, "forbidden", "this key writes app \"other\", not \"testapp\""),
        (404, "not_found", "no route POST /v1/events/batch"),
        (415, "unsupported_media_type", "Content-Encoding must be gzip"),
        (422, "invalid_event", "ts: more than 24 h in the future"),
        (500, "internal", "something broke"),
    ];
    for (status, code, message) in answers {
        let collector = ScriptedCollector::start(move |_, _| Answer::error(status, code, message));
        let err = local.sync(&collector).unwrap_err();
        match &err {
            SyncError::Refused {
                status: got,
                message: said,
            } => assert_eq!((*got, said.as_str()), (status, message)),
            other => panic!("{status}: expected a refusal, got {other:?}"),
        }
        assert_eq!(err.to_string(), format!("the collector answered {status}: {message}"));
        assert_eq!(collector.requests().len(), 1, "{status} is not retried");
        assert_eq!(local.pending(), 10, "{status}: nothing marked sent");
    }
    // Everything is still there to send.
    let collector = ScriptedCollector::accepting();
    assert_eq!(local.sync(&collector).unwrap().sent, 10);
    assert_eq!(accepted_ids(&collector.requests(), |_| true), local.ids());
}

#[test]
fn a_sync_stopped_midway_resumes_after_the_last_answered_batch() {
    let mut local = Local::with_commands(2_500);
    let ids = local.ids();
    let collector = ScriptedCollector::start(|n, request| match n {
        0 => Answer::accept_all(request),
        _ => Answer::error(400, "malformed_batch", "something in the second batch"),
    });
    let err = local.sync(&collector).unwrap_err();
    assert!(matches!(err, SyncError::Refused { status: 400, .. }), "{err:?}");
    let first = collector.requests();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].event_ids(), ids[..1_000]);
    assert_eq!(first[1].event_ids(), ids[1_000..2_000]);
    assert_eq!(
        local.pending(),
        1_500,
        "the answered batch is marked, the refused one is not"
    );

    let collector = ScriptedCollector::accepting();
    let report = local.sync(&collector).unwrap();
    assert_eq!((report.sent, report.requests), (1_500, 2));
    assert_eq!(accepted_ids(&collector.requests(), |_| true), ids[1_000..]);
    assert_eq!(local.pending(), 0);
}

#[test]
fn a_413_splits_the_batch_until_each_part_fits() {
    let mut local = Local::with_commands(1_000);
    let collector = ScriptedCollector::start(|_, request| {
        if request.events().len() > 300 {
            Answer::error(413, "too_large", "batch over max_batch_events = 300")
        } else {
            Answer::accept_all(request)
        }
    });
    let report = local.sync(&collector).unwrap();
    let requests = collector.requests();
    let sizes: Vec<usize> = requests.iter().map(|request| request.events().len()).collect();
    assert_eq!(sizes, [1_000, 500, 250, 250, 500, 250, 250]);
    // Each event reached the collector in exactly one accepted request, in order.
    assert_eq!(
        accepted_ids(&requests, |request| request.events().len() <= 300),
        local.ids()
    );
    assert_eq!((report.sent, report.accepted, report.rejected), (1_000, 1_000, 0));
    assert_eq!(local.pending(), 0);
}

#[test]
fn an_event_too_large_even_alone_is_kept_aside_with_the_reason_and_never_sent_again() {
    const REASON: &str = "event is 9000 bytes of JSON; limit max_event_bytes = 8192";
    let mut local = Local::with_commands(8);
    let ids = local.ids();
    let too_large = ids[5].clone();
    let collector = ScriptedCollector::start({
        let too_large = too_large.clone();
        move |_, request| {
            if request.event_ids().contains(&too_large) {
                Answer::error(413, "too_large", REASON)
            } else {
                Answer::accept_all(request)
            }
        }
    });
    let report = local.sync(&collector).unwrap();
    assert_eq!((report.sent, report.accepted, report.rejected), (8, 7, 1));
    let requests = collector.requests();
    let carrying: Vec<usize> = requests
        .iter()
        .map(Request::event_ids)
        .filter(|batch| batch.contains(&too_large))
        .map(|batch| batch.len())
        .collect();
    assert_eq!(carrying, [8, 4, 2, 1], "split down to the event alone, then given up");
    let others: Vec<String> = ids.iter().filter(|id| **id != too_large).cloned().collect();
    assert_eq!(
        accepted_ids(&requests, |request| !request.event_ids().contains(&too_large)),
        others
    );

    let status = local.store.sync_status(local.since).unwrap();
    assert_eq!(status.rejected, 1);
    let refusal = &status.recent_refusals[0];
    assert_eq!(
        (refusal.id.as_str(), refusal.code.as_str(), refusal.message.as_str()),
        (too_large.as_str(), "too_large", REASON)
    );

    let sent_before = requests.len();
    let report = local.sync(&collector).unwrap();
    assert_eq!(report.sent, 0);
    assert_eq!(
        collector.requests().len(),
        sent_before,
        "the refused event is not retried"
    );
}

#[test]
fn refusals_in_a_200_answer_are_kept_aside_with_the_reason_and_never_sent_again() {
    const REASON: &str = "props.template: string values must be at most 256 bytes, got 300";
    let mut local = Local::with_commands(5);
    let ids = local.ids();
    let collector = ScriptedCollector::start(|n, request| match n {
        0 => Answer::refuse(request, &[2], REASON),
        _ => Answer::accept_all(request),
    });
    let report = local.sync(&collector).unwrap();
    assert_eq!((report.sent, report.accepted, report.rejected), (5, 4, 1));
    let status = local.store.sync_status(local.since).unwrap();
    assert_eq!((status.pending, status.rejected), (0, 1));
    let refusal = &status.recent_refusals[0];
    assert_eq!(
        (refusal.id.as_str(), refusal.code.as_str(), refusal.message.as_str()),
        (ids[2].as_str(), "invalid_event", REASON)
    );

    local.record_commands(2, tally_core::time::now_millis());
    local.sync(&collector).unwrap();
    let requests = collector.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].event_ids(), local.ids()[5..], "only the new events");
}

#[test]
fn events_from_before_upload_was_turned_on_wait_for_include_history() {
    let mut local = Local::new();
    let before = local.since.checked_sub(24.hours()).unwrap();
    let history = local.record_commands(3, before);
    let recent = local.record_commands(4, local.since);
    let id_list = |events: &[Event]| -> Vec<String> { events.iter().map(|event| event.id.to_string()).collect() };
    let collector = ScriptedCollector::accepting();

    assert_eq!(local.sync(&collector).unwrap().sent, 4);
    assert_eq!(accepted_ids(&collector.requests(), |_| true), id_list(&recent));

    assert_eq!(local.sync_with(&collector, true).unwrap().sent, 3);
    assert_eq!(accepted_ids(&collector.requests()[1..], |_| true), id_list(&history));
    assert_eq!(local.sync_with(&collector, true).unwrap().sent, 0);
    assert_eq!(collector.requests().len(), 2, "each event went once");
}

#[test]
fn events_recorded_after_retention_deleted_every_raw_event_are_still_uploaded() {
    // A user who synced, then did not run the app for longer than the retention period:
    // maintenance deletes every raw event, and the store starts numbering again.
    let mut local = Local::with_commands(5);
    let collector = ScriptedCollector::accepting();
    local.sync(&collector).unwrap();
    let later = tally_core::time::now_millis().checked_add((91 * 24).hours()).unwrap();
    let report = local
        .store
        .run_maintenance(&RetentionPolicy::default(), later, &|| false)
        .unwrap();
    assert_eq!(report.expired_for_age, 5);

    let new = local.record_commands(3, tally_core::time::now_millis());
    assert_eq!(local.pending(), 3, "three events wait for upload");
    let report = local.sync(&collector).unwrap();
    assert_eq!(report.sent, 3);
    let new_ids: Vec<String> = new.iter().map(|event| event.id.to_string()).collect();
    assert_eq!(accepted_ids(&collector.requests()[1..], |_| true), new_ids);
}

// ---------------------------------------------------------------------------------------
// `auto`: a host app uploading in the background

#[test]
fn child_records_then_waits_for_the_parent() {
    if !child::active() {
        return;
    }
    let telemetry = Telemetry::builder(child::APP).first_run_notice(false).open();
    telemetry.record(Event::builder("task", "task_completed"));
    // Once the flush is done, the flush thread has decided whether to upload.
    assert!(telemetry.flush());
    println!("RESULT flushed");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    drop(telemetry);
}

/// Turns `auto` upload on for the store in `dir`, as its config file would.
fn write_auto_config(dir: &Path, endpoint: &str, since: Timestamp, interval_minutes: u32) {
    std::fs::write(
        dir.with_extension("config.toml"),
        format!(
            "upload = \"auto\"\nendpoint = \"{endpoint}\"\nkey = \"{KEY}\"\nupload_since = \"{}\"\n\
             auto_interval_minutes = {interval_minutes}\n",
            tally_core::time::format(since)
        ),
    )
    .unwrap();
}

/// Runs the child until it flushed, calls `meanwhile`, then lets it end; returns how long
/// it took to exit once let go.
fn run_auto_child(dir: &Path, meanwhile: impl FnOnce()) -> Duration {
    let mut child = child::command("sync::child_records_then_waits_for_the_parent", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("RESULT flushed") {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let output = child.wait_with_output().unwrap();
            panic!("child ended early: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
    meanwhile();
    let started = Instant::now();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    elapsed
}

#[test]
fn a_background_upload_to_a_collector_that_never_answers_does_not_hold_up_the_host() {
    let local = Local::with_commands(3);
    let collector = ScriptedCollector::start(|_, _| Answer::Hang);
    write_auto_config(&local.dir, &collector.endpoint(), local.since, 60);
    let exited_in = run_auto_child(&local.dir, || {
        assert!(
            collector.wait_for_requests(1, Duration::from_secs(10)),
            "the background upload sent its batch"
        );
    });
    // The request is in flight and will never be answered (ureq's timeout is 60 s, the
    // upload's budget 30 s): the host's exit must not wait for it. The bound is far
    // above a normal exit and far below either.
    assert!(
        exited_in < Duration::from_secs(3),
        "the host took {exited_in:?} to exit"
    );
    assert!(collector.requests()[0].answered.is_none());
}

#[test]
fn background_uploads_happen_at_most_once_per_interval_across_runs() {
    let local = Local::with_commands(3);
    let pending = local.ids();
    let collector = ScriptedCollector::accepting();
    write_auto_config(&local.dir, &collector.endpoint(), local.since, 60);

    // One background upload is one connection: its transport keeps the connection
    // alive between batches, and events flushed while it runs may make a second batch.
    // The first one also registers the install's key, once, on a connection of its own.
    run_auto_child(&local.dir, || {
        assert!(
            collector.wait_for_requests(1, Duration::from_secs(10)),
            "the first run uploads"
        );
    });
    let uploaded: HashSet<String> = collector.requests()[0].event_ids().into_iter().collect();
    assert!(
        pending.iter().all(|id| uploaded.contains(id)),
        "it sent what was pending"
    );
    let after_first = collector.connections();
    assert_eq!(after_first, 2, "the upload and, once, the key registration");
    for run in 2..=4 {
        // Absence takes time to observe: each run stays alive for many times what the
        // first run's upload took, so an upload it started would have arrived.
        run_auto_child(&local.dir, || std::thread::sleep(Duration::from_millis(300)));
        assert_eq!(collector.connections(), after_first, "run {run} is within the interval");
    }

    // Once the interval is over (here: shortened to nothing), the next run uploads again.
    write_auto_config(&local.dir, &collector.endpoint(), local.since, 0);
    let requests_before = collector.requests().len();
    run_auto_child(&local.dir, || {
        assert!(
            collector.wait_for_requests(requests_before + 1, Duration::from_secs(10)),
            "the interval is over"
        );
    });
    assert_eq!(
        collector.connections(),
        after_first + 1,
        "one upload, and the key is not registered again"
    );
}
