//! The report as one self-contained HTML page.
//!
//! Styles are inline and the charts are inline SVG ([`super::svg`]); the page has no
//! script, and its Content-Security-Policy forbids loading anything, so it opens the
//! same offline, from a mail attachment or from a file share. Every value that comes
//! from the store goes through [`escape`], since a command name is whatever the app
//! recorded.

use std::fmt::Write as _;

use super::{Change, Part, Report, svg};
use crate::cli::human;

const STYLE: &str = r#"
:root { color-scheme: light dark; --ink: #111827; --muted: #4b5563; --bg: #ffffff; --card: #f9fafb; --line: #e5e7eb; --good: #047857; --bad: #b91c1c; }
@media (prefers-color-scheme: dark) {
  :root { --ink: #f3f4f6; --muted: #9ca3af; --bg: #111827; --card: #1f2937; --line: #374151; --good: #34d399; --bad: #f87171; }
  .chart .ink { fill: #f3f4f6; }
  .chart .axis { fill: #9ca3af; }
  .chart .grid { stroke: #374151; }
  .chart .shade { fill: #1f2937; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width: 880px; margin: 0 auto; padding: 32px 20px 48px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.15rem; margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.span { color: var(--muted); margin: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr)); gap: 10px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.figure { font-size: 1.35rem; font-weight: 600; font-variant-numeric: tabular-nums; white-space: nowrap; }
.label { color: var(--muted); font-size: 0.9rem; }
.change { color: var(--muted); font-size: 0.85rem; }
.good { color: var(--good); }
.bad { color: var(--bad); }
ul.highlights { padding-left: 1.2rem; }
ul.highlights li { margin: 4px 0; }
code, td.name { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em; }
figure { margin: 0 0 32px; }
.chart { display: block; width: 100%; height: auto; }
table { width: 100%; border-collapse: collapse; font-size: 0.92rem; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: right; vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
th:first-child, td:first-child, th.left, td.left { text-align: left; }
td.name { word-break: break-all; }
.empty { background: var(--card); border: 1px dashed var(--line); border-radius: 8px; padding: 16px 20px; margin-top: 24px; }
.empty p { margin: 6px 0; }
footer { margin-top: 48px; color: var(--muted); font-size: 0.85rem; }
"#;

pub(super) fn render(report: &Report) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let heading = escape(&report.heading());
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"generator\" content=\"Tally\">\n<title>{heading}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <header>\n<h1>{heading}</h1>\n<p class=\"span\">{}</p>\n</header>\n",
        escape(&report.span())
    );
    if report.is_empty() {
        out.push_str("<section class=\"empty\" id=\"empty\">\n");
        for note in report.empty_notes() {
            let _ = writeln!(out, "<p>{}</p>", escape(&note));
        }
        out.push_str("</section>\n");
    } else {
        usage(&mut out, report);
        highlights(&mut out, report);
        charts(&mut out, report);
        commands(&mut out, report);
        failures(&mut out, report);
    }
    let _ = write!(
        out,
        "<footer>Made by Tally from {}'s telemetry store on this computer. This page loads nothing from the network.</footer>\n\
         </main>\n</body>\n</html>\n",
        escape(&report.title)
    );
    out
}

fn usage(out: &mut String, report: &Report) {
    let _ = write!(
        out,
        "<section id=\"usage\">\n<h2>Usage</h2>\n<p class=\"span\">Changes compare with {}.</p>\n<div class=\"cards\">\n",
        escape(&report.previous_label())
    );
    for row in report.usage_rows() {
        // More or fewer commands, workspaces or sessions is neither good nor bad; a
        // success rate is.
        let tone = match (row.label, row.change) {
            ("Success rate", Change::Points(points)) if points >= 0.0005 => " good",
            ("Success rate", Change::Points(points)) if points <= -0.0005 => " bad",
            _ => "",
        };
        let change = if row.previous == "-" {
            "no earlier figure".to_owned()
        } else {
            format!(
                "<span class=\"delta{tone}\">{}</span> (was {})",
                escape(&row.change.to_string()),
                escape(&row.previous)
            )
        };
        let _ = writeln!(
            out,
            "<div class=\"card\"><div class=\"figure\">{}</div><div class=\"label\">{}</div>\
             <div class=\"change\">{change}</div></div>",
            escape(&row.current),
            escape(row.label),
        );
    }
    out.push_str("</div>\n</section>\n");
}

fn highlights(out: &mut String, report: &Report) {
    if report.highlights.is_empty() {
        return;
    }
    out.push_str("<section id=\"highlights\">\n<h2>Highlights</h2>\n<ul class=\"highlights\">\n");
    for highlight in &report.highlights {
        out.push_str("<li>");
        for part in &highlight.0 {
            match part {
                Part::Text(text) => out.push_str(&escape(text)),
                Part::Command(name) => {
                    let _ = write!(out, "<code>{}</code>", escape(name));
                }
            }
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n</section>\n");
}

fn charts(out: &mut String, report: &Report) {
    out.push_str("<section id=\"charts\">\n<h2>Charts</h2>\n");
    for chart in [
        svg::daily_activity(report),
        svg::command_usage(report),
        svg::durations(report),
        svg::errors(report),
    ] {
        let _ = write!(out, "<figure>\n{chart}\n</figure>\n");
    }
    out.push_str("</section>\n");
}

fn commands(out: &mut String, report: &Report) {
    if report.current.by_command.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"commands\">\n<h2>Commands</h2>\n<table>\n<thead><tr><th>Command</th><th>Runs</th>\
         <th>Failure rate</th><th>p50</th><th>p95</th><th>p50 vs previous</th></tr></thead>\n<tbody>\n",
    );
    for summary in &report.current.by_command {
        let duration = |ms: Option<u64>| ms.map_or_else(|| "-".to_owned(), human::duration_ms);
        let failed = if summary.with_outcome == 0 {
            "-".to_owned()
        } else {
            human::percent(summary.failure_rate())
        };
        let change = report.p50_change(summary);
        // Slower is worse; a change under 5% is within the estimate's own error.
        let tone = match change {
            Change::Up(ratio) if ratio >= 0.05 => " class=\"bad\"",
            Change::Down(ratio) if ratio >= 0.05 => " class=\"good\"",
            _ => "",
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"name\">{}</td><td>{}</td><td{}>{}</td><td>{}</td><td>{}</td><td{tone}>{}</td></tr>",
            escape(&summary.command),
            human::count(summary.runs),
            if summary.failure_rate() >= 0.1 {
                " class=\"bad\""
            } else {
                ""
            },
            failed,
            duration(summary.p50_ms()),
            duration(summary.p95_ms()),
            change
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn failures(out: &mut String, report: &Report) {
    let by_category = &report.current.errors_by_category;
    if by_category.is_empty() && report.latest_failures.is_empty() {
        return;
    }
    out.push_str("<section id=\"failures\">\n<h2>Failures</h2>\n");
    if !by_category.is_empty() {
        out.push_str(
            "<table>\n<thead><tr><th>Command</th><th class=\"left\">Category</th><th>Failures</th></tr></thead>\n<tbody>\n",
        );
        for (command, category, count) in by_category {
            let _ = writeln!(
                out,
                "<tr><td class=\"name\">{}</td><td class=\"left\">{}</td><td>{}</td></tr>",
                escape(command),
                escape(category),
                human::count(*count)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    if !report.latest_failures.is_empty() {
        out.push_str(
            "<h3>Latest failures</h3>\n<table>\n<thead><tr><th>When</th><th class=\"left\">Command</th>\
             <th class=\"left\">Category</th></tr></thead>\n<tbody>\n",
        );
        for failure in &report.latest_failures {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"name left\">{}</td><td class=\"left\">{}</td></tr>",
                escape(&failure.when),
                escape(&failure.command),
                escape(&failure.category)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
}

/// `text` safe in HTML and SVG text and in quoted attributes. Control characters, which
/// are not allowed in either, become U+FFFD.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}
