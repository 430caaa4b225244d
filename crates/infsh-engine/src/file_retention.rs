//! The file retention sweep (`infsh serve --file-retention`, `infsh gc
//! --file-retention`; issue 15): stored files created more than the file
//! retention ago that no kept task names (in its input or output, as
//! [`crate::task_file_ids`] finds them) are deleted, bytes and record.
//! Files a task names go with that task (`--retention`), not here.
//!
//! One sweep reads every task once (a page at a time) for the ids they
//! name, then every file record; so it costs reads in proportion to the
//! store, which is why it runs at most once a minute and yields between
//! pages. A file registered long ago and named by a task submitted during
//! the sweep may still go: keep the file retention well above the time
//! between an upload and the run that uses it.

use std::collections::HashSet;
use std::time::Duration;

use infsh_store::{FileRecord, StoreError, TaskFilter, TaskStore};

use crate::deletion::file_ids_in;
use crate::{Engine, EngineError};

/// Records read per store query.
const PAGE: usize = 100;

/// Files created before `before_ms` that no task names, oldest first.
pub async fn unreferenced_files_before(
    store: &dyn TaskStore,
    before_ms: i64,
) -> Result<Vec<FileRecord>, StoreError> {
    let mut named: HashSet<String> = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_tasks(&TaskFilter::default(), PAGE, cursor.as_deref())
            .await?;
        for task in &page.items {
            let mut ids = Vec::new();
            file_ids_in(&task.input, &mut ids);
            if let Some(output) = &task.output {
                file_ids_in(&output.to_value(), &mut ids);
            }
            named.extend(ids);
        }
        tokio::task::yield_now().await;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut old = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_files(PAGE, cursor.as_deref(), None).await?;
        old.extend(
            page.items
                .into_iter()
                .filter(|f| f.created_at_ms < before_ms && !named.contains(&f.id)),
        );
        tokio::task::yield_now().await;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    old.reverse();
    Ok(old)
}

impl Engine {
    /// Deletes the files created before `before_ms` that no task names;
    /// how many went. A file deleted meanwhile by someone else is skipped.
    pub async fn sweep_unreferenced_files(&self, before_ms: i64) -> Result<usize, EngineError> {
        let shared = self.shared();
        let old = unreferenced_files_before(shared.store.as_ref(), before_ms).await?;
        let mut deleted = 0;
        for file in &old {
            if shared.files.remove(&file.id).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Sweeps files no task names once they are older than `retention`,
    /// every `every`, until the process ends. A failed sweep is logged and
    /// retried at the next tick.
    pub fn spawn_file_retention(&self, retention: Duration, every: Duration) {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let cutoff = infsh_store::now_ms()
                    .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
                match engine.sweep_unreferenced_files(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(files = n, "file retention sweep"),
                    Err(e) => tracing::warn!(error = %e, "file retention sweep failed"),
                }
            }
        });
    }
}
