//! Deleting ended tasks and stored files (issue 15; the client's
//! `tasks.delete`, `tasks.files`, `tasks.delete_files`, and `DELETE
//! /files/{id}`).
//!
//! A task's files are the stored files its input and output name: any
//! string in them holding `/files/<id>` of a file this server stores (the
//! URIs it hands out, `{public_url}/files/{id}[/{name}]`, in a plain string
//! or a `{"uri": …}` object). Derived from the task itself, so tasks stored
//! before this existed have their files too.

use infsh_store::{is_valid_id, FileAccess, FileRecord, Page, TaskRecord, ID_LEN};
use serde_json::Value;

use crate::api::{EngineError, TaskFileRole};
use crate::engine::Engine;

/// What `DELETE /tasks/{id}/files` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeletedFiles {
    pub deleted: Vec<String>,
    /// `(id, reason)` of files left in place.
    pub skipped: Vec<(String, String)>,
}

/// The file id at the start of `rest` (what follows `/files/` in a file
/// URI): a valid id, then the end, `/name`, `?query` or `#fragment`.
pub(crate) fn leading_file_id(rest: &str) -> Option<&str> {
    let id = rest.get(..ID_LEN)?;
    let ends = rest[ID_LEN..]
        .chars()
        .next()
        .is_none_or(|c| matches!(c, '/' | '?' | '#'));
    (ends && is_valid_id(id)).then_some(id)
}

/// Ids after `/files/` in every string of `v`, in order, without repeats.
pub(crate) fn file_ids_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(at) = rest.find("/files/") {
                rest = &rest[at + "/files/".len()..];
                if let Some(id) = leading_file_id(rest) {
                    if !out.iter().any(|o| o == id) {
                        out.push(id.to_string());
                    }
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| file_ids_in(i, out)),
        Value::Object(map) => map.values().for_each(|i| file_ids_in(i, out)),
        _ => {}
    }
}

/// `(role, id)` of the files a task's input and output name.
pub fn task_file_ids(task: &TaskRecord) -> Vec<(TaskFileRole, String)> {
    let mut input = Vec::new();
    file_ids_in(&task.input, &mut input);
    let mut output = Vec::new();
    if let Some(o) = &task.output {
        file_ids_in(&o.to_value(), &mut output);
    }
    input
        .into_iter()
        .map(|id| (TaskFileRole::Input, id))
        .chain(output.into_iter().map(|id| (TaskFileRole::Output, id)))
        .collect()
}

impl Engine {
    /// The stored task, refused while it has not ended.
    async fn ended_task(&self, id: &str) -> Result<TaskRecord, EngineError> {
        let view = self.get(id).await?;
        if !view.record.status.is_terminal() {
            return Err(EngineError::TaskNotEnded {
                id: id.to_string(),
                status: view.record.status,
            });
        }
        Ok(view.record)
    }

    /// The stored files a task's input and output name (`role`: one side).
    pub async fn task_files(
        &self,
        id: &str,
        role: Option<TaskFileRole>,
    ) -> Result<Vec<(TaskFileRole, FileRecord)>, EngineError> {
        let task = self.get(id).await?.record;
        let mut out = Vec::new();
        for (r, file_id) in task_file_ids(&task) {
            if role.is_some_and(|want| want != r) {
                continue;
            }
            if let Some((record, _)) = self.shared().files.get(&file_id).await? {
                out.push((r, record));
            }
        }
        Ok(out)
    }

    /// Deletes an ended task's files (`role`: one side), even when another
    /// task also names them. A file named on both sides is deleted once.
    pub async fn delete_task_files(
        &self,
        id: &str,
        role: Option<TaskFileRole>,
    ) -> Result<DeletedFiles, EngineError> {
        let task = self.ended_task(id).await?;
        let mut done = DeletedFiles::default();
        for (r, file_id) in task_file_ids(&task) {
            if role.is_some_and(|want| want != r)
                || done.deleted.contains(&file_id)
                || done.skipped.iter().any(|(s, _)| *s == file_id)
            {
                continue;
            }
            match self.shared().files.remove(&file_id).await {
                Ok(true) => done.deleted.push(file_id),
                Ok(false) => done
                    .skipped
                    .push((file_id, "not stored on this server".into())),
                Err(e) => done.skipped.push((file_id, e.to_string())),
            }
        }
        Ok(done)
    }

    /// Deletes an ended task (with its logs); with `files`, its files first.
    pub async fn delete_task(&self, id: &str, files: bool) -> Result<DeletedFiles, EngineError> {
        self.ended_task(id).await?;
        let done = if files {
            self.delete_task_files(id, None).await?
        } else {
            DeletedFiles::default()
        };
        self.shared().live.remove(id);
        if !self.shared().store.delete_task(id).await? {
            return Err(EngineError::UnknownTask(id.to_string()));
        }
        tracing::info!(task = id, files = done.deleted.len(), "task deleted");
        Ok(done)
    }

    /// Deletes a stored file: its bytes, then its record.
    pub async fn delete_file(&self, id: &str) -> Result<(), EngineError> {
        if self.shared().files.remove(id).await? {
            Ok(())
        } else {
            Err(EngineError::UnknownFile(id.to_string()))
        }
    }

    /// Stored files, newest first, a page at a time; `team`: only that
    /// team's.
    pub async fn list_files(
        &self,
        limit: usize,
        cursor: Option<&str>,
        team: Option<&str>,
    ) -> Result<Page<FileRecord>, EngineError> {
        Ok(self.shared().store.list_files(limit, cursor, team).await?)
    }

    /// File `id`'s team and public flag (issue 15); `UnknownFile` for none.
    pub async fn file_access(&self, id: &str) -> Result<FileAccess, EngineError> {
        self.shared()
            .store
            .file_access(id)
            .await?
            .ok_or_else(|| EngineError::UnknownFile(id.to_string()))
    }

    /// Whether file `id` was registered `public: true` (false for an
    /// unknown file: the caller then checks its right to read, and only
    /// then tells it the file does not exist).
    pub async fn file_is_public(&self, id: &str) -> Result<bool, EngineError> {
        if !is_valid_id(id) {
            return Ok(false);
        }
        Ok(self
            .shared()
            .store
            .file_access(id)
            .await?
            .is_some_and(|a| a.public))
    }

    /// Sets file `id`'s team and public flag (at registration).
    pub async fn set_file_access(&self, id: &str, access: &FileAccess) -> Result<(), EngineError> {
        Ok(self.shared().store.set_file_access(id, access).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn finds_file_ids_in_uris_anywhere() {
        let v = json!({
            "image": format!("http://h:1/files/{A}/pic.png"),
            "more": [{"uri": format!("http://h:1/v1/files/{B}")}, format!("/files/{A}?x=1")],
            "text": "no /files/here, nor /files/0123456789abcdef0123456789abcdef0 (too long)",
            "n": 3,
        });
        let mut out = Vec::new();
        file_ids_in(&v, &mut out);
        out.sort();
        assert_eq!(out, vec![A.to_string(), B.to_string()]);
    }
}
