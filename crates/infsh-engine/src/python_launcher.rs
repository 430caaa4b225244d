//! The real [`WorkerLauncher`]: how a worker of an app is started. The
//! app's environment is prepared (or `config.python` used), then the worker
//! is forked from the app's zygote (`infsh_worker::Zygote`, started with
//! the app's first worker) or, where that is off or unsafe (a worker on a
//! GPU slot: CUDA state must not cross a fork), started as
//! `python -m infsh_worker`; its slot's GPUs are its
//! `CUDA_VISIBLE_DEVICES` (empty on a CPU slot), with
//! `CUDA_DEVICE_ORDER=PCI_BUS_ID` on a GPU slot. Its `ready` is awaited within
//! [`START_TIMEOUT`]. What the scheduler does with it after that (a preload
//! setup, tasks) goes through the [`AppWorker`] seam (`worker_seam.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use infsh_core::AppRuntime;
use infsh_protocol::Ready;
use infsh_store::{LogEntry, LogType};
use infsh_worker::{
    LogLine, Worker, WorkerConfig, WorkerError, WorkerRuntime, Zygote, ZygoteStart,
};
use tokio::sync::mpsc;

use crate::inputs::worker_env;
use crate::registry::AppEntry;
use crate::shared::Shared;
use crate::tracker::log_entry;
use crate::worker_seam::{AppLauncher, Launched, SlotEnv, StartFailure, WorkerLauncher};

/// The variable that says which GPUs a worker sees (its slot's).
const CUDA_VISIBLE_DEVICES: &str = "CUDA_VISIBLE_DEVICES";
/// Set to `PCI_BUS_ID` on a GPU slot, so that CUDA numbers the GPUs as
/// NVML (and so the slots) does.
const CUDA_DEVICE_ORDER: &str = "CUDA_DEVICE_ORDER";

/// Limit on a worker's start (spawn, import of the app, `ready`); building
/// the environment before it is not limited.
pub const START_TIMEOUT: Duration = Duration::from_secs(300);

/// Starts Python workers (`infsh_worker`); what `Engine::start` uses.
pub(crate) struct PythonLauncher;

impl WorkerLauncher for PythonLauncher {
    fn for_app(&self, shared: Arc<Shared>, entry: Arc<AppEntry>) -> Arc<dyn AppLauncher> {
        Arc::new(PythonAppLauncher {
            shared,
            entry,
            zygote: ZygoteSlot::default(),
        })
    }
}

/// Starts the workers of one app; keeps the app's zygote.
struct PythonAppLauncher {
    shared: Arc<Shared>,
    entry: Arc<AppEntry>,
    zygote: ZygoteSlot,
}

#[async_trait]
impl AppLauncher for PythonAppLauncher {
    /// Prepares the environment and starts a worker (forked from the app's
    /// zygote unless that is off).
    async fn launch(&self, slot: &SlotEnv) -> Result<Launched, StartFailure> {
        let (shared, entry) = (&self.shared, &self.entry);
        let logs = Arc::new(Mutex::new(Vec::<LogEntry>::new()));
        let mut env = worker_env(&entry.dir.manifest, &shared.config.secrets);
        let (python, runtime) = match entry.dir.runtime {
            AppRuntime::Python => match &shared.config.python {
                Some(python) => (python.clone(), WorkerRuntime::Python),
                None => (
                    prepare_environment(shared, entry, logs.clone()).await?,
                    WorkerRuntime::Python,
                ),
            },
            AppRuntime::Node => {
                let prepared = prepare_node_environment(shared, entry, logs.clone()).await?;
                env.extend(prepared.worker_env());
                (prepared.node, WorkerRuntime::Node)
            }
        };
        if let Some(devices) = &slot.cuda_visible_devices {
            env.retain(|(k, _)| k != CUDA_VISIBLE_DEVICES);
            env.push((CUDA_VISIBLE_DEVICES.to_string(), devices.clone()));
        }
        if !slot.gpu_ids.is_empty() {
            // The slots are NVML's GPU indexes, which follow the PCI bus;
            // CUDA's default order (fastest first) may differ.
            env.retain(|(k, _)| k != CUDA_DEVICE_ORDER);
            env.push((CUDA_DEVICE_ORDER.to_string(), "PCI_BUS_ID".to_string()));
        }
        let cfg = WorkerConfig {
            python,
            runtime,
            app_dir: entry.dir.root.clone(),
            state_dir: shared.state_dir.clone(),
            env,
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
            if shared.config.fork_workers && slot.may_fork() {
                self.zygote.worker(&entry.id, cfg, idle_tx).await
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
        let logs = std::mem::take(&mut *logs.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(Launched {
            worker: Arc::new(worker),
            ready,
            logs,
        })
    }

    fn release(&self) {
        self.zygote.release(&self.entry.id);
    }
}

/// Builds (or finds) the app's environment; its progress goes to `logs`.
/// Returns its interpreter.
async fn prepare_environment(
    shared: &Shared,
    entry: &AppEntry,
    logs: Arc<Mutex<Vec<LogEntry>>>,
) -> Result<std::path::PathBuf, StartFailure> {
    let push = move |line: String| {
        logs.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(log_entry(LogType::Build, line))
    };
    let spec = infsh_env::EnvSpec {
        kernel: entry.dir.manifest.kernel.clone(),
        ..infsh_env::EnvSpec::new(&entry.dir.root, shared.config.cache_dir.join("envs"))
    };
    let prepared = infsh_env::prepare(&spec, move |event| match event {
        infsh_env::EnvProgress::Installing { line } => push(line),
        infsh_env::EnvProgress::Creating { installer, dir } => push(format!(
            "building the app's environment with {installer} in {}",
            dir.display()
        )),
        infsh_env::EnvProgress::Waiting { dir } => {
            push(format!("waiting for another build of {}", dir.display()))
        }
        infsh_env::EnvProgress::Done { seconds } => {
            push(format!("environment built in {seconds:.1}s"))
        }
        _ => {}
    })
    .await
    .map_err(|e| StartFailure::load(format!("cannot prepare the app's environment: {e}"), None))?;
    Ok(prepared.python)
}

/// Finds `node` (`--node`, else on PATH), says when it is older than the
/// app's `kernel: node-N` (and goes on), and builds (or finds) the app's
/// npm environment; progress goes to `logs` as for Python.
async fn prepare_node_environment(
    shared: &Shared,
    entry: &AppEntry,
    logs: Arc<Mutex<Vec<LogEntry>>>,
) -> Result<infsh_env::PreparedNodeEnv, StartFailure> {
    let failed = |e: infsh_env::EnvError| {
        StartFailure::load(format!("cannot prepare the app's environment: {e}"), None)
    };
    let node = match &shared.config.node {
        Some(node) => node.clone(),
        None => infsh_env::node::default_node().map_err(failed)?,
    };
    let push = {
        let logs = logs.clone();
        move |line: String| {
            logs.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(log_entry(LogType::Build, line))
        }
    };
    let spec = infsh_env::NodeEnvSpec {
        app_dir: entry.dir.root.clone(),
        node,
        cache_dir: shared.config.cache_dir.join("envs"),
    };
    let progress_push = push.clone();
    let prepared = infsh_env::prepare_node(&spec, move |event| match event {
        infsh_env::EnvProgress::Installing { line } => progress_push(line),
        infsh_env::EnvProgress::Creating { installer, dir } => progress_push(format!(
            "building the app's environment with {installer} in {}",
            dir.display()
        )),
        infsh_env::EnvProgress::Waiting { dir } => {
            progress_push(format!("waiting for another build of {}", dir.display()))
        }
        infsh_env::EnvProgress::Done { seconds } => {
            progress_push(format!("environment built in {seconds:.1}s"))
        }
        _ => {}
    })
    .await
    .map_err(failed)?;
    if let Some(warning) = infsh_env::node::version_warning(
        entry.dir.manifest.kernel.as_deref(),
        &prepared.node,
        &prepared.version,
    ) {
        tracing::warn!(app = %entry.id, "{warning}");
        push(format!("warning: {warning}"));
    }
    Ok(prepared)
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

/// An app's zygote (`infsh_worker::Zygote`): started with the app's first
/// worker, then every worker of the app (a second replica, a replacement
/// after a crash) is forked from it in milliseconds. Apps it cannot fork
/// safely, and `--no-fork`, get ordinary worker starts.
#[derive(Default)]
struct ZygoteSlot(tokio::sync::Mutex<ZygoteState>);

#[derive(Default)]
enum ZygoteState {
    #[default]
    None,
    Ready(Zygote),
    /// Forking this app is not safe (the reason was logged once).
    Refused,
}

impl ZygoteSlot {
    /// Drops the slot's handle: the zygote is killed once no worker forked
    /// from it is left (each holds a handle). A fork in flight keeps it.
    fn release(&self, app: &str) {
        let Ok(mut state) = self.0.try_lock() else {
            return;
        };
        if let ZygoteState::Ready(zygote) = std::mem::take(&mut *state) {
            tracing::info!(%app, pid = zygote.pid(), "retired: stopping the zygote");
        }
    }

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
