//! `report`: the week or month in one document, as plain text, Markdown, or a
//! self-contained HTML page with SVG charts.
//!
//! [`Report::gather`] asks the store everything once (this period, the one before it,
//! the latest failures) and works out the highlights; `text`, `markdown` and `html`
//! only lay that out. Every renderer returns a `String` and is a pure function of the
//! [`Report`], so a report is the same bytes for the same store, `now` and time zone:
//! ties are broken by name, and the only time printed is the period itself.

mod highlights;
mod html;
mod markdown;
mod svg;
mod text;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io::Write;

use jiff::ToSpan;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use tally_store::Store;
use tally_store::stats::{CommandSummary, DayActivity, Period, PeriodSummary};

use super::{CliError, ReportArgs, ReportFormat, Target};

/// How many of the latest failures the report lists.
const LATEST_FAILURES: u64 = 5;

/// Writes the report `args` asks for.
pub(crate) fn run(target: &Target, args: &ReportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let days = if args.month { 30 } else { 7 };
    let store = target.open_required()?;
    let report = Report::gather(&store, target, days, &TimeZone::system())?;
    // Rendered before the output file is created, so that a failed query leaves no
    // empty file behind.
    let rendered = report.render(args.format);
    super::with_output(args.output.as_ref(), out, |w| {
        w.write_all(rendered.as_bytes())?;
        Ok(())
    })
}

/// Everything a report shows.
#[derive(Debug, Clone)]
struct Report {
    /// The app, as typed (`nexus`).
    app: String,
    /// The app, as a title (`Nexus`).
    title: String,
    /// The length of the period in days.
    days: i64,
    /// Start of the period, local time (`2026-11-15 10:00`).
    from: String,
    /// End of the period, local time.
    to: String,
    /// The time zone's name, when it has one (`Europe/Paris`).
    zone: Option<String>,
    /// This period.
    current: PeriodSummary,
    /// The period of the same length just before it.
    previous: PeriodSummary,
    /// Every local day the period touches, oldest first, with days without activity.
    daily: Vec<Day>,
    /// The newest failures in the period, newest first.
    latest_failures: Vec<Failure>,
    /// Observations about the period, most general first.
    highlights: Vec<Highlight>,
}

/// One local day of activity.
#[derive(Debug, Clone, Copy)]
struct Day {
    date: Date,
    activity: DayActivity,
}

/// One failed command.
#[derive(Debug, Clone)]
struct Failure {
    /// Local time (`Sat 2026-11-21 14:02`).
    when: String,
    command: String,
    category: String,
}

/// A sentence about the period, in parts so that each format can set command names
/// apart (and escape them) in its own way.
#[derive(Debug, Clone, Default, PartialEq)]
struct Highlight(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Command(String),
}

impl Highlight {
    fn text(mut self, text: impl Into<String>) -> Self {
        self.0.push(Part::Text(text.into()));
        self
    }

    fn command(mut self, name: &str) -> Self {
        self.0.push(Part::Command(name.to_owned()));
        self
    }
}

impl Report {
    /// Reads the `days` days up to the target's now and as many before, grouping days in `tz`.
    fn gather(store: &Store, target: &Target, days: i64, tz: &TimeZone) -> Result<Report, CliError> {
        let period = Period::last_days(target.now(), days);
        let (current, previous) = store.summarize_with_previous(&period, tz)?;
        let latest_failures = store
            .recent_errors(&period, LATEST_FAILURES)?
            .into_iter()
            .filter_map(|error| {
                let ts = tally_core::time::parse(&error.ts).ok()?;
                Some(Failure {
                    when: ts.to_zoned(tz.clone()).strftime("%a %Y-%m-%d %H:%M").to_string(),
                    command: error.command,
                    category: error.category,
                })
            })
            .collect();
        let mut report = Report {
            app: target.app.clone(),
            title: target.title(),
            days,
            from: period.from.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M").to_string(),
            to: period.to.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M").to_string(),
            zone: tz.iana_name().map(str::to_owned),
            daily: daily(&period, &current, tz),
            current,
            previous,
            latest_failures,
            highlights: Vec::new(),
        };
        report.highlights = report.find_highlights();
        Ok(report)
    }

    /// The report in `format`.
    fn render(&self, format: ReportFormat) -> String {
        match format {
            ReportFormat::Text => text::render(self),
            ReportFormat::Md => markdown::render(self),
            ReportFormat::Html => html::render(self),
        }
    }

    /// Nothing at all was recorded in the period.
    fn is_empty(&self) -> bool {
        self.current.events == 0 && self.current.sessions == 0
    }

    /// `Nexus report: last 7 days`.
    fn heading(&self) -> String {
        format!("{} report: last {} days", self.title, self.days)
    }

    /// `2026-11-15 10:00 to 2026-11-22 10:00 (UTC)`.
    fn span(&self) -> String {
        match &self.zone {
            Some(zone) => format!("{} to {} ({zone})", self.from, self.to),
            None => format!("{} to {}", self.from, self.to),
        }
    }

    /// `the previous 7 days`.
    fn previous_label(&self) -> String {
        format!("the previous {} days", self.days)
    }

    /// What an empty report says instead of figures.
    fn empty_notes(&self) -> Vec<String> {
        let mut notes = vec!["Nothing was recorded in this period: no commands, sessions or other events.".to_owned()];
        let before = &self.previous;
        if before.events > 0 {
            notes.push(format!(
                "In {} there were {} events, {} of them commands.",
                self.previous_label(),
                super::human::count(before.events),
                super::human::count(before.commands.runs)
            ));
        }
        let longer = if self.days < 30 {
            ", or ask for a longer period with --month"
        } else {
            ""
        };
        notes.push(format!(
            "Use {} to record some activity{longer}; check `tally --app {} status` if you expected data.",
            self.app, self.app
        ));
        notes
    }

    /// The same command in the previous period.
    fn previous_command(&self, command: &str) -> Option<&CommandSummary> {
        self.previous
            .by_command
            .iter()
            .find(|summary| summary.command == command)
    }

    /// The change of a command's p50 against the previous period.
    fn p50_change(&self, command: &CommandSummary) -> Change {
        let Some(now) = command.p50_ms() else {
            return Change::Unknown;
        };
        match self.previous_command(&command.command).and_then(CommandSummary::p50_ms) {
            Some(before) => Change::between(now as f64, before as f64),
            None => Change::New,
        }
    }

    /// The usage box: label, this period, the previous period, change.
    fn usage_rows(&self) -> Vec<UsageRow> {
        let (now, before) = (&self.current, &self.previous);
        let human = |value: u64| super::human::count(value);
        let session = |ms: Option<u64>| ms.map_or_else(|| "-".to_owned(), super::human::duration_ms);
        let rate = |rate: Option<f64>| rate.map_or_else(|| "-".to_owned(), super::human::percent);
        let counted = |label: &'static str, a: u64, b: u64| UsageRow {
            label,
            current: human(a),
            previous: human(b),
            change: Change::between(a as f64, b as f64),
        };
        vec![
            counted("Commands run", now.commands.runs, before.commands.runs),
            UsageRow {
                label: "Success rate",
                current: rate(now.success_rate()),
                previous: rate(before.success_rate()),
                change: match (now.success_rate(), before.success_rate()) {
                    (Some(a), Some(b)) => Change::Points(a - b),
                    _ => Change::Unknown,
                },
            },
            counted("Workspaces created", now.workspaces_created, before.workspaces_created),
            counted("Tasks completed", now.tasks_completed, before.tasks_completed),
            counted("Sessions", now.sessions, before.sessions),
            UsageRow {
                label: "Average session",
                current: session(now.avg_session_ms),
                previous: session(before.avg_session_ms),
                change: match (now.avg_session_ms, before.avg_session_ms) {
                    (Some(a), Some(b)) => Change::between(a as f64, b as f64),
                    _ => Change::Unknown,
                },
            },
        ]
    }

    /// Commands with failures, most first (ties by name), and the categories of each.
    fn failures_by_command(&self) -> Vec<(&CommandSummary, Vec<(&str, u64)>)> {
        let mut failing: Vec<&CommandSummary> = self
            .current
            .by_command
            .iter()
            .filter(|summary| summary.failures > 0)
            .collect();
        failing.sort_by(|a, b| b.failures.cmp(&a.failures).then_with(|| a.command.cmp(&b.command)));
        failing
            .into_iter()
            .map(|summary| {
                let categories = self
                    .current
                    .errors_by_category
                    .iter()
                    .filter(|(command, _, _)| *command == summary.command)
                    .map(|(_, category, count)| (category.as_str(), *count))
                    .collect();
                (summary, categories)
            })
            .collect()
    }

    /// Error categories over all commands, most failures first (ties by name).
    fn categories(&self) -> Vec<(&str, u64)> {
        let mut totals: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for (_, category, count) in &self.current.errors_by_category {
            *totals.entry(category.as_str()).or_default() += count;
        }
        let mut categories: Vec<(&str, u64)> = totals.into_iter().collect();
        categories.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        categories
    }

    /// Commands with a measured duration, slowest p95 first (ties by name).
    fn by_duration(&self) -> Vec<&CommandSummary> {
        let mut timed: Vec<&CommandSummary> = self
            .current
            .by_command
            .iter()
            .filter(|summary| summary.p95_ms().is_some())
            .collect();
        timed.sort_by(|a, b| b.p95_ms().cmp(&a.p95_ms()).then_with(|| a.command.cmp(&b.command)));
        timed
    }
}

/// One line of the usage box.
#[derive(Debug, Clone)]
struct UsageRow {
    label: &'static str,
    current: String,
    previous: String,
    change: Change,
}

/// How a figure moved against the previous period.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    /// Nothing to compare.
    Unknown,
    /// Nothing in the previous period, something now.
    New,
    /// Within half a percent.
    Same,
    /// Up by this ratio (0.12 is 12%).
    Up(f64),
    /// Down by this ratio.
    Down(f64),
    /// A rate moved by this much (0.03 is 3 percentage points).
    Points(f64),
}

impl Change {
    fn between(now: f64, before: f64) -> Change {
        if before <= 0.0 {
            return if now > 0.0 { Change::New } else { Change::Unknown };
        }
        let ratio = now / before - 1.0;
        if ratio.abs() < 0.005 {
            Change::Same
        } else if ratio > 0.0 {
            Change::Up(ratio)
        } else {
            Change::Down(-ratio)
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Change::Unknown => f.write_str("-"),
            Change::New => f.write_str("new"),
            Change::Same => f.write_str("same"),
            Change::Up(ratio) => write!(f, "+{}", super::human::percent(ratio)),
            Change::Down(ratio) => write!(f, "-{}", super::human::percent(ratio)),
            Change::Points(points) if (points * 100.0).abs() < 0.05 => f.write_str("same"),
            Change::Points(points) => write!(f, "{:+.1} pts", points * 100.0),
        }
    }
}

/// Every local day from the period's first to its last, with the summary's activity.
fn daily(period: &Period, summary: &PeriodSummary, tz: &TimeZone) -> Vec<Day> {
    let first = period.from.to_zoned(tz.clone()).date();
    let last_instant = period.to.checked_sub(1.millisecond()).unwrap_or(period.to);
    let last = last_instant.to_zoned(tz.clone()).date();
    let mut dates = std::collections::BTreeSet::new();
    let mut date = first;
    while date <= last {
        dates.insert(date);
        match date.tomorrow() {
            Ok(next) => date = next,
            Err(_) => break,
        }
    }
    // A rollup hour that starts before the period can fall on the day before it in a
    // zone with a half-hour offset; its events are in the totals, so it gets a bar.
    dates.extend(summary.by_day.keys().filter_map(|key| key.parse::<Date>().ok()));
    dates
        .into_iter()
        .map(|date| Day {
            date,
            activity: summary.by_day.get(&date.to_string()).copied().unwrap_or_default(),
        })
        .collect()
}

fn plural(count: u64, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}

/// At most `max` characters of `name`, ending in `ellipsis` when cut.
fn clip(name: &str, max: usize, ellipsis: &str) -> String {
    if name.chars().count() <= max {
        return name.to_owned();
    }
    let keep = max.saturating_sub(ellipsis.chars().count());
    name.chars().take(keep).chain(ellipsis.chars()).collect()
}

/// `name` with control characters replaced, so that a hostile command name in the
/// store cannot move the cursor or recolour a terminal.
fn printable(name: &str) -> String {
    name.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}
