//! The counts-only upload: one install's events of one complete UTC day, aggregated.
//!
//! In `upload counts` mode the SDK sends these instead of events, to `POST /v1/counts`.
//! By construction they hold no event id, session id, time finer than the day, props,
//! workspace or target hash, or message: only what [`GroupCount`] lists. Like
//! [`crate::Event`], this is a wire contract shared by SDKs and collectors.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_ID_LEN, MAX_NAME_LEN};
use crate::validate::{ValidationError, check_app, check_command, check_identifier, check_token};

/// Most groups in one day's upload.
pub const MAX_GROUPS_PER_DAY: usize = 10_000;

/// Every event of one install on one day, counted per group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayCounts {
    /// The app.
    pub app: String,
    /// The install (a random id, the same one events carry); the collector accepts one
    /// upload per install and day.
    pub install_id: String,
    /// The UTC day the events fall in, `YYYY-MM-DD`.
    pub day: Date,
    /// One entry per group, in key order.
    pub counts: Vec<GroupCount>,
}

/// Events of one type, name, command, outcome and error category on the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCount {
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Event name.
    pub name: String,
    /// The command, when the events named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Whether they succeeded; absent when they did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// The error category, when they had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_category: Option<String>,
    /// Events.
    pub count: u64,
    /// Events among them that reported a duration.
    pub duration_count: u64,
    /// Sum of those durations, in milliseconds.
    pub duration_total_ms: u64,
    /// Those durations per histogram bucket (the buckets `tally-store` defines).
    pub histogram: Vec<u64>,
}

impl DayCounts {
    /// Checks every field against its rule; `buckets` is the histogram length the
    /// reader expects. The first broken rule is returned.
    pub fn validate(&self, buckets: usize) -> Result<(), ValidationError> {
        check_app(&self.app)?;
        check_token("install_id", &self.install_id, MAX_ID_LEN)?;
        if self.counts.is_empty() {
            return Err(ValidationError::new("counts", "must hold at least one group"));
        }
        if self.counts.len() > MAX_GROUPS_PER_DAY {
            return Err(ValidationError::new(
                "counts",
                format!(
                    "must hold at most {MAX_GROUPS_PER_DAY} groups (got {})",
                    self.counts.len()
                ),
            ));
        }
        for (index, group) in self.counts.iter().enumerate() {
            group
                .validate(buckets)
                .map_err(|err| ValidationError::new(format!("counts[{index}].{}", err.field), err.rule))?;
        }
        Ok(())
    }
}

impl GroupCount {
    fn validate(&self, buckets: usize) -> Result<(), ValidationError> {
        check_identifier("type", &self.kind, MAX_NAME_LEN)?;
        check_identifier("name", &self.name, MAX_NAME_LEN)?;
        if let Some(command) = &self.command {
            check_command(command)?;
        }
        if let Some(category) = &self.error_category {
            check_identifier("error_category", category, MAX_NAME_LEN)?;
        }
        if self.count == 0 {
            return Err(ValidationError::new("count", "must be at least 1"));
        }
        if self.duration_count > self.count {
            return Err(ValidationError::new("duration_count", "must not exceed count"));
        }
        if self.histogram.len() != buckets {
            return Err(ValidationError::new(
                "histogram",
                format!("must hold {buckets} bucket counts (got {})", self.histogram.len()),
            ));
        }
        let sum = self
            .histogram
            .iter()
            .try_fold(0u64, |sum, count| sum.checked_add(*count));
        if sum != Some(self.duration_count) {
            return Err(ValidationError::new(
                "histogram",
                "bucket counts must add up to duration_count",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> GroupCount {
        GroupCount {
            kind: "command".into(),
            name: "command_executed".into(),
            command: Some("task done".into()),
            success: Some(true),
            error_category: None,
            count: 3,
            duration_count: 2,
            duration_total_ms: 50,
            histogram: vec![0, 2, 0],
        }
    }

    #[test]
    fn the_wire_form_is_the_documented_one() {
        let counts = DayCounts {
            app: "nexus".into(),
            install_id: "i-1".into(),
            day: jiff::civil::date(2026, 11, 30),
            counts: vec![group()],
        };
        assert_eq!(
            serde_json::to_string(&counts).unwrap(),
            r#"{"app":"nexus","install_id":"i-1","day":"2026-11-30","counts":[{"type":"command","name":"command_executed","command":"task done","success":true,"count":3,"duration_count":2,"duration_total_ms":50,"histogram":[0,2,0]}]}"#
        );
        assert_eq!(counts.validate(3), Ok(()));
    }

    #[test]
    fn a_broken_rule_names_the_group_and_field() {
        let mut bad = group();
        bad.histogram = vec![0, 1, 0];
        let counts = DayCounts {
            app: "nexus".into(),
            install_id: "i-1".into(),
            day: jiff::civil::date(2026, 11, 30),
            counts: vec![group(), bad],
        };
        let err = counts.validate(3).unwrap_err();
        assert_eq!(err.field, "counts[1].histogram");
        let mut bad = group();
        bad.command = Some("rm -rf /home/alice".into());
        assert_eq!(bad.validate(3).unwrap_err().field, "command");
    }
}
