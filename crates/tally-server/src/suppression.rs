//! Small-count suppression: aggregates name a group (an event name, or a command of
//! one) only once it has been seen from at least `min_installs` distinct installs, so
//! an owner cannot single out one user through a rare command, feature or error.
//!
//! A suppressed group is not dropped: its counts are added to `other`, so totals stay
//! exact. Distinct installs come from the bounded membership table each batch keeps
//! (`Store::group_installs`), never from raw events.

use std::collections::HashSet;

use crate::AppState;
use crate::storage::StorageError;

/// The label a suppressed group is counted under.
pub const OTHER: &str = "other";

/// Which groups may be named, for one read.
pub struct Suppression {
    /// `None` when suppression is off: every group is named.
    named: Option<HashSet<(String, String, String, String)>>,
}

impl Suppression {
    /// Reads the groups of `app` (of every app when `None`) that reach the threshold.
    pub async fn load(state: &AppState, app: Option<&str>) -> Result<Suppression, StorageError> {
        let min = state.config.min_installs;
        if min == 0 {
            return Ok(Suppression { named: None });
        }
        let groups = state.store.group_installs(app).await?;
        let named = groups
            .into_iter()
            .filter(|group| group.installs >= min)
            .map(|group| (group.app, group.kind, group.name, group.command))
            .collect();
        Ok(Suppression { named: Some(named) })
    }

    /// Whether the event name `kind`/`name` of `app` may be shown by name.
    pub fn names_event(&self, app: &str, kind: &str, name: &str) -> bool {
        self.names(app, kind, name, "")
    }

    /// Whether `command`, run as events `kind`/`name` of `app`, may be shown by name.
    pub fn names_command(&self, app: &str, kind: &str, name: &str, command: &str) -> bool {
        self.names(app, kind, name, command)
    }

    fn names(&self, app: &str, kind: &str, name: &str, command: &str) -> bool {
        match &self.named {
            None => true,
            Some(named) => named.contains(&(app.to_owned(), kind.to_owned(), name.to_owned(), command.to_owned())),
        }
    }
}
