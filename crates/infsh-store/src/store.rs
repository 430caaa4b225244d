//! [`TaskStore`]: what the engine needs from a database, as an object-safe
//! async trait, so SQLite (one machine, [`crate::SqliteStore`]) and a later
//! PostgreSQL store (many machines) are interchangeable behind
//! `Arc<dyn TaskStore>`.
//!
//! Every write is durable when its future resolves (committed: it survives
//! a crash of the process; on the disk then or, under
//! [`crate::Durability::Relaxed`], within a second), except the `*_deferred`
//! ones: the engine gives out a task's id only once its insert is durable
//! ([`TaskStore::insert_task`], or a deferred insert followed by a durable
//! write such as the task's end, [`TaskStore::finish_task`]).
//! A deferred write is only queued: it is stored in order with the writes
//! after it, at the latest with the next durable one (an implementation may
//! also commit it on its own after a short delay), so after a crash a task
//! may show an older intermediate status, output snapshot or fewer logs.

use async_trait::async_trait;
use infsh_core::Payload;

use crate::{
    ApiKeyRecord, AppVersionRecord, FileAccess, FileRecord, LogEntry, Page, StoreError, TaskRecord,
    TaskStatus, VersionOutcome, WebhookAttempt, WebhookDelivery,
};

/// Which tasks a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// `namespace/name`.
    pub app: Option<String>,
    pub status: Option<TaskStatus>,
    /// Only this team's tasks (a task stored without a team is
    /// `default`'s). None: every team's (admin keys).
    pub team: Option<String>,
}

#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// This API node's id on a store several nodes share (PostgreSQL,
    /// `for_node`); None: a store of one process.
    fn node_id(&self) -> Option<&str> {
        None
    }

    /// The task's attempts (`task_attempts`), for a node that takes no
    /// remote engines: the runs of a task taken over from a lost node.
    /// Empty on a store of one process.
    async fn task_attempts(
        &self,
        _id: &str,
    ) -> Result<Vec<crate::fleet::AttemptRecord>, StoreError> {
        Ok(Vec::new())
    }

    /// Says this node is alive (`api_nodes`); nothing on a store of one
    /// process.
    async fn node_heartbeat(&self, _at_ms: i64) -> Result<(), StoreError> {
        Ok(())
    }

    /// Takes over, for this node, the open own-worker tasks of `apps` left
    /// by nodes whose heartbeat is older than `lease_ms` (docs/deploy.md,
    /// "API node lost"): waiting ones are queued here; running ones end
    /// their attempt `lost` and are queued here again while they had
    /// fewer than `max_attempts` runs, else FAILED `node lost: <id>`.
    /// Nothing on a store of one process.
    async fn take_over_lost_nodes(
        &self,
        _apps: &[String],
        _now_ms: i64,
        _lease_ms: i64,
        _max_attempts: u32,
    ) -> Result<Vec<crate::nodes::TakenOver>, StoreError> {
        Ok(Vec::new())
    }

    /// Stores a new task. Fails if the id exists.
    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError>;

    /// Queues a new task's insert without waiting for it to be durable. Only
    /// for a task nobody has been told about yet: its id is given out with
    /// its durable end (an HTTP `wait` run), or after [`TaskStore::sync`].
    /// Until the store takes the insert, [`TaskStore::amend_pending_insert`]
    /// can still change the status it is stored with (the default is the
    /// durable insert).
    async fn insert_task_deferred(&self, task: &TaskRecord) -> Result<(), StoreError> {
        self.insert_task(task).await
    }

    /// If the deferred insert of task `id` is still queued, sets the status
    /// (and `updated_at_ms`) it will be stored with and returns true: the
    /// task is never on disk with its old status. Returns false when there
    /// is no such insert left (it was taken for a commit): the caller writes
    /// the status itself.
    fn amend_pending_insert(&self, _id: &str, _status: TaskStatus, _at_ms: i64) -> bool {
        false
    }

    /// Returns once every write queued before it is committed and on the
    /// disk, whatever the durability (deferred ones included).
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Sets a task's status (and `updated_at_ms`). `NotFound` for an unknown id.
    async fn update_status(
        &self,
        id: &str,
        status: TaskStatus,
        at_ms: i64,
    ) -> Result<(), StoreError>;

    /// [`TaskStore::update_status`] that may return before the change is
    /// durable (see the module docs). Only for non-terminal statuses whose
    /// loss a restart handles (the default is the durable write).
    async fn update_status_deferred(
        &self,
        id: &str,
        status: TaskStatus,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.update_status(id, status, at_ms).await
    }

    /// Sets a task's output while it runs (a streaming function's snapshot).
    async fn update_output(&self, id: &str, output: &Payload, at_ms: i64)
        -> Result<(), StoreError>;

    /// [`TaskStore::update_output`] that may return before it is durable.
    async fn update_output_deferred(
        &self,
        id: &str,
        output: &Payload,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.update_output(id, output, at_ms).await
    }

    /// Ends a task: a terminal status with its output or error.
    async fn finish_task(
        &self,
        id: &str,
        status: TaskStatus,
        output: Option<&Payload>,
        error: Option<&str>,
        at_ms: i64,
    ) -> Result<(), StoreError>;

    /// Appends log entries to a task, in order, in one transaction.
    async fn append_logs(&self, id: &str, logs: &[LogEntry]) -> Result<(), StoreError>;

    /// [`TaskStore::append_logs`] that may return before it is durable.
    async fn append_logs_deferred(&self, id: &str, logs: &[LogEntry]) -> Result<(), StoreError> {
        self.append_logs(id, logs).await
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError>;

    /// A task's logs, oldest first.
    async fn get_logs(&self, id: &str) -> Result<Vec<LogEntry>, StoreError>;

    /// The tasks among `ids` (unknown ones left out, in no particular
    /// order), each with how many log entries it has: what an API node
    /// following other nodes' remote tasks re-reads when changes are
    /// announced, for many tasks at once. One query on PostgreSQL, where
    /// nodes follow each other; a loop elsewhere.
    async fn tasks_with_log_counts(
        &self,
        ids: &[String],
    ) -> Result<Vec<(TaskRecord, usize)>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.get_task(id).await? {
                found.push((record, self.get_logs(id).await?.len()));
            }
        }
        Ok(found)
    }

    /// Newest first; `cursor` is a previous page's `next_cursor`.
    async fn list_tasks(
        &self,
        filter: &TaskFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<TaskRecord>, StoreError>;

    /// Every task in one of `statuses`, oldest first (for recovery at start).
    async fn tasks_with_status(
        &self,
        statuses: &[TaskStatus],
    ) -> Result<Vec<TaskRecord>, StoreError>;

    async fn insert_file(&self, file: &FileRecord) -> Result<(), StoreError>;

    async fn get_file(&self, id: &str) -> Result<Option<FileRecord>, StoreError>;

    /// File `id`'s team and public flag; None for an unknown file.
    async fn file_access(&self, id: &str) -> Result<Option<FileAccess>, StoreError>;

    /// Sets file `id`'s team and public flag (at registration). `NotFound`
    /// for an unknown file.
    async fn set_file_access(&self, id: &str, access: &FileAccess) -> Result<(), StoreError>;

    /// Records that a file's bytes (`size` of them) are stored.
    async fn mark_file_uploaded(&self, id: &str, size: u64) -> Result<FileRecord, StoreError>;

    /// Puts a task's webhook in the outbox, unless that task has one
    /// already (a second end reported for it). True when stored.
    async fn enqueue_webhook(&self, delivery: &WebhookDelivery) -> Result<bool, StoreError>;

    /// Claims up to `limit` pending deliveries due at `now_ms`, soonest
    /// first: their due time becomes `claim_until_ms`, so no other claim
    /// (on this node or another) takes them before the attempt is recorded
    /// or the claim runs out (the node died mid-attempt).
    async fn claim_due_webhooks(
        &self,
        now_ms: i64,
        claim_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError>;

    /// Stores one attempt's outcome. `NotFound` for a task with no delivery.
    async fn record_webhook_attempt(
        &self,
        task_id: &str,
        attempt: &WebhookAttempt,
    ) -> Result<(), StoreError>;

    /// The delivery of task `task_id`'s webhook, if it has one.
    async fn get_webhook_delivery(
        &self,
        task_id: &str,
    ) -> Result<Option<WebhookDelivery>, StoreError>;

    /// Stores a key created at run time (its digest, never the key).
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;

    /// The key whose hex SHA-256 is `key_hash`, revoked or expired ones too.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Every key, oldest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Revokes key `id` at `at_ms` (a second revoke keeps the first
    /// time); the record after it. `NotFound` for an unknown id.
    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<ApiKeyRecord, StoreError>;
    /// Stores a deployed version of an app; false (nothing changed) when
    /// the app has that hash already.
    async fn insert_app_version(&self, version: &AppVersionRecord) -> Result<bool, StoreError>;

    /// Sets a version's status, error and discovered functions; the
    /// record after it. `NotFound` for an unknown version.
    async fn set_app_version_status(
        &self,
        app: &str,
        hash: &str,
        outcome: VersionOutcome,
    ) -> Result<AppVersionRecord, StoreError>;

    async fn get_app_version(
        &self,
        app: &str,
        hash: &str,
    ) -> Result<Option<AppVersionRecord>, StoreError>;

    /// An app's versions, newest first.
    async fn list_app_versions(&self, app: &str) -> Result<Vec<AppVersionRecord>, StoreError>;

    /// Makes `hash` the app's current version. `NotFound` when the app has
    /// no such version.
    async fn set_current_app_version(
        &self,
        app: &str,
        hash: &str,
        at_ms: i64,
    ) -> Result<(), StoreError>;

    /// The hash of the app's current version, if it has one.
    async fn current_app_version(&self, app: &str) -> Result<Option<String>, StoreError>;

    /// Every app's current version, `(app, hash)` by app.
    async fn current_app_versions(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Deletes a version's record; false when there was none or it is the
    /// app's current version.
    async fn delete_app_version(&self, app: &str, hash: &str) -> Result<bool, StoreError>;

    /// Deletes a task with its logs and attempts; false when there was none.
    async fn delete_task(&self, id: &str) -> Result<bool, StoreError>;

    /// Deletes a file's record (not its bytes: the [`crate::FileStore`]'s);
    /// false when there was none.
    async fn delete_file(&self, id: &str) -> Result<bool, StoreError>;

    /// Stored files, newest first (by `created_at_ms`, then id); `cursor`
    /// is a previous page's `next_cursor` (`InvalidCursor` otherwise).
    /// `team`: only that team's files (a NULL team counts as
    /// [`DEFAULT_TEAM`]); None: every file.
    async fn list_files(
        &self,
        limit: usize,
        cursor: Option<&str>,
        team: Option<&str>,
    ) -> Result<Page<FileRecord>, StoreError>;

    /// Bytes the store takes (for `/metrics`): the SQLite file with its
    /// WAL, the PostgreSQL database. `None` where it has no size to report
    /// (the in-memory test store).
    async fn store_bytes(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Up to `limit` ids of ended tasks (terminal status) last updated
    /// before `before_ms`, oldest first: the retention sweep's batch (a
    /// terminal task is never updated again, so `updated_at_ms` is its end).
    /// The default scans; the SQLite and PostgreSQL stores use the
    /// `(status, updated_at_ms)` index.
    async fn ended_tasks_before(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let terminal: Vec<TaskStatus> = TaskStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        let mut ended: Vec<TaskRecord> = self
            .tasks_with_status(&terminal)
            .await?
            .into_iter()
            .filter(|t| t.updated_at_ms < before_ms)
            .collect();
        ended.sort_by(|a, b| (a.updated_at_ms, &a.id).cmp(&(b.updated_at_ms, &b.id)));
        Ok(ended.into_iter().take(limit).map(|t| t.id).collect())
    }
}
