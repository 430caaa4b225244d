//! [`SqliteStore`]: the default [`TaskStore`], one SQLite file in WAL mode.
//!
//! Two connections: one for writes and one for reads (WAL lets readers run
//! beside the writer), each behind a std mutex that is only ever taken inside
//! `spawn_blocking`, so no async thread blocks on SQLite and no lock is held
//! across an `.await`. `synchronous=FULL`: a commit is on disk when the call
//! returns, so a task is durable once `insert_task` resolved.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::Value;

use crate::migrations::migrate;
use crate::rows::{file_from_row, RawTask, TASK_COLUMNS};
use crate::store::{TaskFilter, TaskStore};
use crate::{FileRecord, LogEntry, LogType, Page, StoreError, TaskRecord, TaskStatus};

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest page a listing returns.
pub const MAX_PAGE: usize = 1000;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Conns>,
}

struct Conns {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
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
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies
    /// pending migrations. Blocking: call it off the async threads.
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
        Ok(SqliteStore {
            inner: Arc::new(Conns {
                path,
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
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

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
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
        .query_row(
            "SELECT id, filename, content_type, size, uploaded, created_at_ms FROM files WHERE id = ?1",
            [id],
            file_from_row,
        )
        .optional()?)
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn insert_task(&self, task: &TaskRecord) -> Result<(), StoreError> {
        let t = task.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO tasks (seq, id, app, function_name, input, setup, status, output, error, \
                 webhook, session_id, metadata, timeout_secs, created_at_ms, updated_at_ms) \
                 VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks), \
                 ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
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
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn update_status(
        &self,
        id: &str,
        status: TaskStatus,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            let n = conn.execute(
                "UPDATE tasks SET status = ?2, updated_at_ms = ?3 WHERE id = ?1",
                params![id, u8::from(status), at_ms],
            )?;
            if n == 0 {
                return Err(not_found("task", &id));
            }
            Ok(())
        })
        .await
    }

    async fn update_output(&self, id: &str, output: &Value, at_ms: i64) -> Result<(), StoreError> {
        let id = id.to_string();
        let output = to_json(output);
        self.write(move |conn| {
            let n = conn.execute(
                "UPDATE tasks SET output = ?2, updated_at_ms = ?3 WHERE id = ?1",
                params![id, output, at_ms],
            )?;
            if n == 0 {
                return Err(not_found("task", &id));
            }
            Ok(())
        })
        .await
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
            let n = conn.execute(
                "UPDATE tasks SET status = ?2, output = ?3, error = ?4, updated_at_ms = ?5 WHERE id = ?1",
                params![id, u8::from(status), output, error, at_ms],
            )?;
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
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let last: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM task_logs WHERE task_id = ?1",
                [&id],
                |r| r.get(0),
            )?;
            {
                let mut insert = tx.prepare_cached(
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
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            let raw = conn
                .query_row(
                    &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"),
                    [&id],
                    RawTask::from_row,
                )
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
            let mut stmt = conn.prepare(&sql)?;
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
            let mut stmt = conn.prepare(&format!(
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
            conn.execute(
                "INSERT INTO files (id, filename, content_type, size, uploaded, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    f.id,
                    f.filename,
                    f.content_type,
                    f.size.map(|s| s as i64),
                    i64::from(f.uploaded),
                    f.created_at_ms
                ],
            )?;
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
            let n = conn.execute(
                "UPDATE files SET uploaded = 1, size = ?2 WHERE id = ?1",
                params![id, size as i64],
            )?;
            if n == 0 {
                return Err(not_found("file", &id));
            }
            get_file(conn, &id)?.ok_or_else(|| not_found("file", &id))
        })
        .await
    }
}
