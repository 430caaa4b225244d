//! Counters and gauges behind `Engine::metrics` (`GET /metrics`). Plain
//! atomics, updated by whoever sees the event: the submit path, the
//! scheduler actors, the task trackers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::api::MetricsSnapshot;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub submitted: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    pub rejected_queue_full: AtomicU64,
    /// Tasks dispatched to a worker and not ended yet.
    pub running: AtomicU64,
    pub workers_started: AtomicU64,
    pub workers_crashed: AtomicU64,
    /// Per app: completed tasks' run durations (count, sum of seconds).
    seconds: Mutex<BTreeMap<String, (u64, f64)>>,
}

pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn dec(counter: &AtomicU64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

impl Metrics {
    pub fn record_duration(&self, app: &str, seconds: f64) {
        let mut map = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(app.to_string()).or_default();
        entry.0 += 1;
        entry.1 += seconds;
    }

    /// Mean duration of the app's completed tasks, if any completed.
    pub fn mean_seconds(&self, app: &str) -> Option<f64> {
        let map = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        map.get(app)
            .filter(|(n, _)| *n > 0)
            .map(|(n, sum)| sum / *n as f64)
    }

    pub fn snapshot(&self, queued: u64) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let task_seconds = self
            .seconds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(app, (n, sum))| (app.clone(), *n, *sum))
            .collect();
        MetricsSnapshot {
            tasks_submitted: get(&self.submitted),
            tasks_completed: get(&self.completed),
            tasks_failed: get(&self.failed),
            tasks_cancelled: get(&self.cancelled),
            tasks_rejected_queue_full: get(&self.rejected_queue_full),
            tasks_queued: queued,
            tasks_running: get(&self.running),
            workers_started: get(&self.workers_started),
            workers_crashed: get(&self.workers_crashed),
            task_seconds,
        }
    }
}
