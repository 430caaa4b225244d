//! Tasks with a `run_at` still ahead: held by the actor beside its queue
//! (cancellable there like a queued task) and moved into the queue, in the
//! order they become due, by an [`Event::Due`] a timer sends at that time.
//! A time already past queues the task at once. The task is stored with its
//! `run_at`, so recovery after a restart holds it again the same way.

use std::time::Duration;

use infsh_store::now_ms;

use super::{Actor, Event};
use crate::handle::QueuedTask;

impl Actor {
    /// Queues `task`, or holds it until its `run_at`.
    pub(super) fn enqueue_task(&mut self, mut task: QueuedTask) {
        let wait_ms = task
            .record
            .run_at_ms
            .map_or(0, |at| at.saturating_sub(now_ms()));
        if wait_ms <= 0 {
            task.since = tokio::time::Instant::now();
            self.queue.push_back(task);
            self.schedule();
            return;
        }
        let id = task.record.id.clone();
        self.scheduled.push(task);
        let events = self.events_tx.clone();
        self.tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(wait_ms as u64)).await;
            let _ = events.send(Event::Due(id));
        });
    }

    /// `id`'s time has come: into the queue (unless it was cancelled since).
    pub(super) fn due(&mut self, id: &str) {
        if let Some(mut task) = self.take_scheduled(id) {
            task.since = tokio::time::Instant::now();
            self.queue.push_back(task);
            self.schedule();
        }
    }

    /// Takes the held task `id` out (for its cancel, or when due).
    pub(super) fn take_scheduled(&mut self, id: &str) -> Option<QueuedTask> {
        let pos = self.scheduled.iter().position(|t| t.record.id == id)?;
        Some(self.scheduled.remove(pos))
    }
}
