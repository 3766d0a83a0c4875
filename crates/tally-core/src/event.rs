//! The event and its wire form.
//!
//! One JSON shape travels from the app to the collector (see `docs/API.md`). Unknown
//! fields are refused rather than ignored, so that a client cannot smuggle data past
//! the level rules by inventing a field.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Flat key/value properties of an event: string, number or bool values only.
pub type Props = BTreeMap<String, PropValue>;

/// One recorded event. Build it with [`Event::builder`]; the fields are public so that
/// stores and tests can read them, and [`Event::validate`] checks any event however made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// UUIDv7 made by the client: the dedupe key end to end.
    pub id: Uuid,
    /// When the event happened, UTC, millisecond precision.
    #[serde(with = "crate::time::rfc3339_millis")]
    pub ts: Timestamp,
    /// The app that recorded the event (`nexus`).
    pub app: String,
    /// The app's version (`1.4.2`).
    pub app_version: String,
    /// What kind of program recorded it.
    pub source: Source,
    /// The category: `command`, `workspace`, `task`, `session`, `error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The specific event: `command_executed`, `workspace_created`, ...
    pub name: String,
    /// The subcommand path the event belongs to (`workspace create`), never its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Groups the events of one run or one sitting.
    pub session_id: String,
    /// Random per install, made on first run, never derived from the machine or person.
    pub install_id: String,
    /// Keyed hash (`h1:...`) of the workspace the event concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// What `target_id` identifies (`task`, `file`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// Keyed hash (`h1:...`) of the thing the event concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// How long the action took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Whether the action succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// A fixed category for a failure (`io`, `not_found`, ...), never free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_category: Option<String>,
    /// The redacted error message, kept at level `full` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Flat properties.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub props: Props,
}

impl Event {
    /// Starts an event of category `kind` named `name`.
    pub fn builder(
        kind: impl Into<std::borrow::Cow<'static, str>>,
        name: impl Into<std::borrow::Cow<'static, str>>,
    ) -> crate::EventBuilder {
        crate::EventBuilder::new(kind, name)
    }

    /// The compact JSON form, as stored and sent.
    pub fn to_json(&self) -> String {
        // Serializing this struct cannot fail: every field is a string, number, bool or
        // a map with string keys.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The length of [`Event::to_json`], counted without keeping the text.
    pub fn json_len(&self) -> usize {
        json_len(self)
    }
}

/// The length of `value` as compact JSON, counted as it is written instead of kept:
/// size limits are checked on every event received, and the text itself is not needed.
/// A value that cannot be serialized counts as `usize::MAX`.
pub fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// The kind of program that recorded an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A command-line tool.
    Cli,
    /// A web app.
    Web,
    /// A mobile app.
    Mobile,
    /// A server-side program.
    Backend,
    /// An editor or browser extension.
    Extension,
}

impl Source {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cli => "cli",
            Source::Web => "web",
            Source::Mobile => "mobile",
            Source::Backend => "backend",
            Source::Extension => "extension",
        }
    }
}

impl std::str::FromStr for Source {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "cli" => Ok(Source::Cli),
            "web" => Ok(Source::Web),
            "mobile" => Ok(Source::Mobile),
            "backend" => Ok(Source::Backend),
            "extension" => Ok(Source::Extension),
            other => Err(format!(
                "source: must be one of cli, web, mobile, backend, extension (got {other:?})"
            )),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A property value: flat by design, so that props cannot carry documents.
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue {
    /// A bool.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A finite floating-point number.
    Float(f64),
    /// A short string (see [`crate::limits::MAX_PROP_STRING_LEN`]).
    Str(String),
}

impl From<bool> for PropValue {
    fn from(value: bool) -> Self {
        PropValue::Bool(value)
    }
}

impl From<i64> for PropValue {
    fn from(value: i64) -> Self {
        PropValue::Int(value)
    }
}

impl From<i32> for PropValue {
    fn from(value: i32) -> Self {
        PropValue::Int(value.into())
    }
}

impl From<u32> for PropValue {
    fn from(value: u32) -> Self {
        PropValue::Int(value.into())
    }
}

impl From<usize> for PropValue {
    fn from(value: usize) -> Self {
        PropValue::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<f64> for PropValue {
    fn from(value: f64) -> Self {
        PropValue::Float(value)
    }
}

impl From<&str> for PropValue {
    fn from(value: &str) -> Self {
        PropValue::Str(value.to_owned())
    }
}

impl From<String> for PropValue {
    fn from(value: String) -> Self {
        PropValue::Str(value)
    }
}

impl Serialize for PropValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PropValue::Bool(value) => serializer.serialize_bool(*value),
            PropValue::Int(value) => serializer.serialize_i64(*value),
            PropValue::Float(value) => serializer.serialize_f64(*value),
            PropValue::Str(value) => serializer.serialize_str(value),
        }
    }
}

impl<'de> Deserialize<'de> for PropValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PropValueVisitor)
    }
}

struct PropValueVisitor;

impl<'de> Visitor<'de> for PropValueVisitor {
    type Value = PropValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("props values must be a string, a number or a bool (props are flat)")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<PropValue, E> {
        Ok(PropValue::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<PropValue, E> {
        Ok(PropValue::Int(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<PropValue, E> {
        Ok(i64::try_from(value).map_or(PropValue::Float(value as f64), PropValue::Int))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<PropValue, E> {
        Ok(PropValue::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<PropValue, E> {
        Ok(PropValue::Str(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<PropValue, E> {
        Ok(PropValue::Str(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_props_are_refused_with_a_clear_message() {
        let err = serde_json::from_str::<PropValue>(r#"{"a": 1}"#).unwrap_err();
        assert!(err.to_string().contains("props are flat"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"id":"01936b2e-0000-7000-8000-000000000000","ts":"2026-11-22T01:02:03.456Z",
            "app":"nexus","app_version":"1.0.0","source":"cli","type":"command","name":"x",
            "session_id":"s","install_id":"i","argv":"--token secret"}"#;
        let err = serde_json::from_str::<Event>(json).unwrap_err();
        assert!(err.to_string().contains("unknown field `argv`"), "{err}");
    }
}
