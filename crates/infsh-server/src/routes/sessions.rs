//! Sessions (docs/sessions.md): `GET /sessions` (the active ones),
//! `GET /sessions/{id}`, `POST /sessions/{id}/keepalive` (resets its idle
//! timeout) and `DELETE /sessions/{id}` (ends it, releasing its replica).
//! A session is opened by a run with `"session": "new"` (runs.rs) and lives
//! in the server's memory (none survives a restart), or, for an app remote
//! engines host, in the fleet store, shared by every API node on it. A
//! session belongs to the team of the task that opened it (teams.rs):
//! another team's answers the 404 an unknown one does, and listings leave
//! it out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::dto::{AppSessionDto, Envelope, SessionEnvelope, SessionListEnvelope};
use crate::extract::ApiPath;
use crate::openapi::responses::{AuthErrors, SessionErrors};
use crate::problem::Problem;
use crate::state::ServerState;
use crate::teams::{check_session, sees_session, Caller};

/// The active sessions, oldest first (the whole list, like `GET /apps`).
#[utoipa::path(
    get, path = "/sessions", tag = "sessions",
    responses(
        (status = 200, description = "The active sessions", body = SessionListEnvelope),
        AuthErrors,
    ),
    security(("bearer" = []))
)]
pub async fn list_sessions(
    State(state): State<ServerState>,
    caller: Caller,
) -> Result<Json<Envelope<Vec<AppSessionDto>>>, Problem> {
    let mut visible = Vec::new();
    for session in state.engine.sessions().await? {
        if sees_session(&state, &caller, &session).await {
            visible.push(AppSessionDto::from(&session));
        }
    }
    Ok(Json(Envelope::new(visible)))
}

/// One session, active, ended or expired (`reason` says why it is over).
#[utoipa::path(
    get, path = "/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id (`sess_…`)")),
    responses(
        (status = 200, description = "The session", body = SessionEnvelope),
        SessionErrors,
    ),
    security(("bearer" = []))
)]
pub async fn get_session(
    State(state): State<ServerState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<AppSessionDto>>, Problem> {
    check_session(&state, &caller, &id).await?;
    let view = state.engine.session(&id).await?;
    Ok(Json(Envelope::new(AppSessionDto::from(&view))))
}

/// Resets an active session's idle timeout.
#[utoipa::path(
    post, path = "/sessions/{id}/keepalive", tag = "sessions",
    params(("id" = String, Path, description = "Session id (`sess_…`)")),
    responses(
        (status = 200, description = "The session, with its new `expires_at`", body = SessionEnvelope),
        SessionErrors,
    ),
    security(("bearer" = []))
)]
pub async fn keepalive_session(
    State(state): State<ServerState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<AppSessionDto>>, Problem> {
    check_session(&state, &caller, &id).await?;
    let view = state.engine.keepalive_session(&id).await?;
    Ok(Json(Envelope::new(AppSessionDto::from(&view))))
}

/// Ends a session (the client's `session()` helper sends it on exit) and
/// releases its replica once the call running in it, if any, ends. Its
/// later calls get 410 `SESSION_ENDED`. Ending a session that is already
/// over changes nothing.
#[utoipa::path(
    delete, path = "/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id (`sess_…`)")),
    responses(
        (status = 204, description = "The session is ended"),
        SessionErrors,
    ),
    security(("bearer" = []))
)]
pub async fn end_session(
    State(state): State<ServerState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, Problem> {
    check_session(&state, &caller, &id).await?;
    state.engine.end_session(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
