//! The scheduler's dispatch half: picking a replica for the head of the
//! queue, starting replicas when tasks wait, handing tasks to runners
//! (`runner.rs`), and taking stock when they end.

use infsh_store::TaskStatus;
use tokio::sync::mpsc;

use super::{dec_usize, Actor, ReplicaOutcome, Running};
use crate::api::AppState;
use crate::handle::{AppStatus, QueuedTask};
use crate::metrics::{dec, inc};
use crate::replica::{ReplicaState, KILL_GRACE};
use crate::runner::{self, RunArgs};
use crate::tracker::Tracker;

impl Actor {
    /// Dispatches what can be, starts replicas for what waits, publishes.
    pub(super) fn schedule(&mut self) {
        if !self.draining {
            while let Some(head) = self.queue.front() {
                let Some((idx, needs_setup)) = self.pick(&head.record.setup) else {
                    break;
                };
                let task = self.queue.pop_front().expect("front exists");
                dec_usize(&self.queued);
                self.dispatch(idx, task, needs_setup);
            }
            self.start_for_queue();
        }
        self.publish();
    }

    /// A replica for a task with this setup config: one already set up so
    /// with a free slot (the least busy), else an idle one (setup re-runs).
    fn pick(&self, setup: &serde_json::Value) -> Option<(usize, bool)> {
        let concurrency = self.concurrency();
        let ready = self
            .replicas
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.up().map(|up| (i, up)))
            .filter(|(_, up)| !up.setting_up);
        let mut idle = None;
        let mut best: Option<(usize, usize)> = None;
        for (i, up) in ready {
            if up.setup.as_ref() == Some(setup) && up.busy < concurrency {
                if best.is_none_or(|(_, b)| b > up.busy) {
                    best = Some((i, up.busy));
                }
            } else if up.busy == 0 && idle.is_none() {
                idle = Some(i);
            }
        }
        best.map(|(i, _)| (i, false)).or(idle.map(|i| (i, true)))
    }

    /// Starts absent replicas while the tasks waiting outnumber the slots
    /// of the replicas already starting. A replica whose start failed is
    /// only retried when no other replica is up or starting.
    fn start_for_queue(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let concurrency = self.concurrency();
        let mut starting = self.replicas.iter().filter(|r| r.is_starting()).count();
        let any_up = self.replicas.iter().any(|r| r.up().is_some());
        for idx in 0..self.replicas.len() {
            if starting * concurrency >= self.queue.len() {
                break;
            }
            if let ReplicaState::Absent { failed } = self.replicas[idx].state {
                if failed && (any_up || starting > 0) {
                    continue;
                }
                self.start_replica(idx, None);
                starting += 1;
            }
        }
    }

    fn dispatch(&mut self, idx: usize, task: QueuedTask, needs_setup: bool) {
        let generation = self.replicas[idx].generation;
        let ReplicaState::Up(up) = &mut self.replicas[idx].state else {
            unreachable!("dispatch to a replica that is not up");
        };
        up.busy += 1;
        if needs_setup {
            up.setting_up = true;
            up.setup = Some(task.record.setup.clone());
        }
        let (cancel_tx, cancel_rx) = mpsc::channel(4);
        self.running
            .insert(task.record.id.clone(), Running { cancel: cancel_tx });
        inc(&self.shared.metrics.running);
        let args = RunArgs {
            shared: self.shared.clone(),
            app_id: self.entry.id.clone(),
            worker: up.worker.clone(),
            worker_id: up.worker_id.clone(),
            replica: idx,
            generation,
            task,
            needs_setup,
            early_logs: std::mem::take(&mut up.pending_logs),
            cancel: cancel_rx,
            events: self.events_tx.clone(),
        };
        self.tasks.spawn(runner::run(args));
    }

    pub(super) fn task_ended(
        &mut self,
        idx: usize,
        generation: u64,
        task_id: String,
        outcome: ReplicaOutcome,
    ) {
        if self.running.remove(&task_id).is_some() {
            dec(&self.shared.metrics.running);
        }
        if outcome == ReplicaOutcome::RunnerGone {
            if let Some(live) = self.shared.live.get(&task_id) {
                let shared = self.shared.clone();
                self.tasks.spawn(async move {
                    let error =
                        "internal error: the task's runner stopped unexpectedly".to_string();
                    Tracker::new(shared, live)
                        .finish(TaskStatus::Failed, None, Some(error))
                        .await;
                });
            }
        }
        let Some(up) = self.up_mut(idx, generation) else {
            return;
        };
        up.busy = up.busy.saturating_sub(1);
        if outcome == ReplicaOutcome::Healthy {
            return;
        }
        // The worker is gone or unusable: replace it (lazily).
        if let ReplicaState::Up(up) = std::mem::replace(
            &mut self.replicas[idx].state,
            ReplicaState::Absent { failed: false },
        ) {
            self.tasks
                .spawn(async move { up.worker.kill(KILL_GRACE).await });
        }
        if let ReplicaOutcome::SetupFailed(message) = outcome {
            self.failure = Some(super::Failure {
                message,
                load: false,
            });
        }
    }

    pub(super) fn publish(&mut self) {
        let up: Vec<_> = self.replicas.iter().filter_map(|r| r.up()).collect();
        let busy = up.iter().map(|u| u.busy).sum();
        let state = if self.failure.is_some() {
            AppState::Unhealthy
        } else if !up.is_empty() {
            AppState::Ready
        } else if self.replicas.iter().any(|r| r.is_starting()) {
            AppState::Starting
        } else {
            AppState::Idle
        };
        let status = AppStatus {
            state,
            replicas: up.len(),
            busy,
            last_error: self.failure.as_ref().map(|f| f.message.clone()),
            info: self.info.clone(),
        };
        self.status.send_replace(status);
    }
}
