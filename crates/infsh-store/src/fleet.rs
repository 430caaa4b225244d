//! [`FleetStore`]: what an API node needs from its database to serve remote
//! engines (`infsh engine --server URL`): the registry of engines, the
//! queue of tasks for them, claims with leases, heartbeats that extend
//! them, the sweep that requeues (or fails) the tasks of a lost engine,
//! the attempts made at each task, and the refusal of a report from an
//! engine that no longer holds the task's lease.
//!
//! A separate trait from [`crate::TaskStore`] so a store can be a task
//! store without being a fleet one; [`crate::SqliteStore`] (`sqlite_fleet`)
//! and [`crate::PostgresStore`] (`postgres/fleet`) are both. Every method
//! commits before it returns.
//!
//! Rules every implementation keeps (`tests/fleet_contract.rs` pins them on
//! both stores):
//! - a task is claimed by one engine at a time: the claim sets `leased_by`,
//!   `lease_until_ms` and `attempt + 1` in the transaction that picks it;
//! - the first terminal state wins: a report for a task that has ended, or
//!   whose lease is held by another engine or by none, is
//!   [`FleetError::NotLeased`] and changes nothing;
//! - a heartbeat (and the claim, which starts with one) extends only the
//!   leases the engine lists as held; any other lease of that engine runs
//!   out (a claim answer lost on the wire must not hide a task forever);
//! - an expired lease ends the attempt as `lost`; the task is queued again
//!   while `attempt < max_attempts`, else FAILED `engine lost: <name>`
//!   (CANCELLED if a cancel was asked for);
//! - an engine takes no task of an app it hosts with a content hash other
//!   than the app's first registration among live engines ([`app_hashes`]);
//! - a task of a deployed version (`ns/name@HASH`) goes to an engine that
//!   fetches versions ([`ClaimRequest::versions`]), whatever it registered.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

pub use crate::fleet_sessions::{
    engine_lost_reason, engine_restarted_reason, EngineSession, FailedCall, FleetSession,
    SessionChange, SessionRefusal, SessionState,
};
use crate::{LogEntry, StoreError, TaskRecord, TaskStatus};

/// An app an engine hosts, as it registered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineApp {
    /// `namespace/name`.
    pub app: String,
    /// Content hash of the app's folder (hex).
    pub hash: String,
    /// The app's functions with their schemas (as `GET /apps/{id}` shows them).
    #[serde(default)]
    pub functions: Value,
}

/// What an engine sends when it connects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineRegistration {
    pub name: String,
    pub version: String,
    /// The slot layout (infsh-placement's), as JSON.
    pub slots: Value,
    pub apps: Vec<EngineApp>,
}

/// An engine as the API node knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineRecord {
    pub name: String,
    pub version: String,
    pub slots: Value,
    pub apps: Vec<EngineApp>,
    pub draining: bool,
    pub registered_at_ms: i64,
    pub last_heartbeat_ms: i64,
    /// Ids of the unfinished tasks it holds leases on.
    pub running: Vec<String>,
}

/// Whether an engine takes work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineState {
    Online,
    Draining,
    /// No heartbeat for longer than a lease.
    Offline,
}

impl EngineRecord {
    /// Offline once no heartbeat came for `offline_after_ms`.
    pub fn state(&self, now_ms: i64, offline_after_ms: i64) -> EngineState {
        if now_ms - self.last_heartbeat_ms > offline_after_ms {
            EngineState::Offline
        } else if self.draining {
            EngineState::Draining
        } else {
            EngineState::Online
        }
    }
}

/// The hash each app is served with: that of its earliest registration
/// among engines that are not offline (ties by name). Engines hosting the
/// app with another hash are in conflict and take none of its tasks.
pub fn app_hashes(
    engines: &[EngineRecord],
    now_ms: i64,
    offline_after_ms: i64,
) -> BTreeMap<String, String> {
    let mut live: Vec<&EngineRecord> = engines
        .iter()
        .filter(|e| e.state(now_ms, offline_after_ms) != EngineState::Offline)
        .collect();
    live.sort_by(|a, b| {
        (a.registered_at_ms, a.name.as_str()).cmp(&(b.registered_at_ms, b.name.as_str()))
    });
    let mut hashes = BTreeMap::new();
    for engine in live {
        for app in &engine.apps {
            hashes
                .entry(app.app.clone())
                .or_insert_with(|| app.hash.clone());
        }
    }
    hashes
}

/// How long a queued task is left to the engine where its app is warm.
/// An engine claims no task of an app it is not warm for while another
/// online, non-draining engine recorded (at its last claim, or a task's end
/// there) that app warm and a free slot, unless the task has been queued
/// (or due) for longer than this: a warm engine that is stuck or slow to
/// claim delays a task by this much at most, never starves it.
pub const WARM_GRACE_MS: i64 = 1_000;

/// A claim: which engine, what it can run, how much.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    pub engine: String,
    /// Its slot names (a pinned run is only claimed by an engine with one
    /// of its slots).
    pub slots: Vec<String>,
    /// Apps (and versions) with a replica (or a cached package) there:
    /// their tasks are claimed first, and recorded so that other engines
    /// leave them their tasks ([`WARM_GRACE_MS`]).
    pub warm: Vec<String>,
    /// At most this many tasks (recorded as its free slots, less what the
    /// claim took).
    pub max: usize,
    /// It fetches deployed versions from the API node: it also takes tasks
    /// of any version (`ns/name@HASH`), those in `warm` (cached there)
    /// first.
    pub versions: bool,
}

/// Whether a task's app names a deployed version (`ns/name@HASH`): any
/// engine that fetches versions may take it.
pub fn is_version_task(app: &str) -> bool {
    app.contains('@')
}

/// A task handed to an engine.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    pub task: TaskRecord,
    /// 1 on the first run.
    pub attempt: u32,
    pub lease_until_ms: i64,
    /// The slots the run is pinned to, if any.
    pub pinned_workers: Option<Vec<String>>,
}

/// A heartbeat's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatOutcome {
    /// The leases it holds now run until then.
    pub lease_until_ms: i64,
    /// Tasks it holds that a client cancelled: stop them, report CANCELLED.
    pub cancel: Vec<String>,
    /// Tasks it said it runs that it no longer holds (the lease expired
    /// and the task went elsewhere, or it ended): stop them, report nothing.
    pub lost: Vec<String>,
}

/// An engine's report on a task it holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// A new status; a terminal one ends the task and its lease.
    pub status: Option<TaskStatus>,
    /// An output snapshot (streaming), or the final output.
    pub output: Option<Value>,
    pub error: Option<String>,
    pub logs: Vec<LogEntry>,
    pub at_ms: i64,
    /// The engine's worker that runs it (`gpu-box-1-gpu-1`), recorded on
    /// the running attempt.
    pub worker: Option<String>,
}

/// A lease the sweep ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub task_id: String,
    pub engine: String,
    pub attempt: u32,
    /// The status it was left in: QUEUED (to run again), FAILED or CANCELLED.
    pub status: TaskStatus,
}

/// One run of a task by an engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub engine: String,
    pub claimed_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// `completed`, `failed`, `cancelled`, `lost`; None while it runs.
    pub outcome: Option<String>,
    /// Which of the engine's workers ran it (`gpu-box-1-gpu-1`), once the
    /// engine said so.
    pub worker: Option<String>,
}

/// What a cancel of a remote task did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was still queued: now CANCELLED.
    Cancelled,
    /// An engine holds it: it is told, and reports the end.
    Requested { engine: String },
    /// It had ended already.
    Ended(TaskStatus),
}

/// The error message of a task whose engine was lost for good.
pub fn engine_lost_message(engine: &str) -> String {
    format!("engine lost: {engine}")
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The reporting engine does not hold the task's lease (any more).
    #[error("task \"{task}\" is not leased by engine \"{engine}\" ({})", holder_text(.holder, *.status))]
    NotLeased {
        task: String,
        engine: String,
        /// Who holds it now, if anyone.
        holder: Option<String>,
        status: TaskStatus,
    },
    #[error("no such engine \"{0}\": register first")]
    UnknownEngine(String),
    #[error("no such task \"{0}\"")]
    UnknownTask(String),
    /// A session refused a call or keepalive (`fleet_sessions.rs`).
    #[error(transparent)]
    Session(#[from] SessionRefusal),
}

fn holder_text(holder: &Option<String>, status: TaskStatus) -> String {
    match holder {
        _ if status.is_terminal() => format!("it ended {}", status.as_str()),
        Some(h) => format!("engine \"{h}\" holds it"),
        None => format!("it is {} and not leased", status.as_str()),
    }
}

#[async_trait]
pub trait FleetStore: Send + Sync + 'static {
    /// Records (or replaces) an engine: its version, slots and apps. Its
    /// heartbeat is now; its draining flag is kept.
    async fn register_engine(
        &self,
        registration: &EngineRegistration,
        at_ms: i64,
    ) -> Result<EngineRecord, FleetError>;

    /// Every engine, by name.
    async fn list_engines(&self) -> Result<Vec<EngineRecord>, FleetError>;

    async fn set_engine_draining(
        &self,
        name: &str,
        draining: bool,
    ) -> Result<EngineRecord, FleetError>;

    /// Stores a new QUEUED task for remote engines (durable when it returns).
    async fn enqueue_remote(
        &self,
        task: &TaskRecord,
        pinned_workers: Option<&[String]>,
    ) -> Result<(), FleetError>;

    /// Leases up to `max` queued remote tasks of apps the engine hosts
    /// (with the served hash), warm apps first, then oldest first; each is
    /// DISPATCHED with `attempt + 1` and a lease until `now + lease_ms`.
    /// Nothing for an unknown or draining engine.
    ///
    /// PostgreSQL: one statement picks and leases,
    /// `UPDATE tasks SET leased_by = $1, lease_until_ms = $2, attempt = attempt + 1, status = 3
    ///  WHERE id IN (SELECT id FROM tasks WHERE remote = 1 AND status = 2 AND leased_by IS NULL
    ///  AND app = ANY($apps) AND (pinned_workers IS NULL OR pinned_workers::jsonb ?| $slots)
    ///  ORDER BY (app = ANY($warm)) DESC, seq LIMIT $max FOR UPDATE SKIP LOCKED) RETURNING ...`,
    /// so API nodes claiming together never block on or double-lease a row.
    async fn claim(
        &self,
        request: &ClaimRequest,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedTask>, FleetError>;

    /// Marks the engine alive and extends the leases of the tasks it lists
    /// in `holding` (what it runs) to `now + lease_ms`. A lease of this
    /// engine that it does not list is left to expire, so a task whose
    /// claim answer never reached it runs again. The answer names the
    /// listed tasks it must drop, and the listed ones a client cancelled.
    async fn heartbeat(
        &self,
        engine: &str,
        holding: &[String],
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<HeartbeatOutcome, FleetError>;

    /// Applies an engine's report (logs, output, status; a terminal status
    /// ends the task, its lease and its attempt), or refuses it with
    /// [`FleetError::NotLeased`] changing nothing.
    async fn report(&self, engine: &str, task_id: &str, report: &Report) -> Result<(), FleetError>;

    /// Cancels a remote task: at once if queued, else asks its engine.
    async fn request_cancel(&self, task_id: &str, at_ms: i64) -> Result<CancelOutcome, FleetError>;

    /// Ends every lease that ran out before `now_ms` (see the module docs).
    async fn expire_leases(
        &self,
        now_ms: i64,
        max_attempts: u32,
    ) -> Result<Vec<Expired>, FleetError>;

    /// The task's attempts, first first. Empty for a task never claimed.
    async fn attempts(&self, task_id: &str) -> Result<Vec<AttemptRecord>, FleetError>;

    /// Whether the task is queued for remote engines.
    async fn is_remote(&self, task_id: &str) -> Result<bool, FleetError>;

    /// Remote tasks of `app` queued and not claimed yet (the queue limit
    /// of remote runs; on PostgreSQL, every API node's).
    async fn queued_remote(&self, app: &str) -> Result<u64, FleetError>;

    // Sessions (`fleet_sessions.rs` has the rules). The claim above also
    // takes a session's calls: only by the engine holding it (the first
    // claim binds it), one at a time, oldest first.

    /// Stores a new session (before its first call is queued).
    async fn open_session(&self, session: &FleetSession) -> Result<(), FleetError>;

    async fn get_session(&self, id: &str) -> Result<Option<FleetSession>, FleetError>;

    /// The active sessions, oldest first.
    async fn active_sessions(&self) -> Result<Vec<FleetSession>, FleetError>;

    /// Applies a call, keepalive or end to session `id` under its lock, or
    /// refuses it ([`SessionRefusal`]: unknown, over, another app).
    async fn change_session(
        &self,
        id: &str,
        change: &SessionChange,
        now_ms: i64,
    ) -> Result<FleetSession, FleetError>;

    /// Ends every active session `engine` holds with `reason` (it
    /// restarted); the ids ended.
    async fn end_engine_sessions(
        &self,
        engine: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, FleetError>;

    /// Takes an engine's word on the sessions it holds (their replicas,
    /// those that ended there); answers the ids it must let go of (over,
    /// unknown, or held by another engine).
    async fn sync_engine_sessions(
        &self,
        engine: &str,
        held: &[EngineSession],
        now_ms: i64,
    ) -> Result<Vec<String>, FleetError>;

    /// Expires idle sessions, ends those of engines silent for longer
    /// than `offline_after_ms`, and fails the queued calls of sessions
    /// that are over (returned, to publish).
    async fn sweep_sessions(
        &self,
        now_ms: i64,
        offline_after_ms: i64,
    ) -> Result<Vec<FailedCall>, FleetError>;
}

/// Wakes whoever waits for queued remote tasks (a long-polling claim). In
/// one API node a watch channel ([`LocalWakeup`]); across API nodes a
/// PostgreSQL `LISTEN/NOTIFY` listener feeds the same channel.
///
/// Across nodes it also carries which remote tasks changed (an engine's
/// report applied by one node, a claim, a sweep, a cancel), so a node that
/// streams such a task re-reads it from the store: [`Wakeup::task_changed`]
/// announces, [`Wakeup::task_changes`] hears. Within one node there is
/// nothing to carry (the node that applies a change publishes it itself),
/// so both default to nothing.
pub trait Wakeup: Send + Sync + 'static {
    /// Something was queued (or requeued).
    fn notify(&self);
    /// Changes each time [`Wakeup::notify`] is called.
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// Tells the other nodes that remote task `id` changed in the store.
    fn task_changed(&self, id: &str) {
        let _ = id;
    }
    /// What other nodes (and this one) announced; None on a single node.
    fn task_changes(&self) -> Option<broadcast::Receiver<TaskChange>> {
        None
    }
}

/// What [`Wakeup::task_changes`] hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskChange {
    /// This task changed in the store.
    Task(String),
    /// Announcements may have been missed (the listener reconnected, or
    /// this receiver lagged): re-read every task being followed.
    Resync,
}

/// [`Wakeup`] within one process.
#[derive(Debug)]
pub struct LocalWakeup {
    tx: watch::Sender<u64>,
}

impl Default for LocalWakeup {
    fn default() -> Self {
        LocalWakeup {
            tx: watch::channel(0).0,
        }
    }
}

impl Wakeup for LocalWakeup {
    fn notify(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn engine(name: &str, registered: i64, heartbeat: i64, apps: &[(&str, &str)]) -> EngineRecord {
        EngineRecord {
            name: name.into(),
            version: "0".into(),
            slots: json!([]),
            apps: apps
                .iter()
                .map(|(a, h)| EngineApp {
                    app: (*a).into(),
                    hash: (*h).into(),
                    functions: json!({}),
                })
                .collect(),
            draining: false,
            registered_at_ms: registered,
            last_heartbeat_ms: heartbeat,
            running: vec![],
        }
    }

    #[test]
    fn the_earliest_live_registration_sets_an_apps_hash() {
        let engines = [
            engine("b", 20, 1000, &[("ns/a", "h2")]),
            engine("a", 10, 1000, &[("ns/a", "h1"), ("ns/b", "x")]),
            // Registered first but offline: it does not count.
            engine("old", 1, 0, &[("ns/a", "h0")]),
        ];
        let hashes = app_hashes(&engines, 1000, 100);
        assert_eq!(hashes["ns/a"], "h1");
        assert_eq!(hashes["ns/b"], "x");
        assert_eq!(engines[2].state(1000, 100), EngineState::Offline);
        let mut draining = engines[0].clone();
        draining.draining = true;
        assert_eq!(draining.state(1000, 100), EngineState::Draining);
        assert_eq!(engines[0].state(1000, 100), EngineState::Online);
    }

    #[test]
    fn not_leased_says_why() {
        let e = FleetError::NotLeased {
            task: "t".into(),
            engine: "e1".into(),
            holder: Some("e2".into()),
            status: TaskStatus::Running,
        };
        assert_eq!(
            e.to_string(),
            "task \"t\" is not leased by engine \"e1\" (engine \"e2\" holds it)"
        );
        let e = FleetError::NotLeased {
            task: "t".into(),
            engine: "e1".into(),
            holder: None,
            status: TaskStatus::Completed,
        };
        assert_eq!(
            e.to_string(),
            "task \"t\" is not leased by engine \"e1\" (it ended completed)"
        );
    }

    #[tokio::test]
    async fn a_local_wakeup_wakes_a_subscriber() {
        let wake = LocalWakeup::default();
        let mut rx = wake.subscribe();
        rx.borrow_and_update();
        wake.notify();
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
            .await
            .expect("woken")
            .unwrap();
    }
}
