//! Stored files as records (issue 15): `GET /files` (paged like
//! `GET /tasks`), `GET /files/{id}` asked for JSON (the file's record, as
//! the platform answers it; the bytes stay at its `uri`), and
//! `DELETE /files/{id}`.
//!
//! `/files/{id}` is also the download URL (file_access.rs), so the record
//! is served only to a request that asks for it with
//! `Accept: application/json` and carries a valid key; anything else is a
//! download. (Not a JSON `Content-Type`: clients send one
//! on bodiless GETs too, downloads included.) `DELETE` sits on the same public
//! route and checks the key itself (an admin key, or a run-time key with
//! `files:read` / `files:write`: scoped_keys.rs).

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::file_uri::named_uri;
use super::tasks::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::dto::{Envelope, FileDto, FilePageDto, FilePageEnvelope};
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::Problem;
use crate::scoped_keys::require_scope;
use crate::scopes::Scope;
use crate::state::ServerState;
use crate::teams::{check_file, visible_team, Caller};
use std::time::SystemTime;

/// Whether a `GET /files/{id}` asks for the record rather than the bytes.
pub fn wants_record(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("application/json"))
}

fn record_dto(state: &ServerState, f: &infsh_engine::StoredFile) -> FileDto {
    let uri = named_uri(state, &f.id, &f.filename);
    FileDto::from_record(f, state.file_urls.signed(&uri, SystemTime::now()))
}

/// `GET /files/{id}` with `Accept: application/json`: the record.
pub async fn file_record(
    state: &ServerState,
    id: &str,
    headers: &HeaderMap,
) -> Result<Json<Envelope<FileDto>>, Problem> {
    let principal = require_scope(&state.keys, &state.engine, headers, Scope::FilesRead).await?;
    check_file(state, &principal, id).await?;
    let (record, _) = state.engine.file(id).await?;
    Ok(Json(Envelope::new(record_dto(state, &record))))
}

/// Delete a stored file: its bytes and its record.
#[utoipa::path(
    delete, path = "/files/{id}", tag = "files",
    params(("id" = String, Path, description = "File id (32 hex characters)")),
    responses(
        (status = 200, description = "The deleted file's record", body = crate::dto::FileEnvelope),
        crate::openapi::responses::FileRecordErrors,
    ),
    security(("bearer" = []))
)]
pub async fn delete_file(
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<Envelope<FileDto>>, Problem> {
    let principal = require_scope(&state.keys, &state.engine, &headers, Scope::FilesWrite).await?;
    check_file(&state, &principal, &id).await?;
    let (record, _) = state.engine.file(&id).await?;
    state.engine.delete_file(&id).await?;
    Ok(Json(Envelope::new(record_dto(&state, &record))))
}

/// Paging of `GET /files`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List stored files, newest first, a page at a time (a run-time key: its
/// team's only).
#[utoipa::path(
    get, path = "/files", tag = "files",
    params(FileListQuery),
    responses(
        (status = 200, description = "A page of files", body = FilePageEnvelope),
        crate::openapi::responses::ListErrors,
    ),
    security(("bearer" = []))
)]
pub async fn list_files(
    State(state): State<ServerState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<FileListQuery>,
) -> Result<Json<Envelope<FilePageDto>>, Problem> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Problem::bad_request(format!(
            "`limit` must be between 1 and {MAX_LIMIT}"
        )));
    }
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    let page = state
        .engine
        .list_files(limit, cursor, visible_team(&caller))
        .await
        .map_err(|e| match e {
            infsh_engine::EngineError::Store(infsh_store::StoreError::InvalidCursor(c)) => {
                Problem::bad_request(format!(
                    "invalid `cursor` {c:?}: pass a previous page's next_cursor"
                ))
            }
            other => other.into(),
        })?;
    Ok(Json(Envelope::new(FilePageDto {
        items: page.items.iter().map(|f| record_dto(&state, f)).collect(),
        next_cursor: page.next_cursor,
    })))
}
