//! [`SqliteStore`]: the default [`TaskStore`], one SQLite file in WAL mode.
//!
//! Writes go through one writer thread (`writer.rs`) that owns the write
//! connection and group-commits: concurrent tasks share commits, and no
//! async thread blocks on SQLite (no `spawn_blocking` hop per write).
//!
//! A durable write ([`TaskStore::insert_task`], [`TaskStore::update_status`],
//! [`TaskStore::finish_task`], ...) is committed when its future resolves,
//! and on the disk then or shortly after, as the store's [`Durability`]
//! says. The `*_deferred` writes only queue: they are committed, in order,
//! with the next durable write or at most [`crate::DEFERRED_LINGER`] later. After a
//! crash a task may therefore show an older intermediate status, output
//! snapshot or fewer logs than it had (never an older *terminal* state, and
//! never a lost task: inserts and finishes are durable).
//!
//! A deferred insert ([`TaskStore::insert_task_deferred`]) waits in a map
//! until the writer applies it, so its status can still be amended: a task
//! dispatched before its insert was taken is stored as DISPATCHED, never as
//! QUEUED, and one commit stores its insert and its end.
//!
//! Reads use a second connection (WAL lets it read beside the writer) on a
//! blocking thread; they see every write whose future resolved, and deferred
//! writes once committed. Every statement is prepared once per connection
//! (`prepare_cached`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use infsh_core::ErrorChain;
use infsh_core::Payload;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::commit_outcome::{Done, WriterStats};
use crate::durability::Durability;
use crate::lock::lock;
use crate::migrations::migrate;
use crate::rows::{file_from_row, RawTask, TASK_COLUMNS};
use crate::store::{TaskFilter, TaskStore};
use crate::wal_keeper::WRITER_AUTOCHECKPOINT_PAGES;
use crate::writer::{Msg, Op, WriteQueue, Writer};
use crate::{keys, versions, webhooks};
use crate::{
    ApiKeyRecord, AppVersionRecord, FileAccess, FileRecord, LogEntry, LogType, Page, StoreError,
    TaskRecord, TaskStatus, VersionOutcome, WebhookAttempt, WebhookDelivery,
};

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest page a listing returns.
pub const MAX_PAGE: usize = 1000;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Conns>,
}

struct Conns {
    path: PathBuf,
    /// Deferred inserts not yet taken by the writer, by task id: their
    /// status can still be amended ([`TaskStore::amend_pending_insert`]).
    pending_inserts: Arc<Mutex<HashMap<String, TaskRecord>>>,
    queue: Arc<WriteQueue>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Connection>,
    stats: Arc<WriterStats>,
    durability: Durability,
}

impl Drop for Conns {
    /// Closes the queue and waits for the writer to commit what is queued.
    fn drop(&mut self) {
        self.queue.close();
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn configure(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite did not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", durability.synchronous_pragma())?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// A write's error, also for deferred ones nobody waits on.
fn log_deferred_error(e: &StoreError) {
    tracing::error!(error = %ErrorChain(e), "a deferred store write failed");
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with
    /// [`Durability::Full`], applies pending migrations and starts the
    /// writer thread. Blocking: call it off the async threads.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, Durability::Full)
    }

    /// [`SqliteStore::open`] with the given [`Durability`].
    pub fn open_with(
        path: impl AsRef<Path>,
        durability: Durability,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::io("cannot create", parent, e))?;
        }
        let mut writer = Connection::open(&path)?;
        configure(&writer, durability)?;
        migrate(&mut writer)?;
        let reader = Connection::open(&path)?;
        configure(&reader, durability)?;
        let keeper_conn = Connection::open(&path)?;
        configure(&keeper_conn, durability)?;
        let stats = Arc::new(WriterStats::default());
        let queue = Arc::new(WriteQueue::default());
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let thread = Writer::new(writer, stats.clone(), durability, wal.into(), keeper_conn);
        let thread_queue = queue.clone();
        let handle = std::thread::Builder::new()
            .name("infsh-store-writer".into())
            .spawn(move || thread.run(thread_queue))
            .map_err(StoreError::WriterStart)?;
        Ok(SqliteStore {
            inner: Arc::new(Conns {
                path,
                pending_inserts: Arc::default(),
                queue,
                writer: Mutex::new(Some(handle)),
                reader: Mutex::new(reader),
                stats,
                durability,
            }),
        })
    }

    /// [`SqliteStore::open`] on a blocking thread.
    pub async fn open_async(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_async(path, Durability::Full).await
    }

    /// [`SqliteStore::open_with`] on a blocking thread.
    pub async fn open_with_async(
        path: impl AsRef<Path>,
        durability: Durability,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || SqliteStore::open_with(path, durability))
            .await
            .map_err(StoreError::Join)?
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// How many write transactions the writer committed since this store
    /// was opened (under [`Durability::Full`] each is one WAL fsync): for
    /// tests and diagnostics.
    pub fn commit_count(&self) -> u64 {
        self.inner.stats.commits.load(Ordering::Relaxed)
    }

    /// How many checkpoints the WAL keeper made (copies of the log into the
    /// database, at most one per second of commits): for tests and
    /// diagnostics.
    pub fn checkpoint_count(&self) -> u64 {
        self.inner.stats.checkpoints.load(Ordering::Relaxed)
    }

    /// How many times the store flushed the WAL to the disk itself (under
    /// [`Durability::Relaxed`]; always 0 under `Full`, where every commit
    /// flushes): for tests and diagnostics.
    pub fn log_flush_count(&self) -> u64 {
        self.inner.stats.log_flushes.load(Ordering::Relaxed)
    }

    fn send(&self, msg: Msg) -> Result<(), StoreError> {
        self.inner.queue.push(msg)
    }

    /// Queues a write and waits until it is committed (durable as the
    /// store's [`Durability`] says).
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(f, false).await
    }

    /// [`SqliteStore::write`]; with `fsync`, also on the disk when it
    /// returns whatever the [`Durability`].
    async fn write_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        fsync: bool,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => f(conn),
                Err(e) => Err(StoreError::Commit(e.clone())),
            };
            let ok = result.is_ok();
            let done: Done = Box::new(move |commit| {
                let result = match commit {
                    Some(e) if result.is_ok() => Err(StoreError::Commit(e.clone())),
                    _ => result,
                };
                let _ = tx.send(result);
            });
            (ok, done)
        });
        self.send(Msg {
            op,
            durable: true,
            fsync,
        })?;
        rx.await.map_err(|_| StoreError::WriteDropped)?
    }

    /// Queues a write to be committed with the next batch; returns at once.
    /// Its failure is logged.
    fn write_deferred(
        &self,
        f: impl FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        let op: Op = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => f(conn),
                Err(e) => Err(StoreError::Commit(e.clone())),
            };
            let ok = result.is_ok();
            let done: Done = Box::new(move |commit| match (result, commit) {
                (Err(e), _) => log_deferred_error(&e),
                (Ok(()), Some(e)) => log_deferred_error(&StoreError::Commit(e.clone())),
                (Ok(()), None) => {}
            });
            (ok, done)
        });
        self.send(Msg {
            op,
            durable: false,
            fsync: false,
        })
    }

    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = lock(&inner.reader);
            f(&conn)
        })
        .await
        .map_err(StoreError::Join)?
    }
}

pub(crate) fn to_json(v: &Value) -> String {
    serde_json::to_string(v).expect("a JSON value serializes")
}

fn not_found(kind: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_string(),
    }
}

fn get_file(conn: &Connection, id: &str) -> Result<Option<FileRecord>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, filename, content_type, size, uploaded, created_at_ms FROM files WHERE id = ?1",
        )?
        .query_row([id], file_from_row)
        .optional()?)
}

pub(crate) fn insert_task(conn: &Connection, t: &TaskRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO tasks (seq, id, app, function_name, input, setup, status, output, error, \
         webhook, session_id, metadata, timeout_secs, created_at_ms, updated_at_ms, team, run_at_ms) \
         VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks), \
         ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        t.id,
        t.app,
        t.function,
        to_json(&t.input),
        to_json(&t.setup),
        u8::from(t.status),
        t.output.as_ref().map(|o| o.json_text()),
        t.error,
        t.webhook,
        t.session_id,
        to_json(&t.metadata),
        t.timeout_secs,
        t.created_at_ms,
        t.updated_at_ms,
        t.team,
        t.run_at_ms,
    ])?;
    Ok(())
}

fn update_status(
    conn: &Connection,
    id: &str,
    status: TaskStatus,
    at_ms: i64,
) -> Result<(), StoreError> {
    let n = conn
        .prepare_cached("UPDATE tasks SET status = ?2, updated_at_ms = ?3 WHERE id = ?1")?
        .execute(params![id, u8::from(status), at_ms])?;
    if n == 0 {
        return Err(not_found("task", id));
    }
    Ok(())
}

fn update_output(conn: &Connection, id: &str, output: &str, at_ms: i64) -> Result<(), StoreError> {
    let n = conn
        .prepare_cached("UPDATE tasks SET output = ?2, updated_at_ms = ?3 WHERE id = ?1")?
        .execute(params![id, output, at_ms])?;
    if n == 0 {
        return Err(not_found("task", id));
    }
    Ok(())
}

/// Appends in order after the task's last entry; the batch's savepoint
/// makes the entries all-or-nothing.
pub(crate) fn append_logs(
    conn: &Connection,
    id: &str,
    logs: &[LogEntry],
) -> Result<(), StoreError> {
    let last: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM task_logs WHERE task_id = ?1")?
        .query_row([id], |r| r.get(0))?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO task_logs (task_id, seq, log_type, content, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (i, entry) in logs.iter().enumerate() {
        insert.execute(params![
            id,
            last + 1 + i as i64,
            u8::from(entry.log_type),
            entry.content,
            entry.at_ms
        ])?;
    }
    Ok(())
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError> {
        let t = task.clone();
        self.write(move |conn| insert_task(conn, &t)).await
    }

    async fn insert_task_deferred(&self, task: &TaskRecord) -> Result<(), StoreError> {
        let id = task.id.clone();
        let pending = self.inner.pending_inserts.clone();
        lock(&pending).insert(id.clone(), task.clone());
        // The record is taken out of the map when the batch applies it, so
        // an amendment either lands before that or reports it is too late.
        let queued = self.write_deferred(move |conn| match lock(&pending).remove(&id) {
            Some(task) => insert_task(conn, &task),
            None => Ok(()),
        });
        if queued.is_err() {
            lock(&self.inner.pending_inserts).remove(&task.id);
        }
        queued
    }

    fn amend_pending_insert(&self, id: &str, status: TaskStatus, at_ms: i64) -> bool {
        match lock(&self.inner.pending_inserts).get_mut(id) {
            Some(task) => {
                task.status = status;
                task.updated_at_ms = at_ms;
                true
            }
            None => false,
        }
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.write_with(|_| Ok(()), true).await
    }

    async fn update_status(
        &self,
        id: &str,
        status: TaskStatus,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |conn| update_status(conn, &id, status, at_ms))
            .await
    }

    async fn update_status_deferred(
        &self,
        id: &str,
        status: TaskStatus,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write_deferred(move |conn| update_status(conn, &id, status, at_ms))
    }

    async fn update_output(
        &self,
        id: &str,
        output: &Payload,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let output = output.clone();
        self.write(move |conn| update_output(conn, &id, &output.json_text(), at_ms))
            .await
    }

    async fn update_output_deferred(
        &self,
        id: &str,
        output: &Payload,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let output = output.clone();
        self.write_deferred(move |conn| update_output(conn, &id, &output.json_text(), at_ms))
    }

    async fn finish_task(
        &self,
        id: &str,
        status: TaskStatus,
        output: Option<&Payload>,
        error: Option<&str>,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        // A raw output is shared, not copied, into the writer thread.
        let output = output.cloned();
        let error = error.map(str::to_string);
        self.write(move |conn| {
            let output = output.as_ref().map(|o| o.json_text());
            let n = conn
                .prepare_cached(
                    "UPDATE tasks SET status = ?2, output = ?3, error = ?4, updated_at_ms = ?5 WHERE id = ?1",
                )?
                .execute(params![id, u8::from(status), output, error, at_ms])?;
            if n == 0 {
                return Err(not_found("task", &id));
            }
            Ok(())
        })
        .await
    }

    async fn append_logs(&self, id: &str, logs: &[LogEntry]) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        let id = id.to_string();
        let logs = logs.to_vec();
        self.write(move |conn| append_logs(conn, &id, &logs)).await
    }

    async fn append_logs_deferred(&self, id: &str, logs: &[LogEntry]) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        let id = id.to_string();
        let logs = logs.to_vec();
        self.write_deferred(move |conn| append_logs(conn, &id, &logs))
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            let raw = conn
                .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
                .query_row([&id], RawTask::from_row)
                .optional()?;
            raw.map(|r| r.decode().map(|(_, t)| t)).transpose()
        })
        .await
    }

    async fn get_logs(&self, id: &str) -> Result<Vec<LogEntry>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT log_type, content, at_ms FROM task_logs WHERE task_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([&id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (t, content, at_ms) = row?;
                let log_type = u8::try_from(t)
                    .map_err(|_| t.to_string())
                    .and_then(LogType::try_from)
                    .map_err(|message| StoreError::Corrupt {
                        id: id.clone(),
                        message,
                    })?;
                out.push(LogEntry {
                    log_type,
                    content,
                    at_ms,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn list_tasks(
        &self,
        filter: &TaskFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<TaskRecord>, StoreError> {
        let before: Option<i64> = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => Some(
                c.parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| StoreError::InvalidCursor(c.to_string()))?,
            ),
            None => None,
        };
        let limit = limit.clamp(1, MAX_PAGE);
        let filter = filter.clone();
        self.read(move |conn| {
            let mut clauses = Vec::new();
            let mut args: Vec<SqlValue> = Vec::new();
            if let Some(app) = filter.app {
                args.push(SqlValue::Text(app));
                clauses.push(format!("app = ?{}", args.len()));
            }
            if let Some(status) = filter.status {
                args.push(SqlValue::Integer(i64::from(u8::from(status))));
                clauses.push(format!("status = ?{}", args.len()));
            }
            if let Some(team) = filter.team {
                args.push(SqlValue::Text(team));
                clauses.push(format!("COALESCE(team, 'default') = ?{}", args.len()));
            }
            if let Some(before) = before {
                args.push(SqlValue::Integer(before));
                clauses.push(format!("seq < ?{}", args.len()));
            }
            let filter_sql = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            args.push(SqlValue::Integer(limit as i64 + 1));
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks {filter_sql} ORDER BY seq DESC LIMIT ?{}",
                args.len()
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let raws = stmt
                .query_map(params_from_iter(args), RawTask::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let more = raws.len() > limit;
            let mut items = Vec::with_capacity(raws.len());
            let mut last_seq = None;
            for raw in raws.into_iter().take(limit) {
                let (seq, task) = raw.decode()?;
                last_seq = Some(seq);
                items.push(task);
            }
            let next_cursor = if more {
                last_seq.map(|s| s.to_string())
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
        .await
    }

    async fn tasks_with_status(
        &self,
        statuses: &[TaskStatus],
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let list = statuses
            .iter()
            .map(|s| u8::from(*s).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE status IN ({list}) ORDER BY seq"
            ))?;
            let raws = stmt
                .query_map([], RawTask::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            raws.into_iter()
                .map(|r| r.decode().map(|(_, t)| t))
                .collect()
        })
        .await
    }

    async fn insert_file(&self, file: &FileRecord) -> Result<(), StoreError> {
        let f = file.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO files (id, filename, content_type, size, uploaded, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                f.id,
                f.filename,
                f.content_type,
                f.size.map(|s| s as i64),
                i64::from(f.uploaded),
                f.created_at_ms
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_file(&self, id: &str) -> Result<Option<FileRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| get_file(conn, &id)).await
    }

    async fn file_access(&self, id: &str) -> Result<Option<FileAccess>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| crate::sqlite_lifecycle::file_access(conn, &id))
            .await
    }

    async fn set_file_access(&self, id: &str, access: &FileAccess) -> Result<(), StoreError> {
        let (id, access) = (id.to_string(), access.clone());
        self.write(move |conn| {
            let n = conn
                .prepare_cached("UPDATE files SET team = ?2, public = ?3 WHERE id = ?1")?
                .execute(params![id, access.team, i64::from(access.public)])?;
            if n == 0 {
                return Err(not_found("file", &id));
            }
            Ok(())
        })
        .await
    }

    async fn mark_file_uploaded(&self, id: &str, size: u64) -> Result<FileRecord, StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            let n = conn
                .prepare_cached("UPDATE files SET uploaded = 1, size = ?2 WHERE id = ?1")?
                .execute(params![id, size as i64])?;
            if n == 0 {
                return Err(not_found("file", &id));
            }
            get_file(conn, &id)?.ok_or_else(|| not_found("file", &id))
        })
        .await
    }

    async fn enqueue_webhook(&self, delivery: &WebhookDelivery) -> Result<bool, StoreError> {
        let d = delivery.clone();
        self.write(move |conn| webhooks::insert(conn, &d)).await
    }

    async fn claim_due_webhooks(
        &self,
        now_ms: i64,
        claim_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.write(move |conn| webhooks::claim_due(conn, now_ms, claim_until_ms, limit))
            .await
    }

    async fn record_webhook_attempt(
        &self,
        task_id: &str,
        attempt: &WebhookAttempt,
    ) -> Result<(), StoreError> {
        let (id, a) = (task_id.to_string(), attempt.clone());
        self.write(move |conn| webhooks::record(conn, &id, &a))
            .await
    }

    async fn get_webhook_delivery(
        &self,
        task_id: &str,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let id = task_id.to_string();
        self.read(move |conn| webhooks::get(conn, &id)).await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let k = key.clone();
        self.write(move |conn| keys::insert(conn, &k)).await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let hash = key_hash.to_string();
        self.read(move |conn| keys::by_hash(conn, &hash)).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.read(keys::list).await
    }

    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> Result<ApiKeyRecord, StoreError> {
        let id = id.to_string();
        self.write(move |conn| keys::revoke(conn, &id, at_ms)).await
    }

    async fn insert_app_version(&self, version: &AppVersionRecord) -> Result<bool, StoreError> {
        let v = version.clone();
        self.write(move |conn| versions::insert(conn, &v)).await
    }

    async fn set_app_version_status(
        &self,
        app: &str,
        hash: &str,
        outcome: VersionOutcome,
    ) -> Result<AppVersionRecord, StoreError> {
        let (app, hash) = (app.to_string(), hash.to_string());
        self.write(move |conn| versions::set_status(conn, &app, &hash, &outcome))
            .await
    }

    async fn get_app_version(
        &self,
        app: &str,
        hash: &str,
    ) -> Result<Option<AppVersionRecord>, StoreError> {
        let (app, hash) = (app.to_string(), hash.to_string());
        self.read(move |conn| versions::get(conn, &app, &hash))
            .await
    }

    async fn list_app_versions(&self, app: &str) -> Result<Vec<AppVersionRecord>, StoreError> {
        let app = app.to_string();
        self.read(move |conn| versions::list(conn, &app)).await
    }

    async fn set_current_app_version(
        &self,
        app: &str,
        hash: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let (app, hash) = (app.to_string(), hash.to_string());
        self.write(move |conn| versions::set_current(conn, &app, &hash, at_ms))
            .await
    }

    async fn current_app_version(&self, app: &str) -> Result<Option<String>, StoreError> {
        let app = app.to_string();
        self.read(move |conn| versions::current(conn, &app)).await
    }

    async fn current_app_versions(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(versions::all_current).await
    }

    async fn delete_app_version(&self, app: &str, hash: &str) -> Result<bool, StoreError> {
        let (app, hash) = (app.to_string(), hash.to_string());
        self.write(move |conn| versions::delete(conn, &app, &hash))
            .await
    }

    async fn delete_task(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |conn| crate::sqlite_lifecycle::delete_task(conn, &id))
            .await
    }

    async fn delete_file(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |conn| crate::sqlite_lifecycle::delete_file(conn, &id))
            .await
    }

    async fn list_files(
        &self,
        limit: usize,
        cursor: Option<&str>,
        team: Option<&str>,
    ) -> Result<Page<FileRecord>, StoreError> {
        let after = crate::file_page::files_after(cursor)?;
        let limit = limit.clamp(1, MAX_PAGE);
        let team = team.map(str::to_string);
        self.read(move |conn| crate::sqlite_lifecycle::list_files(conn, limit, after, team))
            .await
    }

    async fn store_bytes(&self) -> Result<Option<u64>, StoreError> {
        // The database file and its WAL (and shared-memory index) beside it.
        let base = self.inner.path.clone().into_os_string();
        let mut total = 0;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = base.clone();
            name.push(suffix);
            if let Ok(meta) = tokio::fs::metadata(&name).await {
                total += meta.len();
            }
        }
        Ok(Some(total))
    }

    async fn ended_tasks_before(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.read(move |conn| crate::sqlite_lifecycle::ended_tasks_before(conn, before_ms, limit))
            .await
    }
}
