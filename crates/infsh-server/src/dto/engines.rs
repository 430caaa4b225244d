//! The worker layout as `GET /engines` and `GET /workers` show it: this
//! machine's engine with its slots and their GPUs, and one row per replica.
//! Field for field the engine's views (`EngineView`, `SlotView`, `GpuView`,
//! `WorkerView`); they are copied here so the OpenAPI document can describe
//! them. docs/gpus.md says what each field means to an operator.

use infsh_engine::{EngineView, GpuView, SlotView, WorkerView};
use serde::Serialize;
use utoipa::ToSchema;

/// One engine: a machine's slots, and whether it takes new tasks.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EngineDto {
    /// `engine.yml`'s `name`, else the host name; the `{name}` of
    /// `POST /engines/{name}/drain`.
    pub name: String,
    /// Where the GPU list came from: `declared` (engine.yml's `inventory`),
    /// `nvml` (detected) or `none`.
    pub inventory: String,
    /// Dispatch paused by `POST /engines/{name}/drain`: tasks are accepted
    /// and queued, none starts, running ones finish.
    pub draining: bool,
    /// `workers.cpu.count`: how many CPU replicas may be resident at once;
    /// `null` when CPU apps are not bounded.
    pub cpu_slots: Option<usize>,
    pub slots: Vec<SlotDto>,
    /// Idle replicas stopped to free a slot for another app, since start.
    pub evictions_total: u64,
    /// Tasks whose app has no replica and waits for a slot to free up.
    pub tasks_waiting_for_slot: usize,
    /// Set for a remote engine (`infsh engine run --server`), absent for
    /// this server's own. A remote engine's `slots` here is empty; its own
    /// layout is `remote.slots`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteEngineDto>,
}

/// What an API node knows of a remote engine.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RemoteEngineDto {
    /// The infsh version it runs.
    pub version: String,
    /// `online`, `draining` or `offline` (no heartbeat for a lease).
    pub state: String,
    /// ISO-8601 UTC.
    pub last_heartbeat: String,
    /// Its slot layout, as it registered it (the shape of `slots` above).
    #[schema(value_type = Object)]
    pub slots: serde_json::Value,
    pub apps: Vec<RemoteAppDto>,
    /// Ids of the tasks it holds.
    pub running: Vec<String>,
    /// The active sessions it holds (docs/sessions.md, "In a fleet"), each
    /// leased one of its replicas.
    pub sessions: Vec<RemoteSessionDto>,
}

/// A session a remote engine holds.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RemoteSessionDto {
    /// `sess_…`.
    pub id: String,
    /// `namespace/name`.
    pub app: String,
    /// The replica leased to it there (`ns/name#0`); `null` until the
    /// engine names it.
    pub worker: Option<String>,
}

/// An app a remote engine hosts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RemoteAppDto {
    /// `namespace/name`.
    pub app: String,
    /// Content hash of its folder on that engine.
    pub hash: String,
    /// Another live engine registered this app first with another hash:
    /// this engine takes none of its tasks.
    pub conflict: bool,
}

/// A slot: one GPU, a group of GPUs, or one CPU worker.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SlotDto {
    pub id: usize,
    /// `gpu` or `cpu`.
    pub kind: String,
    /// `gpus [2, 3]`, `cpu 0`: how listings, logs and metrics name it.
    pub name: String,
    pub gpus: Vec<GpuDto>,
    /// Ids of the replicas placed here (`WorkerDto::id`).
    pub replicas: Vec<String>,
    /// Tasks running on this slot's replicas now.
    pub running_tasks: usize,
}

/// One GPU of a slot.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GpuDto {
    pub index: u32,
    pub name: String,
    pub vendor: String,
    /// Memory in GB (10^9 bytes), declared or detected.
    pub vram_total_gb: Option<f64>,
    /// Memory in use in GB; known through NVML only.
    pub vram_used_gb: Option<f64>,
    /// Busy percentage over the last sample; known through NVML only.
    pub utilization_percent: Option<u32>,
}

/// One replica (a worker process of an app).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkerDto {
    /// `acme/flux#0`: the app and the replica's number.
    pub id: String,
    /// `namespace/name`.
    pub app: String,
    /// The slot's name; `null` for a CPU replica when CPU apps are not bounded.
    pub slot: Option<String>,
    pub pid: Option<u32>,
    /// `starting`, `setting_up`, `idle`, `busy` or `stopping`.
    pub state: String,
    /// Ids of the tasks running on it.
    pub current_tasks: Vec<String>,
    /// When it became ready (Unix milliseconds).
    pub warm_since: Option<i64>,
    /// When its last task ended or started (Unix milliseconds).
    pub last_used: Option<i64>,
    /// Nothing new is dispatched to it: its app
    /// (`POST /apps/{namespace}/{name}/drain`) or the whole engine is drained.
    pub draining: bool,
    /// The session (`sess_…`) it is leased to: only that session's calls
    /// run on it (docs/sessions.md). `null` when it serves any run.
    pub session: Option<String>,
}

/// The answer of `POST /apps/{namespace}/{name}/drain` and `.../undrain`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AppDrainDto {
    /// `namespace/name`.
    pub id: String,
    /// Whether the app's tasks are held in its queue now.
    pub draining: bool,
}

impl EngineDto {
    pub fn from_view(v: &EngineView) -> EngineDto {
        EngineDto {
            name: v.name.clone(),
            inventory: v.inventory.clone(),
            draining: v.draining,
            cpu_slots: v.cpu_slots,
            slots: v.slots.iter().map(SlotDto::from_view).collect(),
            evictions_total: v.evictions_total,
            tasks_waiting_for_slot: v.tasks_waiting_for_slot,
            remote: None,
        }
    }

    pub fn from_remote(v: &infsh_engine::RemoteEngineView) -> EngineDto {
        let state = match v.state {
            infsh_store::fleet::EngineState::Online => "online",
            infsh_store::fleet::EngineState::Draining => "draining",
            infsh_store::fleet::EngineState::Offline => "offline",
        };
        EngineDto {
            name: v.name.clone(),
            inventory: "remote".into(),
            draining: v.state == infsh_store::fleet::EngineState::Draining,
            cpu_slots: None,
            slots: Vec::new(),
            evictions_total: 0,
            tasks_waiting_for_slot: 0,
            remote: Some(RemoteEngineDto {
                version: v.version.clone(),
                state: state.into(),
                last_heartbeat: super::time::iso8601(v.last_heartbeat_ms),
                slots: v.slots.clone(),
                apps: v
                    .apps
                    .iter()
                    .map(|a| RemoteAppDto {
                        app: a.app.clone(),
                        hash: a.hash.clone(),
                        conflict: a.conflict,
                    })
                    .collect(),
                running: v.running.clone(),
                sessions: v
                    .sessions
                    .iter()
                    .map(|s| RemoteSessionDto {
                        id: s.id.clone(),
                        app: s.app.clone(),
                        worker: s.worker.clone(),
                    })
                    .collect(),
            }),
        }
    }
}

impl SlotDto {
    pub fn from_view(v: &SlotView) -> SlotDto {
        SlotDto {
            id: v.id,
            kind: v.kind.clone(),
            name: v.name.clone(),
            gpus: v.gpus.iter().map(GpuDto::from_view).collect(),
            replicas: v.replicas.clone(),
            running_tasks: v.running_tasks,
        }
    }
}

impl GpuDto {
    pub fn from_view(v: &GpuView) -> GpuDto {
        GpuDto {
            index: v.index,
            name: v.name.clone(),
            vendor: v.vendor.clone(),
            vram_total_gb: v.vram_total_gb,
            vram_used_gb: v.vram_used_gb,
            utilization_percent: v.utilization_percent,
        }
    }
}

impl WorkerDto {
    pub fn from_view(v: &WorkerView) -> WorkerDto {
        WorkerDto {
            id: v.id.clone(),
            app: v.app.clone(),
            slot: v.slot.clone(),
            pid: v.pid,
            state: v.state.clone(),
            current_tasks: v.current_tasks.clone(),
            warm_since: v.warm_since,
            last_used: v.last_used,
            draining: v.draining,
            session: v.session.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DTOs are the views field for field: the JSON is the same, so a
    /// field the engine adds shows up here as a failing test, not as a
    /// silently missing key.
    #[test]
    fn dtos_serialize_exactly_as_the_engine_views() {
        let engine = EngineView {
            name: "box".into(),
            inventory: "declared".into(),
            draining: true,
            cpu_slots: Some(2),
            slots: vec![SlotView {
                id: 0,
                kind: "gpu".into(),
                name: "gpus [0]".into(),
                gpus: vec![GpuView {
                    index: 0,
                    name: "NVIDIA H100".into(),
                    vendor: "nvidia".into(),
                    vram_total_gb: Some(80.0),
                    vram_used_gb: Some(1.5),
                    utilization_percent: Some(7),
                }],
                replicas: vec!["acme/flux#0".into()],
                running_tasks: 1,
            }],
            evictions_total: 3,
            tasks_waiting_for_slot: 1,
        };
        let worker = WorkerView {
            id: "acme/flux#0".into(),
            app: "acme/flux".into(),
            slot: Some("gpus [0]".into()),
            pid: Some(42),
            state: "busy".into(),
            current_tasks: vec!["t1".into()],
            warm_since: Some(1),
            last_used: Some(2),
            draining: false,
            session: Some("sess_x".into()),
        };
        assert_eq!(
            serde_json::to_value(EngineDto::from_view(&engine)).unwrap(),
            serde_json::to_value(&engine).unwrap()
        );
        assert_eq!(
            serde_json::to_value(WorkerDto::from_view(&worker)).unwrap(),
            serde_json::to_value(&worker).unwrap()
        );
    }
}
