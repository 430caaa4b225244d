//! Decoding rows of the `tasks` and `files` tables (`migrations/`) into
//! [`TaskRecord`] and [`FileRecord`]: JSON columns are TEXT, statuses and
//! log types small integers, booleans 0/1.

use infsh_core::Payload;
use rusqlite::Row;
use serde_json::Value;

use crate::{FileRecord, StoreError, TaskRecord, TaskStatus};

/// The columns [`RawTask::from_row`] reads, in its order.
pub(crate) const TASK_COLUMNS: &str =
    "seq, id, app, function_name, input, setup, status, output, error, \
     webhook, session_id, metadata, timeout_secs, created_at_ms, updated_at_ms, team, run_at_ms";

/// A `tasks` row as stored, before its JSON and enums are decoded.
pub(crate) struct RawTask {
    pub seq: i64,
    pub(crate) id: String,
    pub(crate) app: String,
    pub(crate) function: String,
    pub(crate) input: String,
    pub(crate) setup: String,
    pub(crate) status: i64,
    pub(crate) output: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) webhook: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) metadata: String,
    pub(crate) timeout_secs: Option<f64>,
    pub(crate) created_at_ms: i64,
    pub(crate) updated_at_ms: i64,
    pub(crate) team: Option<String>,
    pub(crate) run_at_ms: Option<i64>,
}

impl RawTask {
    pub fn from_row(row: &Row<'_>) -> rusqlite::Result<RawTask> {
        Ok(RawTask {
            seq: row.get(0)?,
            id: row.get(1)?,
            app: row.get(2)?,
            function: row.get(3)?,
            input: row.get(4)?,
            setup: row.get(5)?,
            status: row.get(6)?,
            output: row.get(7)?,
            error: row.get(8)?,
            webhook: row.get(9)?,
            session_id: row.get(10)?,
            metadata: row.get(11)?,
            timeout_secs: row.get(12)?,
            created_at_ms: row.get(13)?,
            updated_at_ms: row.get(14)?,
            team: row.get(15)?,
            run_at_ms: row.get(16)?,
        })
    }

    pub fn decode(self) -> Result<(i64, TaskRecord), StoreError> {
        let id = self.id;
        let corrupt = |message: String| StoreError::Corrupt {
            id: id.clone(),
            message,
        };
        let json = |field: &'static str, s: &str| {
            serde_json::from_str::<Value>(s).map_err(|source| StoreError::CorruptJson {
                id: id.clone(),
                field,
                source,
            })
        };
        let status = u8::try_from(self.status)
            .map_err(|_| corrupt(format!("status {}", self.status)))
            .and_then(|n| TaskStatus::try_from(n).map_err(|e| corrupt(e.to_string())))?;
        let record = TaskRecord {
            app: self.app,
            function: self.function,
            input: json("input", &self.input)?,
            setup: json("setup", &self.setup)?,
            status,
            output: self
                .output
                .map(|s| {
                    // Checked, not parsed: it goes back out as it came in.
                    Payload::from_json_text(s).map_err(|source| StoreError::CorruptJson {
                        id: id.clone(),
                        field: "output",
                        source,
                    })
                })
                .transpose()?,
            error: self.error,
            webhook: self.webhook,
            session_id: self.session_id,
            metadata: json("metadata", &self.metadata)?,
            timeout_secs: self.timeout_secs,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            team: self.team,
            run_at_ms: self.run_at_ms,
            id: id.clone(),
        };
        Ok((self.seq, record))
    }
}

pub(crate) fn file_from_row(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let size: Option<i64> = row.get(3)?;
    let uploaded: i64 = row.get(4)?;
    Ok(FileRecord {
        id: row.get(0)?,
        filename: row.get(1)?,
        content_type: row.get(2)?,
        size: size.map(|s| s.max(0) as u64),
        uploaded: uploaded != 0,
        created_at_ms: row.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(input: &str) -> RawTask {
        RawTask {
            seq: 1,
            id: "t1".into(),
            app: "ns/app".into(),
            function: "run".into(),
            input: input.into(),
            setup: "{}".into(),
            status: 2,
            output: None,
            error: None,
            webhook: None,
            session_id: None,
            metadata: "{}".into(),
            timeout_secs: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            team: None,
            run_at_ms: None,
        }
    }

    #[test]
    fn a_column_that_is_not_json_is_corrupt_and_keeps_the_parse_error() {
        let e = raw("{not json").decode().unwrap_err();
        let StoreError::CorruptJson { id, field, source } = &e else {
            panic!("expected CorruptJson, got {e:?}");
        };
        assert_eq!((id.as_str(), *field), ("t1", "input"));
        assert!(source.is_syntax());
        assert_eq!(e.to_string(), format!("corrupt record t1: input: {source}"));
    }

    #[test]
    fn a_valid_row_decodes() {
        let (seq, record) = raw("{\"x\": 1}").decode().unwrap();
        assert_eq!(seq, 1);
        assert_eq!(record.input["x"], 1);
    }
}
