//! `GET /tasks/{id}/status`: a task's status alone, for clients that poll
//! (the platform's JS SDK). Minimal and cheap: no input, output or logs.
//! The shape is this server's own (`{id, status, status_name, terminal,
//! updated_at}`; docs/http-api.md): the JS SDK reads `status`.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::dto::{iso8601, Envelope};
use crate::extract::ApiPath;
use crate::problem::Problem;
use crate::state::ServerState;
use crate::teams::{check_task, Caller};

/// A task's status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskStatusDto {
    pub id: String,
    /// The numeric status (as in the task: 10-13 are terminal).
    #[schema(minimum = 0, maximum = 13)]
    pub status: u8,
    /// The status's lower-case name (`running`, `completed`...).
    pub status_name: String,
    /// Whether the task has ended.
    pub terminal: bool,
    /// ISO-8601 UTC of the last change.
    pub updated_at: String,
}

/// `{"data": TaskStatus, "messages": []}`.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct TaskStatusEnvelope {
    pub data: TaskStatusDto,
    /// Always empty.
    pub messages: Vec<Value>,
}

/// Get a task's status alone.
#[utoipa::path(
    get, path = "/tasks/{id}/status", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task's status", body = TaskStatusEnvelope),
        crate::openapi::responses::TaskErrors,
    ),
    security(("bearer" = []))
)]
pub async fn task_status(
    State(state): State<ServerState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<TaskStatusDto>>, Problem> {
    check_task(&state, &caller, &id).await?;
    let r = state.engine.get(&id).await?.record;
    Ok(Json(Envelope::new(TaskStatusDto {
        id: r.id,
        status: r.status as u8,
        status_name: r.status.as_str().to_string(),
        terminal: r.status.is_terminal(),
        updated_at: iso8601(r.updated_at_ms),
    })))
}
