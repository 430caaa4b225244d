//! [`AppHandle`]: the engine's side of one app's scheduler actor
//! (`scheduler.rs`). Commands go over an unbounded channel, answers come back
//! on oneshots; the actor publishes its state on a watch channel that the
//! synchronous `apps()` / `readiness()` read. The queue length is an atomic
//! shared with the actor, so a full queue is refused before anything is
//! stored.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use infsh_store::{LogEntry, TaskRecord};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::{AppState, EngineError, TaskView};
use crate::app_info::AppInfo;
use crate::live::{LiveTask, LiveTasks};
use crate::registry::AppEntry;
use crate::timing::StageClock;
use crate::views::WorkerView;

/// A stored task waiting for a replica.
pub(crate) struct QueuedTask {
    pub record: TaskRecord,
    pub live: LiveTask,
    /// Where the task's time goes (read by whoever waits for it).
    pub clock: Arc<StageClock>,
    /// When it was queued here: the oldest call of a batch waits for
    /// others from then (`scheduler/batching.rs`).
    pub since: tokio::time::Instant,
    /// Only a replica on one of these slots may run it ([`RunRequest`]'s
    /// `slots`: a fleet run pinned to named slots).
    ///
    /// [`RunRequest`]: crate::RunRequest
    pub slots: Option<Vec<usize>>,
}

pub(crate) enum Command {
    /// Answer with the app's functions, starting a worker to learn them.
    Discover(oneshot::Sender<Result<Arc<AppInfo>, EngineError>>),
    Enqueue(Box<QueuedTask>),
    Cancel {
        id: String,
        reply: oneshot::Sender<CancelReply>,
    },
    /// Start every replica now and set it up with the default config.
    Preload,
    /// Dispatch nothing more (shutdown begins); queued tasks stay queued.
    Drain,
    /// Look at the queue again (dispatch resumed after a drain).
    Wake,
    /// Answer with one row per replica.
    Workers(oneshot::Sender<Vec<WorkerView>>),
    /// `true`: another version of the app became current: stop the idle
    /// replicas now and the busy ones when their tasks end (a session's
    /// replica stays while it lives), and start none for a preload or
    /// `min_replicas`. `false`: this one is current (again).
    Retire(bool),
    /// Stop every worker (their `unload` runs), wait for the tasks still
    /// running to be recorded, then end the actor.
    Shutdown {
        unload_grace: Duration,
        reply: oneshot::Sender<()>,
    },
}

pub(crate) enum CancelReply {
    /// It was waiting: it is out of the queue; the caller records the end.
    Dequeued(Box<QueuedTask>),
    /// It runs: its runner was told, and answers once it is CANCELLING.
    Signalled(oneshot::Receiver<()>),
    /// Neither queued nor running here (it ended meanwhile).
    NotHere,
}

/// What the actor publishes about itself.
#[derive(Debug, Clone)]
pub(crate) struct AppStatus {
    pub state: AppState,
    /// Workers up.
    pub replicas: usize,
    /// Tasks running.
    pub busy: usize,
    pub last_error: Option<String>,
    pub traceback: Option<String>,
    /// Consecutive failures.
    pub failures: u32,
    pub failed_at_ms: Option<i64>,
    /// No worker starts (and no setup runs) before this, while unhealthy.
    pub retry_at: Option<tokio::time::Instant>,
    /// Known once a worker started.
    pub info: Option<Arc<AppInfo>>,
}

impl Default for AppStatus {
    fn default() -> Self {
        AppStatus {
            state: AppState::Idle,
            replicas: 0,
            busy: 0,
            last_error: None,
            traceback: None,
            failures: 0,
            failed_at_ms: None,
            retry_at: None,
            info: None,
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppHandle {
    pub entry: Arc<AppEntry>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) status: watch::Receiver<AppStatus>,
    /// Tasks queued or reserved (being stored) for this app.
    pub(crate) queued: Arc<AtomicUsize>,
    /// Dispatch of this app paused (`Engine::drain_app`); read by its actor.
    pub(crate) drained: Arc<AtomicBool>,
    /// Why no slot of this machine can ever host the app, if none can:
    /// its runs are refused at once.
    pub(crate) never: Option<infsh_placement::NoMatchingWorker>,
}

impl AppHandle {
    pub fn status(&self) -> AppStatus {
        self.status.borrow().clone()
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    fn send(&self, cmd: Command) -> Result<(), EngineError> {
        self.commands
            .send(cmd)
            .map_err(|_| EngineError::ShuttingDown)
    }

    /// Sends [`Command::Retire`]; an actor that ended has nothing to stop.
    pub fn retire(&self, retired: bool) {
        let _ = self.send(Command::Retire(retired));
    }

    pub async fn discover(&self) -> Result<Arc<AppInfo>, EngineError> {
        if let Some(info) = self.status.borrow().info.clone() {
            return Ok(info);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Discover(reply))?;
        answer.await.map_err(|_| EngineError::ShuttingDown)?
    }

    /// Takes a queue slot if fewer than `capacity` are taken.
    pub fn try_reserve(&self, capacity: usize) -> bool {
        self.queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back a slot taken by [`AppHandle::try_reserve`] and not used.
    pub fn release(&self) {
        let _ = self
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Queues a stored task whose slot was reserved.
    pub fn enqueue(&self, task: QueuedTask) {
        if self.send(Command::Enqueue(Box::new(task))).is_err() {
            // The actor is gone (shutdown): the task stays QUEUED in the
            // store and is picked up by the next start.
            self.release();
        }
    }

    /// Queues a waiting task the store says is this node's (found at start,
    /// or taken over from a lost API node), with a live view for its
    /// watchers. No capacity check: it was accepted before; never pinned
    /// (pins are for engines' slots).
    pub(crate) fn enqueue_recovered(
        &self,
        live: &LiveTasks,
        record: TaskRecord,
        logs: Vec<LogEntry>,
    ) {
        let live = live.insert(TaskView {
            record: record.clone(),
            logs,
            slot: None,
        });
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.enqueue(QueuedTask {
            record,
            live,
            clock: Default::default(),
            since: tokio::time::Instant::now(),
            slots: None,
        });
    }

    pub async fn cancel(&self, id: &str) -> CancelReply {
        let (reply, answer) = oneshot::channel();
        if self
            .send(Command::Cancel {
                id: id.to_string(),
                reply,
            })
            .is_err()
        {
            return CancelReply::NotHere;
        }
        answer.await.unwrap_or(CancelReply::NotHere)
    }

    pub fn preload(&self) {
        let _ = self.send(Command::Preload);
    }

    pub fn drain(&self) {
        let _ = self.send(Command::Drain);
    }

    /// Pauses (true) or resumes this app's dispatch; queued tasks stay queued.
    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::SeqCst);
        let _ = self.send(Command::Wake);
    }

    /// Has the actor look at its queue and sessions again (a session ended).
    pub fn wake(&self) {
        let _ = self.send(Command::Wake);
    }

    /// One row per replica (none once the actor is gone).
    pub async fn workers(&self) -> Vec<WorkerView> {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Workers(reply)).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Tells the actor to stop its workers; the answer comes when it did.
    pub fn shutdown(&self, unload_grace: Duration) -> Option<oneshot::Receiver<()>> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Shutdown {
            unload_grace,
            reply,
        })
        .ok()
        .map(|()| answer)
    }
}
