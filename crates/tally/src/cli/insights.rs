//! `insights`: the slowest commands and their trend, where failures cluster, and
//! concrete suggestions that each cite the numbers behind them.

use std::collections::HashMap;
use std::io::Write;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tally_store::stats::{CommandSummary, Period, PeriodSummary};

use super::stats::truncate;
use super::{CliError, InsightsArgs, Target, human};

/// Rows per table.
const ROWS: usize = 10;
/// Commands read in order to find repeated sequences.
const SEQUENCE_WINDOW: u64 = 20_000;
/// Commands further apart than this do not form a sequence.
const SEQUENCE_GAP_MINUTES: i64 = 5;
/// A sequence must repeat this often to be worth an alias.
const SEQUENCE_MIN_REPEATS: u64 = 5;
/// And its last command must follow the others at least this often.
const SEQUENCE_MIN_CONFIDENCE: f64 = 0.5;
/// A command needs this many runs in both periods before its trend means anything.
const TREND_MIN_RUNS: u64 = 5;
/// A median this much higher (and at least `SLOWER_MIN_MS` higher) is "slower".
const SLOWER_RATIO: f64 = 1.25;
const SLOWER_MIN_MS: u64 = 10;
/// A failure rate at or above this, over at least `TREND_MIN_RUNS` runs, is "often".
const OFTEN_FAILS: f64 = 0.10;
/// Usage hours are described once there are this many commands.
const HOURS_MIN_COMMANDS: u64 = 20;

pub(crate) fn run(target: &Target, args: &InsightsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let store = target.open_required()?;
    let (days, label) = args.period.days();
    let period = Period::last_days(target.now(), days);
    let tz = TimeZone::system();
    let (current, previous) = store.summarize_with_previous(&period, &tz)?;
    let everything = !args.slow && !args.errors;
    writeln!(out, "{} insights ({label})", target.title())?;
    if current.commands.runs == 0 {
        writeln!(out)?;
        writeln!(out, "No commands in this period, so nothing to report yet.")?;
        return Ok(());
    }
    if args.slow || everything {
        writeln!(out)?;
        write_slow(&current, &previous, out)?;
    }
    if args.errors || everything {
        writeln!(out)?;
        write_errors(&current, out)?;
    }
    if everything {
        writeln!(out)?;
        let recent = store.recent_commands(&period, SEQUENCE_WINDOW)?;
        write_suggestions(target, days, &current, &previous, &recent, out)?;
    }
    Ok(())
}

fn find<'a>(summary: &'a PeriodSummary, command: &str) -> Option<&'a CommandSummary> {
    summary.by_command.iter().find(|candidate| candidate.command == command)
}

fn or_dash(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), human::duration_ms)
}

fn change(now: u64, before: u64) -> String {
    if before == 0 {
        return "-".to_owned();
    }
    let ratio = now as f64 / before as f64 - 1.0;
    let sign = if ratio >= 0.0 { "+" } else { "-" };
    format!("{sign}{}", human::percent(ratio.abs()))
}

fn write_slow(current: &PeriodSummary, previous: &PeriodSummary, out: &mut dyn Write) -> Result<(), CliError> {
    let mut timed: Vec<&CommandSummary> = current
        .by_command
        .iter()
        .filter(|command| command.durations.duration_count > 0)
        .collect();
    timed.sort_by(|a, b| {
        b.p95_ms()
            .cmp(&a.p95_ms())
            .then_with(|| b.p50_ms().cmp(&a.p50_ms()))
            .then_with(|| a.command.cmp(&b.command))
    });
    writeln!(
        out,
        "{:<28}{:>10}{:>10}{:>8}   median vs previous period",
        "Slowest commands", "median", "p95", "runs"
    )?;
    for command in timed.iter().take(ROWS) {
        let trend = match (
            command.p50_ms(),
            find(previous, &command.command).and_then(CommandSummary::p50_ms),
        ) {
            (Some(now), Some(before)) => format!("{} (was {})", change(now, before), human::duration_ms(before)),
            _ => "new this period".to_owned(),
        };
        writeln!(
            out,
            "  {:<26}{:>10}{:>10}{:>8}   {trend}",
            truncate(&command.command, 26),
            or_dash(command.p50_ms()),
            or_dash(command.p95_ms()),
            human::count(command.runs),
        )?;
    }
    Ok(())
}

fn write_errors(current: &PeriodSummary, out: &mut dyn Write) -> Result<(), CliError> {
    let mut failing: Vec<&CommandSummary> = current
        .by_command
        .iter()
        .filter(|command| command.failures > 0)
        .collect();
    if failing.is_empty() {
        writeln!(out, "No failed commands in this period.")?;
        return Ok(());
    }
    failing.sort_by(|a, b| {
        b.failure_rate()
            .total_cmp(&a.failure_rate())
            .then_with(|| b.failures.cmp(&a.failures))
            .then_with(|| a.command.cmp(&b.command))
    });
    writeln!(
        out,
        "{:<28}{:>6}{:>8}{:>8}   categories",
        "Failures by command", "runs", "failed", "rate"
    )?;
    for command in failing.iter().take(ROWS) {
        writeln!(
            out,
            "  {:<26}{:>6}{:>8}{:>8}   {}",
            truncate(&command.command, 26),
            human::count(command.runs),
            human::count(command.failures),
            human::percent(command.failure_rate()),
            categories(current, &command.command, 3),
        )?;
    }
    Ok(())
}

/// `not_found 7, permission 2` for the most frequent categories of `command`.
fn categories(summary: &PeriodSummary, command: &str, limit: usize) -> String {
    summary
        .errors_by_category
        .iter()
        .filter(|(name, _, _)| name == command)
        .take(limit)
        .map(|(_, category, count)| format!("{category} {}", human::count(*count)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn write_suggestions(
    target: &Target,
    days: i64,
    current: &PeriodSummary,
    previous: &PeriodSummary,
    recent: &[(Timestamp, String)],
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut suggestions = Vec::new();
    suggestions.extend(slower_commands(current, previous));
    suggestions.extend(failing_commands(current));
    suggestions.extend(repeated_sequence(recent, days));
    suggestions.extend(usage_hours(target, current));
    writeln!(out, "Suggestions")?;
    if suggestions.is_empty() {
        writeln!(out, "  Nothing stands out in this period.")?;
    }
    for suggestion in suggestions {
        writeln!(out, "  - {suggestion}")?;
    }
    Ok(())
}

fn slower_commands(current: &PeriodSummary, previous: &PeriodSummary) -> Vec<String> {
    let mut found = Vec::new();
    for command in &current.by_command {
        let Some(before) = find(previous, &command.command) else {
            continue;
        };
        let (Some(now_ms), Some(before_ms)) = (command.p50_ms(), before.p50_ms()) else {
            continue;
        };
        if command.runs >= TREND_MIN_RUNS
            && before.runs >= TREND_MIN_RUNS
            && now_ms as f64 >= before_ms as f64 * SLOWER_RATIO
            && now_ms >= before_ms + SLOWER_MIN_MS
        {
            found.push((
                now_ms as f64 / before_ms as f64,
                format!(
                    "`{}` got slower: its median is {}, up from {} in the previous period ({}, {} runs). \
                     Check what changed in that command or its environment.",
                    command.command,
                    human::duration_ms(now_ms),
                    human::duration_ms(before_ms),
                    change(now_ms, before_ms),
                    human::count(command.runs)
                ),
            ));
        }
    }
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    found.into_iter().take(2).map(|(_, text)| text).collect()
}

fn failing_commands(current: &PeriodSummary) -> Vec<String> {
    let mut found: Vec<&CommandSummary> = current
        .by_command
        .iter()
        .filter(|command| command.with_outcome >= TREND_MIN_RUNS && command.failure_rate() >= OFTEN_FAILS)
        .collect();
    found.sort_by(|a, b| {
        b.failure_rate()
            .total_cmp(&a.failure_rate())
            .then_with(|| a.command.cmp(&b.command))
    });
    found
        .into_iter()
        .take(2)
        .map(|command| {
            format!(
                "`{}` fails often: {} of {} runs ({}), mostly {}.",
                command.command,
                human::count(command.failures),
                human::count(command.with_outcome),
                human::percent(command.failure_rate()),
                categories(current, &command.command, 2),
            )
        })
        .collect()
}

/// The most repeated run of two or three different commands, each started within
/// [`SEQUENCE_GAP_MINUTES`] of the one before, that is also predictable: the last command
/// follows the ones before it at least [`SEQUENCE_MIN_CONFIDENCE`] of the time. Popular
/// commands follow each other often by chance; only a predictable sequence is worth
/// an alias.
fn repeated_sequence(recent: &[(Timestamp, String)], days: i64) -> Option<String> {
    let (sequence, count, confidence) = most_repeated(recent)?;
    let steps: Vec<String> = sequence.iter().map(|command| format!("`{command}`")).collect();
    let period = if days == 1 {
        "the last 24 hours".to_owned()
    } else {
        format!("the last {days} days")
    };
    Some(format!(
        "You ran {} in a row {} times in {period}; after {}, {} came next {} of the time, within \
         {SEQUENCE_GAP_MINUTES} minutes. A shell alias or script could do them in one step.",
        steps.join(" then "),
        human::count(count),
        steps[..steps.len() - 1].join(" then "),
        steps[steps.len() - 1],
        human::percent(confidence)
    ))
}

/// The sequence [`repeated_sequence`] describes: its commands, how often it ran, and
/// how often its last command followed the ones before it.
fn most_repeated(recent: &[(Timestamp, String)]) -> Option<(Vec<&str>, u64, f64)> {
    // Each command as a number, so that a chain is a small fixed-size key: the window
    // holds tens of thousands of commands and only a handful of distinct names.
    let mut numbers: HashMap<&str, u32> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let coded: Vec<u32> = recent
        .iter()
        .map(|(_, command)| {
            *numbers.entry(command.as_str()).or_insert_with(|| {
                names.push(command.as_str());
                names.len() as u32 - 1
            })
        })
        .collect();
    // `close[i]`: command `i` started within the gap after command `i - 1`.
    let close: Vec<bool> = std::iter::once(false)
        .chain(
            recent
                .windows(2)
                .map(|pair| pair[1].0.duration_since(pair[0].0).as_secs() <= SEQUENCE_GAP_MINUTES * 60),
        )
        .collect();
    // Counts of every chain of 1, 2 and 3 commands close together; a chain's prefix
    // count is the denominator of its confidence.
    let mut counts: HashMap<Chain, u64> = HashMap::new();
    for length in 1..=3usize {
        for start in 0..coded.len().saturating_sub(length - 1) {
            if close[start + 1..start + length].iter().all(|close| *close) {
                *counts.entry(Chain::of(&coded[start..start + length])).or_default() += 1;
            }
        }
    }
    // How often each chain continued to anything: the base of its confidence.
    let mut continued: HashMap<Chain, u64> = HashMap::new();
    for (chain, count) in &counts {
        if chain.len > 1 {
            *continued.entry(chain.prefix()).or_default() += count;
        }
    }
    let words =
        |chain: &Chain| -> Vec<&str> { chain.commands().iter().map(|number| names[*number as usize]).collect() };
    counts
        .iter()
        .filter(|(chain, count)| {
            let commands = chain.commands();
            commands.len() > 1
                && **count >= SEQUENCE_MIN_REPEATS
                && commands.iter().any(|command| *command != commands[0])
        })
        .filter_map(|(chain, count)| {
            let base = continued.get(&chain.prefix())?;
            let confidence = *count as f64 / *base as f64;
            (confidence >= SEQUENCE_MIN_CONFIDENCE).then_some((words(chain), *count, confidence))
        })
        // Longer chains first when they repeat as often; then the most repeated; then
        // the first by name, so that the answer never depends on the map's order.
        .max_by(|a, b| {
            (a.0.len() as u64 * a.1)
                .cmp(&(b.0.len() as u64 * b.1))
                .then_with(|| b.0.cmp(&a.0))
        })
}

/// One to three commands in a row, by their numbers in [`repeated_sequence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Chain {
    len: usize,
    commands: [u32; 3],
}

impl Chain {
    fn of(commands: &[u32]) -> Chain {
        let mut chain = Chain {
            len: commands.len(),
            commands: [0; 3],
        };
        chain.commands[..commands.len()].copy_from_slice(commands);
        chain
    }

    fn commands(&self) -> &[u32] {
        &self.commands[..self.len]
    }

    /// The chain without its last command.
    fn prefix(&self) -> Chain {
        Chain::of(&self.commands()[..self.len - 1])
    }
}

/// The three consecutive hours of the day with the most commands.
fn usage_hours(target: &Target, current: &PeriodSummary) -> Option<String> {
    let total: u64 = current.commands_by_hour.iter().sum();
    if total < HOURS_MIN_COMMANDS {
        return None;
    }
    let (start, in_window) = (0..24)
        .map(|start| {
            (
                start,
                (0..3)
                    .map(|offset| current.commands_by_hour[(start + offset) % 24])
                    .sum::<u64>(),
            )
        })
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))?;
    let end = (start + 3) % 24;
    let busiest = (0..24).max_by_key(|hour| (current.commands_by_hour[*hour], 24 - hour))?;
    Some(format!(
        "You use {} most between {start:02}:00 and {end:02}:00 ({} of {} commands, {}); the busiest hour starts at \
         {busiest:02}:00. Long-running work such as updates fits best outside those hours.",
        target.app,
        human::count(in_window),
        human::count(total),
        human::percent(in_window as f64 / total as f64)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`most_repeated`] as it was before chains became numbers: every chain a `Vec`
    /// of names. The two must always find the same sequence.
    fn reference(recent: &[(Timestamp, String)]) -> Option<(Vec<&str>, u64, f64)> {
        let mut counts: HashMap<Vec<&str>, u64> = HashMap::new();
        for length in 1..=3usize {
            for window in recent.windows(length) {
                let close = window
                    .windows(2)
                    .all(|pair| pair[1].0.duration_since(pair[0].0).as_secs() <= SEQUENCE_GAP_MINUTES * 60);
                if close {
                    *counts
                        .entry(window.iter().map(|(_, command)| command.as_str()).collect())
                        .or_default() += 1;
                }
            }
        }
        let mut continued: HashMap<Vec<&str>, u64> = HashMap::new();
        for (chain, count) in &counts {
            if chain.len() > 1 {
                *continued.entry(chain[..chain.len() - 1].to_vec()).or_default() += count;
            }
        }
        counts
            .iter()
            .filter(|(chain, count)| {
                chain.len() > 1 && **count >= SEQUENCE_MIN_REPEATS && chain.iter().any(|command| *command != chain[0])
            })
            .filter_map(|(chain, count)| {
                let base = continued.get(&chain[..chain.len() - 1])?;
                let confidence = *count as f64 / *base as f64;
                (confidence >= SEQUENCE_MIN_CONFIDENCE).then_some((chain.clone(), *count, confidence))
            })
            .max_by(|a, b| {
                (a.0.len() as u64 * a.1)
                    .cmp(&(b.0.len() as u64 * b.1))
                    .then_with(|| b.0.cmp(&a.0))
            })
    }

    /// Commands from `names` at random gaps of up to ten minutes, with habits: most
    /// often the next name in the list follows, so that chains of two and three repeat.
    fn history(seed: u64, length: usize, names: &[&str]) -> Vec<(Timestamp, String)> {
        let mut state = seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let mut ts: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        let mut previous = 0usize;
        (0..length)
            .map(|_| {
                ts = ts
                    .checked_add(jiff::SignedDuration::from_secs(next(600) as i64))
                    .unwrap();
                previous = if next(3) == 0 {
                    next(names.len() as u64) as usize
                } else {
                    (previous + 1) % names.len()
                };
                (ts, names[previous].to_owned())
            })
            .collect()
    }

    #[test]
    fn numbered_chains_find_what_named_chains_found() {
        let mut found = 0;
        for seed in 0..60 {
            for names in [&["a", "b"][..], &["build", "test", "deploy", "status"], &["x"]] {
                let recent = history(seed, 20 + seed as usize * 20, names);
                let expected = reference(&recent);
                assert_eq!(most_repeated(&recent), expected, "seed {seed}, {names:?}");
                found += usize::from(expected.is_some());
            }
        }
        // Most histories of more than one name have a sequence, so the comparison
        // covers the choice between candidates, not only the absence of one.
        assert!(found > 80, "only {found} histories had a sequence");
    }

    #[test]
    fn no_sequence_in_too_few_commands() {
        assert_eq!(most_repeated(&[]), None);
        assert_eq!(most_repeated(&history(1, 1, &["a", "b"])), None);
        assert_eq!(most_repeated(&history(1, 4, &["a", "b"])), None);
    }
}
