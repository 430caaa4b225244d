//! Deletion and file listings (issue 15): a task's files
//! (`GET /tasks/{id}/files`, the client's `TaskFileDTO`), what a deletion
//! did (`DeleteTaskFilesResponse`), and a page of stored files.

use infsh_engine::{DeletedFiles, StoredFile, TaskFileRole};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::files::FileDto;
use super::time::iso8601;

/// One file a task consumed (`input`) or produced (`output`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskFileDto {
    pub id: String,
    /// ISO-8601 UTC.
    pub created_at: String,
    /// `input` or `output`.
    pub role: String,
    pub uri: String,
    pub filename: String,
    pub content_type: String,
    pub size: Option<u64>,
}

impl TaskFileDto {
    pub fn new(role: TaskFileRole, f: &StoredFile, uri: String) -> TaskFileDto {
        TaskFileDto {
            id: f.id.clone(),
            created_at: iso8601(f.created_at_ms),
            role: role.as_str().to_string(),
            uri,
            filename: f.filename.clone(),
            content_type: f.content_type.clone(),
            size: f.size,
        }
    }
}

/// A file a deletion left in place.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkippedFileDto {
    pub id: String,
    pub reason: String,
}

/// What `DELETE /tasks/{id}/files` (or `DELETE /tasks/{id}?files=true`) did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeletedFilesDto {
    /// Ids of the files deleted.
    pub deleted: Vec<String>,
    pub skipped: Vec<SkippedFileDto>,
}

impl From<DeletedFiles> for DeletedFilesDto {
    fn from(d: DeletedFiles) -> Self {
        DeletedFilesDto {
            deleted: d.deleted,
            skipped: d
                .skipped
                .into_iter()
                .map(|(id, reason)| SkippedFileDto { id, reason })
                .collect(),
        }
    }
}

/// A deleted task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeletedTaskDto {
    pub id: String,
    pub deleted: bool,
    /// The task's files deleted with it (`?files=true`; empty lists otherwise).
    pub files: DeletedFilesDto,
}

/// A page of `GET /files`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FilePageDto {
    pub items: Vec<FileDto>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

macro_rules! envelope_doc {
    ($name:ident, $inner:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Serialize, ToSchema)]
        #[allow(dead_code)]
        pub struct $name {
            pub data: $inner,
            /// Always empty.
            pub messages: Vec<Value>,
        }
    };
}

envelope_doc!(
    TaskFileListEnvelope,
    Vec<TaskFileDto>,
    "`{\"data\": [TaskFile], \"messages\": []}`"
);
envelope_doc!(
    DeletedFilesEnvelope,
    DeletedFilesDto,
    "`{\"data\": DeletedFiles, \"messages\": []}`"
);
envelope_doc!(
    DeletedTaskEnvelope,
    DeletedTaskDto,
    "`{\"data\": DeletedTask, \"messages\": []}`"
);
envelope_doc!(
    FilePageEnvelope,
    FilePageDto,
    "`{\"data\": FilePage, \"messages\": []}`"
);
