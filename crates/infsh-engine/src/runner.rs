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

use infsh_core::validators::input_schema;
use infsh_core::ErrorChain;
use infsh_protocol::{CallId, FailureKind};
use infsh_store::{LogEntry, LogType, TaskStatus};
use infsh_worker::{CallEvent, CallOutcome, CallRequest, WorkerError};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use crate::app_info::AppInfo;
use crate::batch_gate::BatchTicket;
use crate::handle::QueuedTask;
use crate::input_files::with_stored_paths;
use crate::outputs::{store_output_files, strip_local_paths};
use crate::replica::StopReason;
use crate::scheduler::{Event, ReplicaOutcome};
use crate::shared::{Shared, INTERRUPTED};
use crate::time::sleep_until;
use crate::timing::{Mark, StageClock};
use crate::tracker::{log_entry, Tracker};
use crate::worker_seam::{setup_error, setup_metadata, AppWorker, KILL_GRACE};

/// How often batched logs and snapshots are written to the store.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Most events folded into one live update.
const MAX_BATCH: usize = 1024;
/// Longest wait for the scheduler to take note of a task's outcome.
const REPORT_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct RunArgs {
    pub shared: Arc<Shared>,
    pub app_id: String,
    pub worker: Arc<dyn AppWorker>,
    pub worker_id: String,
    pub replica: usize,
    pub generation: u64,
    pub task: QueuedTask,
    pub needs_setup: bool,
    /// The app's (else the server's) default limit per task; a run's own wins.
    pub task_timeout: Option<Duration>,
    /// The app's (else the server's) limit on setup.
    pub setup_timeout: Option<Duration>,
    /// Build and preload logs of the replica, for its first task.
    pub early_logs: Vec<LogEntry>,
    /// Shared by the tasks on this worker: why one of them stopped it.
    pub stop_reason: StopReason,
    /// The GPUs of the replica's slot, for setup's metadata.
    pub gpu_ids: Vec<String>,
    /// Cancellation requests, each with an ack sent once CANCELLING.
    pub cancel: mpsc::Receiver<oneshot::Sender<()>>,
    pub events: mpsc::UnboundedSender<Event>,
    /// Its place in a batch (`batch_gate.rs`): the call goes with the
    /// batch's other calls, in one `call_batch`.
    pub batch: Option<BatchTicket>,
    /// The app's functions as its workers reported them, for the input's
    /// `File` fields handed over in place (`input_files.rs`); None: the
    /// input goes as stored.
    pub info: Option<Arc<AppInfo>>,
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
    let clock = args.task.clock;
    clock.mark(Mark::Dispatched);
    let mut runner = Runner {
        tracker: Tracker::new(args.shared.clone(), args.task.live).with_clock(clock.clone()),
        clock,
        record: args.task.record,
        shared: args.shared,
        app_id: args.app_id,
        worker: args.worker,
        worker_id: args.worker_id,
        cancel: args.cancel,
        cancel_requested: false,
        task_timeout: args.task_timeout,
        setup_timeout: args.setup_timeout,
        replica: args.replica,
        generation: args.generation,
        events: args.events.clone(),
        stop_reason: args.stop_reason,
        gpu_ids: args.gpu_ids,
        batch: args.batch,
        info: args.info,
    };
    runner.tracker.logs(args.early_logs);
    runner.tracker.set_status(TaskStatus::Dispatched).await;
    if args.needs_setup {
        if let Err(outcome) = runner.setup().await {
            guard.outcome = Some(outcome);
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
    clock: Arc<StageClock>,
    app_id: String,
    worker: Arc<dyn AppWorker>,
    worker_id: String,
    tracker: Tracker,
    record: infsh_store::TaskRecord,
    cancel: mpsc::Receiver<oneshot::Sender<()>>,
    cancel_requested: bool,
    task_timeout: Option<Duration>,
    setup_timeout: Option<Duration>,
    replica: usize,
    generation: u64,
    events: mpsc::UnboundedSender<Event>,
    stop_reason: StopReason,
    gpu_ids: Vec<String>,
    batch: Option<BatchTicket>,
    info: Option<Arc<AppInfo>>,
}

/// Why the runner itself stopped the call.
enum Stopped {
    TimedOut(f64),
    CancelGraceOver,
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
    /// (FAILED, its traceback in the logs), the worker killed, and what that
    /// says about the app returned.
    async fn setup(&mut self) -> Result<(), ReplicaOutcome> {
        self.tracker.set_status(TaskStatus::SettingUp).await;
        let (log_tx, mut log_rx) = mpsc::unbounded_channel();
        let metadata = setup_metadata(&self.app_id, &self.worker_id, &self.gpu_ids);
        let worker = self.worker.clone();
        let setup = worker.setup(self.record.setup.clone(), metadata, log_tx);
        tokio::pin!(setup);
        let limit = self.setup_timeout;
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
        let (error, traceback) = match result {
            Some(Ok(seconds)) => {
                self.tracker
                    .log(LogType::Run, format!("setup done in {seconds:.2}s"));
                return Ok(());
            }
            Some(Err(e @ WorkerError::SetupFailed(_))) => {
                let (error, traceback) = setup_error(e);
                if let Some(traceback) = traceback.as_ref().filter(|t| !t.is_empty()) {
                    log_traceback(&self.shared, &self.record.id, traceback);
                    self.tracker.log(LogType::Setup, traceback.clone());
                }
                (error, traceback)
            }
            // The worker's last stderr lines are already in the logs.
            Some(Err(e)) => setup_error(e),
            None => {
                let limit = secs(limit.unwrap_or_default());
                self.tracker.log(
                    LogType::Run,
                    format!("setup timed out after {limit}s; stopping the worker"),
                );
                (format!("setup timed out after {limit}s"), None)
            }
        };
        self.worker.kill(KILL_GRACE).await;
        let outcome = if self.shared.lifecycle.is_stopping() {
            // The shutdown stopped the worker: the app is not at fault.
            ReplicaOutcome::Replaced
        } else {
            ReplicaOutcome::SetupFailed {
                message: error.clone(),
                traceback,
            }
        };
        let error = match outcome {
            ReplicaOutcome::Replaced => INTERRUPTED.to_string(),
            _ => error,
        };
        self.report(&outcome).await;
        self.tracker
            .finish(TaskStatus::Failed, None, Some(error))
            .await;
        Err(outcome)
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
            input: self.worker_input().await,
            metadata: self.call_metadata(),
        };
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let worker = self.worker.clone();
        let batch = self.batch.take();
        self.clock.mark(Mark::Sent);
        let call = async move {
            match batch {
                Some(ticket) => ticket.call(request, events_tx).await,
                None => worker.call(request, events_tx).await,
            }
        };
        tokio::pin!(call);
        let limit = self
            .record
            .timeout_secs
            .filter(|s| s.is_finite() && *s > 0.0)
            .or(self.task_timeout.map(secs));
        // A limit too large for a Duration or an Instant means no deadline.
        let deadline = limit
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .and_then(|d| Instant::now().checked_add(d));
        let mut cancel_deadline = None;
        let mut stopped: Option<Stopped> = None;
        let mut flush = flush_timer();
        let result = loop {
            tokio::select! {
                biased;
                result = &mut call => {
                    self.clock.mark(Mark::Answered);
                    break result;
                }
                Some(event) = events.recv() => self.on_events(event, &mut events),
                Some(ack) = self.cancel.recv(), if !self.cancel_requested => {
                    self.on_cancel_request(ack).await;
                    if let Err(e) = self.worker.cancel(&call_id).await {
                        tracing::debug!(task = %self.record.id, error = %ErrorChain(&e), "cancel not sent");
                    }
                    cancel_deadline = Some(Instant::now() + self.shared.config.cancel_grace);
                }
                () = sleep_until(deadline), if stopped.is_none() => {
                    let limit = limit.unwrap_or_default();
                    self.tracker.log(LogType::Run, format!("timed out after {limit}s; stopping the worker"));
                    stopped = Some(Stopped::TimedOut(limit));
                    self.stopping_worker(format!("timed out after {limit}s"));
                    self.worker.kill(KILL_GRACE).await;
                }
                () = sleep_until(cancel_deadline), if stopped.is_none() => {
                    self.tracker.log(LogType::Run, "the task did not stop after cancel; stopping the worker");
                    stopped = Some(Stopped::CancelGraceOver);
                    self.stopping_worker("did not stop after cancel".to_string());
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
        let answered = if stopped.is_some() {
            ReplicaOutcome::Replaced
        } else {
            ReplicaOutcome::Healthy
        };
        let (status, output, error, outcome) = match result {
            Ok(done) => {
                self.clock.worker_seconds(done.seconds);
                self.tracker.set_status(TaskStatus::Uploading).await;
                match store_output_files(
                    &self.shared,
                    done.output,
                    &done.files,
                    self.record.team.as_deref(),
                    done.scratch.as_ref().map(|s| s.path()),
                )
                .await
                {
                    Ok(output) => (TaskStatus::Completed, Some(output), None, answered),
                    Err(error) => (TaskStatus::Failed, None, Some(error.to_string()), answered),
                }
            }
            Err(WorkerError::CallFailed(failed)) => {
                if !failed.traceback.is_empty() {
                    log_traceback(&self.shared, &self.record.id, &failed.traceback);
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
                (status, None, error, answered)
            }
            Err(error) => {
                let mut lost = ReplicaOutcome::Replaced;
                let (status, message) = match stopped {
                    Some(Stopped::TimedOut(limit)) => (
                        TaskStatus::Failed,
                        Some(format!("timed out after {limit}s")),
                    ),
                    Some(Stopped::CancelGraceOver) => (TaskStatus::Cancelled, None),
                    None if self.cancel_requested => (TaskStatus::Cancelled, None),
                    None if self.shared.lifecycle.is_stopping() => {
                        (TaskStatus::Failed, Some(INTERRUPTED.to_string()))
                    }
                    None if self.stopped_by_another().is_some() => {
                        let reason = self.stopped_by_another().unwrap_or_default();
                        (
                            TaskStatus::Failed,
                            Some(format!(
                                "the worker was stopped while running the task: another task on it {reason}"
                            )),
                        )
                    }
                    None => {
                        let message = describe_lost_worker(&error);
                        lost = ReplicaOutcome::Crashed {
                            message: message.clone(),
                            traceback: match &error {
                                WorkerError::Exited { stderr_tail, .. } => {
                                    Some(stderr_tail.join("\n"))
                                }
                                _ => None,
                            },
                        };
                        (TaskStatus::Failed, Some(message))
                    }
                };
                if matches!(error, WorkerError::DuplicateCallId(_)) {
                    (status, None, message, answered)
                } else {
                    self.worker.kill(KILL_GRACE).await;
                    (status, None, message, lost)
                }
            }
        };
        self.report(&outcome).await;
        self.tracker.finish(status, output, error).await;
        outcome
    }

    /// Marks the worker as stopped on purpose, for the other tasks on it.
    fn stopping_worker(&self, reason: String) {
        let mut slot = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(reason);
    }

    fn stopped_by_another(&self) -> Option<String> {
        self.stop_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tells the scheduler what became of the worker and waits until it
    /// took note, so that whoever sees the task end also sees the app's
    /// state that follows (unhealthy after a crash, healthy again after a
    /// success).
    async fn report(&self, outcome: &ReplicaOutcome) {
        let (ack, acked) = oneshot::channel();
        let sent = self.events.send(Event::WorkerOutcome {
            replica: self.replica,
            generation: self.generation,
            outcome: outcome.clone(),
            ack,
        });
        if sent.is_ok() {
            let _ = tokio::time::timeout(REPORT_WAIT, acked).await;
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

    /// The input as the worker gets it: stored input files in place
    /// (`input_files.rs`).
    async fn worker_input(&self) -> Value {
        let function = self.info.as_ref().and_then(|info| {
            info.ready
                .functions
                .iter()
                .find(|f| f.name == self.record.function)
        });
        match function {
            Some(function) => {
                with_stored_paths(&self.shared, input_schema(function), &self.record).await
            }
            None => self.record.input.clone(),
        }
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

/// The app's traceback in `infsh serve`'s log, under the task it failed.
/// Redacted like everything else the server writes: a traceback quotes the
/// values it failed on, secrets included.
fn log_traceback(shared: &Shared, task: &str, traceback: &str) {
    let traceback = shared.redactor.text(traceback.trim_end());
    // The id in the message, not as a field: a field would be printed
    // after the traceback's last line.
    tracing::info!(target: "infsh::task", "task {task}: the app raised\n{traceback}");
}
