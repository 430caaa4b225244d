//! [`PostgresStore`]: the [`TaskStore`] of API nodes that share one
//! PostgreSQL database (`infsh serve --store postgres://USER@HOST/DB`).
//!
//! Files by role: `connect` (the pool, and the error naming the URL when it
//! cannot connect), `migrate` (the shared migrations under an advisory
//! lock), `rows` (rows into records), `tasks`, `logs`, `files` (the
//! statements of each table), `fleet` (the [`crate::fleet::FleetStore`] of
//! remote engines shared by API nodes), `listen` (the `LISTEN/NOTIFY`
//! wake-up of their claims), `keys`, `webhooks` (API keys created at run
//! time, the webhook outbox), `versions` (app versions and the current one).
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
mod fleet;
mod fleet_sessions;
mod keys;
mod lifecycle;
mod listen;
mod logs;
mod migrate;
mod nodes;
mod pending;
mod rows;
mod tasks;
mod versions;
mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use infsh_core::Payload;

use self::pending::{Pending, PendingTask, Take};
use crate::store::{TaskFilter, TaskStore};
use crate::store_url::redact;
use crate::{
    ApiKeyRecord, AppVersionRecord, FileAccess, FileRecord, LogEntry, Page, StoreError, TaskRecord,
    TaskStatus, VersionOutcome, WebhookAttempt, WebhookDelivery, DEFERRED_LINGER,
};

pub use self::listen::{PgWakeup, LISTENER_APPLICATION, QUEUE_CHANNEL, TASK_CHANNEL};
pub use self::migrate::MIGRATION_LOCK;

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// How to connect (the listener of [`PostgresStore::wakeup`] opens a
    /// connection of its own).
    config: tokio_postgres::Config,
    /// The URL with its password redacted, for messages.
    url: String,
    pending: Pending,
    /// The API node this store writes for ([`PostgresStore::for_node`]).
    node: Option<Arc<str>>,
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
        let (pool, config) = connect::pool(url)?;
        let mut client = connect::first_connection(&pool, url).await?;
        migrate::migrate(&mut client).await?;
        Ok(PostgresStore {
            pool,
            config,
            url: redact(url),
            pending: Pending::default(),
            node: None,
        })
    }

    /// This store as API node `node`'s: tasks it inserts are that node's,
    /// and [`TaskStore::tasks_with_status`] (start-up recovery's question)
    /// answers that node's tasks and those of no node only, so one node's
    /// restart never fails or re-queues another live node's tasks.
    pub fn for_node(mut self, node: &str) -> PostgresStore {
        self.node = Some(Arc::from(node));
        self
    }

    /// The node named by [`PostgresStore::for_node`].
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The URL it was opened with, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A [`crate::fleet::Wakeup`] shared with every node on this database
    /// (a listening connection of its own, started now; stopped on drop).
    pub fn wakeup(&self) -> PgWakeup {
        PgWakeup::start(self.config.clone(), self.pool.clone())
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        connect::connection(&self.pool).await
    }

    /// A pending task's insert and its logs, in one transaction.
    async fn write_pending(&self, task: PendingTask) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        if task.logs.is_empty() {
            // One statement: no BEGIN/COMMIT round trips.
            return tasks::insert(&client, &task.record, self.node()).await;
        }
        let tx = client.transaction().await?;
        tasks::insert(&tx, &task.record, self.node()).await?;
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
        tasks::insert(&self.client().await?, task, self.node()).await
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
        tasks::update_status(&self.client().await?, id, status, at_ms, self.node()).await
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

    async fn update_output(
        &self,
        id: &str,
        output: &Payload,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.flush_pending(id).await?;
        tasks::update_output(&self.client().await?, id, output, at_ms, self.node()).await
    }

    async fn update_output_deferred(
        &self,
        id: &str,
        output: &Payload,
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
        output: Option<&Payload>,
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
            // Being written (wait for its insert) or written long ago.
            flushing_or_none => {
                if let Take::Flushing(mut rx) = flushing_or_none {
                    let _ = rx.wait_for(|done| *done).await;
                }
                tasks::finish(
                    &self.client().await?,
                    id,
                    status,
                    output,
                    error,
                    at_ms,
                    self.node(),
                )
                .await
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

    async fn tasks_with_log_counts(
        &self,
        ids: &[String],
    ) -> Result<Vec<(TaskRecord, usize)>, StoreError> {
        tasks::with_log_counts(&self.client().await?, ids).await
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
        tasks::with_status(&self.client().await?, statuses, self.node()).await
    }

    fn node_id(&self) -> Option<&str> {
        self.node()
    }

    async fn task_attempts(
        &self,
        id: &str,
    ) -> Result<Vec<crate::fleet::AttemptRecord>, StoreError> {
        crate::fleet::FleetStore::attempts(self, id)
            .await
            .map_err(|e| match e {
                crate::fleet::FleetError::Store(e) => e,
                other => StoreError::Corrupt {
                    id: id.to_string(),
                    message: other.to_string(),
                },
            })
    }

    async fn node_heartbeat(&self, at_ms: i64) -> Result<(), StoreError> {
        match self.node() {
            Some(node) => nodes::heartbeat(&self.client().await?, node, at_ms).await,
            None => Ok(()),
        }
    }

    async fn take_over_lost_nodes(
        &self,
        apps: &[String],
        now_ms: i64,
        lease_ms: i64,
        max_attempts: u32,
    ) -> Result<Vec<crate::nodes::TakenOver>, StoreError> {
        let Some(me) = self.node() else {
            return Ok(Vec::new());
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let taken = nodes::take_over(&tx, me, apps, now_ms, lease_ms, max_attempts).await?;
        tx.commit().await?;
        Ok(taken)
    }

    async fn insert_file(&self, file: &FileRecord) -> Result<(), StoreError> {
        files::insert(&self.client().await?, file).await
    }

    async fn get_file(&self, id: &str) -> Result<Option<FileRecord>, StoreError> {
        files::get(&self.client().await?, id).await
    }

    async fn file_access(&self, id: &str) -> Result<Option<FileAccess>, StoreError> {
        files::access(&self.client().await?, id).await
    }

    async fn set_file_access(&self, id: &str, access: &FileAccess) -> Result<(), StoreError> {
        files::set_access(&self.client().await?, id, access).await
    }

    async fn mark_file_uploaded(&self, id: &str, size: u64) -> Result<FileRecord, StoreError> {
        files::mark_uploaded(&self.client().await?, id, size).await
    }

    async fn enqueue_webhook(&self, delivery: &WebhookDelivery) -> Result<bool, StoreError> {
        webhooks::insert(&self.client().await?, delivery).await
    }

    async fn claim_due_webhooks(
        &self,
        now_ms: i64,
        claim_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        webhooks::claim_due(&self.client().await?, now_ms, claim_until_ms, limit).await
    }

    async fn record_webhook_attempt(
        &self,
        task_id: &str,
        attempt: &WebhookAttempt,
    ) -> Result<(), StoreError> {
        webhooks::record(&self.client().await?, task_id, attempt).await
    }

    async fn get_webhook_delivery(
        &self,
        task_id: &str,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        webhooks::get(&self.client().await?, task_id).await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        keys::insert(&self.client().await?, key).await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        keys::by_hash(&self.client().await?, key_hash).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        keys::list(&self.client().await?).await
    }

    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<ApiKeyRecord, StoreError> {
        keys::revoke(&self.client().await?, id, at_ms).await
    }

    async fn insert_app_version(&self, version: &AppVersionRecord) -> Result<bool, StoreError> {
        versions::insert(&self.client().await?, version).await
    }

    async fn set_app_version_status(
        &self,
        app: &str,
        hash: &str,
        outcome: VersionOutcome,
    ) -> Result<AppVersionRecord, StoreError> {
        versions::set_status(&self.client().await?, app, hash, &outcome).await
    }

    async fn get_app_version(
        &self,
        app: &str,
        hash: &str,
    ) -> Result<Option<AppVersionRecord>, StoreError> {
        versions::get(&self.client().await?, app, hash).await
    }

    async fn list_app_versions(&self, app: &str) -> Result<Vec<AppVersionRecord>, StoreError> {
        versions::list(&self.client().await?, app).await
    }

    async fn set_current_app_version(
        &self,
        app: &str,
        hash: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        versions::set_current(&self.client().await?, app, hash, at_ms).await
    }

    async fn current_app_version(&self, app: &str) -> Result<Option<String>, StoreError> {
        versions::current(&self.client().await?, app).await
    }

    async fn current_app_versions(&self) -> Result<Vec<(String, String)>, StoreError> {
        versions::all_current(&self.client().await?).await
    }

    async fn delete_app_version(&self, app: &str, hash: &str) -> Result<bool, StoreError> {
        versions::delete(&self.client().await?, app, hash).await
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
        team: Option<&str>,
    ) -> Result<Page<FileRecord>, StoreError> {
        let after = crate::file_page::files_after(cursor)?;
        lifecycle::list_files(
            &self.client().await?,
            limit.clamp(1, crate::MAX_PAGE),
            after,
            team,
        )
        .await
    }

    async fn store_bytes(&self) -> Result<Option<u64>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await?;
        let bytes: i64 = row.get(0);
        Ok(Some(u64::try_from(bytes).unwrap_or(0)))
    }

    async fn ended_tasks_before(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        lifecycle::ended_tasks_before(&self.client().await?, before_ms, limit).await
    }
}
