//! The serving engine of `infsh serve`: hosted apps, their worker pools and
//! queues, the task lifecycle (queue → dispatch → setup → run → output files
//! → terminal), durability through `infsh-store`, webhooks.
//!
//! ```text
//!  Engine (engine.rs, submit.rs) ──commands──> one scheduler actor per app (scheduler.rs)
//!     │  get/wait/subscribe                        │ owns queue + replicas (replica.rs)
//!     │                                            │ starts workers: AppLauncher ─┐
//!     └──> live tasks (live.rs) <── Tracker ◄── runner per task (runner.rs) ──> AppWorker
//!                                     │                      └─ outputs.rs: files → FileStore
//!                                     └──> TaskStore (durable), webhook.rs, metrics.rs
//! ```
//!
//! - `api`: the public types; `engine`: the [`Engine`] handle; `hosted`:
//!   the table of hosted apps (the engine and `submit` both look apps up in
//!   it); `lifecycle`: the one phase (running, draining, stopping) every
//!   part reads at shutdown.
//! - `registry`: app folders and their ids (requests name apps with
//!   infsh-core's `AppRef`); `app_info`: a worker's `ready` as functions and
//!   infsh-core's validators; `inputs`: checks before storing.
//! - `recovery`: what a start does with the last run's tasks.
//! - `worker_seam`: the worker seam. The scheduler and the runners see a
//!   worker only as an `AppWorker` (setup, call, cancel, kill, shutdown)
//!   started by an `AppLauncher`; `python_launcher` is the real one
//!   (environment, zygote, `infsh_worker::Worker`), and the scheduler's unit
//!   tests (`scheduler/tests/`) put a scripted fake worker and an in-memory
//!   store (`testing/`) in its place, with tokio's paused clock.
//! - `placement_broker`: the machine's slots (infsh-placement's layout from
//!   `engine.yml` and the GPU inventory) and which replica holds which; each
//!   scheduler asks it for a slot before starting a replica, and it picks
//!   idle replicas to evict for an app with none. `views`: what
//!   `GET /engines` and `GET /workers` show.
//! - `fleet_hub` (with `fleet_api`, `fleet_link`): the API node's side of
//!   remote engines: runs of apps only they host are queued in the store's
//!   `FleetStore`, claimed with leases, reported back into the live views.
//! - `sessions`: sessions and the replicas leased to them (the table; each
//!   app's scheduler binds its replicas in `scheduler/sessions.rs`).
//! - `versions`: deployed app versions (package, build, current one,
//!   rollback, removal), hosted by `version_hosting` (also at start);
//!   `hosted` routes runs to them.
//! - `time`: the deadline helper of the actors' `select!` loops.

pub mod api;
mod app_info;
mod batch_gate;
mod batch_policy;
mod deletion;
mod disk_usage;
mod engine;
mod file_retention;
mod fleet_api;
mod fleet_hub;
mod fleet_link;
mod fleet_sessions;
mod handle;
mod hosted;
mod input_files;
mod inputs;
mod keys;
mod lifecycle;
mod live;
mod metrics;
mod node_watch;
mod outputs;
mod placement_broker;
mod python_launcher;
mod recovery;
mod redact;
mod registry;
mod replica;
mod retention;
mod runner;
mod scheduler;
mod sessions;
mod shared;
mod start_error;
mod stored_versions;
mod submit;
#[cfg(test)]
mod testing;
mod time;
mod timing;
mod tracker;
mod version_hosting;
mod versions;
mod views;
mod webhook;
mod webhook_signing;
mod worker_seam;

pub use api::*;
pub use deletion::{task_file_ids, DeletedFiles};
pub use disk_usage::DiskUsage;
pub use engine::Engine;
pub use file_retention::unreferenced_files_before;
pub use fleet_api::{
    ClaimAnswer, FleetBacking, FleetLinkError, FleetOptions, HostedRemotely, RemoteApp,
    RemoteAppHost, RemoteAppView, RemoteEngineView, RemoteRegistration, RemoteSessionView,
};
pub use hosted::SHORT_HASH;
pub use keys::{
    key_digest as api_key_digest, CreatedApiKey, NewApiKey, KEY_PREFIX as API_KEY_PREFIX,
};
pub use redact::{MIN_SECRET_LEN, REDACTED};
pub use registry::ScanError;
pub use registry::{
    app_folder_id, app_folders_below, is_skipped_folder, DEFAULT_NAMESPACE, MAX_DEPTH,
};
pub use retention::{SweepOutcome, RETENTION_BATCH};
pub use sessions::{
    SessionStatus, SessionView, DEFAULT_SESSION_TIMEOUT, MAX_SESSION_TIMEOUT, SESSION_PREFIX,
};
pub use shared::INTERRUPTED;
pub use start_error::EngineStartError;
pub use timing::{StageClock, StageTimes};
pub use version_hosting::{upload_dir, VERSIONS_DIR};
pub use versions::VersionView;
pub use views::{EngineView, GpuView, SlotView, WorkerView};
pub use webhook::WebhookClientError;
pub use webhook::{
    payload as webhook_payload, ATTEMPTS as WEBHOOK_ATTEMPTS,
    FIRST_BACKOFF as WEBHOOK_FIRST_BACKOFF,
};
pub use webhook_signing::{
    SecretError as WebhookSecretError, WebhookSecret, GENERATED_SECRET_BYTES, MIN_SECRET_BYTES,
};
pub use worker_seam::UNLOAD_GRACE;
