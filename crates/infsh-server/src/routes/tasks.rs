//! Reading and cancelling tasks: `GET /tasks/{id}`, `POST /tasks/{id}/cancel`
//! (empty body, under `Content-Type: application/json` as the client sends
//! it), and the paged listing `GET /tasks`.
//!
//! `GET /tasks/{id}` always shows the true current state: it is the
//! client's fallback after a stream drops (docs/client-wire-notes.md §3.4).

use axum::extract::State;
use axum::Json;
use infsh_core::AppRef;
use infsh_store::TaskStatus;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::dto::{
    AttemptDto, Envelope, TaskDto, TaskEnvelope, TaskPageDto, TaskPageEnvelope, WebhookDeliveryDto,
};
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::Problem;
use crate::state::ServerState;
use crate::teams::{check_task, visible_team, Caller};

/// Default and largest page size of `GET /tasks`.
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// Get a task with its logs and, once it ended, its output or error.
#[utoipa::path(
    get, path = "/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = TaskEnvelope),
        crate::openapi::responses::TaskErrors,
    ),
    security(("bearer" = []))
)]
pub async fn get_task(
    State(state): State<ServerState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<TaskDto>>, Problem> {
    check_task(&state, &caller, &id).await?;
    let view = state.engine.get(&id).await?;
    let attempts = state.engine.task_attempts(&id).await?;
    let mut dto = state.task_dto(&view);
    if !attempts.is_empty() {
        dto.attempts = Some(attempts.iter().map(AttemptDto::from_record).collect());
    }
    if view.record.status.is_terminal() {
        let delivery = state.engine.webhook_delivery(&id).await?;
        dto.webhook_delivery = delivery.as_ref().map(WebhookDeliveryDto::from_record);
    }
    Ok(Json(Envelope::new(dto)))
}

/// Cancel a task. Queued tasks end CANCELLED at once; running ones move to
/// CANCELLING and end CANCELLED when the app stops.
#[utoipa::path(
    post, path = "/tasks/{id}/cancel", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task as it is after the request (8 CANCELLING or 12 CANCELLED)", body = TaskEnvelope),
        crate::openapi::responses::CancelErrors,
    ),
    security(("bearer" = []))
)]
pub async fn cancel_task(
    State(state): State<ServerState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<TaskDto>>, Problem> {
    check_task(&state, &caller, &id).await?;
    let view = state.engine.cancel(&id).await?;
    Ok(Json(Envelope::new(state.task_dto(&view))))
}

/// Filters and paging of `GET /tasks`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only tasks of this app (`namespace/name`).
    pub app: Option<String>,
    /// Only tasks with this status: a number (10) or a name (`completed`,
    /// `setting_up`; also `canceled`, `canceling`, `setup`).
    pub status: Option<String>,
}

/// List tasks, newest first, a page at a time (no logs in listings).
#[utoipa::path(
    get, path = "/tasks", tag = "tasks",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPageEnvelope),
        crate::openapi::responses::ListErrors,
    ),
    security(("bearer" = []))
)]
pub async fn list_tasks(
    State(state): State<ServerState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Envelope<TaskPageDto>>, Problem> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Problem::bad_request(format!(
            "`limit` must be between 1 and {MAX_LIMIT}"
        )));
    }
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<TaskStatus>()
                .map_err(|e| Problem::bad_request(format!("`status`: {e}")))?,
        ),
    };
    let app = match q.app.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(
            a.parse::<AppRef>()
                .map_err(|e| Problem::bad_request(format!("`app`: {e}")))?,
        ),
    };
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    if let Some(c) = cursor {
        // Cursors are what `next_cursor` hands out: positive integers.
        if !c.parse::<i64>().is_ok_and(|n| n > 0) {
            return Err(Problem::bad_request(format!(
                "invalid `cursor` {c:?}: pass a previous page's next_cursor"
            )));
        }
    }
    let page = state
        .engine
        .list_in_team(app.as_ref(), status, visible_team(&caller), limit, cursor)
        .await?;
    Ok(Json(Envelope::new(TaskPageDto {
        items: page
            .items
            .iter()
            .map(|r| {
                let mut dto = TaskDto::from_record(r);
                state.sign_output(&mut dto);
                dto
            })
            .collect(),
        next_cursor: page.next_cursor,
    })))
}
