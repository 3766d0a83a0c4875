use std::path::Path;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tally_core::hashing::SECRET_LEN;
use tally_core::{Event, EventContext, KeyedHasher, Level, Source};
use tally_store::{DropCounts, OpenOptions, Store};

use super::Report;
use crate::cli::{ReportArgs, ReportFormat, Target};

const NOW: &str = "2026-11-22T12:00:00Z";

/// One event as the SDK would store it.
struct Recorded {
    kind: &'static str,
    name: &'static str,
    command: Option<&'static str>,
    ts: &'static str,
    duration_ms: Option<u64>,
    success: Option<bool>,
    category: Option<&'static str>,
    session: &'static str,
}

impl Recorded {
    fn command(command: &'static str, ts: &'static str, duration_ms: u64, session: &'static str) -> Recorded {
        Recorded {
            kind: "command",
            name: "command_executed",
            command: Some(command),
            ts,
            duration_ms: Some(duration_ms),
            success: Some(true),
            category: None,
            session,
        }
    }

    fn failed(mut self, category: &'static str) -> Recorded {
        self.success = Some(false);
        self.category = Some(category);
        self
    }

    fn other(kind: &'static str, name: &'static str, ts: &'static str, session: &'static str) -> Recorded {
        Recorded {
            kind,
            name,
            command: None,
            ts,
            duration_ms: None,
            success: None,
            category: None,
            session,
        }
    }

    fn finish(&self) -> Event {
        let hasher = KeyedHasher::new(&[7; SECRET_LEN]);
        let context = EventContext {
            app: "nexus",
            app_version: "1.4.2",
            source: Source::Cli,
            session_id: self.session,
            install_id: "0193a0b1-0000-7000-8000-000000000002",
            hasher: &hasher,
            level: Level::Full,
        };
        let mut builder = Event::builder(self.kind, self.name).ts(self.ts.parse().unwrap());
        if let Some(command) = self.command {
            builder = builder.command(command);
        }
        if let Some(duration) = self.duration_ms {
            builder = builder.duration_ms(duration);
        }
        if let Some(success) = self.success {
            builder = builder.success(success);
        }
        if let Some(category) = self.category {
            builder = builder.error_category(category);
        }
        builder.finish(&context).unwrap().unwrap()
    }
}

const SESSION_A: &str = "0193a0b1-0000-7000-8000-00000000000a";
const SESSION_B: &str = "0193a0b1-0000-7000-8000-00000000000b";
const SESSION_OLD: &str = "0193a0b1-0000-7000-8000-00000000000c";

/// A week of activity and a little in the week before.
fn week_of_activity() -> Vec<Recorded> {
    vec![
        // This week: Tuesday 17th, session A, 30 minutes.
        Recorded::command("build", "2026-11-17T09:00:00Z", 1_000, SESSION_A),
        Recorded::command("build", "2026-11-17T09:10:00Z", 1_200, SESSION_A),
        Recorded::command("build", "2026-11-17T09:20:00Z", 1_400, SESSION_A).failed("io"),
        Recorded::other("workspace", "workspace_created", "2026-11-17T09:25:00Z", SESSION_A),
        Recorded::command("sync", "2026-11-17T09:30:00Z", 8_000, SESSION_A).failed("network"),
        // Thursday 19th, session B, 15 minutes.
        Recorded::command("build", "2026-11-19T14:00:00Z", 1_100, SESSION_B),
        Recorded::command("build", "2026-11-19T14:05:00Z", 1_300, SESSION_B),
        Recorded::command("sync", "2026-11-19T14:06:00Z", 9_000, SESSION_B).failed("network"),
        Recorded::command("sync", "2026-11-19T14:07:00Z", 7_000, SESSION_B),
        Recorded::command("test", "2026-11-19T14:08:00Z", 300, SESSION_B),
        Recorded::other("task", "task_completed", "2026-11-19T14:10:00Z", SESSION_B),
        Recorded::other("task", "task_completed", "2026-11-19T14:15:00Z", SESSION_B),
        // The week before: build was slower.
        Recorded::command("build", "2026-11-10T09:00:00Z", 2_000, SESSION_OLD),
        Recorded::command("build", "2026-11-10T09:01:00Z", 2_100, SESSION_OLD),
        Recorded::command("build", "2026-11-10T09:02:00Z", 2_200, SESSION_OLD),
    ]
}

fn store_with(dir: &Path, recorded: &[Recorded]) -> Store {
    let mut store = Store::open(dir, &OpenOptions::default()).unwrap();
    let events: Vec<Event> = recorded.iter().map(Recorded::finish).collect();
    store.insert_batch(&events, DropCounts::default()).unwrap();
    store
}

fn target(dir: &Path) -> Target {
    Target {
        dir: Some(dir.to_owned()),
        now: Some(NOW.parse::<Timestamp>().unwrap()),
        ..Target::new("nexus")
    }
}

fn report(dir: &Path, days: i64) -> Report {
    let store = Store::open(dir, &OpenOptions::default()).unwrap();
    Report::gather(&store, &target(dir), days, &TimeZone::UTC).unwrap()
}

fn week_report() -> (tempfile::TempDir, Report) {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with(dir.path(), &week_of_activity()));
    let report = report(dir.path(), 7);
    (dir, report)
}

#[test]
fn text_report_shows_the_periods_figures() {
    let (_dir, report) = week_report();
    let text = report.render(ReportFormat::Text);
    let expected = include_str!("testdata/week.txt");
    if text != expected {
        let actual = std::env::temp_dir().join("tally-report-week.actual.txt");
        let _ = std::fs::write(&actual, &text);
        panic!(
            "the text report changed (written to {}); if the change is intended, copy it over testdata/week.txt\n{text}",
            actual.display()
        );
    }
    // The figures a reader checks first, independent of layout.
    let line = |label: &str| {
        text.lines()
            .find(|line| line.trim_start().starts_with(label))
            .unwrap()
            .to_owned()
    };
    let words = |line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(words(line("Commands run")), ["Commands", "run", "9", "3", "+200%"]);
    assert_eq!(
        words(line("Success rate")),
        ["Success", "rate", "66.7%", "100%", "-33.3", "pts"]
    );
    assert_eq!(
        words(line("Workspaces created")),
        ["Workspaces", "created", "1", "0", "new"]
    );
    assert_eq!(words(line("Tasks completed")), ["Tasks", "completed", "2", "0", "new"]);
    assert_eq!(words(line("Sessions")), ["Sessions", "2", "1", "+100%"]);
    assert_eq!(
        words(line("Average session")),
        ["Average", "session", "22m", "30s", "2m", "00s", "+1025%"]
    );
    assert!(
        text.lines().all(|line| line.chars().count() <= 80),
        "a line is wider than 80 columns:\n{text}"
    );
}

#[test]
fn report_compares_command_speed_with_the_previous_period() {
    let (_dir, report) = week_report();
    let text = report.render(ReportFormat::Text);
    let build = text
        .lines()
        .find(|line| line.trim_start().starts_with("build "))
        .unwrap();
    // build ran 5 times this week (1 failed) at about 1.2 s, against 2.1 s the week before.
    let words: Vec<&str> = build.split_whitespace().collect();
    assert_eq!(words[..3], ["build", "5", "20%"]);
    assert!(words.last().unwrap().starts_with('-'), "{build}");
    assert!(text.contains("'build' got"), "{text}");
    assert!(text.contains("faster"), "{text}");
    assert!(
        text.contains("'sync' failed most often: 2 times (66.7% of its runs), mostly network."),
        "{text}"
    );
}

#[test]
fn markdown_report_has_tables() {
    let (_dir, report) = week_report();
    let markdown = report.render(ReportFormat::Md);
    assert!(markdown.starts_with("# Nexus report: last 7 days\n"), "{markdown}");
    assert!(markdown.contains("| Commands run | 9 | 3 | +200% |"), "{markdown}");
    assert!(
        markdown.contains("| Command | Runs | Failure rate | p50 | p95 | p50 change |"),
        "{markdown}"
    );
    assert!(markdown.contains("| sync | network | 2 |"), "{markdown}");
    assert!(markdown.contains("| Thu 2026-11-19 | 5 | 1 |"), "{markdown}");
}

#[test]
fn html_has_one_svg_per_chart() {
    let (_dir, report) = week_report();
    let html = report.render(ReportFormat::Html);
    assert_eq!(html.matches("<svg").count(), 4, "{html}");
    for id in ["chart-daily", "chart-usage", "chart-durations", "chart-errors"] {
        assert_eq!(
            html.matches(&format!("<svg class=\"chart\" id=\"{id}\"")).count(),
            1,
            "{id}"
        );
    }
    assert_eq!(html.matches("</svg>").count(), 4);
    // Every chart scales with the page and has an accessible title.
    assert_eq!(html.matches("viewBox=\"0 0 760 ").count(), 4);
    assert!(!html.contains("<svg width"), "charts are sized by viewBox only");
    // A tooltip with the exact figures on a day's bar and a command's bars.
    assert!(
        html.contains("<title>Thursday 2026-11-19: 5 commands, 1 failed</title>"),
        "{html}"
    );
    assert!(html.contains("<title>sync, network: 2 failed runs</title>"), "{html}");
    assert!(html.contains("<title>build: 5 runs, 1 failed</title>"), "{html}");
    // The usage box and the per-command table.
    for figure in [
        "Commands run",
        "Success rate",
        "Workspaces created",
        "Tasks completed",
        "Sessions",
        "Average session",
        "22m 30s",
    ] {
        assert!(html.contains(figure), "{figure} missing");
    }
    assert!(html.contains("<th>p50 vs previous</th>"));
}

#[test]
fn html_is_self_contained() {
    let (_dir, report) = week_report();
    let html = report.render(ReportFormat::Html);
    for fetch in ["<script", "<link", "<img", "url(", "@import", "http:", "https:", "src="] {
        assert!(!html.contains(fetch), "{fetch} in the page");
    }
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
}

#[test]
fn a_hostile_command_name_is_escaped_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = "<script>alert('x')</script>\"&\u{1b}[2J";
    // The SDK refuses such a name, but the store is a file anyone can write.
    let mut events: Vec<Event> = (0..3)
        .map(|i| {
            let ts = ["2026-11-20T10:00:00Z", "2026-11-20T10:01:00Z", "2026-11-20T10:02:00Z"][i];
            let mut event = Recorded::command("build", ts, 500, SESSION_A).failed("io").finish();
            event.command = Some(hostile.to_owned());
            event.error_category = Some("<img src=x onerror=alert(1)>".to_owned());
            event
        })
        .collect();
    events.push(Recorded::command("test", "2026-11-20T10:03:00Z", 100, SESSION_A).finish());
    Store::open(dir.path(), &OpenOptions::default())
        .unwrap()
        .insert_batch(&events, DropCounts::default())
        .unwrap();
    let report = report(dir.path(), 7);

    let html = report.render(ReportFormat::Html);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;\u{fffd}[2J"),
        "{html}"
    );
    assert_eq!(html.matches("<svg").count(), 4);

    let markdown = report.render(ReportFormat::Md);
    assert!(!markdown.contains("<script"), "{markdown}");
    assert!(
        markdown.contains("| &lt;script&gt;alert('x')&lt;/script&gt;\"&amp; \\[2J | 3 |"),
        "{markdown}"
    );

    // No escape sequence reaches a terminal.
    let text = report.render(ReportFormat::Text);
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("<script>alert('x')</script>\"&?[2J"), "{text}");
}

#[test]
fn empty_store_gives_the_empty_report() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with(dir.path(), &[]));
    let report = report(dir.path(), 7);
    let text = report.render(ReportFormat::Text);
    assert_eq!(
        text,
        "Nexus report: last 7 days\n\
         =========================\n\
         2026-11-15 12:00 to 2026-11-22 12:00 (UTC)\n\
         \n\
         Nothing was recorded in this period: no commands, sessions or other events.\n\
         Use nexus to record some activity, or ask for a longer period with --month;\n\
         check `tally --app nexus status` if you expected data.\n"
    );
    let html = report.render(ReportFormat::Html);
    assert!(html.contains("Nothing was recorded in this period"), "{html}");
    assert!(!html.contains("<svg"), "no empty charts: {html}");
    assert!(html.ends_with("</html>\n"));
    let markdown = report.render(ReportFormat::Md);
    assert!(markdown.contains("Nothing was recorded in this period"), "{markdown}");
    assert!(!markdown.contains('|'), "no empty tables: {markdown}");
}

#[test]
fn empty_period_mentions_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with(dir.path(), &week_of_activity()[12..]));
    let text = report(dir.path(), 7).render(ReportFormat::Text);
    assert!(text.contains("Nothing was recorded in this period"), "{text}");
    assert!(
        text.contains("In the previous 7 days there were 3 events, 3 of them commands."),
        "{text}"
    );
}

#[test]
fn a_period_without_failures_still_draws_every_chart() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with(
        dir.path(),
        &[Recorded::command("build", "2026-11-21T08:00:00Z", 900, SESSION_A)],
    ));
    let report = report(dir.path(), 7);
    let html = report.render(ReportFormat::Html);
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(html.contains("No command failed in this period."), "{html}");
    assert!(!html.contains("NaN") && !html.contains("inf"), "{html}");
}

#[test]
fn month_report_has_a_bar_for_every_day() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with(dir.path(), &week_of_activity()));
    let report = report(dir.path(), 30);
    // 30 days from noon to noon touch 31 calendar days.
    assert_eq!(report.daily.len(), 31);
    let text = report.render(ReportFormat::Text);
    assert!(text.starts_with("Nexus report: last 30 days\n"));
    // The week before is inside this month, so the month holds every command.
    let commands_run = text
        .lines()
        .find(|line| line.trim_start().starts_with("Commands run"))
        .unwrap();
    assert_eq!(
        commands_run.split_whitespace().collect::<Vec<_>>(),
        ["Commands", "run", "12", "0", "new"]
    );
    let html = report.render(ReportFormat::Html);
    assert_eq!(html.matches("<svg").count(), 4);
}

#[test]
fn reports_are_the_same_bytes_every_time() {
    let (dir, first) = week_report();
    let second = report(dir.path(), 7);
    for format in [ReportFormat::Text, ReportFormat::Md, ReportFormat::Html] {
        assert_eq!(first.render(format), second.render(format));
    }
}

#[test]
fn run_writes_the_report_to_the_output_file() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with(dir.path(), &week_of_activity()));
    let output = dir.path().join("report.html");
    let args = ReportArgs {
        week: false,
        month: true,
        format: ReportFormat::Html,
        output: Some(output.clone()),
    };
    let mut stdout = Vec::new();
    super::run(&target(dir.path()), &args, &mut stdout).unwrap();
    assert!(stdout.is_empty());
    let html = std::fs::read_to_string(&output).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("last 30 days"));
}

#[test]
fn run_without_a_store_explains_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let args = ReportArgs {
        week: true,
        month: false,
        format: ReportFormat::Text,
        output: None,
    };
    let err = super::run(&target(dir.path()), &args, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("no telemetry recorded yet"), "{err}");
}

#[test]
fn a_report_for_an_earlier_week_lists_that_weeks_latest_failures() {
    // Asked for the week before `now`, with hundreds of failures recorded after it (a
    // report of an earlier week, or `--now` in the past): the period's own failures are
    // still the ones listed, newest first.
    let mut recorded = week_of_activity();
    for minute in 0..250 {
        let ts: &'static str = Box::leak(format!("2026-11-23T{:02}:{:02}:00Z", minute / 60, minute % 60).into());
        recorded.push(Recorded::command("deploy", ts, 100, SESSION_B).failed("network"));
    }
    let dir = tempfile::tempdir().unwrap();
    drop(store_with(dir.path(), &recorded));
    let report = report(dir.path(), 7);
    let listed: Vec<(&str, &str, &str)> = report
        .latest_failures
        .iter()
        .map(|failure| {
            (
                failure.when.as_str(),
                failure.command.as_str(),
                failure.category.as_str(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("Thu 2026-11-19 14:06", "sync", "network"),
            ("Tue 2026-11-17 09:30", "sync", "network"),
            ("Tue 2026-11-17 09:20", "build", "io"),
        ]
    );
}
