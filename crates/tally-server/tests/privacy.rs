//! What the collector does to keep one user from being singled out: small-count
//! suppression in every aggregate, on every backend.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tally_core::Event;
use tally_server::config::ServerConfig;

use crate::http::{Collector, collector, event};
use crate::support::backends;

/// The three rare groups one install adds: a command run, a feature and an error.
fn rare_events(install: &str) -> Vec<Event> {
    let mut command = event("nexus", "command_executed", &format!("s-{install}"), install);
    command.command = Some("purge".into());
    let mut feature = event("nexus", "rare_feature", &format!("s-{install}"), install);
    feature.kind = "feature".into();
    feature.command = None;
    let mut error = event("nexus", "rare_error", &format!("s-{install}"), install);
    error.kind = "error".into();
    error.command = None;
    vec![command, feature, error]
}

/// A command and a feature used from six installs: always named.
fn common_events(install: &str) -> Vec<Event> {
    let mut command = event("nexus", "command_executed", &format!("s-{install}"), install);
    command.command = Some("sync".into());
    let mut feature = event("nexus", "dark_mode", &format!("s-{install}"), install);
    feature.kind = "feature".into();
    feature.command = None;
    vec![command, feature]
}

async fn send(collector: &Collector, events: Vec<Event>) {
    let (status, body) = collector
        .post("/v1/events/batch", &collector.ingest, &json!({"events": events}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn entry<'a>(list: &'a Value, field: &str, value: &str) -> Option<&'a Value> {
    list.as_array().unwrap().iter().find(|item| item[field] == value)
}

async fn stats_and_metrics(collector: &Collector) -> (Value, String) {
    let (status, stats) = collector.get("/v1/stats", &collector.admin).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let (status, metrics) = collector.get("/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    (stats, metrics.as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_from_fewer_than_min_installs_are_counted_as_other() {
    for backend in backends().await {
        let name = backend.name;
        let collector = collector(Arc::clone(&backend.store), ServerConfig::default()).await;
        for install in 0..6 {
            send(&collector, common_events(&format!("c-{install}"))).await;
        }
        for install in 1..=4 {
            send(&collector, rare_events(&format!("r-{install}"))).await;
        }
        let (stats, metrics) = stats_and_metrics(&collector).await;
        // Four installs: no rare name anywhere, its counts under other.
        let rendered = format!("{stats}{metrics}");
        for rare in ["purge", "rare_feature", "rare_error"] {
            assert!(!rendered.contains(rare), "{name}: {rare} is named: {rendered}");
        }
        assert_eq!(
            entry(&stats["commands"], "command", "other").unwrap()["runs"],
            4,
            "{name}: {stats}"
        );
        assert_eq!(
            entry(&stats["commands"], "command", "sync").unwrap()["runs"],
            6,
            "{name}"
        );
        assert_eq!(entry(&stats["feature_usage"], "feature", "other").unwrap()["count"], 4);
        assert_eq!(
            entry(&stats["feature_usage"], "feature", "dark_mode").unwrap()["count"],
            6
        );
        let other_events = stats["top_events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["type"] == "other" && item["name"] == "other")
            .unwrap_or_else(|| panic!("{name}: no other in {stats}"));
        // The rare feature and error (the command runs share a name with sync's).
        assert_eq!(other_events["count"], 8, "{name}: {stats}");
        assert!(
            metrics.contains(r#"tally_feature_usage_total{app="nexus",feature="other"} 4"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"tally_events_total{app="nexus",type="other",name="other"} 8"#),
            "{metrics}"
        );
        // Totals are exact whatever is hidden.
        assert_eq!(stats["totals"]["events"], 6 * 2 + 4 * 3, "{name}: {stats}");
        assert_eq!(stats["totals"]["commands"], 10);
        assert_eq!(stats["totals"]["errors"], 4);
        let before = stats["totals"].clone();

        // The fifth install names them.
        send(&collector, rare_events("r-5")).await;
        let (stats, metrics) = stats_and_metrics(&collector).await;
        assert_eq!(
            entry(&stats["commands"], "command", "purge").unwrap()["runs"],
            5,
            "{name}: {stats}"
        );
        assert!(
            entry(&stats["commands"], "command", "other").is_none(),
            "{name}: {stats}"
        );
        assert_eq!(
            entry(&stats["feature_usage"], "feature", "rare_feature").unwrap()["count"],
            5
        );
        assert!(
            metrics.contains(r#"tally_feature_usage_total{app="nexus",feature="rare_feature"} 5"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"tally_events_total{app="nexus",type="error",name="rare_error"} 5"#),
            "{metrics}"
        );
        assert!(!metrics.contains(r#"name="other""#), "{name}: {metrics}");
        assert_eq!(stats["totals"]["events"], before["events"].as_u64().unwrap() + 3);
        assert_eq!(stats["totals"]["commands"], 11);
        assert_eq!(stats["totals"]["errors"], 5);

        // Erasing an install takes it out of the counts of its groups: four again.
        collector.store.erase_install("nexus", "r-5").await.unwrap();
        let (stats, _) = stats_and_metrics(&collector).await;
        assert!(
            entry(&stats["commands"], "command", "purge").is_none(),
            "{name}: {stats}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_installs_zero_names_every_group() {
    for backend in backends().await {
        let config = ServerConfig {
            min_installs: 0,
            ..ServerConfig::default()
        };
        let collector = collector(Arc::clone(&backend.store), config).await;
        send(&collector, rare_events("r-1")).await;
        let (stats, metrics) = stats_and_metrics(&collector).await;
        assert_eq!(
            entry(&stats["commands"], "command", "purge").unwrap()["runs"],
            1,
            "{stats}"
        );
        assert!(metrics.contains(r#"feature="rare_feature""#), "{metrics}");
    }
}

#[test]
fn min_installs_is_bounded_by_what_the_collector_remembers() {
    let config = ServerConfig {
        min_installs: 101,
        ..ServerConfig::default()
    };
    assert_eq!(
        config.check().unwrap_err(),
        "min_installs: must be at most 100 (got 101)"
    );
}

fn yesterday() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .unwrap()
}

/// One install's counts of one day: 7 runs of `sync` (2 failed, 5 timed) and 3 uses of
/// a feature.
fn day_counts(install: &str, day: jiff::civil::Date) -> Value {
    let mut histogram = vec![0u64; tally_store::histogram::BUCKETS];
    histogram[tally_store::histogram::bucket_of(40)] = 5;
    json!({
        "app": "nexus",
        "install_id": install,
        "day": day.to_string(),
        "counts": [
            {"type": "command", "name": "command_executed", "command": "sync", "success": true,
             "count": 5, "duration_count": 5, "duration_total_ms": 200, "histogram": histogram},
            {"type": "command", "name": "command_executed", "command": "sync", "success": false,
             "error_category": "network", "count": 2, "duration_count": 0, "duration_total_ms": 0,
             "histogram": vec![0u64; tally_store::histogram::BUCKETS]},
            {"type": "feature", "name": "dark_mode", "count": 3, "duration_count": 0, "duration_total_ms": 0,
             "histogram": vec![0u64; tally_store::histogram::BUCKETS]},
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_stored_once_per_install_and_day_and_counted_everywhere() {
    for backend in backends().await {
        let name = backend.name;
        let config = ServerConfig {
            min_installs: 0,
            ..ServerConfig::default()
        };
        let collector = collector(Arc::clone(&backend.store), config).await;
        let day = yesterday();
        let (status, answer) = collector
            .post("/v1/counts", &collector.ingest, &day_counts("i-1", day))
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {answer}");
        assert_eq!(
            (answer["stored"].as_bool(), answer["events"].as_u64()),
            (Some(true), Some(10))
        );
        // A resend, whole or changed, adds and replaces nothing.
        let mut changed = day_counts("i-1", day);
        changed["counts"][2]["count"] = json!(300);
        for again in [day_counts("i-1", day), changed] {
            let (status, answer) = collector.post("/v1/counts", &collector.ingest, &again).await;
            assert_eq!(
                (status, answer["stored"].as_bool()),
                (StatusCode::OK, Some(false)),
                "{name}: {answer}"
            );
        }
        // Another install's same day is its own.
        let (_, answer) = collector
            .post("/v1/counts", &collector.ingest, &day_counts("i-2", day))
            .await;
        assert_eq!(answer["stored"], true);

        let (status, stats) = collector.get("/v1/stats", &collector.admin).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(stats["totals"]["events"], 20, "{name}: {stats}");
        assert_eq!(stats["totals"]["commands"], 14);
        assert_eq!(stats["totals"]["failures"], 4);
        assert_eq!(
            stats["counts_only"],
            json!({"present": true, "uploads": 2, "installs": 2, "events": 20}),
            "{name}"
        );
        let sync = entry(&stats["commands"], "command", "sync").unwrap();
        assert_eq!(
            (sync["runs"].as_u64(), sync["avg_duration_ms"].as_u64()),
            (Some(14), Some(40))
        );
        assert_eq!(stats["active_installs"]["30d"], 2, "{name}: {stats}");
        let (_, metrics) = collector.get("/metrics", "").await;
        let metrics = metrics.as_str().unwrap();
        assert!(
            metrics.contains(r#"tally_feature_usage_total{app="nexus",feature="dark_mode"} 6"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"tally_commands_total{app="nexus",outcome="failure"} 4"#),
            "{metrics}"
        );
        // Raw events there are none.
        assert!(collector.stored().await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_counts_upload_is_refused_naming_the_rule_and_changes_nothing() {
    for backend in backends().await {
        let name = backend.name;
        let collector = collector(Arc::clone(&backend.store), ServerConfig::default()).await;
        let day = yesterday();
        let mut bad_histogram = day_counts("i-1", day);
        bad_histogram["counts"][0]["histogram"][0] = json!(1);
        let mut with_event_id = day_counts("i-1", day);
        with_event_id["counts"][0]["session_id"] = json!("s-1");
        let tomorrow = day.tomorrow().unwrap().tomorrow().unwrap();
        for (body, expected) in [
            (
                bad_histogram,
                "counts[0].histogram: bucket counts must add up to duration_count",
            ),
            (with_event_id, "unknown field `session_id`"),
            (day_counts("i-1", tomorrow), "day: must be a complete UTC day"),
            (
                day_counts("i-1", day.checked_sub(jiff::ToSpan::days(400)).unwrap()),
                "day: must be within retention_days = 90",
            ),
        ] {
            let (status, answer) = collector.post("/v1/counts", &collector.ingest, &body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {answer}");
            assert_eq!(answer["error"]["code"], "invalid_counts");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains(expected), "{name}: {message}");
        }
        let (status, _) = collector
            .post("/v1/counts", &collector.other_app_ingest, &day_counts("i-1", day))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}");
        let (status, _) = collector
            .post("/v1/counts", &collector.admin, &day_counts("i-1", day))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: an admin key does not ingest");
        let (_, stats) = collector.get("/v1/stats", &collector.admin).await;
        assert_eq!(stats["totals"]["events"], 0, "{name}: {stats}");
        assert_eq!(stats["counts_only"]["present"], false);
        // The refused day can still be sent once, correctly.
        let (_, answer) = collector
            .post("/v1/counts", &collector.ingest, &day_counts("i-1", day))
            .await;
        assert_eq!(answer["stored"], true, "{name}: {answer}");
    }
}

// ---------------------------------------------------------------------------------------
// An install reads and erases its own data, proving who it is

/// An install's key pair, as the SDK derives it from the install's secret.
struct Install {
    id: String,
    pair: ring::signature::Ed25519KeyPair,
}

impl Install {
    fn new(id: &str, secret: u8) -> Install {
        let seed = tally_core::proof::key_seed(&[secret; 32]);
        Install {
            id: id.to_owned(),
            pair: ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap(),
        }
    }

    fn public_hex(&self) -> String {
        use ring::signature::KeyPair;
        hex::encode(self.pair.public_key().as_ref())
    }

    /// A payload for `action` about `install_id`, signed by this install, made `age`
    /// seconds ago.
    fn proof_for(&self, action: &str, app: &str, install_id: &str, age: i64) -> Value {
        let ts = jiff::Timestamp::now().as_second() - age;
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).unwrap();
        let nonce = hex::encode(nonce);
        let message = tally_core::proof::proof_message(action, app, install_id, ts, &nonce);
        json!({
            "install_id": install_id,
            "proof": {
                "key": self.public_hex(),
                "ts": ts,
                "nonce": nonce,
                "signature": hex::encode(self.pair.sign(&message).as_ref()),
            }
        })
    }

    fn proof(&self, action: &str) -> Value {
        self.proof_for(action, "nexus", &self.id, 0)
    }
}

async fn register(collector: &Collector, install: &Install) -> (StatusCode, Value) {
    collector
        .post(
            "/v1/installs/self/key",
            &collector.ingest,
            &json!({"install_id": install.id, "key": install.public_hex()}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_alone_reads_and_erases_its_own_data() {
    for backend in backends().await {
        let name = backend.name;
        let config = ServerConfig {
            min_installs: 0,
            ..ServerConfig::default()
        };
        let collector = collector(Arc::clone(&backend.store), config).await;
        let (a, b) = (Install::new("install-a", 1), Install::new("install-b", 2));
        send(
            &collector,
            [common_events("install-a"), rare_events("install-a")].concat(),
        )
        .await;
        send(&collector, common_events("install-b")).await;
        let (status, _) = collector
            .post("/v1/counts", &collector.ingest, &day_counts("install-a", yesterday()))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            register(&collector, &a).await,
            (StatusCode::OK, json!({"registered": "new"})),
            "{name}"
        );
        assert_eq!(register(&collector, &a).await.1, json!({"registered": "unchanged"}));
        assert_eq!(register(&collector, &b).await.1, json!({"registered": "new"}));
        let impostor = Install::new("install-a", 3);
        let (status, answer) = register(&collector, &impostor).await;
        assert_eq!(status, StatusCode::CONFLICT, "{name}: the first key stays: {answer}");

        // Own install: what the collector holds about it.
        let (status, remote) = collector
            .post(
                "/v1/installs/self/remote",
                &collector.ingest,
                &a.proof("installs.remote"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {remote}");
        assert_eq!(remote["raw_events"], 5, "{name}: {remote}");
        assert_eq!(
            (remote["counted_days"].as_u64(), remote["counted_events"].as_u64()),
            (Some(1), Some(10))
        );
        assert_eq!(remote["events"], 15);
        let (first, last) = (remote["first_seen"].as_str(), remote["last_seen"].as_str());
        assert!(first.is_some() && first <= last, "{name}: {remote}");
        let by_name: u64 = remote["by_name"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["count"].as_u64().unwrap())
            .sum();
        assert_eq!(by_name, 15);

        // The auth matrix: each refused, and nothing changes.
        let mut replayed = a.proof("installs.remote");
        let (status, _) = collector
            .post("/v1/installs/self/remote", &collector.ingest, &replayed)
            .await;
        assert_eq!(status, StatusCode::OK);
        let stale = a.proof_for("installs.forget", "nexus", "install-a", 3600);
        let remote_proof_for_forget = a.proof("installs.remote");
        let refused = [
            (
                "replayed proof",
                &collector.ingest,
                "/v1/installs/self/remote",
                replayed.clone(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "another install",
                &collector.ingest,
                "/v1/installs/self/forget",
                a.proof_for("installs.forget", "nexus", "install-b", 0),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "no proof",
                &collector.ingest,
                "/v1/installs/self/forget",
                json!({"install_id": "install-a"}),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "a stale proof",
                &collector.ingest,
                "/v1/installs/self/forget",
                stale,
                StatusCode::UNAUTHORIZED,
            ),
            (
                "a proof for another action",
                &collector.ingest,
                "/v1/installs/self/forget",
                remote_proof_for_forget,
                StatusCode::UNAUTHORIZED,
            ),
            (
                "another app's key",
                &collector.other_app_ingest,
                "/v1/installs/self/forget",
                a.proof("installs.forget"),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "an admin key",
                &collector.admin,
                "/v1/installs/self/forget",
                a.proof("installs.forget"),
                StatusCode::FORBIDDEN,
            ),
        ];
        for (case, key, path, payload, expected) in refused {
            let (status, answer) = collector.post(path, key, &payload).await;
            assert_eq!(status, expected, "{name}: {case}: {answer}");
        }
        replayed["proof"]["signature"] = json!("00".repeat(64));
        let (status, _) = collector
            .post("/v1/installs/self/remote", &collector.ingest, &replayed)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: a forged signature");
        let held: i64 = backend
            .rows_of_install("nexus", "install-a")
            .await
            .iter()
            .map(|(_, rows)| rows)
            .sum();
        assert!(held > 0, "{name}: refused requests erased nothing");

        // Forget: zero rows anywhere, totals drop by exactly its events.
        let (_, before) = collector.get("/v1/stats", &collector.admin).await;
        let (status, erased) = collector
            .post(
                "/v1/installs/self/forget",
                &collector.ingest,
                &a.proof("installs.forget"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {erased}");
        assert_eq!(
            (
                erased["deleted_events"].as_u64(),
                erased["deleted_counted_days"].as_u64(),
                erased["uncounted_events"].as_u64()
            ),
            (Some(5), Some(1), Some(15)),
            "{name}: {erased}"
        );
        for (table, rows) in backend.rows_of_install("nexus", "install-a").await {
            assert_eq!(rows, 0, "{name}: {table} still holds install-a");
        }
        let (_, after) = collector.get("/v1/stats", &collector.admin).await;
        assert_eq!(
            after["totals"]["events"].as_u64().unwrap(),
            before["totals"]["events"].as_u64().unwrap() - 15,
            "{name}: {after}"
        );
        assert_eq!(after["totals"]["events"], 2, "{name}: only install-b's events are left");
        assert_eq!(after["counts_only"]["present"], false);
        assert_eq!(after["active_installs"]["30d"], 1);
        assert_eq!(
            before["active_installs_windows"]["30d"]["current"], 2,
            "{name}: {before}"
        );
        assert_eq!(
            after["active_installs_windows"]["30d"]["current"], 1,
            "{name}: install-a's activity went with it"
        );
        let (_, metrics) = collector.get("/metrics", "").await;
        let metrics = metrics.as_str().unwrap();
        assert!(!metrics.contains("rare_feature"), "{name}: {metrics}");
        assert!(
            metrics.contains(r#"tally_feature_usage_total{app="nexus",feature="dark_mode"} 1"#),
            "{metrics}"
        );
        assert_eq!(
            backend.rows_of_install("nexus", "install-b").await[0],
            ("events", 2),
            "{name}: B untouched"
        );

        // Its key went too: the old proof proves nothing, and a later upload starts fresh.
        let (status, _) = collector
            .post(
                "/v1/installs/self/remote",
                &collector.ingest,
                &a.proof("installs.remote"),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        send(&collector, common_events("install-a")).await;
        assert_eq!(register(&collector, &a).await.1, json!({"registered": "new"}));
        let (_, remote) = collector
            .post(
                "/v1/installs/self/remote",
                &collector.ingest,
                &a.proof("installs.remote"),
            )
            .await;
        assert_eq!(
            (remote["events"].as_u64(), remote["counted_days"].as_u64()),
            (Some(2), Some(0)),
            "{name}: {remote}"
        );
    }
}
