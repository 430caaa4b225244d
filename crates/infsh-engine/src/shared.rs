//! [`Shared`]: what every part of the engine may use (configuration, the
//! stores, the live tasks, metrics, webhooks, the lifecycle phase). Held by
//! the engine handle and by every scheduler, runner and webhook task; it
//! holds no app actor, so the actors stop when the last `Engine` handle is
//! dropped.

use std::path::PathBuf;
use std::sync::Arc;

use infsh_store::{FileStore, TaskStore};

use crate::api::EngineConfig;
use crate::lifecycle::Lifecycle;
use crate::live::LiveTasks;
use crate::metrics::Metrics;
use crate::placement_broker::Broker;
use crate::redact::Redactor;
use crate::sessions::Sessions;
use crate::webhook::Webhooks;

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
    /// Running, draining or stopping (`lifecycle.rs`).
    pub lifecycle: Lifecycle,
    /// Which replica holds which slot of this machine.
    pub broker: Arc<Broker>,
    /// Sessions and the replicas leased to them (in memory only).
    pub sessions: Sessions,
}

impl Shared {
    pub fn new(
        config: EngineConfig,
        store: Arc<dyn TaskStore>,
        files: FileStore,
        webhooks: Webhooks,
        broker: Arc<Broker>,
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
            lifecycle: Lifecycle::default(),
            broker,
            sessions: Sessions::default(),
        })
    }

    /// `{public_url}/files/{id}`: where clients and apps fetch a stored file.
    pub fn file_uri(&self, id: &str) -> String {
        format!(
            "{}/files/{id}",
            self.config.public_url.trim_end_matches('/')
        )
    }
}
