//! The owner's deploy kit, checked with the real tools: the Prometheus config and alert
//! rules with `promtool` (every alert has a firing and a quiet case in
//! `deploy/prometheus/alerts_test.yml`), the Grafana dashboard's structure, and that every
//! metric the dashboard and the rules query is exposed by a live `tally serve` holding
//! demo data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{Collector, create_key, demo_events, post_events, tool};
use serde_json::Value;

const PROMTOOL: &str = "/usr/bin/promtool";

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|err| panic!("deploy/{path}: {err}"))
}

/// Runs promtool; panics with its output unless it succeeds.
fn promtool(args: &[&str], dir: &Path, stdin: Option<&str>) {
    use std::io::Write as _;
    let mut child = Command::new(PROMTOOL)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut input = child.stdin.take().expect("promtool's stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("feed promtool");
    drop(input);
    let output = child.wait_with_output().expect("promtool's verdict");
    assert!(
        output.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    if tool(PROMTOOL, "prometheus").is_none() {
        return;
    }
    let dir = deploy("prometheus");
    promtool(&["check", "rules", "alerts.yml"], &dir, None);
    promtool(&["test", "rules", "alerts_test.yml"], &dir, None);

    // Every alert has a severity, a summary, a description and a `for`, and a test case
    // that expects it to fire and one that expects silence.
    let rules = read("prometheus/alerts.yml");
    let tests = read("prometheus/alerts_test.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 4, "{alerts:?}");
    for block in rules.split("- alert: ").skip(1) {
        for field in ["expr:", "for:", "severity:", "summary:", "description:"] {
            assert!(block.contains(field), "alert {block} lacks {field}");
        }
    }
    for alert in alerts {
        let cases: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|case| case.contains(&format!("alertname: {alert}\n")))
            .collect();
        assert!(
            cases.iter().any(|case| case.contains("exp_alerts: []")),
            "{alert} has no case where it stays quiet"
        );
        assert!(
            cases.iter().any(|case| case.contains("exp_labels:")),
            "{alert} has no case where it fires"
        );
    }
}

#[test]
fn the_prometheus_config_passes_promtool_with_a_token_file() {
    if tool(PROMTOOL, "prometheus").is_none() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let token = temp.path().join("tally_metrics_token");
    std::fs::write(&token, "a-token\n").unwrap();
    let config = read("prometheus/prometheus.yml");
    assert!(config.contains("authorization:") && config.contains("type: Bearer"));
    let config = config.replace("/etc/prometheus/tally_metrics_token", token.to_str().unwrap());
    std::fs::write(temp.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(deploy("prometheus/alerts.yml"), temp.path().join("alerts.yml")).unwrap();
    promtool(&["check", "config", "prometheus.yml"], temp.path(), None);
}

fn dashboard() -> Value {
    serde_json::from_str(&read("grafana/tally.json")).expect("tally.json is JSON")
}

#[test]
fn the_grafana_dashboard_is_well_formed() {
    let dashboard = dashboard();
    let uid = dashboard["uid"].as_str().expect("a uid");
    assert!(
        !uid.is_empty() && uid.len() <= 40,
        "Grafana uids are 1..=40 characters: {uid:?}"
    );
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 39);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "a datasource variable of type prometheus: {variables:?}"
    );
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "{title}: duplicate id");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            assert!(target["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
        }
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(w > 0 && x + w <= 24, "{title}: gridPos {grid} leaves the 24 columns");
        assert!(grid["h"].as_u64().unwrap() > 0, "{title}");
    }
    let titles: Vec<&str> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
    for wanted in [
        "Active installs",
        "Sessions",
        "Session minutes",
        "Feature usage",
        "Command latency",
        "Error rate",
        "Ingest throughput",
        "Ingest rejects",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(wanted)),
            "no {wanted} panel: {titles:?}"
        );
    }
}

/// The `tally_*` metric names a PromQL text uses.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let mut start = 0;
    while let Some(found) = expr[start..].find("tally_") {
        let begin = start + found;
        let mut end = begin;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        into.insert(expr[begin..end].to_owned());
        start = end;
    }
}

#[test]
fn every_metric_the_dashboard_and_alerts_use_is_in_a_live_metrics() {
    let mut used = BTreeSet::new();
    let dashboard = dashboard();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            metric_names(target["expr"].as_str().unwrap(), &mut used);
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        metric_names(variable["definition"].as_str().unwrap_or_default(), &mut used);
    }
    for line in read("prometheus/alerts.yml").lines() {
        if !line.trim_start().starts_with("summary") && !line.trim_start().starts_with("description") {
            metric_names(line, &mut used);
        }
    }
    assert!(used.len() >= 10, "{used:?}");

    let temp = tempfile::tempdir().unwrap();
    let db = temp.path().join("collector.db");
    let db = db.to_str().unwrap();
    let ingest = create_key(db, "nexus", "ingest");
    let collector = Collector::start(db, None);
    post_events(
        &collector,
        &ingest,
        &crate::support::with_features(demo_events("nexus", 30, 2000, 7)),
    );
    let (status, _) = crate::support::get(&collector.url("/v1/stats"), Some(&ingest));
    assert_eq!(status, 403, "an ingest key cannot read stats");
    let (status, metrics) = crate::support::get(&collector.url("/metrics"), None);
    assert_eq!(status, 200, "{metrics}");

    let exposed: BTreeSet<&str> = metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = used.iter().filter(|name| !exposed.contains(name.as_str())).collect();
    assert!(
        missing.is_empty(),
        "used but not exposed with a sample: {missing:?}\n{metrics}"
    );
    for new in [
        "tally_session_seconds_total{app=\"nexus\"}",
        "tally_command_duration_seconds_bucket{app=\"nexus\",command=",
        "tally_feature_usage_total{app=\"nexus\",feature=",
    ] {
        assert!(metrics.contains(new), "{new} missing:\n{metrics}");
    }
    if tool(PROMTOOL, "prometheus").is_some() {
        promtool(&["check", "metrics"], temp.path(), Some(&metrics));
    }
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let Some(analyze) = tool("/usr/bin/systemd-analyze", "systemd") else {
        return;
    };
    let unit = read("systemd/tally-serve.service");
    for directive in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=tally",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=",
        "NoNewPrivileges=yes",
        "ExecStart=/usr/local/bin/tally serve --db /var/lib/tally/",
    ] {
        assert!(unit.contains(directive), "tally-serve.service lacks {directive}");
    }
    // Verified as installed, with ExecStart pointing at the binary under test.
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("tally-serve.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/tally", env!("CARGO_BIN_EXE_tally"))).unwrap();
    let verify = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|line| line.split("tally-serve.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(exposure <= 2.0, "exposure {exposure} (0 is best, 10 worst):\n{report}");
}

/// A collector whose /metrics anyone who can connect may read says so when it starts.
#[test]
fn serve_warns_at_startup_when_metrics_are_open() {
    let temp = tempfile::tempdir().unwrap();
    let db = temp.path().join("collector.db");
    let open = crate::collector::Collector::start(db.to_str().unwrap(), None);
    // The listening line comes first; the warning right after it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !open.stderr().contains("/metrics") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let said = open.stderr();
    assert!(
        said.contains("warning: /metrics is open to anyone who can connect to 127.0.0.1:"),
        "{said}"
    );

    let config = temp.path().join("serve.toml");
    std::fs::write(&config, "metrics_token = \"a-metrics-token-of-some-length\"\n").unwrap();
    let closed = crate::collector::Collector::start(db.to_str().unwrap(), Some(&config));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!closed.stderr().contains("/metrics is open"), "{}", closed.stderr());
}
