//! The scheduler's dispatch half: picking a replica for the head of the
//! queue, starting replicas when tasks wait, handing tasks to runners
//! (`runner.rs`), and taking stock when they end.

use infsh_core::app::AppRuntime;
use infsh_store::TaskStatus;
use serde_json::json;
use tokio::sync::mpsc;

use super::batching::BatchStep;
use super::{dec_usize, Actor, ReplicaOutcome, Running, Stage};
use crate::api::AppState;
use crate::batch_gate::BatchTicket;
use crate::handle::{AppStatus, QueuedTask};
use crate::metrics::{dec, inc};
use crate::placement_broker::slot_key;
use crate::replica::ReplicaState;
use crate::runner::{self, RunArgs};
use crate::sessions::Binding;
use crate::tracker::Tracker;
use crate::worker_seam::{SlotEnv, KILL_GRACE};

impl Actor {
    /// Dispatches what can be, starts replicas for what waits, publishes.
    ///
    /// Tasks outside sessions (and sessions' first calls) go in FIFO order:
    /// the first that finds no replica stops them. The calls of sessions
    /// already leased a replica only wait for theirs, so they are looked
    /// at past that point.
    pub(super) fn schedule(&mut self) {
        self.sync_sessions();
        self.gather_until = None;
        self.held_for_batch = 0;
        if !self.draining() && !self.paused() {
            let mut i = 0;
            let mut fifo_blocked = false;
            // Runs pinned to slots wait for a replica there, not in FIFO
            // order: looked at past a blocked head, like sessions' calls.
            let any_pinned = self.queue.iter().any(|t| t.slots.is_some());
            while i < self.queue.len() {
                if fifo_blocked && !any_pinned && !self.replicas.iter().any(|r| r.session.is_some())
                {
                    break;
                }
                if !fifo_blocked {
                    match self.try_batch(i) {
                        BatchStep::NotBatched | BatchStep::Single => {}
                        BatchStep::Dispatched => continue,
                        BatchStep::Held => {
                            fifo_blocked = true;
                            i += 1;
                            continue;
                        }
                    }
                }
                let task = &self.queue[i];
                let setup = &task.record.setup;
                let (choice, opens) = match task.record.session_id.as_deref() {
                    None if task.slots.is_some() => {
                        let choice = self.pick_on(setup, task.slots.as_deref());
                        if choice.is_none() {
                            // It waits for its slot, holding up no one.
                            i += 1;
                            continue;
                        }
                        (choice, None)
                    }
                    None if fifo_blocked => (None, None),
                    None => (self.pick(setup), None),
                    Some(session) => match self.shared.sessions.binding(session) {
                        Binding::Bound {
                            replica,
                            generation,
                        } => (self.pick_leased(replica, generation, setup), None),
                        Binding::Unbound if !fifo_blocked => {
                            (self.pick_for_new_session(setup), Some(session.to_string()))
                        }
                        // Failed by the next sync_sessions.
                        Binding::Unbound | Binding::Gone(_) => (None, None),
                    },
                };
                let Some((idx, needs_setup)) = choice else {
                    let waits_in_fifo = task
                        .record
                        .session_id
                        .as_deref()
                        .is_none_or(|s| self.shared.sessions.binding(s) == Binding::Unbound);
                    fifo_blocked |= waits_in_fifo;
                    i += 1;
                    continue;
                };
                let task = self.queue.remove(i).expect("index is valid");
                dec_usize(&self.queued);
                if let Some(session) = opens {
                    self.lease_to(idx, session);
                }
                self.dispatch(idx, task, needs_setup);
            }
            self.start_wanted();
            self.stop_retired_idle();
        }
        self.publish();
    }

    /// A replica for a task with this setup config: one already set up so
    /// with a free slot (the least busy), else an idle one (setup re-runs;
    /// not during a backoff).
    pub(super) fn pick(&self, setup: &serde_json::Value) -> Option<(usize, bool)> {
        self.pick_on(setup, None)
    }

    /// [`Actor::pick`] among the replicas on one of `slots` (None: any).
    pub(super) fn pick_on(
        &self,
        setup: &serde_json::Value,
        slots: Option<&[usize]>,
    ) -> Option<(usize, bool)> {
        let may_set_up = !self.in_backoff();
        let concurrency = self.concurrency();
        let ready = self
            .replicas
            .iter()
            .enumerate()
            // A leased replica runs its session's calls alone.
            .filter(|(_, r)| r.session.is_none())
            .filter(|(_, r)| slots.is_none_or(|slots| on_slots(r, slots)))
            .filter_map(|(i, r)| r.up().map(|up| (i, up)))
            .filter(|(_, up)| !up.setting_up);
        let mut idle = None;
        let mut best: Option<(usize, usize)> = None;
        for (i, up) in ready {
            if up.setup.as_ref() == Some(setup) && up.busy < concurrency {
                if best.is_none_or(|(_, b)| b > up.busy) {
                    best = Some((i, up.busy));
                }
            } else if may_set_up && up.busy == 0 && idle.is_none() {
                idle = Some(i);
            }
        }
        best.map(|(i, _)| (i, false)).or(idle.map(|i| (i, true)))
    }

    /// Starts what is wanted, unless backing off: with `preload`, every
    /// absent replica (set up with `{}`); after a discovery refused during
    /// the backoff, one replica; for the queue, see
    /// [`Actor::start_for_queue`].
    fn start_wanted(&mut self) {
        if self.in_backoff() {
            return;
        }
        let any = |a: &Actor| {
            a.replicas
                .iter()
                .any(|r| r.is_starting() || r.up().is_some())
        };
        // A retired version keeps no replica warm: only runs start one.
        if self.shared.config.preload && !self.retired {
            let any_up = any(self);
            for idx in 0..self.replicas.len() {
                if let ReplicaState::Absent { failed } = self.replicas[idx].state {
                    if (failed && any_up) || self.still_stopping(idx) {
                        continue;
                    }
                    if !self.start_replica(idx, Some(json!({})), false, None) {
                        break;
                    }
                }
            }
        }
        if std::mem::take(&mut self.retry_wanted) && !any(self) {
            self.start_replica(0, None, false, None);
        }
        // min_replicas: started at boot (and again after a crash), set up
        // with the default config like a preload.
        let min = if self.retired {
            0
        } else {
            self.entry.bounds.min_replicas.unwrap_or(0)
        };
        for idx in 0..min.min(self.replicas.len()) {
            if matches!(
                self.replicas[idx].state,
                ReplicaState::Absent { failed: false }
            ) && !self.still_stopping(idx)
                && !self.start_replica(idx, Some(json!({})), false, None)
            {
                break;
            }
        }
        self.start_for_queue();
    }

    /// Starts absent replicas while the tasks waiting outnumber the slots
    /// of the replicas already starting. A replica whose start failed is
    /// only retried when no other replica is up or starting.
    fn start_for_queue(&mut self) {
        self.start_for_pinned();
        // A leased session's calls wait for its replica, not for a new one;
        // pinned runs for one on their slots (above).
        let waiting = self
            .queue
            .iter()
            .filter(|t| t.slots.is_none())
            .filter(|t| {
                t.record
                    .session_id
                    .as_deref()
                    .is_none_or(|s| self.shared.sessions.binding(s) == Binding::Unbound)
            })
            .count();
        // Calls held for their batch have a replica; they only wait for
        // company.
        let waiting = waiting.saturating_sub(self.held_for_batch);
        if waiting == 0 {
            return;
        }
        let concurrency = self.concurrency();
        let mut starting = self.replicas.iter().filter(|r| r.is_starting()).count();
        let any_up = self.replicas.iter().any(|r| r.up().is_some());
        for idx in 0..self.replicas.len() {
            if starting * concurrency >= waiting {
                break;
            }
            if let ReplicaState::Absent { failed } = self.replicas[idx].state {
                if (failed && (any_up || starting > 0)) || self.still_stopping(idx) {
                    continue;
                }
                if !self.start_replica(idx, None, true, None) {
                    break;
                }
                starting += 1;
            }
        }
    }

    /// For runs pinned to slots where no replica of the app is (up or
    /// starting): a replica started on one of them, in the first absent
    /// replica's place; with none absent, an idle replica elsewhere is
    /// stopped to free its place (it starts there once gone). Each pinned
    /// set is looked at once per round.
    fn start_for_pinned(&mut self) {
        let mut wanted: Vec<Vec<usize>> = Vec::new();
        for task in &self.queue {
            if task.record.session_id.is_some() {
                continue;
            }
            if let Some(slots) = &task.slots {
                if !wanted.contains(slots) {
                    wanted.push(slots.clone());
                }
            }
        }
        for slots in wanted {
            let served = self
                .replicas
                .iter()
                .any(|r| (r.is_starting() || r.up().is_some()) && on_slots(r, &slots));
            if served {
                continue;
            }
            let absent = (0..self.replicas.len()).find(|&idx| {
                matches!(self.replicas[idx].state, ReplicaState::Absent { .. })
                    && !self.still_stopping(idx)
            });
            if let Some(idx) = absent {
                self.start_replica(idx, None, true, Some(&slots));
                continue;
            }
            let idle = (0..self.replicas.len()).find(|&idx| {
                let r = &self.replicas[idx];
                r.session.is_none()
                    && r.up().is_some_and(|up| up.busy == 0 && !up.setting_up)
                    && !on_slots(r, &slots)
            });
            if let Some(idx) = idle {
                self.stop_idle(
                    idx,
                    "stopping an idle replica: a run pinned to another slot waits",
                );
            }
        }
    }

    /// Replica `idx`'s previous worker was evicted and still unloads: the
    /// number is not reused until it is gone, so that `GET /workers` never
    /// lists two `app#idx`.
    fn still_stopping(&self, idx: usize) -> bool {
        self.stopping.iter().any(|s| s.replica == idx)
    }

    fn dispatch(&mut self, idx: usize, task: QueuedTask, needs_setup: bool) {
        self.dispatch_with(idx, task, needs_setup, None);
    }

    /// Hands `task` to a runner on replica `idx`. A task of a batch comes
    /// with its batch's number and its ticket; the batch took its slot of
    /// the replica already.
    pub(super) fn dispatch_with(
        &mut self,
        idx: usize,
        task: QueuedTask,
        needs_setup: bool,
        batch: Option<(u64, BatchTicket)>,
    ) {
        let generation = self.replicas[idx].generation;
        let slot = self.replicas[idx].lease.as_ref().and_then(|l| l.slot());
        let gpu_ids = SlotEnv::of(slot).gpu_ids;
        // Which slot runs it, for `infsh engine run` to report (a pinned
        // run shows that it ran where it was pinned).
        let slot_key = slot.map(slot_key);
        task.live.send_modify(|view| view.slot = slot_key);
        let ReplicaState::Up(up) = &mut self.replicas[idx].state else {
            unreachable!("dispatch to a replica that is not up");
        };
        let (batch_id, ticket) = batch.unzip();
        if batch_id.is_none() {
            up.busy += 1;
        }
        up.last_used_ms = Some(infsh_store::now_ms());
        if needs_setup {
            up.setting_up = true;
            up.setup = Some(task.record.setup.clone());
        }
        let task_timeout = self.entry.task_timeout.or(self.shared.config.task_timeout);
        let setup_timeout = self
            .entry
            .setup_timeout
            .or(self.shared.config.setup_timeout);
        let (cancel_tx, cancel_rx) = mpsc::channel(4);
        self.running.insert(
            task.record.id.clone(),
            Running {
                cancel: cancel_tx,
                replica: idx,
                batch: batch_id,
                session: task.record.session_id.clone(),
            },
        );
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
            task_timeout,
            setup_timeout,
            early_logs: std::mem::take(&mut up.pending_logs),
            stop_reason: up.stop_reason.clone(),
            gpu_ids,
            cancel: cancel_rx,
            events: self.events_tx.clone(),
            batch: ticket,
            // Python's SDK takes a file object with a `path`; the Node
            // SDK's `File` schema only a string, so JS workers get the
            // URIs as given.
            info: self
                .info
                .clone()
                .filter(|_| self.entry.dir.runtime == AppRuntime::Python),
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
        // A batch frees its slot with its last task.
        let mut frees_slot = true;
        if let Some(running) = self.running.remove(&task_id) {
            dec(&self.shared.metrics.running);
            if let Some(batch) = running.batch {
                frees_slot = self.batch_task_ended(batch);
            }
            if let Some(session) = &running.session {
                // Idle from now: its timeout starts again.
                self.shared.sessions.touch(session);
            }
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
        if let Some(up) = self.up_mut(idx, generation) {
            if frees_slot {
                up.busy = up.busy.saturating_sub(1);
            }
            up.last_used_ms = Some(infsh_store::now_ms());
        }
        // A healthy end was reported already (and a later one must not
        // clear a failure of another replica that came since).
        if outcome != ReplicaOutcome::Healthy {
            self.worker_outcome(idx, generation, outcome);
        }
    }

    /// What a task's end says about its worker (reported before the task
    /// ends, and again with [`Actor::task_ended`]: only the first report
    /// about a worker counts, and several tasks may have run on one that
    /// died).
    pub(super) fn worker_outcome(&mut self, idx: usize, generation: u64, outcome: ReplicaOutcome) {
        if self.up_mut(idx, generation).is_none() {
            return;
        }
        if outcome == ReplicaOutcome::Healthy {
            self.succeeded(Stage::Crash);
            return;
        }
        // The worker is gone or unusable: replace it (after the backoff,
        // if the app is at fault). Its session's state was in it.
        self.end_leased_session(idx, &outcome);
        let lease = self.replicas[idx].lease.take();
        if let ReplicaState::Up(up) = std::mem::replace(
            &mut self.replicas[idx].state,
            ReplicaState::Absent { failed: false },
        ) {
            self.tasks.spawn(async move {
                up.worker.kill(KILL_GRACE).await;
                // The slot is free once the process is gone.
                drop(lease);
            });
        }
        match outcome {
            ReplicaOutcome::Crashed { message, traceback } => {
                inc(&self.shared.metrics.workers_crashed);
                self.fail(Stage::Crash, message, traceback);
                self.note_waiting();
            }
            ReplicaOutcome::SetupFailed { message, traceback } => {
                self.fail(Stage::Setup, message, traceback);
                self.note_waiting();
            }
            ReplicaOutcome::Healthy | ReplicaOutcome::Replaced | ReplicaOutcome::RunnerGone => {}
        }
    }

    pub(super) fn publish(&mut self) {
        self.report_to_broker();
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
        let failure = self.failure.as_ref();
        let status = AppStatus {
            state,
            replicas: up.len(),
            busy,
            last_error: failure.map(|f| f.message.clone()),
            traceback: failure.and_then(|f| f.traceback.clone()),
            failures: failure.map_or(0, |f| f.count),
            failed_at_ms: failure.map(|f| f.at_ms),
            retry_at: failure.map(|f| f.retry_at),
            info: self.info.clone(),
        };
        self.status.send_replace(status);
    }
}

/// Whether replica `r` holds (or is starting on) one of `slots`.
fn on_slots(r: &crate::replica::Replica, slots: &[usize]) -> bool {
    r.lease
        .as_ref()
        .and_then(|l| l.slot())
        .is_some_and(|slot| slots.contains(&slot.id.0))
}
