//! The scheduler's answer to `GET /workers`: one row per replica of its
//! app, and one per evicted replica while its unload runs (`stopping`).

use super::Actor;
use crate::replica::ReplicaState;
use crate::views::{replica_id, WorkerView};

impl Actor {
    pub(super) fn worker_views(&self) -> Vec<WorkerView> {
        // Dispatch paused for this app, by its drain or the engine's.
        let draining = self.paused();
        let mut rows: Vec<WorkerView> = self
            .replicas
            .iter()
            .enumerate()
            .filter_map(|(idx, replica)| {
                let (pid, state, warm_since, last_used) = match &replica.state {
                    ReplicaState::Absent { .. } => return None,
                    ReplicaState::Starting { .. } => (None, "starting", None, None),
                    ReplicaState::Up(up) => {
                        let state = if up.setting_up {
                            "setting_up"
                        } else if up.busy > 0 {
                            "busy"
                        } else {
                            "idle"
                        };
                        (
                            Some(up.worker.pid()),
                            state,
                            Some(up.warm_since_ms),
                            up.last_used_ms,
                        )
                    }
                };
                let mut current_tasks: Vec<String> = self
                    .running
                    .iter()
                    .filter(|(_, r)| r.replica == idx)
                    .map(|(id, _)| id.clone())
                    .collect();
                current_tasks.sort();
                Some(WorkerView {
                    id: replica_id(&self.entry.id, idx),
                    app: self.entry.id.clone(),
                    slot: replica.slot_name(),
                    pid,
                    state: state.into(),
                    current_tasks,
                    warm_since,
                    last_used,
                    draining,
                    session: replica.session.clone(),
                })
            })
            .collect();
        rows.extend(self.stopping.iter().map(|s| WorkerView {
            id: replica_id(&self.entry.id, s.replica),
            app: self.entry.id.clone(),
            slot: s.slot.clone(),
            pid: Some(s.pid),
            state: "stopping".into(),
            current_tasks: Vec::new(),
            warm_since: Some(s.warm_since_ms),
            last_used: s.last_used_ms,
            draining,
            session: None,
        }));
        rows
    }
}
