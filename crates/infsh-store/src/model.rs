//! The records the store keeps. Shared by the engine (which writes them) and
//! the HTTP layer (which renders them as the platform's task DTO). A task's
//! status is infsh-core's [`TaskStatus`] (the one table of statuses).

use infsh_core::Payload;
use infsh_core::TaskStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Log types of the inference.sh API: 0 BUILD, 1 RUN, 2 SERVE, 3 SETUP, 4 TASK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
#[repr(u8)]
pub enum LogType {
    Build = 0,
    Run = 1,
    Serve = 2,
    Setup = 3,
    Task = 4,
}

impl From<LogType> for u8 {
    fn from(t: LogType) -> u8 {
        t as u8
    }
}

impl TryFrom<u8> for LogType {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        Ok(match n {
            0 => LogType::Build,
            1 => LogType::Run,
            2 => LogType::Serve,
            3 => LogType::Setup,
            4 => LogType::Task,
            other => return Err(format!("unknown log type {other}")),
        })
    }
}

/// One line (or a batch of lines) of a task's logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub log_type: LogType,
    pub content: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A task as stored. Timestamps are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    /// `namespace/name`.
    pub app: String,
    pub function: String,
    pub input: Value,
    /// The setup config the run asked for (`{}` by default).
    pub setup: Value,
    pub status: TaskStatus,
    /// Kept as the worker wrote it where possible ([`Payload::Raw`]).
    pub output: Option<Payload>,
    pub error: Option<String>,
    pub webhook: Option<String>,
    pub session_id: Option<String>,
    pub metadata: Value,
    /// Per-run timeout in seconds, if the run asked for one.
    pub timeout_secs: Option<f64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The team of the key that made it (admin keys: `default`); None for
    /// a task stored before teams, which counts as `default`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// When the run may start (the run body's `run_at`, Unix ms): it stays
    /// QUEUED until then. None: at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at_ms: Option<i64>,
}

/// A stored file (an upload, or an output moved out of a worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: String,
    pub filename: String,
    pub content_type: String,
    /// None until the bytes are uploaded.
    pub size: Option<u64>,
    pub uploaded: bool,
    pub created_at_ms: i64,
}

/// The team of keys made without one, and of tasks run by admin keys or
/// stored before teams (a record's `team: None`).
pub const DEFAULT_TEAM: &str = "default";

/// Who may see a stored file (issue 15): its team (None: made by an admin
/// key, or before teams; the default team) and whether it is public (its
/// bytes readable without a key or a signature).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAccess {
    pub team: Option<String>,
    pub public: bool,
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; None on the last page.
    pub next_cursor: Option<String>,
}
