//! Creating tasks: `POST /apps/run` (what the official client sends),
//! `POST /run` and the seed's `POST /v1/run` (the `/v1` prefix is stripped
//! before routing, see lib.rs), and the per-function
//! `POST /apps/{namespace}/{name}/functions/{function}/run`.
//!
//! A run answers at once with the new task (status RECEIVED/QUEUED), well
//! inside the client's 30 s timeout; it never waits for the app to start.
//! `"wait": true` in the body or `?wait=true` blocks until the task ends and
//! returns it with its output (ended early, with the current snapshot, if
//! the server shuts down).

use axum::extract::State;
use axum::http::header::HeaderName;
use axum::response::{IntoResponse, Response};
use axum::Json;
use infsh_core::{AppRef, AppRefError};
use infsh_engine::{RunRequest, StageClock};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use crate::dto::{Envelope, FunctionRunBody, RunBody, RunOptions};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::openapi::responses::{RunAnswer, RunErrors};
use crate::problem::Problem;
use crate::state::ServerState;
use crate::teams::{check_session, team_of_new_task, Caller};

/// `?wait=true` blocks until the task ends.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Block until the task ends and return it with its output.
    pub wait: Option<bool>,
}

fn input_or_empty(input: Option<Value>) -> Value {
    match input {
        None | Some(Value::Null) => json!({}),
        Some(v) => v,
    }
}

impl RunOptions {
    /// The engine's request for `function` of `app`, and `wait`: the one
    /// mapping both run routes share.
    /// 400 for a `run_at` that is not an RFC 3339 time.
    fn into_request(
        self,
        app: AppRef,
        function: Option<String>,
    ) -> Result<(RunRequest, bool), Problem> {
        // `infra` is checked by the routes before (check_infra).
        let wait = self.wait.unwrap_or(false);
        let run_at_ms = run_at_ms(self.run_at.as_deref())?;
        let req = RunRequest {
            app,
            function,
            input: input_or_empty(self.input),
            setup: self.setup,
            webhook: self.webhook,
            session: self.session,
            session_timeout: self.session_timeout,
            metadata: self.metadata,
            timeout_secs: self.timeout,
            // An empty list pins nothing.
            workers: self.workers.filter(|w| !w.is_empty()),
            // Set by `infsh engine run` only, for a claimed pinned run.
            slots: None,
            team: None,
            run_at_ms,
        };
        Ok((req, wait))
    }
}

/// A run body's `run_at` → Unix ms. Absent, null or empty: at once (the
/// official client sends no `run_at` unless asked).
fn run_at_ms(run_at: Option<&str>) -> Result<Option<i64>, Problem> {
    match run_at.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => infsh_store::parse_timestamp(s).map(Some).ok_or_else(|| {
            Problem::bad_request(format!(
                "`run_at` \"{s}\" is not an RFC 3339 time (e.g. \"2026-01-02T03:04:05Z\")"
            ))
        }),
    }
}

impl RunBody {
    /// The engine's request and `wait`; a malformed `app` is a 400 whose
    /// detail is the [`AppRef`] parser's message.
    fn into_request(self) -> Result<(RunRequest, bool), Problem> {
        let app: AppRef = self
            .app
            .parse()
            .map_err(|e: AppRefError| Problem::bad_request(e.to_string()))?;
        self.options.into_request(app, self.function)
    }
}

/// The only `infra` infsh has: its own (private) engines.
pub const INFRA_VALUES: [&str; 1] = ["private"];

/// `infra` of a run body: absent or `private`, else 400 naming the values.
pub fn check_infra(options: &RunOptions) -> Result<(), Problem> {
    match options.infra.as_deref() {
        None => Ok(()),
        Some(v) if INFRA_VALUES.contains(&v) => Ok(()),
        Some(v) => Err(Problem::bad_request(format!(
            "`infra` \"{v}\" is not one infsh has: expected one of {}",
            INFRA_VALUES.map(|i| format!("\"{i}\"")).join(", ")
        ))),
    }
}

/// Largest per-task `timeout` (one year, in seconds): larger values are
/// refused rather than overflowing a deadline.
pub const MAX_TIMEOUT_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// The checks a run request passes before the engine sees it (400 if not;
/// its `app` was checked when it was parsed).
pub fn check_request(req: &RunRequest) -> Result<(), Problem> {
    if let Some(t) = req.timeout_secs {
        if !(t.is_finite() && t > 0.0 && t <= MAX_TIMEOUT_SECS) {
            return Err(Problem::bad_request(format!(
                "`timeout` must be a positive number of seconds, at most {MAX_TIMEOUT_SECS}"
            )));
        }
    }
    if let Some(webhook) = req
        .webhook
        .as_deref()
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        check_webhook(webhook)?;
    }
    Ok(())
}

/// A webhook must be an absolute `http`/`https` URL: anything else could
/// never be delivered, and used to be retried five times after the end.
fn check_webhook(webhook: &str) -> Result<(), Problem> {
    let url = url::Url::parse(webhook).ok();
    let deliverable = url.is_some_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    });
    if deliverable {
        return Ok(());
    }
    let shown: String = webhook.chars().take(200).collect();
    Err(Problem::bad_request(format!(
        "`webhook` {shown:?} is not an absolute http(s) URL (e.g. \"https://example.com/hook\")"
    )))
}

/// A run body (as JSON bytes) → the engine's request and `wait`, or the
/// problem the endpoint answers. What `POST /apps/run` does before it
/// submits (the fuzz target `run_request` drives it; feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub fn parse_run_body(body: &[u8]) -> Result<(RunRequest, bool), Problem> {
    let body: RunBody = serde_json::from_slice(body).map_err(json_problem)?;
    let (req, wait) = body.into_request()?;
    check_request(&req)?;
    Ok((req, wait))
}

/// The same for `POST /apps/{namespace}/{name}/functions/{function}/run`.
#[cfg(feature = "fuzzing")]
pub fn parse_function_run_body(
    namespace: &str,
    name: &str,
    function: &str,
    body: &[u8],
) -> Result<(RunRequest, bool), Problem> {
    let FunctionRunBody(body) = serde_json::from_slice(body).map_err(json_problem)?;
    let app = AppRef::new(namespace, name).map_err(|e| Problem::bad_request(e.to_string()))?;
    let (req, wait) = body.into_request(app, Some(function.to_string()))?;
    check_request(&req)?;
    Ok((req, wait))
}

/// A body that does not deserialize, as `ApiJson` answers it.
#[cfg(feature = "fuzzing")]
fn json_problem(e: serde_json::Error) -> Problem {
    if e.is_data() {
        Problem::bad_request(format!("invalid request body: {e}"))
    } else {
        Problem::bad_request(format!("malformed JSON: {e}"))
    }
}

static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Submits, then (with `wait`) waits for the end.
async fn submit(state: &ServerState, req: RunRequest, wait: bool) -> Result<Response, Problem> {
    check_request(&req)?;
    if req.workers.is_some() && state.engine.app_health(&req.app).is_ok() {
        return Err(Problem::bad_request(format!(
            "`workers` pins a run to remote engines' workers; app \"{}\" is hosted by this server itself",
            req.app.id()
        )));
    }
    if !wait {
        let view = state.engine.submit(req).await?;
        return Ok(Json(Envelope::new(state.task_dto(&view))).into_response());
    }
    // The id goes out with the end, which is durable: the insert need not
    // be waited for (Engine::submit_to_wait).
    let (view, clock) = state.engine.submit_to_wait(req).await?;
    let id = view.record.id.clone();
    let view = tokio::select! {
        r = state.engine.wait(&id, None) => r?,
        _ = state.shutting_down() => {
            // Given out before its end: it must be on disk first.
            state.engine.sync().await?;
            state.engine.get(&id).await.unwrap_or(view)
        }
    };
    let body = Json(Envelope::new(state.task_dto(&view)));
    Ok(match stage_timing(state, &id, &clock) {
        Some(value) => ([(SERVER_TIMING.clone(), value)], body).into_response(),
        None => body.into_response(),
    })
}

/// Where a waited-for task's time went: logged at debug level
/// (`INFSH_LOG=infsh::timing=debug`), and returned as the `Server-Timing`
/// header's value when the server sends it.
fn stage_timing(state: &ServerState, id: &str, clock: &StageClock) -> Option<String> {
    if !state.server_timing && !tracing::enabled!(target: "infsh::timing", tracing::Level::DEBUG) {
        return None;
    }
    let value = clock.times().server_timing();
    tracing::debug!(target: "infsh::timing", task = %id, stages = %value, "task stages");
    state.server_timing.then_some(value)
}

/// Run a function of an app (the official client's endpoint).
///
/// Returns the new task at once; with `wait` it returns the ended task.
#[utoipa::path(
    post, path = "/apps/run", tag = "runs",
    params(WaitQuery),
    request_body(content = RunBody, content_type = "application/json"),
    responses(
        RunAnswer,
        RunErrors,
    ),
    security(("bearer" = []))
)]
pub async fn run_app(
    State(state): State<ServerState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<RunBody>,
) -> Result<Response, Problem> {
    check_infra(&body.options)?;
    let (mut req, wait) = body.into_request()?;
    if let Some(session) = req.session.as_deref().filter(|s| *s != "new") {
        check_session(&state, &caller, session).await?;
    }
    req.team = Some(team_of_new_task(&caller));
    submit(&state, req, wait || q.wait.unwrap_or(false)).await
}

/// Run a function of an app (alias of `POST /apps/run`; `POST /v1/run` too).
#[utoipa::path(
    post, path = "/run", tag = "runs",
    params(WaitQuery),
    request_body(content = RunBody, content_type = "application/json"),
    responses(
        RunAnswer,
        RunErrors,
    ),
    security(("bearer" = []))
)]
pub async fn run_alias(
    state: State<ServerState>,
    caller: Caller,
    q: ApiQuery<WaitQuery>,
    body: ApiJson<RunBody>,
) -> Result<Response, Problem> {
    run_app(state, caller, q, body).await
}

/// Run one named function; the body is a run body without `app`/`function`.
///
/// `GET /openapi.json` lists this path once per hosted function, with the
/// function's own input schema.
#[utoipa::path(
    post, path = "/apps/{namespace}/{name}/functions/{function}/run", tag = "runs",
    params(
        ("namespace" = String, Path, description = "App namespace"),
        ("name" = String, Path, description = "App name"),
        ("function" = String, Path, description = "Function name"),
        WaitQuery,
    ),
    request_body(content = RunOptions, content_type = "application/json"),
    responses(
        RunAnswer,
        RunErrors,
    ),
    security(("bearer" = []))
)]
pub async fn run_function(
    State(state): State<ServerState>,
    caller: Caller,
    ApiPath((namespace, name, function)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(FunctionRunBody(body)): ApiJson<FunctionRunBody>,
) -> Result<Response, Problem> {
    // A path naming no possible app is an app that does not exist.
    let app = AppRef::new(&namespace, &name)
        .map_err(|_| crate::routes::apps::unknown_app(&state, &namespace, &name))?;
    check_infra(&body)?;
    let (mut req, wait) = body.into_request(app, Some(function))?;
    if let Some(session) = req.session.as_deref().filter(|s| *s != "new") {
        check_session(&state, &caller, session).await?;
    }
    req.team = Some(team_of_new_task(&caller));
    submit(&state, req, wait || q.wait.unwrap_or(false)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_input_is_empty_object() {
        let b = RunBody {
            app: "a/b".into(),
            ..Default::default()
        };
        let (req, wait) = b.into_request().unwrap();
        assert_eq!(req.input, json!({}));
        assert!(!wait);
        let b = RunBody {
            app: "a/b".into(),
            options: RunOptions {
                input: Some(Value::Null),
                wait: Some(true),
                ..Default::default()
            },
            ..Default::default()
        };
        let (req, wait) = b.into_request().unwrap();
        assert_eq!(req.input, json!({}));
        assert!(wait);
    }
}
