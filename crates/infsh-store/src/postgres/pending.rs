//! Deferred inserts not yet written, by task id: the PostgreSQL store's
//! counterpart of SQLite's queued insert. A task's insert waits here (at
//! most [`crate::DEFERRED_LINGER`]) while its status, output and logs are
//! amended in place, so a short task's whole life (insert, DISPATCHED,
//! RUNNING, its logs, its end) is one transaction instead of one commit
//! each. While an entry is being written it is `Flushing`: a write to that
//! task waits for it, so no UPDATE runs before its INSERT.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use infsh_core::Payload;
use tokio::sync::watch;

use crate::{LogEntry, TaskRecord, TaskStatus};

/// A task whose insert is still to be written, with the logs it gathered.
pub(crate) struct PendingTask {
    pub record: TaskRecord,
    pub logs: Vec<LogEntry>,
}

enum Slot {
    Waiting(Box<PendingTask>),
    /// Being written; the sender says `true` once it is done (or failed).
    Flushing(watch::Receiver<bool>),
}

#[derive(Default, Clone)]
pub(crate) struct Pending {
    map: Arc<Mutex<HashMap<String, Slot>>>,
}

/// What [`Pending::take`] found.
pub(crate) enum Take {
    /// The caller writes it, then drops the guard.
    Taken(Box<PendingTask>, FlushGuard),
    /// Someone else is writing it: wait on this.
    Flushing(watch::Receiver<bool>),
    /// Nothing pending for this id.
    None,
}

/// Removes a `Flushing` entry and wakes its waiters when dropped (after the
/// write, whatever its outcome).
pub(crate) struct FlushGuard {
    map: Arc<Mutex<HashMap<String, Slot>>>,
    id: String,
    done: watch::Sender<bool>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        lock(&self.map).remove(&self.id);
        let _ = self.done.send(true);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pending {
    pub fn add(&self, record: TaskRecord) {
        lock(&self.map).insert(
            record.id.clone(),
            Slot::Waiting(Box::new(PendingTask {
                record,
                logs: Vec::new(),
            })),
        );
    }

    /// Applies `f` to the waiting entry of `id`; false if there is none.
    fn amend(&self, id: &str, f: impl FnOnce(&mut PendingTask)) -> bool {
        match lock(&self.map).get_mut(id) {
            Some(Slot::Waiting(task)) => {
                f(task);
                true
            }
            _ => false,
        }
    }

    pub fn amend_status(&self, id: &str, status: TaskStatus, at_ms: i64) -> bool {
        self.amend(id, |t| {
            t.record.status = status;
            t.record.updated_at_ms = at_ms;
        })
    }

    pub fn amend_output(&self, id: &str, output: &Payload, at_ms: i64) -> bool {
        self.amend(id, |t| {
            t.record.output = Some(output.clone());
            t.record.updated_at_ms = at_ms;
        })
    }

    pub fn add_logs(&self, id: &str, logs: &[LogEntry]) -> bool {
        self.amend(id, |t| t.logs.extend_from_slice(logs))
    }

    pub fn take(&self, id: &str) -> Take {
        let mut map = lock(&self.map);
        match map.get(id) {
            None => Take::None,
            Some(Slot::Flushing(rx)) => Take::Flushing(rx.clone()),
            Some(Slot::Waiting(_)) => {
                let (done, rx) = watch::channel(false);
                let Some(Slot::Waiting(task)) = map.insert(id.to_string(), Slot::Flushing(rx))
                else {
                    unreachable!("checked above under the same lock")
                };
                Take::Taken(
                    task,
                    FlushGuard {
                        map: self.map.clone(),
                        id: id.to_string(),
                        done,
                    },
                )
            }
        }
    }

    pub fn ids(&self) -> Vec<String> {
        lock(&self.map).keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            app: "tests/a".into(),
            function: "run".into(),
            input: json!({}),
            setup: json!({}),
            status: TaskStatus::Queued,
            output: None,
            error: None,
            webhook: None,
            session_id: None,
            metadata: json!({}),
            timeout_secs: None,
            created_at_ms: 1,
            updated_at_ms: 1,
            team: None,
            run_at_ms: None,
        }
    }

    #[test]
    fn a_taken_entry_is_flushing_until_its_guard_drops() {
        let pending = Pending::default();
        pending.add(record("t"));
        assert!(pending.amend_status("t", TaskStatus::Running, 5));
        let log = LogEntry {
            log_type: crate::LogType::Run,
            content: "x".into(),
            at_ms: 5,
        };
        assert!(pending.add_logs("t", std::slice::from_ref(&log)));
        let Take::Taken(task, guard) = pending.take("t") else {
            panic!("the first take writes it");
        };
        assert_eq!(
            (task.record.status, task.record.updated_at_ms),
            (TaskStatus::Running, 5)
        );
        assert_eq!(task.logs, std::slice::from_ref(&log));
        let Take::Flushing(rx) = pending.take("t") else {
            panic!("a second take waits for the first");
        };
        assert!(!*rx.borrow());
        assert!(
            !pending.amend_status("t", TaskStatus::Completed, 6),
            "too late to amend"
        );
        assert!(!pending.add_logs("t", &[log]));
        drop(guard);
        assert!(*rx.borrow(), "waiters are told");
        assert!(matches!(pending.take("t"), Take::None));
        assert!(pending.ids().is_empty());
    }
}
