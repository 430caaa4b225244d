//! [`Worker`]: the public handle. Every method sends a command to the actor
//! (`actor.rs`) and awaits its answer on a oneshot channel; no state is
//! shared, so there is no lock to hold across an `.await`.

use std::path::PathBuf;
use std::time::Duration;

use infsh_protocol::{CallId, Ready};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::actor::{self, Command};
use crate::spawn::Spawned;
use crate::{
    spawn, BatchCall, CallEvent, CallOutcome, CallRequest, ExitDescription, LogLine, WorkerConfig,
    WorkerError,
};

/// A handle to one running worker. Clones share the worker; when the last
/// one is dropped the worker's whole process group is killed (SIGKILL). Use
/// [`Worker::shutdown`] for a graceful end.
#[derive(Debug, Clone)]
pub struct Worker {
    commands: mpsc::UnboundedSender<Command>,
    pid: u32,
    /// Set once the process exited (and was reaped), however.
    exited: watch::Receiver<Option<ExitDescription>>,
}

impl Worker {
    /// Starts `python -u -m infsh_worker` in `cfg.app_dir` and waits for its
    /// `ready`. Output written before any operation (imports, `App()`) and
    /// between operations goes to `idle_logs`.
    ///
    /// Fails with [`WorkerError::LoadFailed`] when the app cannot be loaded,
    /// [`WorkerError::Exited`] (`during: "startup"`) when the process dies
    /// first. There is no timeout here: wrap it in `tokio::time::timeout`;
    /// dropping the future kills the worker.
    pub async fn start(
        cfg: WorkerConfig,
        idle_logs: mpsc::UnboundedSender<LogLine>,
    ) -> Result<(Worker, Ready), WorkerError> {
        let paths = spawn::prepare_paths_async(&cfg).await?;
        let spawned = match spawn::spawn(&cfg, &paths) {
            Ok(spawned) => spawned,
            Err(e) => {
                let _ = std::fs::remove_dir(&paths.spill_dir);
                return Err(e);
            }
        };
        Worker::attach(spawned, paths.spill_dir, idle_logs).await
    }

    /// Supervises a started (or forked) process and waits for its `ready`.
    pub(crate) async fn attach(
        spawned: Spawned,
        spill_dir: PathBuf,
        idle_logs: mpsc::UnboundedSender<LogLine>,
    ) -> Result<(Worker, Ready), WorkerError> {
        let pid = spawned.pid;
        let (ready_tx, ready_rx) = oneshot::channel();
        let (commands, exited) = actor::start(spawned, spill_dir, idle_logs, ready_tx);
        // Held while waiting: if this future is dropped, so is the last
        // handle, and the actor kills the process group.
        let worker = Worker {
            commands,
            pid,
            exited,
        };
        match ready_rx.await {
            Ok(Ok(ready)) => Ok((worker, ready)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(supervisor_gone()),
        }
    }

    /// Runs the app's `setup` with `config` (validated by the worker) and
    /// returns how long it took, in seconds. Setups are serialized: a second
    /// one waits for the first. The app's output while it runs goes to `logs`
    /// and is complete when this returns.
    pub async fn setup(
        &self,
        config: Value,
        metadata: Value,
        logs: mpsc::UnboundedSender<LogLine>,
    ) -> Result<f64, WorkerError> {
        self.ask(|reply| Command::Setup {
            config,
            metadata,
            logs,
            reply,
        })
        .await?
    }

    /// Calls one function. Snapshots (streaming functions) and the app's
    /// output arrive on `events` while it runs; all of them have been sent
    /// when this returns. Dropping this future does not stop the call in the
    /// worker: use [`Worker::cancel`].
    pub async fn call(
        &self,
        req: CallRequest,
        events: mpsc::UnboundedSender<CallEvent>,
    ) -> Result<CallOutcome, WorkerError> {
        self.ask(|reply| Command::Call { req, events, reply })
            .await?
    }

    /// Calls a batched function once for several calls (one `call_batch`
    /// message). Each call is answered on its own `reply`, its events on its
    /// own `events` (the app's output goes to every call of the batch, as
    /// to every call in flight). Returns at once; a worker that is gone
    /// fails every reply.
    pub fn call_batch(&self, function: String, calls: Vec<BatchCall>) {
        if let Err(mpsc::error::SendError(Command::CallBatch { calls, .. })) =
            self.commands.send(Command::CallBatch { function, calls })
        {
            for call in calls {
                let _ = call.reply.send(Err(supervisor_gone()));
            }
        }
    }

    /// Asks the worker to cancel a call in flight; that call then fails with
    /// kind `cancelled` (after the app's `on_cancel`). Unknown or finished
    /// ids are ignored. A call that does not stop is the caller's to
    /// [`Worker::kill`].
    pub async fn cancel(&self, id: &CallId) -> Result<(), WorkerError> {
        let id = id.clone();
        self.ask(|reply| Command::Cancel { id, reply }).await?
    }

    /// Asks the worker to run `unload` and exit, waits up to `grace` for it
    /// to do so, then kills the process group. Returns how the process
    /// ended. An error `unload` raised is reported on `idle_logs` (stderr).
    /// Calls still in flight fail with [`WorkerError::Exited`].
    pub async fn shutdown(&self, grace: Duration) -> Result<ExitDescription, WorkerError> {
        self.ask(|reply| Command::Shutdown { grace, reply }).await?
    }

    /// SIGTERM to the process group, up to `grace` for the worker to exit,
    /// then SIGKILL; returns once the worker is gone (whatever it left behind
    /// in its group is SIGKILLed too). Idempotent. Pending operations fail
    /// with [`WorkerError::Exited`].
    pub async fn kill(&self, grace: Duration) {
        let _ = self.ask(|reply| Command::Kill { grace, reply }).await;
    }

    /// The worker's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Says how the process ended once it did (None before): a watcher of
    /// an idle worker holds this rather than a handle, which would keep
    /// the worker alive.
    pub fn exit_watch(&self) -> watch::Receiver<Option<ExitDescription>> {
        self.exited.clone()
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, WorkerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| supervisor_gone())?;
        answer.await.map_err(|_| supervisor_gone())
    }
}

/// The actor stops only when every handle is gone, so a handle that finds
/// it gone means it panicked.
fn supervisor_gone() -> WorkerError {
    WorkerError::Protocol("the worker's supervisor task ended unexpectedly".into())
}
