//! Telemetry levels and the one function that enforces them.
//!
//! The SDK applies [`apply_level`] before an event is stored, and sync applies it again
//! at upload time with the level then in force, so lowering the level also narrows what
//! was recorded earlier. `docs/PRIVACY.md` has the same rules as a table; a test keeps
//! the two in step.

use std::fmt;
use std::str::FromStr;

use crate::Event;

/// How much an app records. Ordered: each level keeps everything the one below keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    /// Nothing is recorded.
    Off,
    /// Counts and timings: what ran, how long, whether it worked, the error category.
    #[default]
    Basic,
    /// Adds hashed workspace and target ids, props and the environment (OS, arch, CPUs, CI).
    Enhanced,
    /// Adds redacted error messages and peak memory per command.
    Full,
}

/// Props that describe the machine's resources in detail and are kept at `full` only.
pub const FULL_ONLY_PROPS: &[&str] = &["peak_memory_kb"];

/// Every event field and the lowest level that keeps it. Fields not listed in
/// [`FULL_ONLY_PROPS`] under `props` follow the `props` row.
pub const FIELD_LEVELS: &[(&str, Level)] = &[
    ("id", Level::Basic),
    ("ts", Level::Basic),
    ("app", Level::Basic),
    ("app_version", Level::Basic),
    ("source", Level::Basic),
    ("type", Level::Basic),
    ("name", Level::Basic),
    ("command", Level::Basic),
    ("session_id", Level::Basic),
    ("install_id", Level::Basic),
    ("duration_ms", Level::Basic),
    ("success", Level::Basic),
    ("error_category", Level::Basic),
    ("workspace", Level::Enhanced),
    ("target_type", Level::Enhanced),
    ("target_id", Level::Enhanced),
    ("props", Level::Enhanced),
    ("props.peak_memory_kb", Level::Full),
    ("error_message", Level::Full),
];

impl Level {
    /// All levels, lowest first.
    pub const ALL: [Level; 4] = [Level::Off, Level::Basic, Level::Enhanced, Level::Full];

    /// The name used in config files, environment variables and commands.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Basic => "basic",
            Level::Enhanced => "enhanced",
            Level::Full => "full",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Level::Off),
            "basic" => Ok(Level::Basic),
            "enhanced" => Ok(Level::Enhanced),
            "full" => Ok(Level::Full),
            _ => Err(format!(
                "level: must be one of off, basic, enhanced, full (got {text:?})"
            )),
        }
    }
}

/// Strips from `event` every field `level` does not keep; `None` at [`Level::Off`].
pub fn apply_level(mut event: Event, level: Level) -> Option<Event> {
    if level == Level::Off {
        return None;
    }
    if level < Level::Enhanced {
        event.workspace = None;
        event.target_type = None;
        event.target_id = None;
        event.props.clear();
    }
    if level < Level::Full {
        event.error_message = None;
        for key in FULL_ONLY_PROPS {
            event.props.remove(*key);
        }
    }
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_refuses_others() {
        for level in Level::ALL {
            assert_eq!(level.as_str().parse::<Level>(), Ok(level));
        }
        assert_eq!(" FULL ".parse::<Level>(), Ok(Level::Full));
        let err = "verbose".parse::<Level>().unwrap_err();
        assert!(err.contains("off, basic, enhanced, full"), "{err}");
    }
}
