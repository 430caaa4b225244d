//! The `tasks` table on PostgreSQL: insert, status/output/end updates, one
//! task, a page of tasks, the tasks in some statuses. Each is one statement
//! (autocommitted: durable when it returns, with the server's default
//! `synchronous_commit = on`), prepared once per connection.

use deadpool_postgres::{Client, GenericClient};
use infsh_core::Payload;
use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::migrate::TASK_SEQ;
use super::rows::raw_task;
use crate::rows::TASK_COLUMNS;
use crate::{Page, StoreError, TaskFilter, TaskRecord, TaskStatus, MAX_PAGE};

fn to_json(v: &Value) -> String {
    serde_json::to_string(v).expect("a JSON value serializes")
}

pub(crate) fn status_code(s: TaskStatus) -> i32 {
    i32::from(u8::from(s))
}

pub(crate) fn not_found(kind: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_string(),
    }
}

/// Inserts `t`, owned by API node `node` (None: by no node in particular).
pub(crate) async fn insert(
    client: &impl GenericClient,
    t: &TaskRecord,
    node: Option<&str>,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO tasks (seq, id, app, function_name, input, setup, status, output, error, \
             webhook, session_id, metadata, timeout_secs, created_at_ms, updated_at_ms, node, team, run_at_ms) \
             VALUES (nextval('{TASK_SEQ}'), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ))
        .await?;
    client
        .execute(
            &stmt,
            &[
                &t.id,
                &t.app,
                &t.function,
                &to_json(&t.input),
                &to_json(&t.setup),
                &status_code(t.status),
                &t.output.as_ref().map(|o| o.json_text().into_owned()),
                &t.error,
                &t.webhook,
                &t.session_id,
                &to_json(&t.metadata),
                &t.timeout_secs,
                &t.created_at_ms,
                &t.updated_at_ms,
                &node,
                &t.team,
                &t.run_at_ms,
            ],
        )
        .await?;
    Ok(())
}

/// Runs an UPDATE of task `id` (always `$1`); `NotFound` if no row changed.
async fn update_one(
    client: &Client,
    id: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), StoreError> {
    let stmt = client.prepare_cached(sql).await?;
    if client.execute(&stmt, params).await? == 0 {
        return Err(not_found("task", id));
    }
    Ok(())
}

// A node writes a task only while it is its own (`node`, or none): one that
// another node took over (this one was presumed lost: docs/deploy.md, "API
// node lost") is answered `NotFound`, so its late writes never overwrite the
// taker's, and the first end stands.

pub(crate) async fn update_status(
    client: &Client,
    id: &str,
    status: TaskStatus,
    at_ms: i64,
    node: Option<&str>,
) -> Result<(), StoreError> {
    update_one(
        client,
        id,
        "UPDATE tasks SET status = $2, updated_at_ms = $3 WHERE id = $1 \
         AND ($4::TEXT IS NULL OR node IS NULL OR node = $4)",
        &[&id, &status_code(status), &at_ms, &node],
    )
    .await
}

pub(crate) async fn update_output(
    client: &Client,
    id: &str,
    output: &Payload,
    at_ms: i64,
    node: Option<&str>,
) -> Result<(), StoreError> {
    update_one(
        client,
        id,
        "UPDATE tasks SET output = $2, updated_at_ms = $3 WHERE id = $1 \
         AND ($4::TEXT IS NULL OR node IS NULL OR node = $4)",
        &[&id, &output.json_text().as_ref(), &at_ms, &node],
    )
    .await
}

/// Also ends the task's open attempt (a run taken over from a lost node),
/// in the same statement: no round trip more for the usual task, which has
/// none.
pub(crate) async fn finish(
    client: &Client,
    id: &str,
    status: TaskStatus,
    output: Option<&Payload>,
    error: Option<&str>,
    at_ms: i64,
    node: Option<&str>,
) -> Result<(), StoreError> {
    let output = output.map(|o| o.json_text());
    let outcome = match status {
        TaskStatus::Completed => "completed",
        TaskStatus::Cancelled => "cancelled",
        _ => "failed",
    };
    let stmt = client
        .prepare_cached(
            "WITH done AS (UPDATE tasks SET status = $2, output = $3, error = $4, \
             updated_at_ms = $5 WHERE id = $1 \
             AND ($6::TEXT IS NULL OR node IS NULL OR node = $6) RETURNING id), \
             ended AS (UPDATE task_attempts SET ended_at_ms = $5, outcome = $7 \
             WHERE task_id IN (SELECT id FROM done) AND outcome IS NULL) \
             SELECT COUNT(*) FROM done",
        )
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &id,
                &status_code(status),
                &output.as_deref(),
                &error,
                &at_ms,
                &node,
                &outcome,
            ],
        )
        .await?;
    if row.try_get::<_, i64>(0)? == 0 {
        return Err(not_found("task", id));
    }
    Ok(())
}

pub(crate) async fn get(client: &Client, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
        .await?;
    match client.query_opt(&stmt, &[&id]).await? {
        Some(row) => Ok(Some(raw_task(&row)?.decode()?.1)),
        None => Ok(None),
    }
}

/// The tasks among `ids` with their log counts, in one statement.
pub(crate) async fn with_log_counts(
    client: &Client,
    ids: &[String],
) -> Result<Vec<(TaskRecord, usize)>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS}, \
             (SELECT COUNT(*) FROM task_logs l WHERE l.task_id = t.id) \
             FROM tasks t WHERE t.id = ANY($1)"
        ))
        .await?;
    client
        .query(&stmt, &[&ids])
        .await?
        .iter()
        .map(|row| {
            let logs: i64 = row.try_get(17)?;
            Ok((
                raw_task(row)?.decode()?.1,
                usize::try_from(logs).unwrap_or(0),
            ))
        })
        .collect()
}

/// The same paging as SQLite's: newest first by `seq`, the cursor is the
/// last item's `seq` (a positive integer), a page has `next_cursor` only if
/// more follow.
pub(crate) async fn list(
    client: &Client,
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
    let status = filter.status.map(status_code);
    let fetch = limit as i64 + 1;
    let mut clauses = Vec::new();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(app) = &filter.app {
        params.push(app);
        clauses.push(format!("app = ${}", params.len()));
    }
    if let Some(status) = &status {
        params.push(status);
        clauses.push(format!("status = ${}", params.len()));
    }
    if let Some(team) = &filter.team {
        params.push(team);
        clauses.push(format!("COALESCE(team, 'default') = ${}", params.len()));
    }
    if let Some(before) = &before {
        params.push(before);
        clauses.push(format!("seq < ${}", params.len()));
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    params.push(&fetch);
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks {filter_sql} ORDER BY seq DESC LIMIT ${}",
        params.len()
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &params).await?;
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(rows.len().min(limit));
    let mut last_seq = None;
    for row in rows.iter().take(limit) {
        let (seq, task) = raw_task(row)?.decode()?;
        last_seq = Some(seq);
        items.push(task);
    }
    let next_cursor = if more {
        last_seq.map(|s| s.to_string())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// Oldest first. With `node`, only that node's tasks and those of no node
/// (what its start-up recovery may touch; another node's are its own).
pub(crate) async fn with_status(
    client: &Client,
    statuses: &[TaskStatus],
    node: Option<&str>,
) -> Result<Vec<TaskRecord>, StoreError> {
    if statuses.is_empty() {
        return Ok(Vec::new());
    }
    let codes: Vec<i32> = statuses.iter().copied().map(status_code).collect();
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE status = ANY($1) \
             AND ($2::TEXT IS NULL OR node IS NULL OR node = $2) ORDER BY seq"
        ))
        .await?;
    client
        .query(&stmt, &[&codes, &node])
        .await?
        .iter()
        .map(|row| raw_task(row)?.decode().map(|(_, t)| t))
        .collect()
}
