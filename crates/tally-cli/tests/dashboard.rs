//! The collector's dashboard at `/`, in headless Chromium against a real `tally serve`
//! holding demo data: sign-in (an ingest key refused), every panel's numbers equal to
//! `GET /v1/stats` for the same period, the app switcher keeping apps apart, the live feed
//! showing a newly posted event, keyboard navigation reaching every control, no request
//! to another origin, screenshots at desktop and phone width, and sign-out.

use std::time::{Duration, Instant};

use crate::support::browser::Browser;
use crate::support::{Collector, create_key, demo_events, get, post_events, with_features};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Signs in through the form with `key`.
fn sign_in(browser: &mut Browser, key: &str) {
    browser.eval(&format!(
        "document.getElementById('key').value = {}; document.getElementById('signin-form').requestSubmit(); true",
        json!(key)
    ));
}

/// The `/v1/stats` answer for the period the page shows.
fn stats_for_page(browser: &mut Browser, collector: &Collector, admin: &str) -> Value {
    let shown = browser.eval("Object.assign({}, document.getElementById('main').dataset)");
    let url = collector.url(&format!(
        "/v1/stats?from={}&to={}&bucket=day",
        shown["from"].as_str().unwrap(),
        shown["to"].as_str().unwrap()
    ));
    let (status, body) = get(&url, Some(admin));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Every figure the page shows, read from its DOM.
const READ_PAGE: &str = r#"(() => {
  const value = (id) => document.querySelector(`#card-${id} .value`).dataset.value;
  const rows = (selector, ...fields) => [...document.querySelectorAll(selector)].map((row) => fields.map((f) => row.dataset[f]));
  return {
    cards: Object.fromEntries(["active-24h", "active-7d", "active-30d", "sessions", "session-length", "commands", "error-rate", "events"].map((id) => [id, value(id)])),
    previous: Object.fromEntries(["active-24h", "active-7d", "active-30d", "sessions", "session-length", "commands", "error-rate", "events"].map((id) => [id, document.querySelector(`#card-${id} .change`).dataset.previous])),
    bars: [...document.querySelectorAll('#activity-chart rect')].map((bar) => Number(bar.dataset.events)),
    table: [...document.querySelectorAll('#activity-data tbody tr')].map((row) => [...row.children].map((cell) => cell.textContent)),
    features: rows('#features tbody tr', 'name', 'count'),
    errors: rows('#errors tbody tr', 'name', 'count'),
    commands: rows('#commands-table tbody tr', 'name', 'runs', 'failures', 'p50', 'p95'),
    score: document.getElementById('gauge').dataset.score,
    parts: rows('#engagement-parts tr', 'part', 'value'),
    alt: document.getElementById('activity-chart').getAttribute('aria-labelledby'),
  };
})()"#;

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether the page's text for a number is that number (JSON writes `1.0`, JS `1`; and
/// serde_json's default float parsing may miss the last bit).
fn same(shown: &Value, expected: &Value) -> bool {
    match (text(shown).parse::<f64>(), expected.as_f64()) {
        (Ok(shown), Some(expected)) => (shown - expected).abs() <= 1e-12 * expected.abs().max(1.0),
        _ => text(shown) == text(expected),
    }
}

/// Checks that every panel shows what `/v1/stats` answers.
fn assert_page_equals(page: &Value, stats: &Value) {
    let cards = &page["cards"];
    for (card, value) in [
        ("active-24h", &stats["active_installs_windows"]["24h"]["current"]),
        ("active-7d", &stats["active_installs_windows"]["7d"]["current"]),
        ("active-30d", &stats["active_installs_windows"]["30d"]["current"]),
        ("sessions", &stats["sessions"]["count"]),
        ("session-length", &stats["sessions"]["avg_duration_ms"]),
        ("commands", &stats["totals"]["commands"]),
        ("error-rate", &stats["error_rate"]),
        ("events", &stats["totals"]["events"]),
    ] {
        assert!(
            same(&cards[card], value),
            "card {card}: page {} vs stats {value}",
            cards[card]
        );
    }
    // Each card compares with the figure before: the active-installs cards with the
    // equally long span before theirs, the others with the period before (`previous`).
    let before = &stats["previous"];
    let no_earlier_rate = json!("");
    for (card, previous) in [
        ("active-24h", &stats["active_installs_windows"]["24h"]["previous"]),
        ("active-7d", &stats["active_installs_windows"]["7d"]["previous"]),
        ("active-30d", &stats["active_installs_windows"]["30d"]["previous"]),
        ("sessions", &before["sessions"]["count"]),
        ("session-length", &before["sessions"]["avg_duration_ms"]),
        ("commands", &before["totals"]["commands"]),
        ("events", &before["totals"]["events"]),
        (
            "error-rate",
            if before["totals"]["events"] == 0 {
                &no_earlier_rate
            } else {
                &before["error_rate"]
            },
        ),
    ] {
        assert!(
            same(&page["previous"][card], previous),
            "card {card}'s earlier figure: page {} vs stats {previous}",
            page["previous"][card]
        );
    }
    let series = stats["series"].as_array().unwrap();
    let bars: Vec<u64> = series.iter().map(|p| p["events"].as_u64().unwrap()).collect();
    assert_eq!(page["bars"], json!(bars), "the activity chart");
    assert_eq!(
        page["table"].as_array().unwrap().len(),
        series.len(),
        "the chart's table"
    );
    for (row, point) in page["table"].as_array().unwrap().iter().zip(series) {
        assert_eq!(row[0], point["start"].as_str().unwrap()[..10], "{row}");
        let sessions = point["sessions"].as_u64().unwrap();
        assert_eq!(row[2].as_str().unwrap().replace(',', ""), sessions.to_string(), "{row}");
    }
    let pairs = |list: &Value, name: &str, count: &str| -> Vec<Vec<String>> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|row| vec![text(&row[name]), text(&row[count])])
            .collect()
    };
    let features = pairs(&stats["feature_usage"], "feature", "count");
    assert!(!features.is_empty(), "the demo data has features");
    assert_eq!(page["features"], json!(features), "top features");
    let errors = pairs(&stats["error_categories"], "category", "count");
    assert!(!errors.is_empty(), "the demo data has errors");
    assert_eq!(page["errors"], json!(errors), "errors by category");
    let commands: Vec<Vec<String>> = stats["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let fields = ["command", "runs", "failures", "p50_ms", "p95_ms"];
            fields.iter().map(|field| text(&row[field])).collect()
        })
        .collect();
    assert!(!commands.is_empty());
    assert!(
        commands.iter().all(|row| !row[3].is_empty() && !row[4].is_empty()),
        "demo commands are timed: {commands:?}"
    );
    assert_eq!(page["commands"], json!(commands), "top commands");
    let engagement = &stats["engagement"];
    assert_eq!(text(&page["score"]), text(&engagement["score"]), "engagement score");
    for (part, name) in page["parts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["stickiness", "depth", "reliability", "breadth"])
    {
        assert_eq!(part[0], name);
        assert!(
            same(&part[1], &engagement[name]),
            "engagement {name}: {part} vs {}",
            engagement[name]
        );
    }
    assert!(
        page["alt"].as_str().unwrap().contains("activity-svg-desc"),
        "the chart has a text alternative"
    );
}

/// WCAG AA: the contrast of text against the background behind it.
const CONTRAST: &str = r#"(() => {
  const rgb = (text) => text.match(/[\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const background = (node) => { for (; node; node = node.parentElement) { const c = getComputedStyle(node).backgroundColor; if (!c.endsWith(', 0)') && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; };
  const ratio = (node) => { const a = lum(rgb(getComputedStyle(node).color)), b = lum(rgb(background(node))); return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); };
  const nodes = [...document.querySelectorAll('h1, h2, .value, .label, .change, th, td, button, summary, .span, .live li')].filter((n) => n.offsetParent && n.textContent.trim());
  return nodes.map((n) => [n.tagName + '.' + n.className + ' ' + n.textContent.trim().slice(0, 20), ratio(n)]).filter(([, r]) => r < 4.5);
})()"#;

#[test]
fn the_dashboard_shows_what_v1_stats_answers_and_stays_on_its_origin() {
    let Some(mut browser) = Browser::launch() else { return };
    let temp = tempfile::tempdir().unwrap();
    let db = temp.path().join("collector.db");
    let db = db.to_str().unwrap();
    let ingest = create_key(db, "nexus", "ingest");
    let admin = create_key(db, "nexus", "admin");
    let ledger_ingest = create_key(db, "ledger", "ingest");
    let ledger_admin = create_key(db, "ledger", "admin");
    // The demo history is one install per app: small-count suppression (the default
    // `min_installs = 5`, tested in tally-server) would fold every name into `other`.
    let config = temp.path().join("collector.toml");
    std::fs::write(&config, "min_installs = 0\n").unwrap();
    let collector = Collector::start(db, Some(&config));
    post_events(&collector, &ingest, &with_features(demo_events("nexus", 90, 4000, 3)));
    let ledger_events: Vec<Value> = demo_events("ledger", 30, 600, 9);
    post_events(&collector, &ledger_ingest, &ledger_events);

    // The page's headers forbid everything but its own origin.
    let page = crate::support::agent().get(&collector.url("/")).call().unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.starts_with("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );

    browser.navigate(&collector.url("/"));
    browser.wait_for("!document.getElementById('signin').hidden", WAIT);

    // An ingest key cannot sign in.
    sign_in(&mut browser, &ingest);
    let refused = browser.wait_for("document.getElementById('signin-error').textContent", WAIT);
    assert!(refused.as_str().unwrap().contains("admin"), "{refused}");
    assert_eq!(browser.eval("document.getElementById('main').hidden"), json!(true));
    assert_eq!(
        browser.eval("document.cookie"),
        json!(""),
        "no session for an ingest key"
    );

    sign_in(&mut browser, &admin);
    browser.wait_for("document.getElementById('main').dataset.loaded", WAIT);
    assert_eq!(
        browser.eval("document.cookie"),
        json!(""),
        "the session cookie is HttpOnly"
    );
    let stats = stats_for_page(&mut browser, &collector, &admin);
    assert_page_equals(&browser.eval(READ_PAGE), &stats);
    // The demo install was active through 90 days, so the 30 days before the last 30
    // hold it too: the card compares with a real earlier figure.
    assert_eq!(
        stats["active_installs_windows"]["30d"],
        json!({"current": 1, "previous": 1}),
        "{stats}"
    );
    let change = browser.eval("document.querySelector('#card-active-30d .change').textContent");
    assert_eq!(change, json!("no change vs previous 30 days"));
    assert_eq!(
        browser.eval("[...document.getElementById('app').options].map((o) => o.value)"),
        json!(["nexus"])
    );
    // The session holds only nexus: asking for ledger is refused.
    let other = browser.eval("fetch('/dashboard/api/stats?app=ledger').then((r) => r.status)");
    assert_eq!(other, json!(403));

    // 7 and 90 days: the chart follows, and still equals /v1/stats.
    for days in [7, 90] {
        let before = browser.eval("document.getElementById('main').dataset.loaded");
        browser.eval(&format!(
            "document.querySelector('[data-days=\"{days}\"]').click(); true"
        ));
        browser.wait_for(
            &format!("document.getElementById('main').dataset.loaded !== {before}"),
            WAIT,
        );
        let stats = stats_for_page(&mut browser, &collector, &admin);
        // The period ends at the next whole hour; its first UTC day is partial unless the
        // period starts at midnight.
        let points = stats["series"].as_array().unwrap().len();
        assert!(
            points == days || points == days + 1,
            "{days} days: {points} daily points"
        );
        assert_page_equals(&browser.eval(READ_PAGE), &stats);
    }

    // A second app's key adds it to the switcher; each app shows only its own figures.
    browser.eval("document.getElementById('add-key').click(); true");
    sign_in(&mut browser, &ledger_admin);
    browser.wait_for("document.getElementById('app').options.length === 2", WAIT);
    browser.eval("(() => { const s = document.getElementById('app'); s.value = 'ledger'; s.dispatchEvent(new Event('change')); return true; })()");
    browser.wait_for(
        "document.getElementById('main').dataset.app === 'ledger' && document.querySelector('#card-events .value')",
        WAIT,
    );
    browser.wait_for("document.getElementById('span').textContent.startsWith('ledger')", WAIT);
    let ledger = stats_for_page(&mut browser, &collector, &ledger_admin);
    let shown = browser.eval(READ_PAGE);
    assert!(same(&shown["cards"]["events"], &ledger["totals"]["events"]));
    assert_ne!(ledger["totals"]["events"], stats["totals"]["events"]);
    browser.eval("(() => { const s = document.getElementById('app'); s.value = 'nexus'; s.dispatchEvent(new Event('change')); return true; })()");
    browser.wait_for("document.getElementById('span').textContent.startsWith('nexus')", WAIT);

    // The live feed shows an event posted now.
    browser.wait_for(
        "document.getElementById('live-state').textContent === '(connected)'",
        WAIT,
    );
    let mut fresh = with_features(demo_events("nexus", 1, 30, 77))
        .into_iter()
        .find(|event| event["name"] == "command_executed")
        .unwrap();
    fresh["ts"] = Value::from(jiff_now());
    let id = fresh["id"].as_str().unwrap().to_owned();
    let posted = Instant::now();
    post_events(&collector, &ingest, &[fresh]);
    browser.wait_for(&format!("document.querySelector('#live li[data-id=\"{id}\"]')"), WAIT);
    eprintln!(
        "live feed: the event showed {:?} after its POST answered",
        posted.elapsed()
    );
    // A ledger event never shows on nexus's feed.
    let ledger_event = ledger_events
        .iter()
        .find(|e| e["name"] == "command_executed")
        .unwrap()
        .clone();
    let mut ledger_event = ledger_event;
    ledger_event["id"] = Value::from(format!("{}ffffffffffff", &ledger_event["id"].as_str().unwrap()[..24]));
    post_events(&collector, &ledger_ingest, &[ledger_event.clone()]);
    browser.pump(Duration::from_millis(500));
    let leaked = browser.eval(&format!(
        "Boolean(document.querySelector('#live li[data-id=\"{}\"]'))",
        ledger_event["id"].as_str().unwrap()
    ));
    assert_eq!(leaked, json!(false), "another app's event on the feed");

    // Keyboard: Tab reaches every control, and Enter on a period button switches it.
    browser.eval("document.activeElement.blur(); window.scrollTo(0, 0); true");
    let mut reached = std::collections::BTreeSet::new();
    for _ in 0..40 {
        browser.press_tab();
        let focused = browser.eval("(() => { const e = document.activeElement; return e.id || (e.dataset.days ? 'days-' + e.dataset.days : e.tagName.toLowerCase()); })()");
        reached.insert(focused.as_str().unwrap().to_owned());
    }
    for control in [
        "app", "days-7", "days-30", "days-90", "add-key", "signout", "summary", "a",
    ] {
        assert!(reached.contains(control), "Tab never reached {control}: {reached:?}");
    }
    browser.eval("document.querySelector('[data-days=\"7\"]').focus(); true");
    browser.press_enter();
    browser.wait_for(
        "document.querySelector('[data-days=\"7\"]').getAttribute('aria-pressed') === 'true'",
        WAIT,
    );
    browser.wait_for("document.getElementById('span').textContent.includes('7 days')", WAIT);

    // Readable: AA contrast, and no sideways scrolling at phone width or 200 % zoom.
    browser.eval("document.querySelector('[data-days=\"30\"]').click(); true");
    browser.wait_for("document.getElementById('span').textContent.includes('30 days')", WAIT);
    let low = browser.eval(CONTRAST);
    assert_eq!(low, json!([]), "text below 4.5:1 contrast");
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, width, height, mobile) in [
        ("desktop", 1280, 900, false),
        ("phone", 390, 844, true),
        ("zoom200", 640, 450, false),
    ] {
        browser.resize(width, height, mobile);
        browser.pump(Duration::from_millis(300));
        let overflow = browser.eval("document.documentElement.scrollWidth - document.documentElement.clientWidth");
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{name}: {overflow} px wider than the screen"
        );
        browser.screenshot(&shots.join(format!("{name}.png")));
    }
    eprintln!("screenshots in {}", shots.display());

    // Sign-out ends the session on the server too.
    browser.eval("document.getElementById('signout').click(); true");
    browser.wait_for(
        "!document.getElementById('signin').hidden && document.getElementById('main').hidden",
        WAIT,
    );
    let after = browser.eval("fetch('/dashboard/api/session').then((r) => r.status)");
    assert_eq!(after, json!(401));

    let origin = collector.base.clone();
    let elsewhere: Vec<&String> = browser
        .requests
        .iter()
        .filter(|url| !url.starts_with(&origin) && !url.starts_with("about:") && !url.starts_with("data:"))
        .collect();
    assert!(elsewhere.is_empty(), "requests to another origin: {elsewhere:?}");
    assert!(browser.requests.iter().any(|url| url.ends_with("/dashboard/app.js")));
    assert!(
        !browser
            .console
            .iter()
            .any(|line| line.contains("Content Security Policy")),
        "CSP violations: {:?}",
        browser.console
    );
}

/// Now, as the wire format writes it.
fn jiff_now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[test]
fn sign_in_and_sign_out_refuse_other_origins_and_set_a_locked_down_cookie() {
    let temp = tempfile::tempdir().unwrap();
    let db = temp.path().join("collector.db");
    let db = db.to_str().unwrap();
    let admin = create_key(db, "nexus", "admin");
    let collector = Collector::start(db, None);
    let agent = crate::support::agent();
    let body = json!({"key": admin}).to_string();
    let post = |origin: Option<&str>, forwarded: bool| {
        let mut request = agent
            .post(&collector.url("/dashboard/api/session"))
            .header("Content-Type", "application/json");
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        if forwarded {
            request = request.header("X-Forwarded-Proto", "https");
        }
        request.send(body.as_str()).unwrap()
    };
    assert_eq!(post(Some("http://evil.test"), false).status(), 403, "another origin");
    assert_eq!(post(None, false).status(), 403, "no origin at all");
    let signed = post(Some(&collector.base), false);
    assert_eq!(signed.status(), 200);
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Max-Age=43200", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP on loopback: {cookie}");
    let behind_tls = post(Some(&collector.base), true);
    assert!(
        behind_tls.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );

    let session = cookie.split(';').next().unwrap().to_owned();
    let who = |cookie: &str| {
        agent
            .get(&collector.url("/dashboard/api/session"))
            .header("Cookie", cookie)
            .call()
            .unwrap()
            .status()
    };
    assert_eq!(who(&session), 200);
    let out = agent
        .post(&collector.url("/dashboard/api/signout"))
        .header("Cookie", &session)
        .header("Origin", "http://evil.test")
        .send_empty()
        .unwrap();
    assert_eq!(out.status(), 403, "a cross-site sign-out is refused");
    assert_eq!(who(&session), 200);
    let out = agent
        .post(&collector.url("/dashboard/api/signout"))
        .header("Cookie", &session)
        .header("Origin", &collector.base)
        .send_empty()
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(who(&session), 401);
}
