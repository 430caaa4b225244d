//! Batching, opt in (`batch_policy.rs`; docs/writing-apps.md, "Batching"):
//! the calls of a batched function are gathered in the queue and run
//! together, as one `call_batch` on one replica.
//!
//! When such a call is at the head of the FIFO and a replica set up with
//! its config has a free slot, the calls queued for the same function with
//! the same setup config (not sessions' calls) go together, up to
//! `max_batch_size`. While there are fewer, they are held, and the tasks
//! behind them too (FIFO), until `max_batch_wait_ms` after the oldest was
//! queued; then they go with what there is. Each task keeps its own runner
//! (status, logs, output, cancel, timeout); the runners meet at a
//! [`BatchGate`] whose last arrival sends the batch. The batch holds one
//! slot of its replica (`concurrency`) until its last task ended.
//!
//! A replica that must run setup first (another config) takes the oldest
//! call alone, as a batch of one. Sessions' calls go alone too.

use tokio::time::Instant;

use super::{dec_usize, Actor};
use crate::batch_gate::BatchGate;
use crate::handle::QueuedTask;
use crate::replica::ReplicaState;

/// What [`Actor::try_batch`] did with the task at the head.
pub(super) enum BatchStep {
    /// Not a batched function's call (or a session's): dispatch as usual.
    NotBatched,
    /// Only a replica that must run setup first is free: the task goes
    /// alone, as usual.
    Single,
    /// Its batch was dispatched (the queue is shorter).
    Dispatched,
    /// It waits, for company or for a replica.
    Held,
}

impl Actor {
    /// Gathers and dispatches the batch of the queued task `i`, if its
    /// function is batched.
    pub(super) fn try_batch(&mut self, i: usize) -> BatchStep {
        let head = &self.queue[i];
        // A pinned run goes alone, to a replica on its slots.
        if head.record.session_id.is_some() || head.slots.is_some() {
            return BatchStep::NotBatched;
        }
        let Some(policy) = self.entry.batching.get(&head.record.function).copied() else {
            return BatchStep::NotBatched;
        };
        let (function, setup, since) = (
            head.record.function.clone(),
            head.record.setup.clone(),
            head.since,
        );
        let members: Vec<usize> = (i..self.queue.len())
            .filter(|&j| {
                let t = &self.queue[j].record;
                self.queue[j].slots.is_none()
                    && t.session_id.is_none()
                    && t.function == function
                    && t.setup == setup
            })
            .take(policy.max_batch_size)
            .collect();
        let Some((idx, needs_setup)) = self.pick(&setup) else {
            return BatchStep::Held;
        };
        if needs_setup {
            return BatchStep::Single;
        }
        let due = since + policy.max_wait;
        if members.len() < policy.max_batch_size && Instant::now() < due {
            self.held_for_batch += members.len();
            self.gather_until = Some(self.gather_until.map_or(due, |t| t.min(due)));
            return BatchStep::Held;
        }
        let mut tasks = Vec::with_capacity(members.len());
        for &j in members.iter().rev() {
            tasks.push(self.queue.remove(j).expect("index is valid"));
            dec_usize(&self.queued);
        }
        tasks.reverse();
        self.dispatch_batch(idx, function, tasks);
        BatchStep::Dispatched
    }

    /// Dispatches the tasks of one batch to replica `idx` (set up already).
    fn dispatch_batch(&mut self, idx: usize, function: String, mut tasks: Vec<QueuedTask>) {
        if tasks.len() == 1 {
            let task = tasks.pop().expect("one task");
            return self.dispatch_with(idx, task, false, None);
        }
        let ReplicaState::Up(up) = &mut self.replicas[idx].state else {
            unreachable!("a batch for a replica that is not up");
        };
        up.busy += 1;
        let tickets = BatchGate::tickets(up.worker.clone(), function, tasks.len());
        let batch = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(batch, tasks.len());
        for (task, ticket) in tasks.into_iter().zip(tickets) {
            self.dispatch_with(idx, task, false, Some((batch, ticket)));
        }
    }

    /// A task of `batch` ended: true when it was the last one (the batch's
    /// slot is free again).
    pub(super) fn batch_task_ended(&mut self, batch: u64) -> bool {
        let Some(left) = self.batches.get_mut(&batch) else {
            return true;
        };
        *left = left.saturating_sub(1);
        if *left > 0 {
            return false;
        }
        self.batches.remove(&batch);
        true
    }
}
