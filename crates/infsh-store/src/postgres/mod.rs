//! [`PostgresStore`]: the [`TaskStore`] of API nodes that share one
//! PostgreSQL database (`infsh serve --store postgres://USER@HOST/DB`).
//!
//! Files by role: `connect` (the pool, and the error naming the URL when it
//! cannot connect), `migrate` (the shared migrations under an advisory
//! lock), `rows` (rows into records), `tasks`, `logs`, `files` (the
//! statements of each table).
//!
//! Every write is one autocommitted statement or one short transaction,
//! durable when its future resolves (PostgreSQL's `synchronous_commit = on`,
//! its default). The `*_deferred` writes are the trait's defaults: they too
//! are durable when they return, and there is no pending insert to amend.
//! Reads see every write whose future resolved, on any node.

mod connect;
mod files;
mod logs;
mod migrate;
mod rows;
mod tasks;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use serde_json::Value;

use crate::store::{TaskFilter, TaskStore};
use crate::store_url::redact;
use crate::{FileRecord, LogEntry, Page, StoreError, TaskRecord, TaskStatus};

pub use self::migrate::MIGRATION_LOCK;

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The URL with its password redacted, for messages.
    url: String,
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
        })
    }

    /// The URL it was opened with, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        connect::connection(&self.pool).await
    }
}

#[async_trait]
impl TaskStore for PostgresStore {
    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError> {
        tasks::insert(&self.client().await?, task).await
    }

    async fn update_status(
        &self,
        id: &str,
        status: TaskStatus,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        tasks::update_status(&self.client().await?, id, status, at_ms).await
    }

    async fn update_output(&self, id: &str, output: &Value, at_ms: i64) -> Result<(), StoreError> {
        tasks::update_output(&self.client().await?, id, output, at_ms).await
    }

    async fn finish_task(
        &self,
        id: &str,
        status: TaskStatus,
        output: Option<&Value>,
        error: Option<&str>,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        tasks::finish(&self.client().await?, id, status, output, error, at_ms).await
    }

    async fn append_logs(&self, id: &str, logs: &[LogEntry]) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        logs::append(&mut self.client().await?, id, logs).await
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
}
