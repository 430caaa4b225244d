//! `task_logs` on PostgreSQL. An append numbers its entries after the
//! task's last one; two appends to one task at once (two API nodes, or an
//! engine's report beside a node's own line) are serialised by locking the
//! task's row first, so they never draw the same numbers.

use deadpool_postgres::{Client, GenericClient};

use super::tasks::not_found;
use crate::{LogEntry, LogType, StoreError};

/// Appends `logs` in one transaction: all or none. `NotFound` for an
/// unknown task.
pub(crate) async fn append(
    client: &mut Client,
    id: &str,
    logs: &[LogEntry],
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    let lock = tx
        .prepare_cached("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE")
        .await?;
    if tx.query_opt(&lock, &[&id]).await?.is_none() {
        return Err(not_found("task", id));
    }
    append_locked(&tx, id, logs).await?;
    tx.commit().await?;
    Ok(())
}

/// Appends `logs` inside a transaction that already holds the task's row
/// lock (`SELECT ... FOR UPDATE`): [`append`], and an engine's report.
pub(crate) async fn append_locked(
    tx: &impl GenericClient,
    id: &str,
    logs: &[LogEntry],
) -> Result<(), StoreError> {
    let types: Vec<i32> = logs
        .iter()
        .map(|l| i32::from(u8::from(l.log_type)))
        .collect();
    let contents: Vec<&str> = logs.iter().map(|l| l.content.as_str()).collect();
    let ats: Vec<i64> = logs.iter().map(|l| l.at_ms).collect();
    // A statement of its own after the lock: under READ COMMITTED it sees
    // the entries of an append that held the lock before us.
    let insert = tx
        .prepare_cached(
            "INSERT INTO task_logs (task_id, seq, log_type, content, at_ms) \
             SELECT $1, last.seq + entry.n, entry.t, entry.c, entry.a \
             FROM (SELECT COALESCE(MAX(seq), 0) AS seq FROM task_logs WHERE task_id = $1) AS last, \
             UNNEST($2::INTEGER[], $3::TEXT[], $4::BIGINT[]) WITH ORDINALITY AS entry (t, c, a, n)",
        )
        .await?;
    tx.execute(&insert, &[&id, &types, &contents, &ats]).await?;
    Ok(())
}

/// The first entries of a task inserted in the same transaction (its
/// deferred insert): numbered from 1, no lock needed.
pub(crate) async fn insert_first(
    client: &impl GenericClient,
    id: &str,
    logs: &[LogEntry],
) -> Result<(), StoreError> {
    if logs.is_empty() {
        return Ok(());
    }
    let types: Vec<i32> = logs
        .iter()
        .map(|l| i32::from(u8::from(l.log_type)))
        .collect();
    let contents: Vec<&str> = logs.iter().map(|l| l.content.as_str()).collect();
    let ats: Vec<i64> = logs.iter().map(|l| l.at_ms).collect();
    let insert = client
        .prepare_cached(
            "INSERT INTO task_logs (task_id, seq, log_type, content, at_ms) \
             SELECT $1, entry.n, entry.t, entry.c, entry.a \
             FROM UNNEST($2::INTEGER[], $3::TEXT[], $4::BIGINT[]) WITH ORDINALITY AS entry (t, c, a, n)",
        )
        .await?;
    client
        .execute(&insert, &[&id, &types, &contents, &ats])
        .await?;
    Ok(())
}

/// Oldest first.
pub(crate) async fn get(client: &Client, id: &str) -> Result<Vec<LogEntry>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT log_type, content, at_ms FROM task_logs WHERE task_id = $1 ORDER BY seq",
        )
        .await?;
    client
        .query(&stmt, &[&id])
        .await?
        .iter()
        .map(|row| {
            let t: i32 = row.try_get(0)?;
            let log_type = u8::try_from(t)
                .map_err(|_| t.to_string())
                .and_then(LogType::try_from)
                .map_err(|message| StoreError::Corrupt {
                    id: id.to_string(),
                    message,
                })?;
            Ok(LogEntry {
                log_type,
                content: row.try_get(1)?,
                at_ms: row.try_get(2)?,
            })
        })
        .collect()
}
