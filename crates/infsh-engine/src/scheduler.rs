//! One app's scheduler: an actor task that owns the app's queue (FIFO), its
//! replicas (`replica.rs`) and the tasks running on them. Nothing here is
//! shared or locked; the engine talks to it through an [`AppHandle`], and
//! the futures it spawns (worker starts, task runners in `runner.rs`) report
//! back on its event channel.
//!
//! Dispatch rule: the head of the queue goes to a replica whose setup config
//! equals the task's with a free slot (`concurrency_per_replica`), else to an
//! idle replica, which then runs setup again with the task's config. While a
//! replica runs setup nothing else goes there. Replicas start lazily, when
//! tasks wait and none can take them (or at `Discover`, without setup).
//!
//! Everything the actor spawns lives in its `JoinSet`: when the last engine
//! handle is dropped the command channel closes, the actor returns, and the
//! set aborts the runners and drops the workers (killed with their process
//! groups), leaving the store as a crash would.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::api::EngineError;
use crate::app_info::AppInfo;
use crate::handle::{AppHandle, AppStatus, CancelReply, Command, QueuedTask};
use crate::registry::AppEntry;
use crate::replica::{
    start_worker, worker_id, Replica, ReplicaState, StartFailure, Started, Up, KILL_GRACE,
};
use crate::shared::Shared;
use crate::tracker::Tracker;
use infsh_store::TaskStatus;

/// What the actor's spawned futures report.
pub(crate) enum Event {
    Started {
        replica: usize,
        generation: u64,
        result: Result<Box<Started>, StartFailure>,
    },
    SetupDone {
        replica: usize,
        generation: u64,
    },
    TaskEnded {
        replica: usize,
        generation: u64,
        task_id: String,
        outcome: ReplicaOutcome,
    },
    WorkersStopped,
}

/// What a task's end says about its worker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReplicaOutcome {
    Healthy,
    /// Dead or killed (crash, timeout, cancel past its grace).
    Lost,
    /// Setup failed; the worker was killed.
    SetupFailed(String),
    /// The runner stopped without ending its task (a bug): end it here.
    RunnerGone,
}

struct Running {
    cancel: mpsc::Sender<oneshot::Sender<()>>,
}

struct Failure {
    message: String,
    /// The worker did not start (vs. its setup failed).
    load: bool,
}

struct Actor {
    shared: Arc<Shared>,
    entry: Arc<AppEntry>,
    commands: mpsc::UnboundedReceiver<Command>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    status: watch::Sender<AppStatus>,
    queued: Arc<AtomicUsize>,
    queue: VecDeque<QueuedTask>,
    replicas: Vec<Replica>,
    running: HashMap<String, Running>,
    info: Option<Arc<AppInfo>>,
    discover_waiters: Vec<oneshot::Sender<Result<Arc<AppInfo>, EngineError>>>,
    /// The last start or setup failure, until a start or setup succeeds.
    failure: Option<Failure>,
    draining: bool,
    shutdown: Option<(oneshot::Sender<()>, bool)>,
    tasks: JoinSet<()>,
}

/// Starts the actor of one app.
pub(crate) fn spawn(shared: Arc<Shared>, entry: AppEntry) -> AppHandle {
    let entry = Arc::new(entry);
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::unbounded_channel();
    let (status, status_rx) = watch::channel(AppStatus::default());
    let queued = Arc::new(AtomicUsize::new(0));
    let replicas = (0..shared.config.replicas.max(1))
        .map(|_| Replica::absent())
        .collect();
    let actor = Actor {
        shared,
        entry: entry.clone(),
        commands,
        events_tx,
        events,
        status,
        queued: queued.clone(),
        queue: VecDeque::new(),
        replicas,
        running: HashMap::new(),
        info: None,
        discover_waiters: Vec::new(),
        failure: None,
        draining: false,
        shutdown: None,
        tasks: JoinSet::new(),
    };
    tokio::spawn(actor.run());
    AppHandle {
        entry,
        commands: commands_tx,
        status: status_rx,
        queued,
    }
}

impl Actor {
    async fn run(mut self) {
        loop {
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                Some(event) = self.events.recv() => self.event(event),
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

    fn concurrency(&self) -> usize {
        self.shared.config.concurrency_per_replica.max(1)
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Discover(reply) => {
                if self.draining {
                    let _ = reply.send(Err(EngineError::ShuttingDown));
                } else if let Some(info) = &self.info {
                    let _ = reply.send(Ok(info.clone()));
                } else {
                    self.discover_waiters.push(reply);
                    let any = self
                        .replicas
                        .iter()
                        .any(|r| r.is_starting() || r.up().is_some());
                    if !any {
                        self.start_replica(0, None);
                    }
                    self.publish();
                }
            }
            Command::Enqueue(task) => {
                if self.draining {
                    // Stored as QUEUED: the next start runs it.
                    dec_usize(&self.queued);
                } else {
                    self.queue.push_back(*task);
                    self.schedule();
                }
            }
            Command::Cancel { id, reply } => {
                let answer = if let Some(pos) = self.queue.iter().position(|t| t.record.id == id) {
                    let task = self.queue.remove(pos).expect("position is valid");
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
            Command::Preload => {
                for idx in 0..self.replicas.len() {
                    if matches!(self.replicas[idx].state, ReplicaState::Absent { .. }) {
                        self.start_replica(idx, Some(json!({})));
                    }
                }
                self.publish();
            }
            Command::Drain => self.drain(),
            Command::Shutdown {
                unload_grace,
                reply,
            } => {
                self.drain();
                let mut workers = Vec::new();
                for replica in &mut self.replicas {
                    match std::mem::replace(
                        &mut replica.state,
                        ReplicaState::Absent { failed: false },
                    ) {
                        ReplicaState::Starting { abort } => abort.abort(),
                        ReplicaState::Up(up) => workers.push(up.worker),
                        ReplicaState::Absent { .. } => {}
                    }
                }
                let events = self.events_tx.clone();
                self.tasks.spawn(async move {
                    let mut stops = JoinSet::new();
                    for worker in workers {
                        stops.spawn(async move { worker.shutdown(unload_grace).await });
                    }
                    while let Some(result) = stops.join_next().await {
                        if let Ok(Err(e)) = result {
                            tracing::debug!(error = %e, "worker shutdown");
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
        self.draining = true;
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
                    self.failure = None;
                }
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

    fn start_replica(&mut self, idx: usize, setup: Option<Value>) {
        let replica = &mut self.replicas[idx];
        replica.generation += 1;
        let generation = replica.generation;
        let start = start_worker(self.shared.clone(), self.entry.clone(), setup);
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
                let info = Arc::new(AppInfo::new(
                    started.ready,
                    self.entry.dir.manifest.default_function.as_deref(),
                ));
                self.info = Some(info.clone());
                if started.setup.is_some() || self.failure.as_ref().is_some_and(|f| f.load) {
                    self.failure = None;
                }
                self.replicas[idx].state = ReplicaState::Up(Up {
                    worker_id: worker_id(&started.worker),
                    worker: started.worker,
                    setup: started.setup,
                    setting_up: false,
                    busy: 0,
                    pending_logs: started.logs,
                });
                // Published first, so a waiter reads a status that knows
                // the functions.
                self.publish();
                for waiter in self.discover_waiters.drain(..) {
                    let _ = waiter.send(Ok(info.clone()));
                }
            }
            Err(failure) => {
                tracing::warn!(app = %self.entry.id, error = %failure.message, "worker did not start");
                self.replicas[idx].state = ReplicaState::Absent {
                    failed: failure.load,
                };
                self.failure = Some(Failure {
                    message: failure.message.clone(),
                    load: failure.load,
                });
                for waiter in self.discover_waiters.drain(..) {
                    let _ = waiter.send(Err(EngineError::AppUnavailable {
                        app: self.entry.id.clone(),
                        message: failure.message.clone(),
                        traceback: failure.traceback.clone(),
                    }));
                }
                let others = self
                    .replicas
                    .iter()
                    .any(|r| r.is_starting() || r.up().is_some());
                if failure.load && !others {
                    // Nothing can run them: fail what waits rather than retry forever.
                    let error = format!(
                        "app \"{}\" failed to load: {}",
                        self.entry.id, failure.message
                    );
                    for task in self.queue.drain(..) {
                        dec_usize(&self.queued);
                        let shared = self.shared.clone();
                        let error = error.clone();
                        self.tasks.spawn(async move {
                            Tracker::new(shared, task.live)
                                .finish(TaskStatus::Failed, None, Some(error))
                                .await;
                        });
                    }
                }
            }
        }
    }
}

mod dispatch;

fn dec_usize(n: &AtomicUsize) {
    let _ = n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1));
}
