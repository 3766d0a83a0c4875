//! `record`: one event (or NDJSON events on standard input) from any shell or language.
//!
//! The events go through the SDK itself ([`Telemetry`]): the same settings, consent,
//! level, keyed hashing and store as a Rust host. The process joins a session instead
//! of starting one, so a script that records a few events per step does not count a
//! session per call. Telemetry failing never fails the caller: the exit status is 0 with
//! a note in debug mode, unless `--strict`. Bad arguments are usage errors, checked
//! before anything is opened.

use std::io::BufRead;
use std::time::Duration;

use clap::Args;
use tally_core::{EventBuilder, Level, PropValue, Source};

use super::{CliError, Target};
use crate::Telemetry;
use crate::input::{self, EventFields, EventInput};

/// `record`: record events as the app would.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// The event's category (`command`, `workspace`, `task`).
    #[arg(long = "type", value_name = "TYPE", required_unless_present = "stdin")]
    pub kind: Option<String>,
    /// The event name (`command_executed`, `workspace_created`).
    #[arg(long, required_unless_present = "stdin")]
    pub name: Option<String>,
    /// The subcommand path the event belongs to (`deploy`), never its arguments.
    #[arg(long)]
    pub command: Option<String>,
    /// How long the action took, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub duration_ms: Option<u64>,
    /// The action succeeded.
    #[arg(long, conflicts_with = "failure")]
    pub success: bool,
    /// The action failed.
    #[arg(long)]
    pub failure: bool,
    /// A fixed failure category (`io`, `not_found`).
    #[arg(long, value_name = "CATEGORY")]
    pub error_category: Option<String>,
    /// The error message: kept, redacted, at level full only.
    #[arg(long, value_name = "TEXT")]
    pub error_message: Option<String>,
    /// The workspace, by its name; stored only as a keyed hash.
    #[arg(long, value_name = "NAME")]
    pub workspace: Option<String>,
    /// What the event concerns, as KIND=NAME (`task=fix login`); the name is stored only
    /// as a keyed hash.
    #[arg(long, value_name = "KIND=NAME")]
    pub target: Option<String>,
    /// A property, KEY=VALUE; true/false and numbers are stored as such. Repeatable.
    #[arg(long = "prop", value_name = "KEY=VALUE")]
    pub props: Vec<String>,
    /// Read events from standard input instead, one JSON object per line:
    /// {"type": ..., "name": ..., and any of command, duration_ms, success,
    /// error_category, error_message, workspace, target_type, target, props}.
    #[arg(long, conflicts_with_all = [
        "kind", "name", "command", "duration_ms", "success", "failure", "error_category",
        "error_message", "workspace", "target", "props",
    ])]
    pub stdin: bool,
    /// The app's version, recorded on every event.
    #[arg(long, value_name = "VERSION", default_value = "0.0.0")]
    pub app_version: String,
    /// The kind of program: cli, web, mobile, backend or extension.
    #[arg(long, default_value = "cli", value_parser = parse_source)]
    pub source: Source,
    /// Record into this session (an id shared by the calls of one run); a new one
    /// otherwise.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Exit non-zero when the events could not be written (telemetry turned off is not
    /// a failure).
    #[arg(long)]
    pub strict: bool,
}

fn parse_source(text: &str) -> Result<Source, String> {
    text.parse()
}

/// How long `record` waits for its events to be committed, plus a millisecond per
/// event: another process may hold the store's write lock for a while, and the caller
/// asked for exactly this write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `record` for `target`.
pub(super) fn run(target: &Target, args: &RecordArgs) -> Result<(), CliError> {
    tally_core::validate::check_app(&target.app).map_err(|err| CliError::Usage(err.to_string()))?;
    let session = args.session.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let events = if args.stdin {
        read_lines(std::io::stdin().lock())?
    } else {
        vec![from_args(args)?]
    };
    if events.is_empty() {
        // Nothing to record: opening telemetry would create a store for no event.
        return Ok(());
    }
    for (index, event) in events.iter().enumerate() {
        input::check(event, &target.app, &args.app_version, &session).map_err(|err| {
            CliError::Usage(if args.stdin {
                format!("line {}: {err}", index + 1)
            } else {
                format!("--{}", flag_of(&err.to_string()))
            })
        })?;
    }
    let telemetry = Telemetry::builder(target.app.clone())
        .version(args.app_version.clone())
        .source(args.source)
        .off_command(format!("{} off", target.command()))
        .shutdown_timeout(WRITE_TIMEOUT + Duration::from_millis(events.len() as u64))
        // Room for every line of a long --stdin input: the buffer drops its oldest events
        // when full, which suits a running app but not a caller handing over a file.
        .buffer_capacity(events.len().max(10_000))
        .join_session(session)
        .dir(target.settings().dir)
        .open();
    let expected = if telemetry.level() == Level::Off {
        0
    } else {
        events.len() as u64
    };
    for event in events {
        telemetry.record(event);
    }
    let flushed = telemetry.flush();
    let written = telemetry.events_written();
    drop(telemetry);
    if flushed && written >= expected {
        return Ok(());
    }
    let problem = format!(
        "{} of {expected} events were not written to {} (set {}_TELEMETRY_DEBUG=1 to see why)",
        expected.saturating_sub(written),
        target.store_file().display(),
        crate::config::env_prefix(&target.app),
    );
    if args.strict {
        return Err(CliError::Write(problem));
    }
    if target.settings().debug {
        eprintln!("tally: {}: note: {problem}", target.app);
    }
    Ok(())
}

/// The event the flags describe.
fn from_args(args: &RecordArgs) -> Result<EventBuilder, CliError> {
    let (target_type, target) = match &args.target {
        Some(text) => {
            let (kind, name) = text
                .split_once('=')
                .filter(|(kind, name)| !kind.is_empty() && !name.is_empty())
                .ok_or_else(|| usage("--target: must be KIND=NAME, such as task=fix-login"))?;
            (Some(kind.to_owned()), Some(name.to_owned()))
        }
        None => (None, None),
    };
    let mut props = std::collections::BTreeMap::new();
    for text in &args.props {
        let (key, value) = text
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| usage(&format!("--prop: must be KEY=VALUE (got {text:?})")))?;
        props.insert(key.to_owned(), prop_value(value));
    }
    let fields = EventFields {
        command: args.command.clone(),
        duration_ms: args.duration_ms,
        success: (args.success || args.failure).then_some(args.success),
        error_category: args.error_category.clone(),
        error_message: args.error_message.clone(),
        workspace: args.workspace.clone(),
        target_type,
        target,
        props,
    };
    let (kind, name) = (
        args.kind.clone().unwrap_or_default(),
        args.name.clone().unwrap_or_default(),
    );
    fields.into_builder(kind, name).map_err(|err| usage(&err.to_string()))
}

/// `true`/`false` and numbers as such, anything else as text.
fn prop_value(text: &str) -> PropValue {
    match text {
        "true" => PropValue::Bool(true),
        "false" => PropValue::Bool(false),
        _ => text
            .parse::<i64>()
            .map(PropValue::Int)
            .or_else(|_| {
                text.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(PropValue::Float)
                    .ok_or(())
            })
            .unwrap_or_else(|()| PropValue::Str(text.to_owned())),
    }
}

/// Events from NDJSON lines; blank lines are skipped.
fn read_lines(input: impl BufRead) -> Result<Vec<EventBuilder>, CliError> {
    let mut events = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = EventInput::from_json(&line)
            .and_then(EventInput::into_builder)
            .map_err(|err| usage(&format!("line {}: {err}", index + 1)))?;
        events.push(event);
    }
    Ok(events)
}

/// A rule's message with the event field named as its flag (`error_category: ...`
/// becomes `error-category: ...`, `type` stays `type`).
fn flag_of(message: &str) -> String {
    match message.split_once(':') {
        Some((field, rule)) if !field.contains(' ') => match field.strip_prefix("props.") {
            Some(key) => format!("prop {key}:{rule}"),
            None if field == "session_id" => format!("session:{rule}"),
            None => format!("{}:{rule}", field.replace('_', "-")),
        },
        _ => message.to_owned(),
    }
}

fn usage(message: &str) -> CliError {
    CliError::Usage(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prop_values_keep_their_type() {
        assert_eq!(prop_value("true"), PropValue::Bool(true));
        assert_eq!(prop_value("42"), PropValue::Int(42));
        assert_eq!(prop_value("1.5"), PropValue::Float(1.5));
        assert_eq!(prop_value("NaN"), PropValue::Str("NaN".into()));
        assert_eq!(prop_value("rust"), PropValue::Str("rust".into()));
    }

    #[test]
    fn rules_name_the_flag() {
        assert_eq!(flag_of("error_category: must be"), "error-category: must be");
        assert_eq!(flag_of("props.my_key: too long"), "prop my_key: too long");
    }
}
