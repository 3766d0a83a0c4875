//! `export`: everything stored, for the user's own analysis.
//!
//! Events are streamed row by row from SQLite to the writer, so memory stays constant
//! however large the store. CSV follows RFC 4180 (CRLF line ends, quotes doubled) and
//! neutralises cells a spreadsheet would run as a formula. OpenMetrics output is built
//! from the rollups. `tally_events` is the collector's `/metrics` family
//! ([`tally_store::openmetrics::EVENTS`]), a counter; its `# TYPE` line names the
//! sample (`tally_events_total`), the form Prometheus's text parser (`promtool check
//! metrics`) requires and its OpenMetrics parser (`promtool tsdb create-blocks-from
//! openmetrics`) reads too. The other families are gauges and a histogram.

use std::collections::BTreeMap;
use std::io::Write;

use tally_core::Event;
use tally_core::time::Period;
use tally_store::histogram::BUCKET_BOUNDS_MS;
use tally_store::openmetrics::{EVENTS, Format, escape_label as label};
use tally_store::rollup::Rollup;

use super::{CliError, ExportArgs, ExportFormat, Target, interactive, with_output};

/// Stores with more events than this show a progress bar on a terminal.
const PROGRESS_THRESHOLD: u64 = 10_000;

const CSV_COLUMNS: [&str; 18] = [
    "id",
    "ts",
    "app",
    "app_version",
    "source",
    "type",
    "name",
    "command",
    "session_id",
    "install_id",
    "workspace",
    "target_type",
    "target_id",
    "duration_ms",
    "success",
    "error_category",
    "error_message",
    "props",
];

pub(crate) fn run(target: &Target, args: &ExportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since >= until
    {
        return Err(CliError::Usage(format!(
            "--since ({}) must be before --until ({})",
            tally_core::time::format(since),
            tally_core::time::format(until)
        )));
    }
    let store = target.open_required()?;
    let range = Period {
        from: args.since.unwrap_or(Period::ALL.from),
        to: args.until.unwrap_or(Period::ALL.to),
    };
    with_output(args.output.as_ref(), out, |writer| {
        if args.format == ExportFormat::Openmetrics {
            return write_openmetrics(&store.rollups(None, &range)?, writer);
        }
        let total = store.count_events(&range)?;
        let progress = (interactive() && args.output.is_some() && total > PROGRESS_THRESHOLD).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events ({eta} left)")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let mut first = true;
        let mut otlp = super::export_otlp::OtlpJsonWriter::default();
        match args.format {
            ExportFormat::Json => writer.write_all(b"[")?,
            ExportFormat::Otlp => otlp.begin(writer)?,
            ExportFormat::Csv => write_csv_row(writer, CSV_COLUMNS.iter().map(|column| (*column).to_owned()))?,
            _ => {}
        }
        store.for_each_event(&range, |event| -> Result<(), CliError> {
            match args.format {
                ExportFormat::Json => {
                    writer.write_all(if first { b"\n" } else { b",\n" })?;
                    writer.write_all(event.to_json().as_bytes())?;
                }
                ExportFormat::Ndjson => {
                    writer.write_all(event.to_json().as_bytes())?;
                    writer.write_all(b"\n")?;
                }
                ExportFormat::Csv => write_csv_row(writer, csv_cells(&event))?,
                ExportFormat::Otlp => otlp.write(writer, &event)?,
                ExportFormat::Openmetrics => {}
            }
            first = false;
            if let Some(bar) = &progress {
                bar.inc(1);
            }
            Ok(())
        })?;
        if args.format == ExportFormat::Json {
            writer.write_all(if first { b"]\n" } else { b"\n]\n" })?;
        }
        if args.format == ExportFormat::Otlp {
            otlp.finish(writer)?;
        }
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        Ok(())
    })
}

fn csv_cells(event: &Event) -> impl Iterator<Item = String> {
    let optional = |value: &Option<String>| value.clone().unwrap_or_default();
    [
        event.id.to_string(),
        tally_core::time::format(event.ts),
        event.app.clone(),
        event.app_version.clone(),
        event.source.to_string(),
        event.kind.clone(),
        event.name.clone(),
        optional(&event.command),
        event.session_id.clone(),
        event.install_id.clone(),
        optional(&event.workspace),
        optional(&event.target_type),
        optional(&event.target_id),
        event.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
        event.success.map(|s| s.to_string()).unwrap_or_default(),
        optional(&event.error_category),
        optional(&event.error_message),
        if event.props.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&event.props).unwrap_or_default()
        },
    ]
    .into_iter()
}

/// One RFC 4180 record.
fn write_csv_row(writer: &mut dyn Write, cells: impl Iterator<Item = String>) -> Result<(), CliError> {
    for (index, cell) in cells.enumerate() {
        if index > 0 {
            writer.write_all(b",")?;
        }
        writer.write_all(csv_cell(&cell).as_bytes())?;
    }
    writer.write_all(b"\r\n")?;
    Ok(())
}

/// Quotes a cell when RFC 4180 requires it, and prefixes `'` to a cell a spreadsheet
/// would evaluate as a formula (starting with `=`, `+`, `-`, `@`, tab or carriage return).
pub(crate) fn csv_cell(cell: &str) -> String {
    let mut text = String::with_capacity(cell.len() + 2);
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        text.push('\'');
    }
    text.push_str(cell);
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn write_openmetrics(
    rollups: &[(tally_store::rollup::RollupKey, Rollup)],
    out: &mut dyn Write,
) -> Result<(), CliError> {
    // Sum the hourly rollups per label set; BTreeMaps keep the output in a stable order.
    let mut events: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut durations: BTreeMap<(String, String), Rollup> = BTreeMap::new();
    let mut errors: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for (key, rollup) in rollups {
        *events
            .entry((key.app.clone(), key.kind.clone(), key.name.clone()))
            .or_default() += rollup.count;
        if key.name == "command_executed" {
            durations
                .entry((key.app.clone(), key.command.clone()))
                .or_default()
                .merge(rollup);
            if key.success == 0 {
                let category = if key.error_category.is_empty() {
                    "unknown"
                } else {
                    &key.error_category
                };
                *errors
                    .entry((key.app.clone(), key.command.clone(), category.to_owned()))
                    .or_default() += rollup.count;
            }
        }
    }
    out.write_all(EVENTS.header(Format::Prometheus).as_bytes())?;
    for ((app, kind, name), count) in &events {
        out.write_all(EVENTS.sample([app, kind, name], count).as_bytes())?;
    }
    writeln!(
        out,
        "# HELP tally_command_failures Failed commands, by command and error category."
    )?;
    writeln!(out, "# TYPE tally_command_failures gauge")?;
    for ((app, command, category), count) in &errors {
        writeln!(
            out,
            "tally_command_failures{{app=\"{}\",command=\"{}\",category=\"{}\"}} {count}",
            label(app),
            label(command),
            label(category)
        )?;
    }
    writeln!(out, "# HELP tally_command_duration_seconds How long commands took.")?;
    writeln!(out, "# TYPE tally_command_duration_seconds histogram")?;
    writeln!(out, "# UNIT tally_command_duration_seconds seconds")?;
    for ((app, command), rollup) in &durations {
        let labels = format!("app=\"{}\",command=\"{}\"", label(app), label(command));
        let mut cumulative = 0;
        for (bound, count) in BUCKET_BOUNDS_MS.iter().zip(rollup.histogram.counts) {
            cumulative += count;
            writeln!(
                out,
                "tally_command_duration_seconds_bucket{{{labels},le=\"{}\"}} {cumulative}",
                *bound as f64 / 1000.0
            )?;
        }
        writeln!(
            out,
            "tally_command_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            rollup.duration_count
        )?;
        writeln!(
            out,
            "tally_command_duration_seconds_sum{{{labels}}} {}",
            rollup.duration_total_ms as f64 / 1000.0
        )?;
        writeln!(
            out,
            "tally_command_duration_seconds_count{{{labels}}} {}",
            rollup.duration_count
        )?;
    }
    writeln!(out, "# EOF")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_and_neutralised() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2"), "'-2");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
    }
}
