//! The public types of the fleet link, the API node's side of remote
//! engines (`fleet_hub.rs` does the work): what an engine registers, what a
//! claim answers, the options of `infsh serve` that shape leases, and the
//! errors the HTTP layer maps to problems.

use std::time::Duration;

use std::sync::Arc;

use infsh_protocol::Ready;
use infsh_store::fleet::{ClaimedTask, FleetError, FleetStore, Wakeup};
use serde::{Deserialize, Serialize};

/// Where remote engines' queue and leases live when the engine does not
/// open its own SQLite store (`infsh serve --store`): the fleet side of the
/// store it was given, and the wake-up shared by the API nodes on it
/// (PostgreSQL: `LISTEN/NOTIFY`; SQLite: within this process).
#[derive(Clone)]
pub struct FleetBacking {
    pub store: Arc<dyn FleetStore>,
    pub wake: Arc<dyn Wakeup>,
}

impl std::fmt::Debug for FleetBacking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBacking").finish_non_exhaustive()
    }
}

/// Leases and claims (`infsh serve --lease-seconds`, `--max-attempts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetOptions {
    /// How long a claimed task stays leased without a heartbeat.
    pub lease: Duration,
    /// Runs of one task in all (the first included) before a lost engine
    /// fails it with `engine lost: <name>`.
    pub max_attempts: u32,
    /// How often expired leases are looked for.
    pub sweep_every: Duration,
    /// Runs of deployed versions go to engines that fetch versions
    /// (`infsh serve --versions-on-engines`), not to this node's workers.
    pub versions_on_engines: bool,
}

impl FleetOptions {
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 2;

    /// A sweep four times per lease (at most once a second, at least every
    /// 100 ms): a lost task is requeued within 1.25 leases.
    pub fn new(lease: Duration, max_attempts: u32) -> FleetOptions {
        FleetOptions {
            lease,
            max_attempts: max_attempts.max(1),
            sweep_every: (lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(1)),
            versions_on_engines: false,
        }
    }

    /// The longest a claim long-polls: half a lease, so a waiting engine's
    /// leases never run out while it waits.
    pub fn claim_wait(&self) -> Duration {
        self.lease / 2
    }
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions::new(Self::DEFAULT_LEASE, Self::DEFAULT_MAX_ATTEMPTS)
    }
}

/// An app as an engine registers it: what its worker said in `ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteApp {
    /// `namespace/name`.
    pub app: String,
    /// Content hash of the app folder (hex).
    pub hash: String,
    /// `default_function` of its inf.yml.
    #[serde(default)]
    pub default_function: Option<String>,
    /// Its functions and schemas.
    pub ready: Ready,
}

/// An engine's registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteRegistration {
    pub name: String,
    pub version: String,
    /// Its slot layout, as `GET /engines` shows a local one.
    #[serde(default)]
    pub slots: serde_json::Value,
    pub apps: Vec<RemoteApp>,
}

/// A claim's answer: tasks to run, and what to stop.
#[derive(Debug, Clone, Default)]
pub struct ClaimAnswer {
    pub tasks: Vec<ClaimedTask>,
    pub lease_until_ms: i64,
    /// Held tasks a client cancelled.
    pub cancel: Vec<String>,
    /// Tasks the engine holds no more (drop them, report nothing).
    pub lost: Vec<String>,
    /// Sessions it told of that are over here (ended by `DELETE`, expired,
    /// or not its own): end them there, releasing their replicas.
    pub end_sessions: Vec<String>,
    /// The current version (`ns/name` -> hash) of each app the engine has
    /// versions of (its claim's `warm`): it retires the others, whose idle
    /// replicas stop (docs/deploy.md, "Versions in a fleet").
    pub current_versions: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetLinkError {
    /// This API node serves no remote engines (no `--engine-key`).
    #[error("this server takes no remote engines (start it with --engine-key)")]
    Disabled,
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// A registered app's schema does not compile.
    #[error("app \"{app}\": {error}")]
    InvalidSchema {
        app: String,
        error: infsh_core::InvalidSchema,
    },
    /// A registration that cannot be taken (bad app id, empty name...).
    #[error("{0}")]
    BadRegistration(String),
}

/// An app of a remote engine, as `GET /engines` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteAppView {
    pub app: String,
    pub hash: String,
    /// Another live engine registered this app first with another hash:
    /// this engine takes none of its tasks.
    pub conflict: bool,
}

/// An app remote engines host, for `GET /apps` beside the local ones.
#[derive(Debug, Clone)]
pub struct HostedRemotely {
    /// Functions and default function from the served hash's
    /// registration; no description, category or images (engines do not
    /// send them). `ready` while a live engine serves it, else `unhealthy`.
    pub summary: crate::AppSummary,
    /// The content hash runs go to (the earliest live registration's);
    /// None while every engine hosting it is offline.
    pub hash: Option<String>,
    /// Every engine hosting it, by registration order of the store.
    pub engines: Vec<RemoteAppHost>,
    pub(crate) info: Option<std::sync::Arc<crate::app_info::AppInfo>>,
}

/// One engine hosting an app ([`HostedRemotely`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteAppHost {
    pub engine: String,
    pub hash: String,
    /// Another hash is served: this engine takes none of the app's tasks.
    pub conflict: bool,
    pub state: infsh_store::fleet::EngineState,
}

/// A remote engine, as `GET /engines` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteEngineView {
    pub name: String,
    pub version: String,
    /// `online`, `draining` or `offline` (no heartbeat for a lease).
    pub state: infsh_store::fleet::EngineState,
    pub last_heartbeat_ms: i64,
    pub slots: serde_json::Value,
    pub apps: Vec<RemoteAppView>,
    /// Ids of the tasks it holds.
    pub running: Vec<String>,
    /// The active sessions it holds, each on one of its replicas.
    pub sessions: Vec<RemoteSessionView>,
}

/// A session a remote engine holds, as `GET /engines` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteSessionView {
    pub id: String,
    pub app: String,
    /// The replica leased to it there (`ns/name#0`); None until the engine
    /// names it (its next claim after the session's first call).
    pub worker: Option<String>,
}
