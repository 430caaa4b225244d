//! The retention sweep (`infsh serve --retention`, issue 15): ended tasks
//! older than the retention are deleted with their files, a small batch at
//! a time, on a background task of their own so the request path never
//! waits on it. Deletion itself is [`Engine::delete_task`]'s.

use std::time::Duration;

use crate::{Engine, EngineError};

/// Tasks deleted per store query; the sweep yields between batches.
pub const RETENTION_BATCH: usize = 100;

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    pub tasks: usize,
    pub files: usize,
}

impl Engine {
    /// Deletes every ended task last updated before `before_ms` with its
    /// files, `batch` at a time. A task another caller deleted meanwhile is
    /// skipped, not an error.
    pub async fn sweep_ended_tasks(
        &self,
        before_ms: i64,
        batch: usize,
    ) -> Result<SweepOutcome, EngineError> {
        let mut done = SweepOutcome::default();
        loop {
            let ids = self
                .shared()
                .store
                .ended_tasks_before(before_ms, batch.max(1))
                .await?;
            if ids.is_empty() {
                return Ok(done);
            }
            for id in &ids {
                match self.delete_task(id, true).await {
                    Ok(files) => {
                        done.tasks += 1;
                        done.files += files.deleted.len();
                    }
                    Err(EngineError::UnknownTask(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            // Between batches: let requests have the store and the runtime.
            tokio::task::yield_now().await;
        }
    }

    /// Sweeps tasks that ended more than `retention` ago, every `every`,
    /// until the process ends. A failed sweep is logged and retried at the
    /// next tick.
    pub fn spawn_retention(&self, retention: Duration, every: Duration) {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let cutoff = infsh_store::now_ms()
                    .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
                match engine.sweep_ended_tasks(cutoff, RETENTION_BATCH).await {
                    Ok(SweepOutcome { tasks: 0, .. }) => {}
                    Ok(o) => tracing::info!(tasks = o.tasks, files = o.files, "retention sweep"),
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
                }
            }
        });
    }
}
