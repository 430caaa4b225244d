//! `Engine::submit`: a run request becomes a stored, queued task, or is
//! refused with a precise [`EngineError`] and nothing stored. In order:
//! app, function, secrets (before any worker starts), the app's functions
//! (its first submit starts a worker to learn them), the function's schemas
//! (refused if they do not compile), file inputs, input and setup against
//! their schemas, a queue slot, the session (opened or continued:
//! `sessions.rs`), the insert, the queue.
//!
//! The insert is durable before `submit` returns, except for
//! [`Insert::Deferred`]: the caller gives the task's id out only with its
//! end (HTTP `wait`), which is durable and commits the insert with it, so
//! the task runs without waiting for a commit of its own. A crash before
//! that loses a task nobody was told about, never one that was
//! acknowledged; and recovery never re-runs it, because it is stored as
//! DISPATCHED once dispatched (see `Tracker::set_status`).

use infsh_store::{new_id, now_ms, TaskRecord, TaskStatus};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{EngineError, RunRequest, TaskView};
use crate::handle::{AppHandle, QueuedTask};
use crate::hosted::HostedApps;
use crate::inputs::{
    call_validators, check_file_inputs, input_and_setup, missing_secrets, requested_function,
    resolve_error, validate,
};
use crate::metrics::inc;
use crate::sessions::{requested, Requested};
use crate::shared::Shared;
use crate::timing::{Mark, StageClock};

/// How `submit` stores a new task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// On disk before `submit` returns: the caller gives out the id at once.
    Durable,
    /// Queued; durable at the latest with the task's end (see module docs).
    Deferred,
}

/// The stored task, and the clock of its stages.
pub(crate) async fn submit(
    shared: &Arc<Shared>,
    apps: &HostedApps,
    request: RunRequest,
    insert: Insert,
    id: Option<String>,
) -> Result<(TaskView, Arc<StageClock>), EngineError> {
    let clock = Arc::new(StageClock::new());
    if !shared.lifecycle.is_running() {
        return Err(EngineError::ShuttingDown);
    }
    let shared = shared.clone();
    let session = requested(&request)?;
    let mut handle = apps.resolve(&request.app)?;
    if let Requested::Continue(id) = &session {
        handle = session_version(&shared, apps, id, &request.app, handle)?;
        shared.sessions.check(id, &handle.entry.id)?;
    }
    let app_id = handle.entry.id.clone();
    // Before anything starts a worker: an app no slot here can host would
    // otherwise wait in its queue forever.
    if let Some(why) = &handle.never {
        return Err(EngineError::NoMatchingWorker(why.clone()));
    }
    if let Err(e) = &handle.entry.needs {
        return Err(EngineError::AppUnavailable {
            app: app_id,
            message: format!("inf.yml: {e}"),
            traceback: None,
        });
    }
    let function = requested_function(&request);
    let slots = pinned_slots(&shared, &handle, request.slots.as_deref())?;

    let missing = missing_secrets(&handle.entry.dir.manifest, &shared.config.secrets);
    if !missing.is_empty() {
        return Err(EngineError::MissingSecrets { missing });
    }

    let info = handle.discover().await?;
    let resolved = info
        .functions
        .resolve(function.as_deref())
        .map_err(|e| resolve_error(&app_id, e))?;

    let (input, setup) = input_and_setup(request.input, request.setup);
    // A function whose schemas do not compile is refused before its input
    // is looked at.
    let (input_validator, setup_validator) = call_validators(&app_id, &info, resolved)?;
    check_file_inputs(resolved, &input)?;
    validate(&input_validator, &input, || {
        format!("input for function \"{}\"", resolved.name)
    })?;
    validate(&setup_validator, &setup, || "setup config".into())?;

    let capacity = shared.config.queue_capacity.max(1);
    if !handle.try_reserve(capacity) {
        inc(&shared.metrics.rejected_queue_full);
        let mean = shared.metrics.mean_seconds(&app_id).unwrap_or(1.0);
        let slots =
            (shared.config.replicas.max(1) * shared.config.concurrency_per_replica.max(1)) as f64;
        let estimate = (mean * (handle.queued() as f64 + 1.0) / slots).clamp(1.0, 300.0);
        return Err(EngineError::QueueFull {
            app: app_id,
            capacity,
            retry_after: Duration::from_secs(estimate.ceil() as u64),
        });
    }

    let id = id.unwrap_or_else(new_id);
    // Counted last, once nothing else can refuse the run.
    let session_id = match session {
        Requested::None => None,
        Requested::New(idle_timeout) => Some(shared.sessions.open(&app_id, idle_timeout, &id)),
        Requested::Continue(session) => {
            if let Err(e) = shared.sessions.call(&session, &app_id) {
                handle.release();
                return Err(e);
            }
            Some(session)
        }
    };
    let now = now_ms();
    let record = TaskRecord {
        id,
        app: app_id,
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
        run_at_ms: request.run_at_ms,
    };
    // From here on the task is stored and must be queued even if the
    // caller goes away (a client that disconnects drops this future): the
    // rest runs in a task of its own.
    let handle = handle.clone();
    tokio::spawn(async move {
        let stored = match insert {
            Insert::Durable => shared.store.insert_task(&record).await,
            Insert::Deferred => shared.store.insert_task_deferred(&record).await,
        };
        if let Err(e) = stored {
            handle.release();
            return Err(EngineError::Store(e));
        }
        inc(&shared.metrics.submitted);
        let view = TaskView {
            record: record.clone(),
            logs: Vec::new(),
            slot: None,
        };
        let live = shared.live.insert(view.clone());
        clock.mark(Mark::Queued);
        handle.enqueue(QueuedTask {
            record,
            live,
            clock: clock.clone(),
            since: tokio::time::Instant::now(),
            slots,
        });
        Ok((view, clock))
    })
    .await
    .map_err(|source| EngineError::Background {
        what: "storing the task",
        source,
    })?
}

/// The slots a pinned run may use; None: any. A pin naming no slot of
/// this engine, or only slots that can never host the app, is refused:
/// such a run would wait forever.
fn pinned_slots(
    shared: &Shared,
    handle: &AppHandle,
    slots: Option<&[usize]>,
) -> Result<Option<Vec<usize>>, EngineError> {
    let Some(slots) = slots else {
        return Ok(None);
    };
    let app = &handle.entry.id;
    let ids: Vec<infsh_placement::SlotId> = slots
        .iter()
        .map(|id| infsh_placement::SlotId(*id))
        .collect();
    let needs = handle
        .entry
        .needs
        .as_ref()
        .cloned()
        .unwrap_or_else(|_| infsh_placement::AppNeeds::cpu());
    if !shared.broker.can_host_on(app, &needs, &ids) {
        return Err(EngineError::InvalidWorkers(format!(
            "app \"{app}\" ({needs}) cannot run on the slots the run is pinned to ({slots:?})"
        )));
    }
    Ok(Some(slots.to_vec()))
}

/// A session keeps the version it was opened on: a call naming the app
/// without a version (or `@latest`) goes to the session's version even
/// after a switch; one naming another version is refused
/// (`VERSION_MISMATCH`).
fn session_version(
    shared: &Arc<Shared>,
    apps: &HostedApps,
    session: &str,
    app: &infsh_core::AppRef,
    resolved: AppHandle,
) -> Result<AppHandle, EngineError> {
    let Ok(view) = shared.sessions.view(session) else {
        return Ok(resolved);
    };
    let (session_app, session_version) = match view.app.split_once('@') {
        Some((a, v)) => (a, Some(v)),
        None => (view.app.as_str(), None),
    };
    if session_app != resolved.entry.app_id() || view.app == resolved.entry.id {
        // Another app (the check refuses it) or the very version.
        return Ok(resolved);
    }
    let named = app.version().filter(|v| *v != crate::hosted::LATEST);
    if named.is_none() {
        if let Ok(kept) = apps.by_id(&view.app) {
            return Ok(kept);
        }
    }
    let short = |v: Option<&str>| {
        v.map_or("(the app's folder)".to_string(), |v| {
            v.chars().take(crate::hosted::SHORT_HASH).collect()
        })
    };
    Err(EngineError::SessionVersionMismatch {
        id: session.to_string(),
        app: session_app.to_string(),
        session_version: short(session_version),
        version: short(resolved.entry.version.as_deref()),
    })
}
