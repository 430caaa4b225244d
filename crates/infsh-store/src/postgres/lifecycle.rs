//! Deletion and file listing on PostgreSQL (the [`crate::TaskStore`]
//! methods `delete_task`, `delete_file`, `list_files`; issue 15). Logs and
//! attempts go with their task (`ON DELETE CASCADE`).

use deadpool_postgres::Client;

use super::rows::{file, FILE_COLUMNS};
use crate::file_page::file_cursor;
use crate::{FileRecord, Page, StoreError};

pub(crate) async fn delete_task(client: &Client, id: &str) -> Result<bool, StoreError> {
    let stmt = client
        .prepare_cached("DELETE FROM tasks WHERE id = $1")
        .await?;
    Ok(client.execute(&stmt, &[&id]).await? > 0)
}

pub(crate) async fn delete_file(client: &Client, id: &str) -> Result<bool, StoreError> {
    let stmt = client
        .prepare_cached("DELETE FROM files WHERE id = $1")
        .await?;
    Ok(client.execute(&stmt, &[&id]).await? > 0)
}

pub(crate) async fn list_files(
    client: &Client,
    limit: usize,
    after: Option<(i64, String)>,
    team: Option<&str>,
) -> Result<Page<FileRecord>, StoreError> {
    let unbounded = after.is_none();
    let (ms, id) = after.unwrap_or((i64::MAX, String::new()));
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files \
             WHERE ($1 OR created_at_ms < $2 OR (created_at_ms = $2 AND id < $3)) \
             AND ($5::TEXT IS NULL OR COALESCE(team, 'default') = $5) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $4"
        ))
        .await?;
    let rows = client
        .query(&stmt, &[&unbounded, &ms, &id, &((limit + 1) as i64), &team])
        .await?;
    let mut items = rows.iter().map(file).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(file_cursor)
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// Ended tasks (status 10-13) last updated before `before_ms`, oldest
/// first, at most `limit` (the retention sweep's batch).
pub(crate) async fn ended_tasks_before(
    client: &Client,
    before_ms: i64,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT id FROM tasks WHERE status >= 10 AND status <= 13 AND updated_at_ms < $1 \
             ORDER BY updated_at_ms, id LIMIT $2",
        )
        .await?;
    let rows = client.query(&stmt, &[&before_ms, &(limit as i64)]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
