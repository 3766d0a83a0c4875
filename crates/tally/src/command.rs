//! The command guard: one `command_executed` event per command, however it ends.

use std::borrow::Cow;
use std::time::Instant;

use tally_core::{Event, Level};

use crate::Telemetry;
use crate::environment;

/// Times a command and records `command_executed` when it finishes or is dropped.
///
/// Finish it with [`CommandGuard::success`] or [`CommandGuard::failure`]. A guard dropped
/// unfinished records a failure: category `panic` while unwinding, `abandoned` otherwise
/// (typically an early return through `?`), so no command goes uncounted.
#[must_use = "a command guard records when it is finished or dropped"]
pub struct CommandGuard {
    telemetry: Telemetry,
    command: Cow<'static, str>,
    started: Instant,
    workspace: Option<String>,
    target: Option<(Cow<'static, str>, String)>,
    finished: bool,
}

impl CommandGuard {
    pub(crate) fn new(telemetry: &Telemetry, command: Cow<'static, str>) -> CommandGuard {
        CommandGuard {
            telemetry: telemetry.clone(),
            command,
            started: Instant::now(),
            workspace: None,
            target: None,
            finished: false,
        }
    }

    /// The workspace the command works on, by the name the user gave it (hashed
    /// before it is stored).
    pub fn workspace(&mut self, name: impl Into<String>) {
        self.workspace = Some(name.into());
    }

    /// What the command works on (`"task"` and its user-given name), recorded on the
    /// `error_occurred` event if it fails, and scrubbed from its message.
    pub fn target(&mut self, target_type: impl Into<Cow<'static, str>>, name: impl Into<String>) {
        self.target = Some((target_type.into(), name.into()));
    }

    /// The command succeeded.
    pub fn success(mut self) {
        self.finish(None);
    }

    /// The command failed: `category` is a fixed word (`io`, `not_found`); `message` is
    /// kept, redacted, at level `full` only. Also records `error_occurred`.
    pub fn failure(mut self, category: impl Into<Cow<'static, str>>, message: impl std::fmt::Display) {
        self.finish(Some((category.into(), message.to_string())));
    }

    fn finish(&mut self, error: Option<(Cow<'static, str>, String)>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if !self.telemetry.is_enabled() {
            return;
        }
        let mut event = Event::builder("command", "command_executed")
            .command(self.command.clone())
            .duration(self.started.elapsed())
            .success(error.is_none());
        if let Some(workspace) = &self.workspace {
            event = event.workspace(workspace.clone());
        }
        if self.telemetry.level() == Level::Full
            && let Some(peak) = environment::peak_memory_kb()
        {
            event = event.prop("peak_memory_kb", i64::try_from(peak).unwrap_or(i64::MAX));
        }
        if let Some((category, message)) = error {
            event = event.error_category(category.clone());
            let mut occurred = Event::builder("error", "error_occurred")
                .command(self.command.clone())
                .error_category(category);
            if !message.is_empty() {
                occurred = occurred.error_message(message);
            }
            if let Some(workspace) = &self.workspace {
                occurred = occurred.workspace(workspace.clone());
            }
            if let Some((target_type, name)) = &self.target {
                occurred = occurred.target(target_type.clone(), name.clone());
            }
            self.telemetry.record(event);
            self.telemetry.record(occurred);
        } else {
            self.telemetry.record(event);
        }
    }
}

impl Drop for CommandGuard {
    fn drop(&mut self) {
        if !self.finished {
            let category = if std::thread::panicking() { "panic" } else { "abandoned" };
            self.finish(Some((Cow::Borrowed(category), String::new())));
        }
    }
}
