//! The report's highlights: a few sentences that say what stood out in the period,
//! each citing its numbers. One function per kind of sentence, in the order the report
//! prints them; a sentence with nothing to say is left out.

use tally_store::stats::CommandSummary;

use super::{Change, Highlight, Report, plural};
use crate::cli::human;

/// Fewer timed runs than this make a percentile too noisy to call a command slow, or
/// to say it got slower.
const MIN_TIMED_RUNS: u64 = 3;

/// A p50 change smaller than this is noise, not a trend worth a highlight.
const NOTABLE_P50_CHANGE: f64 = 0.2;

/// A command whose typical duration moved: its summary, p50 now and before, and the
/// relative change (+0.45 is 45% slower).
type Trend<'a> = (&'a CommandSummary, u64, u64, f64);

impl Report {
    pub(super) fn find_highlights(&self) -> Vec<Highlight> {
        if self.is_empty() {
            return Vec::new();
        }
        let runs = self.current.commands.runs;
        if runs == 0 {
            return vec![Highlight::default().text(format!(
                "No commands ran; {} other events were recorded.",
                human::count(self.current.events)
            ))];
        }
        let mut found = vec![self.runs_compared(runs)];
        found.extend(self.time_spent());
        found.extend(self.busiest_day());
        found.extend(self.peak_hour(runs));
        found.extend(self.most_used(runs));
        found.extend(self.slowest());
        found.extend(self.trends());
        found.extend(self.most_failures());
        found
    }

    /// "You ran 1,234 commands, 20% more than in the previous week."
    fn runs_compared(&self, runs: u64) -> Highlight {
        let before = self.previous.commands.runs;
        let previous = self.previous_label();
        let amount = if before == 0 {
            format!("; nothing ran in {previous}")
        } else {
            match Change::between(runs as f64, before as f64) {
                Change::Up(ratio) if ratio >= 1.0 => {
                    let times = ((ratio + 1.0) * 10.0).round() / 10.0;
                    format!(", {times} times as many as in {previous}")
                }
                Change::Up(ratio) if ratio >= 0.05 => {
                    format!(", {} more than in {previous}", human::percent(ratio))
                }
                Change::Down(ratio) if ratio >= 0.05 => {
                    format!(", {} fewer than in {previous}", human::percent(ratio))
                }
                _ => format!(", about as many as in {previous}"),
            }
        };
        Highlight::default().text(format!(
            "You ran {} {}{amount}.",
            human::count(runs),
            plural(runs, "command", "commands")
        ))
    }

    /// Total and average time commands ran, when any was timed.
    fn time_spent(&self) -> Option<Highlight> {
        let durations = &self.current.commands.durations;
        let average = durations.duration_total_ms.checked_div(durations.duration_count)?;
        Some(Highlight::default().text(format!(
            "Commands ran for {} in total, {} per run on average.",
            human::duration_ms(durations.duration_total_ms),
            human::duration_ms(average)
        )))
    }

    /// The day with the most commands, when there was more than one active day.
    fn busiest_day(&self) -> Option<Highlight> {
        // The earliest of equally busy days, so that the sentence does not depend on order.
        let busiest = self
            .daily
            .iter()
            .filter(|day| day.activity.commands > 0)
            .max_by(|a, b| {
                a.activity
                    .commands
                    .cmp(&b.activity.commands)
                    .then_with(|| b.date.cmp(&a.date))
            })?;
        let active_days = self.daily.iter().filter(|day| day.activity.commands > 0).count();
        (active_days > 1).then(|| {
            Highlight::default().text(format!(
                "Your busiest day was {}, with {} commands; you were active on {active_days} days.",
                busiest.date.strftime("%A %Y-%m-%d"),
                human::count(busiest.activity.commands),
            ))
        })
    }

    /// The hour of the day with the most commands (the earliest of equals).
    fn peak_hour(&self, runs: u64) -> Option<Highlight> {
        let (peak_hour, peak_runs) = self
            .current
            .commands_by_hour
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(&a.0)))
            .map_or((0, 0), |(hour, runs)| (hour, *runs));
        (runs >= 5 && peak_runs > 0).then(|| {
            Highlight::default().text(format!(
                "You were most active between {:02}:00 and {:02}:00 ({} of commands).",
                peak_hour,
                (peak_hour + 1) % 24,
                human::percent(peak_runs as f64 / runs as f64)
            ))
        })
    }

    /// The most used command, when more than one ran.
    fn most_used(&self, runs: u64) -> Option<Highlight> {
        let [top, _, ..] = self.current.by_command.as_slice() else {
            return None;
        };
        Some(Highlight::default().command(&top.command).text(format!(
            " was your most used command: {} of all runs.",
            human::percent(top.runs as f64 / runs as f64)
        )))
    }

    /// The command with the slowest p95 among those timed often enough.
    fn slowest(&self) -> Option<Highlight> {
        let slowest = self
            .by_duration()
            .into_iter()
            .find(|summary| summary.durations.duration_count >= MIN_TIMED_RUNS)?;
        let (p50, p95) = (slowest.p50_ms()?, slowest.p95_ms()?);
        Some(Highlight::default().command(&slowest.command).text(format!(
            " was the slowest command: {} typically (p50), {} for the slowest 1 in 20 runs (p95).",
            human::duration_ms(p50),
            human::duration_ms(p95)
        )))
    }

    /// The command that got slowest and the one that got fastest against the previous
    /// period, each only when its p50 moved by a notable share (ties by name).
    fn trends(&self) -> Vec<Highlight> {
        let trends: Vec<Trend<'_>> = self
            .current
            .by_command
            .iter()
            .filter(|summary| summary.durations.duration_count >= MIN_TIMED_RUNS)
            .filter_map(|summary| {
                let earlier = self.previous_command(&summary.command)?;
                if earlier.durations.duration_count < MIN_TIMED_RUNS {
                    return None;
                }
                let (a, b) = (summary.p50_ms()?, earlier.p50_ms()?);
                (b > 0).then(|| (summary, a, b, a as f64 / b as f64 - 1.0))
            })
            .collect();
        let by_name = |a: &&Trend<'_>, b: &&Trend<'_>| b.0.command.cmp(&a.0.command);
        let slower = trends
            .iter()
            .filter(|trend| trend.3 >= NOTABLE_P50_CHANGE)
            .max_by(|a, b| a.3.total_cmp(&b.3).then_with(|| by_name(a, b)));
        let faster = trends
            .iter()
            .filter(|trend| trend.3 <= -NOTABLE_P50_CHANGE)
            .min_by(|a, b| a.3.total_cmp(&b.3).then_with(|| by_name(b, a)));
        [(slower, "slower"), (faster, "faster")]
            .into_iter()
            .filter_map(|(trend, word)| {
                let (summary, now_ms, before_ms, ratio) = trend?;
                Some(Highlight::default().command(&summary.command).text(format!(
                    " got {} {word}: p50 {}, was {}.",
                    human::percent(ratio.abs()),
                    human::duration_ms(*now_ms),
                    human::duration_ms(*before_ms)
                )))
            })
            .collect()
    }

    /// The command that failed most often, or that none failed (when outcomes are known).
    fn most_failures(&self) -> Option<Highlight> {
        match self.failures_by_command().first() {
            Some((summary, categories)) => {
                let mostly = categories
                    .first()
                    .map(|(category, _)| format!(", mostly {category}"))
                    .unwrap_or_default();
                Some(Highlight::default().command(&summary.command).text(format!(
                    " failed most often: {} {} ({} of its runs){mostly}.",
                    human::count(summary.failures),
                    plural(summary.failures, "time", "times"),
                    human::percent(summary.failure_rate())
                )))
            }
            None if self.current.commands.with_outcome > 0 => {
                Some(Highlight::default().text("No command failed in this period."))
            }
            None => None,
        }
    }
}
