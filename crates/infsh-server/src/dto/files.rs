//! Files: the body of `POST /files` and the registered file it answers
//! (also `GET /files/{id}` metadata).

use infsh_engine::StoredFile;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::time::iso8601;

/// Body of `POST /files`. The client always sends exactly one file.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateFilesBody {
    pub files: Vec<FileSpec>,
}

/// One file to register. `uri` and `path` are sent by the client (`""`,
/// `null`) and ignored.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct FileSpec {
    /// `null` for data URIs and base64 strings; the server makes a name up.
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    /// Byte length the client will upload.
    #[serde(default)]
    pub size: Option<u64>,
    /// `true`: anyone with the URL may read the bytes, without a key or a
    /// signature. Default (`null`, `false`): private (docs/security.md).
    #[serde(default)]
    pub public: Option<bool>,
}

/// A registered file. `upload_url` is present only in `POST /files` answers.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FileDto {
    /// 32 lower-case hex characters; knowing it is what grants `GET /files/{id}`.
    pub id: String,
    /// Where the bytes can be fetched without a key: for a private file on a
    /// server with keys, it carries an expiring signature (`?sig=`); pass it
    /// as a File input.
    pub uri: String,
    /// Signed URL to `PUT` the raw bytes to (no auth; expires).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    /// ISO-8601 UTC expiry of `upload_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_expires_at: Option<String>,
    pub filename: String,
    pub content_type: String,
    /// Byte size once uploaded (the declared size before).
    pub size: Option<u64>,
    pub uploaded: bool,
    /// ISO-8601 UTC.
    pub created_at: String,
}

impl FileDto {
    pub fn from_record(f: &StoredFile, uri: String) -> FileDto {
        FileDto {
            id: f.id.clone(),
            uri,
            upload_url: None,
            upload_expires_at: None,
            filename: f.filename.clone(),
            content_type: f.content_type.clone(),
            size: f.size,
            uploaded: f.uploaded,
            created_at: iso8601(f.created_at_ms),
        }
    }
}
