//! Open handles, by number.
//!
//! A C caller holds a number, not a pointer: a handle closed twice, never opened, or
//! used after close is found missing in the registry and answered with an error code,
//! instead of being memory the library would have to trust.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tally::{CommandGuard, Telemetry};

use crate::status::{Failure, TallyStatus};

/// One open handle: a telemetry session and its running command timers.
pub(crate) struct Handle {
    pub(crate) telemetry: Telemetry,
    pub(crate) app_version: String,
    commands: Mutex<HashMap<u64, CommandGuard>>,
}

static HANDLES: Mutex<Option<HashMap<u64, Arc<Handle>>>> = Mutex::new(None);
/// Handle and command numbers; never reused, and never 0 (which callers may use as
/// "no handle").
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Locks a mutex even after a panic elsewhere poisoned it: every change under these
/// locks is a single map insert or remove, which a panic cannot leave half done.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers `telemetry` and returns its number.
pub(crate) fn open(telemetry: Telemetry, app_version: String) -> u64 {
    let id = next_id();
    let handle = Arc::new(Handle {
        telemetry,
        app_version,
        commands: Mutex::new(HashMap::new()),
    });
    lock(&HANDLES).get_or_insert_with(HashMap::new).insert(id, handle);
    id
}

fn unknown(id: u64) -> Failure {
    Failure::new(
        TallyStatus::UnknownHandle,
        format!("handle {id} is not open (never opened, or already closed)"),
    )
}

/// The open handle numbered `id`.
pub(crate) fn get(id: u64) -> Result<Arc<Handle>, Failure> {
    lock(&HANDLES)
        .as_ref()
        .and_then(|handles| handles.get(&id).cloned())
        .ok_or_else(|| unknown(id))
}

/// Removes the handle; it ends (unfinished commands are recorded as abandoned, the
/// session ends, buffered events are written within the shutdown timeout) when the last
/// call using it returns.
pub(crate) fn close(id: u64) -> Result<(), Failure> {
    let handle = {
        let mut registry = lock(&HANDLES);
        let handle = registry.as_mut().and_then(|handles| handles.remove(&id));
        if registry.as_ref().is_some_and(HashMap::is_empty) {
            // The last handle closed: free the map, so that a host checking for leaks at
            // exit (valgrind) finds nothing of Tally's left.
            *registry = None;
        }
        handle.ok_or_else(|| unknown(id))?
    };
    // Dropped here, outside the registry's lock, so that other handles are not held up
    // by this one's final write.
    let commands = std::mem::take(&mut *lock(&handle.commands));
    drop(commands);
    drop(handle);
    Ok(())
}

impl Handle {
    /// Starts timing a command; returns its number.
    pub(crate) fn start_command(&self, command: String) -> u64 {
        let id = next_id();
        let guard = self.telemetry.command(command);
        lock(&self.commands).insert(id, guard);
        id
    }

    /// Changes a running command.
    pub(crate) fn with_command(&self, id: u64, change: impl FnOnce(&mut CommandGuard)) -> Result<(), Failure> {
        let mut commands = lock(&self.commands);
        let guard = commands.get_mut(&id).ok_or_else(|| unknown_command(id))?;
        change(guard);
        Ok(())
    }

    /// Takes a command out to finish it.
    pub(crate) fn finish_command(&self, id: u64) -> Result<CommandGuard, Failure> {
        lock(&self.commands).remove(&id).ok_or_else(|| unknown_command(id))
    }
}

fn unknown_command(id: u64) -> Failure {
    Failure::new(
        TallyStatus::UnknownHandle,
        format!("command {id} is not running (never started, or already finished)"),
    )
}
