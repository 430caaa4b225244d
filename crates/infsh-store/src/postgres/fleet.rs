//! [`FleetStore`] for [`PostgresStore`]: the engines, queue and leases that
//! several API nodes share. The rules are `fleet.rs`'s (the contract tests
//! in `tests/fleet_contract.rs` run on both stores); what differs from
//! SQLite is how concurrent nodes are kept apart:
//! - a claim picks and leases its rows in one `UPDATE ... WHERE id IN
//!   (SELECT ... FOR UPDATE SKIP LOCKED)`: two nodes claiming at once take
//!   different rows and never wait on each other;
//! - a report, a cancel and a heartbeat's extension lock the task's row
//!   (`FOR UPDATE`) before they read its lease, so the check and the write
//!   are one step against a sweep or a claim on another node;
//! - the sweep locks expired rows with `SKIP LOCKED`: two nodes sweeping at
//!   once end each lease once, and a row a report holds is left to the
//!   next sweep (the report may well end it).

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;

use super::rows::raw_task;
use super::{fleet_sessions, logs, tasks, PostgresStore};
use crate::fleet::{
    app_hashes, engine_lost_message, AttemptRecord, CancelOutcome, ClaimRequest, ClaimedTask,
    EngineApp, EngineRecord, EngineRegistration, EngineSession, Expired, FailedCall, FleetError,
    FleetSession, FleetStore, HeartbeatOutcome, Report, SessionChange, WARM_GRACE_MS,
};
use crate::rows::TASK_COLUMNS;
use crate::{StoreError, TaskRecord, TaskStatus};

const ENGINE_COLUMNS: &str =
    "name, version, slots, apps, draining, registered_at_ms, last_heartbeat_ms";

fn to_json(v: &Value) -> String {
    serde_json::to_string(v).expect("a JSON value serializes")
}

fn code(s: TaskStatus) -> i32 {
    i32::from(u8::from(s))
}

fn corrupt_json(id: &str, field: &'static str, source: serde_json::Error) -> StoreError {
    StoreError::CorruptJson {
        id: id.to_string(),
        field,
        source,
    }
}

fn decode_status(id: &str, n: i32) -> Result<TaskStatus, StoreError> {
    u8::try_from(n)
        .ok()
        .and_then(|n| TaskStatus::try_from(n).ok())
        .ok_or_else(|| StoreError::Corrupt {
            id: id.to_string(),
            message: format!("status {n}"),
        })
}

fn outcome_of(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Completed => "completed",
        TaskStatus::Cancelled => "cancelled",
        _ => "failed",
    }
}

/// An `engines` row (in [`ENGINE_COLUMNS`] order) with its running tasks.
fn engine_from_row(row: &Row, running: Vec<String>) -> Result<EngineRecord, StoreError> {
    let name: String = row.try_get(0)?;
    let slots: String = row.try_get(2)?;
    let apps: String = row.try_get(3)?;
    let draining: i32 = row.try_get(4)?;
    let slots: Value = serde_json::from_str(&slots).map_err(|e| corrupt_json(&name, "slots", e))?;
    let apps: Vec<EngineApp> =
        serde_json::from_str(&apps).map_err(|e| corrupt_json(&name, "apps", e))?;
    Ok(EngineRecord {
        version: row.try_get(1)?,
        slots,
        apps,
        draining: draining != 0,
        registered_at_ms: row.try_get(5)?,
        last_heartbeat_ms: row.try_get(6)?,
        running,
        name,
    })
}

async fn running_of(client: &impl GenericClient, name: &str) -> Result<Vec<String>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT id FROM tasks WHERE leased_by = $1 AND status < 10 ORDER BY seq")
        .await?;
    Ok(client
        .query(&stmt, &[&name])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

async fn get_engine(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<EngineRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {ENGINE_COLUMNS} FROM engines WHERE name = $1"
        ))
        .await?;
    match client.query_opt(&stmt, &[&name]).await? {
        Some(row) => Ok(Some(engine_from_row(
            &row,
            running_of(client, name).await?,
        )?)),
        None => Ok(None),
    }
}

async fn list_engines(client: &impl GenericClient) -> Result<Vec<EngineRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {ENGINE_COLUMNS} FROM engines ORDER BY name"
        ))
        .await?;
    let rows = client.query(&stmt, &[]).await?;
    // Every engine's running tasks in one query, not one per engine.
    let held = client
        .prepare_cached(
            "SELECT leased_by, id FROM tasks WHERE leased_by IS NOT NULL AND status < 10 \
             ORDER BY seq",
        )
        .await?;
    let mut running: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in client.query(&held, &[]).await? {
        running.entry(row.get(0)).or_default().push(row.get(1));
    }
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            engine_from_row(row, running.remove(&name).unwrap_or_default())
        })
        .collect()
}

/// The task's status and lease holder, its row locked until the
/// transaction ends. None for an unknown task.
async fn lock_lease(
    client: &impl GenericClient,
    id: &str,
) -> Result<Option<(TaskStatus, Option<String>)>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT status, leased_by FROM tasks WHERE id = $1 FOR UPDATE")
        .await?;
    match client.query_opt(&stmt, &[&id]).await? {
        Some(row) => Ok(Some((decode_status(id, row.try_get(0)?)?, row.try_get(1)?))),
        None => Ok(None),
    }
}

async fn end_attempt(
    client: &impl GenericClient,
    id: &str,
    outcome: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(
            "UPDATE task_attempts SET ended_at_ms = $2, outcome = $3 \
             WHERE task_id = $1 AND outcome IS NULL",
        )
        .await?;
    client.execute(&stmt, &[&id, &at_ms, &outcome]).await?;
    Ok(())
}

async fn claim(
    client: &impl GenericClient,
    request: &ClaimRequest,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Vec<ClaimedTask>, StoreError> {
    let Some(engine) = get_engine(client, &request.engine).await? else {
        return Ok(Vec::new());
    };
    if engine.draining || request.max == 0 {
        return Ok(Vec::new());
    }
    // The apps it hosts with the hash they are served with.
    let served = app_hashes(&list_engines(client).await?, now_ms, lease_ms);
    let apps: Vec<&str> = engine
        .apps
        .iter()
        .filter(|a| served.get(&a.app) == Some(&a.hash))
        .map(|a| a.app.as_str())
        .collect();
    if apps.is_empty() && !request.versions {
        return Ok(Vec::new());
    }
    let lease_until_ms = now_ms + lease_ms;
    let limit = i64::try_from(request.max).unwrap_or(i64::MAX);
    // `pinned_workers` is a JSON array of slot names in a TEXT column:
    // `?|` is "shares a top-level string with the engine's slots". The
    // draining check is repeated here: this statement's snapshot is newer
    // than `get_engine`'s (READ COMMITTED), so a drain committed before a
    // task was queued is seen (else a drained engine could take it).
    // A task of an app this engine is not warm for is left, for
    // WARM_GRACE_MS after it was queued (or due), to another online engine
    // that is warm for it with a free slot (its recorded capacity above the
    // tasks it holds). The same statement records this engine's warm apps
    // and capacity for the others' claims: one round trip.
    let stmt = client
        .prepare_cached(&format!(
            "WITH picked AS (UPDATE tasks SET leased_by = $1, lease_until_ms = $2, \
               attempt = attempt + 1, status = $3, updated_at_ms = $4 \
             WHERE id IN (SELECT q.id FROM tasks q WHERE q.remote = 1 AND q.status = $5 \
               AND q.leased_by IS NULL AND q.session_id IS NULL \
               AND (q.app = ANY($6) OR ($10 AND strpos(q.app, '@') > 0)) \
               AND (q.run_at_ms IS NULL OR q.run_at_ms <= $4) \
               AND (q.pinned_workers IS NULL OR q.pinned_workers::jsonb ?| $7) \
               AND NOT EXISTS (SELECT 1 FROM engines WHERE name = $1 AND draining <> 0) \
               AND (q.app = ANY($8) \
                 OR GREATEST(q.updated_at_ms, COALESCE(q.run_at_ms, 0)) < $11 \
                 OR NOT EXISTS (SELECT 1 FROM engines o WHERE o.name <> $1 \
                   AND o.draining = 0 AND o.last_heartbeat_ms >= $12 \
                   AND o.warm::jsonb ? q.app \
                   AND o.capacity > (SELECT COUNT(*) FROM tasks h \
                     WHERE h.leased_by = o.name AND h.status < 10))) \
               ORDER BY (q.app = ANY($8)) DESC, q.seq LIMIT $9 FOR UPDATE SKIP LOCKED) \
             RETURNING {TASK_COLUMNS}, pinned_workers, attempt), \
             me AS (UPDATE engines SET warm = $13, capacity = $9 + (SELECT COUNT(*) \
               FROM tasks h WHERE h.leased_by = $1 AND h.status < 10) WHERE name = $1) \
             SELECT * FROM picked"
        ))
        .await?;
    let warm_json = serde_json::to_string(&request.warm).expect("strings serialize");
    let rows = client
        .query(
            &stmt,
            &[
                &request.engine,
                &lease_until_ms,
                &code(TaskStatus::Dispatched),
                &now_ms,
                &code(TaskStatus::Queued),
                &apps,
                &request.slots,
                &request.warm,
                &limit,
                &request.versions,
                &(now_ms - WARM_GRACE_MS),
                &(now_ms - lease_ms),
                &warm_json,
            ],
        )
        .await?;
    let mut rows = rows;
    // Session calls go one per claim, by their own rules (fleet_sessions.rs).
    if rows.len() < request.max {
        if let Some(id) = fleet_sessions::claim_one(client, request, &apps, now_ms).await? {
            let lease = client
                .prepare_cached(&format!(
                    "UPDATE tasks SET leased_by = $1, lease_until_ms = $2, attempt = attempt + 1, \
                     status = $3, updated_at_ms = $4 WHERE id = $5 \
                     RETURNING {TASK_COLUMNS}, pinned_workers, attempt"
                ))
                .await?;
            rows.push(
                client
                    .query_one(
                        &lease,
                        &[
                            &request.engine,
                            &lease_until_ms,
                            &code(TaskStatus::Dispatched),
                            &now_ms,
                            &id,
                        ],
                    )
                    .await?,
            );
        }
    }
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        let (seq, task) = raw_task(row)?.decode()?;
        let pinned: Option<String> = row.try_get(17)?;
        let attempt: i32 = row.try_get(18)?;
        let pinned_workers = pinned
            .map(|p| {
                serde_json::from_str(&p).map_err(|e| corrupt_json(&task.id, "pinned_workers", e))
            })
            .transpose()?;
        claimed.push((
            seq,
            ClaimedTask {
                task,
                attempt: attempt.max(0) as u32,
                lease_until_ms,
                pinned_workers,
            },
        ));
    }
    // RETURNING has no order: warm apps first, then oldest first.
    let warm: HashSet<&str> = request.warm.iter().map(String::as_str).collect();
    claimed.sort_by_key(|(seq, c)| (!warm.contains(c.task.app.as_str()), *seq));
    let insert = client
        .prepare_cached(
            "INSERT INTO task_attempts (task_id, attempt, engine, claimed_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .await?;
    for (_, c) in &claimed {
        let attempt = c.attempt as i32;
        client
            .execute(&insert, &[&c.task.id, &attempt, &request.engine, &now_ms])
            .await?;
    }
    Ok(claimed.into_iter().map(|(_, c)| c).collect())
}

async fn heartbeat(
    client: &impl GenericClient,
    engine: &str,
    holding: &[String],
    now_ms: i64,
    lease_ms: i64,
) -> Result<HeartbeatOutcome, FleetError> {
    let touch = client
        .prepare_cached("UPDATE engines SET last_heartbeat_ms = $2 WHERE name = $1")
        .await
        .map_err(StoreError::from)?;
    if client
        .execute(&touch, &[&engine, &now_ms])
        .await
        .map_err(StoreError::from)?
        == 0
    {
        return Err(FleetError::UnknownEngine(engine.to_string()));
    }
    let lease_until_ms = now_ms + lease_ms;
    // Only the leases the engine lists are extended: a task leased to it
    // that it does not know of (a claim answer lost on the wire) must
    // expire and run again, not stay leased for as long as it beats.
    // RETURNING names the listed tasks it still holds (after any sweep that
    // got the row lock first and took them away).
    let extend = client
        .prepare_cached(
            "UPDATE tasks SET lease_until_ms = $2 \
             WHERE leased_by = $1 AND status < 10 AND id = ANY($3) \
             RETURNING id, cancel_requested, seq",
        )
        .await
        .map_err(StoreError::from)?;
    let mut held: Vec<(i64, String, bool)> = client
        .query(&extend, &[&engine, &lease_until_ms, &holding])
        .await
        .map_err(StoreError::from)?
        .iter()
        .map(|r| (r.get(2), r.get(0), r.get::<_, i32>(1) != 0))
        .collect();
    held.sort();
    let cancel = held
        .iter()
        .filter(|(_, _, c)| *c)
        .map(|(_, id, _)| id.clone())
        .collect();
    let still: HashSet<&str> = held.iter().map(|(_, id, _)| id.as_str()).collect();
    let lost = holding
        .iter()
        .filter(|id| !still.contains(id.as_str()))
        .cloned()
        .collect();
    Ok(HeartbeatOutcome {
        lease_until_ms,
        cancel,
        lost,
    })
}

async fn report(
    client: &impl GenericClient,
    engine: &str,
    id: &str,
    report: &Report,
) -> Result<(), FleetError> {
    let Some((status, holder)) = lock_lease(client, id).await? else {
        return Err(FleetError::UnknownTask(id.to_string()));
    };
    if status.is_terminal() || holder.as_deref() != Some(engine) {
        return Err(FleetError::NotLeased {
            task: id.to_string(),
            engine: engine.to_string(),
            holder,
            status,
        });
    }
    if !report.logs.is_empty() {
        logs::append_locked(client, id, &report.logs).await?;
    }
    // Before an end, which closes the attempt.
    if let Some(worker) = &report.worker {
        let stmt = client
            .prepare_cached(
                "UPDATE task_attempts SET worker = $2 WHERE task_id = $1 AND outcome IS NULL",
            )
            .await
            .map_err(StoreError::from)?;
        client
            .execute(&stmt, &[&id, worker])
            .await
            .map_err(StoreError::from)?;
    }
    let output = report.output.as_ref().map(to_json);
    match report.status {
        Some(end) if end.is_terminal() => {
            let stmt = client
                .prepare_cached(
                    "UPDATE tasks SET status = $2, output = COALESCE($3, output), error = $4, \
                     updated_at_ms = $5, leased_by = NULL, lease_until_ms = NULL WHERE id = $1",
                )
                .await
                .map_err(StoreError::from)?;
            client
                .execute(
                    &stmt,
                    &[&id, &code(end), &output, &report.error, &report.at_ms],
                )
                .await
                .map_err(StoreError::from)?;
            end_attempt(client, id, outcome_of(end), report.at_ms).await?;
        }
        next => {
            let stmt = client
                .prepare_cached(
                    "UPDATE tasks SET status = COALESCE($2, status), \
                     output = COALESCE($3, output), updated_at_ms = $4 WHERE id = $1",
                )
                .await
                .map_err(StoreError::from)?;
            client
                .execute(&stmt, &[&id, &next.map(code), &output, &report.at_ms])
                .await
                .map_err(StoreError::from)?;
        }
    }
    Ok(())
}

async fn request_cancel(
    client: &impl GenericClient,
    id: &str,
    at_ms: i64,
) -> Result<CancelOutcome, FleetError> {
    let Some((status, holder)) = lock_lease(client, id).await? else {
        return Err(FleetError::UnknownTask(id.to_string()));
    };
    if status.is_terminal() {
        return Ok(CancelOutcome::Ended(status));
    }
    let (sql, next, outcome) = match holder {
        None => (
            "UPDATE tasks SET status = $2, updated_at_ms = $3 WHERE id = $1",
            TaskStatus::Cancelled,
            CancelOutcome::Cancelled,
        ),
        Some(engine) => (
            "UPDATE tasks SET cancel_requested = 1, status = $2, updated_at_ms = $3 WHERE id = $1",
            TaskStatus::Cancelling,
            CancelOutcome::Requested { engine },
        ),
    };
    let stmt = client.prepare_cached(sql).await.map_err(StoreError::from)?;
    client
        .execute(&stmt, &[&id, &code(next), &at_ms])
        .await
        .map_err(StoreError::from)?;
    Ok(outcome)
}

async fn expire_leases(
    client: &impl GenericClient,
    now_ms: i64,
    max_attempts: u32,
) -> Result<Vec<Expired>, StoreError> {
    let select = client
        .prepare_cached(
            "SELECT id, leased_by, attempt, cancel_requested FROM tasks \
             WHERE leased_by IS NOT NULL AND status < 10 AND lease_until_ms < $1 \
             ORDER BY seq FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let expired: Vec<(String, String, i32, bool)> = client
        .query(&select, &[&now_ms])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get::<_, i32>(3) != 0))
        .collect();
    let update = client
        .prepare_cached(
            "UPDATE tasks SET status = $2, error = $3, updated_at_ms = $4, leased_by = NULL, \
             lease_until_ms = NULL WHERE id = $1",
        )
        .await?;
    let mut out = Vec::with_capacity(expired.len());
    for (id, engine, attempt, cancelled) in expired {
        let attempt = attempt.max(0) as u32;
        let (status, error) = if cancelled {
            (TaskStatus::Cancelled, None)
        } else if attempt < max_attempts {
            (TaskStatus::Queued, None)
        } else {
            (TaskStatus::Failed, Some(engine_lost_message(&engine)))
        };
        client
            .execute(&update, &[&id, &code(status), &error, &now_ms])
            .await?;
        end_attempt(client, &id, "lost", now_ms).await?;
        tracing::warn!(task = %id, %engine, attempt, status = status.as_str(), "engine lease expired");
        out.push(Expired {
            task_id: id,
            engine,
            attempt,
            status,
        });
    }
    Ok(out)
}

#[async_trait]
impl FleetStore for PostgresStore {
    async fn register_engine(
        &self,
        r: &EngineRegistration,
        at_ms: i64,
    ) -> Result<EngineRecord, FleetError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO engines (name, version, slots, apps, draining, registered_at_ms, \
                 last_heartbeat_ms) VALUES ($1, $2, $3, $4, 0, $5, $5) \
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
                 slots = excluded.slots, apps = excluded.apps, \
                 last_heartbeat_ms = excluded.last_heartbeat_ms",
            )
            .await
            .map_err(StoreError::from)?;
        let apps = serde_json::to_string(&r.apps).expect("apps serialize");
        client
            .execute(
                &stmt,
                &[&r.name, &r.version, &to_json(&r.slots), &apps, &at_ms],
            )
            .await
            .map_err(StoreError::from)?;
        get_engine(&client, &r.name)
            .await?
            .ok_or_else(|| FleetError::UnknownEngine(r.name.clone()))
    }

    async fn list_engines(&self) -> Result<Vec<EngineRecord>, FleetError> {
        Ok(list_engines(&self.client().await?).await?)
    }

    async fn set_engine_draining(
        &self,
        name: &str,
        draining: bool,
    ) -> Result<EngineRecord, FleetError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("UPDATE engines SET draining = $2 WHERE name = $1")
            .await
            .map_err(StoreError::from)?;
        client
            .execute(&stmt, &[&name, &i32::from(draining)])
            .await
            .map_err(StoreError::from)?;
        get_engine(&client, name)
            .await?
            .ok_or_else(|| FleetError::UnknownEngine(name.to_string()))
    }

    async fn enqueue_remote(
        &self,
        task: &TaskRecord,
        pinned_workers: Option<&[String]>,
    ) -> Result<(), FleetError> {
        let pinned = pinned_workers.map(|p| serde_json::to_string(p).expect("strings serialize"));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        tasks::insert(&tx, task, self.node()).await?;
        let stmt = tx
            .prepare_cached("UPDATE tasks SET remote = 1, pinned_workers = $2 WHERE id = $1")
            .await
            .map_err(StoreError::from)?;
        tx.execute(&stmt, &[&task.id, &pinned])
            .await
            .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn claim(
        &self,
        request: &ClaimRequest,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedTask>, FleetError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let claimed = claim(&tx, request, now_ms, lease_ms).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(claimed)
    }

    async fn heartbeat(
        &self,
        engine: &str,
        holding: &[String],
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<HeartbeatOutcome, FleetError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let outcome = heartbeat(&tx, engine, holding, now_ms, lease_ms).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(outcome)
    }

    async fn report(&self, engine: &str, task_id: &str, update: &Report) -> Result<(), FleetError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        // A refusal returns before the commit: the transaction rolls back.
        report(&tx, engine, task_id, update).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn request_cancel(&self, task_id: &str, at_ms: i64) -> Result<CancelOutcome, FleetError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let outcome = request_cancel(&tx, task_id, at_ms).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(outcome)
    }

    async fn expire_leases(
        &self,
        now_ms: i64,
        max_attempts: u32,
    ) -> Result<Vec<Expired>, FleetError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let expired = expire_leases(&tx, now_ms, max_attempts).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(expired)
    }

    async fn attempts(&self, task_id: &str) -> Result<Vec<AttemptRecord>, FleetError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT attempt, engine, claimed_at_ms, ended_at_ms, outcome, worker \
                 FROM task_attempts WHERE task_id = $1 ORDER BY attempt",
            )
            .await
            .map_err(StoreError::from)?;
        let rows = client
            .query(&stmt, &[&task_id])
            .await
            .map_err(StoreError::from)?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRecord {
                    attempt: r.try_get::<_, i32>(0).map_err(StoreError::from)?.max(0) as u32,
                    engine: r.try_get(1).map_err(StoreError::from)?,
                    claimed_at_ms: r.try_get(2).map_err(StoreError::from)?,
                    ended_at_ms: r.try_get(3).map_err(StoreError::from)?,
                    outcome: r.try_get(4).map_err(StoreError::from)?,
                    worker: r.try_get(5).map_err(StoreError::from)?,
                })
            })
            .collect()
    }

    async fn queued_remote(&self, app: &str) -> Result<u64, FleetError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT COUNT(*) FROM tasks \
                 WHERE remote = 1 AND status = $1 AND leased_by IS NULL AND app = $2",
            )
            .await
            .map_err(StoreError::from)?;
        let n: i64 = client
            .query_one(&stmt, &[&code(TaskStatus::Queued), &app])
            .await
            .map_err(StoreError::from)?
            .get(0);
        Ok(n.max(0) as u64)
    }

    async fn is_remote(&self, task_id: &str) -> Result<bool, FleetError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT remote FROM tasks WHERE id = $1")
            .await
            .map_err(StoreError::from)?;
        let remote: Option<i32> = client
            .query_opt(&stmt, &[&task_id])
            .await
            .map_err(StoreError::from)?
            .map(|r| r.get(0));
        Ok(remote == Some(1))
    }

    async fn open_session(&self, session: &FleetSession) -> Result<(), FleetError> {
        Ok(fleet_sessions::insert(&self.client().await?, session).await?)
    }

    async fn get_session(&self, id: &str) -> Result<Option<FleetSession>, FleetError> {
        Ok(fleet_sessions::get(&self.client().await?, id, false).await?)
    }

    async fn active_sessions(&self) -> Result<Vec<FleetSession>, FleetError> {
        Ok(fleet_sessions::active(&self.client().await?).await?)
    }

    async fn change_session(
        &self,
        id: &str,
        change: &SessionChange,
        now_ms: i64,
    ) -> Result<FleetSession, FleetError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        // A refusal returns before the commit: the transaction rolls back.
        let session = fleet_sessions::change(&tx, id, change, now_ms).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(session)
    }

    async fn end_engine_sessions(
        &self,
        engine: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, FleetError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let ended = fleet_sessions::end_engine(&tx, engine, reason, now_ms).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(ended)
    }

    async fn sync_engine_sessions(
        &self,
        engine: &str,
        held: &[EngineSession],
        now_ms: i64,
    ) -> Result<Vec<String>, FleetError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let drop = fleet_sessions::sync_engine(&tx, engine, held, now_ms).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(drop)
    }

    async fn sweep_sessions(
        &self,
        now_ms: i64,
        offline_after_ms: i64,
    ) -> Result<Vec<FailedCall>, FleetError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let failed = fleet_sessions::sweep(&tx, now_ms, offline_after_ms).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(failed)
    }
}
