//! [`Tracker`]: the one writer of a live task's state. Every change goes to
//! the live view at once (subscribers see it) and to the store: status
//! changes and the end right away (store first), logs and streamed output in
//! batches ([`Tracker::flush`], called by the runner on a timer and before
//! every status change).
//!
//! What is durable before the tracker goes on: DISPATCHED (recovery re-runs
//! a QUEUED task but never one that may have reached its worker, so that
//! must be on disk before the worker is called) and the end. A task whose
//! deferred insert (HTTP `wait` runs, `submit.rs`) is still queued gets its
//! status amended in that insert instead: it is never on disk as QUEUED
//! after this, so no commit is needed before the worker is called. The other
//! intermediate statuses, logs and snapshots are deferred writes: queued in
//! order and committed with the next durable write (of any task) or shortly
//! after, so after a crash a task may show DISPATCHED instead of RUNNING,
//! which recovery maps to interrupted all the same.
//!
//! Ending a task ([`Tracker::finish`]) writes the terminal state, publishes
//! it, drops the task from the live map, counts it and fires its webhook.

use std::sync::Arc;
use std::time::Instant;

use infsh_core::ErrorChain;
use infsh_protocol::Payload;
use infsh_store::{now_ms, LogEntry, LogType, TaskStatus};
use serde_json::Value;

use crate::api::TaskView;
use crate::live::LiveTask;
use crate::metrics::inc;
use crate::shared::Shared;
use crate::timing::{Mark, StageClock};

pub(crate) struct Tracker {
    shared: Arc<Shared>,
    live: LiveTask,
    id: String,
    /// Logs published but not stored yet.
    pending_logs: Vec<LogEntry>,
    /// How the task's log lines are kept within a bound (see [`LogCap`]).
    cap: LogCap,
    /// The output was changed by a snapshot and not stored yet.
    output_dirty: bool,
    /// When the task started RUNNING (for the duration metric).
    running_since: Option<Instant>,
    /// Marked when the end is stored, before it is published.
    clock: Option<Arc<StageClock>>,
}

pub(crate) fn log_entry(log_type: LogType, content: impl Into<String>) -> LogEntry {
    LogEntry {
        log_type,
        content: content.into(),
        at_ms: now_ms(),
    }
}

impl Tracker {
    pub fn new(shared: Arc<Shared>, live: LiveTask) -> Tracker {
        let id = live.borrow().record.id.clone();
        Tracker {
            shared,
            live,
            id,
            pending_logs: Vec::new(),
            cap: LogCap::default(),
            output_dirty: false,
            running_since: None,
            clock: None,
        }
    }

    pub fn with_clock(mut self, clock: Arc<StageClock>) -> Tracker {
        self.clock = Some(clock);
        self
    }

    /// Publishes log entries (one notification for the batch), secrets redacted.
    pub fn logs(&mut self, mut entries: Vec<LogEntry>) {
        if entries.is_empty() {
            return;
        }
        for entry in &mut entries {
            entry.content = self
                .shared
                .redactor
                .string(std::mem::take(&mut entry.content));
        }
        let cap = &mut self.cap;
        let mut stored = Vec::new();
        self.live.send_modify(|view| {
            for entry in entries {
                if let Some(entry) = cap.push(&mut view.logs, entry) {
                    stored.push(entry);
                }
            }
            view.record.updated_at_ms = now_ms();
        });
        self.pending_logs.extend(stored);
    }

    pub fn log(&mut self, log_type: LogType, content: impl Into<String>) {
        self.logs(vec![log_entry(log_type, content)]);
    }

    /// A streaming function's snapshot: the output so far.
    pub fn snapshot(&mut self, mut output: Value) {
        self.shared.redactor.json(&mut output);
        self.live.send_modify(|view| {
            view.record.output = Some(Payload::Value(output));
            view.record.updated_at_ms = now_ms();
        });
        self.output_dirty = true;
    }

    /// Stores pending logs and a changed output.
    pub async fn flush(&mut self) {
        if !self.pending_logs.is_empty() {
            let logs = std::mem::take(&mut self.pending_logs);
            if let Err(e) = self
                .shared
                .store
                .append_logs_deferred(&self.id, &logs)
                .await
            {
                tracing::error!(task = %self.id, error = %ErrorChain(&e), "cannot store task logs");
            }
        }
        if self.output_dirty {
            self.output_dirty = false;
            let (output, at) = {
                let view = self.live.borrow();
                (view.record.output.clone(), view.record.updated_at_ms)
            };
            if let Some(output) = output {
                if let Err(e) = self
                    .shared
                    .store
                    .update_output_deferred(&self.id, &output, at)
                    .await
                {
                    tracing::error!(task = %self.id, error = %ErrorChain(&e), "cannot store task output");
                }
            }
        }
    }

    /// Moves the task to a non-terminal status.
    pub async fn set_status(&mut self, status: TaskStatus) {
        debug_assert!(!status.is_terminal());
        self.flush().await;
        let at = now_ms();
        let store = &self.shared.store;
        let stored = if store.amend_pending_insert(&self.id, status, at) {
            // Its deferred insert was still queued and now says this
            // status: never on disk as QUEUED once dispatched.
            Ok(())
        } else if status == TaskStatus::Dispatched {
            store.update_status(&self.id, status, at).await
        } else {
            store.update_status_deferred(&self.id, status, at).await
        };
        if let Err(e) = stored {
            tracing::error!(task = %self.id, error = %ErrorChain(&e), "cannot store task status");
        }
        if status == TaskStatus::Running {
            self.running_since = Some(Instant::now());
        }
        self.live.send_modify(|view| {
            view.record.status = status;
            view.record.updated_at_ms = at;
        });
    }

    /// Ends the task. `output: None` keeps a streamed output for a task
    /// that did not complete (a cancelled stream keeps what it produced).
    /// Secrets are redacted from the output and the error.
    pub async fn finish(
        &mut self,
        status: TaskStatus,
        mut output: Option<Payload>,
        error: Option<String>,
    ) -> TaskView {
        debug_assert!(status.is_terminal());
        if let Some(output) = &mut output {
            self.shared.redactor.payload(output);
        }
        let error = self.shared.redactor.option(error);
        self.output_dirty = false;
        // Past the head, only the marker and the last lines are stored.
        let capped_tail = self.cap.finish(&self.live);
        self.pending_logs.extend(capped_tail);
        self.flush().await;
        let at = now_ms();
        let output = output.or_else(|| self.live.borrow().record.output.clone());
        // Refused as not found: another API node took the task over (this
        // one was presumed lost, docs/deploy.md "API node lost") and its
        // end stands; this one sends no webhook for it.
        let mut taken_over = false;
        if let Err(e) = self
            .shared
            .store
            .finish_task(&self.id, status, output.as_ref(), error.as_deref(), at)
            .await
        {
            taken_over = e.is_not_found();
            tracing::error!(task = %self.id, error = %ErrorChain(&e), "cannot store the end of a task");
        }
        if let Some(clock) = &self.clock {
            clock.mark(Mark::Stored);
        }
        self.live.send_modify(|view| {
            view.record.status = status;
            view.record.output = output;
            view.record.error = error;
            view.record.updated_at_ms = at;
        });
        self.shared.live.remove(&self.id);
        let view = self.live.borrow().clone();
        let metrics = &self.shared.metrics;
        match status {
            TaskStatus::Completed => {
                inc(&metrics.completed);
                if let Some(since) = self.running_since {
                    metrics.record_duration(&view.record.app, since.elapsed().as_secs_f64());
                }
            }
            TaskStatus::Cancelled => inc(&metrics.cancelled),
            _ => inc(&metrics.failed),
        }
        // `infsh serve`'s line per task (its default log filter lets the
        // `infsh::task` target through at info; docs/cli.md, "serve").
        let record = &view.record;
        let seconds = (at - record.created_at_ms).max(0) as f64 / 1000.0;
        let target = format!("{}:{}", record.app, record.function);
        match &record.error {
            Some(error) => tracing::info!(
                target: "infsh::task",
                task = %self.id, app = %target, status = %status.as_str(), seconds, error = %error
            ),
            None => tracing::info!(
                target: "infsh::task",
                task = %self.id, app = %target, status = %status.as_str(), seconds
            ),
        }
        if !taken_over {
            self.shared.webhooks.deliver(&view.record);
        }
        view
    }
}

/// Lines kept from the start of a task's logs.
pub(crate) const LOG_HEAD: usize = 1000;
/// Lines kept from the end of a task's logs.
pub(crate) const LOG_TAIL: usize = 1000;

/// Keeps a task's logs bounded, so an app that floods stdout costs neither
/// memory nor disk: the first [`LOG_HEAD`] lines, one
/// `[... K lines dropped ...]` marker, then the last [`LOG_TAIL`] lines.
/// Head lines are stored as they come; the marker and the tail at the end.
#[derive(Default)]
struct LogCap {
    head: usize,
    /// Index of the marker in the view's logs, once lines were dropped.
    marker_at: Option<usize>,
    dropped: u64,
}

impl LogCap {
    /// Adds `entry` to the live `logs`; returns it when it is to be stored now.
    fn push(&mut self, logs: &mut Vec<LogEntry>, entry: LogEntry) -> Option<LogEntry> {
        if self.head < LOG_HEAD {
            self.head += 1;
            logs.push(entry.clone());
            return Some(entry);
        }
        logs.push(entry);
        // The tail lives after the head (and the marker): let it grow to
        // twice its size, then cut it back, so trimming is amortised O(1).
        let tail_start = self.marker_at.map(|m| m + 1).unwrap_or(self.head);
        if logs.len() - tail_start > 2 * LOG_TAIL {
            let excess = logs.len() - tail_start - LOG_TAIL;
            logs.drain(tail_start..tail_start + excess);
            self.dropped += excess as u64;
            let marker = self.marker_at.get_or_insert_with(|| {
                logs.insert(self.head, log_entry(LogType::Run, String::new()));
                self.head
            });
            logs[*marker].content = format!("[... {} lines dropped ...]", self.dropped);
        }
        None
    }

    /// Trims the tail to its final size; returns what is left to store
    /// (the marker and the tail), in order.
    fn finish(&mut self, live: &LiveTask) -> Vec<LogEntry> {
        let mut rest = Vec::new();
        let (head, marker_at) = (self.head, &mut self.marker_at);
        let dropped = &mut self.dropped;
        live.send_modify(|view| {
            let logs = &mut view.logs;
            let tail_start = marker_at.map(|m| m + 1).unwrap_or(head);
            if logs.len() - tail_start > LOG_TAIL {
                let excess = logs.len() - tail_start - LOG_TAIL;
                logs.drain(tail_start..tail_start + excess);
                *dropped += excess as u64;
                let marker = marker_at.get_or_insert_with(|| {
                    logs.insert(head, log_entry(LogType::Run, String::new()));
                    head
                });
                logs[*marker].content = format!("[... {dropped} lines dropped ...]");
            }
            rest = logs[head.min(logs.len())..].to_vec();
        });
        rest
    }
}

#[cfg(test)]
mod log_cap_tests {
    use super::*;

    fn line(i: usize) -> LogEntry {
        log_entry(LogType::Run, format!("line {i}"))
    }

    #[test]
    fn a_flood_keeps_head_marker_and_tail() {
        let mut cap = LogCap::default();
        let mut logs = Vec::new();
        let mut stored = 0;
        let total = LOG_HEAD + 5 * LOG_TAIL + 7;
        for i in 0..total {
            if cap.push(&mut logs, line(i)).is_some() {
                stored += 1;
            }
            assert!(
                logs.len() <= LOG_HEAD + 1 + 2 * LOG_TAIL + 1,
                "bounded while running"
            );
        }
        assert_eq!(stored, LOG_HEAD, "only the head is stored while running");
        let (tx, _rx) = tokio::sync::watch::channel(crate::api::TaskView {
            record: test_record(),
            logs,
            slot: None,
        });
        let live = Arc::new(tx);
        let rest = cap.finish(&live);
        let logs = live.borrow().logs.clone();
        assert_eq!(logs.len(), LOG_HEAD + 1 + LOG_TAIL);
        assert_eq!(logs[0].content, "line 0");
        assert_eq!(logs[LOG_HEAD - 1].content, format!("line {}", LOG_HEAD - 1));
        let dropped = total - LOG_HEAD - LOG_TAIL;
        assert_eq!(
            logs[LOG_HEAD].content,
            format!("[... {dropped} lines dropped ...]")
        );
        assert_eq!(logs.last().unwrap().content, format!("line {}", total - 1));
        assert_eq!(
            rest.len(),
            1 + LOG_TAIL,
            "the marker and the tail are stored at the end"
        );
    }

    #[test]
    fn short_logs_are_kept_whole() {
        let mut cap = LogCap::default();
        let mut logs = Vec::new();
        for i in 0..10 {
            assert!(cap.push(&mut logs, line(i)).is_some());
        }
        let (tx, _rx) = tokio::sync::watch::channel(crate::api::TaskView {
            record: test_record(),
            logs,
            slot: None,
        });
        let live = Arc::new(tx);
        assert!(cap.finish(&live).is_empty());
        assert_eq!(live.borrow().logs.len(), 10);
    }

    fn test_record() -> infsh_store::TaskRecord {
        infsh_store::TaskRecord {
            id: "t".into(),
            app: "a/b".into(),
            function: "run".into(),
            input: serde_json::json!({}),
            setup: serde_json::json!({}),
            status: TaskStatus::Running,
            output: None,
            error: None,
            webhook: None,
            session_id: None,
            metadata: serde_json::json!({}),
            timeout_secs: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            team: None,
            run_at_ms: None,
        }
    }
}
