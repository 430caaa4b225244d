//! [`Shared`]: what every part of the engine may use (configuration, the
//! stores, the live tasks, metrics, webhooks, the worker launcher). Held by
//! the engine handle and by every scheduler, runner and webhook task; it
//! holds no app actor, so the actors stop when the last `Engine` handle is
//! dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use infsh_store::{FileStore, TaskStore};

use crate::api::EngineConfig;
use crate::live::LiveTasks;
use crate::metrics::Metrics;
use crate::redact::Redactor;
use crate::webhook::Webhooks;
use crate::worker_seam::WorkerLauncher;

/// The error of tasks that were running when the server stopped. They are
/// failed rather than re-run: a task is not known to be idempotent.
pub const INTERRUPTED: &str = "interrupted: the server stopped while the task was running";

pub(crate) struct Shared {
    pub config: EngineConfig,
    pub store: Arc<dyn TaskStore>,
    pub files: FileStore,
    pub live: LiveTasks,
    pub metrics: Metrics,
    pub webhooks: Webhooks,
    /// Keeps secret values out of everything stored or logged.
    pub redactor: Redactor,
    /// Workers' state folder (`<data_dir>/state`).
    pub state_dir: PathBuf,
    /// Starts the apps' workers (`worker_seam.rs`): Python processes, or
    /// the unit tests' scripted fakes.
    pub launcher: Arc<dyn WorkerLauncher>,
    /// Set when the workers are being stopped at shutdown: a worker that
    /// exits now interrupted its tasks, it did not crash.
    stopping: AtomicBool,
}

impl Shared {
    pub fn new(
        config: EngineConfig,
        store: Arc<dyn TaskStore>,
        files: FileStore,
        webhooks: Webhooks,
        launcher: Arc<dyn WorkerLauncher>,
    ) -> Arc<Shared> {
        let state_dir = config.data_dir.join("state");
        let redactor = Redactor::new(&config.secrets);
        Arc::new(Shared {
            config,
            store,
            files,
            live: LiveTasks::default(),
            metrics: Metrics::default(),
            webhooks,
            redactor,
            state_dir,
            launcher,
            stopping: AtomicBool::new(false),
        })
    }

    /// `{public_url}/files/{id}`: where clients and apps fetch a stored file.
    pub fn file_uri(&self, id: &str) -> String {
        format!(
            "{}/files/{id}",
            self.config.public_url.trim_end_matches('/')
        )
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}
