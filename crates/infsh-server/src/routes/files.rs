//! File uploads and downloads (docs/client-wire-notes.md §4):
//!
//! 1. `POST /files` (API key) with `{"files":[{filename, content_type, size}]}`
//!    registers each file and answers a list of `{id, uri, upload_url, ...}`;
//! 2. `PUT /files/{id}?token=…` (no API key: the client sends none) stores
//!    the raw body, streamed to disk a chunk at a time under the upload
//!    limit and the registered size (body_limits.rs); the token is the HMAC
//!    capability from tokens.rs, bound to the id and expiring after
//!    `upload_token_ttl`; forged, missing or expired → 403;
//! 3. `GET /files/{id}` streams the bytes, one `Range` honoured
//!    (byte_range.rs), to whoever file_access.rs lets in: on a server with
//!    keys, a private file needs its `uri`'s expiring `?sig=` or a key.
//!    `GET /files/{id}/{filename}` is the same file (the name is for humans
//!    and for apps guessing a type).
//!
//! Ids are validated strictly (exactly 32 lower-case hex characters) before
//! the engine sees them, so nothing path-like ever reaches the file store.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use super::byte_range::{self, RangeAsk};
use crate::body_limits::{declared_length, too_large};
use crate::dto::{iso8601, CreateFilesBody, Envelope, FileDto, FileEnvelope, FileListEnvelope};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::file_access::{check_download, DownloadQuery};
use crate::problem::Problem;
use crate::state::ServerState;
use crate::teams::{team_of_new_task, Caller};
use infsh_store::FileAccess;

/// Most files one `POST /files` may register.
pub const MAX_FILES_PER_REQUEST: usize = 100;

/// A file id is exactly 32 lower-case hex characters (the store's one gate
/// on ids used as paths).
pub fn valid_file_id(id: &str) -> bool {
    infsh_store::is_valid_id(id)
}

fn unknown_file(id: &str) -> Problem {
    Problem::not_found("file", format!("unknown file \"{id}\""))
}

/// A file name for uploads that came without one (data URIs, base64).
pub fn made_up_filename(content_type: &str) -> String {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ext = match essence.as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/svg+xml" => "svg",
        "image/bmp" => "bmp",
        "image/tiff" => "tiff",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/mpeg" => "mp3",
        "audio/ogg" => "ogg",
        "audio/flac" => "flac",
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "application/pdf" => "pdf",
        "application/json" => "json",
        "application/zip" => "zip",
        "text/plain" => "txt",
        "text/csv" => "csv",
        "text/html" => "html",
        "text/markdown" => "md",
        _ => "bin",
    };
    format!("upload.{ext}")
}

/// Keeps only the last path component and drops control characters, so a
/// client-chosen name can never point anywhere.
pub fn clean_filename(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        None
    } else {
        Some(cleaned.chars().take(255).collect())
    }
}

pub use super::file_uri::encode_segment;

fn base_url(state: &ServerState) -> String {
    state
        .engine
        .config()
        .public_url
        .trim_end_matches('/')
        .to_string()
}

/// Register files to upload; answers each with a signed `upload_url`.
#[utoipa::path(
    post, path = "/files", tag = "files",
    request_body(content = CreateFilesBody, content_type = "application/json"),
    responses(
        (status = 200, description = "One entry per requested file, in order", body = FileListEnvelope),
        crate::openapi::responses::CreateFileErrors,
    ),
    security(("bearer" = []))
)]
pub async fn create_files(
    State(state): State<ServerState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateFilesBody>,
) -> Result<Json<Envelope<Vec<FileDto>>>, Problem> {
    if body.files.is_empty() {
        return Err(Problem::bad_request("`files` must list at least one file"));
    }
    if body.files.len() > MAX_FILES_PER_REQUEST {
        return Err(Problem::bad_request(format!(
            "at most {MAX_FILES_PER_REQUEST} files per request"
        )));
    }
    let base = base_url(&state);
    let mut out = Vec::with_capacity(body.files.len());
    for spec in body.files {
        let content_type = spec
            .content_type
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .unwrap_or("application/octet-stream")
            .to_string();
        let filename = spec
            .filename
            .as_deref()
            .and_then(clean_filename)
            .unwrap_or_else(|| made_up_filename(&content_type));
        let record = state
            .engine
            .create_file(&filename, Some(&content_type), spec.size)
            .await?;
        let access = FileAccess {
            team: Some(team_of_new_task(&caller)),
            public: spec.public.unwrap_or(false),
        };
        state.engine.set_file_access(&record.id, &access).await?;
        let now = SystemTime::now();
        let (token, expires) = state.signer.sign(&record.id, now);
        // `/files/{id}/{filename}`: apps that download the URI keep the
        // name (and so the extension some libraries go by). Signed unless
        // public: the client passes it as an input, and the worker fetches
        // it without a key.
        let uri = format!(
            "{}/{}",
            state.engine.file_uri(&record.id),
            encode_segment(&record.filename)
        );
        let uri = if access.public {
            uri
        } else {
            state.file_urls.signed(&uri, now)
        };
        let mut dto = FileDto::from_record(&record, uri);
        dto.upload_url = Some(format!("{base}/files/{}?token={token}", record.id));
        dto.upload_expires_at = Some(iso8601((expires as i64).saturating_mul(1000)));
        out.push(dto);
    }
    Ok(Json(Envelope::new(out)))
}

/// `?token=` of the upload URL.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The signed token from `upload_url`.
    pub token: Option<String>,
}

/// Upload a registered file's raw bytes to its signed URL (no API key).
#[utoipa::path(
    put, path = "/files/{id}", tag = "files",
    params(("id" = String, Path, description = "File id (32 hex characters)"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The raw bytes, any content type"),
    responses(
        (status = 200, description = "The stored file", body = FileEnvelope),
        crate::openapi::responses::UploadErrors,
    )
)]
pub async fn upload_file(
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    req: Request,
) -> Result<Json<Envelope<FileDto>>, Problem> {
    if !valid_file_id(&id) {
        return Err(unknown_file(&id));
    }
    state
        .signer
        .verify(&id, q.token.as_deref(), SystemTime::now())
        .map_err(|e| Problem::forbidden(e.to_string()))?;
    // Read the body only after the token checked out.
    let limit = state.body_limits.upload;
    let (record, _) = state.engine.file(&id).await?;
    // The size announced at registration; once bytes arrived, `size` is
    // theirs, and a new upload may replace them with another length.
    let registered_size = record.size.filter(|_| !record.uploaded);
    let declared = declared_length(req.headers());
    if declared.is_some_and(|n| n > limit.bytes) {
        return Err(too_large("upload", limit));
    }
    if let (Some(n), Some(size)) = (declared, registered_size) {
        if n > size {
            return Err(over_registered(&id, size));
        }
    }
    let mut upload = state.engine.begin_upload(&id).await?;
    let mut body = req.into_body().into_data_stream();
    // One chunk at a time, straight to the temporary file: memory stays at
    // a chunk however large the upload. Any early return drops `upload`,
    // which removes the temporary file.
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| interrupted(&e))?;
        let after = upload.written() + chunk.len() as u64;
        if after > limit.bytes {
            return Err(too_large("upload", limit));
        }
        if let Some(size) = registered_size.filter(|size| after > *size) {
            return Err(over_registered(&id, size));
        }
        upload
            .write(&chunk)
            .await
            .map_err(|e| Problem::from(infsh_engine::EngineError::Store(e)))?;
    }
    if let Some(size) = registered_size.filter(|s| *s != upload.written()) {
        return Err(Problem::bad_request(format!(
            "the upload ended after {} bytes, but file \"{id}\" was registered with {size}",
            upload.written()
        )));
    }
    let record = upload
        .finish()
        .await
        .map_err(|e| Problem::from(infsh_engine::EngineError::Store(e)))?;
    let uri = state
        .file_urls
        .signed(&state.engine.file_uri(&record.id), SystemTime::now());
    Ok(Json(Envelope::new(FileDto::from_record(&record, uri))))
}

/// 413 for bytes past the size a file was registered with.
fn over_registered(id: &str, size: u64) -> Problem {
    Problem::payload_too_large(format!(
        "the upload is larger than the {size} bytes file \"{id}\" was registered with"
    ))
    .with("limit", size)
    .with("limited_by", "registered_size")
    .header(header::CONNECTION, HeaderValue::from_static("close"))
}

/// The body failed while read: stalled (408) or cut off (400).
fn interrupted(e: &axum::Error) -> Problem {
    match crate::problem::find_timeout(e) {
        Some(t) => Problem::body_timeout(t),
        None => Problem::bad_request(format!("the upload was interrupted: {e}")),
    }
}

/// Download a stored file: public files to anyone; private ones (on a
/// server with keys) with the `?sig=` of their `uri` or a key with
/// `files:read`. Asked with `Accept: application/json` and a valid key: the
/// file's record instead.
#[utoipa::path(
    get, path = "/files/{id}", tag = "files",
    params(("id" = String, Path, description = "File id (32 hex characters)"), DownloadQuery),
    responses(
        (status = 200, description = "The file's bytes with the content type it was stored with; with `Accept: application/json` and a key (`files:read`), the file's record", content(
            (Vec<u8> = "*/*"),
            (crate::dto::FileEnvelope = "application/json"),
        )),
        (status = 206, description = "One `Range` of the file's bytes, with `Content-Range`", content_type = "*/*", body = Vec<u8>),
        crate::openapi::responses::DownloadErrors,
    )
)]
pub async fn download_file(
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if super::file_records::wants_record(&headers) {
        return Ok(super::file_records::file_record(&state, &id, &headers)
            .await?
            .into_response());
    }
    check_download(&state, &id, q.sig.as_deref(), &headers).await?;
    serve_file(&state, &id, headers.get(header::RANGE)).await
}

/// The same file under a readable name (`/files/{id}/{filename}`).
#[utoipa::path(
    get, path = "/files/{id}/{filename}", tag = "files",
    params(
        ("id" = String, Path, description = "File id (32 hex characters)"),
        ("filename" = String, Path, description = "Any name; ignored"),
        DownloadQuery,
    ),
    responses(
        (status = 200, description = "The file's bytes with the content type it was stored with", content_type = "*/*", body = Vec<u8>),
        (status = 206, description = "One `Range` of the file's bytes, with `Content-Range`", content_type = "*/*", body = Vec<u8>),
        crate::openapi::responses::DownloadErrors,
    )
)]
pub async fn download_named_file(
    State(state): State<ServerState>,
    ApiPath((id, _filename)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    check_download(&state, &id, q.sig.as_deref(), &headers).await?;
    serve_file(&state, &id, headers.get(header::RANGE)).await
}

async fn serve_file(
    state: &ServerState,
    id: &str,
    range: Option<&HeaderValue>,
) -> Result<Response, Problem> {
    if !valid_file_id(id) {
        return Err(unknown_file(id));
    }
    let (record, stored) = state.engine.file(id).await?;
    if !record.uploaded {
        return Err(Problem::not_found(
            "file",
            format!("file \"{id}\" has no content yet: PUT it to its upload_url first"),
        ));
    }
    let unreadable = |e: infsh_store::StoreError| {
        tracing::error!(file = id, error = %e, "stored file unreadable");
        unknown_file(id)
    };
    let len = stored.size().await.map_err(unreadable)?;
    let (status, start, count) = match byte_range::parse(range.and_then(|h| h.to_str().ok()), len) {
        RangeAsk::Whole => (StatusCode::OK, 0, len),
        RangeAsk::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeAsk::Unsatisfiable => {
            return Err(Problem::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the requested range is outside file \"{id}\", which has {len} bytes"),
            )
            .with("size", len)
            .header(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}"))
                    .unwrap_or_else(|_| HeaderValue::from_static("bytes */0")),
            ));
        }
    };
    // Only the asked range is read (a ranged GET in a bucket).
    let chunks = stored.read(start, count).await.map_err(unreadable)?;
    let content_type = HeaderValue::from_str(&record.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let ascii_name: String = record
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = HeaderValue::from_str(&format!("inline; filename=\"{ascii_name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("inline"));
    let mut resp = (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
            // Uploaded content is served from the API's origin: never let a
            // browser run it.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        ],
        // Streamed from the folder or bucket a buffer at a time, never
        // read whole.
        Body::from_stream(chunks),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {start}-{}/{len}", start + count - 1);
        if let Ok(v) = HeaderValue::from_str(&range) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_are_strict() {
        assert!(valid_file_id("0123456789abcdef0123456789abcdef"));
        assert!(!valid_file_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!valid_file_id("0123456789abcdef0123456789abcde"));
        assert!(!valid_file_id("../../../../etc/passwd..........."));
        assert!(!valid_file_id("0123456789abcdef0123456789abcdeg"));
        assert!(!valid_file_id(""));
    }

    #[test]
    fn filenames_are_cleaned() {
        assert_eq!(clean_filename("pic.png").as_deref(), Some("pic.png"));
        assert_eq!(clean_filename("/tmp/x/pic.png").as_deref(), Some("pic.png"));
        assert_eq!(
            clean_filename("..\\..\\evil.txt").as_deref(),
            Some("evil.txt")
        );
        assert_eq!(clean_filename(".."), None);
        assert_eq!(clean_filename("dir/"), None);
        assert_eq!(clean_filename("a\nb").as_deref(), Some("ab"));
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode_segment("pic.png"), "pic.png");
        assert_eq!(encode_segment("a b/é?.png"), "a%20b%2F%C3%A9%3F.png");
    }

    #[test]
    fn made_up_names_follow_the_type() {
        assert_eq!(made_up_filename("image/png"), "upload.png");
        assert_eq!(made_up_filename("text/plain; charset=utf-8"), "upload.txt");
        assert_eq!(made_up_filename("application/octet-stream"), "upload.bin");
    }
}
