//! [`Tracker`]: the one writer of a live task's state. Every change goes to
//! the live view at once (subscribers see it) and to the store: status
//! changes and the end right away (store first), logs and streamed output in
//! batches ([`Tracker::flush`], called by the runner on a timer and before
//! every status change).
//!
//! What is durable before the tracker goes on: DISPATCHED (recovery re-runs
//! a QUEUED task but never one that may have reached its worker, so that
//! must be on disk before the worker is called) and the end. The other
//! intermediate statuses, logs and snapshots are deferred writes: queued in
//! order and committed with the next durable write (of any task) or shortly
//! after, so after a crash a task may show DISPATCHED instead of RUNNING,
//! which recovery maps to interrupted all the same.
//!
//! Ending a task ([`Tracker::finish`]) writes the terminal state, publishes
//! it, drops the task from the live map, counts it and fires its webhook.

use std::sync::Arc;
use std::time::Instant;

use infsh_store::{now_ms, LogEntry, LogType, TaskStatus};
use serde_json::Value;

use crate::api::TaskView;
use crate::live::LiveTask;
use crate::metrics::inc;
use crate::shared::Shared;

pub(crate) struct Tracker {
    shared: Arc<Shared>,
    live: LiveTask,
    id: String,
    /// Logs published but not stored yet.
    pending_logs: Vec<LogEntry>,
    /// The output was changed by a snapshot and not stored yet.
    output_dirty: bool,
    /// When the task started RUNNING (for the duration metric).
    running_since: Option<Instant>,
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
            output_dirty: false,
            running_since: None,
        }
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
        self.live.send_modify(|view| {
            view.logs.extend(entries.iter().cloned());
            view.record.updated_at_ms = now_ms();
        });
        self.pending_logs.extend(entries);
    }

    pub fn log(&mut self, log_type: LogType, content: impl Into<String>) {
        self.logs(vec![log_entry(log_type, content)]);
    }

    /// A streaming function's snapshot: the output so far.
    pub fn snapshot(&mut self, mut output: Value) {
        self.shared.redactor.json(&mut output);
        self.live.send_modify(|view| {
            view.record.output = Some(output);
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
                tracing::error!(task = %self.id, error = %e, "cannot store task logs");
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
                    tracing::error!(task = %self.id, error = %e, "cannot store task output");
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
        let stored = if status == TaskStatus::Dispatched {
            store.update_status(&self.id, status, at).await
        } else {
            store.update_status_deferred(&self.id, status, at).await
        };
        if let Err(e) = stored {
            tracing::error!(task = %self.id, error = %e, "cannot store task status");
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
        mut output: Option<Value>,
        error: Option<String>,
    ) -> TaskView {
        debug_assert!(status.is_terminal());
        if let Some(output) = &mut output {
            self.shared.redactor.json(output);
        }
        let error = self.shared.redactor.option(error);
        self.output_dirty = false;
        self.flush().await;
        let at = now_ms();
        let output = output.or_else(|| self.live.borrow().record.output.clone());
        if let Err(e) = self
            .shared
            .store
            .finish_task(&self.id, status, output.as_ref(), error.as_deref(), at)
            .await
        {
            tracing::error!(task = %self.id, error = %e, "cannot store the end of a task");
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
        tracing::debug!(task = %self.id, status = ?status, "task ended");
        self.shared.webhooks.deliver(&view.record);
        view
    }
}
