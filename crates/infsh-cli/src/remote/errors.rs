//! What can go wrong talking to a server, and which exit code each maps to
//! (docs/cli.md, "Exit codes"). Problem JSON (`{type, title, status,
//! detail}`) is read the way the official Python client reads it
//! (docs/client-wire-notes.md, "Response parsing"): the message is
//! `detail`, else `title`, else `message`.

use std::path::PathBuf;

use infsh_core::validate::FieldError;
use reqwest::StatusCode;
use serde_json::Value;

use super::snippet::snippet;
use crate::exit::{ExitCode, Failure};

/// Why a call to the server failed. Each variant keeps its cause
/// (`source()`), so `{:#}` in a log shows the whole chain; the user-facing
/// text and exit code come from [`RemoteError::into_failure`].
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// `--api-url` does not parse as a URL.
    #[error("--api-url {url:?} is not usable")]
    BadUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    /// `--api-url` parses, but is not an http(s) URL with a host.
    #[error("--api-url {url:?} is not usable: expected an http:// or https:// URL with a host")]
    NotHttp { url: String },
    /// The HTTP client could not be built (TLS setup).
    #[error("unexpected answer from {url}: cannot create an HTTP client")]
    Client {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// No answer: connection refused, DNS, TLS, timeout, a dropped connection.
    #[error("cannot reach the server at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// A task stream sent nothing, not even a heartbeat, for too long.
    #[error("cannot reach the server at {url}: the stream went silent")]
    StreamSilent { url: String },
    /// The server answered with an error status.
    #[error("the server answered HTTP {status}: {detail}")]
    Api {
        status: u16,
        /// The problem type's last segment (`.../errors/not_found` → `not_found`).
        code: Option<String>,
        detail: String,
        /// The whole problem document (Null when the body was not JSON).
        problem: Box<Value>,
    },
    /// The server answered 2xx with a body that is not JSON.
    #[error("unexpected answer from {url}: the answer is not JSON")]
    NotJson {
        url: String,
        /// The start of the body ([`snippet`]).
        body: String,
        #[source]
        source: serde_json::Error,
    },
    /// The server answered 2xx with JSON that is not the API.
    #[error("unexpected answer from {url}: {message}")]
    Protocol { url: String, message: String },
    /// A local file to upload could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A downloaded file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RemoteError {
    /// No answer from `url`: the request failed before a status came back.
    pub fn unreachable(url: &str, source: reqwest::Error) -> RemoteError {
        RemoteError::Unreachable {
            url: url.to_string(),
            source,
        }
    }

    pub fn from_response(status: StatusCode, text: &str) -> RemoteError {
        let problem: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let detail = ["detail", "title", "message"]
            .iter()
            .find_map(|k| problem.get(*k).and_then(Value::as_str))
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
            .or_else(|| {
                // 412 missing secrets: {"errors": [{"message": ...}]}.
                problem
                    .get("errors")
                    .and_then(Value::as_array)
                    .and_then(|e| e.first())
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                let body = snippet(text);
                if body.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("request failed")
                        .to_string()
                } else {
                    body
                }
            });
        let code = problem
            .get("type")
            .and_then(Value::as_str)
            .and_then(|t| t.rsplit_once("/errors/").map(|(_, c)| c.to_string()))
            .or_else(|| {
                problem
                    .get("code")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        RemoteError::Api {
            status: status.as_u16(),
            code,
            detail,
            problem: Box::new(problem),
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RemoteError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server answered 404: the app or task does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The server answered 4xx: the request is wrong, and retrying it
    /// unchanged will not help.
    pub fn is_client_error(&self) -> bool {
        self.status().is_some_and(|s| (400..500).contains(&s))
    }

    /// The server's own words for an error status (problem `detail`,
    /// `title` or `message`).
    pub fn detail(&self) -> Option<&str> {
        match self {
            RemoteError::Api { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// The problem document the server answered with, if any.
    pub fn problem(&self) -> Option<&Value> {
        match self {
            RemoteError::Api { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The user-facing failure with its exit code.
    pub fn into_failure(self) -> Failure {
        let code = match &self {
            RemoteError::BadUrl { .. } | RemoteError::NotHttp { .. } => ExitCode::Usage,
            RemoteError::Read { .. } | RemoteError::Write { .. } => ExitCode::Internal,
            RemoteError::Api {
                status,
                code,
                problem,
                ..
            } => return api_failure(*status, code.as_deref(), self.detail_owned(), problem),
            _ => ExitCode::Server,
        };
        let message = match &self {
            // The body goes last, after the parser's complaint.
            RemoteError::NotJson { url, body, source } => {
                format!("unexpected answer from {url}: the answer is not JSON ({source}): {body}")
            }
            // Only the client builder's own words, as it always read.
            RemoteError::Client { source, .. } => format!("{self}: {source}"),
            RemoteError::Unreachable { source, .. } => {
                format!("{self}: {}", unreachable_reason(source))
            }
            RemoteError::BadUrl { source, .. } => format!("{self}: {source}"),
            RemoteError::Read { source, .. } | RemoteError::Write { source, .. } => {
                format!("{self}: {source}")
            }
            _ => self.to_string(),
        };
        Failure::new(code, message)
    }

    fn detail_owned(&self) -> String {
        self.detail().unwrap_or_default().to_string()
    }
}

/// Why a request got no answer, in one clause: the innermost cause
/// (`Connection refused (os error 111)`), not reqwest's four levels of
/// wrapping around it, and for a refused connection what to check.
fn unreachable_reason(err: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = err;
    while let Some(inner) = root.source() {
        root = inner;
    }
    let reason = root.to_string();
    if err.is_connect() {
        format!("{reason}; is the server running there? (--api-url / INFSH_API_URL)")
    } else if err.is_timeout() && !reason.contains("timed out") {
        format!("timed out ({reason})")
    } else {
        reason
    }
}

/// An error status as the user sees it: exit code by status and problem
/// type, validation problems worded like a local run's, field errors listed.
fn api_failure(status: u16, code: Option<&str>, detail: String, problem: &Value) -> Failure {
    let exit = exit_code_for(status, code);
    // Validation problems: the same message as a local run.
    if let Some(failure) = validation_failure(problem) {
        return failure;
    }
    let mut message = match exit {
        ExitCode::Auth => format!(
            "the server refused the API key (HTTP {status}): {detail}; pass --api-key or set INFSH_API_KEY"
        ),
        ExitCode::Busy => format!("the server is busy (HTTP {status}): {detail}"),
        ExitCode::Server => format!("the server failed (HTTP {status}): {detail}"),
        _ => detail,
    };
    for (line, text) in field_errors(problem) {
        if !message.contains(&text) {
            message.push_str(&format!("\n  - {line}"));
        }
    }
    let failure = Failure::new(exit, message);
    match problem.get("traceback").and_then(Value::as_str) {
        Some(traceback) => failure.with_traceback(traceback),
        None => failure,
    }
}

impl From<RemoteError> for Failure {
    fn from(err: RemoteError) -> Failure {
        err.into_failure()
    }
}

/// Which exit code an error status (and problem type) means.
pub fn exit_code_for(status: u16, code: Option<&str>) -> ExitCode {
    if let Some(code) = code {
        match code {
            // 503 app_unavailable: the app failed to load; 412: missing
            // secrets; 500 invalid_schema: a schema of the app does not
            // compile; 503 no_matching_worker: no slot of the server can
            // host the app. None of them is helped by retrying, so not Busy.
            "app_unavailable"
            | "requirements_not_met"
            | "invalid_schema"
            | "no_matching_worker" => return ExitCode::AppLoad,
            "unauthorized" | "forbidden" => return ExitCode::Auth,
            "rate_limited" | "shutting_down" => return ExitCode::Busy,
            _ => {}
        }
    }
    match status {
        401 | 403 => ExitCode::Auth,
        412 => ExitCode::AppLoad,
        429 | 503 => ExitCode::Busy,
        400..=499 => ExitCode::Input,
        _ => ExitCode::Server,
    }
}

/// A 422 `{what, errors: [{path, message}]}` as `invalid_input` words it locally.
fn validation_failure(problem: &Value) -> Option<Failure> {
    let what = problem.get("what").and_then(Value::as_str)?;
    let errors: Vec<FieldError> = problem
        .get("errors")?
        .as_array()?
        .iter()
        .map(|e| {
            Some(FieldError {
                path: e.get("path")?.as_str()?.to_string(),
                message: e.get("message")?.as_str()?.to_string(),
            })
        })
        .collect::<Option<_>>()?;
    if errors.is_empty() {
        return None;
    }
    // The engine says `input`; a local run says `input for function "f"`.
    Some(crate::errors::invalid_input(what, &errors))
}

/// `(path: message, message)` of each item of a problem's `errors` list.
fn field_errors(problem: &Value) -> Vec<(String, String)> {
    let Some(errors) = problem.get("errors").and_then(Value::as_array) else {
        return Vec::new();
    };
    errors
        .iter()
        .filter_map(|e| {
            let message = ["message", "msg", "detail"]
                .iter()
                .find_map(|k| e.get(*k).and_then(Value::as_str))?;
            let place = ["path", "field", "pointer", "loc", "key"]
                .iter()
                .find_map(|k| e.get(*k).and_then(Value::as_str))
                .filter(|p| !p.is_empty());
            let line = match place {
                Some(place) => format!("{place}: {message}"),
                None => message.to_string(),
            };
            Some((line, message.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn api(status: u16, body: Value) -> Failure {
        RemoteError::from_response(StatusCode::from_u16(status).unwrap(), &body.to_string())
            .into_failure()
    }

    #[test]
    fn problem_json_maps_to_exit_codes() {
        let f = api(
            404,
            json!({"type": "https://api.inference.sh/errors/not_found", "title": "Not Found", "status": 404, "detail": "unknown app \"a/b\""}),
        );
        assert_eq!(f.code, ExitCode::Input);
        assert_eq!(f.message, "unknown app \"a/b\"");
        assert_eq!(
            api(401, json!({"title": "Unauthorized"})).code,
            ExitCode::Auth
        );
        assert_eq!(
            api(429, json!({"detail": "queue full"})).code,
            ExitCode::Busy
        );
        assert_eq!(
            api(503, json!({"detail": "shutting down"})).code,
            ExitCode::Busy
        );
        assert_eq!(api(500, json!({"detail": "kaboom"})).code, ExitCode::Server);
        let schema = api(
            500,
            json!({"type": "https://infsh.dev/errors/invalid_schema", "status": 500,
                   "detail": "function \"run\" is refused: its input schema does not compile: x"}),
        );
        assert_eq!(
            (schema.code, schema.message.as_str()),
            (
                ExitCode::AppLoad,
                "function \"run\" is refused: its input schema does not compile: x"
            )
        );
        let secrets = api(
            412,
            json!({"errors": [{"type": "secret", "key": "HF_TOKEN", "message": "missing secret HF_TOKEN"}]}),
        );
        assert_eq!(secrets.code, ExitCode::AppLoad);
        assert_eq!(secrets.message, "missing secret HF_TOKEN");
        let unavailable = api(
            503,
            json!({"type": "https://infsh.dev/errors/app_unavailable", "detail": "app \"a/b\" failed to load: boom", "traceback": "Traceback ...\nImportError: boom"}),
        );
        assert_eq!(unavailable.code, ExitCode::AppLoad);
        assert!(unavailable.traceback.unwrap().contains("ImportError"));
        let busy = api(
            503,
            json!({"type": "https://infsh.dev/errors/shutting_down", "detail": "the server is shutting down"}),
        );
        assert_eq!(busy.code, ExitCode::Busy);
        let nowhere = api(
            503,
            json!({"type": "https://infsh.dev/errors/no_matching_worker", "status": 503,
                   "detail": "acme/big needs 2 nvidia GPUs with 80 GB each; the largest slot here is gpus [0] (1 GPU, 80 GB)",
                   "app": "acme/big", "needs": "2 nvidia GPUs with 80 GB each"}),
        );
        assert_eq!(
            (nowhere.code, nowhere.message.as_str()),
            (
                ExitCode::AppLoad,
                "acme/big needs 2 nvidia GPUs with 80 GB each; the largest slot here is gpus [0] (1 GPU, 80 GB)"
            )
        );
    }

    #[test]
    fn validation_problems_read_like_local_ones() {
        let f = api(
            422,
            json!({"type": "https://infsh.dev/errors/validation_error", "detail": "x", "what": "input for function \"run\"", "errors": [{"path": "text", "message": "required field missing"}]}),
        );
        assert_eq!(f.code, ExitCode::Input);
        assert_eq!(
            f.message,
            "input for function \"run\" is invalid:\n  - text: required field missing"
        );
    }

    #[test]
    fn field_errors_are_listed_once() {
        let f = api(
            422,
            json!({"detail": "input is invalid", "errors": [{"path": "n", "message": "\"x\" is not of type \"integer\""}]}),
        );
        assert_eq!(f.code, ExitCode::Input);
        assert_eq!(
            f.message,
            "input is invalid\n  - n: \"x\" is not of type \"integer\""
        );
    }

    #[test]
    fn a_plain_text_error_is_shown() {
        let f = RemoteError::from_response(StatusCode::INTERNAL_SERVER_ERROR, "internal kaboom")
            .into_failure();
        assert_eq!(f.code, ExitCode::Server);
        assert_eq!(f.message, "the server failed (HTTP 500): internal kaboom");
    }

    #[test]
    fn status_helpers_read_the_answer() {
        let not_found = RemoteError::from_response(
            StatusCode::NOT_FOUND,
            r#"{"detail": "unknown task \"t\""}"#,
        );
        assert!(matches!(not_found, RemoteError::Api { status: 404, .. }));
        assert!(not_found.is_not_found());
        assert!(not_found.is_client_error());
        assert_eq!(not_found.status(), Some(404));
        assert_eq!(not_found.detail(), Some("unknown task \"t\""));
        let failed = RemoteError::from_response(StatusCode::BAD_GATEWAY, "");
        assert!(!failed.is_not_found() && !failed.is_client_error());
        assert_eq!(failed.detail(), Some("Bad Gateway"));
        let no_answer = RemoteError::NotHttp {
            url: "ftp://h".into(),
        };
        assert_eq!((no_answer.status(), no_answer.detail()), (None, None));
        assert!(!no_answer.is_client_error());
    }

    #[test]
    fn a_bad_url_keeps_the_parser_error_as_its_cause() {
        let Err(err) = crate::remote::Remote::new("127.0.0.1:8080", None) else {
            panic!("a URL without a scheme is refused");
        };
        assert!(matches!(err, RemoteError::BadUrl { .. }), "{err:?}");
        let cause = std::error::Error::source(&err).expect("a cause");
        assert!(cause.downcast_ref::<url::ParseError>().is_some());
        // What logs show: the message, then its cause.
        let logged = format!("{:#}", anyhow::Error::new(err));
        assert_eq!(
            logged,
            "--api-url \"127.0.0.1:8080\" is not usable: relative URL without a base"
        );
        let Err(err) = crate::remote::Remote::new("ftp://h", None) else {
            panic!("ftp is refused");
        };
        assert!(matches!(err, RemoteError::NotHttp { .. }));
        let failure = err.into_failure();
        assert_eq!(failure.code, ExitCode::Usage);
        assert_eq!(
            failure.message,
            "--api-url \"ftp://h\" is not usable: expected an http:// or https:// URL with a host"
        );
    }

    #[tokio::test]
    async fn no_answer_keeps_the_http_error_as_its_cause() {
        // A port that was just free: the connection is refused at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let remote = crate::remote::Remote::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let err = remote.task("t").await.unwrap_err();
        let RemoteError::Unreachable { url, source } = &err else {
            panic!("expected Unreachable, got {err:?}");
        };
        assert_eq!(url, &format!("http://127.0.0.1:{port}/v1/tasks/t"));
        assert!(source.is_connect(), "{source:?}");
        let prefix = format!("cannot reach the server at http://127.0.0.1:{port}/v1/tasks/t: ");
        assert!(format!("{:#}", anyhow::Error::new(err)).starts_with(&prefix));
        let failure = remote.task("t").await.unwrap_err().into_failure();
        assert_eq!(failure.code, ExitCode::Server);
        assert!(failure.message.starts_with(&prefix), "{}", failure.message);
        assert_eq!(
            failure.message,
            format!("{prefix}Connection refused (os error 111); is the server running there? (--api-url / INFSH_API_URL)"),
            "one line with the root cause, not reqwest's wrapping"
        );
    }

    #[tokio::test]
    async fn a_missing_upload_keeps_the_io_error_as_its_cause() {
        let remote = crate::remote::Remote::new("http://127.0.0.1:9", None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone.png");
        let err = remote.upload(&missing).await.unwrap_err();
        let RemoteError::Read { path, source } = &err else {
            panic!("expected Read, got {err:?}");
        };
        assert_eq!(path, &missing);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        let failure = err.into_failure();
        assert_eq!(failure.code, ExitCode::Internal);
        assert_eq!(
            failure.message,
            format!(
                "cannot read {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_quoted_after_the_parser_error() {
        let source = serde_json::from_str::<Value>("<html>").unwrap_err();
        let err = RemoteError::NotJson {
            url: "http://h/v1/run".into(),
            body: snippet("<html>"),
            source,
        };
        assert!(std::error::Error::source(&err)
            .unwrap()
            .is::<serde_json::Error>());
        let failure = err.into_failure();
        assert_eq!(failure.code, ExitCode::Server);
        assert_eq!(
            failure.message,
            "unexpected answer from http://h/v1/run: the answer is not JSON (expected value at line 1 column 1): <html>"
        );
    }
}
