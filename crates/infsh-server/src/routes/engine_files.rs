//! `POST /engine/files`: an engine uploads an output file of a task it ran.
//! An engine stores a task's output files in its own file store, whose URLs
//! no client can reach; before it reports an output it sends each file here
//! and reports the URL this answer gives instead. The record goes to the
//! API node's store (on a shared PostgreSQL store every node sees it), the
//! bytes to this node's files folder. The file belongs to the team of the
//! task it is an output of (`task`), like a local task's output files.
//! Engine keys only, like the other engine-link routes; not in the OpenAPI
//! document.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::Json;
use infsh_store::FileAccess;
use serde::Deserialize;

use crate::dto::FileDto;
use crate::extract::ApiQuery;
use crate::problem::Problem;
use crate::routes::files::clean_filename;
use crate::state::ServerState;

/// Where the file's name and type travel (the body is the raw bytes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFileQuery {
    pub filename: Option<String>,
    /// The task whose output it is (its team owns the file).
    pub task: Option<String>,
    pub content_type: Option<String>,
}

/// `POST /engine/files?filename=&content_type=` with the raw bytes: the
/// stored file as `POST /files` shows it, `uri` being this node's.
pub async fn upload(
    State(state): State<ServerState>,
    ApiQuery(q): ApiQuery<EngineFileQuery>,
    req: Request,
) -> Result<Json<FileDto>, Problem> {
    let body = Bytes::from_request(req, &state).await?;
    let content_type = q
        .content_type
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or("application/octet-stream")
        .to_string();
    let filename = q
        .filename
        .as_deref()
        .and_then(clean_filename)
        .unwrap_or_else(|| "file".to_string());
    let record = state
        .engine
        .create_file(&filename, Some(&content_type), Some(body.len() as u64))
        .await?;
    let record = state.engine.write_file(&record.id, body).await?;
    let team = match q.task.as_deref() {
        Some(task) => state
            .engine
            .get(task)
            .await
            .ok()
            .and_then(|v| v.record.team),
        None => None,
    };
    if let Some(team) = team {
        let access = FileAccess {
            team: Some(team),
            public: false,
        };
        state.engine.set_file_access(&record.id, &access).await?;
    }
    let uri = state.engine.file_uri(&record.id);
    Ok(Json(FileDto::from_record(&record, uri)))
}
