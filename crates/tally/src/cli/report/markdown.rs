//! The report as Markdown, with tables.

use std::fmt::Write as _;

use super::{Part, Report};
use crate::cli::human;

pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", escape(&report.heading()));
    let _ = writeln!(out, "{}", escape(&report.span()));
    if report.is_empty() {
        for note in report.empty_notes() {
            let _ = write!(out, "\n{}\n", escape(&note));
        }
        return out;
    }
    let _ = writeln!(out, "\nChanges compare with {}.", escape(&report.previous_label()));

    usage(report, &mut out);
    highlights(report, &mut out);
    daily(report, &mut out);
    commands(report, &mut out);
    failures(report, &mut out);
    out
}

/// This period against the previous one.
fn usage(report: &Report, out: &mut String) {
    out.push_str("\n## Usage\n\n| | This period | Previous | Change |\n|---|---:|---:|---:|\n");
    for row in report.usage_rows() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.label, row.current, row.previous, row.change
        );
    }
}

/// What stood out, with command names in bold.
fn highlights(report: &Report, out: &mut String) {
    if !report.highlights.is_empty() {
        out.push_str("\n## Highlights\n\n");
        for highlight in &report.highlights {
            let sentence: String = highlight
                .0
                .iter()
                .map(|part| match part {
                    Part::Text(text) => escape(text),
                    Part::Command(name) => format!("**{}**", escape(name)),
                })
                .collect();
            let _ = writeln!(out, "- {sentence}");
        }
    }
}

/// Commands and failures per local day.
fn daily(report: &Report, out: &mut String) {
    out.push_str("\n## Daily activity\n\n| Day | Commands | Failed |\n|---|---:|---:|\n");
    for day in &report.daily {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            day.date.strftime("%a %Y-%m-%d"),
            human::count(day.activity.commands),
            human::count(day.activity.failures)
        );
    }
}

/// Each command's runs, failure rate and durations.
fn commands(report: &Report, out: &mut String) {
    if !report.current.by_command.is_empty() {
        out.push_str(
            "\n## Commands\n\n| Command | Runs | Failure rate | p50 | p95 | p50 change |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        for summary in &report.current.by_command {
            let duration = |ms: Option<u64>| ms.map_or_else(|| "-".to_owned(), human::duration_ms);
            let failed = if summary.with_outcome == 0 {
                "-".to_owned()
            } else {
                human::percent(summary.failure_rate())
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                escape(&summary.command),
                human::count(summary.runs),
                failed,
                duration(summary.p50_ms()),
                duration(summary.p95_ms()),
                report.p50_change(summary)
            );
        }
    }
}

/// Failures by command and category, then the latest ones.
fn failures(report: &Report, out: &mut String) {
    if !report.current.errors_by_category.is_empty() {
        out.push_str("\n## Failures by category\n\n| Command | Category | Failures |\n|---|---|---:|\n");
        for (command, category, count) in &report.current.errors_by_category {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                escape(command),
                escape(category),
                human::count(*count)
            );
        }
    }

    if !report.latest_failures.is_empty() {
        out.push_str("\n## Latest failures\n\n| When | Command | Category |\n|---|---|---|\n");
        for failure in &report.latest_failures {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                failure.when,
                escape(&failure.command),
                escape(&failure.category)
            );
        }
    }
}

/// `text` as literal Markdown: punctuation that could start emphasis, code, a link or a
/// table cell is backslash-escaped, `<`, `>` and `&` become entities, and line breaks
/// become spaces so that a value stays in its table cell.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            // Entities rather than backslashes, so that no `<` reaches a renderer that
            // passes inline HTML through.
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
