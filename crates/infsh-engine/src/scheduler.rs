//! One app's scheduler: an actor task that owns the app's queue (FIFO), its
//! replicas (`replica.rs`) and the tasks running on them. Nothing here is
//! shared or locked; the engine talks to it through an [`AppHandle`], and
//! the futures it spawns (worker starts in `scheduler/start.rs`, task
//! runners in `runner.rs`) report back on its event channel. Workers are
//! reached only through the seam of `worker_seam.rs`, so these rules have
//! unit tests with a scripted fake worker (`scheduler/tests/`).
//!
//! Dispatch rule: the head of the queue goes to a replica whose setup config
//! equals the task's with a free slot (`concurrency_per_replica`), else to an
//! idle replica, which then runs setup again with the task's config. While a
//! replica runs setup nothing else goes there. Replicas start lazily, when
//! tasks wait and none can take them (or at `Discover`, without setup).
//!
//! Placement (`scheduler/slots.rs`): before a replica starts, the
//! machine-wide broker (`placement_broker.rs`) gives it a slot (its GPUs
//! become the worker's `CUDA_VISIBLE_DEVICES` and setup's
//! `metadata.gpu_ids`), or stops the least recently used idle replica of
//! another app for it, or says why it must wait: the queued tasks are told
//! once, and the broker wakes the actor when a slot may be free. A
//! discovery that finds every slot held starts a probe worker without one.
//! A drain (`Engine::drain_engine`, `drain_app`) pauses dispatch and
//! starts; the queue stays.
//!
//! Failures and backoff: a worker that does not start (load), a setup that
//! fails or times out, and a worker that dies unexpectedly (crash) make the
//! app unhealthy ([`Failure`]) and start a backoff
//! ([`crate::api::restart_backoff`]: 0.5 s doubling to 30 s per consecutive
//! failure). While it runs, no replica is started and no setup is run: tasks
//! wait in the queue (and are told so in their logs), replicas already set
//! up keep serving, and a discovery (the first run of an app whose functions
//! are unknown, `GET /apps/{id}`) is answered at once with the last error and
//! "retrying in Ns" (one retry is then made when the backoff ends, so the app
//! recovers by itself). When the backoff ends the next attempt is made for
//! the waiting tasks; a failed setup fails the one task that ran it, a failed
//! load fails every waiting task (nothing can run them). The failure is
//! cleared, and the backoff reset, by the next success of what failed.
//!
//! Sessions (`scheduler/sessions.rs`): a session's first call takes an
//! idle replica not leased to another session, which is then leased to it;
//! its later calls go there alone, one at a time, past the FIFO order of
//! other tasks (which never use a leased replica). A leased replica that
//! dies ends its session.
//!
//! Retiring (`scheduler/retire.rs`): once another version of the app is
//! current, its replicas stop as they become idle.
//!
//! Everything the actor spawns lives in its `JoinSet`: when the last engine
//! handle is dropped the command channel closes, the actor returns, and the
//! set aborts the runners and drops the workers (killed with their process
//! groups), leaving the store as a crash would.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use infsh_core::ErrorChain;
use infsh_store::{now_ms, LogType};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::{restart_backoff, EngineError};
use crate::app_info::AppInfo;
use crate::handle::{AppHandle, AppStatus, CancelReply, Command, QueuedTask};
use crate::registry::AppEntry;
use crate::replica::{Replica, ReplicaState, Up};
use crate::shared::Shared;
use crate::time::sleep_until;
use crate::tracker::Tracker;
use crate::worker_seam::{AppLauncher, SlotEnv, StartFailure, WorkerLauncher, KILL_GRACE};
use infsh_store::TaskStatus;
use start::{start_worker, Started};

/// What the actor's spawned futures report.
pub(crate) enum Event {
    /// A held task's `run_at` has come (`run_at.rs`).
    Due(String),
    Started {
        replica: usize,
        generation: u64,
        result: Result<Box<Started>, StartFailure>,
    },
    SetupDone {
        replica: usize,
        generation: u64,
    },
    /// Sent by a runner before it ends its task; acknowledged once the
    /// app's state reflects it.
    WorkerOutcome {
        replica: usize,
        generation: u64,
        outcome: ReplicaOutcome,
        ack: oneshot::Sender<()>,
    },
    TaskEnded {
        replica: usize,
        generation: u64,
        task_id: String,
        outcome: ReplicaOutcome,
    },
    WorkersStopped,
    /// The placement broker asks this replica to stop for another app
    /// (sent through the evictor its lease registered).
    Evict {
        replica: usize,
        generation: u64,
    },
    /// An evicted replica's worker is gone (its unload ran or it was
    /// killed), and its slot released.
    Evicted {
        replica: usize,
        pid: u32,
    },
    /// The worker of this replica exited (seen by its exit watch): a
    /// death while idle is a crash (the runner reports one while busy).
    WorkerExited {
        replica: usize,
        generation: u64,
        status: String,
    },
    /// A probe (a worker started without a slot only to learn the app's
    /// functions) answered.
    Probed(Result<Box<infsh_protocol::Ready>, StartFailure>),
}

/// What a task's end says about its worker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReplicaOutcome {
    /// The worker answered: it serves on.
    Healthy,
    /// The runner killed it (timeout, cancel past its grace, shutdown):
    /// replace it, the app is not at fault.
    Replaced,
    /// It died on its own while running the task.
    Crashed {
        message: String,
        traceback: Option<String>,
    },
    /// Setup failed or timed out; the worker was killed.
    SetupFailed {
        message: String,
        traceback: Option<String>,
    },
    /// The runner stopped without ending its task (a bug): end it here.
    RunnerGone,
}

/// An evicted replica while its worker unloads.
pub(crate) struct Stopping {
    pub replica: usize,
    pub pid: u32,
    pub slot: Option<String>,
    pub warm_since_ms: i64,
    pub last_used_ms: Option<i64>,
}

struct Running {
    cancel: mpsc::Sender<oneshot::Sender<()>>,
    /// The replica it runs on.
    replica: usize,
    /// The batch it runs in (`scheduler/batching.rs`), if any.
    batch: Option<u64>,
    /// Its session, if it is a session's call.
    session: Option<String>,
}

/// What failed, in the order of a worker's life: a success at one stage
/// clears failures of that stage and the earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// The worker did not start (environment, import, no App class...).
    Load,
    /// Setup raised, timed out, or the worker died during it.
    Setup,
    /// The worker died while running a task.
    Crash,
}

/// Why the app is unhealthy (secrets already redacted).
struct Failure {
    stage: Stage,
    message: String,
    traceback: Option<String>,
    /// Consecutive failures, this one included.
    count: u32,
    at_ms: i64,
    /// No replica starts and no setup runs before this.
    retry_at: Instant,
}

struct Actor {
    shared: Arc<Shared>,
    entry: Arc<AppEntry>,
    commands: mpsc::UnboundedReceiver<Command>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    status: watch::Sender<AppStatus>,
    queued: Arc<AtomicUsize>,
    /// Dispatch paused for this app (`Engine::drain_app`).
    drained: Arc<AtomicBool>,
    /// Changes when a slot may have become free or dispatch resumed.
    wake: watch::Receiver<u64>,
    queue: VecDeque<QueuedTask>,
    /// Tasks whose `run_at` is ahead, not in `queue` yet (`run_at.rs`).
    scheduled: Vec<QueuedTask>,
    replicas: Vec<Replica>,
    running: HashMap<String, Running>,
    info: Option<Arc<AppInfo>>,
    discover_waiters: Vec<oneshot::Sender<Result<Arc<AppInfo>, EngineError>>>,
    /// The last failure, until what failed succeeds.
    failure: Option<Failure>,
    /// A discovery was refused during the backoff: start a worker when it ends.
    retry_wanted: bool,
    shutdown: Option<(oneshot::Sender<()>, bool)>,
    /// The app has no replica and its queue waits for a slot (an
    /// eviction in flight, or every fitting slot held).
    waiting_for_slot: bool,
    /// A probe runs (see [`Event::Probed`]).
    probing: bool,
    /// Evicted replicas whose unload runs, for `GET /workers`.
    stopping: Vec<Stopping>,
    /// Queued tasks already told why they wait for a slot (told once).
    told_slot_wait: HashSet<String>,
    /// The count last given to the broker's `tasks_waiting_for_slot`.
    reported_waiting: usize,
    /// The broker evicted for this app (a slot is reserved for it) and
    /// no replica started since: given up when the queue empties.
    slot_reserved: bool,
    tasks: JoinSet<()>,
    /// Starts the app's workers (and keeps its zygote).
    launcher: Arc<dyn AppLauncher>,
    /// Batching (`scheduler/batching.rs`): the tasks of each batch still
    /// running, by batch number (a batch holds one slot of its replica
    /// until its last task ended).
    batches: HashMap<u64, usize>,
    next_batch: u64,
    /// When the oldest call held for a batch stops waiting for more.
    gather_until: Option<Instant>,
    /// Queued tasks held for their batch while a replica could take them:
    /// no replica is started for them.
    held_for_batch: usize,
    /// Another version of the app is current (`scheduler/retire.rs`).
    retired: bool,
}

/// Starts the actor of one app, whose workers `launcher` starts.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    entry: AppEntry,
    launcher: &dyn WorkerLauncher,
) -> AppHandle {
    let entry = Arc::new(entry);
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::unbounded_channel();
    let (status, status_rx) = watch::channel(AppStatus::default());
    let queued = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(AtomicBool::new(false));
    let wake = shared.broker.subscribe();
    let max_replicas = entry.bounds.max_replicas.unwrap_or(shared.config.replicas);
    let replicas = (0..max_replicas.max(1))
        .map(|_| Replica::absent())
        .collect();
    let launcher = launcher.for_app(shared.clone(), entry.clone());
    let never = entry
        .needs
        .as_ref()
        .ok()
        .and_then(|needs| shared.broker.never(&entry.id, needs));
    if let Some(why) = &never {
        tracing::warn!(app = %entry.id, "{why}: its runs will be refused");
    }
    let actor = Actor {
        shared,
        entry: entry.clone(),
        commands,
        events_tx,
        events,
        status,
        queued: queued.clone(),
        drained: drained.clone(),
        wake,
        queue: VecDeque::new(),
        scheduled: Vec::new(),
        replicas,
        running: HashMap::new(),
        info: None,
        discover_waiters: Vec::new(),
        failure: None,
        retry_wanted: false,
        shutdown: None,
        waiting_for_slot: false,
        probing: false,
        stopping: Vec::new(),
        told_slot_wait: HashSet::new(),
        reported_waiting: 0,
        slot_reserved: false,
        tasks: JoinSet::new(),
        launcher,
        batches: HashMap::new(),
        next_batch: 0,
        gather_until: None,
        held_for_batch: 0,
        retired: false,
    };
    tokio::spawn(actor.run());
    AppHandle {
        entry,
        commands: commands_tx,
        status: status_rx,
        queued,
        drained,
        never,
    }
}

impl Actor {
    async fn run(mut self) {
        loop {
            let wake = self.wake_at();
            // A session due to expire (scheduler/sessions.rs).
            let wake = match (wake, self.shared.sessions.next_expiry(&self.entry.id)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // A batch that stops gathering.
            let wake = match (wake, self.gather_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                Some(event) = self.events.recv() => self.event(event),
                Ok(()) = self.wake.changed() => self.schedule(),
                () = sleep_until(wake), if wake.is_some() => self.schedule(),
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(e) = joined {
                        if e.is_panic() {
                            tracing::error!(app = %self.entry.id, "a task of the scheduler panicked: {e}");
                        }
                    }
                }
            }
            if matches!(self.shutdown, Some((_, true))) && self.running.is_empty() {
                if let Some((reply, _)) = self.shutdown.take() {
                    let _ = reply.send(());
                }
                break;
            }
        }
        // Dropping `self.tasks` aborts what is left; dropping the replicas
        // drops the last worker handles, which kills the processes.
    }

    /// Shutdown began (the engine's phase, set before the `Drain` command
    /// arrives): nothing more is dispatched.
    pub(super) fn draining(&self) -> bool {
        !self.shared.lifecycle.is_running()
    }

    /// Dispatch paused by a drain of the engine or of this app: queued
    /// tasks stay queued, running ones finish.
    pub(super) fn paused(&self) -> bool {
        self.shared.broker.is_draining() || self.drained.load(Ordering::SeqCst)
    }

    /// Tasks one replica runs at once: the app's bound, else the server's.
    fn concurrency(&self) -> usize {
        self.entry
            .bounds
            .concurrency
            .unwrap_or(self.shared.config.concurrency_per_replica)
            .max(1)
    }

    /// While true, no replica starts and no setup runs.
    pub(super) fn in_backoff(&self) -> bool {
        self.failure
            .as_ref()
            .is_some_and(|f| Instant::now() < f.retry_at)
    }

    /// When the backoff ends, if something then waits for a worker.
    fn wake_at(&self) -> Option<Instant> {
        let failure = self.failure.as_ref()?;
        let wanted = !self.queue.is_empty()
            || !self.discover_waiters.is_empty()
            || self.retry_wanted
            || self.shared.config.preload;
        (wanted && !self.draining() && Instant::now() < failure.retry_at)
            .then_some(failure.retry_at)
    }

    /// `<last error>; retrying in Ns`, for a discovery refused during the backoff.
    fn unavailable(&self, failure: &Failure) -> EngineError {
        let left = failure.retry_at.saturating_duration_since(Instant::now());
        EngineError::AppUnavailable {
            app: self.entry.id.clone(),
            message: format!(
                "{}; retrying in {}s",
                failure.message,
                left.as_secs_f64().ceil().max(1.0)
            ),
            traceback: failure.traceback.clone(),
        }
    }

    /// Records a failure (secrets redacted) and starts its backoff.
    pub(super) fn fail(&mut self, stage: Stage, message: String, traceback: Option<String>) {
        let redactor = &self.shared.redactor;
        let message = redactor.string(message);
        let traceback = redactor.option(traceback).filter(|t| !t.trim().is_empty());
        let count = self.failure.as_ref().map_or(0, |f| f.count) + 1;
        let backoff = restart_backoff(count);
        tracing::warn!(
            app = %self.entry.id,
            failures = count,
            retry_in = ?backoff,
            error = %message,
            "app unhealthy; backing off before the next worker start"
        );
        self.failure = Some(Failure {
            stage,
            message,
            traceback,
            count,
            at_ms: now_ms(),
            retry_at: Instant::now() + backoff,
        });
    }

    /// Tells the tasks that wait why, and for how long at least.
    pub(super) fn note_waiting(&mut self) {
        let Some(failure) = &self.failure else {
            return;
        };
        let note = format!(
            "the app is unhealthy ({}); its next attempt is in {:.1}s",
            failure.message,
            secs_until(failure.retry_at)
        );
        for task in &self.queue {
            let mut tracker = Tracker::new(self.shared.clone(), task.live.clone());
            let note = note.clone();
            self.tasks.spawn(async move {
                tracker.log(LogType::Serve, note);
                tracker.flush().await;
            });
        }
    }

    /// A success at `stage`: clears a failure of that stage or an earlier one.
    pub(super) fn succeeded(&mut self, stage: Stage) {
        if self.failure.as_ref().is_some_and(|f| f.stage <= stage) {
            tracing::info!(app = %self.entry.id, "app healthy again");
            self.failure = None;
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Discover(reply) => {
                if self.draining() {
                    let _ = reply.send(Err(EngineError::ShuttingDown));
                } else if let Some(info) = &self.info {
                    let _ = reply.send(Ok(info.clone()));
                } else if let Some(failure) = self.failure.as_ref().filter(|_| {
                    self.in_backoff()
                        && !self
                            .replicas
                            .iter()
                            .any(|r| r.is_starting() || r.up().is_some())
                }) {
                    let _ = reply.send(Err(self.unavailable(failure)));
                    self.retry_wanted = true;
                } else {
                    self.discover_waiters.push(reply);
                    let any = self
                        .replicas
                        .iter()
                        .any(|r| r.is_starting() || r.up().is_some());
                    // Drained (no replica starts), or every slot it could
                    // use is held (a discovery never evicts: it may be a
                    // read-only GET /apps/{id}): learn its functions
                    // without a replica, so that its runs queue.
                    if !any && (self.paused() || !self.start_replica(0, None, false, None)) {
                        self.probe();
                    }
                    self.publish();
                }
            }
            Command::Enqueue(task) => {
                if self.draining() {
                    // Stored as QUEUED: the next start runs it.
                    dec_usize(&self.queued);
                } else {
                    self.enqueue_task(*task);
                }
            }
            Command::Cancel { id, reply } => {
                let answer = if let Some(pos) = self.queue.iter().position(|t| t.record.id == id) {
                    let task = self.queue.remove(pos).expect("position is valid");
                    dec_usize(&self.queued);
                    CancelReply::Dequeued(Box::new(task))
                } else if let Some(task) = self.take_scheduled(&id) {
                    dec_usize(&self.queued);
                    CancelReply::Dequeued(Box::new(task))
                } else if let Some(running) = self.running.get(&id) {
                    let (ack, acked) = oneshot::channel();
                    match running.cancel.try_send(ack) {
                        Ok(()) => CancelReply::Signalled(acked),
                        Err(_) => CancelReply::NotHere,
                    }
                } else {
                    CancelReply::NotHere
                };
                let _ = reply.send(answer);
                self.publish();
            }
            Command::Preload | Command::Wake => self.schedule(),
            Command::Workers(reply) => {
                let _ = reply.send(self.worker_views());
            }
            Command::Drain => self.drain(),
            Command::Retire(retired) => {
                self.retire(retired);
                self.schedule();
            }
            Command::Shutdown {
                unload_grace,
                reply,
            } => {
                self.drain();
                let mut workers = Vec::new();
                for replica in &mut self.replicas {
                    let lease = replica.lease.take();
                    match std::mem::replace(
                        &mut replica.state,
                        ReplicaState::Absent { failed: false },
                    ) {
                        ReplicaState::Starting { abort } => abort.abort(),
                        ReplicaState::Up(up) => workers.push((up.worker, lease)),
                        ReplicaState::Absent { .. } => {}
                    }
                }
                let events = self.events_tx.clone();
                self.tasks.spawn(async move {
                    let mut stops = JoinSet::new();
                    for (worker, lease) in workers {
                        stops.spawn(async move {
                            let stopped = worker.shutdown(unload_grace).await;
                            // The slot is free once the process is gone.
                            drop(lease);
                            stopped
                        });
                    }
                    while let Some(result) = stops.join_next().await {
                        if let Ok(Err(e)) = result {
                            tracing::debug!(error = %ErrorChain(&e), "worker shutdown");
                        }
                    }
                    let _ = events.send(Event::WorkersStopped);
                });
                self.shutdown = Some((reply, false));
                self.publish();
            }
        }
    }

    fn drain(&mut self) {
        for waiter in self.discover_waiters.drain(..) {
            let _ = waiter.send(Err(EngineError::ShuttingDown));
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Started {
                replica,
                generation,
                result,
            } => self.started(replica, generation, result),
            Event::SetupDone {
                replica,
                generation,
            } => {
                if let Some(up) = self.up_mut(replica, generation) {
                    up.setting_up = false;
                    self.succeeded(Stage::Setup);
                }
            }
            Event::WorkerOutcome {
                replica,
                generation,
                outcome,
                ack,
            } => {
                self.worker_outcome(replica, generation, outcome);
                // Published before the ack (schedule() publishes too).
                self.publish();
                let _ = ack.send(());
            }
            Event::TaskEnded {
                replica,
                generation,
                task_id,
                outcome,
            } => self.task_ended(replica, generation, task_id, outcome),
            Event::WorkersStopped => {
                if let Some((_, stopped)) = &mut self.shutdown {
                    *stopped = true;
                }
            }
            Event::Evict {
                replica,
                generation,
            } => self.evict(replica, generation),
            Event::Probed(result) => self.probed(result),
            Event::Due(id) => self.due(&id),
            Event::WorkerExited {
                replica,
                generation,
                status,
            } => {
                let idle = self
                    .up_mut(replica, generation)
                    .is_some_and(|up| up.busy == 0 && !up.setting_up);
                if idle {
                    let message = format!("the worker exited ({status}) while idle");
                    tracing::warn!(app = %self.entry.id, replica, "{message}");
                    self.worker_outcome(
                        replica,
                        generation,
                        ReplicaOutcome::Crashed {
                            message,
                            traceback: None,
                        },
                    );
                }
            }
            Event::Evicted { replica, pid } => self
                .stopping
                .retain(|s| !(s.replica == replica && s.pid == pid)),
        }
        self.schedule();
    }

    fn up_mut(&mut self, replica: usize, generation: u64) -> Option<&mut Up> {
        let r = self.replicas.get_mut(replica)?;
        match &mut r.state {
            ReplicaState::Up(up) if r.generation == generation => Some(up),
            _ => None,
        }
    }

    /// Starts replica `idx` if the placement broker gives it a slot;
    /// false when it does not (yet). `for_queue`: for queued tasks, the
    /// only start that may evict another app's idle replica.
    pub(super) fn start_replica(
        &mut self,
        idx: usize,
        setup: Option<Value>,
        for_queue: bool,
        only: Option<&[usize]>,
    ) -> bool {
        let generation = self.replicas[idx].generation + 1;
        let Some(lease) = self.lease_for(idx, generation, for_queue, only) else {
            return false;
        };
        let slot = SlotEnv::of(lease.slot());
        let replica = &mut self.replicas[idx];
        replica.generation = generation;
        replica.lease = Some(lease);
        // A fresh start (a pinned run of a retired version) is a cold app's.
        replica.retiring = false;
        let start = start_worker(
            self.shared.clone(),
            self.entry.clone(),
            self.launcher.clone(),
            setup,
            slot,
        );
        let events = self.events_tx.clone();
        let abort = self.tasks.spawn(async move {
            let result = start.await.map(Box::new);
            let _ = events.send(Event::Started {
                replica: idx,
                generation,
                result,
            });
        });
        replica.state = ReplicaState::Starting { abort };
        true
    }

    fn started(&mut self, idx: usize, generation: u64, result: Result<Box<Started>, StartFailure>) {
        let current = self
            .replicas
            .get(idx)
            .is_some_and(|r| r.generation == generation && r.is_starting());
        if !current {
            if let Ok(started) = result {
                self.tasks
                    .spawn(async move { started.worker.kill(KILL_GRACE).await });
            }
            return;
        }
        match result {
            Ok(started) => {
                if let Some(lease) = &self.replicas[idx].lease {
                    lease.ready();
                }
                let info = Arc::new(AppInfo::new(
                    started.ready,
                    self.entry.dir.manifest.default_function.as_deref(),
                ));
                self.info = Some(info.clone());
                self.succeeded(if started.setup.is_some() {
                    Stage::Setup
                } else {
                    Stage::Load
                });
                if let Some(mut exited) = started.worker.exit_watch() {
                    let events = self.events_tx.clone();
                    self.tasks.spawn(async move {
                        if let Ok(status) = exited.wait_for(Option::is_some).await {
                            let status = status.map(|s| s.to_string()).unwrap_or_default();
                            let _ = events.send(Event::WorkerExited {
                                replica: idx,
                                generation,
                                status,
                            });
                        }
                    });
                }
                self.replicas[idx].state = ReplicaState::Up(Up {
                    worker_id: started.worker.id(),
                    worker: started.worker,
                    setup: started.setup,
                    setting_up: false,
                    busy: 0,
                    warm_since_ms: now_ms(),
                    last_used_ms: None,
                    pending_logs: started.logs,
                    stop_reason: Default::default(),
                });
                // Published first, so a waiter reads a status that knows
                // the functions.
                self.publish();
                for waiter in self.discover_waiters.drain(..) {
                    let _ = waiter.send(Ok(info.clone()));
                }
            }
            Err(failure) => {
                self.replicas[idx].state = ReplicaState::Absent {
                    failed: failure.load,
                };
                // No process is left (a failed setup killed it).
                self.replicas[idx].lease = None;
                if let Some(ready) = failure.ready {
                    // A preload whose setup failed: the functions are known.
                    self.info = Some(Arc::new(AppInfo::new(
                        *ready,
                        self.entry.dir.manifest.default_function.as_deref(),
                    )));
                }
                let stage = if failure.load {
                    Stage::Load
                } else {
                    Stage::Setup
                };
                self.fail(stage, failure.message, failure.traceback);
                let Some(recorded) = &self.failure else {
                    unreachable!("a failure was just recorded");
                };
                let (message, traceback) = (recorded.message.clone(), recorded.traceback.clone());
                let info = self.info.clone();
                for waiter in self.discover_waiters.drain(..) {
                    let _ = waiter.send(match &info {
                        Some(info) => Ok(info.clone()),
                        None => Err(EngineError::AppUnavailable {
                            app: self.entry.id.clone(),
                            message: message.clone(),
                            traceback: traceback.clone(),
                        }),
                    });
                }
                let others = self
                    .replicas
                    .iter()
                    .any(|r| r.is_starting() || r.up().is_some());
                if stage == Stage::Load && !others {
                    // Nothing can run them: fail what waits rather than let
                    // it wait for a fix that may never come.
                    let error = format!("app \"{}\" failed to load: {message}", self.entry.id);
                    for task in self.queue.drain(..) {
                        dec_usize(&self.queued);
                        let shared = self.shared.clone();
                        let error = error.clone();
                        let traceback = traceback.clone();
                        self.tasks.spawn(async move {
                            let mut tracker = Tracker::new(shared, task.live);
                            if let Some(traceback) = traceback {
                                tracker.log(LogType::Serve, traceback);
                            }
                            tracker.finish(TaskStatus::Failed, None, Some(error)).await;
                        });
                    }
                } else {
                    self.note_waiting();
                }
            }
        }
    }
}

mod batching;
mod dispatch;
mod retire;
mod run_at;
mod sessions;
mod slots;
mod start;
#[cfg(test)]
mod tests;
mod workers;

/// Seconds left until `at`, for display.
pub(crate) fn secs_until(at: Instant) -> f64 {
    at.saturating_duration_since(Instant::now()).as_secs_f64()
}

fn dec_usize(n: &AtomicUsize) {
    let _ = n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1));
}
