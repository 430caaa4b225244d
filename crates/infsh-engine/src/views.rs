//! What `GET /engines` and `GET /workers` show: this machine's slots, their
//! GPUs and replicas ([`EngineView`]), and one row per replica
//! ([`WorkerView`]). Built by the engine from the placement broker
//! (`placement_broker.rs`) and the schedulers' replicas; docs/gpus.md says
//! what each field means.

use serde::Serialize;

/// This machine as placement sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineView {
    pub name: String,
    /// `declared` | `nvml` | `none`.
    pub inventory: String,
    /// Dispatch paused by `Engine::drain_engine`.
    pub draining: bool,
    /// None: CPU apps unbounded (no `workers.cpu`).
    pub cpu_slots: Option<usize>,
    pub slots: Vec<SlotView>,
    pub evictions_total: u64,
    pub tasks_waiting_for_slot: usize,
}

/// One slot: a set of GPUs, or one CPU worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotView {
    pub id: usize,
    /// `gpu` | `cpu`.
    pub kind: String,
    /// `gpus [2, 3]` | `cpu 0`.
    pub name: String,
    pub gpus: Vec<GpuView>,
    /// Replica ids ([`WorkerView::id`]) placed here.
    pub replicas: Vec<String>,
    pub running_tasks: usize,
}

/// One GPU of a slot, with live readings where NVML gives them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuView {
    pub index: u32,
    pub name: String,
    pub vendor: String,
    pub vram_total_gb: Option<f64>,
    /// NVML only.
    pub vram_used_gb: Option<f64>,
    /// NVML only.
    pub utilization_percent: Option<u32>,
}

/// One replica of one app.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerView {
    /// `acme/flux#0`: the app id and the replica's number.
    pub id: String,
    /// `namespace/name`.
    pub app: String,
    /// [`SlotView::name`]; None for an unbounded CPU replica.
    pub slot: Option<String>,
    pub pid: Option<u32>,
    /// `starting` | `setting_up` | `idle` | `busy` | `stopping`.
    pub state: String,
    /// Ids of the tasks running on it.
    pub current_tasks: Vec<String>,
    /// Unix ms when it became ready.
    pub warm_since: Option<i64>,
    /// Unix ms of its last task's end (or start).
    pub last_used: Option<i64>,
    /// Dispatch to it is paused: its app or the whole engine is drained.
    pub draining: bool,
    /// The session it is leased to (docs/sessions.md), if any.
    pub session: Option<String>,
}

/// `acme/flux#0`.
pub(crate) fn replica_id(app: &str, replica: usize) -> String {
    format!("{app}#{replica}")
}
