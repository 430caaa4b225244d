//! [`SqliteStore`]: the default [`TaskStore`], one SQLite file in WAL mode.
//!
//! Writes go through one writer thread that owns the write connection and
//! does group commit: it takes every write queued since its last commit,
//! applies them in ONE transaction (each in a savepoint, so one failing
//! write fails alone), commits once and then answers each caller through a
//! oneshot. Concurrent tasks share commits, and no async thread blocks on
//! SQLite (no `spawn_blocking` hop per write).
//!
//! `synchronous=FULL`: a commit is on disk when it returns, so a durable
//! write ([`TaskStore::insert_task`], [`TaskStore::update_status`],
//! [`TaskStore::finish_task`], ...) is on disk when its future resolves.
//! The `*_deferred` writes only queue: they are committed, in order, with
//! the next durable write or at most [`DEFERRED_LINGER`] later. After a
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
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::migrations::migrate;
use crate::rows::{file_from_row, RawTask, TASK_COLUMNS};
use crate::store::{TaskFilter, TaskStore};
use crate::{FileRecord, LogEntry, LogType, Page, StoreError, TaskRecord, TaskStatus};

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest page a listing returns.
pub const MAX_PAGE: usize = 1000;
/// Longest a deferred write waits for a durable one to share its commit.
pub const DEFERRED_LINGER: Duration = Duration::from_millis(50);
/// Most writes applied in one transaction.
const MAX_BATCH: usize = 1024;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// Called once the batch holding a write committed (`None`) or failed.
type Done = Box<dyn FnOnce(Option<&str>) + Send>;
/// One write. Given the writer connection inside the batch's transaction
/// (or why there is none), it runs and says whether it succeeded (a failed
/// write's changes are rolled back alone) and what to do after the commit.
type Op = Box<dyn FnOnce(Result<&Connection, &str>) -> (bool, Done) + Send>;

struct Msg {
    op: Op,
    /// Someone waits for the commit: do not linger.
    durable: bool,
}

/// The writer's queue. Unlike a channel it does not wake the writer for
/// every write: only for a durable one (someone waits for it) and for the
/// first deferred one into an empty queue (which starts the linger). A
/// request's three deferred writes and its durable end then cost the
/// writer thread two wake-ups instead of four.
#[derive(Default)]
struct WriteQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

#[derive(Default)]
struct QueueState {
    msgs: VecDeque<Msg>,
    /// A durable write is queued: commit now.
    durable: bool,
    /// No more writes come (the store is being dropped).
    closed: bool,
}

impl WriteQueue {
    fn push(&self, msg: Msg) -> Result<(), StoreError> {
        let mut q = lock(&self.state);
        if q.closed {
            return Err(StoreError::Task("the store is closed".into()));
        }
        let wake = msg.durable || q.msgs.is_empty();
        q.durable |= msg.durable;
        q.msgs.push_back(msg);
        drop(q);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_one();
    }

    /// The next batch, in queue order: at once when a durable write is
    /// queued (or MAX_BATCH are), else once the first deferred write has
    /// lingered DEFERRED_LINGER. None once closed and empty.
    fn next_batch(&self) -> Option<Vec<Msg>> {
        let mut q = lock(&self.state);
        while q.msgs.is_empty() {
            if q.closed {
                return None;
            }
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        let deadline = Instant::now() + DEFERRED_LINGER;
        while !q.durable && !q.closed && q.msgs.len() < MAX_BATCH {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            q = self
                .wake
                .wait_timeout(q, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let n = q.msgs.len().min(MAX_BATCH);
        let batch: Vec<Msg> = q.msgs.drain(..n).collect();
        q.durable = q.msgs.iter().any(|m| m.durable);
        Some(batch)
    }
}

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
    commits: Arc<AtomicU64>,
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

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite did not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// The writer thread: group commit until the queue is closed and empty.
fn writer_loop(conn: Connection, queue: Arc<WriteQueue>, commits: Arc<AtomicU64>) {
    while let Some(batch) = queue.next_batch() {
        apply(&conn, batch, &commits);
    }
}

/// Applies a batch in one transaction, each write in a savepoint, commits
/// once, then answers every write.
fn apply(conn: &Connection, batch: Vec<Msg>, commits: &AtomicU64) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let message = format!("cannot begin a write transaction: {e}");
        for m in batch {
            let (_, done) = (m.op)(Err(&message));
            done(Some(&message));
        }
        return;
    }
    let mut dones = Vec::with_capacity(batch.len());
    for m in batch {
        if let Err(e) = exec(conn, "SAVEPOINT op") {
            let message = format!("cannot start a write: {e}");
            let (_, done) = (m.op)(Err(&message));
            dones.push(done);
            continue;
        }
        let (ok, done) = match catch_unwind(AssertUnwindSafe(|| (m.op)(Ok(conn)))) {
            Ok(r) => r,
            // The waiter's oneshot was dropped while unwinding: it sees an error.
            Err(_) => (false, Box::new(|_: Option<&str>| {}) as Done),
        };
        if !ok {
            let _ = exec(conn, "ROLLBACK TO op");
        }
        let _ = exec(conn, "RELEASE op");
        dones.push(done);
    }
    let message = match exec(conn, "COMMIT") {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Some(format!("commit failed: {e}"))
        }
    };
    for done in dones {
        done(message.as_deref());
    }
}

/// A write's error, also for deferred ones nobody waits on.
fn log_deferred_error(e: &str) {
    tracing::error!(error = %e, "a deferred store write failed");
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies pending
    /// migrations and starts the writer thread. Blocking: call it off the
    /// async threads.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::io("cannot create", parent, e))?;
        }
        let mut writer = Connection::open(&path)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        let reader = Connection::open(&path)?;
        configure(&reader)?;
        let commits = Arc::new(AtomicU64::new(0));
        let queue = Arc::new(WriteQueue::default());
        let thread_queue = queue.clone();
        let thread_commits = commits.clone();
        let handle = std::thread::Builder::new()
            .name("infsh-store-writer".into())
            .spawn(move || writer_loop(writer, thread_queue, thread_commits))
            .map_err(|e| StoreError::Task(format!("cannot start the store writer: {e}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Conns {
                path,
                pending_inserts: Arc::default(),
                queue,
                writer: Mutex::new(Some(handle)),
                reader: Mutex::new(reader),
                commits,
            }),
        })
    }

    /// [`SqliteStore::open`] on a blocking thread.
    pub async fn open_async(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || SqliteStore::open(path))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many write transactions the writer committed since this store
    /// was opened (each is one WAL fsync): for tests and diagnostics.
    pub fn commit_count(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    fn send(&self, msg: Msg) -> Result<(), StoreError> {
        self.inner.queue.push(msg)
    }

    /// Queues a write and waits until it is committed (durable).
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => f(conn),
                Err(e) => Err(StoreError::Task(e.to_string())),
            };
            let ok = result.is_ok();
            let done: Done = Box::new(move |commit| {
                let result = match commit {
                    Some(e) if result.is_ok() => Err(StoreError::Task(e.to_string())),
                    _ => result,
                };
                let _ = tx.send(result);
            });
            (ok, done)
        });
        self.send(Msg { op, durable: true })?;
        rx.await
            .map_err(|_| StoreError::Task("the store writer dropped a write".into()))?
    }

    /// Queues a write to be committed with the next batch; returns at once.
    /// Its failure is logged.
    fn write_deferred(
        &self,
        f: impl FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        let op: Op = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => f(conn).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let ok = result.is_ok();
            let done: Done = Box::new(move |commit| match (result, commit) {
                (Err(e), _) => log_deferred_error(&e),
                (Ok(()), Some(e)) => log_deferred_error(e),
                (Ok(()), None) => {}
            });
            (ok, done)
        });
        self.send(Msg { op, durable: false })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = lock(&inner.reader);
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn to_json(v: &Value) -> String {
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

fn insert_task(conn: &Connection, t: &TaskRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO tasks (seq, id, app, function_name, input, setup, status, output, error, \
         webhook, session_id, metadata, timeout_secs, created_at_ms, updated_at_ms) \
         VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks), \
         ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        t.id,
        t.app,
        t.function,
        to_json(&t.input),
        to_json(&t.setup),
        u8::from(t.status),
        t.output.as_ref().map(to_json),
        t.error,
        t.webhook,
        t.session_id,
        to_json(&t.metadata),
        t.timeout_secs,
        t.created_at_ms,
        t.updated_at_ms,
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
fn append_logs(conn: &Connection, id: &str, logs: &[LogEntry]) -> Result<(), StoreError> {
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
        self.write(|_| Ok(())).await
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

    async fn update_output(&self, id: &str, output: &Value, at_ms: i64) -> Result<(), StoreError> {
        let id = id.to_string();
        let output = to_json(output);
        self.write(move |conn| update_output(conn, &id, &output, at_ms))
            .await
    }

    async fn update_output_deferred(
        &self,
        id: &str,
        output: &Value,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let output = to_json(output);
        self.write_deferred(move |conn| update_output(conn, &id, &output, at_ms))
    }

    async fn finish_task(
        &self,
        id: &str,
        status: TaskStatus,
        output: Option<&Value>,
        error: Option<&str>,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let output = output.map(to_json);
        let error = error.map(str::to_string);
        self.write(move |conn| {
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
}
