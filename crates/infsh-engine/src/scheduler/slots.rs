//! The scheduler's side of placement: asking the machine-wide broker
//! (`placement_broker.rs`) for a slot before a replica starts, waiting
//! (told once per task) when none is free, stopping an idle replica the
//! broker picked as a victim for another app, and keeping the broker's
//! view of this app's replicas current.

use std::sync::Arc;

use infsh_placement::{AppNeeds, NoMatchingWorker, SlotId};
use infsh_store::{LogType, TaskStatus};

use infsh_protocol::Ready;

use super::{dec_usize, Actor, Event, Stage, Stopping};
use crate::api::EngineError;
use crate::app_info::AppInfo;
use crate::batch_policy::batching_mismatch;
use crate::placement_broker::{Evictor, Grant, Lease};
use crate::replica::ReplicaState;
use crate::tracker::Tracker;
use crate::worker_seam::{SlotEnv, StartFailure, KILL_GRACE, UNLOAD_GRACE};

impl Actor {
    /// A slot for replica `idx` (whose next start is `generation`), or
    /// None: it waits (the broker wakes the actor when a slot may be free),
    /// or the app can never be placed here. `for_queue`: the start is for
    /// queued tasks, the only start that may evict another app's replica
    /// (a preload, a `min_replicas` start or a discovery evicting would
    /// have two apps on one slot evict each other with no task to run).
    pub(super) fn lease_for(
        &mut self,
        idx: usize,
        generation: u64,
        for_queue: bool,
        only: Option<&[usize]>,
    ) -> Option<Lease> {
        let needs = match &self.entry.needs {
            Ok(needs) => needs.clone(),
            // Its runs are refused at submit; a discovery still starts it
            // where a CPU app would run.
            Err(_) => AppNeeds::cpu(),
        };
        let has_replica = self
            .replicas
            .iter()
            .any(|r| r.lease.is_some() || r.is_starting() || r.up().is_some());
        let bounds = &self.entry.bounds;
        let keep_warm = bounds.keep_warm.unwrap_or(false) || idx < bounds.min_replicas.unwrap_or(0);
        let events = self.events_tx.clone();
        let evict: Evictor = Arc::new(move || {
            let _ = events.send(Event::Evict {
                replica: idx,
                generation,
            });
        });
        let only: Option<Vec<SlotId>> = only.map(|ids| ids.iter().map(|id| SlotId(*id)).collect());
        // Runs pinned to slots the app has no replica on may evict: they
        // can run nowhere else.
        let may_evict = for_queue && (!has_replica || only.is_some());
        let grant = self.shared.broker.request(
            &self.entry.id,
            idx,
            &needs,
            keep_warm,
            may_evict,
            evict,
            only.as_deref(),
        );
        match grant {
            Grant::Start(lease) => {
                self.slot_reserved = false;
                self.waiting_for_slot = false;
                self.told_slot_wait.clear();
                Some(lease)
            }
            Grant::Evicting => {
                self.slot_reserved = true;
                self.waiting_for_slot = !has_replica;
                None
            }
            Grant::Wait(reason) => {
                // Scaling out quietly waits; only an app with no replica
                // has tasks that wait for a slot.
                if !has_replica {
                    self.wait_for_slot(reason);
                }
                None
            }
            Grant::Never(why) => {
                self.never_placeable(why);
                None
            }
        }
    }

    /// Tells each queued task, once, what it waits for.
    fn wait_for_slot(&mut self, reason: String) {
        if !self.waiting_for_slot {
            tracing::info!(app = %self.entry.id, queued = self.queue.len(), "{reason}");
        }
        self.waiting_for_slot = true;
        for task in &self.queue {
            if !self.told_slot_wait.insert(task.record.id.clone()) {
                continue;
            }
            let mut tracker = Tracker::new(self.shared.clone(), task.live.clone());
            let reason = reason.clone();
            self.tasks.spawn(async move {
                tracker.log(LogType::Serve, reason);
                tracker.flush().await;
            });
        }
    }

    /// No slot here can ever host the app (submit refuses its runs; this
    /// ends what came in before, such as tasks recovered at start).
    fn never_placeable(&mut self, why: NoMatchingWorker) {
        let error = why.to_string();
        for waiter in self.discover_waiters.drain(..) {
            let _ = waiter.send(Err(EngineError::NoMatchingWorker(why.clone())));
        }
        for task in self.queue.drain(..) {
            dec_usize(&self.queued);
            let shared = self.shared.clone();
            let error = error.clone();
            self.tasks.spawn(async move {
                Tracker::new(shared, task.live)
                    .finish(TaskStatus::Failed, None, Some(error))
                    .await;
            });
        }
    }

    /// The broker picked replica `idx` to free its slot for another app:
    /// stop it with its `unload` if it is still idle, else refuse (the
    /// other app asks again).
    pub(super) fn evict(&mut self, idx: usize, generation: u64) {
        // A replica leased to a session is never idle: its state is the
        // session's.
        let leased = self.replicas.get(idx).is_some_and(|r| r.session.is_some());
        let idle = !leased
            && self
                .up_mut(idx, generation)
                .is_some_and(|up| up.busy == 0 && !up.setting_up);
        let Some(replica) = self.replicas.get_mut(idx) else {
            return;
        };
        if !idle {
            if replica.generation == generation {
                if let Some(lease) = &replica.lease {
                    lease.eviction_refused();
                }
            }
            return;
        }
        self.shared.broker.count_eviction();
        self.stop_idle(idx, "evicted for another app: unloading to free the slot");
    }

    /// Stops idle replica `idx` with its `unload` (shown `stopping` in
    /// `GET /workers` until its process is gone, then its slot is free).
    pub(super) fn stop_idle(&mut self, idx: usize, why: &str) {
        let replica = &mut self.replicas[idx];
        let lease = replica.lease.take();
        let ReplicaState::Up(up) =
            std::mem::replace(&mut replica.state, ReplicaState::Absent { failed: false })
        else {
            unreachable!("an idle replica is up");
        };
        let pid = up.worker.pid();
        self.stopping.push(Stopping {
            replica: idx,
            pid,
            slot: replica_slot_name(lease.as_ref()),
            warm_since_ms: up.warm_since_ms,
            last_used_ms: up.last_used_ms,
        });
        tracing::info!(
            app = %self.entry.id,
            replica = idx,
            pid,
            slot = ?replica_slot_name(lease.as_ref()),
            "{why}"
        );
        let events = self.events_tx.clone();
        self.tasks.spawn(async move {
            if let Err(e) = up.worker.shutdown(UNLOAD_GRACE).await {
                tracing::debug!(error = %infsh_core::ErrorChain(&e), "stopped worker's unload");
            }
            // The slot is free once the process is gone.
            drop(lease);
            let _ = events.send(Event::Evicted { replica: idx, pid });
        });
    }

    /// Starts a worker without a slot, only to learn the app's functions
    /// (a discovery while every slot the app could use is held); it sees
    /// no GPU and is stopped as soon as it answered.
    pub(super) fn probe(&mut self) {
        if self.probing {
            return;
        }
        self.probing = true;
        let launcher = self.launcher.clone();
        let events = self.events_tx.clone();
        let entry = self.entry.clone();
        self.tasks.spawn(async move {
            match launcher.launch(&SlotEnv::probe()).await {
                Ok(launched) => {
                    if let Some(message) =
                        batching_mismatch(&entry.batching, entry.dir.runtime, &launched.ready)
                    {
                        launched.worker.kill(KILL_GRACE).await;
                        let failure = StartFailure::load(message, None);
                        let _ = events.send(Event::Probed(Err(failure)));
                        return;
                    }
                    let _ = events.send(Event::Probed(Ok(Box::new(launched.ready))));
                    launched.worker.kill(KILL_GRACE).await;
                }
                Err(failure) => {
                    let _ = events.send(Event::Probed(Err(failure)));
                }
            }
        });
    }

    pub(super) fn probed(&mut self, result: Result<Box<Ready>, StartFailure>) {
        self.probing = false;
        match result {
            Ok(ready) => {
                let info = Arc::new(AppInfo::new(
                    *ready,
                    self.entry.dir.manifest.default_function.as_deref(),
                ));
                self.info = Some(info.clone());
                self.succeeded(Stage::Load);
                self.publish();
                for waiter in self.discover_waiters.drain(..) {
                    let _ = waiter.send(Ok(info.clone()));
                }
            }
            Err(failure) => {
                self.fail(Stage::Load, failure.message, failure.traceback);
                let (message, traceback) = match &self.failure {
                    Some(f) => (f.message.clone(), f.traceback.clone()),
                    None => unreachable!("a failure was just recorded"),
                };
                for waiter in self.discover_waiters.drain(..) {
                    let _ = waiter.send(Err(EngineError::AppUnavailable {
                        app: self.entry.id.clone(),
                        message: message.clone(),
                        traceback: traceback.clone(),
                    }));
                }
            }
        }
    }

    /// Gives the broker this app's replicas' task counts and how many
    /// queued tasks wait for a slot; gives up a slot reserved for the app
    /// once no task waits for it (its queue emptied by cancels), so that
    /// the apps waiting behind the reservation need not wait it out.
    pub(super) fn report_to_broker(&mut self) {
        if self.slot_reserved && self.queue.is_empty() {
            self.slot_reserved = false;
            self.shared.broker.give_up_reservation(&self.entry.id);
        }
        for replica in &mut self.replicas {
            // Leased to a session: busy for the broker, never a victim.
            let busy = replica
                .up()
                .map_or(0, |up| up.busy)
                .max(usize::from(replica.session.is_some()));
            if let Some(lease) = &mut replica.lease {
                lease.set_busy(busy);
            }
        }
        let waiting = if self.waiting_for_slot {
            self.queue.len()
        } else {
            0
        };
        if waiting != self.reported_waiting {
            self.reported_waiting = waiting;
            self.shared.broker.set_waiting(&self.entry.id, waiting);
        }
    }
}

fn replica_slot_name(lease: Option<&Lease>) -> Option<String> {
    lease.and_then(Lease::slot).map(ToString::to_string)
}
