//! The routes remote engines call (`infsh engine --server URL`), under
//! `/engine/...` (also `/v1/engine/...`), authenticated by engine keys
//! only (engine_auth.rs). HTTP long-poll: an engine registers, then loops
//! on `claim` (answered at once when tasks wait, else when one is queued,
//! or after half a lease), heartbeats while it runs tasks, and reports
//! each task's progress and end. docs/http-api.md, "Engine link", has the
//! shapes. Not in the OpenAPI document: clients never call these.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use infsh_engine::{ClaimAnswer, FleetLinkError, RemoteRegistration};
use infsh_store::fleet::{ClaimRequest, EngineSession, FleetError, Report};
use infsh_store::{now_ms, LogEntry, TaskStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::extract::{ApiJson, ApiPath};
use crate::problem::Problem;
use crate::state::ServerState;
use crate::teams::DEFAULT_TEAM;

/// Most tasks one claim takes.
const MAX_CLAIM: usize = 64;

impl From<FleetLinkError> for Problem {
    fn from(e: FleetLinkError) -> Problem {
        let detail = e.to_string();
        match e {
            FleetLinkError::Disabled => Problem::not_found("route", detail),
            FleetLinkError::InvalidSchema { app, .. } => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid_schema", detail).with("app", app)
            }
            FleetLinkError::BadRegistration(_) => Problem::bad_request(detail),
            FleetLinkError::Fleet(FleetError::NotLeased {
                task,
                holder,
                status,
                ..
            }) => Problem::new(StatusCode::CONFLICT, "not_leased", detail)
                .with("task", task)
                .with("holder", holder.map_or(Value::Null, Value::String))
                .with("task_status", status.number()),
            FleetLinkError::Fleet(FleetError::UnknownEngine(_)) => {
                Problem::not_found("engine", detail)
            }
            FleetLinkError::Fleet(FleetError::UnknownTask(_)) => Problem::not_found("task", detail),
            FleetLinkError::Fleet(FleetError::Store(e)) => {
                tracing::error!(error = %e, "fleet store error");
                Problem::internal(format!("storage error: {e}"))
            }
            // A session's refusals answer a client's run, never a link
            // route (a claim's session news is its `end_sessions` list).
            FleetLinkError::Fleet(FleetError::Session(_)) => Problem::internal(detail),
        }
    }
}

/// `POST /engine/register`: the engine, as recorded.
pub async fn register(
    State(state): State<ServerState>,
    ApiJson(body): ApiJson<RemoteRegistration>,
) -> Result<impl IntoResponse, Problem> {
    let record = state.engine.register_remote(body).await?;
    Ok(Json(json!({
        "name": record.name,
        "version": record.version,
        "draining": record.draining,
        "apps": record.apps.iter().map(|a| json!({"app": a.app, "hash": a.hash})).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    pub engine: String,
    /// Its slot names (pinned runs).
    #[serde(default)]
    pub slots: Vec<String>,
    /// Apps with a replica there and versions it has cached: their tasks
    /// first, and other engines leave them to it while it has a free slot.
    #[serde(default)]
    pub warm: Vec<String>,
    /// How many tasks it takes now (0: only a heartbeat).
    #[serde(default)]
    pub max: usize,
    /// The tasks it runs: only their leases are extended.
    #[serde(default)]
    pub holding: Vec<String>,
    /// The sessions it holds: their replicas, and those that ended there
    /// (their worker died) with why.
    #[serde(default)]
    pub sessions: Vec<EngineSession>,
    /// It fetches deployed versions (`GET /engine/versions/...`): it also
    /// takes their tasks, those of the versions in `warm` first.
    #[serde(default)]
    pub versions: bool,
}

#[derive(Debug, Serialize)]
struct ClaimedDto {
    task: infsh_store::TaskRecord,
    attempt: u32,
    lease_until_ms: i64,
    pinned_workers: Option<Vec<String>>,
}

fn answer_json(answer: ClaimAnswer) -> Value {
    let tasks: Vec<ClaimedDto> = answer
        .tasks
        .into_iter()
        .map(|c| ClaimedDto {
            task: c.task,
            attempt: c.attempt,
            lease_until_ms: c.lease_until_ms,
            pinned_workers: c.pinned_workers,
        })
        .collect();
    json!({
        "tasks": tasks,
        "lease_until_ms": answer.lease_until_ms,
        "cancel": answer.cancel,
        "lost": answer.lost,
        "end_sessions": answer.end_sessions,
        "current_versions": answer.current_versions,
    })
}

/// `POST /engine/claim`: a heartbeat, then up to `max` tasks (long poll).
pub async fn claim(
    State(state): State<ServerState>,
    ApiJson(body): ApiJson<ClaimBody>,
) -> Result<impl IntoResponse, Problem> {
    let request = ClaimRequest {
        engine: body.engine,
        slots: body.slots,
        warm: body.warm,
        max: body.max.min(MAX_CLAIM),
        versions: body.versions,
    };
    let mut answer = tokio::select! {
        answer = state.engine.claim_remote(request, &body.holding, &body.sessions) => answer?,
        () = state.shutting_down() => return Err(Problem::shutting_down()),
    };
    for claimed in &mut answer.tasks {
        sign_inputs(&state, &mut claimed.task).await;
    }
    Ok(Json(answer_json(answer)))
}

/// Input files stored on this node go to the engine as fresh signed URLs
/// (file_urls.rs): it fetches them through the file routes with no key,
/// whatever signature (or none) the client's URL had, and however long the
/// task waited. Only files of the task's team are signed: a run may not
/// hand an engine another team's file by naming its bare URL (the engine
/// is then refused it, as the client would be). Only the answer is
/// signed, never the store.
async fn sign_inputs(state: &ServerState, task: &mut infsh_store::TaskRecord) {
    let urls = &state.file_urls;
    if !urls.private() {
        return;
    }
    let mut ids = Vec::new();
    urls.file_ids(&task.input, &mut ids);
    urls.file_ids(&task.setup, &mut ids);
    let team = task.team.as_deref().unwrap_or(DEFAULT_TEAM);
    let mut ours = Vec::with_capacity(ids.len());
    for id in ids {
        match state.engine.file_access(&id).await {
            Ok(access) if access.team.as_deref().unwrap_or(DEFAULT_TEAM) == team => ours.push(id),
            Ok(_) | Err(_) => {}
        }
    }
    let now = std::time::SystemTime::now();
    let keep = |id: &str| ours.iter().any(|o| o == id);
    urls.sign_where(&mut task.input, now, &keep);
    urls.sign_where(&mut task.setup, now, &keep);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    pub engine: String,
    #[serde(default)]
    pub holding: Vec<String>,
}

/// `POST /engine/heartbeat`: extends the leases of the tasks it lists.
pub async fn heartbeat(
    State(state): State<ServerState>,
    ApiJson(body): ApiJson<HeartbeatBody>,
) -> Result<impl IntoResponse, Problem> {
    let answer = state
        .engine
        .heartbeat_remote(&body.engine, &body.holding)
        .await?;
    Ok(Json(answer_json(answer)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    pub engine: String,
    /// A status number (terminal ones end the task).
    #[serde(default)]
    pub status: Option<TaskStatus>,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub logs: Vec<LogEntry>,
    /// The engine's worker that runs the task (`NAME-KIND-ID`), recorded
    /// on the running attempt.
    #[serde(default)]
    pub worker: Option<String>,
}

/// `POST /engine/tasks/{id}/report`: 204, or 409 `not_leased`.
pub async fn report(
    State(state): State<ServerState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReportBody>,
) -> Result<StatusCode, Problem> {
    let report = Report {
        status: body.status,
        output: body.output,
        error: body.error,
        logs: body.logs,
        at_ms: now_ms(),
        worker: body.worker.filter(|w| !w.trim().is_empty()),
    };
    state
        .engine
        .report_remote(&body.engine, &id, report)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
