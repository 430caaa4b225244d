//! What can go wrong talking to a server, and which exit code each maps to
//! (docs/cli.md, "Exit codes"). Problem JSON (`{type, title, status,
//! detail}`) is read the way the official Python client reads it: the
//! message is `detail`, else `title`, else `message`.

use infsh_core::validate::FieldError;
use reqwest::StatusCode;
use serde_json::Value;

use crate::exit::{ExitCode, Failure};

#[derive(Debug)]
pub enum RemoteError {
    /// `--api-url` is not an http(s) URL.
    BadUrl { url: String, message: String },
    /// No answer: connection refused, DNS, TLS, timeout, a dropped connection.
    Unreachable { url: String, message: String },
    /// The server answered with an error status.
    Api {
        status: u16,
        /// The problem type's last segment (`.../errors/not_found` → `not_found`).
        code: Option<String>,
        detail: String,
        /// The whole problem document (Null when the body was not JSON).
        problem: Box<Value>,
    },
    /// The server answered 2xx with something that is not the API.
    Protocol { url: String, message: String },
    /// A local file could not be read or written.
    Local { message: String },
}

impl RemoteError {
    pub fn from_reqwest(url: &str, err: reqwest::Error) -> RemoteError {
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(inner) = source {
            let text = inner.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = inner.source();
        }
        RemoteError::Unreachable {
            url: url.to_string(),
            message,
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
                let body = super::snippet::snippet(text);
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

    /// The user-facing failure with its exit code.
    pub fn into_failure(self) -> Failure {
        match self {
            RemoteError::BadUrl { url, message } => Failure::new(
                ExitCode::Usage,
                format!("--api-url {url:?} is not usable: {message}"),
            ),
            RemoteError::Unreachable { url, message } => Failure::new(
                ExitCode::Server,
                format!("cannot reach the server at {url}: {message}"),
            ),
            RemoteError::Protocol { url, message } => Failure::new(
                ExitCode::Server,
                format!("unexpected answer from {url}: {message}"),
            ),
            RemoteError::Local { message } => Failure::new(ExitCode::Internal, message),
            RemoteError::Api {
                status,
                code,
                detail,
                problem,
                ..
            } => {
                let exit = exit_code_for(status, code.as_deref());
                // Validation problems: the same message as a local run.
                if let Some(failure) = validation_failure(&problem) {
                    return failure;
                }
                let mut message = match exit {
                    ExitCode::Auth => format!(
                        "the server refused the API key (HTTP {status}): {detail}; pass --api-key or set INFSH_API_KEY"
                    ),
                    ExitCode::Busy => format!("the server is busy (HTTP {status}): {detail}"),
                    ExitCode::Server => format!("the server failed (HTTP {status}): {detail}"),
                    _ => detail.clone(),
                };
                for (line, text) in field_errors(&problem) {
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
        }
    }
}

impl From<RemoteError> for Failure {
    fn from(err: RemoteError) -> Failure {
        err.into_failure()
    }
}

impl From<RemoteError> for anyhow::Error {
    fn from(err: RemoteError) -> anyhow::Error {
        anyhow::Error::new(err.into_failure())
    }
}

/// Which exit code an error status (and problem type) means.
pub fn exit_code_for(status: u16, code: Option<&str>) -> ExitCode {
    if let Some(code) = code {
        match code {
            // 503 app_unavailable: the app failed to load; 412: missing
            // secrets; 500 invalid_schema: a schema of the app does not compile.
            "app_unavailable" | "requirements_not_met" | "invalid_schema" => {
                return ExitCode::AppLoad
            }
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
}
