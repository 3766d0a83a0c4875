//! The report's four charts as inline SVG.
//!
//! Each chart is sized by its `viewBox` only, so it scales with the page, and carries
//! its own title, legend, axis labels and units, so that it still reads when copied out
//! of the report. Every bar has a `<title>` with its exact figures, which browsers show
//! as a tooltip. Presentation attributes give the light-mode colours; the page's CSS may
//! override the classes (`axis`, `grid`, `ink`) for a dark scheme.

use std::fmt::Write as _;

use super::html::escape;
use super::{Report, clip};
use crate::cli::human;

/// The width of every chart in `viewBox` units.
const WIDTH: f64 = 760.0;
/// The right margin of every chart.
const RIGHT: f64 = 16.0;
/// Where the plot of a horizontal bar chart starts; command names go left of it.
const NAMES: f64 = 200.0;
/// Characters of a command name shown left of a bar (the tooltip has the whole name).
const NAME_CHARS: usize = 28;
/// Room right of the longest bar for its value.
const VALUE_ROOM: f64 = 110.0;
/// Rows in a horizontal bar chart; the rest are in the table below it.
const MAX_ROWS: usize = 12;

const INK: &str = "#111827";
const MUTED: &str = "#4b5563";
const GRID: &str = "#e5e7eb";
const BASELINE: &str = "#9ca3af";
const WEEKEND: &str = "#f3f4f6";
const COMMANDS: &str = "#2563eb";
const FAILED: &str = "#dc2626";
const P50: &str = "#1e40af";
const P95: &str = "#93c5fd";
/// Error categories, in order of failures (Okabe-Ito, distinguishable with the common
/// colour-vision deficiencies); categories beyond these share [`OTHER`].
const CATEGORY_COLOURS: [&str; 6] = ["#d55e00", "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9"];
const OTHER: &str = "#9ca3af";

/// The daily chart's height, in `viewBox` units.
const DAILY_HEIGHT: f64 = 300.0;
/// Where the daily chart's plot starts; the count axis goes left of it.
const DAILY_LEFT: f64 = 56.0;
/// The top of the daily chart's plot, below the title and legend.
const DAILY_TOP: f64 = 64.0;
/// The daily chart's baseline; day labels go below it.
const DAILY_BOTTOM: f64 = 244.0;

/// Commands and failures per local day, as stacked columns.
pub(super) fn daily_activity(report: &Report) -> String {
    let days = &report.daily;
    let mut out = String::new();
    let total: u64 = days.iter().map(|day| day.activity.commands).sum();
    open(
        &mut out,
        "chart-daily",
        DAILY_HEIGHT,
        "Daily activity",
        &format!(
            "Commands run per local day, {} in all, with the failed part of each day in red.",
            human::count(total)
        ),
    );
    legend(
        &mut out,
        38.0,
        &[(COMMANDS, "Commands run"), (FAILED, "of which failed")],
    );
    let most = days.iter().map(|day| day.activity.commands).max().unwrap_or(0);
    let scale = daily_count_axis(&mut out, most);
    let slot = (WIDTH - RIGHT - DAILY_LEFT) / days.len().max(1) as f64;
    let columns = DayColumns {
        slot,
        bar: (slot * 0.7).min(44.0),
        few: days.len() <= 14,
    };
    for (index, day) in days.iter().enumerate() {
        day_column(&mut out, &scale, &columns, index, day);
        day_label(&mut out, &columns, index, day);
    }
    baseline(&mut out, DAILY_LEFT, WIDTH - RIGHT, DAILY_BOTTOM);
    let _ = write!(
        out,
        r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="middle" fill="{MUTED}">local day{}</text>"#,
        (DAILY_LEFT + WIDTH - RIGHT) / 2.0,
        DAILY_HEIGHT - 6.0,
        report
            .zone
            .as_deref()
            .map(|zone| format!(" ({})", escape(zone)))
            .unwrap_or_default()
    );
    out.push_str("</svg>");
    out
}

/// The daily chart's vertical scale: commands per day, up to `top`.
struct DailyScale {
    top: u64,
}

impl DailyScale {
    fn y(&self, value: u64) -> f64 {
        DAILY_BOTTOM - value as f64 / self.top as f64 * (DAILY_BOTTOM - DAILY_TOP)
    }
}

/// Draws the grid lines and the axis title for counts up to `most`.
fn daily_count_axis(out: &mut String, most: u64) -> DailyScale {
    let (step, top) = count_axis(most);
    let scale = DailyScale { top };
    let mut tick = 0;
    while tick <= top {
        grid_line_y(out, DAILY_LEFT, WIDTH - RIGHT, scale.y(tick), &human::count(tick));
        tick += step;
    }
    let _ = write!(
        out,
        r#"<text class="axis" x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle" fill="{MUTED}">commands per day</text>"#,
        (DAILY_TOP + DAILY_BOTTOM) / 2.0,
        (DAILY_TOP + DAILY_BOTTOM) / 2.0
    );
    scale
}

/// How the days share the width: each day's slot, its bar, and whether there are few
/// enough days to label each bar with its count and each day by name.
struct DayColumns {
    slot: f64,
    bar: f64,
    few: bool,
}

/// One day: a tooltip, a shaded slot on weekends, the successful and failed parts of
/// the bar, and (with few days) its count.
fn day_column(out: &mut String, scale: &DailyScale, columns: &DayColumns, index: usize, day: &super::Day) {
    let DayColumns { slot, bar, few } = *columns;
    let activity = day.activity;
    let slot_x = DAILY_LEFT + index as f64 * slot;
    let x = slot_x + (slot - bar) / 2.0;
    let center = slot_x + slot / 2.0;
    let weekend = matches!(
        day.date.weekday(),
        jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
    );
    let _ = write!(
        out,
        r#"<g><title>{}: {} {}, {} failed</title><rect{} x="{slot_x:.1}" y="{DAILY_TOP:.1}" width="{slot:.1}" height="{:.1}" fill="{}"/>"#,
        day.date.strftime("%A %Y-%m-%d"),
        human::count(activity.commands),
        super::plural(activity.commands, "command", "commands"),
        human::count(activity.failures),
        if weekend { r#" class="shade""# } else { "" },
        DAILY_BOTTOM - DAILY_TOP,
        if weekend { WEEKEND } else { "transparent" }
    );
    let failed = activity.failures.min(activity.commands);
    if activity.commands > failed {
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}" fill="{COMMANDS}"/>"#,
            scale.y(activity.commands),
            scale.y(failed) - scale.y(activity.commands)
        );
    }
    if failed > 0 {
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}" fill="{FAILED}"/>"#,
            scale.y(failed),
            DAILY_BOTTOM - scale.y(failed)
        );
    }
    if few && activity.commands > 0 {
        let _ = write!(
            out,
            r#"<text class="ink" x="{center:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="{INK}">{}</text>"#,
            scale.y(activity.commands) - 4.0,
            human::count(activity.commands)
        );
    }
    out.push_str("</g>");
}

/// The day's label under the baseline: weekday and date when there are few days,
/// otherwise the day of the month, with the month's name where one starts.
fn day_label(out: &mut String, columns: &DayColumns, index: usize, day: &super::Day) {
    let center = DAILY_LEFT + index as f64 * columns.slot + columns.slot / 2.0;
    let (first, second) = if columns.few {
        (
            day.date.strftime("%a").to_string(),
            day.date.strftime("%b %-d").to_string(),
        )
    } else {
        let month = index == 0 || day.date.day() == 1;
        (
            day.date.strftime("%-d").to_string(),
            if month {
                day.date.strftime("%b").to_string()
            } else {
                String::new()
            },
        )
    };
    let _ = write!(
        out,
        r#"<text class="axis" x="{center:.1}" y="{:.1}" text-anchor="middle" fill="{MUTED}">{first}</text>"#,
        DAILY_BOTTOM + 16.0
    );
    if !second.is_empty() {
        let _ = write!(
            out,
            r#"<text class="axis" x="{center:.1}" y="{:.1}" text-anchor="middle" fill="{MUTED}">{second}</text>"#,
            DAILY_BOTTOM + 30.0
        );
    }
}

/// Runs per command, most used first.
pub(super) fn command_usage(report: &Report) -> String {
    let commands = &report.current.by_command;
    let title = "Command usage";
    let rows = commands.len().min(MAX_ROWS);
    if rows == 0 {
        return nothing("chart-usage", title, "No commands ran in this period.");
    }
    const ROW: f64 = 26.0;
    const TOP: f64 = 40.0;
    let mut out = String::new();
    let bottom = TOP + rows as f64 * ROW;
    let height = bottom + 40.0 + footnote_room(commands.len());
    open(
        &mut out,
        "chart-usage",
        height,
        title,
        &format!("Runs per command in this period, the {rows} most used, longest bar first."),
    );
    let most = commands.iter().map(|summary| summary.runs).max().unwrap_or(0);
    let (step, top) = count_axis(most);
    let x = |value: u64| NAMES + value as f64 / top as f64 * (WIDTH - RIGHT - VALUE_ROOM - NAMES);
    let mut tick = 0;
    while tick <= top {
        grid_line_x(&mut out, x(tick), TOP, bottom, &human::count(tick));
        tick += step;
    }
    for (index, summary) in commands.iter().take(rows).enumerate() {
        let row_top = TOP + index as f64 * ROW;
        name_label(&mut out, &summary.command, row_top + ROW / 2.0);
        let _ = write!(
            out,
            r#"<g><title>{}: {} {}, {} failed</title><rect x="{NAMES:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{COMMANDS}"/>"#,
            escape(&summary.command),
            human::count(summary.runs),
            super::plural(summary.runs, "run", "runs"),
            human::count(summary.failures),
            row_top + 5.0,
            x(summary.runs) - NAMES,
            ROW - 10.0
        );
        value_label(
            &mut out,
            x(summary.runs) + 6.0,
            row_top + ROW / 2.0,
            &human::count(summary.runs),
        );
        out.push_str("</g>");
    }
    baseline_y(&mut out, NAMES, TOP, bottom);
    axis_title(&mut out, bottom + 34.0, "runs");
    footnote(&mut out, height, rows, commands.len());
    out.push_str("</svg>");
    out
}

/// Typical (p50) and slow (p95) duration per command, slowest first.
pub(super) fn durations(report: &Report) -> String {
    let timed = report.by_duration();
    let title = "Durations";
    let rows = timed.len().min(MAX_ROWS);
    if rows == 0 {
        return nothing(
            "chart-durations",
            title,
            "No command reported a duration in this period.",
        );
    }
    const ROW: f64 = 34.0;
    const TOP: f64 = 60.0;
    let mut out = String::new();
    let bottom = TOP + rows as f64 * ROW;
    let height = bottom + 40.0 + footnote_room(timed.len());
    open(
        &mut out,
        "chart-durations",
        height,
        title,
        &format!("Median (p50) and 95th percentile (p95) duration of the {rows} slowest commands, slowest p95 first."),
    );
    legend(
        &mut out,
        38.0,
        &[
            (P50, "p50: half the runs were faster"),
            (P95, "p95: 19 in 20 runs were faster"),
        ],
    );
    let slowest = timed.iter().filter_map(|summary| summary.p95_ms()).max().unwrap_or(0);
    let (step, top) = duration_axis(slowest);
    let x = |ms: u64| NAMES + ms as f64 / top as f64 * (WIDTH - RIGHT - VALUE_ROOM - NAMES);
    let mut tick = 0;
    while tick <= top {
        grid_line_x(&mut out, x(tick), TOP, bottom, &duration_tick(tick));
        tick += step;
    }
    for (index, summary) in timed.iter().take(rows).enumerate() {
        let row_top = TOP + index as f64 * ROW;
        name_label(&mut out, &summary.command, row_top + ROW / 2.0);
        for (offset, quantile, colour, ms) in [
            (5.0, "p50", P50, summary.p50_ms()),
            (18.0, "p95", P95, summary.p95_ms()),
        ] {
            let Some(ms) = ms else { continue };
            let _ = write!(
                out,
                r#"<g><title>{} {quantile}: {} ({} timed {})</title><rect x="{NAMES:.1}" y="{:.1}" width="{:.1}" height="11" fill="{colour}"/>"#,
                escape(&summary.command),
                human::duration_ms(ms),
                human::count(summary.durations.duration_count),
                super::plural(summary.durations.duration_count, "run", "runs"),
                row_top + offset,
                (x(ms) - NAMES).max(1.0)
            );
            value_label(&mut out, x(ms) + 6.0, row_top + offset + 5.5, &human::duration_ms(ms));
            out.push_str("</g>");
        }
    }
    baseline_y(&mut out, NAMES, TOP, bottom);
    axis_title(&mut out, bottom + 34.0, "duration");
    footnote(&mut out, height, rows, timed.len());
    out.push_str("</svg>");
    out
}

/// Failed runs per command, split by error category.
pub(super) fn errors(report: &Report) -> String {
    let failing = report.failures_by_command();
    let title = "Errors";
    let rows = failing.len().min(MAX_ROWS);
    if rows == 0 {
        return nothing("chart-errors", title, "No command failed in this period.");
    }
    let categories = report.categories();
    let colour_of = |category: &str| {
        categories
            .iter()
            .position(|(name, _)| *name == category)
            .and_then(|index| CATEGORY_COLOURS.get(index))
            .copied()
            .unwrap_or(OTHER)
    };
    let mut keys: Vec<(&str, String)> = categories
        .iter()
        .take(CATEGORY_COLOURS.len())
        .zip(CATEGORY_COLOURS)
        .map(|((name, count), colour)| (colour, format!("{} ({})", clip(name, 24, "…"), human::count(*count))))
        .collect();
    if categories.len() > CATEGORY_COLOURS.len() {
        let rest: u64 = categories
            .iter()
            .skip(CATEGORY_COLOURS.len())
            .map(|(_, count)| count)
            .sum();
        keys.push((OTHER, format!("other ({})", human::count(rest))));
    }
    let keys: Vec<(&str, &str)> = keys.iter().map(|(colour, label)| (*colour, label.as_str())).collect();

    const ROW: f64 = 26.0;
    let mut out = String::new();
    let top_edge = 36.0 + legend_height(&keys);
    let bottom = top_edge + rows as f64 * ROW;
    let height = bottom + 40.0 + footnote_room(failing.len());
    open(
        &mut out,
        "chart-errors",
        height,
        title,
        &format!(
            "Failed runs per command in this period, split by error category, for the {rows} commands that failed most."
        ),
    );
    legend(&mut out, 38.0, &keys);
    let most = failing.iter().map(|(summary, _)| summary.failures).max().unwrap_or(0);
    let (step, top) = count_axis(most);
    let x = |value: u64| NAMES + value as f64 / top as f64 * (WIDTH - RIGHT - VALUE_ROOM - NAMES);
    let mut tick = 0;
    while tick <= top {
        grid_line_x(&mut out, x(tick), top_edge, bottom, &human::count(tick));
        tick += step;
    }
    for (index, (summary, by_category)) in failing.iter().take(rows).enumerate() {
        let row_top = top_edge + index as f64 * ROW;
        name_label(&mut out, &summary.command, row_top + ROW / 2.0);
        let mut done = 0;
        for (category, count) in by_category {
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}, {}: {} failed {}</title></rect>"#,
                x(done),
                row_top + 5.0,
                x(done + count) - x(done),
                ROW - 10.0,
                colour_of(category),
                escape(&summary.command),
                escape(category),
                human::count(*count),
                super::plural(*count, "run", "runs")
            );
            done += count;
        }
        let _ = write!(
            out,
            r#"<text class="ink" x="{:.1}" y="{:.1}" fill="{INK}">{} <tspan class="axis" fill="{MUTED}">({} of runs)</tspan><title>{}: {} of {} runs with an outcome failed</title></text>"#,
            x(done) + 6.0,
            row_top + ROW / 2.0 + 4.0,
            human::count(summary.failures),
            human::percent(summary.failure_rate()),
            escape(&summary.command),
            human::count(summary.failures),
            human::count(summary.with_outcome)
        );
    }
    baseline_y(&mut out, NAMES, top_edge, bottom);
    axis_title(&mut out, bottom + 34.0, "failed runs");
    footnote(&mut out, height, rows, failing.len());
    out.push_str("</svg>");
    out
}

/// Starts a chart: the `<svg>`, its accessible title and description, and the title drawn.
fn open(out: &mut String, id: &str, height: f64, title: &str, description: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" id="{id}" viewBox="0 0 {WIDTH:.0} {height:.0}" role="img" aria-labelledby="{id}-title {id}-desc" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12"><title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc><text class="ink" x="0" y="18" font-size="15" font-weight="600" fill="{INK}">{}</text>"#,
        escape(title),
        escape(description),
        escape(title)
    );
}

/// A chart with nothing to draw: its title and a sentence saying why.
fn nothing(id: &str, title: &str, message: &str) -> String {
    let mut out = String::new();
    open(&mut out, id, 96.0, title, message);
    let _ = write!(
        out,
        r#"<rect class="shade" x="0" y="32" width="{WIDTH:.0}" height="56" rx="6" fill="{WEEKEND}"/><text class="axis" x="{:.0}" y="65" text-anchor="middle" fill="{MUTED}">{}</text></svg>"#,
        WIDTH / 2.0,
        escape(message)
    );
    out
}

/// Colour swatches with labels in a row from the left, wrapping at the chart's width.
fn legend(out: &mut String, y: f64, keys: &[(&str, &str)]) {
    let mut x = 0.0;
    let mut y = y;
    for (colour, label) in keys {
        let width = legend_item_width(label);
        if x > 0.0 && x + width > WIDTH {
            x = 0.0;
            y += 18.0;
        }
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" rx="2" fill="{colour}"/><text class="axis" x="{:.1}" y="{y:.1}" fill="{MUTED}">{}</text>"#,
            y - 10.0,
            x + 17.0,
            escape(label)
        );
        x += width;
    }
}

/// The height the legend of `keys` takes, from its first line's baseline to below its last.
fn legend_height(keys: &[(&str, &str)]) -> f64 {
    let mut x = 0.0;
    let mut lines = 1.0;
    for (_, label) in keys {
        let width = legend_item_width(label);
        if x > 0.0 && x + width > WIDTH {
            x = 0.0;
            lines += 1.0;
        }
        x += width;
    }
    lines * 18.0
}

/// Swatch, gap, label (about 7 units a character at 12px) and space before the next.
fn legend_item_width(label: &str) -> f64 {
    17.0 + label.chars().count() as f64 * 7.0 + 20.0
}

/// A horizontal gridline at `y` with its label left of the plot.
fn grid_line_y(out: &mut String, left: f64, right: f64, y: f64, label: &str) {
    let _ = write!(
        out,
        r#"<line class="grid" x1="{left:.1}" x2="{right:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{GRID}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end" fill="{MUTED}">{}</text>"#,
        left - 8.0,
        y + 4.0,
        escape(label)
    );
}

/// A vertical gridline at `x` with its label under the plot.
fn grid_line_x(out: &mut String, x: f64, top: f64, bottom: f64, label: &str) {
    let _ = write!(
        out,
        r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{top:.1}" y2="{bottom:.1}" stroke="{GRID}"/><text class="axis" x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{MUTED}">{}</text>"#,
        bottom + 16.0,
        escape(label)
    );
}

fn baseline(out: &mut String, left: f64, right: f64, y: f64) {
    let _ = write!(
        out,
        r#"<line x1="{left:.1}" x2="{right:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{BASELINE}"/>"#
    );
}

fn baseline_y(out: &mut String, x: f64, top: f64, bottom: f64) {
    let _ = write!(
        out,
        r#"<line x1="{x:.1}" x2="{x:.1}" y1="{top:.1}" y2="{bottom:.1}" stroke="{BASELINE}"/>"#
    );
}

/// The unit under a horizontal chart's axis.
fn axis_title(out: &mut String, y: f64, text: &str) {
    let _ = write!(
        out,
        r#"<text class="axis" x="{:.1}" y="{y:.1}" text-anchor="middle" fill="{MUTED}">{}</text>"#,
        (NAMES + WIDTH - RIGHT - VALUE_ROOM) / 2.0,
        escape(text)
    );
}

/// A command name right-aligned left of its bar, cut to fit; the tooltip has it whole.
fn name_label(out: &mut String, name: &str, middle: f64) {
    let _ = write!(
        out,
        r#"<text class="ink" x="{:.1}" y="{:.1}" text-anchor="end" fill="{INK}">{}<title>{}</title></text>"#,
        NAMES - 8.0,
        middle + 4.0,
        escape(&clip(name, NAME_CHARS, "…")),
        escape(name)
    );
}

fn value_label(out: &mut String, x: f64, middle: f64, text: &str) {
    let _ = write!(
        out,
        r#"<text class="ink" x="{x:.1}" y="{:.1}" font-size="11" fill="{INK}">{}</text>"#,
        middle + 4.0,
        escape(text)
    );
}

fn footnote_room(all: usize) -> f64 {
    if all > MAX_ROWS { 20.0 } else { 0.0 }
}

/// Says how many rows were left out, when some were.
fn footnote(out: &mut String, height: f64, shown: usize, all: usize) {
    if all > shown {
        let _ = write!(
            out,
            r#"<text class="axis" x="0" y="{:.1}" font-size="11" fill="{MUTED}">{shown} of {all} commands shown; the table below has them all.</text>"#,
            height - 4.0
        );
    }
}

/// A round step (1, 2 or 5 times a power of ten) that divides `0..=max` into at most
/// five parts, and the axis top: the first multiple of the step at or above `max`.
fn count_axis(max: u64) -> (u64, u64) {
    let mut magnitude = 1u64;
    loop {
        for factor in [1, 2, 5] {
            let step = factor * magnitude;
            if max.div_ceil(step) <= 5 {
                return (step, max.div_ceil(step).max(1) * step);
            }
        }
        magnitude = magnitude.saturating_mul(10);
    }
}

/// Like [`count_axis`] for milliseconds, with steps people count time in (15 s, 30 s,
/// 1 min, 15 min, 1 h) so that tick labels stay round.
fn duration_axis(max_ms: u64) -> (u64, u64) {
    const STEPS_MS: [u64; 25] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000,
    ];
    let step = STEPS_MS
        .into_iter()
        .find(|step| max_ms.div_ceil(*step) <= 5)
        .unwrap_or_else(|| count_axis(max_ms.div_ceil(86_400_000)).0 * 86_400_000);
    (step, max_ms.div_ceil(step).max(1) * step)
}

/// `500 ms`, `2 s`, `2.5 s`, `15 min`, `6 h`: an axis tick, as round as it is.
fn duration_tick(ms: u64) -> String {
    match ms {
        0 => "0".to_owned(),
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 60_000 && ms % 1_000 == 0 => format!("{} s", ms / 1_000),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        ms if ms < 3_600_000 && ms % 60_000 == 0 => format!("{} min", ms / 60_000),
        ms if ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
        ms => human::duration_ms(ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(count_axis(0), (1, 1));
        assert_eq!(count_axis(3), (1, 3));
        assert_eq!(count_axis(7), (2, 8));
        assert_eq!(count_axis(230), (50, 250));
        assert_eq!(duration_axis(850), (200, 1_000));
        assert_eq!(duration_axis(12_300), (5_000, 15_000));
        assert_eq!(duration_axis(190_000), (60_000, 240_000));
        assert_eq!(duration_tick(2_500), "2.5 s");
        assert_eq!(duration_tick(60_000), "1 min");
        assert_eq!(duration_tick(7_200_000), "2 h");
    }
}
