//! Events described as data, for hosts that are not Rust: the JSON of `tally record
//! --stdin` lines and of the C ABI's optional fields.
//!
//! [`EventFields`] carries what a Rust host would pass to [`EventBuilder`]'s methods,
//! clear names included; [`EventFields::into_builder`] makes the same builder, so that
//! hashing, redaction and the level are applied by [`EventBuilder::finish`] exactly as
//! for a Rust host. [`check`] runs that finish on a throwaway identity, so that a bad
//! event is refused when it is handed over, naming the field and the rule, instead of
//! being dropped later on the flush thread.

use std::collections::BTreeMap;

use serde::Deserialize;
use tally_core::{Event, EventBuilder, EventContext, KeyedHasher, Level, PropValue, Source, ValidationError};

/// The optional fields of an event, as JSON: `{"command": "deploy", "duration_ms": 1200,
/// "success": true, "workspace": "my-project", "props": {"template": "rust"}}`.
///
/// Unknown fields are refused, so that a misspelt field is an error and not data lost.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFields {
    /// The subcommand path (`workspace create`), never its arguments.
    #[serde(default)]
    pub command: Option<String>,
    /// How long the action took, in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Whether the action succeeded.
    #[serde(default)]
    pub success: Option<bool>,
    /// A fixed failure category (`io`, `not_found`).
    #[serde(default)]
    pub error_category: Option<String>,
    /// The raw error message: kept, redacted, at level `full` only.
    #[serde(default)]
    pub error_message: Option<String>,
    /// The workspace by the name the user gave it; stored only as a keyed hash.
    #[serde(default)]
    pub workspace: Option<String>,
    /// What `target` names (`task`, `file`); required with `target`.
    #[serde(default)]
    pub target_type: Option<String>,
    /// The thing the event concerns, by its user-given name; stored only as a keyed hash.
    #[serde(default)]
    pub target: Option<String>,
    /// Flat properties: string, number or bool values.
    #[serde(default)]
    pub props: BTreeMap<String, PropValue>,
}

/// One line of `tally record --stdin`: `type` and `name`, and any [`EventFields`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventInput {
    /// The category (`command`, `workspace`).
    pub kind: String,
    /// The event name (`command_executed`).
    pub name: String,
    /// The rest.
    pub fields: EventFields,
}

/// Why an event given as data cannot be recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The JSON is malformed or has a field of the wrong type or name.
    #[error("not a valid event: {0}")]
    Json(#[from] serde_json::Error),
    /// A field breaks a rule of the event.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// A field needs another one.
    #[error("{field}: {rule}")]
    Missing {
        /// The field.
        field: &'static str,
        /// What it needs.
        rule: &'static str,
    },
}

impl EventFields {
    /// Parses the JSON object of the optional fields; empty text means none.
    pub fn from_json(text: &str) -> Result<EventFields, InputError> {
        if text.trim().is_empty() {
            return Ok(EventFields::default());
        }
        Ok(serde_json::from_str(text)?)
    }

    /// The builder a Rust host would have made with these values.
    pub fn into_builder(self, kind: String, name: String) -> Result<EventBuilder, InputError> {
        let mut event = Event::builder(kind, name);
        if let Some(command) = self.command {
            event = event.command(command);
        }
        if let Some(duration_ms) = self.duration_ms {
            event = event.duration_ms(duration_ms);
        }
        if let Some(success) = self.success {
            event = event.success(success);
        }
        if let Some(category) = self.error_category {
            event = event.error_category(category);
        }
        if let Some(message) = self.error_message {
            event = event.error_message(message);
        }
        if let Some(workspace) = self.workspace {
            event = event.workspace(workspace);
        }
        match (self.target_type, self.target) {
            (Some(target_type), Some(target)) => event = event.target(target_type, target),
            (None, None) => {}
            (None, Some(_)) => {
                return Err(InputError::Missing {
                    field: "target_type",
                    rule: "required with target (what kind of thing the target names, such as task)",
                });
            }
            (Some(_), None) => {
                return Err(InputError::Missing {
                    field: "target",
                    rule: "required with target_type (the name of the thing)",
                });
            }
        }
        for (key, value) in self.props {
            event = event.prop(key, value);
        }
        Ok(event)
    }
}

impl EventInput {
    /// Parses one NDJSON line: an object with `type`, `name` and any [`EventFields`].
    pub fn from_json(text: &str) -> Result<EventInput, InputError> {
        let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)?;
        let mut required = |field: &'static str| match object.remove(field) {
            Some(serde_json::Value::String(value)) => Ok(value),
            Some(_) => Err(InputError::Missing {
                field,
                rule: "must be a string",
            }),
            None => Err(InputError::Missing {
                field,
                rule: "required",
            }),
        };
        let kind = required("type")?;
        let name = required("name")?;
        let fields = serde_json::from_value(serde_json::Value::Object(object))?;
        Ok(EventInput { kind, name, fields })
    }

    /// The builder a Rust host would have made.
    pub fn into_builder(self) -> Result<EventBuilder, InputError> {
        self.fields.into_builder(self.kind, self.name)
    }
}

/// Checks that `event` would be stored at every level, by finishing a copy under a
/// throwaway identity at level `full` (where the most fields are kept and checked).
pub fn check(event: &EventBuilder, app: &str, app_version: &str, session_id: &str) -> Result<(), ValidationError> {
    let hasher = KeyedHasher::new(&[0; tally_core::hashing::SECRET_LEN]);
    let context = EventContext {
        app,
        app_version,
        source: Source::Cli,
        session_id,
        install_id: "check",
        hasher: &hasher,
        level: Level::Full,
    };
    event.clone().finish(&context).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_becomes_the_builder_a_rust_host_would_make() {
        let line = r#"{"type":"task","name":"task_completed","command":"task done","target_type":"task",
            "target":"fix login","workspace":"acme","duration_ms":12,"success":true,"props":{"n":2}}"#;
        let event = EventInput::from_json(line).unwrap().into_builder().unwrap();
        assert_eq!((event.kind(), event.name()), ("task", "task_completed"));
        check(&event, "nexus", "1.0.0", "s1").unwrap();
    }

    #[test]
    fn bad_input_names_the_field() {
        let err = EventInput::from_json(r#"{"name":"x"}"#).unwrap_err().to_string();
        assert_eq!(err, "type: required");
        let err = EventInput::from_json(r#"{"type":"a","name":"b","argv":"secret"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `argv`"), "{err}");
        let err = EventFields::from_json(r#"{"props":{"a":{"b":1}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("props are flat"), "{err}");
        let err = EventFields::from_json(r#"{"target":"x"}"#)
            .unwrap()
            .into_builder("task".into(), "done".into())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("target_type: required with target"), "{err}");
        let event = EventFields::default()
            .into_builder("Bad Type".into(), "x".into())
            .unwrap();
        let err = check(&event, "nexus", "1.0.0", "s1").unwrap_err().to_string();
        assert!(err.starts_with("type: must be 1 to"), "{err}");
    }
}
