//! API nodes' heartbeats and the takeover of a lost node's own-worker
//! tasks (`crate::nodes`). A takeover is one transaction: the lost nodes
//! are those whose beat is older than a lease; their open tasks of the
//! taker's apps are locked `FOR UPDATE SKIP LOCKED` (two live nodes taking
//! over at once split them, never share one) and moved to the taker, so
//! the lost node, restarting, finds none of them its own.

use deadpool_postgres::GenericClient;

use super::rows::raw_task;
use super::tasks::status_code;
use crate::nodes::{node_attempt_name, node_lost_message, TakenOver};
use crate::rows::TASK_COLUMNS;
use crate::{StoreError, TaskStatus};

pub(crate) async fn heartbeat(
    client: &impl GenericClient,
    node: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO api_nodes (id, last_heartbeat_ms) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET last_heartbeat_ms = EXCLUDED.last_heartbeat_ms",
        )
        .await?;
    client.execute(&stmt, &[&node, &at_ms]).await?;
    Ok(())
}

/// Moves the open own-worker tasks of apps `apps` from lost nodes to `me`
/// (see the module docs); running ones count an attempt `lost` and are
/// queued again below `max_attempts`, else FAILED `node lost: <id>`.
pub(crate) async fn take_over(
    client: &impl GenericClient,
    me: &str,
    apps: &[String],
    now_ms: i64,
    lease_ms: i64,
    max_attempts: u32,
) -> Result<Vec<TakenOver>, StoreError> {
    use TaskStatus::*;
    let stmt = client
        .prepare_cached("SELECT id FROM api_nodes WHERE id <> $1 AND last_heartbeat_ms < $2")
        .await?;
    let lost: Vec<String> = client
        .query(&stmt, &[&me, &(now_ms - lease_ms)])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    if lost.is_empty() || apps.is_empty() {
        return Ok(Vec::new());
    }
    let waiting = [Received, Queued];
    let running = [
        Dispatched, Preparing, Serving, SettingUp, Running, Cancelling, Uploading,
    ];
    let open: Vec<i32> = waiting
        .iter()
        .chain(running.iter())
        .copied()
        .map(status_code)
        .collect();
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS}, node FROM tasks WHERE node = ANY($1) AND app = ANY($2) \
             AND status = ANY($3) AND remote = 0 ORDER BY seq FOR UPDATE SKIP LOCKED"
        ))
        .await?;
    let rows = client.query(&stmt, &[&lost, &apps, &open]).await?;
    let mut taken = Vec::with_capacity(rows.len());
    for row in &rows {
        let (_, mut task) = raw_task(row)?.decode()?;
        let from_node: String = row.try_get(17)?;
        let lost_attempt = if running.contains(&task.status) {
            Some(end_lost_run(client, &task.id, &from_node, task.updated_at_ms, now_ms).await?)
        } else {
            // Queued again by an earlier takeover and never run there: its
            // next run is this node's.
            let stmt = client
                .prepare_cached(
                    "UPDATE task_attempts SET engine = $2, claimed_at_ms = $3 \
                     WHERE task_id = $1 AND outcome IS NULL",
                )
                .await?;
            client
                .execute(&stmt, &[&task.id, &node_attempt_name(me), &now_ms])
                .await?;
            None
        };
        let fails = lost_attempt.is_some_and(|a| a >= max_attempts);
        task.updated_at_ms = now_ms;
        if fails {
            task.status = Failed;
            task.error = Some(node_lost_message(&from_node));
        } else {
            task.status = Queued;
            task.output = None;
        }
        let stmt = client
            .prepare_cached(
                "UPDATE tasks SET node = $2, status = $3, output = $4, error = $5, \
                 updated_at_ms = $6 WHERE id = $1",
            )
            .await?;
        let output = task.output.as_ref().map(|o| o.json_text().into_owned());
        client
            .execute(
                &stmt,
                &[
                    &task.id,
                    &me,
                    &status_code(task.status),
                    &output,
                    &task.error,
                    &now_ms,
                ],
            )
            .await?;
        if let (Some(attempt), false) = (lost_attempt, fails) {
            // Its next run, here: ended by this node's finish of the task.
            let stmt = client
                .prepare_cached(
                    "INSERT INTO task_attempts (task_id, attempt, engine, claimed_at_ms) \
                     VALUES ($1, $2, $3, $4)",
                )
                .await?;
            client
                .execute(
                    &stmt,
                    &[
                        &task.id,
                        &(attempt as i32 + 1),
                        &node_attempt_name(me),
                        &now_ms,
                    ],
                )
                .await?;
        }
        taken.push(TakenOver {
            task,
            from_node,
            lost_attempt,
        });
    }
    Ok(taken)
}

/// Ends the run of `task` on lost node `node` as `lost`: its open attempt
/// (it was taken over before), or a new one recorded now (its first runs
/// on a node's own workers record none). Returns the attempt's number.
async fn end_lost_run(
    client: &impl GenericClient,
    task: &str,
    node: &str,
    last_change_ms: i64,
    now_ms: i64,
) -> Result<u32, StoreError> {
    let stmt = client
        .prepare_cached(
            "UPDATE task_attempts SET ended_at_ms = $2, outcome = 'lost' \
             WHERE task_id = $1 AND outcome IS NULL RETURNING attempt",
        )
        .await?;
    if let Some(row) = client.query_opt(&stmt, &[&task, &now_ms]).await? {
        return Ok(row.try_get::<_, i32>(0)?.max(0) as u32);
    }
    let stmt = client
        .prepare_cached("SELECT COALESCE(MAX(attempt), 0) FROM task_attempts WHERE task_id = $1")
        .await?;
    let attempt: i32 = client
        .query_one(&stmt, &[&task])
        .await?
        .try_get::<_, i32>(0)?
        + 1;
    // When it started there is not known; its last change is.
    let stmt = client
        .prepare_cached(
            "INSERT INTO task_attempts \
             (task_id, attempt, engine, claimed_at_ms, ended_at_ms, outcome) \
             VALUES ($1, $2, $3, $4, $5, 'lost')",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &task,
                &attempt,
                &node_attempt_name(node),
                &last_change_ms,
                &now_ms,
            ],
        )
        .await?;
    Ok(attempt.max(0) as u32)
}
