//! [`TaskStatus`]: the one table of task statuses, shared by the store (which
//! keeps them as numbers), the server (`GET /tasks?status=`) and the CLI
//! (`task list --status`, reading snapshots).
//!
//! On the wire a status is the JSON integer of the inference.sh API (0-13,
//! terminal 10-13; docs/http-api.md). Where a person or a client names one
//! in text, [`TaskStatus::from_str`] accepts the number, the lower-case name
//! ([`TaskStatus::as_str`]) in any case with `-`, `_` or a space between
//! words, and the spellings clients send besides (`canceled`, `canceling`,
//! `setup`, `settingup`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Task status numbers of the inference.sh API. Terminal: 10-13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(into = "u8", try_from = "u8")]
#[repr(u8)]
pub enum TaskStatus {
    Unknown = 0,
    Received = 1,
    Queued = 2,
    Dispatched = 3,
    Preparing = 4,
    Serving = 5,
    SettingUp = 6,
    Running = 7,
    Cancelling = 8,
    Uploading = 9,
    Completed = 10,
    Failed = 11,
    Cancelled = 12,
    Rejected = 13,
}

/// Other spellings of a status name that clients send (after the
/// normalisation [`TaskStatus::from_str`] applies: lower case, `_` between
/// words).
const ALIASES: [(&str, TaskStatus); 4] = [
    ("canceled", TaskStatus::Cancelled),
    ("canceling", TaskStatus::Cancelling),
    ("setup", TaskStatus::SettingUp),
    ("settingup", TaskStatus::SettingUp),
];

impl TaskStatus {
    /// Every status, in number order (`ALL[n]` has number `n`).
    pub const ALL: [TaskStatus; 14] = [
        TaskStatus::Unknown,
        TaskStatus::Received,
        TaskStatus::Queued,
        TaskStatus::Dispatched,
        TaskStatus::Preparing,
        TaskStatus::Serving,
        TaskStatus::SettingUp,
        TaskStatus::Running,
        TaskStatus::Cancelling,
        TaskStatus::Uploading,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Rejected,
    ];

    /// The status's number on the wire.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The status of a wire number, if it is one (0-13).
    pub fn from_number(n: u64) -> Option<TaskStatus> {
        usize::try_from(n)
            .ok()
            .and_then(|i| Self::ALL.get(i))
            .copied()
    }

    /// The lower-case name (`setting_up`, `completed`...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Unknown => "unknown",
            TaskStatus::Received => "received",
            TaskStatus::Queued => "queued",
            TaskStatus::Dispatched => "dispatched",
            TaskStatus::Preparing => "preparing",
            TaskStatus::Serving => "serving",
            TaskStatus::SettingUp => "setting_up",
            TaskStatus::Running => "running",
            TaskStatus::Cancelling => "cancelling",
            TaskStatus::Uploading => "uploading",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Rejected => "rejected",
        }
    }

    /// COMPLETED, FAILED, CANCELLED or REJECTED: the task will not change again.
    pub fn is_terminal(self) -> bool {
        self >= TaskStatus::Completed
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<TaskStatus> for u8 {
    fn from(s: TaskStatus) -> u8 {
        s.number()
    }
}

/// A number that is no task status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown task status {0}: task statuses are 0-13")]
pub struct UnknownStatusNumber(pub u8);

impl TryFrom<u8> for TaskStatus {
    type Error = UnknownStatusNumber;
    fn try_from(n: u8) -> Result<Self, UnknownStatusNumber> {
        TaskStatus::from_number(n.into()).ok_or(UnknownStatusNumber(n))
    }
}

/// Text that names no task status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown task status {given:?}: use a number 0-13 or a name ({})",
    names()
)]
pub struct ParseStatusError {
    /// The text as given.
    pub given: String,
}

/// The accepted names, for [`ParseStatusError`]'s message.
fn names() -> String {
    let mut all: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
    all.extend(ALIASES.iter().map(|(alias, _)| *alias));
    all.join(", ")
}

impl FromStr for TaskStatus {
    type Err = ParseStatusError;

    /// A number (`"10"`), a name in any case (`completed`, `SETTING_UP`,
    /// `setting-up`, `setting up`) or an alias (`canceled`, `setup`...).
    fn from_str(s: &str) -> Result<TaskStatus, ParseStatusError> {
        let name = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        let found = match name.parse::<u64>() {
            Ok(n) => TaskStatus::from_number(n),
            Err(_) => TaskStatus::ALL
                .iter()
                .copied()
                .find(|st| st.as_str() == name)
                .or_else(|| {
                    ALIASES
                        .iter()
                        .find(|(alias, _)| *alias == name)
                        .map(|(_, st)| *st)
                }),
        };
        found.ok_or_else(|| ParseStatusError {
            given: s.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_all_is_in_number_order() {
        for (i, st) in TaskStatus::ALL.iter().enumerate() {
            assert_eq!(st.number() as usize, i);
            assert_eq!(TaskStatus::try_from(i as u8), Ok(*st));
            assert_eq!(TaskStatus::from_number(i as u64), Some(*st));
            assert_eq!(st.as_str().parse::<TaskStatus>(), Ok(*st));
            assert_eq!(i.to_string().parse::<TaskStatus>(), Ok(*st));
        }
        assert_eq!(TaskStatus::from_number(14), None);
        assert_eq!(TaskStatus::from_number(u64::MAX), None);
        assert_eq!(
            TaskStatus::try_from(14).unwrap_err().to_string(),
            "unknown task status 14: task statuses are 0-13"
        );
    }

    #[test]
    fn serde_is_the_json_integer() {
        assert_eq!(
            serde_json::to_value(TaskStatus::Completed).unwrap(),
            serde_json::json!(10)
        );
        let st: TaskStatus = serde_json::from_value(serde_json::json!(6)).unwrap();
        assert_eq!(st, TaskStatus::SettingUp);
        assert!(serde_json::from_value::<TaskStatus>(serde_json::json!(14)).is_err());
        assert!(serde_json::from_value::<TaskStatus>(serde_json::json!("completed")).is_err());
    }

    #[test]
    fn terminal_statuses() {
        let terminal: Vec<TaskStatus> = TaskStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        use TaskStatus::*;
        assert_eq!(terminal, vec![Completed, Failed, Cancelled, Rejected]);
    }

    #[test]
    fn names_spellings_and_aliases_parse() {
        use TaskStatus::*;
        for (text, want) in [
            ("10", Completed),
            (" 0 ", Unknown),
            ("completed", Completed),
            ("COMPLETED", Completed),
            ("SETTING_UP", SettingUp),
            ("setting-up", SettingUp),
            ("Setting Up", SettingUp),
            ("setup", SettingUp),
            ("settingup", SettingUp),
            ("canceled", Cancelled),
            ("CANCELED", Cancelled),
            ("cancelled", Cancelled),
            ("canceling", Cancelling),
            ("cancelling", Cancelling),
        ] {
            assert_eq!(text.parse::<TaskStatus>(), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn unknown_text_lists_what_is_accepted() {
        for bad in ["14", "99", "-1", "done", "", "10.5", "run ning"] {
            let err = bad.parse::<TaskStatus>().unwrap_err();
            assert_eq!(err.given, bad);
        }
        assert_eq!(
            "done".parse::<TaskStatus>().unwrap_err().to_string(),
            "unknown task status \"done\": use a number 0-13 or a name (unknown, received, \
             queued, dispatched, preparing, serving, setting_up, running, cancelling, \
             uploading, completed, failed, cancelled, rejected, canceled, canceling, setup, \
             settingup)"
        );
    }
}
