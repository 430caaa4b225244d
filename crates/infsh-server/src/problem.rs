//! The ONE place that turns failures into HTTP: every [`EngineError`]
//! variant and every HTTP-level failure (bad JSON, body too large, wrong
//! content type, missing key, unknown route...) becomes an RFC 9457 problem
//! JSON response here, and nowhere else.
//!
//! Shape: `{"type": "https://infsh.dev/errors/<code>", "title", "status",
//! "detail", ...extra}` with `Content-Type: application/problem+json`.
//! `<code>` uses the platform's `ErrorCode` vocabulary where one fits
//! (`not_found`, `validation_error`, `unauthorized`...), because the
//! official client exposes it as `APIError.code` (it parses the text after
//! `/errors/`), and shows `detail` as the exception message
//! (docs/client-wire-notes.md §1.3). Missing secrets additionally carry the
//! `errors` list the client turns into `RequirementsNotMetError`.
//!
//! The table in docs/http-api.md lists every status, code and cause; keep
//! the two in step.

use std::time::Duration;

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use infsh_engine::EngineError;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::limits::BodyTimedOut;

/// Base of every problem `type`.
pub const TYPE_BASE: &str = "https://infsh.dev/errors/";

/// A problem response being built. Boxed: handlers return
/// `Result<_, Problem>` everywhere, and the error path is the rare one.
#[derive(Debug, Clone)]
pub struct Problem(Box<ProblemParts>);

#[derive(Debug, Clone)]
pub struct ProblemParts {
    pub status: StatusCode,
    /// Last segment of `type`.
    pub code: &'static str,
    pub detail: String,
    /// Extra members of the problem object (`errors`, `available`...).
    pub extra: Map<String, Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::ops::Deref for Problem {
    type Target = ProblemParts;
    fn deref(&self) -> &ProblemParts {
        &self.0
    }
}

/// The problem object as documented in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ProblemDoc {
    /// `https://infsh.dev/errors/<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The status code's reason phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong, for people (the client shows it as the error).
    pub detail: String,
    /// 404 `not_found`: what was not found (`app`, `function`, `task`, `file`, `route`).
    pub resource: Option<String>,
    /// 404 app/function: the names that do exist.
    pub available: Option<Vec<String>>,
    /// 422: `[{path, message}]`; 412: `[{type, key, message, action}]`.
    pub errors: Option<Vec<Value>>,
    /// 413: the limit passed, in bytes (429 `too_many_streams`: the cap).
    pub limit: Option<u64>,
    /// 413: what set the limit: `--max-json-mib`, `--max-upload-gib`,
    /// `--max-body-mib` or `registered_size` (the file's registered `size`).
    pub limited_by: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem(Box::new(ProblemParts {
            status,
            code,
            detail: detail.into(),
            extra: Map::new(),
            headers: Vec::new(),
        }))
    }

    /// Adds an extra member to the problem object.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Problem {
        self.0.extra.insert(key.to_string(), value.into());
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Problem {
        self.0.headers.push((name, value));
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("type".into(), json!(format!("{TYPE_BASE}{}", self.code)));
        obj.insert(
            "title".into(),
            json!(self.status.canonical_reason().unwrap_or("Error")),
        );
        obj.insert("status".into(), json!(self.status.as_u16()));
        obj.insert("detail".into(), json!(self.detail));
        for (k, v) in &self.extra {
            obj.insert(k.clone(), v.clone());
        }
        Value::Object(obj)
    }

    // ------------------------------------------------ HTTP-level failures

    pub fn not_found(resource: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", detail).with("resource", resource)
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: impl Into<String>, invalid_token: bool) -> Problem {
        let challenge = if invalid_token {
            "Bearer realm=\"infsh\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"infsh\""
        };
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 403 for a key without the scope a route needs (`scope` names it;
    /// `null` for a route only admin keys may use).
    pub fn insufficient_scope(scope: Option<&str>) -> Problem {
        let detail = match scope {
            Some(s) => format!("this API key lacks the scope \"{s}\" this request needs"),
            None => "this request needs an admin API key".to_string(),
        };
        Problem::new(StatusCode::FORBIDDEN, "insufficient_scope", detail)
            .with("scope", scope.map(Value::from).unwrap_or(Value::Null))
    }

    pub fn payload_too_large(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            detail,
        )
    }

    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", detail)
    }

    /// 408 for a request body that stalled (limits.rs `body_timeout`); the
    /// connection is closed after it, its body being unfinished.
    pub fn body_timeout(e: &BodyTimedOut) -> Problem {
        Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body stalled: {e} (--body-timeout {}s)",
                e.0.as_secs_f64()
            ),
        )
        .header(header::CONNECTION, HeaderValue::from_static("close"))
    }

    /// 429 past `--rate-limit`, in the `rate_limited` shape of a full
    /// queue (`retry_after` member and header).
    pub fn run_rate_limited(per_minute: u32, scope: &str, retry_after: Duration) -> Problem {
        let secs = retry_after_secs(retry_after);
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many runs: at most {per_minute} per minute per {scope} (--rate-limit); retry in {secs}s"
            ),
        )
        .with("limit_per_minute", per_minute)
        .with("retry_after", secs)
        .header(header::RETRY_AFTER, HeaderValue::from(secs))
    }

    /// 429 for a stream beyond `--max-streams-per-task` or
    /// `--max-streams-per-key`: `scope` is `task` or `client`.
    pub fn too_many_streams(scope: &'static str, limit: usize, detail: String) -> Problem {
        Problem::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", detail)
            .with("scope", scope)
            .with("limit", limit)
    }

    /// The 503 a connection beyond `--max-connections` gets (written by the
    /// accept loop itself, listener/mod.rs).
    pub fn too_many_connections(cap: usize) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            format!("the server has {cap} connections open, its limit (--max-connections); retry shortly"),
        )
        .with("retry_after", 1)
    }

    pub fn shutting_down() -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        )
    }
}

/// `Retry-After` in whole seconds, at least 1.
fn retry_after_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

impl From<EngineError> for Problem {
    fn from(e: EngineError) -> Problem {
        let detail = e.to_string();
        match e {
            EngineError::UnknownApp { available, .. } => {
                Problem::not_found("app", detail).with("available", available)
            }
            // 404, not 422: the function is a resource of the app, like the
            // app itself; the body lists the ones that exist.
            EngineError::UnknownFunction { available, .. } => {
                Problem::not_found("function", detail).with("available", available)
            }
            EngineError::NoDefaultFunction { available, .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "function_required",
                detail,
            )
            .with("available", available),
            EngineError::InvalidInput { what, errors } => {
                let list: Vec<Value> = errors
                    .iter()
                    .map(|f| json!({"path": f.path, "message": f.message}))
                    .collect();
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", detail)
                    .with("what", what)
                    .with("errors", list)
            }
            EngineError::InvalidFile { field, reason } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", detail)
                    .with("what", "input")
                    .with("errors", json!([{"path": field, "message": reason}]))
            }
            EngineError::QueueFull {
                app,
                capacity,
                retry_after,
            } => {
                let secs = retry_after_secs(retry_after);
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
                    .with("app", app)
                    .with("capacity", capacity)
                    .with("retry_after", secs)
                    .header(header::RETRY_AFTER, HeaderValue::from(secs))
            }
            EngineError::MissingSecrets { missing } => {
                // Shape read by the client's RequirementsNotMetError:
                // {type, key, message, action?: {type}}.
                let errors: Vec<Value> = missing
                    .iter()
                    .map(|m| {
                        let action = if m.kind == "integration" {
                            "connect"
                        } else {
                            "add_secret"
                        };
                        json!({
                            "type": m.kind,
                            "key": m.key,
                            "message": m.message,
                            "action": {"type": action},
                        })
                    })
                    .collect();
                Problem::new(
                    StatusCode::PRECONDITION_FAILED,
                    "requirements_not_met",
                    detail,
                )
                .with("errors", errors)
            }
            EngineError::AppUnavailable {
                app,
                message,
                traceback,
            } => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "app_unavailable", detail)
                .with("app", app)
                .with("message", message)
                .with(
                    "traceback",
                    traceback.map(Value::from).unwrap_or(Value::Null),
                ),
            // 500, not 4xx: the app's schema is broken, not the request;
            // nothing the client changes helps, and the operator sees it
            // logged as an error. Not 503: retrying will not help either.
            EngineError::InvalidSchema { app, error } => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "invalid_schema", detail)
                    .with("app", app)
                    .with(
                        "function",
                        error.function.map(Value::from).unwrap_or(Value::Null),
                    )
                    .with("schema", error.schema.as_str())
            }
            EngineError::UnknownTask(_) => Problem::not_found("task", detail),
            EngineError::UnknownFile(_) => Problem::not_found("file", detail),
            EngineError::UnknownApiKey(_) => Problem::not_found("apikey", detail),
            EngineError::TaskAlreadyEnded { status, .. } => {
                Problem::new(StatusCode::CONFLICT, "conflict", detail)
                    .with("task_status", status as u8)
            }
            EngineError::TaskNotEnded { status, .. } => {
                Problem::new(StatusCode::CONFLICT, "conflict", detail)
                    .with("task_status", status as u8)
            }
            EngineError::ShuttingDown => Problem::shutting_down(),
            // 503 at once rather than a queued task that never starts: no
            // slot of this machine can ever host the app (docs/gpus.md).
            // No Retry-After: the same request will fail the same way until
            // the worker layout changes.
            EngineError::NoMatchingWorker(refusal) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_matching_worker",
                detail,
            )
            .with("app", refusal.app)
            .with("needs", refusal.needs),
            EngineError::SessionNotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, "SESSION_NOT_FOUND", detail)
                    .with("resource", "session")
                    .with("session_id", id)
            }
            EngineError::SessionEnded { id, reason } => {
                Problem::new(StatusCode::GONE, "SESSION_ENDED", detail)
                    .with("session_id", id)
                    .with("reason", reason)
            }
            EngineError::SessionExpired {
                id,
                idle_timeout_secs,
            } => Problem::new(StatusCode::GONE, "SESSION_EXPIRED", detail)
                .with("session_id", id)
                .with("idle_timeout", idle_timeout_secs),
            EngineError::SessionAppMismatch {
                id,
                session_app,
                app,
            } => Problem::new(StatusCode::BAD_REQUEST, "APP_MISMATCH", detail)
                .with("session_id", id)
                .with("session_app", session_app)
                .with("app", app),
            EngineError::SessionVersionMismatch {
                id,
                session_version,
                version,
                ..
            } => Problem::new(StatusCode::BAD_REQUEST, "VERSION_MISMATCH", detail)
                .with("session_id", id)
                .with("session_version", session_version)
                .with("version", version),
            EngineError::UnknownVersion { .. } | EngineError::VersionPackageMissing { .. } => {
                Problem::not_found("version", detail)
            }
            EngineError::AmbiguousVersion { matches, .. } => {
                Problem::new(StatusCode::BAD_REQUEST, "ambiguous_version", detail)
                    .with("matches", matches)
            }
            EngineError::BadPackage(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "bad_package", detail)
            }
            EngineError::VersionFailed {
                app,
                hash,
                message,
                traceback,
            } => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "version_failed", detail)
                .with("app", app)
                .with("version", hash)
                .with("message", message)
                .with(
                    "traceback",
                    traceback.map(Value::from).unwrap_or(Value::Null),
                ),
            EngineError::VersionConflict(_) => {
                Problem::new(StatusCode::CONFLICT, "version_conflict", detail)
            }
            EngineError::InvalidSession(_) | EngineError::InvalidWorkers(_) => {
                Problem::bad_request(detail)
            }
            EngineError::UnknownEngine(_) => {
                Problem::new(StatusCode::NOT_FOUND, "unknown_engine", detail)
            }
            EngineError::Store(_) | EngineError::Background { .. } => Problem::internal(detail),
        }
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Problem {
        match r {
            JsonRejection::MissingJsonContentType(_) => Problem::unsupported_media_type(
                "expected a request body with Content-Type: application/json",
            ),
            JsonRejection::JsonSyntaxError(e) => {
                Problem::bad_request(format!("malformed JSON: {}", e.body_text()))
            }
            // Valid JSON of the wrong shape (a missing `app`, `input` of the
            // wrong kind...). 400 like bad syntax: 422 is kept for input that
            // fails the function's schema.
            JsonRejection::JsonDataError(e) => {
                Problem::bad_request(format!("invalid request body: {}", e.body_text()))
            }
            JsonRejection::BytesRejection(b) => Problem::from(b),
            other => Problem::bad_request(other.body_text()),
        }
    }
}

impl From<BytesRejection> for Problem {
    fn from(r: BytesRejection) -> Problem {
        if let Some(e) = stalled(&r) {
            Problem::body_timeout(e)
        } else if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::payload_too_large("the request body is larger than this server accepts")
        } else {
            Problem::bad_request(format!(
                "could not read the request body: {}",
                r.body_text()
            ))
        }
    }
}

/// The body timeout, if that is what failed the body read (the error sits
/// a few `source()`s down, under axum's wrappers).
fn stalled(r: &BytesRejection) -> Option<&BodyTimedOut> {
    find_timeout(r)
}

/// The body timeout somewhere in `err`'s chain of sources (a streamed
/// upload's read error, or a rejection).
pub fn find_timeout<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimedOut> {
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = e {
        if let Some(t) = err.downcast_ref::<BodyTimedOut>() {
            return Some(t);
        }
        e = err.source();
    }
    None
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Problem {
        Problem::bad_request(format!("invalid query string: {}", r.body_text()))
    }
}

impl From<PathRejection> for Problem {
    fn from(r: PathRejection) -> Problem {
        Problem::bad_request(format!("invalid path parameter: {}", r.body_text()))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), code = self.code, detail = %self.detail, "request failed");
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            body,
        )
            .into_response();
        for (name, value) in self.0.headers {
            resp.headers_mut().append(name, value);
        }
        resp
    }
}

/// Fallback for unknown routes.
pub async fn route_not_found(uri: axum::http::Uri) -> Problem {
    Problem::not_found("route", format!("no route for {}", uri.path()))
}

/// Fallback for known routes called with the wrong method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Turns a handler panic into a 500 problem (tower-http's CatchPanic hook).
pub fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Problem::internal("internal error").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use infsh_core::validate::FieldError;
    use infsh_engine::MissingSecret;
    use infsh_store::TaskStatus;

    fn parts(p: Problem) -> (u16, Value, axum::http::HeaderMap) {
        let status = p.status.as_u16();
        let body = p.body();
        let resp = p.into_response();
        (status, body, resp.headers().clone())
    }

    #[test]
    fn base_members() {
        let (status, body, headers) = parts(Problem::not_found("task", "unknown task \"x\""));
        assert_eq!(status, 404);
        assert_eq!(
            body,
            json!({"type": "https://infsh.dev/errors/not_found", "title": "Not Found",
                   "status": 404, "detail": "unknown task \"x\"", "resource": "task"})
        );
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    }

    #[test]
    fn engine_errors_map_to_statuses() {
        let cases: Vec<(EngineError, u16, &str)> = vec![
            (
                EngineError::SessionNotFound("sess_x".into()),
                404,
                "SESSION_NOT_FOUND",
            ),
            (
                EngineError::SessionEnded {
                    id: "sess_x".into(),
                    reason: "r".into(),
                },
                410,
                "SESSION_ENDED",
            ),
            (
                EngineError::SessionExpired {
                    id: "sess_x".into(),
                    idle_timeout_secs: 5,
                },
                410,
                "SESSION_EXPIRED",
            ),
            (
                EngineError::SessionAppMismatch {
                    id: "sess_x".into(),
                    session_app: "a/b".into(),
                    app: "c/d".into(),
                },
                400,
                "APP_MISMATCH",
            ),
            (
                EngineError::InvalidSession("x".into()),
                400,
                "invalid_request",
            ),
            (
                EngineError::InvalidWorkers("x".into()),
                400,
                "invalid_request",
            ),
            (
                EngineError::UnknownApp {
                    app: "a/b".into(),
                    available: vec!["x/y".into()],
                },
                404,
                "not_found",
            ),
            (
                EngineError::UnknownFunction {
                    app: "a/b".into(),
                    function: "f".into(),
                    available: vec!["run".into()],
                },
                404,
                "not_found",
            ),
            (
                EngineError::NoDefaultFunction {
                    app: "a/b".into(),
                    available: vec!["g".into()],
                },
                422,
                "function_required",
            ),
            (
                EngineError::InvalidInput {
                    what: "input".into(),
                    errors: vec![],
                },
                422,
                "validation_error",
            ),
            (
                EngineError::InvalidFile {
                    field: "image".into(),
                    reason: "404".into(),
                },
                422,
                "validation_error",
            ),
            (
                EngineError::QueueFull {
                    app: "a/b".into(),
                    capacity: 1,
                    retry_after: Duration::from_millis(1500),
                },
                429,
                "rate_limited",
            ),
            (
                EngineError::MissingSecrets { missing: vec![] },
                412,
                "requirements_not_met",
            ),
            (
                EngineError::AppUnavailable {
                    app: "a/b".into(),
                    message: "boom".into(),
                    traceback: None,
                },
                503,
                "app_unavailable",
            ),
            (
                EngineError::InvalidSchema {
                    app: "a/b".into(),
                    error: invalid_schema(),
                },
                500,
                "invalid_schema",
            ),
            (EngineError::UnknownTask("t".into()), 404, "not_found"),
            (EngineError::UnknownFile("f".into()), 404, "not_found"),
            (EngineError::UnknownApiKey("k".into()), 404, "not_found"),
            (
                EngineError::TaskAlreadyEnded {
                    id: "t".into(),
                    status: TaskStatus::Completed,
                },
                409,
                "conflict",
            ),
            (EngineError::ShuttingDown, 503, "shutting_down"),
            (
                EngineError::NoMatchingWorker(no_matching_worker()),
                503,
                "no_matching_worker",
            ),
            (
                EngineError::UnknownEngine("other".into()),
                404,
                "unknown_engine",
            ),
            (
                EngineError::Store(infsh_store::StoreError::Corrupt {
                    id: "t".into(),
                    message: "disk".into(),
                }),
                500,
                "internal_error",
            ),
        ];
        for (err, status, code) in cases {
            let p = Problem::from(err);
            assert_eq!(p.status.as_u16(), status, "{}", p.detail);
            assert_eq!(p.code, code);
            assert_eq!(p.body()["status"], json!(status));
        }
    }

    /// The version errors: status, code, and the words a deployer reads.
    #[test]
    fn version_errors_map_to_statuses_and_say_why() {
        let cases: Vec<(EngineError, u16, &str, &str)> = vec![
            (
                EngineError::SessionVersionMismatch {
                    id: "sess_x".into(),
                    app: "a/b".into(),
                    session_version: "111111111111".into(),
                    version: "222222222222".into(),
                },
                400,
                "VERSION_MISMATCH",
                "session \"sess_x\" runs version 111111111111 of app \"a/b\", not 222222222222",
            ),
            (
                EngineError::UnknownVersion {
                    app: "a/b".into(),
                    version: "abcd".into(),
                },
                404,
                "not_found",
                "app \"a/b\" has no version \"abcd\" (list them: GET /apps/a/b/versions)",
            ),
            (
                EngineError::AmbiguousVersion {
                    app: "a/b".into(),
                    version: "abcd".into(),
                    matches: vec!["abcd1".into(), "abcd2".into()],
                },
                400,
                "ambiguous_version",
                "version \"abcd\" of app \"a/b\" is ambiguous: it begins abcd1, abcd2; give more of the hash",
            ),
            (
                EngineError::BadPackage("not a package".into()),
                400,
                "bad_package",
                "not a package",
            ),
            (
                EngineError::VersionFailed {
                    app: "a/b".into(),
                    hash: "abcd".into(),
                    message: "No module named 'x'".into(),
                    traceback: Some("Traceback ...".into()),
                },
                422,
                "version_failed",
                "version abcd of app \"a/b\" failed to build: No module named 'x'",
            ),
            (
                EngineError::VersionConflict("in use".into()),
                409,
                "version_conflict",
                "in use",
            ),
        ];
        for (err, status, code, detail) in cases {
            let p = Problem::from(err);
            assert_eq!(p.status.as_u16(), status, "{}", p.detail);
            assert_eq!(p.code, code);
            assert_eq!(p.detail, detail);
        }
        let (_, body, _) = parts(Problem::from(EngineError::VersionFailed {
            app: "a/b".into(),
            hash: "abcd".into(),
            message: "m".into(),
            traceback: Some("Traceback ...".into()),
        }));
        assert_eq!(body["traceback"], "Traceback ...");
        assert_eq!(body["version"], "abcd");
    }

    #[test]
    fn unknown_app_lists_available() {
        let (_, body, _) = parts(Problem::from(EngineError::UnknownApp {
            app: "a/b".into(),
            available: vec!["x/y".into(), "z/w".into()],
        }));
        assert_eq!(body["available"], json!(["x/y", "z/w"]));
        assert_eq!(body["resource"], "app");
        assert!(body["detail"].as_str().unwrap().contains("x/y"));
    }

    #[test]
    fn invalid_input_lists_field_errors() {
        let (_, body, _) = parts(Problem::from(EngineError::InvalidInput {
            what: "input".into(),
            errors: vec![FieldError {
                path: "steps".into(),
                message: "must be at most 50".into(),
            }],
        }));
        assert_eq!(
            body["errors"],
            json!([{"path": "steps", "message": "must be at most 50"}])
        );
    }

    fn no_matching_worker() -> infsh_placement::NoMatchingWorker {
        infsh_placement::NoMatchingWorker {
            app: "acme/big".into(),
            needs: "2 GPUs with 80 GB each".into(),
            why: "the largest slot is gpus [2, 3] (2 GPUs, 24 GB each)".into(),
        }
    }

    #[test]
    fn no_matching_worker_names_the_need_and_the_largest_slot() {
        let (status, body, headers) = parts(Problem::from(EngineError::NoMatchingWorker(
            no_matching_worker(),
        )));
        assert_eq!(status, 503);
        assert_eq!(
            body,
            json!({"type": "https://infsh.dev/errors/no_matching_worker",
                   "title": "Service Unavailable", "status": 503,
                   "detail": "acme/big needs 2 GPUs with 80 GB each; the largest slot is gpus [2, 3] (2 GPUs, 24 GB each)",
                   "app": "acme/big", "needs": "2 GPUs with 80 GB each"})
        );
        assert!(headers.get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn an_unknown_engine_is_a_404_naming_it() {
        let (status, body, _) = parts(Problem::from(EngineError::UnknownEngine("other".into())));
        assert_eq!(status, 404);
        assert_eq!(
            body,
            json!({"type": "https://infsh.dev/errors/unknown_engine",
                   "title": "Not Found", "status": 404,
                   "detail": "unknown engine \"other\""})
        );
    }

    fn invalid_schema() -> infsh_core::InvalidSchema {
        infsh_core::InvalidSchema {
            function: Some("run".into()),
            schema: infsh_core::SchemaKind::Input,
            problem: infsh_core::SchemaError {
                message: "12 is not valid".into(),
            },
        }
    }

    #[test]
    fn invalid_schema_names_the_app_function_and_schema() {
        let (status, body, headers) = parts(Problem::from(EngineError::InvalidSchema {
            app: "a/b".into(),
            error: invalid_schema(),
        }));
        assert_eq!(status, 500);
        assert_eq!(
            body,
            json!({"type": "https://infsh.dev/errors/invalid_schema",
                   "title": "Internal Server Error", "status": 500,
                   "detail": "function \"run\" is refused: its input schema does not compile: 12 is not valid",
                   "app": "a/b", "function": "run", "schema": "input"})
        );
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    }

    #[test]
    fn queue_full_sets_retry_after() {
        let (_, body, headers) = parts(Problem::from(EngineError::QueueFull {
            app: "a/b".into(),
            capacity: 4,
            retry_after: Duration::from_millis(1500),
        }));
        assert_eq!(headers[header::RETRY_AFTER], "2");
        assert_eq!(body["retry_after"], json!(2));
        let (_, _, headers) = parts(Problem::from(EngineError::QueueFull {
            app: "a/b".into(),
            capacity: 4,
            retry_after: Duration::ZERO,
        }));
        assert_eq!(headers[header::RETRY_AFTER], "1");
    }

    #[test]
    fn missing_secrets_have_the_client_shape() {
        let (_, body, _) = parts(Problem::from(EngineError::MissingSecrets {
            missing: vec![MissingSecret {
                kind: "secret".into(),
                key: "HF_TOKEN".into(),
                message: "missing secret HF_TOKEN".into(),
            }],
        }));
        assert_eq!(
            body["errors"],
            json!([{"type": "secret", "key": "HF_TOKEN", "message": "missing secret HF_TOKEN",
                    "action": {"type": "add_secret"}}])
        );
        assert_eq!(body["status"], json!(412));
    }

    #[test]
    fn unauthorized_challenges_bearer() {
        let (_, _, headers) = parts(Problem::unauthorized("missing key", false));
        assert!(headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
    }
}
