//! Deletion and file listing on SQLite (the [`crate::TaskStore`] methods
//! `delete_task`, `delete_file`, `list_files`; issue 15). Logs and attempts
//! go with their task (`ON DELETE CASCADE`, foreign keys are on).

use rusqlite::{params, Connection, OptionalExtension};

use crate::file_page::file_cursor;
use crate::rows::file_from_row;
use crate::{FileAccess, FileRecord, Page, StoreError};

pub(crate) fn delete_task(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM tasks WHERE id = ?1")?
        .execute([id])?
        > 0)
}

pub(crate) fn delete_file(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM files WHERE id = ?1")?
        .execute([id])?
        > 0)
}

pub(crate) fn list_files(
    conn: &Connection,
    limit: usize,
    after: Option<(i64, String)>,
    team: Option<String>,
) -> Result<Page<FileRecord>, StoreError> {
    let (ms, id) = after.unwrap_or((i64::MAX, String::new()));
    let unbounded = ms == i64::MAX;
    // One more than the page: whether there is a next one.
    let mut rows: Vec<FileRecord> = conn
        .prepare_cached(
            "SELECT id, filename, content_type, size, uploaded, created_at_ms FROM files \
             WHERE (?1 OR created_at_ms < ?2 OR (created_at_ms = ?2 AND id < ?3)) \
             AND (?5 IS NULL OR COALESCE(team, 'default') = ?5) \
             ORDER BY created_at_ms DESC, id DESC LIMIT ?4",
        )?
        .query_map(
            params![unbounded, ms, id, (limit + 1) as i64, team],
            file_from_row,
        )?
        .collect::<Result<_, _>>()?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(file_cursor)
    } else {
        None
    };
    Ok(Page {
        items: rows,
        next_cursor,
    })
}

/// File `id`'s team and public flag (None: no such file).
pub(crate) fn file_access(conn: &Connection, id: &str) -> Result<Option<FileAccess>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT team, public FROM files WHERE id = ?1")?
        .query_row(params![id], |row| {
            Ok(FileAccess {
                team: row.get(0)?,
                public: row.get::<_, i64>(1)? != 0,
            })
        })
        .optional()?)
}

/// Ended tasks (status 10-13) last updated before `before_ms`, oldest
/// first, at most `limit` (the retention sweep's batch).
pub(crate) fn ended_tasks_before(
    conn: &Connection,
    before_ms: i64,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM tasks WHERE status >= 10 AND status <= 13 AND updated_at_ms < ?1 \
             ORDER BY updated_at_ms, id LIMIT ?2",
        )?
        .query_map(params![before_ms, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}
