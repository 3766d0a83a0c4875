//! The deployment example Prometheus reads (deploy/prometheus.yml): it passes
//! promtool's own check, and it scrapes /metrics with the bearer token a collector with
//! `metrics_token` asks for.

use std::process::Command;

#[test]
fn the_prometheus_example_passes_promtool_and_sends_the_metrics_token() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/prometheus.yml"))
        .expect("deploy/prometheus.yml");
    assert!(
        example.contains("authorization:") && example.contains("type: Bearer"),
        "{example}"
    );
    // promtool insists that the token file exists: point it at one.
    let temp = tempfile::tempdir().unwrap();
    let token = temp.path().join("tally-metrics-token");
    std::fs::write(&token, "a-metrics-token-of-some-length\n").unwrap();
    let config = temp.path().join("prometheus.yml");
    let local = example.replace("/etc/prometheus/tally-metrics-token", token.to_str().unwrap());
    assert_ne!(local, example, "the example names its token file");
    std::fs::write(&config, local).unwrap();
    let checked = Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output()
        .expect("run promtool (Debian package prometheus)");
    assert!(
        checked.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
