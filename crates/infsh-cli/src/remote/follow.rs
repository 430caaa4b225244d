//! Following a remote task to its end through `GET /v1/tasks/{id}/stream`
//! (NDJSON: one full snapshot per line, heartbeats between), with the same
//! display as a local run: one phase per status (queued, start, setup,
//! run F), the app's log lines as they arrive, a snapshot count for
//! streaming functions. A dropped stream is reopened (the server starts
//! every stream with the current snapshot, so nothing is lost); Ctrl-C and
//! `--timeout` cancel the remote task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infsh_core::TaskStatus;
use infsh_worker::{LogLine, LogStream};
use serde_json::Value;

use super::client::Remote;
use super::errors::RemoteError;
use super::interrupt::Interrupt;
use super::task;
use crate::deadline::{deadline_after, sleep_until};
use crate::exit::{ExitCode, Failure};
use crate::ui::{Phase, Ui};

/// No byte at all (not even a heartbeat) for this long: reopen the stream.
const IDLE_LIMIT: Duration = Duration::from_secs(75);
/// Give up after this many failed attempts in a row to reach the server.
const MAX_CONSECUTIVE_FAILURES: u32 = 20;
/// After a cancel, how long to wait for the task to really end.
const CANCEL_WAIT: Duration = Duration::from_secs(15);

/// A task that ended, and what was seen on the way.
pub struct Followed {
    /// The terminal snapshot.
    pub task: Value,
    /// Output snapshots seen while the task ran (streaming functions).
    pub snapshots: usize,
    pub queued_seconds: Option<f64>,
    pub run_seconds: Option<f64>,
    pub total_seconds: f64,
    /// The Python traceback the server logged for a failed task.
    pub traceback: Option<String>,
}

/// Follows task `id` until it ends. `Ok` holds every terminal snapshot
/// (completed or not); `Err` is a transport failure, an interruption or a
/// timeout (the remote task is cancelled for both).
/// `interrupt` was listening since before the task was submitted, so a
/// Ctrl-C from then on cancels it.
pub async fn follow(
    remote: &Remote,
    id: &str,
    ui: &Arc<Ui>,
    function: &str,
    timeout: Option<f64>,
    interrupt: &mut Interrupt,
) -> Result<Followed, Failure> {
    let mut tracker = Tracker::new(ui.clone(), function);
    let deadline = deadline_after(timeout);
    enum Stop {
        CtrlC,
        Timeout(f64),
    }
    let outcome = {
        let run = until_terminal(remote, id, &mut tracker);
        tokio::select! {
            result = run => Ok(result),
            _ = interrupt.recv() => Err(Stop::CtrlC),
            _ = sleep_until(deadline) => Err(Stop::Timeout(timeout.unwrap_or_default())),
        }
    };
    match outcome {
        Ok(Ok(terminal)) => {
            tracker.end(&terminal);
            Ok(tracker.into_followed(terminal))
        }
        Ok(Err(err)) => {
            tracker.abandon();
            Err(err.into_failure())
        }
        Err(stop) => {
            let cancel = remote.cancel(id).await;
            // Wait (bounded; a second Ctrl-C stops waiting) for the task to
            // really stop, so `on_cancel` output still shows.
            let ended = tokio::select! {
                r = tokio::time::timeout(CANCEL_WAIT, until_terminal(remote, id, &mut tracker)) => r.ok().and_then(Result::ok),
                _ = interrupt.recv() => None,
            };
            tracker.abandon();
            let what = match &ended {
                Some(t) => format!(
                    "the remote task {id} was cancelled (status: {})",
                    task::status_name(task::status(t))
                ),
                None => match cancel {
                    Ok(_) => format!("the remote task {id} was asked to cancel"),
                    Err(e) => format!(
                        "cancelling the remote task {id} failed: {}",
                        e.into_failure().message
                    ),
                },
            };
            Err(match stop {
                Stop::CtrlC => Failure::new(
                    ExitCode::Interrupted,
                    format!("interrupted during function {function}; {what}"),
                ),
                Stop::Timeout(secs) => Failure::new(
                    ExitCode::Timeout,
                    format!("function {function} timed out after {secs}s; {what}"),
                ),
            })
        }
    }
}

/// Reads streams (reopening dropped ones) until a terminal snapshot.
async fn until_terminal(
    remote: &Remote,
    id: &str,
    tracker: &mut Tracker,
) -> Result<Value, RemoteError> {
    let mut failures = 0u32;
    loop {
        match remote.stream(id).await {
            Ok(mut response) => {
                failures = 0;
                let mut buffer = Vec::new();
                // Until the stream ends or drops without a terminal line;
                // then reconcile below.
                while let Ok(Some(line)) = next_line(&mut response, &mut buffer).await {
                    if let Some(snapshot) = parse_line(&line) {
                        tracker.observe(&snapshot);
                        if task::is_terminal(task::status(&snapshot)) {
                            return Ok(snapshot);
                        }
                    }
                }
            }
            // The task does not exist (or the key is refused): no retry helps.
            Err(err) if err.is_client_error() => return Err(err),
            Err(err) => {
                failures += 1;
                if failures >= MAX_CONSECUTIVE_FAILURES {
                    return Err(err);
                }
            }
        }
        match remote.task(id).await {
            Ok(snapshot) => {
                tracker.observe(&snapshot);
                if task::is_terminal(task::status(&snapshot)) {
                    return Ok(snapshot);
                }
            }
            Err(err) if err.is_client_error() => return Err(err),
            Err(err) => {
                failures += 1;
                if failures >= MAX_CONSECUTIVE_FAILURES {
                    return Err(err);
                }
            }
        }
        let backoff = Duration::from_millis(250 * u64::from(failures.clamp(1, 8)));
        tokio::time::sleep(backoff).await;
    }
}

/// The next line of an NDJSON body; `None` at its end. A line is returned
/// as soon as its `\n` arrives.
async fn next_line(
    response: &mut reqwest::Response,
    buffer: &mut Vec<u8>,
) -> Result<Option<String>, RemoteError> {
    loop {
        if let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            return Ok(Some(String::from_utf8_lossy(&line).trim().to_string()));
        }
        let chunk = tokio::time::timeout(IDLE_LIMIT, response.chunk())
            .await
            .map_err(|_| RemoteError::StreamSilent {
                url: response.url().to_string(),
            })?
            .map_err(|e| RemoteError::unreachable(response.url().as_str(), e))?;
        match chunk {
            Some(bytes) => buffer.extend_from_slice(&bytes),
            None if buffer.is_empty() => return Ok(None),
            None => {
                let rest = std::mem::take(buffer);
                return Ok(Some(String::from_utf8_lossy(&rest).trim().to_string()));
            }
        }
    }
}

/// A snapshot from one NDJSON line; heartbeats, blanks and junk are `None`.
fn parse_line(line: &str) -> Option<Value> {
    if line.is_empty() {
        return None;
    }
    let value: Value = serde_json::from_str(line).ok()?;
    if value.get("type").and_then(Value::as_str) == Some("heartbeat") {
        return None;
    }
    // `{"data": X, "fields": [...]}` carries X, as the official client reads
    // it (docs/client-wire-notes.md, "Line parsing").
    let value = match value {
        Value::Object(mut map) if map.contains_key("data") && map.contains_key("fields") => {
            map.remove("data").unwrap_or(Value::Null)
        }
        other => other,
    };
    (value.is_object() && value.get("status").is_some()).then_some(value)
}

/// What the display shows for a status.
fn phase_label(status: TaskStatus, function: &str) -> Option<String> {
    use TaskStatus::*;
    match status {
        Unknown | Received | Queued => Some("queued".into()),
        Dispatched | Preparing | Serving => Some("start".into()),
        SettingUp => Some("setup".into()),
        Running => Some(format!("run {function}")),
        Cancelling => Some("cancelling".into()),
        Uploading => Some("upload".into()),
        Completed | Failed | Cancelled | Rejected => None,
    }
}

/// Turns snapshots into the progress display.
struct Tracker {
    ui: Arc<Ui>,
    function: String,
    phase: Option<(String, Phase)>,
    logs_seen: usize,
    last_output: Option<Value>,
    snapshots: usize,
    started: Instant,
    running_since: Option<Instant>,
    queued_seconds: Option<f64>,
    ended_at: Option<Instant>,
    traceback: Option<String>,
}

impl Tracker {
    fn new(ui: Arc<Ui>, function: &str) -> Tracker {
        Tracker {
            ui,
            function: function.to_string(),
            phase: None,
            logs_seen: 0,
            last_output: None,
            snapshots: 0,
            started: Instant::now(),
            running_since: None,
            queued_seconds: None,
            ended_at: None,
            traceback: None,
        }
    }

    fn observe(&mut self, snapshot: &Value) {
        let Some(status) = task::status(snapshot) else {
            return;
        };
        self.show_new_logs(snapshot);
        // The stream carries the latest state, so a quick call can go from
        // setup to UPLOADING/COMPLETED without a RUNNING snapshot: it ran all
        // the same, and the display says so.
        let ran = matches!(
            status,
            TaskStatus::Running | TaskStatus::Uploading | TaskStatus::Completed
        );
        if ran && self.running_since.is_none() {
            self.running_since = Some(Instant::now());
            self.queued_seconds = Some(self.started.elapsed().as_secs_f64());
            self.enter_phase(format!("run {}", self.function));
        }
        if let Some(label) = phase_label(status, &self.function) {
            self.enter_phase(label);
        }
        if status == TaskStatus::Running {
            let output = snapshot.get("output").filter(|o| !o.is_null());
            if let Some(output) = output {
                if self.last_output.as_ref() != Some(output) {
                    self.snapshots += 1;
                    self.last_output = Some(output.clone());
                    if let Some((_, phase)) = &self.phase {
                        phase.set_detail(&crate::ui::snapshot_detail(self.snapshots, output));
                    }
                }
            }
        }
    }

    /// Ends the phase on screen (if another) and starts `label`.
    fn enter_phase(&mut self, label: String) {
        if matches!(&self.phase, Some((current, _)) if *current == label) {
            return;
        }
        if let Some((_, phase)) = self.phase.take() {
            phase.finish("");
        }
        let phase = self.ui.phase(&label);
        self.phase = Some((label, phase));
    }

    /// Log entries the previous snapshots did not have. A traceback the
    /// server logged is kept for the failure report (shown once, at the
    /// end, like a local run's), not printed among the app's lines.
    fn show_new_logs(&mut self, snapshot: &Value) {
        let entries = task::log_entries(snapshot);
        if entries.len() < self.logs_seen {
            // The server trimmed its list: show nothing twice.
            self.logs_seen = entries.len();
            return;
        }
        for (log_type, text) in &entries[self.logs_seen..] {
            if task::is_traceback_entry(*log_type, text) {
                self.traceback = Some(text.clone());
                continue;
            }
            let text = text.strip_suffix('\n').unwrap_or(text);
            for line in text.split('\n') {
                self.ui.app_log(&LogLine {
                    stream: LogStream::Stdout,
                    line: line.trim_end_matches('\r').to_string(),
                });
            }
        }
        self.logs_seen = entries.len();
    }

    /// The terminal snapshot arrived: close the display.
    fn end(&mut self, terminal: &Value) {
        self.ended_at = Some(Instant::now());
        let completed = task::status(terminal) == Some(TaskStatus::Completed);
        if let Some((_, phase)) = self.phase.take() {
            if completed {
                phase.finish("");
            } else {
                phase.fail(task::status_name(task::status(terminal)));
            }
        }
    }

    /// Stopped following without an end (error, interruption).
    fn abandon(&mut self) {
        if let Some((_, phase)) = self.phase.take() {
            phase.fail("");
        }
    }

    fn into_followed(self, terminal: Value) -> Followed {
        let ended = self.ended_at.unwrap_or_else(Instant::now);
        Followed {
            task: terminal,
            snapshots: self.snapshots,
            queued_seconds: self.queued_seconds,
            run_seconds: self
                .running_since
                .map(|at| ended.duration_since(at).as_secs_f64()),
            total_seconds: ended.duration_since(self.started).as_secs_f64(),
            traceback: self.traceback,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_are_snapshots_heartbeats_or_junk() {
        assert_eq!(parse_line(r#"{"type":"heartbeat"}"#), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("data: {}"), None);
        assert_eq!(
            parse_line(r#"{"id":"t","status":7}"#),
            Some(json!({"id": "t", "status": 7}))
        );
        assert_eq!(
            parse_line(r#"{"data":{"id":"t","status":10},"fields":["status"]}"#),
            Some(json!({"id": "t", "status": 10}))
        );
        // The REST envelope is not a stream line.
        assert_eq!(
            parse_line(r#"{"data":{"id":"t","status":10},"messages":[]}"#),
            None
        );
    }

    #[test]
    fn a_call_that_ended_between_snapshots_still_shows_its_run() {
        let mut tracker = Tracker::new(Ui::new(true, false), "f");
        tracker.observe(&json!({"status": 6}));
        tracker.observe(&json!({"status": 10, "output": {"x": 1}}));
        assert_eq!(
            tracker.phase.as_ref().map(|(l, _)| l.as_str()),
            Some("run f")
        );
        assert!(tracker.running_since.is_some());
        let mut failed = Tracker::new(Ui::new(true, false), "f");
        failed.observe(&json!({"status": 6}));
        failed.observe(&json!({"status": 11, "error": "setup failed: x"}));
        assert_eq!(
            failed.phase.as_ref().map(|(l, _)| l.as_str()),
            Some("setup")
        );
        assert!(failed.running_since.is_none());
    }

    #[test]
    fn statuses_map_to_phases() {
        use TaskStatus::*;
        assert_eq!(phase_label(Queued, "f").as_deref(), Some("queued"));
        assert_eq!(phase_label(SettingUp, "f").as_deref(), Some("setup"));
        assert_eq!(
            phase_label(Running, "upscale").as_deref(),
            Some("run upscale")
        );
        assert_eq!(phase_label(Completed, "f"), None);
    }

    #[test]
    fn the_tracker_counts_output_snapshots_and_new_logs_once() {
        let ui = Ui::new(true, true);
        let mut tracker = Tracker::new(ui, "stream");
        tracker.observe(&json!({"status": 2, "logs": []}));
        tracker.observe(&json!({"status": 7, "logs": ["a"], "output": null}));
        tracker.observe(&json!({"status": 7, "logs": ["a", "b"], "output": {"text": "x"}}));
        tracker.observe(&json!({"status": 7, "logs": ["a", "b"], "output": {"text": "x"}}));
        tracker.observe(&json!({"status": 7, "logs": ["a", "b"], "output": {"text": "xy"}}));
        assert_eq!(tracker.logs_seen, 2);
        assert_eq!(tracker.snapshots, 2);
        let terminal = json!({"status": 10, "output": {"text": "xy"}});
        tracker.observe(&terminal);
        tracker.end(&terminal);
        let followed = tracker.into_followed(terminal);
        assert_eq!(followed.snapshots, 2);
        assert!(followed.run_seconds.is_some());
    }
}
