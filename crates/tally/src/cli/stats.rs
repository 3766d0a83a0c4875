//! `stats`: the usage box of Nexus ADR-003 and the top commands.

use std::io::Write;

use jiff::tz::TimeZone;
use tally_store::stats::{Period, PeriodSummary};

use super::{CliError, StatsArgs, Target, human};

/// Commands listed under the box.
const TOP_COMMANDS: usize = 10;
/// Inner width of the box, as in the ADR.
const BOX_WIDTH: usize = 58;

pub(crate) fn run(target: &Target, args: &StatsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let store = target.open_required()?;
    let (days, label) = args.period.days();
    let period = Period::last_days(target.now(), days);
    let summary = store.summarize(&period, &TimeZone::system())?;
    if args.json {
        write_json(target, &period, label, &summary, out)
    } else {
        write_text(target, label, &summary, out)
    }
}

fn write_text(target: &Target, label: &str, summary: &PeriodSummary, out: &mut dyn Write) -> Result<(), CliError> {
    let line = |out: &mut dyn Write, text: &str| writeln!(out, "║  {text:<width$}║", width = BOX_WIDTH - 2);
    writeln!(out, "╔{}╗", "═".repeat(BOX_WIDTH))?;
    line(out, &format!("{} Usage Analytics ({label})", target.title()))?;
    writeln!(out, "╠{}╣", "═".repeat(BOX_WIDTH))?;
    let average = summary
        .avg_session_ms
        .map_or_else(|| "-".to_owned(), human::duration_ms);
    let success = summary.success_rate().map_or_else(|| "-".to_owned(), human::percent);
    for (name, value) in [
        ("Workspaces Created:", human::count(summary.workspaces_created)),
        ("Tasks Completed:", human::count(summary.tasks_completed)),
        ("Avg Session Length:", average),
        ("Success Rate:", success),
        ("Commands Run:", human::count(summary.commands.runs)),
        ("Sessions:", human::count(summary.sessions)),
    ] {
        line(out, &format!("{name:<22}{value}"))?;
    }
    writeln!(out, "╚{}╝", "═".repeat(BOX_WIDTH))?;
    writeln!(out)?;
    if summary.by_command.is_empty() {
        writeln!(out, "No commands in this period.")?;
        return Ok(());
    }
    writeln!(out, "Top commands{:>22}{:>10}{:>10}", "runs", "median", "failed")?;
    for command in summary.by_command.iter().take(TOP_COMMANDS) {
        let median = command.p50_ms().map_or_else(|| "-".to_owned(), human::duration_ms);
        writeln!(
            out,
            "  {:<26}{:>6}{:>10}{:>10}",
            truncate(&command.command, 26),
            human::count(command.runs),
            median,
            human::percent(command.failure_rate())
        )?;
    }
    if summary.by_command.len() > TOP_COMMANDS {
        writeln!(out, "  ... and {} more", summary.by_command.len() - TOP_COMMANDS)?;
    }
    Ok(())
}

fn write_json(
    target: &Target,
    period: &Period,
    label: &str,
    summary: &PeriodSummary,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let commands: Vec<serde_json::Value> = summary
        .by_command
        .iter()
        .map(|command| {
            serde_json::json!({
                "command": command.command,
                "runs": command.runs,
                "failures": command.failures,
                "failure_rate": command.failure_rate(),
                "median_ms": command.p50_ms(),
                "p95_ms": command.p95_ms(),
                "max_ms": command.durations.duration_max_ms,
            })
        })
        .collect();
    let value = serde_json::json!({
        "app": target.app,
        "period": {
            "label": label,
            "from": tally_core::time::format(period.from),
            "to": tally_core::time::format(period.to),
        },
        "workspaces_created": summary.workspaces_created,
        "tasks_completed": summary.tasks_completed,
        "errors": summary.errors,
        "sessions": summary.sessions,
        "avg_session_ms": summary.avg_session_ms,
        "commands_run": summary.commands.runs,
        "success_rate": summary.success_rate(),
        "events": summary.events,
        "top_commands": commands,
    });
    serde_json::to_writer_pretty(&mut *out, &value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// Cuts `text` to `width` characters, marking the cut.
pub(crate) fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}
