//! Sessions (docs/sessions.md): `GET /sessions` (the active ones),
//! `GET /sessions/{id}`, `POST /sessions/{id}/keepalive` (resets its idle
//! timeout) and `DELETE /sessions/{id}` (ends it, releasing its replica).
//! A session is opened by a run with `"session": "new"` (runs.rs) and lives
//! in the server's memory (none survives a restart), or, for an app remote
//! engines host, in the fleet store, shared by every API node on it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::dto::{AppSessionDto, Envelope, SessionEnvelope, SessionListEnvelope};
use crate::extract::ApiPath;
use crate::openapi::responses::{AuthErrors, SessionErrors};
use crate::problem::Problem;
use crate::state::ServerState;

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
) -> Result<Json<Envelope<Vec<AppSessionDto>>>, Problem> {
    let sessions = state.engine.sessions().await?;
    Ok(Json(Envelope::new(
        sessions.iter().map(AppSessionDto::from).collect(),
    )))
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
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<AppSessionDto>>, Problem> {
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
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<AppSessionDto>>, Problem> {
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
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, Problem> {
    state.engine.end_session(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
