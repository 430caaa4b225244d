//! [`PostgresStore`]: the [`TaskStore`] of API nodes that share one
//! PostgreSQL database (`infsh serve --store postgres://USER@HOST/DB`).
//!
//! Files by role: `connect` (the pool, and the error naming the URL when it
//! cannot connect), `migrate` (the shared migrations under an advisory
//! lock), `rows` (rows into records), `tasks`, `logs`, `files` (the
//! statements of each table).
//!
//! Every durable write is one autocommitted statement or one short
//! transaction, durable when its future resolves (PostgreSQL's
//! `synchronous_commit = on`, its default). A deferred insert waits in
//! `pending` for at most [`crate::DEFERRED_LINGER`], taking the task's
//! status changes, output and logs meanwhile, and is written with its end
//! (one transaction for a short task), at the linger's end, on
//! [`TaskStore::sync`], or before any durable write to that task. Other
//! deferred writes to a task already written are durable when they return.
//! Reads see every write whose future resolved, on any node; a pending
//! insert is seen by none (like SQLite's, until committed).

mod connect;
mod files;
mod lifecycle;
mod logs;
mod migrate;
mod pending;
mod rows;
mod tasks;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use serde_json::Value;

use self::pending::{Pending, PendingTask, Take};
use crate::store::{TaskFilter, TaskStore};
use crate::store_url::redact;
use crate::{FileRecord, LogEntry, Page, StoreError, TaskRecord, TaskStatus, DEFERRED_LINGER};

pub use self::migrate::MIGRATION_LOCK;

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The URL with its password redacted, for messages.
    url: String,
    pending: Pending,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://USER[:PW]@HOST[:PORT]/DB`),
    /// applies pending migrations under the advisory lock, and returns the
    /// store. Fails with [`StoreError::BadUrl`] for a URL that does not
    /// parse and [`StoreError::Connect`] (naming the redacted URL) when
    /// nothing answers, the login is refused or the database is missing.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let pool = connect::pool(url)?;
        let mut client = connect::first_connection(&pool, url).await?;
        migrate::migrate(&mut client).await?;
        Ok(PostgresStore {
            pool,
            url: redact(url),
            pending: Pending::default(),
        })
    }

    /// The URL it was opened with, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        connect::connection(&self.pool).await
    }

    /// A pending task's insert and its logs, in one transaction.
    async fn write_pending(&self, task: PendingTask) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        if task.logs.is_empty() {
            // One statement: no BEGIN/COMMIT round trips.
            return tasks::insert(&client, &task.record).await;
        }
        let tx = client.transaction().await?;
        tasks::insert(&tx, &task.record).await?;
        logs::insert_first(&tx, &task.record.id, &task.logs).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes the pending insert of `id`, if any, or waits for the write
    /// of it in progress: after this, writes to the task find its row.
    async fn flush_pending(&self, id: &str) -> Result<(), StoreError> {
        match self.pending.take(id) {
            Take::Taken(task, _guard) => self.write_pending(*task).await,
            Take::Flushing(mut rx) => {
                let _ = rx.wait_for(|done| *done).await;
                Ok(())
            }
            Take::None => Ok(()),
        }
    }
}

#[async_trait]
impl TaskStore for PostgresStore {
    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError> {
        tasks::insert(&self.client().await?, task).await
    }

    async fn insert_task_deferred(&self, task: &TaskRecord) -> Result<(), StoreError> {
        self.pending.add(task.clone());
        let store = self.clone();
        let id = task.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DEFERRED_LINGER).await;
            if let Err(e) = store.flush_pending(&id).await {
                tracing::error!(task = %id, error = %infsh_core::ErrorChain(&e), "a deferred store write failed");
            }
        });
        Ok(())
    }

    fn amend_pending_insert(&self, id: &str, status: TaskStatus, at_ms: i64) -> bool {
        self.pending.amend_status(id, status, at_ms)
    }

    async fn sync(&self) -> Result<(), StoreError> {
        for id in self.pending.ids() {
            self.flush_pending(&id).await?;
        }
        Ok(())
    }

    async fn update_status(
        &self,
        id: &str,
        status: TaskStatus,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.flush_pending(id).await?;
        tasks::update_status(&self.client().await?, id, status, at_ms).await
    }

    async fn update_status_deferred(
        &self,
        id: &str,
        status: TaskStatus,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        if self.pending.amend_status(id, status, at_ms) {
            return Ok(());
        }
        self.update_status(id, status, at_ms).await
    }

    async fn update_output(&self, id: &str, output: &Value, at_ms: i64) -> Result<(), StoreError> {
        self.flush_pending(id).await?;
        tasks::update_output(&self.client().await?, id, output, at_ms).await
    }

    async fn update_output_deferred(
        &self,
        id: &str,
        output: &Value,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        if self.pending.amend_output(id, output, at_ms) {
            return Ok(());
        }
        self.update_output(id, output, at_ms).await
    }

    async fn finish_task(
        &self,
        id: &str,
        status: TaskStatus,
        output: Option<&Value>,
        error: Option<&str>,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        match self.pending.take(id) {
            // Never written: its insert says how it ended.
            Take::Taken(mut task, _guard) => {
                task.record.status = status;
                task.record.output = output.cloned();
                task.record.error = error.map(str::to_string);
                task.record.updated_at_ms = at_ms;
                self.write_pending(*task).await
            }
            Take::Flushing(mut rx) => {
                let _ = rx.wait_for(|done| *done).await;
                tasks::finish(&self.client().await?, id, status, output, error, at_ms).await
            }
            Take::None => {
                tasks::finish(&self.client().await?, id, status, output, error, at_ms).await
            }
        }
    }

    async fn append_logs(&self, id: &str, logs: &[LogEntry]) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        self.flush_pending(id).await?;
        logs::append(&mut self.client().await?, id, logs).await
    }

    async fn append_logs_deferred(&self, id: &str, logs: &[LogEntry]) -> Result<(), StoreError> {
        if logs.is_empty() || self.pending.add_logs(id, logs) {
            return Ok(());
        }
        self.append_logs(id, logs).await
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        tasks::get(&self.client().await?, id).await
    }

    async fn get_logs(&self, id: &str) -> Result<Vec<LogEntry>, StoreError> {
        logs::get(&self.client().await?, id).await
    }

    async fn list_tasks(
        &self,
        filter: &TaskFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<TaskRecord>, StoreError> {
        tasks::list(&self.client().await?, filter, limit, cursor).await
    }

    async fn tasks_with_status(
        &self,
        statuses: &[TaskStatus],
    ) -> Result<Vec<TaskRecord>, StoreError> {
        tasks::with_status(&self.client().await?, statuses).await
    }

    async fn insert_file(&self, file: &FileRecord) -> Result<(), StoreError> {
        files::insert(&self.client().await?, file).await
    }

    async fn get_file(&self, id: &str) -> Result<Option<FileRecord>, StoreError> {
        files::get(&self.client().await?, id).await
    }

    async fn mark_file_uploaded(&self, id: &str, size: u64) -> Result<FileRecord, StoreError> {
        files::mark_uploaded(&self.client().await?, id, size).await
    }

    async fn delete_task(&self, id: &str) -> Result<bool, StoreError> {
        lifecycle::delete_task(&self.client().await?, id).await
    }

    async fn delete_file(&self, id: &str) -> Result<bool, StoreError> {
        lifecycle::delete_file(&self.client().await?, id).await
    }

    async fn list_files(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<FileRecord>, StoreError> {
        let after = crate::file_page::files_after(cursor)?;
        lifecycle::list_files(
            &self.client().await?,
            limit.clamp(1, crate::MAX_PAGE),
            after,
        )
        .await
    }
}
