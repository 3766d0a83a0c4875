//! The report as plain text that fits 80 columns.

use std::fmt::Write as _;

use super::{Part, Report, clip, printable};
use crate::cli::human;

/// The widest line the report writes.
const COLUMNS: usize = 80;

/// Characters of a command name shown in a table column.
const NAME_COLUMN: usize = 26;

/// Characters of the daily activity bar at its longest.
const BAR: usize = 36;

pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    let heading = printable(&report.heading());
    let _ = writeln!(out, "{heading}");
    let _ = writeln!(out, "{}", "=".repeat(heading.chars().count().min(COLUMNS)));
    let _ = writeln!(out, "{}", printable(&report.span()));
    if report.is_empty() {
        out.push('\n');
        for note in report.empty_notes() {
            wrap(&mut out, &printable(&note), "", "");
        }
        return out;
    }
    let _ = writeln!(out, "Changes compare with {}.", report.previous_label());
    usage(&mut out, report);
    highlights(&mut out, report);
    daily(&mut out, report);
    commands(&mut out, report);
    failures(&mut out, report);
    out
}

fn section(out: &mut String, title: &str) {
    let _ = write!(out, "\n{title}\n{}\n", "-".repeat(title.len()));
}

fn usage(out: &mut String, report: &Report) {
    section(out, "Usage");
    let _ = writeln!(
        out,
        "  {:<22}{:>14}{:>14}{:>12}",
        "", "this period", "previous", "change"
    );
    for row in report.usage_rows() {
        let _ = writeln!(
            out,
            "  {:<22}{:>14}{:>14}{:>12}",
            row.label,
            row.current,
            row.previous,
            row.change.to_string()
        );
    }
}

fn highlights(out: &mut String, report: &Report) {
    if report.highlights.is_empty() {
        return;
    }
    section(out, "Highlights");
    for highlight in &report.highlights {
        let sentence: String = highlight
            .0
            .iter()
            .map(|part| match part {
                Part::Text(text) => printable(text),
                Part::Command(name) => format!("'{}'", printable(&clip(name, 40, "..."))),
            })
            .collect();
        wrap(out, &sentence, "  * ", "    ");
    }
}

fn daily(out: &mut String, report: &Report) {
    section(out, "Daily activity (commands; x = failed)");
    let most = report.daily.iter().map(|day| day.activity.commands).max().unwrap_or(0);
    for day in &report.daily {
        let activity = day.activity;
        let (total, failed) = if most == 0 {
            (0, 0)
        } else {
            let scale = |value: u64| (value as f64 / most as f64 * BAR as f64).round() as usize;
            // A day with any activity or failure shows at least one character of it.
            let failed = if activity.failures > 0 {
                scale(activity.failures).max(1)
            } else {
                0
            };
            let total = if activity.commands > 0 {
                scale(activity.commands).max(1)
            } else {
                0
            };
            (total.max(failed), failed)
        };
        let bar = format!("{}{}", "#".repeat(total - failed), "x".repeat(failed));
        let failures = if activity.failures > 0 {
            format!("  ({} failed)", human::count(activity.failures))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {}  {bar:<BAR$} {:>7}{failures}",
            day.date.strftime("%a %Y-%m-%d"),
            human::count(activity.commands)
        );
    }
}

fn commands(out: &mut String, report: &Report) {
    if report.current.by_command.is_empty() {
        return;
    }
    section(out, "Commands");
    let _ = writeln!(
        out,
        "  {:<NAME_COLUMN$}{:>8}{:>9}{:>10}{:>10}{:>13}",
        "command", "runs", "failed", "p50", "p95", "p50 change"
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
            "  {:<NAME_COLUMN$}{:>8}{:>9}{:>10}{:>10}{:>13}",
            printable(&clip(&summary.command, NAME_COLUMN - 1, "...")),
            human::count(summary.runs),
            failed,
            duration(summary.p50_ms()),
            duration(summary.p95_ms()),
            report.p50_change(summary).to_string()
        );
    }
}

fn failures(out: &mut String, report: &Report) {
    if !report.current.errors_by_category.is_empty() {
        section(out, "Failures by category");
        let _ = writeln!(out, "  {:<NAME_COLUMN$}{:<26}{:>10}", "command", "category", "failures");
        for (command, category, count) in &report.current.errors_by_category {
            let _ = writeln!(
                out,
                "  {:<NAME_COLUMN$}{:<26}{:>10}",
                printable(&clip(command, NAME_COLUMN - 1, "...")),
                printable(&clip(category, 25, "...")),
                human::count(*count)
            );
        }
    }
    if !report.latest_failures.is_empty() {
        section(out, "Latest failures");
        for failure in &report.latest_failures {
            let _ = writeln!(
                out,
                "  {}  {:<NAME_COLUMN$} {}",
                failure.when,
                printable(&clip(&failure.command, NAME_COLUMN - 1, "...")),
                printable(&clip(&failure.category, 25, "..."))
            );
        }
    }
}

/// Writes `text` as lines of at most [`COLUMNS`] characters, breaking at spaces; the
/// first line starts with `first`, the others with `rest`.
fn wrap(out: &mut String, text: &str, first: &str, rest: &str) {
    let mut line = first.to_owned();
    let mut has_words = false;
    for word in text.split(' ').filter(|word| !word.is_empty()) {
        if has_words && line.chars().count() + 1 + word.chars().count() > COLUMNS {
            let _ = writeln!(out, "{line}");
            line = rest.to_owned();
            has_words = false;
        }
        if has_words {
            line.push(' ');
        }
        line.push_str(word);
        has_words = true;
    }
    let _ = writeln!(out, "{line}");
}
