//! The serving engine of `infsh serve`: hosted apps, their worker pools and
//! queues, the task lifecycle (queue → dispatch → setup → run → output files
//! → terminal), durability through `infsh-store`, webhooks.
//!
//! ```text
//!  Engine (engine.rs, submit.rs) ──commands──> one scheduler actor per app (scheduler.rs)
//!     │  get/wait/subscribe                        │ owns queue + replicas (replica.rs)
//!     └──> live tasks (live.rs) <── Tracker ◄── runner per task (runner.rs) ──> infsh_worker::Worker
//!                                     │                      └─ outputs.rs: files → FileStore
//!                                     └──> TaskStore (durable), webhook.rs, metrics.rs
//! ```
//!
//! - `api`: the public types; `engine`: the [`Engine`] handle.
//! - `registry`: app folders and their ids (requests name apps with
//!   infsh-core's `AppRef`); `app_info`: a worker's `ready` as functions and
//!   infsh-core's validators; `inputs`: checks before storing.
//! - `recovery`: what a start does with the last run's tasks.

pub mod api;
mod app_info;
mod engine;
mod handle;
mod inputs;
mod live;
mod metrics;
mod outputs;
mod recovery;
mod redact;
mod registry;
mod replica;
mod runner;
mod scheduler;
mod shared;
mod submit;
mod timing;
mod tracker;
mod webhook;

pub use api::*;
pub use engine::{Engine, EngineStartError, UNLOAD_GRACE};
pub use redact::{MIN_SECRET_LEN, REDACTED};
pub use registry::{DEFAULT_NAMESPACE, MAX_DEPTH};
pub use shared::INTERRUPTED;
pub use timing::{StageClock, StageTimes};
pub use webhook::{
    payload as webhook_payload, ATTEMPTS as WEBHOOK_ATTEMPTS,
    FIRST_BACKOFF as WEBHOOK_FIRST_BACKOFF,
};
