//! Deleting ended tasks and their files, as the official client calls it
//! (`tasks.delete`, `tasks.files`, `tasks.delete_files`):
//! `DELETE /tasks/{id}[?files=true]`, `GET /tasks/{id}/files?role=`,
//! `DELETE /tasks/{id}/files?role=`. A task that has not ended is 409:
//! cancel it first.

use axum::extract::State;
use axum::Json;
use infsh_engine::TaskFileRole;
use serde::Deserialize;
use utoipa::IntoParams;

use super::file_uri::named_uri;
use crate::dto::{
    DeletedFilesDto, DeletedFilesEnvelope, DeletedTaskDto, DeletedTaskEnvelope, Envelope,
    TaskFileDto, TaskFileListEnvelope,
};
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::Problem;
use crate::state::ServerState;
use crate::teams::{check_task, Caller};

/// `?files=` of `DELETE /tasks/{id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteTaskQuery {
    /// Also delete the task's input and output files (even when another
    /// task names them).
    pub files: Option<bool>,
}

/// `?role=` of the task file routes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoleQuery {
    /// `input` or `output`: one side only (default both).
    pub role: Option<String>,
}

fn role(q: &RoleQuery) -> Result<Option<TaskFileRole>, Problem> {
    match q.role.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) if r.eq_ignore_ascii_case("input") => Ok(Some(TaskFileRole::Input)),
        Some(r) if r.eq_ignore_ascii_case("output") => Ok(Some(TaskFileRole::Output)),
        Some(r) => Err(Problem::bad_request(format!(
            "`role` must be \"input\" or \"output\", not {r:?}"
        ))),
    }
}

/// Delete an ended task and its logs (`?files=true`: its files too).
#[utoipa::path(
    delete, path = "/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id"), DeleteTaskQuery),
    responses(
        (status = 200, description = "The task is gone", body = DeletedTaskEnvelope),
        crate::openapi::responses::DeleteTaskErrors,
    ),
    security(("bearer" = []))
)]
pub async fn delete_task(
    State(state): State<ServerState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteTaskQuery>,
) -> Result<Json<Envelope<DeletedTaskDto>>, Problem> {
    check_task(&state, &caller, &id).await?;
    let files = state
        .engine
        .delete_task(&id, q.files.unwrap_or(false))
        .await?;
    Ok(Json(Envelope::new(DeletedTaskDto {
        id,
        deleted: true,
        files: files.into(),
    })))
}

/// The stored files a task consumed (`input`) and produced (`output`).
#[utoipa::path(
    get, path = "/tasks/{id}/files", tag = "tasks",
    params(("id" = String, Path, description = "Task id"), RoleQuery),
    responses(
        (status = 200, description = "The task's files", body = TaskFileListEnvelope),
        crate::openapi::responses::TaskFilesErrors,
    ),
    security(("bearer" = []))
)]
pub async fn task_files(
    State(state): State<ServerState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RoleQuery>,
) -> Result<Json<Envelope<Vec<TaskFileDto>>>, Problem> {
    check_task(&state, &caller, &id).await?;
    let role = role(&q)?;
    let files = state.engine.task_files(&id, role).await?;
    Ok(Json(Envelope::new(
        files
            .iter()
            .map(|(r, f)| {
                TaskFileDto::new(
                    *r,
                    f,
                    state.file_urls.signed(
                        &named_uri(&state, &f.id, &f.filename),
                        std::time::SystemTime::now(),
                    ),
                )
            })
            .collect(),
    )))
}

/// Delete an ended task's files and keep the task.
#[utoipa::path(
    delete, path = "/tasks/{id}/files", tag = "tasks",
    params(("id" = String, Path, description = "Task id"), RoleQuery),
    responses(
        (status = 200, description = "What was deleted and what was left", body = DeletedFilesEnvelope),
        crate::openapi::responses::DeleteTaskErrors,
    ),
    security(("bearer" = []))
)]
pub async fn delete_task_files(
    State(state): State<ServerState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RoleQuery>,
) -> Result<Json<Envelope<DeletedFilesDto>>, Problem> {
    check_task(&state, &caller, &id).await?;
    let role = role(&q)?;
    let done = state.engine.delete_task_files(&id, role).await?;
    Ok(Json(Envelope::new(done.into())))
}
