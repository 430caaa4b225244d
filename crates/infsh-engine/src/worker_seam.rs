//! The seam between the scheduler and worker processes: what a replica
//! needs from a worker, as object-safe traits, so the scheduler's rules
//! (dispatch, backoff, cancellation, timeouts) run the same against a real
//! Python worker and against the scripted fake of its unit tests
//! (`testing/fake_worker.rs`).
//!
//! - [`WorkerLauncher`]: given to `Engine::start_with`, which hands it to
//!   each app's scheduler at its spawn for its [`AppLauncher`], which starts that app's workers and
//!   waits for their `ready`. The real one is
//!   [`crate::python_launcher::PythonLauncher`] (environment, zygote,
//!   `python -m infsh_worker`).
//! - [`AppWorker`]: a started worker: setup, call, cancel, kill, shutdown
//!   (`unload`), its pid. Implemented by [`infsh_worker::Worker`] itself.
//!
//! Errors stay [`WorkerError`]: the runner tells an app's failure
//! (`SetupFailed`, `CallFailed`) from a worker that is gone (`Exited`,
//! `Protocol`) by its variant, and the task errors are made of its parts
//! (docs/reliability.md lists them). Each operation is one boxed future
//! (`async_trait`) on top of the worker's own; no thread or channel is
//! added.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infsh_protocol::{CallId, Ready};
use infsh_store::LogEntry;
use infsh_worker::{
    BatchCall, CallEvent, CallOutcome, CallRequest, ExitDescription, LogLine, Worker, WorkerError,
};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::registry::AppEntry;
use crate::shared::Shared;

/// How long a worker gets to exit on SIGTERM before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long a worker gets for `unload` (at shutdown, or when evicted for
/// another app) before it is killed.
pub const UNLOAD_GRACE: Duration = Duration::from_secs(5);

/// What a worker's slot means for its process: the GPUs it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotEnv {
    /// `CUDA_VISIBLE_DEVICES`: the slot's GPUs (`2,3`), empty on a CPU
    /// slot; None (inherited) for an unbounded CPU replica.
    pub cuda_visible_devices: Option<String>,
    /// The same GPUs for the SDK's `metadata.gpu_ids` (strings, as its
    /// `Metadata.gpu_ids: List[str]`).
    pub gpu_ids: Vec<String>,
    /// May be forked from the app's zygote (see [`SlotEnv::may_fork`]).
    fork: bool,
}

impl SlotEnv {
    pub fn of(slot: Option<&infsh_placement::Slot>) -> SlotEnv {
        match slot {
            None => SlotEnv {
                cuda_visible_devices: None,
                gpu_ids: Vec::new(),
                fork: true,
            },
            Some(slot) => {
                let gpu_ids: Vec<String> = slot.gpu_indexes().iter().map(u32::to_string).collect();
                SlotEnv {
                    cuda_visible_devices: Some(slot.cuda_visible_devices()),
                    fork: gpu_ids.is_empty(),
                    gpu_ids,
                }
            }
        }
    }

    /// A worker started only to learn the app's functions while every slot
    /// it could use is held: it sees no GPU, is started as a new
    /// interpreter (no zygote is kept for it), and is stopped at once.
    pub fn probe() -> SlotEnv {
        SlotEnv {
            cuda_visible_devices: Some(String::new()),
            gpu_ids: Vec::new(),
            fork: false,
        }
    }

    /// A worker that sees a GPU is started as a new interpreter: CUDA's
    /// state must not cross a fork, and the zygote's environment is not
    /// the slot's.
    pub fn may_fork(&self) -> bool {
        self.fork
    }
}

/// Starts workers: one [`AppLauncher`] per hosted app.
pub(crate) trait WorkerLauncher: Send + Sync {
    /// The launcher of one app's workers. Its scheduler holds it, so what
    /// it keeps between starts (the app's zygote) ends with the scheduler.
    fn for_app(&self, shared: Arc<Shared>, entry: Arc<AppEntry>) -> Arc<dyn AppLauncher>;
}

/// Starts the workers of one app.
#[async_trait]
pub(crate) trait AppLauncher: Send + Sync {
    /// Starts one worker for a slot and waits for its `ready`. Dropping
    /// the future stops the worker it was starting.
    async fn launch(&self, slot: &SlotEnv) -> Result<Launched, StartFailure>;

    /// Lets go of what it keeps between starts (the app's zygote), for an
    /// app with no replica left that is not expected to run again soon (a
    /// retired version); the next launch starts it again.
    fn release(&self) {}
}

/// A worker that started.
pub(crate) struct Launched {
    pub worker: Arc<dyn AppWorker>,
    pub ready: Ready,
    /// What preparing it wrote (the environment's build), for the first
    /// task that runs on it.
    pub logs: Vec<LogEntry>,
}

/// One started worker, serving every function of its app. Dropping the
/// last handle kills it.
#[async_trait]
pub(crate) trait AppWorker: Send + Sync {
    /// The worker's pid (its process group).
    fn pid(&self) -> u32;

    /// `local-<pid>`: the `worker_id` of the SDK's metadata.
    fn id(&self) -> String {
        format!("local-{}", self.pid())
    }

    /// Runs `setup` with `config`; returns how long it took, in seconds.
    /// The app's output goes to `logs`, complete when this returns.
    async fn setup(
        &self,
        config: Value,
        metadata: Value,
        logs: mpsc::UnboundedSender<LogLine>,
    ) -> Result<f64, WorkerError>;

    /// Calls one function; its logs and snapshots arrive on `events`, all of
    /// them before this returns.
    async fn call(
        &self,
        request: CallRequest,
        events: mpsc::UnboundedSender<CallEvent>,
    ) -> Result<CallOutcome, WorkerError>;

    /// Runs a batched function once for several calls (`call_batch`);
    /// returns at once, each call is answered on its own `reply`.
    fn call_batch(&self, function: String, calls: Vec<BatchCall>);

    /// Asks the worker to cancel a call in flight (it then fails with kind
    /// `cancelled`); a call that does not stop is the caller's to kill.
    async fn cancel(&self, id: &CallId) -> Result<(), WorkerError>;

    /// SIGTERM, up to `grace`, then SIGKILL; returns once the worker is
    /// gone. Pending operations fail with [`WorkerError::Exited`].
    async fn kill(&self, grace: Duration);

    /// Runs `unload` and lets the worker exit, killing it after `grace`.
    async fn shutdown(&self, grace: Duration) -> Result<ExitDescription, WorkerError>;

    /// Says how the process ended once it did, for the scheduler to learn
    /// of the death of an idle worker (a replica leased to a session ends
    /// its session then). None: the worker cannot tell (it is found dead
    /// at its next call instead).
    fn exit_watch(&self) -> Option<watch::Receiver<Option<ExitDescription>>> {
        None
    }
}

#[async_trait]
impl AppWorker for Worker {
    fn pid(&self) -> u32 {
        Worker::pid(self)
    }

    async fn setup(
        &self,
        config: Value,
        metadata: Value,
        logs: mpsc::UnboundedSender<LogLine>,
    ) -> Result<f64, WorkerError> {
        Worker::setup(self, config, metadata, logs).await
    }

    async fn call(
        &self,
        request: CallRequest,
        events: mpsc::UnboundedSender<CallEvent>,
    ) -> Result<CallOutcome, WorkerError> {
        Worker::call(self, request, events).await
    }

    fn call_batch(&self, function: String, calls: Vec<BatchCall>) {
        Worker::call_batch(self, function, calls)
    }

    async fn cancel(&self, id: &CallId) -> Result<(), WorkerError> {
        Worker::cancel(self, id).await
    }

    async fn kill(&self, grace: Duration) {
        Worker::kill(self, grace).await
    }

    async fn shutdown(&self, grace: Duration) -> Result<ExitDescription, WorkerError> {
        Worker::shutdown(self, grace).await
    }

    fn exit_watch(&self) -> Option<watch::Receiver<Option<ExitDescription>>> {
        Some(Worker::exit_watch(self))
    }
}

/// The SDK metadata `setup` gets: the app, the worker, and on a GPU slot
/// the GPUs it sees (`gpu_ids`, absent elsewhere).
pub(crate) fn setup_metadata(app_id: &str, worker_id: &str, gpu_ids: &[String]) -> Value {
    let mut metadata = serde_json::json!({"app_id": app_id, "worker_id": worker_id});
    if !gpu_ids.is_empty() {
        metadata["gpu_ids"] = serde_json::json!(gpu_ids);
    }
    metadata
}

/// Why a replica did not start.
#[derive(Debug, Clone)]
pub(crate) struct StartFailure {
    pub message: String,
    pub traceback: Option<String>,
    /// The worker itself did not start (vs. a preload setup that failed).
    pub load: bool,
    /// What the worker reported before its setup failed (the app's functions
    /// are known even though it is not usable).
    pub ready: Option<Box<Ready>>,
}

impl StartFailure {
    /// The worker did not start (or not in time).
    pub fn load(message: String, traceback: Option<String>) -> Self {
        StartFailure {
            message,
            traceback: traceback.filter(|t| !t.is_empty()),
            load: true,
            ready: None,
        }
    }
}

/// `setup failed: <error>` and the traceback of a failed setup (the
/// worker's last stderr lines when it died during setup).
pub(crate) fn setup_error(e: WorkerError) -> (String, Option<String>) {
    match e {
        WorkerError::SetupFailed(f) => (format!("setup failed: {}", f.error), Some(f.traceback)),
        WorkerError::Exited {
            status,
            stderr_tail,
            ..
        } => (
            format!("setup failed: the worker exited ({status}) during setup"),
            Some(stderr_tail.join("\n")),
        ),
        other => (format!("setup failed: {other}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_metadata_names_the_gpus_as_strings_only_on_a_gpu_slot() {
        let on_pair = setup_metadata("acme/flux", "local-7", &["2".into(), "3".into()]);
        assert_eq!(
            on_pair,
            serde_json::json!({"app_id": "acme/flux", "worker_id": "local-7", "gpu_ids": ["2", "3"]})
        );
        let on_cpu = setup_metadata("acme/flux", "local-7", &[]);
        assert_eq!(
            on_cpu,
            serde_json::json!({"app_id": "acme/flux", "worker_id": "local-7"})
        );
    }

    #[test]
    fn a_gpu_slot_is_never_forked_and_a_cpu_slot_sees_no_gpu() {
        let unbounded = SlotEnv::of(None);
        assert_eq!(unbounded.cuda_visible_devices, None);
        assert!(unbounded.may_fork());
        assert!(!SlotEnv::probe().may_fork());
        assert_eq!(SlotEnv::probe().cuda_visible_devices.as_deref(), Some(""));
    }
}
