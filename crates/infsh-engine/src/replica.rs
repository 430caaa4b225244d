//! One replica of an app: a slot for one worker process that serves every
//! function of the app. The scheduler (`scheduler.rs`) owns the slots and
//! their states; this file says what a slot holds and how a worker is
//! started: the app's environment is prepared (or `config.python` used),
//! `python -m infsh_worker` spawned, and its `ready` awaited. A preloaded
//! replica also runs `setup` with the default config `{}`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use infsh_protocol::Ready;
use infsh_store::{LogEntry, LogType};
use infsh_worker::{LogLine, Worker, WorkerConfig, WorkerError, Zygote, ZygoteStart};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::inputs::worker_env;
use crate::metrics::inc;
use crate::registry::AppEntry;
use crate::shared::Shared;
use crate::tracker::log_entry;

/// Limit on a worker's start (spawn, import of the app, `ready`); building
/// the environment before it is not limited.
pub const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a worker gets to exit on SIGTERM before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

pub(crate) enum ReplicaState {
    /// No worker. `failed`: the last start failed, so it is not started
    /// again while another replica serves.
    Absent {
        failed: bool,
    },
    Starting {
        abort: AbortHandle,
    },
    Up(Up),
}

pub(crate) struct Replica {
    /// Bumped at every start, so events about a replaced worker are ignored.
    pub generation: u64,
    pub state: ReplicaState,
}

/// A running worker.
pub(crate) struct Up {
    pub worker: Worker,
    pub worker_id: String,
    /// The config of the last successful (or in progress) setup; `None`:
    /// never set up.
    pub setup: Option<Value>,
    /// A setup is running: no other task goes here until it is done.
    pub setting_up: bool,
    /// Tasks dispatched here and not ended.
    pub busy: usize,
    /// Output of the environment build and preload setup, handed to the
    /// first task that runs here.
    pub pending_logs: Vec<LogEntry>,
    /// Set by the runner that stops this worker on purpose (a timeout, a
    /// cancel past its grace), so the other tasks running on it are not
    /// taken for victims of a crash.
    pub stop_reason: StopReason,
}

/// Why a worker was stopped on purpose; shared by the tasks running on it.
pub(crate) type StopReason = Arc<Mutex<Option<String>>>;

impl Replica {
    pub fn absent() -> Replica {
        Replica {
            generation: 0,
            state: ReplicaState::Absent { failed: false },
        }
    }

    pub fn up(&self) -> Option<&Up> {
        match &self.state {
            ReplicaState::Up(up) => Some(up),
            _ => None,
        }
    }

    pub fn is_starting(&self) -> bool {
        matches!(self.state, ReplicaState::Starting { .. })
    }
}

/// A worker that started.
pub(crate) struct Started {
    pub worker: Worker,
    pub ready: Ready,
    /// The config setup ran with (preload), if it ran.
    pub setup: Option<Value>,
    pub logs: Vec<LogEntry>,
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
    fn load(message: String, traceback: Option<String>) -> Self {
        StartFailure {
            message,
            traceback: traceback.filter(|t| !t.is_empty()),
            load: true,
            ready: None,
        }
    }
}

/// `local-<pid>`: the `worker_id` of the SDK's metadata.
pub(crate) fn worker_id(worker: &Worker) -> String {
    format!("local-{}", worker.pid())
}

/// Describes a worker that did not start.
fn start_error(e: WorkerError) -> StartFailure {
    match e {
        WorkerError::LoadFailed(f) => {
            StartFailure::load(format!("{} ({})", f.error, f.kind), Some(f.traceback))
        }
        WorkerError::Exited {
            status,
            stderr_tail,
            ..
        } => StartFailure::load(
            format!("the worker exited ({status}) while starting"),
            Some(stderr_tail.join("\n")),
        ),
        other => StartFailure::load(other.to_string(), None),
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

/// An app's zygote (`infsh_worker::Zygote`): started with the app's first
/// worker, then every worker of the app (a second replica, a replacement
/// after a crash) is forked from it in milliseconds. Apps it cannot fork
/// safely, and `--no-fork`, get ordinary worker starts.
#[derive(Default)]
pub(crate) struct ZygoteSlot(tokio::sync::Mutex<ZygoteState>);

#[derive(Default)]
enum ZygoteState {
    #[default]
    None,
    Ready(Zygote),
    /// Forking this app is not safe (the reason was logged once).
    Refused,
}

impl ZygoteSlot {
    /// A worker forked from the app's zygote (started first if needed).
    async fn worker(
        &self,
        app: &str,
        cfg: WorkerConfig,
        idle_logs: mpsc::UnboundedSender<LogLine>,
    ) -> Result<(Worker, Ready), WorkerError> {
        let mut state = self.0.lock().await;
        match &*state {
            ZygoteState::Ready(zygote) if !zygote.is_gone() => {
                let zygote = zygote.clone();
                drop(state);
                match zygote.fork(idle_logs.clone()).await {
                    // It died under the fork: one more try with a new one.
                    Err(_) if zygote.is_gone() => {}
                    other => return other,
                }
                state = self.0.lock().await;
            }
            ZygoteState::Refused => {
                drop(state);
                return Worker::start(cfg, idle_logs).await;
            }
            _ => {}
        }
        match Zygote::start(cfg.clone(), idle_logs.clone()).await? {
            ZygoteStart::Ready(zygote) => {
                tracing::debug!(app, pid = zygote.pid(), "zygote started");
                *state = ZygoteState::Ready(zygote.clone());
                drop(state);
                zygote.fork(idle_logs).await
            }
            ZygoteStart::NotForkable(reason) => {
                tracing::info!(app, %reason, "workers of this app are started, not forked");
                *state = ZygoteState::Refused;
                drop(state);
                Worker::start(cfg, idle_logs).await
            }
        }
    }
}

/// Prepares the environment, starts a worker (forked from the app's
/// zygote unless that is off), and with `setup` runs it.
pub(crate) async fn start_worker(
    shared: Arc<Shared>,
    entry: Arc<AppEntry>,
    zygote: Arc<ZygoteSlot>,
    setup: Option<Value>,
) -> Result<Started, StartFailure> {
    let logs = Arc::new(Mutex::new(Vec::<LogEntry>::new()));
    let push = {
        let logs = logs.clone();
        move |t: LogType, s: String| {
            logs.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(log_entry(t, s))
        }
    };
    let python = match &shared.config.python {
        Some(python) => python.clone(),
        None => {
            let spec =
                infsh_env::EnvSpec::new(&entry.dir.root, shared.config.cache_dir.join("envs"));
            let push = push.clone();
            let prepared = infsh_env::prepare(&spec, move |event| match event {
                infsh_env::EnvProgress::Installing { line } => push(LogType::Build, line),
                infsh_env::EnvProgress::Creating { installer, dir } => push(
                    LogType::Build,
                    format!(
                        "building the app's environment with {installer} in {}",
                        dir.display()
                    ),
                ),
                infsh_env::EnvProgress::Waiting { dir } => push(
                    LogType::Build,
                    format!("waiting for another build of {}", dir.display()),
                ),
                infsh_env::EnvProgress::Done { seconds } => push(
                    LogType::Build,
                    format!("environment built in {seconds:.1}s"),
                ),
                _ => {}
            })
            .await
            .map_err(|e| {
                StartFailure::load(format!("cannot prepare the app's environment: {e}"), None)
            })?;
            prepared.python
        }
    };
    let cfg = WorkerConfig {
        python,
        app_dir: entry.dir.root.clone(),
        state_dir: shared.state_dir.clone(),
        env: worker_env(&entry.dir.manifest, &shared.config.secrets),
    };
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel::<LogLine>();
    let app_id = entry.id.clone();
    let idle_shared = shared.clone();
    tokio::spawn(async move {
        while let Some(line) = idle_rx.recv().await {
            let text = idle_shared.redactor.text(&line.line);
            tracing::info!(app = %app_id, stream = ?line.stream, "{text}");
        }
    });
    let start = async {
        if shared.config.fork_workers {
            zygote.worker(&entry.id, cfg, idle_tx).await
        } else {
            Worker::start(cfg, idle_tx).await
        }
    };
    let (worker, ready) = match tokio::time::timeout(START_TIMEOUT, start).await {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => return Err(start_error(e)),
        Err(_) => {
            return Err(StartFailure::load(
                format!(
                    "the worker did not start within {}s",
                    START_TIMEOUT.as_secs()
                ),
                None,
            ))
        }
    };
    inc(&shared.metrics.workers_started);
    tracing::info!(app = %entry.id, pid = worker.pid(), functions = ready.functions.len(), "worker started");

    let done_setup = match setup {
        None => None,
        Some(config) => {
            let (log_tx, mut log_rx) = mpsc::unbounded_channel::<LogLine>();
            let metadata = json!({"app_id": entry.id, "worker_id": worker_id(&worker)});
            let run = worker.setup(config.clone(), metadata, log_tx);
            let result = match entry.setup_timeout.or(shared.config.setup_timeout) {
                Some(limit) => match tokio::time::timeout(limit, run).await {
                    Ok(result) => result.map_err(setup_error),
                    Err(_) => Err((
                        format!("setup timed out after {}s", limit.as_secs_f64()),
                        None,
                    )),
                },
                None => run.await.map_err(setup_error),
            };
            while let Ok(line) = log_rx.try_recv() {
                push(LogType::Setup, line.line);
            }
            if let Err((message, traceback)) = result {
                worker.kill(KILL_GRACE).await;
                return Err(StartFailure {
                    message,
                    traceback: traceback.filter(|t| !t.is_empty()),
                    load: false,
                    ready: Some(Box::new(ready)),
                });
            }
            Some(config)
        }
    };
    let logs = std::mem::take(&mut *logs.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Started {
        worker,
        ready,
        setup: done_setup,
        logs,
    })
}
