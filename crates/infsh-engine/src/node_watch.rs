//! An API node on a store several nodes share (PostgreSQL) that hosts
//! workers itself: it says it is alive a few times per lease, and takes
//! over the open tasks a lost node (no heartbeat within a lease) left of
//! the apps it hosts too (docs/deploy.md, "API node lost"): waiting ones
//! are queued on its workers; running ones end their attempt `lost` and
//! are queued here again while they had fewer than `--max-attempts` runs,
//! else FAILED `node lost: <id>`. The store moves each task to this node
//! in one transaction (`FOR UPDATE SKIP LOCKED`), so two live nodes never
//! take the same one, and the lost node, restarting, finds none of them
//! its own.

use std::time::Duration;

use infsh_store::nodes::TakenOver;
use infsh_store::{now_ms, TaskStatus};

use crate::engine::Engine;
use crate::metrics::inc;

impl Engine {
    /// Starts the heartbeat and takeover loop (nothing on a store of one
    /// process). `lease`: how long a node may be silent before its tasks
    /// are taken over. Stops with the engine.
    pub fn spawn_node_watch(&self, lease: Duration, max_attempts: u32) {
        if self.shared().store.node_id().is_none() {
            return;
        }
        let engine = self.clone();
        // Four beats per lease: a node misses three before it counts as lost.
        let every = (lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !engine.shared().lifecycle.is_running() {
                    return;
                }
                engine.watch_once(lease_ms, max_attempts).await;
            }
        });
    }

    async fn watch_once(&self, lease_ms: i64, max_attempts: u32) {
        let store = &self.shared().store;
        // The beat first: a node that could not beat must not take over
        // (it may be the one cut off).
        if let Err(e) = store.node_heartbeat(now_ms()).await {
            tracing::warn!(error = %e, "cannot record this node's heartbeat");
            return;
        }
        let apps = self.inner.apps.ids();
        let taken = match store
            .take_over_lost_nodes(&apps, now_ms(), lease_ms, max_attempts)
            .await
        {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take over the tasks of lost API nodes");
                return;
            }
        };
        for taken in taken {
            self.took_over(taken).await;
        }
    }

    async fn took_over(&self, taken: TakenOver) {
        let TakenOver {
            task,
            from_node,
            lost_attempt,
        } = taken;
        tracing::warn!(
            task = %task.id,
            node = %from_node,
            attempt = ?lost_attempt,
            status = ?task.status,
            "took over a task of a lost API node"
        );
        let shared = self.shared();
        if task.status == TaskStatus::Failed {
            inc(&shared.metrics.failed);
            shared.webhooks.deliver(&task);
            return;
        }
        let Ok(app) = self.inner.apps.by_id(&task.app) else {
            // Hosted when the store was asked: an app removed meanwhile.
            tracing::warn!(task = %task.id, app = %task.app, "a task taken over has no app here");
            return;
        };
        let logs = shared.store.get_logs(&task.id).await.unwrap_or_default();
        app.enqueue_recovered(&shared.live, task, logs);
    }
}
