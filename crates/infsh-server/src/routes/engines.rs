//! The worker layout and steering it: `GET /engines` (this machine's
//! engine: its slots, their GPUs and replicas), `GET /workers` (one row per
//! replica), and `POST /engines/{name}/drain` / `.../undrain` (stop or
//! resume starting tasks; submissions are still accepted and queued,
//! running tasks finish, reads go on). Draining one app is
//! `POST /apps/{namespace}/{name}/drain`, in apps.rs.
//!
//! The listings follow `GET /apps`: the whole list in the envelope, no
//! paging (a machine has a handful of slots and replicas).

use axum::extract::State;
use axum::Json;

use crate::dto::{
    EngineDto, EngineEnvelope, EngineListEnvelope, Envelope, WorkerDto, WorkerListEnvelope,
};
use crate::extract::ApiPath;
use crate::openapi::responses::{AuthErrors, DrainEngineErrors};
use crate::problem::Problem;
use crate::state::ServerState;

/// This machine's engine (its slots with their GPUs, replicas and running
/// tasks), then every remote engine (`infsh engine run`), each with `remote`
/// set: version, online/draining/offline, last heartbeat, apps with their
/// hash and conflicts, held tasks.
#[utoipa::path(
    get, path = "/engines", tag = "engines",
    responses(
        (status = 200, description = "Every engine: this server's, then remote ones", body = EngineListEnvelope),
        AuthErrors,
    ),
    security(("bearer" = []))
)]
pub async fn list_engines(
    State(state): State<ServerState>,
) -> Result<Json<Envelope<Vec<EngineDto>>>, Problem> {
    let view = state.engine.engine_view();
    let mut engines = vec![EngineDto::from_view(&view)];
    let remote = state.engine.remote_engines().await?;
    engines.extend(remote.iter().map(EngineDto::from_remote));
    Ok(Json(Envelope::new(engines)))
}

/// The engine named `name` after a drain or undrain: this server's own, or
/// a remote one.
async fn drained(
    state: &ServerState,
    name: &str,
    draining: bool,
) -> Result<Json<Envelope<EngineDto>>, Problem> {
    let local = state.engine.engine_view();
    if local.name == name {
        if draining {
            state.engine.drain_engine(name)?;
        } else {
            state.engine.undrain_engine(name)?;
        }
        return Ok(Json(Envelope::new(EngineDto::from_view(
            &state.engine.engine_view(),
        ))));
    }
    state.engine.set_remote_draining(name, draining).await?;
    let remote = state.engine.remote_engines().await?;
    let engine = remote
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| Problem::not_found("engine", format!("no engine named \"{name}\"")))?;
    Ok(Json(Envelope::new(EngineDto::from_remote(engine))))
}

/// Every replica: its app, slot, process, state and current tasks.
#[utoipa::path(
    get, path = "/workers", tag = "engines",
    responses(
        (status = 200, description = "One row per replica", body = WorkerListEnvelope),
        AuthErrors,
    ),
    security(("bearer" = []))
)]
pub async fn list_workers(State(state): State<ServerState>) -> Json<Envelope<Vec<WorkerDto>>> {
    let workers = state.engine.workers().await;
    Json(Envelope::new(
        workers.iter().map(WorkerDto::from_view).collect(),
    ))
}

/// Stop starting tasks on this engine, or on a remote one (it claims none): new runs are accepted and queued,
/// running tasks finish, reads keep working. Idempotent.
#[utoipa::path(
    post, path = "/engines/{name}/drain", tag = "engines",
    params(("name" = String, Path, description = "The engine's name (`GET /engines`)")),
    responses(
        (status = 200, description = "The engine, now draining", body = EngineEnvelope),
        DrainEngineErrors,
    ),
    security(("bearer" = []))
)]
pub async fn drain_engine(
    State(state): State<ServerState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Envelope<EngineDto>>, Problem> {
    drained(&state, &name, true).await
}

/// Resume starting tasks on this engine (its queues go on). Idempotent.
#[utoipa::path(
    post, path = "/engines/{name}/undrain", tag = "engines",
    params(("name" = String, Path, description = "The engine's name (`GET /engines`)")),
    responses(
        (status = 200, description = "The engine, taking tasks again", body = EngineEnvelope),
        DrainEngineErrors,
    ),
    security(("bearer" = []))
)]
pub async fn undrain_engine(
    State(state): State<ServerState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Envelope<EngineDto>>, Problem> {
    drained(&state, &name, false).await
}
