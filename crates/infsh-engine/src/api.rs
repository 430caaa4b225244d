//! The engine's public surface: what the HTTP layer (and tests) may call.
//! Everything the server does with apps and tasks goes through [`Engine`];
//! the HTTP layer never touches workers or the store directly.
//!
//! CONTRACT NOTE: `crates/infsh-server` is written against exactly these
//! names. Change them only together with it.

use std::path::PathBuf;
use std::time::Duration;

use infsh_core::validate::FieldError;
use infsh_core::AppRef;
use infsh_store::{FileRecord, LogEntry, Page, StoreError, TaskRecord, TaskStatus};
use serde::Serialize;
use serde_json::Value;

/// Everything `infsh serve` configures about running apps.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Folder scanned for apps (each sub-folder with an `inference.py`, at any depth up to 3).
    pub apps_dir: PathBuf,
    /// SQLite database, stored files, worker state live here.
    pub data_dir: PathBuf,
    /// Where app virtual environments are cached (shared with the CLI).
    pub cache_dir: PathBuf,
    /// Use this interpreter for every app instead of building environments.
    pub python: Option<PathBuf>,
    /// Use this `node` for every JavaScript app (default: `node` on PATH).
    pub node: Option<PathBuf>,
    /// Start every app's workers at boot instead of at its first call.
    pub preload: bool,
    /// Worker processes per app (each runs `setup` once and serves every function).
    pub replicas: usize,
    /// Calls one worker runs at once (async apps can take more than one).
    pub concurrency_per_replica: usize,
    /// Tasks waiting per app beyond which runs are refused with 429.
    pub queue_capacity: usize,
    /// Default per-task timeout (None: no limit). A run's own `timeout` wins.
    pub task_timeout: Option<Duration>,
    /// Limit on an app's `setup`.
    pub setup_timeout: Option<Duration>,
    /// How long a cancelled task gets before its worker is killed and replaced.
    pub cancel_grace: Duration,
    /// The server's externally visible base URL, e.g. `http://127.0.0.1:8080`,
    /// used to build file URIs returned in outputs.
    pub public_url: String,
    /// Secret values available to apps (`secrets`/`integrations` of inf.yml), by key.
    pub secrets: std::collections::BTreeMap<String, String>,
    /// Fork each app's workers from a zygote that imported the app once
    /// (a second replica or a restart after a crash in milliseconds), where
    /// that is safe; false starts every worker as a new interpreter.
    pub fork_workers: bool,
    /// Whether a task's stored states are on the disk before infsh goes on
    /// (`Full`) or up to a second later (`Relaxed`: safe against a crash of
    /// infsh, not against a power loss). See [`infsh_store::Durability`].
    pub durability: infsh_store::Durability,
    /// The worker layout (`engine.yml`): slots, a declared inventory,
    /// per-app bounds. The default is no file: detected GPUs, one slot
    /// each, CPU apps unbounded.
    pub placement: infsh_placement::EngineConfig,
    /// Signs webhook deliveries (Standard Webhooks). None: they go
    /// unsigned (`infsh serve` always sets one).
    pub webhook_secret: Option<crate::WebhookSecret>,
    /// Where stored files' bytes live (`--files`: a folder or a bucket,
    /// opened). None: the folder `files` under `data_dir`.
    pub files: Option<infsh_store::FileBackend>,
    /// `infsh serve --versions-on-engines`: runs of deployed versions go
    /// to engines, so a start hosts no version again here (only one built
    /// before its functions were stored, which nothing else can run).
    pub versions_on_engines: bool,
}

/// A request to run a function, after the HTTP layer parsed the body.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The app, parsed from the client's `ns/name[@version][:function]`
    /// (or a bare name) at the edge.
    pub app: AppRef,
    /// The function; wins over the reference's `:function`. Neither: the
    /// app's default function.
    pub function: Option<String>,
    pub input: Value,
    pub setup: Option<Value>,
    pub webhook: Option<String>,
    /// `"new"` opens a session (`sessions.rs`); a session id continues one.
    pub session: Option<String>,
    /// Idle timeout of a new session in seconds (1 to 3600, default 60);
    /// only with `session: "new"`.
    pub session_timeout: Option<i64>,
    pub metadata: Option<Value>,
    /// Per-run timeout in seconds.
    pub timeout_secs: Option<f64>,
    /// Pins the run to these named workers of remote engines (the run
    /// body's `workers`): only an engine that has one of them claims it.
    /// Refused for an app this node hosts itself.
    pub workers: Option<Vec<String>>,
    /// Runs it only on a worker holding one of these slots of this engine
    /// (their ids, as `GET /workers` numbers them), waiting for one rather
    /// than taking another: `infsh engine run` sets it for a claimed run
    /// pinned to named slots. Not part of the HTTP run body.
    pub slots: Option<Vec<usize>>,
    /// The team the task belongs to (the run's key's; see the server's
    /// teams.rs). None: no team recorded, which counts as `default`.
    pub team: Option<String>,
    /// The run body's `run_at` (Unix ms): the task stays QUEUED until then.
    /// None, or a time past: at once.
    pub run_at_ms: Option<i64>,
}

impl RunRequest {
    /// A run of `app` (its `:function`, or the default one) with input `{}`
    /// and nothing else set.
    pub fn new(app: AppRef) -> RunRequest {
        RunRequest {
            app,
            function: None,
            input: Value::Object(Default::default()),
            setup: None,
            webhook: None,
            session: None,
            session_timeout: None,
            metadata: None,
            timeout_secs: None,
            workers: None,
            slots: None,
            team: None,
            run_at_ms: None,
        }
    }
}

/// A task as the API shows it: the record plus its logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    pub record: TaskRecord,
    pub logs: Vec<LogEntry>,
    /// The slot of this engine whose worker took the task, as `KIND-ID`
    /// (`gpu-1`, `cpu-2`: a slot's kind and id in `GET /workers`' layout);
    /// None before dispatch and for an unbounded CPU replica. Only in the
    /// live view (not stored): `infsh engine run` reports it to its API
    /// node, which records it on the attempt.
    #[serde(skip)]
    pub slot: Option<String>,
}

/// Why a request was refused. The HTTP layer maps each variant to one status
/// code and problem type (see crates/infsh-server/src/problem.rs).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown app \"{app}\"; available apps: {}", available.join(", "))]
    UnknownApp { app: String, available: Vec<String> },
    #[error("unknown function \"{function}\" of app \"{app}\"; available functions: {}", available.join(", "))]
    UnknownFunction {
        app: String,
        function: String,
        available: Vec<String>,
    },
    #[error("app \"{app}\" has no default function; name one of: {}", available.join(", "))]
    NoDefaultFunction { app: String, available: Vec<String> },
    #[error("{what} is invalid: {}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    InvalidInput {
        what: String,
        errors: Vec<FieldError>,
    },
    #[error("input file {field}: {reason}")]
    InvalidFile { field: String, reason: String },
    #[error("app \"{app}\" is busy: its queue holds {capacity} tasks; retry later")]
    QueueFull {
        app: String,
        capacity: usize,
        retry_after: Duration,
    },
    #[error("missing required secrets: {}", missing.iter().map(|m| m.key.as_str()).collect::<Vec<_>>().join(", "))]
    MissingSecrets { missing: Vec<MissingSecret> },
    /// The app could not be loaded (import error, no App class...), so its
    /// functions are unknown.
    #[error("app \"{app}\" failed to load: {message}")]
    AppUnavailable {
        app: String,
        message: String,
        traceback: Option<String>,
    },
    /// A schema the function needs (its input schema or the app's setup
    /// schema) does not compile: the app's fault, so the function is
    /// refused until the app is fixed.
    #[error("{error}")]
    InvalidSchema {
        app: String,
        error: infsh_core::InvalidSchema,
    },
    /// A run or a version route named a version the app does not have.
    #[error("app \"{app}\" has no version \"{version}\" (list them: GET /apps/{app}/versions)")]
    UnknownVersion { app: String, version: String },
    #[error("version \"{version}\" of app \"{app}\" is ambiguous: it begins {}; give more of the hash", matches.join(", "))]
    AmbiguousVersion {
        app: String,
        version: String,
        matches: Vec<String>,
    },
    /// A ready version whose package this API node cannot find: neither
    /// under its data folder nor in its `--files` storage (404).
    #[error("version {hash} of app \"{app}\" has no package on this API node (deploy it again, or give every API node the same --files)")]
    VersionPackageMissing { app: String, hash: String },
    /// An upload that is not an app package, or whose inf.yml names
    /// another app than the route (400).
    #[error("{0}")]
    BadPackage(String),
    /// A deployed version whose environment or import failed: it is kept
    /// as `failed` and never becomes current (422).
    #[error("version {hash} of app \"{app}\" failed to build: {message}")]
    VersionFailed {
        app: String,
        hash: String,
        message: String,
        traceback: Option<String>,
    },
    /// A version change that cannot be made in its state: removing the
    /// current version or one with live sessions, activating one that is
    /// not ready (409).
    #[error("{0}")]
    VersionConflict(String),
    /// A run named a session with a version other than the session's (400).
    #[error("session \"{id}\" runs version {session_version} of app \"{app}\", not {version}")]
    SessionVersionMismatch {
        id: String,
        app: String,
        session_version: String,
        version: String,
    },
    #[error("unknown task \"{0}\"")]
    UnknownTask(String),
    #[error("unknown file \"{0}\"")]
    UnknownFile(String),
    #[error("unknown API key \"{0}\"")]
    UnknownApiKey(String),
    #[error("task \"{id}\" already ended with status {status:?}")]
    TaskAlreadyEnded { id: String, status: TaskStatus },
    /// Deleting a task (or its files) that has not ended: cancel it first.
    #[error("task \"{id}\" has not ended (status {status:?}): cancel it first")]
    TaskNotEnded { id: String, status: TaskStatus },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// No slot of this machine can ever host the app (it needs more GPUs,
    /// VRAM or memory than any slot has, or a GPU type none has).
    #[error(transparent)]
    NoMatchingWorker(#[from] infsh_placement::NoMatchingWorker),
    /// A run or a session route named a session this server does not
    /// know (never opened, forgotten, or opened before a restart).
    #[error(
        "unknown session \"{0}\" (sessions live in the server's memory: none survives a restart)"
    )]
    SessionNotFound(String),
    #[error("session \"{id}\" ended: {reason}")]
    SessionEnded { id: String, reason: String },
    #[error("session \"{id}\" expired: idle for more than its timeout of {idle_timeout_secs}s")]
    SessionExpired { id: String, idle_timeout_secs: u64 },
    #[error("session \"{id}\" belongs to app \"{session_app}\", not \"{app}\"")]
    SessionAppMismatch {
        id: String,
        session_app: String,
        app: String,
    },
    /// `session`/`session_timeout` of a run that cannot be taken (400).
    #[error("{0}")]
    InvalidSession(String),
    /// A run's `workers` names no engine or slot there is (400): it would
    /// wait forever.
    #[error("{0}")]
    InvalidWorkers(String),
    /// A drain or undrain named an engine that is not this one.
    #[error("unknown engine \"{0}\"")]
    UnknownEngine(String),
    /// A step the request waited on, run in a task of its own so that it
    /// completes even if the caller goes away (storing a new task,
    /// recording a cancellation), did not finish: that task panicked or was
    /// aborted.
    #[error("storage error: {what} failed: {source}")]
    Background {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl EngineError {
    /// The request named something that does not exist (an app, one of its
    /// functions, a task, a file): the HTTP layer answers 404.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            EngineError::UnknownApp { .. }
                | EngineError::UnknownVersion { .. }
                | EngineError::VersionPackageMissing { .. }
                | EngineError::UnknownFunction { .. }
                | EngineError::UnknownTask(_)
                | EngineError::UnknownFile(_)
                | EngineError::UnknownApiKey(_)
                | EngineError::UnknownEngine(_)
                | EngineError::SessionNotFound(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissingSecret {
    /// `secret` or `integration`.
    pub kind: String,
    pub key: String,
    pub message: String,
}

/// One hosted app, for `GET /apps`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppSummary {
    /// `namespace/name`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub description: Option<String>,
    /// inf.yml's `category` (e.g. `image`).
    pub category: Option<String>,
    /// inf.yml's `images` as written (e.g. `{card: URL}`), for listings.
    pub images: Option<Value>,
    pub default_function: Option<String>,
    /// None until the app's functions were discovered (first worker start).
    pub functions: Option<Vec<String>>,
    pub state: AppState,
}

/// One hosted app with its functions and schemas, for `GET /apps/{ns}/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppDetail {
    pub summary: AppSummary,
    /// Exactly `functions_schema.json`'s content.
    pub functions: Value,
    pub setup_schema: Value,
}

/// Worker state of an app, for `GET /apps` and `GET /ready`; serialised as
/// its [`AppState::as_str`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// No worker started yet (workers start at the first call).
    Idle,
    Starting,
    Ready,
    /// A worker did not start, a setup failed or timed out, or a worker
    /// died unexpectedly, and nothing has succeeded since; `last_error` says
    /// why. Workers are restarted after a backoff (see [`AppHealth`]).
    Unhealthy,
}

impl AppState {
    /// Every state, in the order of a worker's life.
    pub const ALL: [AppState; 4] = [
        AppState::Idle,
        AppState::Starting,
        AppState::Ready,
        AppState::Unhealthy,
    ];

    /// The name on the wire (the serialised form): `idle`, `starting`,
    /// `ready`, `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Idle => "idle",
            AppState::Starting => "starting",
            AppState::Ready => "ready",
            AppState::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppReadiness {
    pub id: String,
    pub state: AppState,
    pub replicas: usize,
    pub busy: usize,
    pub queued: usize,
    pub last_error: Option<String>,
}

/// An app's health in detail: why it is unhealthy and when its next worker
/// start is due (`Engine::health`, `Engine::app_health`).
///
/// An app whose worker fails to start, whose `setup` fails (or times out),
/// or whose worker dies unexpectedly is `unhealthy`: no worker of it is
/// started and no setup run for a backoff that doubles with every
/// consecutive failure ([`RESTART_BACKOFF_FIRST`], capped at
/// [`RESTART_BACKOFF_MAX`]). Tasks wait in the queue meanwhile. The failure
/// is cleared (and the backoff reset) by the next success of what failed: a
/// worker start after a load failure, a setup after a setup failure, a task
/// that ends with its worker alive after a crash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppHealth {
    pub id: String,
    pub state: AppState,
    /// The last failure's message while unhealthy (as `AppReadiness::last_error`).
    pub last_error: Option<String>,
    /// Its Python traceback (load, setup) or the worker's last stderr lines (crash).
    pub traceback: Option<String>,
    /// Consecutive failures; 0 when healthy.
    pub failures: u32,
    /// When the last failure happened (Unix milliseconds).
    pub failed_at_ms: Option<i64>,
    /// Seconds until the next worker start or setup is allowed; None when
    /// not backing off.
    pub retry_in_secs: Option<f64>,
}

/// The backoff after an app's first consecutive failure; it doubles with each
/// further one, up to [`RESTART_BACKOFF_MAX`].
pub const RESTART_BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// The longest backoff between two attempts to start an unhealthy app.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The backoff after `failures` consecutive failures (0: none).
pub fn restart_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (failures - 1).min(16);
    RESTART_BACKOFF_FIRST
        .saturating_mul(factor)
        .min(RESTART_BACKOFF_MAX)
}

/// Counters and gauges for `GET /metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    pub tasks_submitted: u64,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    pub tasks_cancelled: u64,
    pub tasks_rejected_queue_full: u64,
    pub tasks_queued: u64,
    pub tasks_running: u64,
    pub workers_started: u64,
    pub workers_crashed: u64,
    /// Per app: (app id, completed task durations in seconds: count and sum).
    pub task_seconds: Vec<(String, u64, f64)>,
}

/// A file registered by `POST /files`, before or after its bytes arrived.
pub type StoredFile = FileRecord;

/// Which side of a task a file is on (`GET /tasks/{id}/files?role=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFileRole {
    Input,
    Output,
}

impl TaskFileRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskFileRole::Input => "input",
            TaskFileRole::Output => "output",
        }
    }
}

/// A page of tasks for `GET /tasks`.
pub type TaskPage = Page<TaskRecord>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_state_names_are_its_serialised_form() {
        let names: Vec<Value> = AppState::ALL
            .iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect();
        assert_eq!(
            names,
            ["idle", "starting", "ready", "unhealthy"].map(Value::from)
        );
        for s in AppState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use infsh_core::ErrorChain;
    use std::error::Error;

    #[test]
    fn unknown_apps_functions_tasks_and_files_are_not_found() {
        let unknown = [
            EngineError::UnknownApp {
                app: "a/b".into(),
                available: vec![],
            },
            EngineError::UnknownFunction {
                app: "a/b".into(),
                function: "f".into(),
                available: vec![],
            },
            EngineError::UnknownTask("t".into()),
            EngineError::UnknownFile("f".into()),
        ];
        assert!(unknown.iter().all(EngineError::is_not_found));
        assert!(!EngineError::ShuttingDown.is_not_found());
        assert!(!EngineError::Store(StoreError::InvalidId).is_not_found());
    }

    #[test]
    fn no_matching_worker_reads_as_placement_says_and_keeps_its_cause() {
        let why = infsh_placement::NoMatchingWorker {
            app: "acme/big".into(),
            needs: "2 GPUs".into(),
            why: "the largest slot here is gpus [0] (1 GPU, 80 GB)".into(),
        };
        let e = EngineError::from(why.clone());
        assert!(matches!(&e, EngineError::NoMatchingWorker(w) if *w == why));
        assert_eq!(
            e.to_string(),
            "acme/big needs 2 GPUs; the largest slot here is gpus [0] (1 GPU, 80 GB)"
        );
        assert!(!e.is_not_found());
        let unknown = EngineError::UnknownEngine("other-box".into());
        assert!(unknown.is_not_found());
        assert_eq!(unknown.to_string(), "unknown engine \"other-box\"");
    }

    #[test]
    fn a_store_error_is_kept_as_the_cause() {
        let e = EngineError::from(StoreError::InvalidCursor("c".into()));
        let cause = e.source().and_then(|s| s.downcast_ref::<StoreError>());
        assert!(matches!(cause, Some(StoreError::InvalidCursor(_))));
        assert_eq!(e.to_string(), "storage error: invalid cursor \"c\"");
        assert_eq!(ErrorChain(&e).to_string(), e.to_string());
    }

    #[tokio::test]
    async fn a_background_step_that_panicked_keeps_the_join_error() {
        let join = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
        let e = EngineError::Background {
            what: "storing the task",
            source: join,
        };
        let cause = e
            .source()
            .and_then(|s| s.downcast_ref::<tokio::task::JoinError>());
        assert!(cause.is_some_and(tokio::task::JoinError::is_panic));
        assert!(e
            .to_string()
            .starts_with("storage error: storing the task failed: task "));
    }
}
