//! [`FleetHub`]: the API node's side of remote engines. Runs of apps this
//! node does not host but a registered engine does are validated against
//! the schemas that engine registered and queued in the store for engines
//! ([`FleetStore::enqueue_remote`]); engines claim them (a long poll woken
//! by a [`Wakeup`], not a polling loop), heartbeat, and report. Each report
//! is written through the store (which refuses one from an engine that no
//! longer holds the lease) and then published to the task's live view, so
//! `get`, `wait` and streams work for a remote task as for a local one.
//! A sweeper ends expired leases (requeue, or `engine lost: <name>`).
//!
//! Several API nodes on one PostgreSQL database: an engine reports to one
//! node, a client may stream from another. The node that applies a change
//! announces the task's id ([`Wakeup::task_changed`]); a node with a live
//! view of that task (it was submitted there, or a client there waits on
//! or streams it: [`FleetHub::follow`]) re-reads it from the store and
//! publishes it. Webhooks go out once, from the node that ended the task.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use infsh_core::AppRef;
use infsh_store::fleet::{
    app_hashes, engine_restarted_reason, CancelOutcome, ClaimRequest, EngineApp, EngineRecord,
    EngineRegistration, EngineSession, EngineState, FleetError, FleetStore, Report, SessionRefusal,
    TaskChange, Wakeup,
};
use infsh_store::{new_id, now_ms, TaskRecord, TaskStatus};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::api::{AppDetail, AppState, AppSummary, EngineError, RunRequest, TaskView};
use crate::app_info::AppInfo;
use crate::fleet_api::{
    ClaimAnswer, FleetLinkError, FleetOptions, HostedRemotely, RemoteApp, RemoteAppHost,
    RemoteAppView, RemoteEngineView, RemoteRegistration, RemoteSessionView,
};
use crate::inputs::{
    call_validators, check_file_inputs, input_and_setup, requested_function, resolve_error,
    validate,
};
use crate::live::LiveTask;
use crate::metrics::inc;
use crate::sessions::requested;
use crate::shared::Shared;
use crate::time::sleep_until;

/// Followed tasks re-read in one query at most (a resync reads them all).
const REFRESH_BATCH: usize = 500;

pub(crate) struct FleetHub {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: Arc<dyn FleetStore>,
    pub(crate) wake: Arc<dyn Wakeup>,
    pub(crate) options: FleetOptions,
    /// Registered apps' functions, by (app, hash): built once per hash.
    infos: Mutex<HashMap<(String, String), Arc<AppInfo>>>,
    /// Remote tasks with a live view on this node (what a resync re-reads).
    remote_live: Mutex<HashSet<String>>,
    /// Stored versions' functions and listing entries, by `ns/name@HASH`
    /// (`stored_versions.rs`): read from the store once per version.
    pub(crate) stored_versions: Mutex<HashMap<String, (Arc<AppInfo>, AppSummary)>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a registered app's `functions` column holds.
fn registered_functions(app: &RemoteApp) -> Value {
    json!({"ready": app.ready, "default_function": app.default_function})
}

/// An engine's slots as a run's `workers` names them: `NAME-KIND-ID`
/// (what `infsh engine run` claims with, from the layout it registered).
fn slot_names(engine: &EngineRecord) -> Vec<String> {
    engine
        .slots
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|slot| {
            let kind = slot.get("kind")?.as_str()?;
            let id = slot.get("id")?.as_u64()?;
            Some(format!("{}-{kind}-{id}", engine.name))
        })
        .collect()
}

fn app_info_of(app: &EngineApp) -> Option<AppInfo> {
    let ready = serde_json::from_value(app.functions.get("ready")?.clone()).ok()?;
    let default = app
        .functions
        .get("default_function")
        .and_then(Value::as_str);
    Some(AppInfo::new(ready, default))
}

pub(crate) fn fleet_error(e: FleetError) -> EngineError {
    match e {
        FleetError::Store(s) => EngineError::Store(s),
        FleetError::UnknownTask(id) => EngineError::UnknownTask(id),
        FleetError::Session(refused) => match refused {
            SessionRefusal::NotFound(id) => EngineError::SessionNotFound(id),
            SessionRefusal::Ended { id, reason } => EngineError::SessionEnded { id, reason },
            SessionRefusal::Expired {
                id,
                idle_timeout_secs,
            } => EngineError::SessionExpired {
                id,
                idle_timeout_secs,
            },
            SessionRefusal::AppMismatch {
                id,
                session_app,
                app,
            } => EngineError::SessionAppMismatch {
                id,
                session_app,
                app,
            },
        },
        other => EngineError::UnknownEngine(other.to_string()),
    }
}

impl FleetHub {
    /// Starts the lease sweeper (it stops when the hub is dropped) and
    /// republishes the unfinished remote tasks of a previous run.
    pub async fn start(
        shared: Arc<Shared>,
        store: Arc<dyn FleetStore>,
        wake: Arc<dyn Wakeup>,
        options: FleetOptions,
    ) -> Result<Arc<FleetHub>, EngineError> {
        let hub = Arc::new(FleetHub {
            shared,
            store,
            wake,
            options,
            infos: Mutex::default(),
            remote_live: Mutex::default(),
            stored_versions: Mutex::default(),
        });
        let open: Vec<TaskStatus> = TaskStatus::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect();
        for task in hub.shared.store.tasks_with_status(&open).await? {
            if hub.store.is_remote(&task.id).await.map_err(fleet_error)? {
                let logs = hub.shared.store.get_logs(&task.id).await?;
                lock(&hub.remote_live).insert(task.id.clone());
                hub.shared.live.insert(TaskView {
                    record: task,
                    logs,
                    slot: None,
                });
            }
        }
        let weak = Arc::downgrade(&hub);
        tokio::spawn(sweep(weak, options));
        if let Some(changes) = hub.wake.task_changes() {
            tokio::spawn(follow_changes(Arc::downgrade(&hub), changes));
        }
        Ok(hub)
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        self.options.lease.as_millis() as i64
    }

    fn info(&self, app: &EngineApp) -> Option<Arc<AppInfo>> {
        let key = (app.app.clone(), app.hash.clone());
        let mut infos = self.infos.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(info) = infos.get(&key) {
            return Some(info.clone());
        }
        let info = Arc::new(app_info_of(app)?);
        infos.insert(key, info.clone());
        Some(info)
    }

    /// Refuses an app whose schemas do not compile, then records the engine.
    pub async fn register(
        &self,
        registration: RemoteRegistration,
    ) -> Result<EngineRecord, FleetLinkError> {
        let name = registration.name.trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control() || c == '/') {
            return Err(FleetLinkError::BadRegistration(
                "engine name must be 1-128 characters without '/' or control characters".into(),
            ));
        }
        let mut apps = Vec::with_capacity(registration.apps.len());
        for app in &registration.apps {
            let parsed: AppRef = app.app.parse().map_err(|e| {
                FleetLinkError::BadRegistration(format!("app \"{}\": {e}", app.app))
            })?;
            if parsed.namespace().is_none() {
                return Err(FleetLinkError::BadRegistration(format!(
                    "app \"{}\": expected namespace/name",
                    app.app
                )));
            }
            let info = AppInfo::new(app.ready.clone(), app.default_function.as_deref());
            let invalid = |error| {
                let refused = FleetLinkError::InvalidSchema {
                    app: app.app.clone(),
                    error,
                };
                // The engine exits on this; the operator of the API node
                // learns of it here.
                tracing::warn!(engine = %name, error = %refused, "refused an engine's registration");
                refused
            };
            info.validators.setup().map_err(invalid)?;
            for function in info.functions.functions() {
                info.validators.function(function).map_err(invalid)?;
            }
            apps.push(EngineApp {
                app: parsed.id(),
                hash: app.hash.clone(),
                functions: registered_functions(app),
            });
        }
        let record = self
            .store
            .register_engine(
                &EngineRegistration {
                    name: name.to_string(),
                    version: registration.version,
                    slots: registration.slots,
                    apps,
                },
                now_ms(),
            )
            .await?;
        tracing::info!(engine = %record.name, version = %record.version, apps = record.apps.len(), "remote engine registered");
        // An engine registers when it starts: the sessions it held were in
        // the memory of workers that are gone.
        let ended = self
            .store
            .end_engine_sessions(
                &record.name,
                &engine_restarted_reason(&record.name),
                now_ms(),
            )
            .await?;
        if !ended.is_empty() {
            tracing::warn!(engine = %record.name, sessions = ?ended, "engine restarted: its sessions end");
        }
        // Tasks may be waiting for it.
        self.wake.notify();
        Ok(record)
    }

    /// The live engine app (with the served hash) a request names, if any.
    async fn remote_app(&self, app: &AppRef) -> Result<Option<EngineApp>, EngineError> {
        let engines = self.store.list_engines().await.map_err(fleet_error)?;
        let hashes = app_hashes(&engines, now_ms(), self.lease_ms());
        let id = match app.namespace() {
            Some(_) => app.id(),
            None => {
                let mut by_name = hashes
                    .keys()
                    .filter(|id| id.rsplit('/').next() == Some(app.name()));
                match (by_name.next(), by_name.next()) {
                    (Some(only), None) => only.clone(),
                    _ => return Ok(None),
                }
            }
        };
        let Some(hash) = hashes.get(&id) else {
            return Ok(None);
        };
        Ok(engines
            .iter()
            .flat_map(|e| e.apps.iter())
            .find(|a| a.app == id && &a.hash == hash)
            .cloned())
    }

    /// Queues a run for remote engines. None: no engine hosts the app.
    pub async fn submit(&self, request: RunRequest) -> Result<Option<TaskView>, EngineError> {
        let Some(app) = self.remote_app(&request.app).await? else {
            return Ok(None);
        };
        let info = self.info(&app).ok_or_else(|| EngineError::AppUnavailable {
            app: app.app.clone(),
            message: "its engine registered no readable functions".into(),
            traceback: None,
        })?;
        self.enqueue(request, &app.app, &info).await.map(Some)
    }

    /// Validates a run of app `app` (an engine's app, or a deployed
    /// version `ns/name@HASH` this node built: `infsh serve
    /// --versions-on-engines`) against `info` and queues it for engines.
    pub(crate) async fn enqueue(
        &self,
        request: RunRequest,
        app: &str,
        info: &AppInfo,
    ) -> Result<TaskView, EngineError> {
        let session = requested(&request)?;
        let function = requested_function(&request);
        let resolved = info
            .functions
            .resolve(function.as_deref())
            .map_err(|e| resolve_error(app, e))?;
        let (input, setup) = input_and_setup(request.input, request.setup);
        let (input_validator, setup_validator) = call_validators(app, info, resolved)?;
        check_file_inputs(resolved, &input)?;
        validate(&input_validator, &input, || {
            format!("input for function \"{}\"", resolved.name)
        })?;
        validate(&setup_validator, &setup, || "setup config".into())?;
        if let Some(workers) = &request.workers {
            self.check_workers(workers).await?;
        }
        self.check_queue(app).await?;
        let now = now_ms();
        let id = new_id();
        let session_id = self.session_for(session, app, &id, now).await?;
        let record = TaskRecord {
            id,
            app: app.to_string(),
            function: resolved.name.clone(),
            input,
            setup,
            status: TaskStatus::Queued,
            output: None,
            error: None,
            webhook: request.webhook.filter(|w| !w.trim().is_empty()),
            session_id,
            metadata: request.metadata.unwrap_or_else(|| json!({})),
            timeout_secs: request.timeout_secs,
            created_at_ms: now,
            updated_at_ms: now,
            team: request.team.clone(),
            // The claim skips it until then (the stores' `claim_remote`).
            run_at_ms: request.run_at_ms,
        };
        self.store
            .enqueue_remote(&record, request.workers.as_deref())
            .await
            .map_err(fleet_error)?;
        let view = TaskView {
            record,
            logs: Vec::new(),
            slot: None,
        };
        lock(&self.remote_live).insert(view.record.id.clone());
        self.shared.live.insert(view.clone());
        inc(&self.shared.metrics.submitted);
        self.wake.notify();
        Ok(view)
    }

    /// A run's `workers` must name at least one registered engine (offline
    /// ones included: it may come back) or one of its slots; else it would
    /// wait forever. 400 naming what there is.
    async fn check_workers(&self, workers: &[String]) -> Result<(), EngineError> {
        let engines = self.store.list_engines().await.map_err(fleet_error)?;
        let known: Vec<String> = engines
            .iter()
            .flat_map(|e| std::iter::once(e.name.clone()).chain(slot_names(e)))
            .collect();
        if workers.iter().any(|w| known.contains(w)) {
            return Ok(());
        }
        let quoted = |names: &[String]| {
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let expected = if known.is_empty() {
            "no engine has registered".to_string()
        } else {
            format!("expected one of {}", quoted(&known))
        };
        Err(EngineError::InvalidWorkers(format!(
            "`workers` names no engine or slot of this fleet: {}; {expected}",
            quoted(workers),
        )))
    }

    /// `--queue-capacity` for remote runs, as for local ones: the app's
    /// remote tasks waiting for an engine (on PostgreSQL, submitted to any
    /// node) are counted in the store; at capacity the run is refused with
    /// the same 429. Two nodes checking at once may each let one more in.
    async fn check_queue(&self, app: &str) -> Result<(), EngineError> {
        let capacity = self.shared.config.queue_capacity.max(1);
        let queued = self.store.queued_remote(app).await.map_err(fleet_error)?;
        if queued < capacity as u64 {
            return Ok(());
        }
        inc(&self.shared.metrics.rejected_queue_full);
        let mean = self.shared.metrics.mean_seconds(app).unwrap_or(1.0);
        let estimate = (mean * (queued as f64 + 1.0)).clamp(1.0, 300.0);
        Err(EngineError::QueueFull {
            app: app.to_string(),
            capacity,
            retry_after: Duration::from_secs(estimate.ceil() as u64),
        })
    }

    /// A heartbeat, then tasks: at once if any are queued for the engine,
    /// else when something is queued or cancelled, or after half a lease.
    pub async fn claim(
        &self,
        request: ClaimRequest,
        holding: &[String],
        sessions: &[EngineSession],
    ) -> Result<ClaimAnswer, FleetLinkError> {
        let deadline = Instant::now() + self.options.claim_wait();
        let mut woken = self.wake.subscribe();
        // What the engine says of its sessions counts once; later rounds
        // only look for those that ended here meanwhile (a `DELETE`).
        let mut sessions = sessions.to_vec();
        loop {
            woken.borrow_and_update();
            let now = now_ms();
            // Side by side: they touch other rows (the engine's leases, the
            // queued tasks), and on PostgreSQL each is a commit of its own,
            // one after the other the largest share of a claim's latency.
            // The sessions' sync goes before the claim: a session that
            // ended on the engine must not be handed its next call.
            let (beat, claimed, current_versions) = tokio::join!(
                self.store
                    .heartbeat(&request.engine, holding, now, self.lease_ms()),
                async {
                    let end = self
                        .store
                        .sync_engine_sessions(&request.engine, &sessions, now)
                        .await?;
                    let tasks = self.store.claim(&request, now, self.lease_ms()).await?;
                    Ok::<_, FleetError>((end, tasks))
                },
                self.current_versions(&request),
            );
            let (end_sessions, tasks) = claimed?;
            for held in &mut sessions {
                held.ended = None;
            }
            let beat = match beat {
                Ok(beat) => beat,
                // Tasks leased by the claim must reach the engine (else
                // they would wait out a lease and count an attempt): the
                // claim's own lease stands, and the next heartbeat says
                // what to cancel.
                Err(e) if !tasks.is_empty() => {
                    tracing::warn!(engine = %request.engine, error = %e, "heartbeat failed beside a claim");
                    infsh_store::fleet::HeartbeatOutcome {
                        lease_until_ms: now + self.lease_ms(),
                        cancel: Vec::new(),
                        lost: Vec::new(),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            for claimed in &tasks {
                self.publish(&claimed.task.id, |view| {
                    view.record.status = TaskStatus::Dispatched;
                    view.record.updated_at_ms = now;
                });
                self.wake.task_changed(&claimed.task.id);
            }
            let answer = ClaimAnswer {
                tasks,
                lease_until_ms: beat.lease_until_ms,
                cancel: beat.cancel,
                lost: beat.lost,
                end_sessions,
                current_versions,
            };
            let has_news = !answer.tasks.is_empty()
                || !answer.cancel.is_empty()
                || !answer.lost.is_empty()
                || !answer.end_sessions.is_empty();
            if has_news || Instant::now() >= deadline || !self.shared.lifecycle.is_running() {
                return Ok(answer);
            }
            tokio::select! {
                changed = woken.changed() => if changed.is_err() { return Ok(answer) },
                () = sleep_until(Some(deadline)) => {}
            }
        }
    }

    /// Extends the engine's leases; names tasks to cancel and to drop.
    pub async fn heartbeat(
        &self,
        engine: &str,
        holding: &[String],
    ) -> Result<ClaimAnswer, FleetLinkError> {
        let beat = self
            .store
            .heartbeat(engine, holding, now_ms(), self.lease_ms())
            .await?;
        Ok(ClaimAnswer {
            tasks: Vec::new(),
            lease_until_ms: beat.lease_until_ms,
            cancel: beat.cancel,
            lost: beat.lost,
            ..ClaimAnswer::default()
        })
    }

    /// The current version of each app the claiming engine has versions
    /// of (`warm` names them `ns/name@HASH`), from the store, so that a
    /// switch made on any node retires the old version there. Empty for an
    /// engine without versions; a store error is logged and answered with
    /// nothing (the next claim asks again), never failing the claim.
    async fn current_versions(&self, request: &ClaimRequest) -> BTreeMap<String, String> {
        let apps: HashSet<&str> = request
            .warm
            .iter()
            .filter_map(|id| id.split_once('@').map(|(app, _)| app))
            .collect();
        if !request.versions || apps.is_empty() {
            return BTreeMap::new();
        }
        match self.shared.store.current_app_versions().await {
            Ok(all) => all
                .into_iter()
                .filter(|(app, _)| apps.contains(app.as_str()))
                .collect(),
            Err(e) => {
                tracing::warn!(engine = %request.engine, error = %e, "cannot read the current versions for a claim");
                BTreeMap::new()
            }
        }
    }

    /// Stores an engine's report, then publishes it to the live view.
    pub async fn report(
        &self,
        engine: &str,
        task_id: &str,
        report: Report,
    ) -> Result<(), FleetLinkError> {
        if let Err(e) = self.store.report(engine, task_id, &report).await {
            if let FleetError::NotLeased { .. } = &e {
                tracing::warn!(%engine, task = %task_id, error = %e, "refused a report");
            }
            return Err(e.into());
        }
        let terminal = report.status.is_some_and(TaskStatus::is_terminal);
        self.wake.task_changed(task_id);
        self.publish(task_id, |view| {
            view.logs.extend(report.logs.iter().cloned());
            if let Some(status) = report.status {
                view.record.status = status;
            }
            if let Some(output) = &report.output {
                view.record.output = Some(output.clone().into());
            }
            if terminal {
                view.record.error = report.error.clone();
            }
            view.record.updated_at_ms = report.at_ms;
        });
        if terminal {
            self.ended(task_id).await;
        }
        Ok(())
    }

    /// Cancels a remote task. None: the task is not a remote one.
    pub async fn cancel(&self, id: &str) -> Result<Option<TaskStatus>, EngineError> {
        if !self.store.is_remote(id).await.map_err(fleet_error)? {
            return Ok(None);
        }
        let at = now_ms();
        match self
            .store
            .request_cancel(id, at)
            .await
            .map_err(fleet_error)?
        {
            CancelOutcome::Cancelled => {
                self.wake.task_changed(id);
                self.publish(id, |view| {
                    view.record.status = TaskStatus::Cancelled;
                    view.record.updated_at_ms = at;
                });
                self.ended(id).await;
                Ok(Some(TaskStatus::Cancelled))
            }
            CancelOutcome::Requested { engine } => {
                tracing::info!(task = %id, %engine, "asking the engine to cancel");
                self.wake.task_changed(id);
                self.publish(id, |view| {
                    view.record.status = TaskStatus::Cancelling;
                    view.record.updated_at_ms = at;
                });
                self.wake.notify();
                Ok(Some(TaskStatus::Cancelling))
            }
            CancelOutcome::Ended(status) => Err(EngineError::TaskAlreadyEnded {
                id: id.to_string(),
                status,
            }),
        }
    }

    /// The task's runs on remote engines, first first.
    pub async fn attempts(
        &self,
        id: &str,
    ) -> Result<Vec<infsh_store::fleet::AttemptRecord>, EngineError> {
        self.store.attempts(id).await.map_err(fleet_error)
    }

    pub async fn engines(&self) -> Result<Vec<RemoteEngineView>, EngineError> {
        let engines = self.store.list_engines().await.map_err(fleet_error)?;
        let sessions = self.store.active_sessions().await.map_err(fleet_error)?;
        let now = now_ms();
        let hashes = app_hashes(&engines, now, self.lease_ms());
        Ok(engines
            .into_iter()
            .map(|e| RemoteEngineView {
                state: e.state(now, self.lease_ms()),
                apps: e
                    .apps
                    .iter()
                    .map(|a| RemoteAppView {
                        app: a.app.clone(),
                        hash: a.hash.clone(),
                        conflict: hashes.get(&a.app).is_some_and(|h| h != &a.hash),
                    })
                    .collect(),
                sessions: sessions
                    .iter()
                    .filter(|s| s.engine.as_deref() == Some(e.name.as_str()))
                    .map(|s| RemoteSessionView {
                        id: s.id.clone(),
                        app: s.app.clone(),
                        worker: s.worker.clone(),
                    })
                    .collect(),
                name: e.name,
                version: e.version,
                last_heartbeat_ms: e.last_heartbeat_ms,
                slots: e.slots,
                running: e.running,
            })
            .collect())
    }

    /// Every app remote engines host (offline ones included), by id: the
    /// hash their runs go to, each engine with its own hash, and the
    /// functions of the served hash's registration.
    pub async fn apps(&self) -> Result<Vec<HostedRemotely>, EngineError> {
        let engines = self.store.list_engines().await.map_err(fleet_error)?;
        let now = now_ms();
        let hashes = app_hashes(&engines, now, self.lease_ms());
        let mut by_app: BTreeMap<String, HostedRemotely> = BTreeMap::new();
        for engine in &engines {
            let state = engine.state(now, self.lease_ms());
            for app in &engine.apps {
                let served = hashes.get(&app.app);
                let entry = by_app.entry(app.app.clone()).or_insert_with(|| {
                    let (namespace, name) = app.app.split_once('/').unwrap_or(("", &app.app));
                    HostedRemotely {
                        summary: AppSummary {
                            id: app.app.clone(),
                            namespace: namespace.to_string(),
                            name: name.to_string(),
                            description: None,
                            category: None,
                            images: None,
                            default_function: None,
                            functions: None,
                            // Ready once a live engine serves it.
                            state: AppState::Unhealthy,
                        },
                        hash: served.cloned(),
                        engines: Vec::new(),
                        info: None,
                    }
                });
                let serves = served == Some(&app.hash);
                entry.engines.push(RemoteAppHost {
                    engine: engine.name.clone(),
                    hash: app.hash.clone(),
                    conflict: served.is_some() && !serves,
                    state,
                });
                if serves && state != EngineState::Offline {
                    entry.summary.state = AppState::Ready;
                }
                if serves && entry.info.is_none() {
                    if let Some(info) = self.info(app) {
                        entry.summary.functions = Some(info.names());
                        entry.summary.default_function =
                            info.functions.default_name().map(str::to_string);
                        entry.info = Some(info);
                    }
                }
            }
        }
        Ok(by_app.into_values().collect())
    }

    /// `GET /apps/{ns}/{name}` of an app only engines host: the served
    /// registration's functions and setup schema. None: no engine serves it.
    pub async fn app_detail(&self, app: &AppRef) -> Result<Option<AppDetail>, EngineError> {
        let Some(remote) = self.apps().await?.into_iter().find(|r| {
            r.summary.id == app.id() || (app.namespace().is_none() && r.summary.name == app.name())
        }) else {
            return Ok(None);
        };
        let Some(info) = remote.info.clone() else {
            return Ok(None);
        };
        Ok(Some(AppDetail {
            summary: remote.summary,
            functions: info.functions.functions_schema(),
            setup_schema: info.ready.setup_schema.clone(),
        }))
    }

    pub async fn set_draining(&self, name: &str, draining: bool) -> Result<(), EngineError> {
        self.store
            .set_engine_draining(name, draining)
            .await
            .map_err(|e| match e {
                FleetError::UnknownEngine(n) => EngineError::UnknownEngine(n),
                other => fleet_error(other),
            })?;
        if !draining {
            self.wake.notify();
        }
        Ok(())
    }

    pub(crate) fn publish(&self, id: &str, change: impl FnOnce(&mut TaskView)) {
        if let Some(live) = self.shared.live.get(id) {
            live.send_modify(change);
        }
    }

    /// A remote task ended here (this node applied its end): the store is
    /// its truth from now on, and its webhook goes out, once, from here.
    pub(crate) async fn ended(&self, id: &str) {
        lock(&self.remote_live).remove(id);
        let record = self.ended_record(id).await;
        let Some(record) = record else { return };
        // Counted by the node that saw the end (a report, a cancel, a
        // sweep), so over a fleet the nodes' counters add up.
        match record.status {
            TaskStatus::Completed => inc(&self.shared.metrics.completed),
            TaskStatus::Failed => inc(&self.shared.metrics.failed),
            TaskStatus::Cancelled => inc(&self.shared.metrics.cancelled),
            _ => {}
        }
        self.shared.webhooks.deliver(&record);
    }

    /// The ended task's record: its live view's (dropped here) or the store's.
    async fn ended_record(&self, id: &str) -> Option<TaskRecord> {
        let record = match self.shared.live.get(id) {
            Some(live) => {
                let record = live.borrow().record.clone();
                self.shared.live.remove(id);
                record
            }
            // Submitted on another node: no live view here, the store has it.
            None => match self.shared.store.get_task(id).await {
                Ok(Some(record)) => record,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(task = %id, error = %e, "cannot read an ended task for its webhook");
                    return None;
                }
            },
        };
        Some(record)
    }

    /// Keeps a live view of a remote task that another node runs the link
    /// of, so `wait` and streams here see its changes. Only where changes
    /// are announced across nodes; nothing for a local, unknown or ended
    /// task (the store answers those).
    pub async fn follow(&self, id: &str) -> Result<(), EngineError> {
        if self.shared.live.get(id).is_some() || !self.follows() {
            return Ok(());
        }
        let Some(record) = self.shared.store.get_task(id).await? else {
            return Ok(());
        };
        if record.status.is_terminal() || !self.store.is_remote(id).await.map_err(fleet_error)? {
            return Ok(());
        }
        let logs = self.shared.store.get_logs(id).await?;
        lock(&self.remote_live).insert(id.to_string());
        self.shared.live.get_or_insert(TaskView {
            record,
            logs,
            slot: None,
        });
        // A change between the read and the insert was announced before we
        // followed: read once more.
        self.refresh(&[id.to_string()]).await;
        Ok(())
    }

    /// Whether `id` is a remote task with a live view here.
    pub(crate) fn follows_task(&self, id: &str) -> bool {
        lock(&self.remote_live).contains(id)
    }

    fn follows(&self) -> bool {
        self.wake.task_changes().is_some()
    }

    /// Re-reads followed tasks from the store and publishes them (a view
    /// is only replaced by a newer row, never an older one): one query for
    /// the rows and their log counts, then the logs of those that have
    /// more than their view. Ids with no live view here cost nothing.
    async fn refresh(&self, ids: &[String]) {
        let followed: HashMap<&str, LiveTask> = ids
            .iter()
            .filter_map(|id| Some((id.as_str(), self.shared.live.get(id)?)))
            .collect();
        if followed.is_empty() {
            return;
        }
        let wanted: Vec<String> = followed.keys().map(|id| id.to_string()).collect();
        let rows = match self.shared.store.tasks_with_log_counts(&wanted).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(tasks = wanted.len(), error = %e, "cannot re-read followed tasks");
                return;
            }
        };
        for (record, log_count) in rows {
            let Some(live) = followed.get(record.id.as_str()) else {
                continue;
            };
            let logs = if log_count > live.borrow().logs.len() {
                match self.shared.store.get_logs(&record.id).await {
                    Ok(logs) => Some(logs),
                    Err(e) => {
                        tracing::warn!(task = %record.id, error = %e, "cannot re-read a followed task's logs");
                        None
                    }
                }
            } else {
                None
            };
            let id = record.id.clone();
            let terminal = record.status.is_terminal();
            live.send_if_modified(|view| {
                let more_logs = logs.as_ref().is_some_and(|l| l.len() > view.logs.len());
                let newer = terminal
                    || record.updated_at_ms > view.record.updated_at_ms
                    || more_logs
                    || (record.updated_at_ms == view.record.updated_at_ms
                        && record.status != view.record.status);
                if newer && !view.record.status.is_terminal() {
                    if let Some(logs) = logs.filter(|_| more_logs) {
                        view.logs = logs;
                    }
                    view.record = record;
                    return true;
                }
                false
            });
            if terminal {
                // Another node ended it and sent its webhook.
                lock(&self.remote_live).remove(&id);
                self.shared.live.remove(&id);
            }
        }
    }

    async fn sweep_once(&self) {
        let expired = match self
            .store
            .expire_leases(now_ms(), self.options.max_attempts)
            .await
        {
            Ok(expired) => expired,
            Err(e) => {
                tracing::error!(error = %e, "cannot sweep expired leases");
                return;
            }
        };
        let mut requeued = false;
        for lost in expired {
            self.wake.task_changed(&lost.task_id);
            let at = now_ms();
            self.publish(&lost.task_id, |view| {
                view.record.status = lost.status;
                view.record.updated_at_ms = at;
                if lost.status == TaskStatus::Failed {
                    view.record.error = Some(infsh_store::fleet::engine_lost_message(&lost.engine));
                }
            });
            if lost.status.is_terminal() {
                self.ended(&lost.task_id).await;
            } else {
                requeued = true;
            }
        }
        if requeued {
            self.wake.notify();
        }
        self.sweep_sessions().await;
    }
}

async fn sweep(hub: Weak<FleetHub>, options: FleetOptions) {
    let mut tick = tokio::time::interval(options.sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.sweep_once().await;
    }
}

/// Re-reads the followed tasks other nodes announce changes of, a batch
/// at a time ([`next_batch`]): a busy fleet announces several changes per
/// task, faster than a read per announcement keeps up with (a follower
/// that fell behind so showed ended tasks as running for minutes).
async fn follow_changes(hub: Weak<FleetHub>, mut changes: broadcast::Receiver<TaskChange>) {
    while let Some(batch) = next_batch(&mut changes).await {
        let Some(hub) = hub.upgrade() else { return };
        let ids = match batch {
            Announced::Tasks(ids) => ids,
            Announced::Resync => lock(&hub.remote_live).iter().cloned().collect(),
        };
        for chunk in ids.chunks(REFRESH_BATCH) {
            hub.refresh(chunk).await;
        }
    }
}

/// What to re-read after a wait for announcements.
#[derive(Debug, PartialEq)]
enum Announced {
    /// These tasks, each once, in the order first announced.
    Tasks(Vec<String>),
    /// Everything followed: announcements were missed (the listener
    /// reconnected, or this follower lagged behind the channel).
    Resync,
}

/// Waits for an announcement, then takes every one already queued behind
/// it. None once the channel is closed.
async fn next_batch(changes: &mut broadcast::Receiver<TaskChange>) -> Option<Announced> {
    let first = match changes.recv().await {
        Ok(change) => Some(change),
        Err(broadcast::error::RecvError::Lagged(_)) => None,
        Err(broadcast::error::RecvError::Closed) => return None,
    };
    let mut resync = first.is_none();
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    let mut note = |change: TaskChange| match change {
        TaskChange::Task(id) => {
            if seen.insert(id.clone()) {
                ids.push(id);
            }
        }
        TaskChange::Resync => resync = true,
    };
    first.into_iter().for_each(&mut note);
    loop {
        match changes.try_recv() {
            Ok(change) => note(change),
            Err(broadcast::error::TryRecvError::Lagged(_)) => note(TaskChange::Resync),
            Err(_) => break,
        }
    }
    Some(if resync {
        Announced::Resync
    } else {
        Announced::Tasks(ids)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> TaskChange {
        TaskChange::Task(id.to_string())
    }

    #[tokio::test]
    async fn announcements_queued_together_are_one_batch_each_task_once() {
        let (tx, mut rx) = broadcast::channel(16);
        for id in ["a", "b", "a", "c", "b"] {
            tx.send(task(id)).unwrap();
        }
        assert_eq!(
            next_batch(&mut rx).await,
            Some(Announced::Tasks(vec!["a".into(), "b".into(), "c".into()]))
        );
        tx.send(task("d")).unwrap();
        assert_eq!(
            next_batch(&mut rx).await,
            Some(Announced::Tasks(vec!["d".into()]))
        );
        drop(tx);
        assert_eq!(next_batch(&mut rx).await, None);
    }

    #[tokio::test]
    async fn a_resync_or_a_lag_in_a_batch_rereads_everything() {
        let (tx, mut rx) = broadcast::channel(16);
        tx.send(task("a")).unwrap();
        tx.send(TaskChange::Resync).unwrap();
        tx.send(task("b")).unwrap();
        assert_eq!(next_batch(&mut rx).await, Some(Announced::Resync));
        // More announcements than the channel holds: some were lost.
        for n in 0..20 {
            tx.send(task(&n.to_string())).unwrap();
        }
        assert_eq!(next_batch(&mut rx).await, Some(Announced::Resync));
        tx.send(task("e")).unwrap();
        assert_eq!(
            next_batch(&mut rx).await,
            Some(Announced::Tasks(vec!["e".into()]))
        );
    }
}
