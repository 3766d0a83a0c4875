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
