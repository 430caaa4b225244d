//! The error response sets the handlers' `#[utoipa::path(responses(...))]`
//! name: one enum per family of routes, each variant a status with the
//! problem JSON it carries (problem.rs makes the real ones). Documentation
//! only: no value of these types is ever built.

use utoipa::IntoResponses;

use crate::dto::TaskEnvelope;
use crate::problem::ProblemDoc;

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum AuthErrors {
    /// Missing or wrong API key (`WWW-Authenticate: Bearer`).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
}

/// What every run route answers on success.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum RunAnswer {
    /// The task (ended, with its output, when waited for)
    #[response(
        status = 200,
        headers(("Server-Timing" = String, description = "With `wait` on a server started with `--server-timing`: the task's time inside the server by stage, in ms (docs/http-api.md)"))
    )]
    Task(TaskEnvelope),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum RunErrors {
    /// Malformed JSON or a body of the wrong shape; `session_timeout` out
    /// of 1..=3600 or without `"session": "new"`; `APP_MISMATCH`: the
    /// session belongs to another app.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// Unknown app or function (`available` lists the existing ones), or
    /// `SESSION_NOT_FOUND`: an unknown session id.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
    /// `SESSION_ENDED` (ended, or its worker died: `reason`) or
    /// `SESSION_EXPIRED` (idle past its timeout).
    #[response(status = 410, content_type = "application/problem+json")]
    Gone(ProblemDoc),
    /// Required secrets are missing (`errors: [{type, key, message, action}]`).
    #[response(status = 412, content_type = "application/problem+json")]
    RequirementsNotMet(ProblemDoc),
    /// Body over the server's limit.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemDoc),
    /// Body not sent as `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDoc),
    /// Input (or setup) fails the function's schema (`errors: [{path, message}]`),
    /// or no function named and the app has no default.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(ProblemDoc),
    /// The request body stalled for `--body-timeout` (the connection is closed).
    #[response(status = 408, content_type = "application/problem+json")]
    BodyTimeout(ProblemDoc),
    /// `rate_limited`: the app's queue is full, or this API key (client
    /// address without keys) is past `--rate-limit` (`Retry-After`).
    #[response(status = 429, content_type = "application/problem+json")]
    QueueFull(ProblemDoc),
    /// `invalid_schema`: the function's input schema or the app's setup
    /// schema does not compile (the app's fault; `app`, `function`,
    /// `schema`); or a storage failure.
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(ProblemDoc),
    /// The app failed to load, no slot of this machine can host it
    /// (`no_matching_worker`: `app`, `needs`), or the server is shutting down.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum TaskErrors {
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// Unknown task.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum StreamErrors {
    /// `invalid query string`: `deltas` is not `true` or `false`.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// Unknown task.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
    /// `too_many_streams`: the task, or this API key (client address
    /// without keys), already has the most open streams allowed (`scope`,
    /// `limit`).
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyStreams(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum CancelErrors {
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// Unknown task.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
    /// The task already ended (`task_status` says how).
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ListErrors {
    /// Bad `limit`, `status` or query string.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum CreateFileErrors {
    /// Malformed JSON, wrong shape, or an empty `files` list.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// The request body stalled for `--body-timeout` (the connection is closed).
    #[response(status = 408, content_type = "application/problem+json")]
    BodyTimeout(ProblemDoc),
    /// Body over `--max-json-mib` (`limited_by` names the flag).
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemDoc),
    /// Body not sent as `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum UploadErrors {
    /// The upload ended short of its registered size, or was cut off.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// Missing, forged or expired upload token.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(ProblemDoc),
    /// Malformed or unknown file id.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
    /// The request body stalled for `--body-timeout` (the connection is closed).
    #[response(status = 408, content_type = "application/problem+json")]
    BodyTimeout(ProblemDoc),
    /// Body over `--max-upload-gib` or the file's registered size
    /// (`limited_by` names which).
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum DownloadErrors {
    /// A private file asked for with neither `?sig=` nor a key, or with a
    /// wrong, revoked or expired key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// A tampered (`invalid_signature`) or expired (`signature_expired`)
    /// `?sig=`, or a key without `files:read` (`insufficient_scope`).
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(ProblemDoc),
    /// Malformed or unknown file id (or another team's), or no bytes uploaded yet.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
    /// A `Range` that starts past the end (`Content-Range: bytes */SIZE`).
    #[response(status = 416, content_type = "application/problem+json")]
    RangeNotSatisfiable(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum AppErrors {
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// Unknown app (`available` lists the hosted ones).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
    /// The app failed to load.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum DrainEngineErrors {
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// `unknown_engine`: not this server's engine name (`GET /engines`).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum DrainAppErrors {
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// Unknown app (`available` lists the hosted ones).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum SessionErrors {
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// `SESSION_NOT_FOUND`: unknown session id (none survives a restart).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
    /// Keepalive only: `SESSION_ENDED` or `SESSION_EXPIRED`.
    #[response(status = 410, content_type = "application/problem+json")]
    Gone(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum DeleteTaskErrors {
    /// A bad `role` or `files` value.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// Unknown task.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
    /// The task has not ended: cancel it first (`task_status`).
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum KeyErrors {
    /// An empty name, an unknown scope, a bad body.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// Missing, wrong, revoked or expired API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// `insufficient_scope`: the key lacks `apikeys:write`, or asked for a
    /// scope or team it does not have itself (`scope` names it).
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(ProblemDoc),
    /// Unknown key id (revoke).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
    /// The request body stalled for `--body-timeout` (the connection is closed).
    #[response(status = 408, content_type = "application/problem+json")]
    BodyTimeout(ProblemDoc),
    /// Body over the server's limit.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemDoc),
    /// Body not sent as `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum TaskFilesErrors {
    /// A bad `role`.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// Unknown task.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum FileRecordErrors {
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// Malformed or unknown file id.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
}

#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum VersionErrors {
    /// Not an app package (`bad_package`), or a version prefix that
    /// several versions begin with (`ambiguous_version`).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// Missing or wrong API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemDoc),
    /// The key lacks the scope.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(ProblemDoc),
    /// Unknown app version.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemDoc),
    /// `version_conflict`: the current version or one with live sessions
    /// cannot be removed; a version that is not ready cannot become
    /// current; one being built cannot be deployed again meanwhile.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(ProblemDoc),
    /// `version_failed`: its environment or import failed (`traceback`);
    /// it is kept as failed and never becomes current.
    #[response(status = 422, content_type = "application/problem+json")]
    Failed(ProblemDoc),
}
