//! `GET /engine/versions/{ns}/{name}/{hash}/package`: an engine that
//! fetches versions (`infsh engine run` without its own copy) downloads the
//! package of a deployed version it claimed a task of. The bytes are the
//! package as deployed (`infsh app deploy`); the engine checks they hash
//! to `hash` before it unpacks them. Any API node answers: from its data
//! folder, or from the `--files` storage the nodes share. Engine keys only,
//! like the other engine-link routes; not in the OpenAPI document.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::extract::ApiPath;
use crate::problem::Problem;
use crate::state::ServerState;

/// The package's bytes (`application/octet-stream`); 404 `not_found`
/// (`resource: version`) for a version that is unknown, not ready, or
/// whose package this node cannot find.
pub async fn package(
    State(state): State<ServerState>,
    ApiPath((namespace, name, hash)): ApiPath<(String, String, String)>,
) -> Result<impl IntoResponse, Problem> {
    let app = format!("{namespace}/{name}");
    let bytes = state.engine.version_package(&app, &hash).await?;
    tracing::info!(%app, %hash, bytes = bytes.len(), "sent a version's package to an engine");
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}
