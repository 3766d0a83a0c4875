//! Building an event from the values an app has at hand.
//!
//! An app passes clear text to the builder: the workspace name the user typed, the raw
//! error message. Nothing clear-text survives [`EventBuilder::finish`]: identifiers are
//! hashed, messages are redacted, and the level decides what is kept at all. The SDK
//! calls `finish` on its background thread, so the host pays only for filling the
//! builder; `&'static str` names and categories are kept as borrowed `Cow`s so that the
//! common event allocates nothing for them.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use uuid::Uuid;

use crate::limits::MAX_ERROR_MESSAGE_LEN;
use crate::{Event, KeyedHasher, Level, PropValue, Props, Source, ValidationError, apply_level};

/// An event being assembled; see [`Event::builder`].
#[derive(Debug, Clone)]
#[must_use = "an event builder does nothing until it is recorded"]
pub struct EventBuilder {
    kind: Cow<'static, str>,
    name: Cow<'static, str>,
    command: Option<Cow<'static, str>>,
    workspace: Option<String>,
    target: Option<(Cow<'static, str>, String)>,
    duration_ms: Option<u64>,
    success: Option<bool>,
    error_category: Option<Cow<'static, str>>,
    error_message: Option<String>,
    props: Vec<(Cow<'static, str>, PropValue)>,
    id: Option<Uuid>,
    ts: Option<Timestamp>,
    /// The raw clock reading of [`EventBuilder::stamp`]: converting it to a timestamp
    /// and making the UUIDv7 from it wait until `finish`, off the host's thread.
    recorded_at: Option<SystemTime>,
}

/// What every event of one app run shares, and the rules to finish events under.
#[derive(Debug, Clone, Copy)]
pub struct EventContext<'a> {
    /// The app name.
    pub app: &'a str,
    /// The app version.
    pub app_version: &'a str,
    /// The kind of program.
    pub source: Source,
    /// The current session.
    pub session_id: &'a str,
    /// This install's random id.
    pub install_id: &'a str,
    /// This install's keyed hasher.
    pub hasher: &'a KeyedHasher,
    /// The level in force.
    pub level: Level,
}

impl EventBuilder {
    pub(crate) fn new(kind: impl Into<Cow<'static, str>>, name: impl Into<Cow<'static, str>>) -> Self {
        EventBuilder {
            kind: kind.into(),
            name: name.into(),
            command: None,
            workspace: None,
            target: None,
            duration_ms: None,
            success: None,
            error_category: None,
            error_message: None,
            props: Vec::new(),
            id: None,
            ts: None,
            recorded_at: None,
        }
    }

    /// The subcommand path the event belongs to (`workspace create`), never its arguments.
    pub fn command(mut self, command: impl Into<Cow<'static, str>>) -> Self {
        self.command = Some(command.into());
        self
    }

    /// The workspace, by the name the user gave it; stored only as a keyed hash.
    pub fn workspace(mut self, name: impl Into<String>) -> Self {
        self.workspace = Some(name.into());
        self
    }

    /// The thing the event concerns (`"task"`, and its user-given name); the name is
    /// stored only as a keyed hash.
    pub fn target(mut self, target_type: impl Into<Cow<'static, str>>, name: impl Into<String>) -> Self {
        self.target = Some((target_type.into(), name.into()));
        self
    }

    /// How long the action took, in milliseconds.
    pub fn duration_ms(mut self, duration_ms: u64) -> Self {
        self.duration_ms = Some(duration_ms);
        self
    }

    /// How long the action took.
    pub fn duration(self, duration: Duration) -> Self {
        self.duration_ms(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    /// Whether the action succeeded.
    pub fn success(mut self, success: bool) -> Self {
        self.success = Some(success);
        self
    }

    /// A fixed failure category (`io`, `not_found`).
    pub fn error_category(mut self, category: impl Into<Cow<'static, str>>) -> Self {
        self.error_category = Some(category.into());
        self
    }

    /// The raw error message; kept at level `full` only, and redacted first.
    pub fn error_message(mut self, message: impl Into<String>) -> Self {
        self.error_message = Some(message.into());
        self
    }

    /// A flat property; a later value for the same key wins.
    pub fn prop(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<PropValue>) -> Self {
        self.props.push((key.into(), value.into()));
        self
    }

    /// Sets the event id instead of making a new UUIDv7 (replays, deterministic demos).
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the time instead of using the time of recording.
    pub fn ts(mut self, ts: Timestamp) -> Self {
        self.ts = Some(crate::time::truncate_to_millis(ts));
        self
    }

    /// Fixes the time of the event now, if it is not set yet: one clock read, so that an
    /// event finished later keeps the moment it was recorded. The id is made from that
    /// time by [`EventBuilder::finish`].
    pub fn stamp(mut self) -> Self {
        if self.ts.is_none() && self.recorded_at.is_none() {
            self.recorded_at = Some(SystemTime::now());
        }
        self
    }

    /// The category.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hashes, redacts and strips by level, then validates. `Ok(None)` at level `off`.
    pub fn finish(self, ctx: &EventContext<'_>) -> Result<Option<Event>, ValidationError> {
        if ctx.level == Level::Off {
            return Ok(None);
        }
        let keeps_ids = ctx.level >= Level::Enhanced;
        let error_message = match self.error_message {
            Some(message) if ctx.level == Level::Full => Some(truncate(crate::redact(&scrub_names(
                message,
                &self.workspace,
                &self.target,
            )))),
            _ => None,
        };
        let (target_type, target_id) = match self.target {
            Some((kind, name)) if keeps_ids => (Some(kind.into_owned()), Some(ctx.hasher.hash(&name))),
            _ => (None, None),
        };
        let props: Props = if keeps_ids {
            self.props
                .into_iter()
                .map(|(key, value)| (key.into_owned(), value))
                .collect()
        } else {
            Props::new()
        };

        let ts = match (self.ts, self.recorded_at) {
            (Some(ts), _) => ts,
            (None, Some(at)) => {
                Timestamp::try_from(at).map_or_else(|_| crate::time::now_millis(), crate::time::truncate_to_millis)
            }
            (None, None) => crate::time::now_millis(),
        };
        let id = self.id.unwrap_or_else(|| new_id(ts));
        let event = Event {
            id,
            ts,
            app: ctx.app.to_owned(),
            app_version: ctx.app_version.to_owned(),
            source: ctx.source,
            kind: self.kind.into_owned(),
            name: self.name.into_owned(),
            command: self.command.map(Cow::into_owned),
            session_id: ctx.session_id.to_owned(),
            install_id: ctx.install_id.to_owned(),
            workspace: self.workspace.filter(|_| keeps_ids).map(|name| ctx.hasher.hash(&name)),
            target_type,
            target_id,
            duration_ms: self.duration_ms,
            success: self.success,
            error_category: self.error_category.map(Cow::into_owned),
            error_message,
            props,
        };
        let Some(event) = apply_level(event, ctx.level) else {
            return Ok(None);
        };
        event.validate()?;
        Ok(Some(event))
    }
}

/// A UUIDv7 whose time is `ts`, so that an event's id and time agree.
fn new_id(ts: Timestamp) -> Uuid {
    let nanos = ts.as_nanosecond();
    let seconds = u64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(0);
    let subsec = u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0);
    Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, seconds, subsec))
}

/// Replaces the names this event carries (workspace, target) wherever the message
/// repeats them: an error such as `workspace "acme" already exists` must not keep the
/// name the event itself stores only as a hash.
fn scrub_names(
    mut message: String,
    workspace: &Option<String>,
    target: &Option<(Cow<'static, str>, String)>,
) -> String {
    let names = [
        (workspace.as_deref(), "<workspace>"),
        (target.as_ref().map(|(_, name)| name.as_str()), "<target>"),
    ];
    for (name, placeholder) in names {
        if let Some(name) = name.filter(|name| !name.is_empty()) {
            message = message.replace(name, placeholder);
        }
    }
    message
}

/// Cuts a redacted message to the documented limit at a character boundary.
fn truncate(mut message: String) -> String {
    const ELLIPSIS: &str = "...";
    if message.len() > MAX_ERROR_MESSAGE_LEN {
        let mut cut = MAX_ERROR_MESSAGE_LEN - ELLIPSIS.len();
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(ELLIPSIS);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::SECRET_LEN;

    fn context(hasher: &KeyedHasher, level: Level) -> EventContext<'_> {
        EventContext {
            app: "nexus",
            app_version: "1.4.2",
            source: Source::Cli,
            session_id: "0193a0b1-0000-7000-8000-000000000001",
            install_id: "0193a0b1-0000-7000-8000-000000000002",
            hasher,
            level,
        }
    }

    fn everything() -> EventBuilder {
        Event::builder("command", "command_executed")
            .command("workspace create")
            .workspace("acme-secret-plans")
            .target("task", "fix-login-bug")
            .duration_ms(42)
            .success(false)
            .error_category("io")
            .error_message("cannot write /home/alice/acme-secret-plans/x")
            .prop("template", "rust")
            .prop("peak_memory_kb", 2048)
    }

    #[test]
    fn no_clear_name_survives_any_level() {
        let hasher = KeyedHasher::new(&[9; SECRET_LEN]);
        for level in Level::ALL {
            if let Some(event) = everything().finish(&context(&hasher, level)).unwrap() {
                let json = event.to_json();
                assert!(!json.contains("acme"), "{level}: {json}");
                assert!(!json.contains("fix-login"), "{level}: {json}");
                assert!(!json.contains("alice"), "{level}: {json}");
            }
        }
    }

    #[test]
    fn each_level_keeps_exactly_its_fields() {
        let hasher = KeyedHasher::new(&[9; SECRET_LEN]);
        assert_eq!(everything().finish(&context(&hasher, Level::Off)).unwrap(), None);

        let basic = everything().finish(&context(&hasher, Level::Basic)).unwrap().unwrap();
        assert_eq!(basic.command.as_deref(), Some("workspace create"));
        assert_eq!(basic.duration_ms, Some(42));
        assert_eq!(basic.success, Some(false));
        assert_eq!(basic.error_category.as_deref(), Some("io"));
        assert_eq!(basic.workspace, None);
        assert_eq!(basic.target_type, None);
        assert_eq!(basic.target_id, None);
        assert!(basic.props.is_empty());
        assert_eq!(basic.error_message, None);

        let enhanced = everything()
            .finish(&context(&hasher, Level::Enhanced))
            .unwrap()
            .unwrap();
        assert_eq!(enhanced.workspace, Some(hasher.hash("acme-secret-plans")));
        assert_eq!(enhanced.target_type.as_deref(), Some("task"));
        assert_eq!(enhanced.target_id, Some(hasher.hash("fix-login-bug")));
        assert_eq!(enhanced.props.get("template"), Some(&PropValue::Str("rust".into())));
        assert_eq!(enhanced.props.get("peak_memory_kb"), None);
        assert_eq!(enhanced.error_message, None);

        let full = everything().finish(&context(&hasher, Level::Full)).unwrap().unwrap();
        assert_eq!(full.props.get("peak_memory_kb"), Some(&PropValue::Int(2048)));
        assert_eq!(full.error_message.as_deref(), Some("cannot write <path>"));

        let named = everything()
            .error_message("workspace \"acme-secret-plans\" has no task fix-login-bug")
            .finish(&context(&hasher, Level::Full))
            .unwrap()
            .unwrap();
        assert_eq!(
            named.error_message.as_deref(),
            Some("workspace \"<workspace>\" has no task <target>")
        );
    }

    #[test]
    fn bad_names_are_refused_naming_the_field() {
        let hasher = KeyedHasher::new(&[9; SECRET_LEN]);
        let err = Event::builder("command", "Command Executed")
            .finish(&context(&hasher, Level::Basic))
            .unwrap_err();
        assert_eq!(err.field, "name");
        let err = Event::builder("command", "ok")
            .prop("Bad Key", 1)
            .finish(&context(&hasher, Level::Enhanced))
            .unwrap_err();
        assert_eq!(err.field, "props.Bad Key");
        let err = Event::builder("command", "ok")
            .command("workspace create --token=abc")
            .finish(&context(&hasher, Level::Basic))
            .unwrap_err();
        assert_eq!(err.field, "command");
    }

    #[test]
    fn a_stamped_event_gets_an_id_of_its_own_time() {
        let hasher = KeyedHasher::new(&[9; SECRET_LEN]);
        let before = crate::time::now_millis();
        let event = Event::builder("command", "x")
            .stamp()
            .finish(&context(&hasher, Level::Basic))
            .unwrap()
            .unwrap();
        let after = crate::time::now_millis();
        assert!(before <= event.ts && event.ts <= after);
        assert_eq!(event.id.get_version_num(), 7);
        let (seconds, nanos) = event.id.get_timestamp().unwrap().to_unix();
        assert_eq!(
            seconds as i64 * 1000 + i64::from(nanos / 1_000_000),
            event.ts.as_millisecond()
        );
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let message = "é".repeat(2000);
        let cut = truncate(message);
        assert!(cut.len() <= MAX_ERROR_MESSAGE_LEN);
        assert!(cut.ends_with("..."));
    }
}
