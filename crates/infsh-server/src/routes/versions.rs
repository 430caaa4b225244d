//! App versions (docs/deploy.md, "Versions"): `POST
//! /apps/{namespace}/{name}/versions` takes an app package (what `infsh
//! app deploy` sends: crates/infsh-core/src/package.rs), streamed to disk
//! and hashed as it arrives, and answers once the version is built and its
//! functions discovered (201, current unless `activate=false`) or failed
//! (422 with the traceback; it never becomes current).
//! `GET .../versions` lists them, `PUT .../versions/{id}/current` switches
//! (a rollback), `DELETE .../versions/{id}` removes one that is neither
//! current nor held by a live session.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;
use futures_util::StreamExt;
use infsh_core::package::PackageHasher;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use utoipa::IntoParams;

use crate::dto::{AppVersionDto, Envelope, VersionEnvelope, VersionListEnvelope};
use crate::extract::{ApiPath, ApiQuery};
use crate::openapi::responses::VersionErrors;
use crate::problem::Problem;
use crate::state::ServerState;

#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct DeployQuery {
    /// `false`: keep the version without making it current (default true).
    pub activate: Option<bool>,
}

/// Removes the upload's temporary file unless the engine took it.
struct TempUpload(Option<std::path::PathBuf>);

impl Drop for TempUpload {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Deploy a new version of an app from its package.
#[utoipa::path(
    post, path = "/apps/{namespace}/{name}/versions", tag = "apps",
    params(
        ("namespace" = String, Path, description = "App namespace"),
        ("name" = String, Path, description = "App name"),
        DeployQuery,
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The app package (`infsh app deploy` makes it)"),
    responses(
        (status = 201, description = "The version, built and ready (current unless `activate=false`)", body = VersionEnvelope),
        VersionErrors,
    ),
    security(("bearer" = []))
)]
pub async fn deploy_version(
    State(state): State<ServerState>,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DeployQuery>,
    req: Request,
) -> Result<(StatusCode, Json<Envelope<AppVersionDto>>), Problem> {
    let app = format!("{namespace}/{name}");
    let limit = state.body_limits.upload;
    let dir = infsh_engine::upload_dir(&state.engine.config().data_dir);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| Problem::from(infsh_engine::EngineError::BadPackage(e.to_string())))?;
    let path = dir.join(format!("{}.upload", infsh_store::new_id()));
    let mut guard = TempUpload(Some(path.clone()));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| Problem::from(infsh_engine::EngineError::BadPackage(e.to_string())))?;
    let mut hasher = PackageHasher::default();
    let mut written = 0u64;
    let mut body = req.into_body().into_data_stream();
    // A chunk at a time to the disk, hashed on the way.
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| Problem::bad_request(format!("the upload was interrupted: {e}")))?;
        written += chunk.len() as u64;
        if written > limit.bytes {
            return Err(Problem::payload_too_large(format!(
                "the package is larger than the upload limit of {} bytes",
                limit.bytes
            ))
            .with("limit", limit.bytes));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| Problem::from(infsh_engine::EngineError::BadPackage(e.to_string())))?;
    }
    file.flush()
        .await
        .map_err(|e| Problem::from(infsh_engine::EngineError::BadPackage(e.to_string())))?;
    drop(file);
    let taken = guard.0.take().expect("set above");
    let view = state
        .engine
        .deploy_version(&app, taken, hasher.finish(), q.activate.unwrap_or(true))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Envelope::new(AppVersionDto::from(&view))),
    ))
}

/// An app's versions, newest first.
#[utoipa::path(
    get, path = "/apps/{namespace}/{name}/versions", tag = "apps",
    params(
        ("namespace" = String, Path, description = "App namespace"),
        ("name" = String, Path, description = "App name"),
    ),
    responses(
        (status = 200, description = "Its versions, newest first", body = VersionListEnvelope),
        VersionErrors,
    ),
    security(("bearer" = []))
)]
pub async fn list_versions(
    State(state): State<ServerState>,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
) -> Result<Json<Envelope<Vec<AppVersionDto>>>, Problem> {
    let list = state
        .engine
        .list_versions(&format!("{namespace}/{name}"))
        .await?;
    Ok(Json(Envelope::new(
        list.iter().map(AppVersionDto::from).collect(),
    )))
}

/// Make a ready version current (a rollback names an older one). New runs
/// go to it at once; the old one's running tasks finish on it.
#[utoipa::path(
    put, path = "/apps/{namespace}/{name}/versions/{id}/current", tag = "apps",
    params(
        ("namespace" = String, Path, description = "App namespace"),
        ("name" = String, Path, description = "App name"),
        ("id" = String, Path, description = "The version's hash, or a prefix of at least 4 digits"),
    ),
    responses(
        (status = 200, description = "The version, now current", body = VersionEnvelope),
        VersionErrors,
    ),
    security(("bearer" = []))
)]
pub async fn activate_version(
    State(state): State<ServerState>,
    ApiPath((namespace, name, id)): ApiPath<(String, String, String)>,
) -> Result<Json<Envelope<AppVersionDto>>, Problem> {
    let view = state
        .engine
        .activate_version(&format!("{namespace}/{name}"), &id)
        .await?;
    Ok(Json(Envelope::new(AppVersionDto::from(&view))))
}

/// Remove a version that is neither current nor held by a live session.
#[utoipa::path(
    delete, path = "/apps/{namespace}/{name}/versions/{id}", tag = "apps",
    params(
        ("namespace" = String, Path, description = "App namespace"),
        ("name" = String, Path, description = "App name"),
        ("id" = String, Path, description = "The version's hash, or a prefix of at least 4 digits"),
    ),
    responses(
        (status = 204, description = "The version, its files and its workers are gone"),
        VersionErrors,
    ),
    security(("bearer" = []))
)]
pub async fn remove_version(
    State(state): State<ServerState>,
    ApiPath((namespace, name, id)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, Problem> {
    state
        .engine
        .remove_version(&format!("{namespace}/{name}"), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
