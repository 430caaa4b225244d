//! Starting a replica's worker: the app's [`AppLauncher`] starts it
//! (`python_launcher.rs` for real ones), then a preloaded replica runs
//! `setup` with the default config `{}` here, through the [`AppWorker`]
//! seam, so the unit tests' fake worker goes through the same steps.

use std::sync::Arc;

use infsh_protocol::Ready;
use infsh_store::{LogEntry, LogType};
use infsh_worker::LogLine;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::batch_policy::batching_mismatch;
use crate::metrics::inc;
use crate::registry::AppEntry;
use crate::shared::Shared;
use crate::tracker::log_entry;
use crate::worker_seam::{
    setup_error, setup_metadata, AppLauncher, AppWorker, Launched, SlotEnv, StartFailure,
    KILL_GRACE,
};

/// A worker that started (and with preload, was set up).
pub(crate) struct Started {
    pub worker: Arc<dyn AppWorker>,
    pub ready: Ready,
    /// The config setup ran with (preload), if it ran.
    pub setup: Option<Value>,
    /// The environment's build and the preload setup's output.
    pub logs: Vec<LogEntry>,
}

/// Starts a worker and, with `setup`, runs it.
pub(crate) async fn start_worker(
    shared: Arc<Shared>,
    entry: Arc<AppEntry>,
    launcher: Arc<dyn AppLauncher>,
    setup: Option<Value>,
    slot: SlotEnv,
) -> Result<Started, StartFailure> {
    let Launched {
        worker,
        ready,
        mut logs,
    } = launcher.launch(&slot).await?;
    if let Some(message) = batching_mismatch(&entry.batching, entry.dir.runtime, &ready) {
        worker.kill(KILL_GRACE).await;
        return Err(StartFailure::load(message, None));
    }
    inc(&shared.metrics.workers_started);
    tracing::info!(app = %entry.id, pid = worker.pid(), functions = ready.functions.len(), "worker started");

    let done_setup = match setup {
        None => None,
        Some(config) => {
            let (log_tx, mut log_rx) = mpsc::unbounded_channel::<LogLine>();
            let metadata = setup_metadata(&entry.id, &worker.id(), &slot.gpu_ids);
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
                logs.push(log_entry(LogType::Setup, line.line));
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
    Ok(Started {
        worker,
        ready,
        setup: done_setup,
        logs,
    })
}
