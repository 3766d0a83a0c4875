//! `tally view`: the dashboard for the user's own store, on 127.0.0.1, read-only, behind a
//! token and a loopback `Host` check; driven over raw HTTP (to send forged `Host`
//! headers) and in headless Chromium.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::browser::Browser;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// A running `tally view`, killed when dropped.
struct View {
    child: Child,
    url: String,
}

impl View {
    fn start(dir: &std::path::Path) -> View {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["--app", "nexus", "--dir"])
            .arg(dir)
            .arg("view")
            .env_remove("TALLY_APP")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tally view");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|line| line.starts_with("http://"))
            .expect("tally view prints its address");
        std::thread::spawn(move || for _ in lines {});
        View { child, url }
    }

    fn address(&self) -> &str {
        self.url.trim_start_matches("http://").split('/').next().unwrap()
    }

    fn token(&self) -> &str {
        self.url.split("token=").nth(1).unwrap()
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 request with exactly these headers: (status, head, body).
fn raw(address: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

fn events_in_store(dir: &std::path::Path) -> i64 {
    let db = rusqlite::Connection::open(dir.join("telemetry.db")).unwrap();
    db.query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap()
}

/// A month of demo history for app `nexus` in `dir`.
fn write_demo(dir: &std::path::Path) {
    crate::support::tally(&[
        "--app",
        "nexus",
        "--dir",
        dir.to_str().unwrap(),
        "demo",
        "--days",
        "30",
        "--events",
        "1500",
    ]);
}

#[test]
fn view_refuses_foreign_hosts_and_missing_tokens_and_writes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    write_demo(&dir);
    let before = events_in_store(&dir);
    let view = View::start(&dir);
    assert!(view.url.starts_with("http://127.0.0.1:"), "{}", view.url);
    assert_eq!(view.token().len(), 48, "a 192-bit token");
    let address = view.address().to_owned();
    let with_token = format!("/?token={}", view.token());

    // DNS rebinding: a page on evil.test whose name now points at 127.0.0.1.
    let evil_host = format!("evil.test:{}", address.split(':').nth(1).unwrap());
    let (status, _, _) = raw(&address, "GET", &with_token, &[("Host", &evil_host)]);
    assert_eq!(status, 403, "a foreign Host is refused, even with the token");
    let (status, _, _) = raw(&address, "GET", "/", &[]);
    assert_eq!(status, 403, "no Host at all is refused");
    // No token: nothing, neither the page nor its data.
    for path in ["/", "/dashboard/api/stats?app=nexus", "/dashboard/api/session"] {
        let (status, _, _) = raw(&address, "GET", path, &[("Host", &address)]);
        assert_eq!(status, 401, "{path} without the token");
    }
    let (status, _, _) = raw(&address, "GET", "/?token=0000", &[("Host", &address)]);
    assert_eq!(status, 401, "a wrong token");
    // The token is traded for a cookie, and dropped from the address.
    let (status, head, _) = raw(&address, "GET", &with_token, &[("Host", &address)]);
    assert_eq!(status, 303, "{head}");
    let cookie_line = head
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap()
        .to_owned();
    assert!(
        cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"),
        "{cookie_line}"
    );
    let cookie = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (status, _, body) = raw(
        &address,
        "GET",
        "/dashboard/api/session",
        &[("Host", &address), ("Cookie", &cookie)],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"apps": ["nexus"], "read_only": true})
    );
    let (status, _, _) = raw(&address, "GET", "/", &[("Host", "localhost"), ("Cookie", &cookie)]);
    assert_eq!(status, 200, "localhost is loopback too");
    // Read-only: no method but GET and HEAD, and no stream.
    for (method, path) in [
        ("POST", "/dashboard/api/session"),
        ("POST", "/dashboard/api/signout"),
        ("DELETE", "/"),
    ] {
        let (status, _, _) = raw(&address, method, path, &[("Host", &address), ("Cookie", &cookie)]);
        assert_eq!(status, 405, "{method} {path}");
    }
    let (status, _, _) = raw(
        &address,
        "GET",
        "/dashboard/api/stream?app=nexus",
        &[("Host", &address), ("Cookie", &cookie)],
    );
    assert_eq!(status, 404);
    assert_eq!(events_in_store(&dir), before, "the view wrote nothing");
}

#[test]
fn view_shows_the_local_store_in_the_browser() {
    let Some(mut browser) = Browser::launch() else { return };
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    write_demo(&dir);
    let view = View::start(&dir);
    browser.navigate(&view.url);
    browser.wait_for("document.getElementById('main').dataset.loaded", WAIT);
    assert_eq!(
        browser.eval("location.search"),
        json!(""),
        "the token left the address bar"
    );
    for hidden in ["signin", "add-key", "signout", "live-panel"] {
        assert_eq!(
            browser.eval(&format!("document.getElementById('{hidden}').hidden")),
            json!(true),
            "{hidden}"
        );
    }
    // The events card counts what the store's rollups hold for the page's period.
    let shown = browser.eval("Object.assign({}, document.getElementById('main').dataset)");
    let (from, to) = (shown["from"].as_str().unwrap(), shown["to"].as_str().unwrap());
    let db = rusqlite::Connection::open(dir.join("telemetry.db")).unwrap();
    let expected: i64 = db
        .query_row(
            "SELECT coalesce(sum(count), 0) FROM metrics WHERE app = 'nexus' AND hour >= ?1 AND hour < ?2",
            [&from[..13], &to[..13]],
            |row| row.get(0),
        )
        .unwrap();
    assert!(expected > 1000, "{expected}");
    let events = browser.eval("document.querySelector('#card-events .value').dataset.value");
    assert_eq!(events, json!(expected.to_string()));
    // The store's one install was active in the last 30 days (its sessions say when).
    let active = browser.eval("document.querySelector('#card-active-30d .value').dataset.value");
    assert_eq!(active, json!("1"));
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("view");
    std::fs::create_dir_all(&shots).unwrap();
    browser.resize(1280, 900, false);
    browser.pump(Duration::from_millis(300));
    browser.screenshot(&shots.join("desktop.png"));
    let origin = format!("http://{}", view.address());
    let elsewhere: Vec<&String> = browser
        .requests
        .iter()
        .filter(|url| !url.starts_with(&origin) && !url.starts_with("about:"))
        .collect();
    assert!(elsewhere.is_empty(), "requests to another origin: {elsewhere:?}");
}
