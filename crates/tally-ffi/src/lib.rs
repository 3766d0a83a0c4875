//! Tally's C ABI: record events into an app's local Tally store from C, Go, or any
//! language that can call C.
//!
//! Each function is a thin layer over the Rust SDK ([`tally::Telemetry`]): the same
//! settings, consent (`DO_NOT_TRACK`, `<APP>_TELEMETRY`), level, keyed hashing and store.
//! The header `include/tally.h` is generated from this file by cbindgen and committed;
//! a test fails when it is out of date (`TALLY_FFI_BLESS=1` rewrites it).
//!
//! The contract, for every function:
//! - it returns a [`TallyStatus`]; on anything but `TALLY_STATUS_OK`,
//!   [`tally_last_error`] on the same thread says what went wrong;
//! - NULL pointers, invalid UTF-8, malformed JSON and unknown handles are answered with
//!   an error code, never a crash; a panic inside Tally is caught and reported as
//!   `TALLY_STATUS_INTERNAL`, never unwound into the caller;
//! - handles are numbers (`tally_handle`), safe to use from many threads at once; a
//!   closed or unknown number is an error code, not undefined behaviour;
//! - telemetry turned off by the user is not an error: `tally_open` succeeds and the
//!   handle records nothing.
//!
//! Strings passed in must be NUL-terminated and readable for the duration of the call;
//! Tally keeps no pointer to them.

mod handles;
mod status;

use std::ffi::{CStr, c_char};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tally::input::{self, EventFields};
use tally::{Event, Source, Telemetry};

pub use crate::status::TallyStatus;
use crate::status::{Failure, guard};

/// The version of this ABI. It changes only when a function's meaning or signature
/// changes; functions are otherwise only added.
pub const TALLY_ABI_VERSION: u32 = 1;

/// The version of this ABI ([`TALLY_ABI_VERSION`] of the library actually loaded).
#[unsafe(no_mangle)]
pub extern "C" fn tally_abi_version() -> u32 {
    TALLY_ABI_VERSION
}

/// The message of the last failed call on this thread, or "" after a success. The
/// pointer stays valid until the next tally call on this thread; never NULL; do not
/// free it.
#[unsafe(no_mangle)]
pub extern "C" fn tally_last_error() -> *const c_char {
    status::last_error()
}

/// Reads a required string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string readable for the call.
unsafe fn text<'a>(ptr: *const c_char, argument: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            TallyStatus::NullArgument,
            format!("{argument}: must not be NULL"),
        ));
    }
    // SAFETY: not NULL (checked above), and the caller promises a NUL-terminated string
    // that stays readable for this call; the borrow does not outlive the call.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|err| {
        Failure::new(
            TallyStatus::InvalidUtf8,
            format!("{argument}: must be valid UTF-8 ({err})"),
        )
    })
}

/// Reads an optional string argument: NULL means none.
///
/// # Safety
/// As [`text`].
unsafe fn optional_text<'a>(ptr: *const c_char, argument: &str) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's promise about `ptr` is the one `text` needs.
    unsafe { text(ptr, argument) }.map(Some)
}

/// Writes an out-parameter.
///
/// # Safety
/// `out` is NULL or points to writable memory for a `T`.
unsafe fn write_out<T>(out: *mut T, value: T, argument: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::new(
            TallyStatus::NullArgument,
            format!("{argument}: must not be NULL"),
        ));
    }
    // SAFETY: not NULL (checked above), and the caller promises it is writable; `T` is a
    // plain integer or bool, so nothing is dropped.
    unsafe { out.write(value) };
    Ok(())
}

fn invalid_event(err: impl std::fmt::Display) -> Failure {
    Failure::new(TallyStatus::InvalidEvent, err.to_string())
}

/// What `tally_open`'s `options_json` may say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenOptions {
    /// The store directory, instead of the one the config file and environment name.
    #[serde(default)]
    dir: Option<PathBuf>,
    /// The kind of program: cli (default), web, mobile, backend, extension.
    #[serde(default)]
    source: Option<Source>,
    /// `false` turns telemetry off for this run (a host's `--no-telemetry`).
    #[serde(default)]
    enabled: Option<bool>,
    /// Whether to print the first-run notice (default true).
    #[serde(default)]
    first_run_notice: Option<bool>,
    /// The command that turns telemetry off, quoted in the first-run notice.
    #[serde(default)]
    off_command: Option<String>,
    /// Longest `tally_flush` and `tally_close` wait, in milliseconds (default 100).
    #[serde(default)]
    shutdown_timeout_ms: Option<u64>,
}

fn open(app: &str, version: &str, options: Option<&str>) -> Result<u64, Failure> {
    tally_core::validate::check_app(app).map_err(|err| Failure::new(TallyStatus::InvalidArgument, err.to_string()))?;
    let options: OpenOptions = match options.map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => serde_json::from_str(text)
            .map_err(|err| Failure::new(TallyStatus::InvalidArgument, format!("options_json: {err}")))?,
        None => OpenOptions::default(),
    };
    let mut builder = Telemetry::builder(app).version(version);
    if let Some(dir) = options.dir {
        builder = builder.dir(dir);
    }
    if let Some(source) = options.source {
        builder = builder.source(source);
    }
    if let Some(enabled) = options.enabled {
        builder = builder.enabled(enabled);
    }
    if let Some(show) = options.first_run_notice {
        builder = builder.first_run_notice(show);
    }
    if let Some(command) = options.off_command {
        builder = builder.off_command(command);
    }
    if let Some(ms) = options.shutdown_timeout_ms {
        builder = builder.shutdown_timeout(Duration::from_millis(ms));
    }
    Ok(handles::open(builder.open(), version.to_owned()))
}

/// Opens telemetry for `app` (lowercase letters, digits, `-`, `_`) at `version`, and
/// writes its handle to `*handle_out`.
///
/// `options_json` may be NULL or a JSON object with any of: `dir` (the store directory),
/// `source` (`cli`, `web`, `mobile`, `backend`, `extension`), `enabled` (false: record
/// nothing this run), `first_run_notice` (bool), `off_command` (text for the notice),
/// `shutdown_timeout_ms` (how long flush and close wait, default 100).
///
/// Telemetry turned off by the user is not an error: the handle records nothing.
/// Close the handle with [`tally_close`].
///
/// # Safety
/// `app`, `version` and `options_json` are NULL or NUL-terminated strings; `handle_out`
/// is NULL or points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tally_open(
    app: *const c_char,
    version: *const c_char,
    options_json: *const c_char,
    handle_out: *mut u64,
) -> TallyStatus {
    guard(|| {
        if handle_out.is_null() {
            return Err(Failure::new(TallyStatus::NullArgument, "handle_out: must not be NULL"));
        }
        // SAFETY: the caller's promises about these pointers are the ones these need.
        let (app, version, options) = unsafe {
            (
                text(app, "app")?,
                text(version, "version")?,
                optional_text(options_json, "options_json")?,
            )
        };
        let handle = open(app, version, options)?;
        // SAFETY: checked not NULL above; the caller promises it is writable.
        unsafe { write_out(handle_out, handle, "handle_out") }
    })
}

/// Ends the handle's session: unfinished commands are recorded as abandoned, and what
/// is buffered is written, waiting at most the shutdown timeout. The number is invalid
/// afterwards.
#[unsafe(no_mangle)]
pub extern "C" fn tally_close(handle: u64) -> TallyStatus {
    guard(|| handles::close(handle))
}

/// Writes whether `handle` records events (false when the user turned telemetry off)
/// to `*enabled_out`.
///
/// # Safety
/// `enabled_out` is NULL or points to a writable `bool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tally_enabled(handle: u64, enabled_out: *mut bool) -> TallyStatus {
    guard(|| {
        let enabled = handles::get(handle)?.telemetry.is_enabled();
        // SAFETY: the caller promises `enabled_out` is NULL (refused) or writable.
        unsafe { write_out(enabled_out, enabled, "enabled_out") }
    })
}

/// Records an event of category `type` named `name`. `fields_json` may be NULL or a
/// JSON object with any of: `command`, `duration_ms`, `success`, `error_category`,
/// `error_message`, `workspace` and `target` (clear names: stored only as keyed hashes),
/// `target_type`, and `props` (a flat object). Never blocks: the event is buffered and
/// written by a background thread. An event that breaks a rule is refused here with
/// `TALLY_STATUS_INVALID_EVENT`, naming the field and the rule.
///
/// # Safety
/// `type`, `name` and `fields_json` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tally_record(
    handle: u64,
    r#type: *const c_char,
    name: *const c_char,
    fields_json: *const c_char,
) -> TallyStatus {
    guard(|| {
        // SAFETY: the caller's promises about these pointers are the ones these need.
        let (kind, name, fields) = unsafe {
            (
                text(r#type, "type")?,
                text(name, "name")?,
                optional_text(fields_json, "fields_json")?,
            )
        };
        let handle = handles::get(handle)?;
        let fields = EventFields::from_json(fields.unwrap_or("")).map_err(invalid_event)?;
        let event = fields
            .into_builder(kind.to_owned(), name.to_owned())
            .map_err(invalid_event)?;
        check(&handle, &event)?;
        handle.telemetry.record(event);
        Ok(())
    })
}

/// Checks an event as the flush thread would, so that a bad one is refused to the caller.
fn check(handle: &handles::Handle, event: &tally::EventBuilder) -> Result<(), Failure> {
    let app = handle.telemetry.app().unwrap_or("check");
    let session = handle.telemetry.session_id().unwrap_or("check");
    input::check(event, app, &handle.app_version, session).map_err(invalid_event)
}

/// Starts timing `command` (a subcommand path such as `workspace create`, never its
/// arguments) and writes the command's number to `*command_out`. Finish it with
/// [`tally_command_success`] or [`tally_command_failure`]; one still running at
/// [`tally_close`] is recorded as abandoned.
///
/// # Safety
/// `command` is NULL or a NUL-terminated string; `command_out` is NULL or points to a
/// writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tally_command_start(
    handle: u64,
    command: *const c_char,
    command_out: *mut u64,
) -> TallyStatus {
    guard(|| {
        if command_out.is_null() {
            return Err(Failure::new(TallyStatus::NullArgument, "command_out: must not be NULL"));
        }
        // SAFETY: the caller promises `command` is NULL (refused) or a readable string.
        let command = unsafe { text(command, "command") }?;
        let handle = handles::get(handle)?;
        check(
            &handle,
            &Event::builder("command", "command_executed").command(command.to_owned()),
        )?;
        let id = handle.start_command(command.to_owned());
        // SAFETY: checked not NULL above; the caller promises it is writable.
        unsafe { write_out(command_out, id, "command_out") }
    })
}

/// Sets the workspace a running command works on, by the name the user gave it
/// (stored only as a keyed hash).
///
/// # Safety
/// `workspace` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tally_command_workspace(handle: u64, command: u64, workspace: *const c_char) -> TallyStatus {
    guard(|| {
        // SAFETY: the caller promises `workspace` is NULL (refused) or a readable string.
        let workspace = unsafe { text(workspace, "workspace") }?.to_owned();
        handles::get(handle)?.with_command(command, |guard| guard.workspace(workspace))
    })
}

/// Sets what a running command works on (`target_type` such as `task`, and its
/// user-given `name`, stored only as a keyed hash); recorded on the error event if the
/// command fails.
///
/// # Safety
/// `target_type` and `name` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tally_command_target(
    handle: u64,
    command: u64,
    target_type: *const c_char,
    name: *const c_char,
) -> TallyStatus {
    guard(|| {
        // SAFETY: the caller's promises about these pointers are the ones these need.
        let (target_type, name) = unsafe { (text(target_type, "target_type")?, text(name, "name")?) };
        let handle = handles::get(handle)?;
        check(
            &handle,
            &Event::builder("error", "error_occurred").target(target_type.to_owned(), "x"),
        )?;
        let (target_type, name) = (target_type.to_owned(), name.to_owned());
        handle.with_command(command, |guard| guard.target(target_type, name))
    })
}

/// Finishes a command as succeeded: records `command_executed` with its duration.
#[unsafe(no_mangle)]
pub extern "C" fn tally_command_success(handle: u64, command: u64) -> TallyStatus {
    guard(|| {
        handles::get(handle)?.finish_command(command)?.success();
        Ok(())
    })
}

/// Finishes a command as failed with `category` (a fixed word such as `io` or
/// `not_found`); `message` may be NULL, and is kept, redacted, at level `full` only.
/// Records `command_executed` and `error_occurred`. A bad category is refused and the
/// command keeps running.
///
/// # Safety
/// `category` and `message` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tally_command_failure(
    handle: u64,
    command: u64,
    category: *const c_char,
    message: *const c_char,
) -> TallyStatus {
    guard(|| {
        // SAFETY: the caller's promises about these pointers are the ones these need.
        let (category, message) = unsafe { (text(category, "category")?, optional_text(message, "message")?) };
        let handle = handles::get(handle)?;
        check(
            &handle,
            &Event::builder("error", "error_occurred").error_category(category.to_owned()),
        )?;
        let guard = handle.finish_command(command)?;
        guard.failure(category.to_owned(), message.unwrap_or(""));
        Ok(())
    })
}

/// Writes what is buffered, waiting at most the shutdown timeout;
/// `TALLY_STATUS_TIMEOUT` when that was not enough (the events stay buffered).
#[unsafe(no_mangle)]
pub extern "C" fn tally_flush(handle: u64) -> TallyStatus {
    guard(|| {
        if handles::get(handle)?.telemetry.flush() {
            Ok(())
        } else {
            Err(Failure::new(
                TallyStatus::Timeout,
                "flush did not finish within the shutdown timeout; the events stay buffered",
            ))
        }
    })
}
