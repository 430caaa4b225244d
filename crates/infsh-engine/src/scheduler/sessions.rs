//! The scheduler's side of sessions (`crate::sessions`): leasing a replica
//! to a session's first call, sending its later calls there alone, one at
//! a time, expiring idle sessions, releasing the replicas of sessions that
//! ended, failing the queued calls of sessions that are gone, and ending
//! a session whose leased worker died.

use std::collections::HashSet;

use infsh_store::TaskStatus;
use serde_json::Value;

use super::{dec_usize, Actor, ReplicaOutcome};
use crate::sessions::Binding;
use crate::tracker::Tracker;
use crate::views::replica_id;

impl Actor {
    /// Brings the replicas and the queue in line with the session table:
    /// expires idle sessions (one with a call queued or running is not
    /// idle), releases the replicas of sessions no longer active, and fails
    /// the queued calls of those (or of sessions unknown here, such as the
    /// calls of a session recovered after a restart).
    pub(super) fn sync_sessions(&mut self) {
        let any_session_task = self.queue.iter().any(|t| t.record.session_id.is_some())
            || self.running.values().any(|r| r.session.is_some());
        let any_leased = self.replicas.iter().any(|r| r.session.is_some());
        if !any_session_task && !any_leased {
            self.shared.sessions.expire_due(&self.entry.id, |_| false);
            return;
        }
        let busy: HashSet<String> = self
            .queue
            .iter()
            .filter_map(|t| t.record.session_id.clone())
            .chain(self.running.values().filter_map(|r| r.session.clone()))
            .collect();
        self.shared
            .sessions
            .expire_due(&self.entry.id, |id| busy.contains(id));
        for replica in &mut self.replicas {
            if let Some(session) = &replica.session {
                if !self.shared.sessions.is_active(session) {
                    tracing::debug!(app = %self.entry.id, %session, "session over: its replica is released");
                    replica.session = None;
                }
            }
        }
        let mut i = 0;
        while i < self.queue.len() {
            let gone = match self.queue[i].record.session_id.as_deref() {
                Some(session) => match self.shared.sessions.binding(session) {
                    Binding::Gone(why) => Some(why),
                    _ => None,
                },
                None => None,
            };
            let Some(why) = gone else {
                i += 1;
                continue;
            };
            let task = self.queue.remove(i).expect("index is valid");
            dec_usize(&self.queued);
            let shared = self.shared.clone();
            self.tasks.spawn(async move {
                Tracker::new(shared, task.live)
                    .finish(TaskStatus::Failed, None, Some(why))
                    .await;
            });
        }
    }

    /// Replica `idx` (generation `generation`), leased to a session, for
    /// its next call: only when it is up and runs nothing (a session's
    /// calls run one at a time, in order).
    pub(super) fn pick_leased(
        &self,
        idx: usize,
        generation: u64,
        setup: &Value,
    ) -> Option<(usize, bool)> {
        let replica = self.replicas.get(idx)?;
        if replica.generation != generation {
            return None;
        }
        let up = replica.up()?;
        (up.busy == 0 && !up.setting_up).then(|| (idx, up.setup.as_ref() != Some(setup)))
    }

    /// A replica for a session's first call: up, running nothing and not
    /// leased; one set up with this config first, else one to set up again
    /// (not during a backoff).
    pub(super) fn pick_for_new_session(&self, setup: &Value) -> Option<(usize, bool)> {
        let free = self.replicas.iter().enumerate().filter_map(|(i, r)| {
            let up = r.up()?;
            (r.session.is_none() && up.busy == 0 && !up.setting_up).then_some((i, up))
        });
        let mut idle = None;
        for (i, up) in free {
            if up.setup.as_ref() == Some(setup) {
                return Some((i, false));
            }
            if idle.is_none() && !self.in_backoff() {
                idle = Some((i, true));
            }
        }
        idle
    }

    /// Leases replica `idx` to `session`, whose first call goes there now.
    pub(super) fn lease_to(&mut self, idx: usize, session: String) {
        let generation = self.replicas[idx].generation;
        self.shared
            .sessions
            .bind(&session, idx, generation, replica_id(&self.entry.id, idx));
        tracing::info!(app = %self.entry.id, replica = idx, %session, "replica leased to a session");
        self.replicas[idx].session = Some(session);
    }

    /// Replica `idx` is gone (`outcome`): the session leased to it, whose
    /// state was in its memory, ends, saying why.
    pub(super) fn end_leased_session(&mut self, idx: usize, outcome: &ReplicaOutcome) {
        let Some(session) = self.replicas[idx].session.take() else {
            return;
        };
        let stopped = self.replicas[idx]
            .up()
            .and_then(|up| up.stop_reason.lock().ok().and_then(|r| r.clone()));
        let reason = match outcome {
            ReplicaOutcome::Crashed { message, .. } => format!("its worker died: {message}"),
            ReplicaOutcome::SetupFailed { message, .. } => {
                format!("its worker's setup failed: {message}")
            }
            ReplicaOutcome::Replaced | ReplicaOutcome::RunnerGone | ReplicaOutcome::Healthy => {
                match stopped {
                    Some(why) => format!("its worker was stopped: {why}"),
                    None => "its worker was stopped".to_string(),
                }
            }
        };
        tracing::warn!(app = %self.entry.id, replica = idx, %session, "{reason}: the session ends");
        let _ = self.shared.sessions.end(&session, &reason);
    }
}
