//! `tally report --format html` opened in headless Chromium, offline: the page the
//! binary writes must build its four charts and usage figures without fetching anything.
//!
//! Chromium is looked for at `$CHROMIUM` or `/usr/bin/chromium` (Debian's `chromium`
//! package). Without it the test prints a note and passes, except under CI, where it
//! fails: a browser check that silently never runs is worse than none.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NOW: &str = "2026-11-22T12:00:00Z";

/// How long Chromium may take to start, load the page and print its DOM.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

fn tally(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["--app", "reporter", "--dir"])
        .arg(dir)
        .args(["--now", NOW])
        .args(args)
        .env("TZ", "UTC")
        .env("REPORTER_TELEMETRY_CONFIG", dir.join("telemetry.toml"))
        .env_remove("REPORTER_TELEMETRY")
        .env_remove("DO_NOT_TRACK")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tally {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing; CI must install chromium to check the HTML report",
        path.display()
    );
    eprintln!(
        "note: {} not found; skipping the headless browser check",
        path.display()
    );
    None
}

/// The DOM Chromium builds from `page`, with every host name unresolvable.
fn rendered_dom(chromium: &Path, page: &Path, scratch: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let dom_path = scratch.join("dom.html");
    let log_path = scratch.join("chromium.log");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&dom_path).unwrap())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {BROWSER_TIMEOUT:?}:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "chromium failed ({status}):\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    std::fs::read_to_string(&dom_path).unwrap()
}

#[test]
fn html_report_renders_offline_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let temp = tempfile::tempdir().unwrap();
    let store = temp.path().join("store");
    tally(&store, &["demo", "--days", "30", "--events", "3000", "--seed", "11"]);
    let page = temp.path().join("report.html");
    let stdout = tally(
        &store,
        &[
            "report",
            "--month",
            "--format",
            "html",
            "--output",
            page.to_str().unwrap(),
        ],
    );
    assert!(stdout.is_empty(), "the report went to the file, not stdout: {stdout}");
    let written = std::fs::read_to_string(&page).unwrap();

    let dom = rendered_dom(&chromium, &page, temp.path());
    assert_eq!(dom.matches("<svg").count(), 4, "{dom}");
    for id in ["chart-daily", "chart-usage", "chart-durations", "chart-errors"] {
        assert!(
            dom.contains(&format!("<svg class=\"chart\" id=\"{id}\"")),
            "{id} missing:\n{dom}"
        );
    }
    for label in [
        "Commands run",
        "Success rate",
        "Workspaces created",
        "Tasks completed",
        "Sessions",
        "Average session",
    ] {
        let card = format!("</div><div class=\"label\">{label}</div>");
        assert!(dom.contains(&card), "usage figure {label} missing:\n{dom}");
    }
    // The figures the browser shows are the ones the text report prints.
    let text = tally(&store, &["report", "--month"]);
    let figure = |label: &str| {
        let line = text.lines().find(|line| line.trim_start().starts_with(label)).unwrap();
        line.trim_start()[label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    for label in ["Commands run", "Workspaces created", "Tasks completed", "Sessions"] {
        let card = format!(">{}</div><div class=\"label\">{label}</div>", figure(label));
        assert!(dom.contains(&card), "{card} missing from the page");
    }
    assert!(written.contains("default-src 'none'"), "the page forbids every fetch");
}
