//! What every function returns, the last error's text, and the wrapper that turns a
//! Rust result (or a panic) into them.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The result of a call. Every function returns one; on anything but `Ok`,
/// `tally_last_error` says what went wrong.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TallyStatus {
    /// It worked.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 2,
    /// The event or its JSON fields break a rule (malformed JSON, an unknown field, a
    /// name that is not an identifier); the message names the field and the rule.
    InvalidEvent = 3,
    /// An argument other than the event is unusable (an app name, the open options).
    InvalidArgument = 4,
    /// The handle or command id is not open (never opened, or already closed/finished).
    UnknownHandle = 5,
    /// `tally_flush` did not finish within the shutdown timeout; the events stay
    /// buffered and are written later or at close.
    Timeout = 6,
    /// Tally failed internally; the call did nothing and the handle is still usable.
    Internal = 7,
}

/// Why a call failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: TallyStatus,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: TallyStatus, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

thread_local! {
    /// The message of the last failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // An interior NUL cannot be shown by a C string; it is replaced rather than lost.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = text);
}

/// A pointer to this thread's last error message ("" after a success). It stays valid
/// until the next call on this thread.
pub(crate) fn last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// Runs `body`, turning its error or panic into a status and this thread's last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> TallyStatus {
    // A panic leaves no shared state half-changed that a later call would trust: the
    // handle registry recovers from poisoning, and a handle's state is an SDK handle
    // whose own methods never panic into the caller.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            TallyStatus::Ok
        }
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last_error(&format!("internal error in tally: {detail}"));
            TallyStatus::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn last() -> String {
        // SAFETY: `last_error` returns this thread's live, NUL-terminated message.
        unsafe { CStr::from_ptr(last_error()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, TallyStatus::Internal);
        assert_eq!(last(), "internal error in tally: boom");
        assert_eq!(guard(|| Ok(())), TallyStatus::Ok);
        assert_eq!(last(), "");
        let status = guard(|| Err(Failure::new(TallyStatus::InvalidEvent, "name: bad\0rule")));
        assert_eq!(status, TallyStatus::InvalidEvent);
        assert_eq!(last(), "name: bad\\0rule");
    }
}
