//! Running one task on one replica's worker, from DISPATCHED to its end:
//! setup when the replica's config differs (SETTING_UP), the call
//! (RUNNING) with its logs and streamed snapshots, the task's timeout,
//! cancellation (CANCELLING, the worker's `cancel`, a kill past
//! `cancel_grace`), output files (UPLOADING), and the terminal status.
//!
//! The runner owns the task's [`Tracker`]; it tells the scheduler when
//! setup is done and, at the end, what became of the worker
//! ([`ReplicaOutcome`]): a dead, killed or badly set up worker is replaced.

use std::sync::Arc;
use std::time::Duration;

use infsh_protocol::{CallId, FailureKind};
use infsh_store::{LogEntry, LogType, TaskStatus};
use infsh_worker::{CallEvent, CallOutcome, CallRequest, Worker, WorkerError};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use crate::handle::QueuedTask;
use crate::metrics::inc;
use crate::outputs::{store_output_files, strip_local_paths};
use crate::replica::KILL_GRACE;
use crate::scheduler::{Event, ReplicaOutcome};
use crate::shared::{Shared, INTERRUPTED};
use crate::tracker::{log_entry, Tracker};

/// How often batched logs and snapshots are written to the store.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Most events folded into one live update.
const MAX_BATCH: usize = 1024;

pub(crate) struct RunArgs {
    pub shared: Arc<Shared>,
    pub app_id: String,
    pub worker: Worker,
    pub worker_id: String,
    pub replica: usize,
    pub generation: u64,
    pub task: QueuedTask,
    pub needs_setup: bool,
    /// Build and preload logs of the replica, for its first task.
    pub early_logs: Vec<LogEntry>,
    /// Cancellation requests, each with an ack sent once CANCELLING.
    pub cancel: mpsc::Receiver<oneshot::Sender<()>>,
    pub events: mpsc::UnboundedSender<Event>,
}

/// Sends the task's end to the scheduler, also when the runner is dropped
/// half way (a panic): then the scheduler ends the task itself.
struct EndGuard {
    events: mpsc::UnboundedSender<Event>,
    replica: usize,
    generation: u64,
    task_id: String,
    outcome: Option<ReplicaOutcome>,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        let _ = self.events.send(Event::TaskEnded {
            replica: self.replica,
            generation: self.generation,
            task_id: std::mem::take(&mut self.task_id),
            outcome: self.outcome.take().unwrap_or(ReplicaOutcome::RunnerGone),
        });
    }
}

pub(crate) async fn run(args: RunArgs) {
    let mut guard = EndGuard {
        events: args.events.clone(),
        replica: args.replica,
        generation: args.generation,
        task_id: args.task.record.id.clone(),
        outcome: None,
    };
    let mut runner = Runner {
        tracker: Tracker::new(args.shared.clone(), args.task.live),
        record: args.task.record,
        shared: args.shared,
        app_id: args.app_id,
        worker: args.worker,
        worker_id: args.worker_id,
        cancel: args.cancel,
        cancel_requested: false,
    };
    runner.tracker.logs(args.early_logs);
    runner.tracker.set_status(TaskStatus::Dispatched).await;
    if args.needs_setup {
        if let Err(error) = runner.setup().await {
            guard.outcome = Some(ReplicaOutcome::SetupFailed(error));
            return;
        }
        let _ = args.events.send(Event::SetupDone {
            replica: args.replica,
            generation: args.generation,
        });
    }
    guard.outcome = Some(runner.call().await);
}

struct Runner {
    shared: Arc<Shared>,
    app_id: String,
    worker: Worker,
    worker_id: String,
    tracker: Tracker,
    record: infsh_store::TaskRecord,
    cancel: mpsc::Receiver<oneshot::Sender<()>>,
    cancel_requested: bool,
}

/// Why the runner itself stopped the call.
enum Stopped {
    TimedOut(f64),
    CancelGraceOver,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn flush_timer() -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(Instant::now() + FLUSH_EVERY, FLUSH_EVERY);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Runner {
    async fn on_cancel_request(&mut self, ack: oneshot::Sender<()>) {
        self.cancel_requested = true;
        self.tracker.set_status(TaskStatus::Cancelling).await;
        let _ = ack.send(());
    }

    /// Runs setup with the task's config. On failure the task is ended
    /// (FAILED), the worker killed, and the error returned.
    async fn setup(&mut self) -> Result<(), String> {
        self.tracker.set_status(TaskStatus::SettingUp).await;
        let (log_tx, mut log_rx) = mpsc::unbounded_channel();
        let metadata = json!({"app_id": self.app_id, "worker_id": self.worker_id});
        let worker = self.worker.clone();
        let setup = worker.setup(self.record.setup.clone(), metadata, log_tx);
        tokio::pin!(setup);
        let limit = self.shared.config.setup_timeout;
        let deadline = limit.map(|l| Instant::now() + l);
        let mut flush = flush_timer();
        let result = loop {
            tokio::select! {
                biased;
                result = &mut setup => break Some(result),
                Some(line) = log_rx.recv() => {
                    let mut lines = vec![log_entry(LogType::Setup, line.line)];
                    while let Ok(line) = log_rx.try_recv() {
                        lines.push(log_entry(LogType::Setup, line.line));
                    }
                    self.tracker.logs(lines);
                }
                Some(ack) = self.cancel.recv(), if !self.cancel_requested => {
                    // Setup is not interrupted: the replica needs it anyway.
                    self.on_cancel_request(ack).await;
                }
                () = sleep_until(deadline) => break None,
                _ = flush.tick() => self.tracker.flush().await,
            }
        };
        let mut lines = Vec::new();
        while let Ok(line) = log_rx.try_recv() {
            lines.push(log_entry(LogType::Setup, line.line));
        }
        self.tracker.logs(lines);
        let error = match result {
            Some(Ok(seconds)) => {
                self.tracker
                    .log(LogType::Run, format!("setup done in {seconds:.2}s"));
                return Ok(());
            }
            Some(Err(WorkerError::SetupFailed(f))) => {
                if !f.traceback.is_empty() {
                    self.tracker.log(LogType::Setup, f.traceback);
                }
                format!("setup failed: {}", f.error)
            }
            Some(Err(WorkerError::Exited { status, .. })) => {
                format!("setup failed: the worker exited ({status}) during setup")
            }
            Some(Err(other)) => format!("setup failed: {other}"),
            None => format!("setup timed out after {}s", secs(limit.unwrap_or_default())),
        };
        self.worker.kill(KILL_GRACE).await;
        self.tracker
            .finish(TaskStatus::Failed, None, Some(error.clone()))
            .await;
        Err(error)
    }

    /// Runs the call and ends the task.
    async fn call(mut self) -> ReplicaOutcome {
        if self.cancel_requested {
            self.tracker.finish(TaskStatus::Cancelled, None, None).await;
            return ReplicaOutcome::Healthy;
        }
        self.tracker.set_status(TaskStatus::Running).await;
        let call_id = CallId::new(self.record.id.clone());
        let request = CallRequest {
            id: call_id.clone(),
            function: self.record.function.clone(),
            input: self.record.input.clone(),
            metadata: self.call_metadata(),
        };
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let worker = self.worker.clone();
        let call = worker.call(request, events_tx);
        tokio::pin!(call);
        let limit = self
            .record
            .timeout_secs
            .filter(|s| s.is_finite() && *s > 0.0)
            .or(self.shared.config.task_timeout.map(secs));
        let deadline = limit.map(|s| Instant::now() + Duration::from_secs_f64(s));
        let mut cancel_deadline = None;
        let mut stopped: Option<Stopped> = None;
        let mut flush = flush_timer();
        let result = loop {
            tokio::select! {
                biased;
                result = &mut call => break result,
                Some(event) = events.recv() => self.on_events(event, &mut events),
                Some(ack) = self.cancel.recv(), if !self.cancel_requested => {
                    self.on_cancel_request(ack).await;
                    if let Err(e) = self.worker.cancel(&call_id).await {
                        tracing::debug!(task = %self.record.id, error = %e, "cancel not sent");
                    }
                    cancel_deadline = Some(Instant::now() + self.shared.config.cancel_grace);
                }
                () = sleep_until(deadline), if stopped.is_none() => {
                    let limit = limit.unwrap_or_default();
                    self.tracker.log(LogType::Run, format!("timed out after {limit}s; stopping the worker"));
                    stopped = Some(Stopped::TimedOut(limit));
                    self.worker.kill(KILL_GRACE).await;
                }
                () = sleep_until(cancel_deadline), if stopped.is_none() => {
                    self.tracker.log(LogType::Run, "the task did not stop after cancel; stopping the worker");
                    stopped = Some(Stopped::CancelGraceOver);
                    self.worker.kill(KILL_GRACE).await;
                }
                _ = flush.tick() => self.tracker.flush().await,
            }
        };
        // Everything the call reported was sent before its answer.
        while let Ok(event) = events.try_recv() {
            self.on_events(event, &mut events);
        }
        self.end(result, stopped).await
    }

    async fn end(
        mut self,
        result: Result<CallOutcome, WorkerError>,
        stopped: Option<Stopped>,
    ) -> ReplicaOutcome {
        let outcome = if stopped.is_some() {
            ReplicaOutcome::Lost
        } else {
            ReplicaOutcome::Healthy
        };
        match result {
            Ok(done) => {
                self.tracker.set_status(TaskStatus::Uploading).await;
                match store_output_files(&self.shared, done.output, &done.files).await {
                    Ok(output) => {
                        self.tracker
                            .finish(TaskStatus::Completed, Some(output), None)
                            .await
                    }
                    Err(error) => {
                        self.tracker
                            .finish(TaskStatus::Failed, None, Some(error))
                            .await
                    }
                };
                outcome
            }
            Err(WorkerError::CallFailed(failed)) => {
                if !failed.traceback.is_empty() {
                    self.tracker.log(LogType::Task, failed.traceback.clone());
                }
                let (status, error) = match failed.kind {
                    FailureKind::Cancelled => (TaskStatus::Cancelled, None),
                    FailureKind::Input if !failed.errors.is_empty() => {
                        let errors: Vec<String> = failed
                            .errors
                            .iter()
                            .map(|e| format!("{}: {}", e.loc, e.msg))
                            .collect();
                        (
                            TaskStatus::Failed,
                            Some(format!("invalid input: {}", errors.join("; "))),
                        )
                    }
                    _ => (TaskStatus::Failed, Some(failed.error)),
                };
                self.tracker.finish(status, None, error).await;
                outcome
            }
            Err(error) => {
                let (status, message) = match stopped {
                    Some(Stopped::TimedOut(limit)) => (
                        TaskStatus::Failed,
                        Some(format!("timed out after {limit}s")),
                    ),
                    Some(Stopped::CancelGraceOver) => (TaskStatus::Cancelled, None),
                    None if self.cancel_requested => (TaskStatus::Cancelled, None),
                    None if self.shared.stopping() => {
                        (TaskStatus::Failed, Some(INTERRUPTED.to_string()))
                    }
                    None => {
                        inc(&self.shared.metrics.workers_crashed);
                        (TaskStatus::Failed, Some(describe_lost_worker(&error)))
                    }
                };
                if matches!(error, WorkerError::DuplicateCallId(_)) {
                    self.tracker.finish(status, None, message).await;
                    return outcome;
                }
                self.worker.kill(KILL_GRACE).await;
                self.tracker.finish(status, None, message).await;
                ReplicaOutcome::Lost
            }
        }
    }

    /// Folds a burst of call events into one live update.
    fn on_events(&mut self, first: CallEvent, rest: &mut mpsc::UnboundedReceiver<CallEvent>) {
        let mut logs = Vec::new();
        let mut next = Some(first);
        let mut n = 0;
        while let Some(event) = next.take() {
            match event {
                CallEvent::Log(line) => logs.push(log_entry(LogType::Task, line.line)),
                CallEvent::Snapshot { mut output, files } => {
                    self.tracker.logs(std::mem::take(&mut logs));
                    strip_local_paths(&mut output, &files);
                    self.tracker.snapshot(output);
                }
            }
            n += 1;
            if n < MAX_BATCH {
                next = rest.try_recv().ok();
            }
        }
        self.tracker.logs(logs);
    }

    /// The request's metadata with the runtime's ids on top.
    fn call_metadata(&self) -> Value {
        let mut meta = match &self.record.metadata {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        meta.insert("task_id".into(), json!(self.record.id));
        meta.insert("app_id".into(), json!(self.app_id));
        meta.insert("worker_id".into(), json!(self.worker_id));
        Value::Object(meta)
    }
}

/// The error of a task whose worker died under it.
fn describe_lost_worker(error: &WorkerError) -> String {
    match error {
        WorkerError::Exited { status, .. } => {
            format!("the worker exited ({status}) while running the task")
        }
        WorkerError::Protocol(message) => format!("worker protocol error: {message}"),
        other => other.to_string(),
    }
}
