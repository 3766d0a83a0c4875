//! Checks an event against the documented limits.
//!
//! Every error names the field and the rule it broke, so that a developer reading the
//! collector's 422 or the SDK's debug output knows exactly what to fix.

use std::fmt;

use crate::Event;
use crate::hashing;
use crate::limits::*;

/// An event broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ValidationError {
    /// The field, as named on the wire (`name`, `props.template`).
    pub field: String,
    /// The rule it broke, in words.
    pub rule: String,
}

impl ValidationError {
    pub(crate) fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

/// Checks an app name: 1 to [`MAX_APP_LEN`] characters of `a-z 0-9 _ -`, starting with a
/// letter. The SDK, the collector's keys and every event use this one rule.
pub fn check_app(app: &str) -> Result<(), ValidationError> {
    let ok = !app.is_empty()
        && app.len() <= MAX_APP_LEN
        && app.as_bytes()[0].is_ascii_lowercase()
        && app
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "app",
            format!(
                "must be 1 to {MAX_APP_LEN} characters of a-z, 0-9, _ and -, starting with a letter (got {})",
                shown(app)
            ),
        ))
    }
}

/// `[a-z][a-z0-9_]*`, the shape of `type`, `name`, categories and props keys.
pub(crate) fn check_identifier(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= max
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "must be 1 to {max} characters of a-z, 0-9 and _, starting with a letter (got {})",
                shown(value)
            ),
        ))
    }
}

/// A short, printable, whitespace-free token such as an id or a version.
pub(crate) fn check_token(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "must be 1 to {max} characters of A-Z, a-z, 0-9 and . _ - + : (got {})",
                shown(value)
            ),
        ))
    }
}

/// A subcommand path: `[a-z][a-z0-9 _.:-]*`, never its arguments.
pub(crate) fn check_command(command: &str) -> Result<(), ValidationError> {
    let ok = !command.is_empty()
        && command.len() <= MAX_COMMAND_LEN
        && command.as_bytes()[0].is_ascii_lowercase()
        && command
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b" _-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "command",
            format!(
                "must be 1 to {MAX_COMMAND_LEN} characters of a-z, 0-9, space and _ - . :, starting with a letter: a subcommand path, never its arguments (got {})",
                shown(command)
            ),
        ))
    }
}

fn check_hashed(field: &str, value: &str) -> Result<(), ValidationError> {
    if hashing::is_hashed(value) {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            "must be a keyed hash: h1: followed by 24 lowercase hex digits (names are never sent in clear)",
        ))
    }
}

/// Free text may hold any character but NUL, which PostgreSQL's text and jsonb cannot
/// store: a collector on PostgreSQL would fail the whole batch, and every retry of it.
fn check_no_nul(field: &str, text: &str) -> Result<(), ValidationError> {
    if text.contains('\0') {
        Err(ValidationError::new(
            field,
            "must not contain the NUL character (U+0000)",
        ))
    } else {
        Ok(())
    }
}

/// Shows a bad value in an error message without echoing a long or private input whole.
fn shown(value: &str) -> String {
    const SHOWN_CHARS: usize = 40;
    if value.chars().count() <= SHOWN_CHARS {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(SHOWN_CHARS).collect();
        format!("{head:?}... ({} bytes)", value.len())
    }
}

impl Event {
    /// Checks every field against its documented rule; the first broken rule is returned.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.id.get_version_num() != 7 {
            return Err(ValidationError::new("id", "must be a UUIDv7"));
        }
        check_app(&self.app)?;
        check_token("app_version", &self.app_version, MAX_APP_VERSION_LEN)?;
        check_identifier("type", &self.kind, MAX_NAME_LEN)?;
        check_identifier("name", &self.name, MAX_NAME_LEN)?;
        if let Some(command) = &self.command {
            check_command(command)?;
        }
        check_token("session_id", &self.session_id, MAX_ID_LEN)?;
        check_token("install_id", &self.install_id, MAX_ID_LEN)?;
        if let Some(workspace) = &self.workspace {
            check_hashed("workspace", workspace)?;
        }
        match (&self.target_type, &self.target_id) {
            (Some(target_type), Some(target_id)) => {
                check_identifier("target_type", target_type, MAX_NAME_LEN)?;
                check_hashed("target_id", target_id)?;
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(ValidationError::new("target_id", "is required when target_type is set"));
            }
            (None, Some(_)) => {
                return Err(ValidationError::new("target_type", "is required when target_id is set"));
            }
        }
        if let Some(duration) = self.duration_ms
            && duration > MAX_DURATION_MS
        {
            return Err(ValidationError::new(
                "duration_ms",
                format!("must be at most {MAX_DURATION_MS} (30 days), got {duration}"),
            ));
        }
        if let Some(category) = &self.error_category {
            check_identifier("error_category", category, MAX_NAME_LEN)?;
        }
        if let Some(message) = &self.error_message {
            if message.len() > MAX_ERROR_MESSAGE_LEN {
                return Err(ValidationError::new(
                    "error_message",
                    format!("must be at most {MAX_ERROR_MESSAGE_LEN} bytes, got {}", message.len()),
                ));
            }
            check_no_nul("error_message", message)?;
        }
        self.validate_props()?;
        let size = self.json_len();
        if size > MAX_EVENT_BYTES {
            return Err(ValidationError::new(
                "event",
                format!("must serialize to at most {MAX_EVENT_BYTES} bytes of JSON, got {size}"),
            ));
        }
        Ok(())
    }

    fn validate_props(&self) -> Result<(), ValidationError> {
        if self.props.len() > MAX_PROPS {
            return Err(ValidationError::new(
                "props",
                format!("must have at most {MAX_PROPS} keys, got {}", self.props.len()),
            ));
        }
        for (key, value) in &self.props {
            let field = format!("props.{key}");
            check_identifier(&field, key, MAX_NAME_LEN)?;
            match value {
                crate::PropValue::Str(text) if text.len() > MAX_PROP_STRING_LEN => {
                    return Err(ValidationError::new(
                        field,
                        format!(
                            "string values must be at most {MAX_PROP_STRING_LEN} bytes, got {}",
                            text.len()
                        ),
                    ));
                }
                crate::PropValue::Str(text) => check_no_nul(&field, text)?,
                crate::PropValue::Float(number) if !number.is_finite() => {
                    return Err(ValidationError::new(field, "numbers must be finite"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
