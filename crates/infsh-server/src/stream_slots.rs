//! Caps on open task streams (`GET /tasks/{id}/stream`), which are
//! long-lived connections: at most `streams_per_task` per task and
//! `streams_per_client` per client (client_id.rs). A stream holds a
//! [`StreamSlot`] for as long as its response body lives; beyond a cap the
//! request gets a 429 `too_many_streams` problem naming the cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::client_id::ClientId;
use crate::limit_metrics::LimitMetrics;
use crate::problem::Problem;

#[derive(Default)]
struct Counts {
    tasks: HashMap<String, usize>,
    clients: HashMap<ClientId, usize>,
}

pub struct StreamSlots {
    per_task: usize,
    per_client: usize,
    counts: Mutex<Counts>,
    metrics: Arc<LimitMetrics>,
}

impl StreamSlots {
    pub fn new(per_task: usize, per_client: usize, metrics: Arc<LimitMetrics>) -> StreamSlots {
        StreamSlots {
            per_task,
            per_client,
            counts: Mutex::default(),
            metrics,
        }
    }

    /// A slot for one more stream of `task` by `client`, or the 429.
    pub fn acquire(self: &Arc<Self>, task: &str, client: ClientId) -> Result<StreamSlot, Problem> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let on_task = counts.tasks.get(task).copied().unwrap_or(0);
        let by_client = counts.clients.get(&client).copied().unwrap_or(0);
        let refusal = if on_task >= self.per_task {
            Some(Problem::too_many_streams(
                "task",
                self.per_task,
                format!(
                    "task \"{task}\" already has {on_task} open streams, the most per task (--max-streams-per-task)"
                ),
            ))
        } else if by_client >= self.per_client {
            Some(Problem::too_many_streams(
                "client",
                self.per_client,
                format!(
                    "this {} already has {by_client} open streams, the most per client (--max-streams-per-key)",
                    client.scope()
                ),
            ))
        } else {
            None
        };
        if let Some(p) = refusal {
            self.metrics.refused_by_stream_cap();
            return Err(p);
        }
        *counts.tasks.entry(task.to_string()).or_default() += 1;
        *counts.clients.entry(client.clone()).or_default() += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            task: task.to_string(),
            client,
        })
    }
}

/// One open stream; gives its slot back when dropped.
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    task: String,
    client: ClientId,
}

impl std::fmt::Debug for StreamSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSlot")
            .field("task", &self.task)
            .field("client", &self.client)
            .finish()
    }
}

fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        release(&mut counts.tasks, &self.task);
        release(&mut counts.clients, &self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_task_and_per_client_and_gives_back() {
        let slots = Arc::new(StreamSlots::new(2, 3, Arc::new(LimitMetrics::default())));
        let a = ClientId::Key([1; 32]);
        let b = ClientId::Key([2; 32]);
        let s1 = slots.acquire("t1", a.clone()).unwrap();
        let _s2 = slots.acquire("t1", b.clone()).unwrap();
        let p = slots.acquire("t1", b.clone()).unwrap_err();
        assert_eq!((p.status.as_u16(), p.code), (429, "too_many_streams"));
        assert_eq!(p.extra["scope"], "task");
        assert_eq!(p.extra["limit"], 2);
        drop(s1);
        let _s3 = slots.acquire("t1", a.clone()).unwrap();
        let _s4 = slots.acquire("t2", a.clone()).unwrap();
        let _s5 = slots.acquire("t3", a.clone()).unwrap();
        let p = slots.acquire("t4", a.clone()).unwrap_err();
        assert_eq!(p.extra["scope"], "client");
        assert_eq!(
            p.detail,
            "this API key already has 3 open streams, the most per client (--max-streams-per-key)"
        );
        slots.acquire("t4", b).unwrap();
    }
}
