//! Reading task snapshots as the API renders them (`{id, status, app,
//! function, input, output, error, logs, created_at, updated_at}`; statuses
//! are infsh-core's [`TaskStatus`]), and turning a task that ended badly into the CLI's
//! failure and exit code.

use infsh_core::TaskStatus;
use serde_json::Value;

use crate::exit::{ExitCode, Failure};

/// The status of a snapshot: its number, or a name as some servers send it
/// (the one table: [`TaskStatus`]).
pub fn status(task: &Value) -> Option<TaskStatus> {
    match task.get("status")? {
        Value::Number(n) => TaskStatus::from_number(n.as_u64()?),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The lower-case name of a snapshot's status (`unknown` when it has none).
pub fn status_name(status: Option<TaskStatus>) -> &'static str {
    status.unwrap_or(TaskStatus::Unknown).as_str()
}

pub fn is_terminal(status: Option<TaskStatus>) -> bool {
    status.is_some_and(TaskStatus::is_terminal)
}

pub fn id(task: &Value) -> &str {
    task.get("id").and_then(Value::as_str).unwrap_or("?")
}

/// The task's app as `ns/name` (a string, or an AppDTO-like object).
pub fn app(task: &Value) -> Option<String> {
    match task.get("app")? {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => ["id", "name"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str))
            .map(str::to_string),
        _ => None,
    }
}

pub fn function(task: &Value) -> Option<&str> {
    task.get("function").and_then(Value::as_str)
}

pub fn error(task: &Value) -> Option<String> {
    match task.get("error")? {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(
            other
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| other.to_string()),
        ),
    }
}

/// The text of every log entry of a snapshot, in order.
pub fn log_texts(task: &Value) -> Vec<String> {
    log_entries(task)
        .into_iter()
        .map(|(_, text)| text)
        .collect()
}

/// `TASK`: the log type of what the server itself says about a task.
pub const LOG_TASK: u64 = 4;

/// Every log entry of a snapshot: `(log_type, text)`.
pub fn log_entries(task: &Value) -> Vec<(Option<u64>, String)> {
    let Some(logs) = task.get("logs").and_then(Value::as_array) else {
        return Vec::new();
    };
    logs.iter()
        .map(|entry| match entry {
            Value::String(s) => (None, s.clone()),
            other => (
                other.get("log_type").and_then(Value::as_u64),
                ["content", "message", "line", "text"]
                    .iter()
                    .find_map(|k| other.get(*k).and_then(Value::as_str))
                    .map(str::to_string)
                    .unwrap_or_default(),
            ),
        })
        .collect()
}

/// A Python traceback the server logged about the task (not the app's own output).
pub fn is_traceback_entry(log_type: Option<u64>, text: &str) -> bool {
    log_type == Some(LOG_TASK) && text.starts_with("Traceback (most recent call last)")
}

/// A timestamp field as text (RFC 3339 strings as they are; Unix
/// milliseconds as seconds since the epoch).
pub fn timestamp(task: &Value, key: &str) -> Option<String> {
    match task.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Why a task that ended without completing failed, as the CLI reports it
/// (worded like the local run's failure, with the task id).
pub fn failure(task: &Value) -> Failure {
    let id = id(task);
    let status = status(task);
    let error = error(task);
    match status {
        Some(TaskStatus::Cancelled) => Failure::new(
            ExitCode::Function,
            format!("task {id} was cancelled{}", suffix(&error)),
        ),
        Some(TaskStatus::Rejected) => Failure::new(
            ExitCode::Input,
            format!("task {id} was rejected{}", suffix(&error)),
        ),
        _ => {
            let error = error.unwrap_or_else(|| "no error message".into());
            let code = failed_exit_code(&error);
            let message = match code {
                ExitCode::Function => format!("the function raised {error} (task {id})"),
                _ => format!("{error} (task {id})"),
            };
            Failure::new(code, message)
        }
    }
}

fn suffix(error: &Option<String>) -> String {
    match error {
        Some(e) => format!(": {e}"),
        None => String::new(),
    }
}

/// The exit code of a FAILED task, from its error text: the engine words
/// load errors, timeouts, lost workers, setup failures, interrupted tasks
/// and rejected input distinctly (crates/infsh-engine/src/runner.rs).
/// Anything else is the function's own exception.
pub fn failed_exit_code(error: &str) -> ExitCode {
    let lower = error.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if has(&["failed to load"]) {
        ExitCode::AppLoad
    } else if has(&["timed out"]) {
        ExitCode::Timeout
    } else if has(&[
        "worker exited",
        "worker process died",
        "worker protocol error",
    ]) {
        ExitCode::WorkerCrashed
    } else if lower.starts_with("setup failed") {
        ExitCode::Setup
    } else if lower.starts_with("interrupted: the server stopped") {
        ExitCode::Server
    } else if lower.starts_with("invalid input") || lower.starts_with("input file") {
        ExitCode::Input
    } else {
        ExitCode::Function
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_are_numbers_or_names() {
        use TaskStatus::*;
        assert_eq!(status(&json!({"status": 7})), Some(Running));
        assert_eq!(status(&json!({"status": "completed"})), Some(Completed));
        assert_eq!(status(&json!({"status": "CANCELED"})), Some(Cancelled));
        assert_eq!(status(&json!({"status": "setting-up"})), Some(SettingUp));
        assert_eq!(status(&json!({"status": "2"})), Some(Queued));
        assert_eq!(status(&json!({"status": "99"})), None);
        assert_eq!(status(&json!({"status": 99})), None);
        assert_eq!(status(&json!({"status": 10.5})), None);
        assert_eq!(status(&json!({})), None);
        assert_eq!(status_name(Some(Failed)), "failed");
        assert_eq!(status_name(None), "unknown");
        assert!(is_terminal(Some(Rejected)) && !is_terminal(Some(Uploading)) && !is_terminal(None));
    }

    #[test]
    fn log_entries_of_any_shape_give_their_text() {
        let task = json!({"logs": [{"log_type": 4, "content": "a\nb"}, "c", {"x": 1}]});
        assert_eq!(log_texts(&task), vec!["a\nb", "c", ""]);
    }

    #[test]
    fn failures_map_to_exit_codes() {
        let f = failure(
            &json!({"id": "t1", "status": 11, "error": "ZeroDivisionError: division by zero"}),
        );
        assert_eq!(
            (f.code, f.message.as_str()),
            (
                ExitCode::Function,
                "the function raised ZeroDivisionError: division by zero (task t1)"
            )
        );
        let code = |e: &str| failed_exit_code(e);
        assert_eq!(
            code("app \"a/b\" failed to load: the worker exited (signal 9) while starting"),
            ExitCode::AppLoad
        );
        assert_eq!(code("setup timed out after 3s"), ExitCode::Timeout);
        assert_eq!(
            code("setup failed: the worker exited (exit status: 1) during setup"),
            ExitCode::WorkerCrashed
        );
        assert_eq!(
            code("setup failed: ValueError: setup exploded"),
            ExitCode::Setup
        );
        assert_eq!(
            code("the worker exited (signal 9) while running the task"),
            ExitCode::WorkerCrashed
        );
        assert_eq!(
            code("interrupted: the server stopped while the task was running"),
            ExitCode::Server
        );
        assert_eq!(code("invalid input: steps: too big"), ExitCode::Input);
        assert_eq!(code("TimeoutError: upstream"), ExitCode::Function);
        assert_eq!(
            failure(&json!({"id": "t", "status": 11, "error": "timed out after 1s"})).code,
            ExitCode::Timeout
        );
        assert_eq!(
            failure(&json!({"id": "t", "status": 11, "error": "setup failed: boom"})).code,
            ExitCode::Setup
        );
        assert_eq!(
            failure(&json!({"id": "t", "status": 12})).message,
            "task t was cancelled"
        );
        assert_eq!(
            failure(&json!({"id": "t", "status": 13, "error": "bad"})).code,
            ExitCode::Input
        );
    }
}
