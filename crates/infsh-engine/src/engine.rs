//! [`Engine`]: the handle the HTTP layer holds. Cheap to clone; the engine
//! (its app actors, workers and runners) stops when the last clone is
//! dropped, leaving the store as a crash would, or gracefully with
//! [`Engine::shutdown`].
//!
//! CONTRACT NOTE: crates/infsh-server calls exactly these methods.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use infsh_core::AppRef;
use infsh_store::fleet::FleetStore;
use infsh_store::{FileStore, SqliteStore, StoreError, TaskFilter, TaskStore};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::api::*;
use crate::fleet_api::FleetBacking;
use crate::fleet_hub::FleetHub;
use crate::handle::{AppHandle, CancelReply};
use crate::hosted::HostedApps;
use crate::lifecycle::Phase;
use crate::placement_broker::Broker;
use crate::python_launcher::PythonLauncher;
use crate::recovery::recover;
use crate::registry::scan;
use crate::scheduler;
use crate::sessions::SessionView;
use crate::shared::Shared;
use crate::start_error::EngineStartError;
use crate::submit::Insert;
use crate::time::sleep_until;
use crate::timing::StageClock;
use crate::tracker::Tracker;
use crate::views::{EngineView, WorkerView};
use crate::webhook::Webhooks;
use crate::worker_seam::{WorkerLauncher, UNLOAD_GRACE};

/// How long `cancel` waits for a running task to reach CANCELLING.
const CANCEL_ACK_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub shared: Arc<Shared>,
    /// The folder apps fixed at start, and versions deployed since.
    pub apps: HostedApps,
    /// The SQLite store the engine opened itself (None with a store given
    /// to `start_with`): also the fleet's store.
    pub sqlite: Option<SqliteStore>,
    /// The fleet's store and wake-up when the store was given
    /// ([`Engine::start_on_fleet`]).
    pub backing: Option<FleetBacking>,
    /// Starts the workers of versions deployed while the server runs.
    pub launcher: Arc<dyn WorkerLauncher>,
    /// Remote engines, once [`Engine::enable_fleet`] was called.
    pub fleet: OnceLock<Arc<FleetHub>>,
}

impl Engine {
    /// Opens the store under `data_dir`, scans `apps_dir`, re-queues tasks
    /// that were queued when the server last stopped, marks interrupted
    /// running ones failed, and (with `preload`, or an app's
    /// `min_replicas`) starts workers.
    pub async fn start(config: EngineConfig) -> Result<Engine, EngineStartError> {
        Engine::start_with(config, Arc::new(PythonLauncher), None).await
    }

    /// [`Engine::start`] on a store the caller opened (`infsh serve --store`:
    /// PostgreSQL, or SQLite elsewhere than the data folder).
    pub async fn start_on(
        config: EngineConfig,
        store: Arc<dyn TaskStore>,
    ) -> Result<Engine, EngineStartError> {
        Engine::start_with(config, Arc::new(PythonLauncher), Some(store)).await
    }

    /// [`Engine::start_on`] with the fleet side of that store: remote
    /// engines' queue and leases live there ([`Engine::enable_fleet`]), and
    /// recovery leaves their tasks to the fleet.
    pub async fn start_on_fleet(
        config: EngineConfig,
        store: Arc<dyn TaskStore>,
        fleet: FleetBacking,
    ) -> Result<Engine, EngineStartError> {
        Engine::start_full(config, Arc::new(PythonLauncher), Some(store), Some(fleet)).await
    }

    /// [`Engine::start`] with another worker launcher (the scheduler's unit
    /// tests: a scripted fake) and, when given, another store than the
    /// SQLite file under `data_dir`.
    pub(crate) async fn start_with(
        config: EngineConfig,
        launcher: Arc<dyn WorkerLauncher>,
        store: Option<Arc<dyn TaskStore>>,
    ) -> Result<Engine, EngineStartError> {
        Engine::start_full(config, launcher, store, None).await
    }

    async fn start_full(
        config: EngineConfig,
        launcher: Arc<dyn WorkerLauncher>,
        store: Option<Arc<dyn TaskStore>>,
        backing: Option<FleetBacking>,
    ) -> Result<Engine, EngineStartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| EngineStartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let mut sqlite = None;
        let store: Arc<dyn TaskStore> = match store {
            Some(store) => store,
            None => {
                let db = config.data_dir.join("infsh.db");
                let store = SqliteStore::open_with_async(&db, config.durability)
                    .await
                    .map_err(|source| EngineStartError::OpenStore { path: db, source })?;
                sqlite = Some(store.clone());
                Arc::new(store)
            }
        };
        let files = match config.files.clone() {
            Some(backend) => FileStore::on(backend, store.clone()),
            None => FileStore::open(config.data_dir.join("files"), store.clone()),
        }
        .map_err(EngineStartError::OpenFileStore)?
        .with_durability(config.durability);
        let webhooks = Webhooks::new(&store, config.webhook_secret.clone())?;
        let apps_dir = config.apps_dir.clone();
        let entries = tokio::task::spawn_blocking(move || scan(&apps_dir))
            .await
            .map_err(EngineStartError::ScanTask)??;
        let inventory = infsh_placement::Inventory::for_config(&config.placement);
        let layout = infsh_placement::Layout::build(&config.placement, inventory)
            .map_err(EngineStartError::Layout)?;
        let broker = Broker::new(layout);
        let shared = Shared::new(config, store, files, webhooks, broker);
        std::fs::create_dir_all(&shared.state_dir).map_err(|source| {
            EngineStartError::StateDir {
                path: shared.state_dir.clone(),
                source,
            }
        })?;
        // Before recovery: deliveries a previous run left pending go out
        // beside the ones recovery adds.
        shared.webhooks.start();
        let apps: BTreeMap<String, AppHandle> = entries
            .into_iter()
            .map(|mut entry| {
                // The engine config's `apps:` entry wins over inf.yml.
                entry.bounds = shared
                    .config
                    .placement
                    .overrides_for(&entry.namespace, &entry.name)
                    .over(entry.bounds);
                let id = entry.id.clone();
                (id, scheduler::spawn(shared.clone(), entry, &*launcher))
            })
            .collect();
        let apps = HostedApps::new(apps);
        let versions = crate::version_hosting::rehost(&shared, &apps, &*launcher)
            .await
            .map_err(|e| EngineStartError::Versions(e.to_string()))?;
        if versions > 0 {
            tracing::info!(versions, "hosting deployed versions");
        }
        tracing::info!(apps = apps.len(), ids = ?apps.ids(), "hosting apps");
        let fleet_store = match &backing {
            Some(backing) => Some(backing.store.clone()),
            None => sqlite.clone().map(|s| Arc::new(s) as Arc<dyn FleetStore>),
        };
        let recovered = recover(&shared, &apps, fleet_store.as_deref())
            .await
            .map_err(EngineStartError::Recovery)?;
        if recovered != Default::default() {
            tracing::info!(?recovered, "recovered tasks from the last run");
        }
        for app in &apps.iter() {
            if shared.config.preload || app.entry.bounds.min_replicas.unwrap_or(0) > 0 {
                app.preload();
            }
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                shared,
                apps,
                launcher,
                sqlite,
                backing,
                fleet: OnceLock::new(),
            }),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.shared.config
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The app a reference names (see [`HostedApps::resolve`]).
    fn app_handle(&self, app: &AppRef) -> Result<AppHandle, EngineError> {
        self.inner.apps.resolve(app)
    }

    fn summary(handle: &AppHandle) -> AppSummary {
        Self::summary_with(handle, None)
    }

    /// `info`: the app's functions when the caller has them fresher than
    /// the actor's last published status.
    fn summary_with(handle: &AppHandle, info: Option<Arc<crate::app_info::AppInfo>>) -> AppSummary {
        let mut status = handle.status();
        if info.is_some() {
            status.info = info;
        }
        let entry = &handle.entry;
        let manifest = &entry.dir.manifest;
        AppSummary {
            id: entry.id.clone(),
            namespace: entry.namespace.clone(),
            name: entry.name.clone(),
            description: manifest.description.clone(),
            category: manifest.category.clone(),
            images: manifest.images.clone(),
            default_function: match &status.info {
                Some(info) => info.functions.default_name().map(str::to_string),
                None => manifest.default_function.clone(),
            },
            functions: status.info.as_ref().map(|i| i.names()),
            state: status.state,
        }
    }

    /// The apps of `--apps` (not deployed versions): each one's id
    /// (`ns/name`) and folder, for `infsh serve --watch`.
    pub fn app_folders(&self) -> Vec<(String, std::path::PathBuf)> {
        self.inner
            .apps
            .iter()
            .into_iter()
            .filter(|h| h.entry.version.is_none())
            .map(|h| (h.entry.id.clone(), h.entry.dir.root.clone()))
            .collect()
    }

    /// Every hosted app, sorted by id.
    pub fn apps(&self) -> Vec<AppSummary> {
        self.inner.apps.iter().iter().map(Self::summary).collect()
    }

    /// One app with its functions' schemas (starts a worker to discover them if none ran yet).
    /// An app only remote engines host: their registration's functions.
    pub async fn app(&self, app: &AppRef) -> Result<AppDetail, EngineError> {
        // A version sent to engines: what the store says of it, whichever
        // node built it (this node starts no worker for it).
        if let Some(hub) = self.inner.fleet.get() {
            if let Some(detail) = hub.stored_detail(app).await? {
                return Ok(detail);
            }
        }
        let handle = match self.app_handle(app) {
            Ok(handle) => handle,
            Err(unknown @ EngineError::UnknownApp { .. }) => {
                if let Some(hub) = self.inner.fleet.get() {
                    if let Some(detail) = hub.app_detail(app).await? {
                        return Ok(detail);
                    }
                }
                return Err(unknown);
            }
            Err(e) => return Err(e),
        };
        let info = handle.discover().await?;
        Ok(AppDetail {
            summary: Self::summary_with(&handle, Some(info.clone())),
            functions: info.functions.functions_schema(),
            setup_schema: info.ready.setup_schema.clone(),
        })
    }

    pub fn readiness(&self) -> Vec<AppReadiness> {
        self.inner
            .apps
            .iter()
            .iter()
            .map(|h| {
                let status = h.status();
                AppReadiness {
                    id: h.entry.id.clone(),
                    state: status.state,
                    replicas: status.replicas,
                    busy: status.busy,
                    queued: h.queued(),
                    last_error: status.last_error,
                }
            })
            .collect()
    }

    /// Every app's health in detail (last error, traceback, backoff), by id.
    pub fn health(&self) -> Vec<AppHealth> {
        self.inner.apps.iter().iter().map(Self::health_of).collect()
    }

    /// One app's health in detail.
    pub fn app_health(&self, app: &AppRef) -> Result<AppHealth, EngineError> {
        self.app_handle(app).map(|h| Self::health_of(&h))
    }

    fn health_of(handle: &AppHandle) -> AppHealth {
        let status = handle.status();
        AppHealth {
            id: handle.entry.id.clone(),
            state: status.state,
            last_error: status.last_error,
            traceback: status.traceback,
            failures: status.failures,
            failed_at_ms: status.failed_at_ms,
            retry_in_secs: status
                .retry_at
                .map(crate::scheduler::secs_until)
                .filter(|s| *s > 0.0),
        }
    }

    /// Validates and stores the task (durably) and queues it; returns at once.
    pub async fn submit(&self, request: RunRequest) -> Result<TaskView, EngineError> {
        if let Some(view) = self.submit_remote(&request).await? {
            return Ok(view);
        }
        let (view, _clock) = crate::submit::submit(
            self.shared(),
            &self.inner.apps,
            request,
            Insert::Durable,
            None,
        )
        .await?;
        Ok(view)
    }

    /// [`Engine::submit`] of a task whose id was given elsewhere: a remote
    /// engine (`infsh engine run`) runs a task an API node claimed for it
    /// under the API node's id, so its reports name the same task. Always a
    /// local run (never diverted to remote engines).
    pub async fn submit_with_id(
        &self,
        request: RunRequest,
        id: String,
    ) -> Result<TaskView, EngineError> {
        let (view, _clock) = crate::submit::submit(
            self.shared(),
            &self.inner.apps,
            request,
            Insert::Durable,
            Some(id),
        )
        .await?;
        Ok(view)
    }

    /// What the app's worker said in `ready` (starts one if none ran yet)
    /// and the app's folder: what a remote engine registers.
    pub async fn app_ready(
        &self,
        app: &AppRef,
    ) -> Result<(infsh_protocol::Ready, std::path::PathBuf), EngineError> {
        let handle = self.app_handle(app)?;
        let info = handle.discover().await?;
        Ok((info.ready.clone(), handle.entry.dir.root.clone()))
    }

    /// [`Engine::submit`] for a caller that gives the task's id out only
    /// with the task's end (an HTTP `wait` run), which is durable: the
    /// insert is not waited for, so the task starts without a commit of its
    /// own and one commit stores it whole. To give the id out before the
    /// end, call [`Engine::sync`] first. The [`StageClock`] says, once the
    /// task ended, where its time went.
    pub async fn submit_to_wait(
        &self,
        request: RunRequest,
    ) -> Result<(TaskView, Arc<StageClock>), EngineError> {
        if let Some(view) = self.submit_remote(&request).await? {
            return Ok((view, Arc::new(StageClock::new())));
        }
        crate::submit::submit(
            self.shared(),
            &self.inner.apps,
            request,
            Insert::Deferred,
            None,
        )
        .await
    }

    /// A run of an app this node does not host but a remote engine does:
    /// queued for engines (durably). None: a local run (or an unknown app,
    /// which the local submit refuses).
    async fn submit_remote(&self, request: &RunRequest) -> Result<Option<TaskView>, EngineError> {
        let Some(hub) = self.inner.fleet.get() else {
            return Ok(None);
        };
        // A version any node built, as the store knows it (with
        // `--versions-on-engines`; docs/deploy.md, "Versions in a fleet").
        if let Some(version) = hub
            .stored_version_for(&request.app, request.session.as_deref())
            .await?
        {
            return hub
                .enqueue(request.clone(), &version.id, &version.info)
                .await
                .map(Some);
        }
        match self.inner.apps.resolve(&request.app) {
            // A deployed version, built here, run by an engine that
            // fetches its package (docs/deploy.md, "Versions on engines").
            Ok(handle) if hub.options.versions_on_engines && handle.entry.version.is_some() => {
                let info = handle.discover().await?;
                hub.enqueue(request.clone(), &handle.entry.id, &info)
                    .await
                    .map(Some)
            }
            Ok(_) => Ok(None),
            Err(_) => hub.submit(request.clone()).await,
        }
    }

    /// The active sessions (`GET /sessions`): this server's, then those
    /// of apps remote engines host (docs/sessions.md, "In a fleet").
    pub async fn sessions(&self) -> Result<Vec<SessionView>, EngineError> {
        let mut sessions = self.shared().sessions.active();
        if let Some(hub) = self.inner.fleet.get() {
            sessions.extend(hub.sessions().await?);
        }
        Ok(sessions)
    }

    /// One session, whatever its status (`GET /sessions/{id}`).
    pub async fn session(&self, id: &str) -> Result<SessionView, EngineError> {
        match (self.shared().sessions.view(id), self.inner.fleet.get()) {
            (Err(EngineError::SessionNotFound(_)), Some(hub)) => hub.session(id).await,
            (local, _) => local,
        }
    }

    /// Resets an active session's idle timeout (410 if it is not active).
    pub async fn keepalive_session(&self, id: &str) -> Result<SessionView, EngineError> {
        match (self.shared().sessions.keepalive(id), self.inner.fleet.get()) {
            (Err(EngineError::SessionNotFound(_)), Some(hub)) => hub.keepalive_session(id).await,
            (local, _) => local,
        }
    }

    /// Ends a session and releases its replica (a call running in it
    /// finishes first); ending one that already ended changes nothing.
    pub async fn end_session(&self, id: &str) -> Result<SessionView, EngineError> {
        let local = self
            .shared()
            .sessions
            .end(id, crate::fleet_sessions::ENDED_BY_DELETE);
        let view = match (local, self.inner.fleet.get()) {
            (Err(EngineError::SessionNotFound(_)), Some(hub)) => {
                return hub.end_session(id).await;
            }
            (local, _) => local?,
        };
        if let Ok(handle) = self.inner.apps.by_id(&view.app) {
            handle.wake();
        }
        Ok(view)
    }

    /// Returns once everything stored so far is durable.
    pub async fn sync(&self) -> Result<(), EngineError> {
        self.shared().store.sync().await.map_err(EngineError::from)
    }

    pub async fn get(&self, id: &str) -> Result<TaskView, EngineError> {
        if let Some(view) = self.shared().live.view(id) {
            // A remote task's view follows the store (what other nodes
            // change is announced, then re-read), so it may lag behind it
            // but is never ahead: the store answers.
            let remote = self
                .inner
                .fleet
                .get()
                .is_some_and(|hub| hub.follows_task(id));
            if !remote {
                return Ok(view);
            }
        }
        let store = &self.shared().store;
        let record = store
            .get_task(id)
            .await
            .map_err(EngineError::from)?
            .ok_or_else(|| EngineError::UnknownTask(id.to_string()))?;
        let logs = store.get_logs(id).await.map_err(EngineError::from)?;
        Ok(TaskView {
            record,
            logs,
            slot: None,
        })
    }

    /// A remote task another API node submitted: follow its changes here
    /// (PostgreSQL fleets; see `fleet_hub`).
    async fn follow_remote(&self, id: &str) -> Result<(), EngineError> {
        match self.inner.fleet.get() {
            Some(hub) => hub.follow(id).await,
            None => Ok(()),
        }
    }

    /// The delivery of the task's webhook (attempts, last error), once the
    /// task ended with one; None before, or without a webhook.
    pub async fn webhook_delivery(
        &self,
        id: &str,
    ) -> Result<Option<infsh_store::WebhookDelivery>, EngineError> {
        self.shared()
            .store
            .get_webhook_delivery(id)
            .await
            .map_err(EngineError::from)
    }

    /// Waits until the task ends (or `limit` passes) and returns it as it is then.
    pub async fn wait(&self, id: &str, limit: Option<Duration>) -> Result<TaskView, EngineError> {
        self.follow_remote(id).await?;
        if let Some(live) = self.shared().live.get(id) {
            let mut watch = live.subscribe();
            drop(live);
            let deadline = limit.map(|l| Instant::now() + l);
            loop {
                {
                    let view = watch.borrow_and_update();
                    if view.record.status.is_terminal() {
                        return Ok(view.clone());
                    }
                }
                tokio::select! {
                    changed = watch.changed() => if changed.is_err() { break },
                    () = sleep_until(deadline) => return Ok(watch.borrow().clone()),
                }
            }
        }
        self.get(id).await
    }

    /// Full snapshots of the task: the current one first, then one per
    /// change (status, logs, streamed output); the channel closes after the
    /// terminal snapshot.
    pub async fn subscribe(&self, id: &str) -> Result<mpsc::Receiver<TaskView>, EngineError> {
        let (tx, rx) = mpsc::channel(16);
        self.follow_remote(id).await?;
        let Some(live) = self.shared().live.get(id) else {
            let view = self.get(id).await?;
            let _ = tx.try_send(view);
            return Ok(rx);
        };
        let mut watch = live.subscribe();
        // The forwarder must not keep the task's sender alive.
        drop(live);
        tokio::spawn(async move {
            loop {
                let view = watch.borrow_and_update().clone();
                let terminal = view.record.status.is_terminal();
                if tx.send(view).await.is_err() || terminal {
                    return;
                }
                if watch.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// Moves the task to CANCELLING and cancels it (queued: at once).
    pub async fn cancel(&self, id: &str) -> Result<TaskView, EngineError> {
        if let Some(hub) = self.inner.fleet.get() {
            if hub.cancel(id).await?.is_some() {
                return self.get(id).await;
            }
        }
        let view = self.get(id).await?;
        let ended = |view: TaskView| EngineError::TaskAlreadyEnded {
            id: id.to_string(),
            status: view.record.status,
        };
        if view.record.status.is_terminal() {
            return Err(ended(view));
        }
        let handle = self.inner.apps.by_id(&view.record.app)?;
        match handle.cancel(id).await {
            CancelReply::Dequeued(task) => {
                // Out of the queue: it must be recorded even if the caller
                // goes away, so in a task of its own.
                let mut tracker = Tracker::new(self.shared().clone(), task.live);
                tokio::spawn(async move {
                    tracker
                        .finish(infsh_store::TaskStatus::Cancelled, None, None)
                        .await
                })
                .await
                .map_err(|source| EngineError::Background {
                    what: "recording the cancellation",
                    source,
                })
            }
            CancelReply::Signalled(ack) => {
                let _ = tokio::time::timeout(CANCEL_ACK_WAIT, ack).await;
                self.get(id).await
            }
            CancelReply::NotHere => {
                let view = self.get(id).await?;
                if view.record.status.is_terminal() {
                    Err(ended(view))
                } else if !self.shared().lifecycle.is_running() {
                    Err(EngineError::ShuttingDown)
                } else {
                    Ok(view)
                }
            }
        }
    }

    /// Newest first. `cursor` comes from the previous page. `app`: only
    /// the tasks of this `ns/name` (its version and function do not matter).
    pub async fn list(
        &self,
        app: Option<&AppRef>,
        status: Option<infsh_store::TaskStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<TaskPage, EngineError> {
        self.list_in_team(app, status, None, limit, cursor).await
    }

    /// [`Engine::list`] of one team's tasks (None: every team's); a task
    /// stored without a team is `default`'s.
    pub async fn list_in_team(
        &self,
        app: Option<&AppRef>,
        status: Option<infsh_store::TaskStatus>,
        team: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<TaskPage, EngineError> {
        let filter = TaskFilter {
            app: app.map(AppRef::id),
            status,
            team: team.map(str::to_string),
        };
        self.shared()
            .store
            .list_tasks(&filter, limit, cursor)
            .await
            .map_err(|e| match e {
                StoreError::InvalidCursor(c) => EngineError::InvalidInput {
                    what: "cursor".into(),
                    errors: vec![infsh_core::validate::FieldError {
                        path: "cursor".into(),
                        message: format!("\"{c}\" is not a cursor from a previous page"),
                    }],
                },
                other => EngineError::Store(other),
            })
    }

    /// Registers a file to be uploaded; its id is an unguessable random id.
    pub async fn create_file(
        &self,
        filename: &str,
        content_type: Option<&str>,
        size: Option<u64>,
    ) -> Result<StoredFile, EngineError> {
        self.shared()
            .files
            .create(filename, content_type, size)
            .await
            .map_err(EngineError::from)
    }

    /// Stores the uploaded bytes of a registered file.
    pub async fn write_file(&self, id: &str, body: Bytes) -> Result<StoredFile, EngineError> {
        self.shared()
            .files
            .write(id, body)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } | StoreError::InvalidId => {
                    EngineError::UnknownFile(id.to_string())
                }
                other => EngineError::Store(other),
            })
    }

    /// Starts streaming the bytes of a registered file
    /// ([`infsh_store::PartialUpload`]: written to a temporary file, put in
    /// place only when finished).
    pub async fn begin_upload(&self, id: &str) -> Result<infsh_store::PartialUpload, EngineError> {
        self.shared()
            .files
            .begin_upload(id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } | StoreError::InvalidId => {
                    EngineError::UnknownFile(id.to_string())
                }
                other => EngineError::Store(other),
            })
    }

    /// A stored file and a handle on its bytes (in a folder or a bucket).
    /// A registered file whose bytes have not arrived yet has
    /// `uploaded: false` (its bytes do not exist yet).
    pub async fn file(
        &self,
        id: &str,
    ) -> Result<(StoredFile, infsh_store::StoredBytes), EngineError> {
        self.shared()
            .files
            .get(id)
            .await
            .map_err(EngineError::from)?
            .ok_or_else(|| EngineError::UnknownFile(id.to_string()))
    }

    /// The URL clients and apps fetch a stored file from.
    pub fn file_uri(&self, id: &str) -> String {
        self.shared().file_uri(id)
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        let queued = self
            .inner
            .apps
            .iter()
            .iter()
            .map(|h| h.queued() as u64)
            .sum();
        self.shared().metrics.snapshot(queued)
    }

    /// This machine's slots, the replicas on them, and the placement
    /// counters (`GET /engines`). Synchronous: it reads the broker's table.
    pub fn engine_view(&self) -> EngineView {
        self.shared().broker.view()
    }

    /// One row per replica of every app, by app id then replica number
    /// (`GET /workers`).
    pub async fn workers(&self) -> Vec<WorkerView> {
        let mut rows = Vec::new();
        for app in self.inner.apps.iter() {
            rows.extend(app.workers().await);
        }
        rows
    }

    /// Checks that `name` is this engine.
    fn this_engine(&self, name: &str) -> Result<(), EngineError> {
        if self.shared().broker.layout().name == name {
            Ok(())
        } else {
            Err(EngineError::UnknownEngine(name.to_string()))
        }
    }

    /// Pauses dispatch on the whole engine: runs are still accepted and
    /// queued, running tasks finish, nothing new starts until
    /// [`Engine::undrain_engine`]. Not shutdown's draining (which refuses runs).
    pub fn drain_engine(&self, name: &str) -> Result<(), EngineError> {
        self.this_engine(name)?;
        self.shared().broker.set_draining(true);
        tracing::info!(engine = name, "engine drained: no new task starts");
        Ok(())
    }

    /// Resumes dispatch after [`Engine::drain_engine`]; queued tasks run.
    pub fn undrain_engine(&self, name: &str) -> Result<(), EngineError> {
        self.this_engine(name)?;
        self.shared().broker.set_draining(false);
        tracing::info!(engine = name, "engine undrained");
        Ok(())
    }

    /// [`Engine::drain_engine`] for one app.
    pub async fn drain_app(&self, app: &AppRef) -> Result<(), EngineError> {
        let handle = self.app_handle(app)?;
        handle.set_drained(true);
        tracing::info!(app = %handle.entry.id, "app drained: no new task starts");
        Ok(())
    }

    /// Resumes an app's dispatch after [`Engine::drain_app`].
    pub async fn undrain_app(&self, app: &AppRef) -> Result<(), EngineError> {
        let handle = self.app_handle(app)?;
        handle.set_drained(false);
        tracing::info!(app = %handle.entry.id, "app undrained");
        Ok(())
    }

    /// Stops taking runs, lets running tasks finish up to `grace`, unloads
    /// and stops every worker. Tasks still queued stay queued in the store
    /// (the next start runs them); tasks still running at the end of the
    /// grace are FAILED as interrupted.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared().lifecycle.advance(Phase::Draining);
        for app in self.inner.apps.iter() {
            app.drain();
        }
        let deadline = Instant::now() + grace;
        let running = || self.shared().metrics.running.load(Ordering::SeqCst);
        while running() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shared().lifecycle.advance(Phase::Stopping);
        let stopped: Vec<_> = self
            .inner
            .apps
            .iter()
            .iter()
            .filter_map(|app| app.shutdown(UNLOAD_GRACE))
            .collect();
        for answer in stopped {
            let _ = answer.await;
        }
    }
}
