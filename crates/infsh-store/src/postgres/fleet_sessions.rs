//! Fleet sessions (`fleet_sessions.rs`) in PostgreSQL, shared by API
//! nodes: a change reads the row `FOR UPDATE`, applies the rule and saves
//! it in one transaction, so a call on one node and an end on another are
//! one after the other. The sweep locks active rows with `SKIP LOCKED` (two
//! nodes sweeping at once change each session once). The claim's side is
//! in `fleet.rs`'s `claim`, which calls [`claim_one`].

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::fleet::{
    ClaimRequest, EngineSession, FailedCall, FleetError, FleetSession, SessionChange,
    SessionRefusal, SessionState,
};
use crate::{StoreError, TaskStatus};

const SESSION_COLUMNS: &str =
    "id, app, app_version, engine, worker, status, reason, idle_timeout_ms, created_at_ms, \
     updated_at_ms, expires_at_ms, ended_at_ms, call_count, last_call_at_ms, task_id";

fn code(s: TaskStatus) -> i32 {
    i32::from(u8::from(s))
}

fn from_row(row: &Row) -> Result<FleetSession, StoreError> {
    from_row_at(row, 0)
}

/// A session whose [`SESSION_COLUMNS`] start at column `o`.
fn from_row_at(row: &Row, o: usize) -> Result<FleetSession, StoreError> {
    let status: String = row.try_get(o + 5)?;
    Ok(FleetSession {
        id: row.try_get(o)?,
        app: row.try_get(o + 1)?,
        app_version: row.try_get(o + 2)?,
        engine: row.try_get(o + 3)?,
        worker: row.try_get(o + 4)?,
        status: SessionState::parse(&status).unwrap_or(SessionState::Ended),
        reason: row.try_get(o + 6)?,
        idle_timeout_ms: row.try_get(o + 7)?,
        created_at_ms: row.try_get(o + 8)?,
        updated_at_ms: row.try_get(o + 9)?,
        expires_at_ms: row.try_get(o + 10)?,
        ended_at_ms: row.try_get(o + 11)?,
        call_count: row.try_get(o + 12)?,
        last_call_at_ms: row.try_get(o + 13)?,
        task_id: row.try_get(o + 14)?,
    })
}

/// One session; `lock`: `FOR UPDATE` (inside a transaction).
pub(super) async fn get(
    client: &impl GenericClient,
    id: &str,
    lock: bool,
) -> Result<Option<FleetSession>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM fleet_sessions WHERE id = $1{}",
            if lock { " FOR UPDATE" } else { "" }
        ))
        .await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub(super) async fn insert(
    client: &impl GenericClient,
    s: &FleetSession,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO fleet_sessions ({SESSION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .await?;
    client
        .execute(
            &stmt,
            &[
                &s.id,
                &s.app,
                &s.app_version,
                &s.engine,
                &s.worker,
                &s.status.as_str(),
                &s.reason,
                &s.idle_timeout_ms,
                &s.created_at_ms,
                &s.updated_at_ms,
                &s.expires_at_ms,
                &s.ended_at_ms,
                &s.call_count,
                &s.last_call_at_ms,
                &s.task_id,
            ],
        )
        .await?;
    Ok(())
}

async fn save(client: &impl GenericClient, s: &FleetSession) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(
            "UPDATE fleet_sessions SET engine = $2, worker = $3, status = $4, reason = $5, \
             updated_at_ms = $6, expires_at_ms = $7, ended_at_ms = $8, call_count = $9, \
             last_call_at_ms = $10 WHERE id = $1",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &s.id,
                &s.engine,
                &s.worker,
                &s.status.as_str(),
                &s.reason,
                &s.updated_at_ms,
                &s.expires_at_ms,
                &s.ended_at_ms,
                &s.call_count,
                &s.last_call_at_ms,
            ],
        )
        .await?;
    Ok(())
}

pub(super) async fn active(client: &impl GenericClient) -> Result<Vec<FleetSession>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM fleet_sessions WHERE status = 'active' \
             ORDER BY created_at_ms, id"
        ))
        .await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// Leases at most one queued session call to the claiming engine: of a
/// session that is active and unbound or held by it, with none of its
/// calls leased and no older one queued; binds an unbound session to it
/// in this transaction. The task's id, or None.
///
/// The task row is locked first (`SKIP LOCKED`), then the session row: a
/// node binding the same session at once waits for this one and then
/// finds it held by another engine (its bind updates nothing), so it
/// leaves the task queued.
pub(super) async fn claim_one(
    client: &impl GenericClient,
    request: &ClaimRequest,
    apps: &[&str],
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    let pick = client
        .prepare_cached(
            "SELECT t.id, t.session_id FROM tasks t JOIN fleet_sessions s ON s.id = t.session_id \
             WHERE t.remote = 1 AND t.status = $1 AND t.leased_by IS NULL \
             AND (t.app = ANY($2) OR ($6 AND strpos(t.app, '@') > 0)) \
             AND (t.run_at_ms IS NULL OR t.run_at_ms <= $3) \
             AND (t.pinned_workers IS NULL OR t.pinned_workers::jsonb ?| $4) \
             AND s.status = 'active' AND (s.engine IS NULL OR s.engine = $5) \
             AND NOT EXISTS (SELECT 1 FROM tasks b WHERE b.session_id = t.session_id \
               AND b.status < 10 AND (b.leased_by IS NOT NULL OR (b.status = $1 AND b.seq < t.seq))) \
             ORDER BY t.seq LIMIT 1 FOR UPDATE OF t SKIP LOCKED",
        )
        .await?;
    let Some(row) = client
        .query_opt(
            &pick,
            &[
                &code(TaskStatus::Queued),
                &apps,
                &now_ms,
                &request.slots,
                &request.engine,
                // An engine that fetches versions takes a session's calls
                // of a version (`ns/name@HASH`), as the plain claim does.
                &request.versions,
            ],
        )
        .await?
    else {
        return Ok(None);
    };
    let (task, session): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    let bind = client
        .prepare_cached(
            "UPDATE fleet_sessions SET engine = $2, updated_at_ms = $3 \
             WHERE id = $1 AND status = 'active' AND (engine IS NULL OR engine = $2)",
        )
        .await?;
    let bound = client
        .execute(&bind, &[&session, &request.engine, &now_ms])
        .await?;
    Ok((bound == 1).then_some(task))
}

pub(super) async fn change(
    client: &impl GenericClient,
    id: &str,
    change: &SessionChange,
    now_ms: i64,
) -> Result<FleetSession, FleetError> {
    let Some(mut session) = get(client, id, true).await? else {
        return Err(SessionRefusal::NotFound(id.to_string()).into());
    };
    session.apply(change, now_ms)?;
    save(client, &session).await?;
    Ok(session)
}

pub(super) async fn end_engine(
    client: &impl GenericClient,
    engine: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM fleet_sessions WHERE engine = $1 AND status = 'active' \
             FOR UPDATE"
        ))
        .await?;
    let mut ended = Vec::new();
    for row in client.query(&stmt, &[&engine]).await? {
        let mut session = from_row(&row)?;
        session.finish(SessionState::Ended, reason, now_ms);
        save(client, &session).await?;
        ended.push(session.id);
    }
    Ok(ended)
}

pub(super) async fn sync_engine(
    client: &impl GenericClient,
    engine: &str,
    held: &[EngineSession],
    now_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let mut drop = Vec::new();
    for report in held {
        let Some(mut session) = get(client, &report.id, true).await? else {
            drop.push(report.id.clone());
            continue;
        };
        if session.engine.as_deref() != Some(engine) || !session.is_active() {
            drop.push(report.id.clone());
            continue;
        }
        if let Some(reason) = &report.ended {
            session.finish(SessionState::Ended, reason, now_ms);
            drop.push(report.id.clone());
        } else if report.worker.is_some() && report.worker != session.worker {
            session.worker = report.worker.clone();
            session.updated_at_ms = now_ms;
        } else {
            continue;
        }
        save(client, &session).await?;
    }
    Ok(drop)
}

pub(super) async fn sweep(
    client: &impl GenericClient,
    now_ms: i64,
    offline_after_ms: i64,
) -> Result<Vec<FailedCall>, StoreError> {
    let due = client
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM fleet_sessions WHERE status = 'active' \
             AND (expires_at_ms <= $1 OR engine IS NOT NULL) ORDER BY id FOR UPDATE SKIP LOCKED"
        ))
        .await?;
    let beat = client
        .prepare_cached("SELECT last_heartbeat_ms FROM engines WHERE name = $1")
        .await?;
    let busy = client
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM tasks WHERE session_id = $1 AND status < 10)")
        .await?;
    for row in client.query(&due, &[&now_ms]).await? {
        let mut session = from_row(&row)?;
        let last_beat: Option<i64> = match &session.engine {
            Some(engine) => client
                .query_opt(&beat, &[engine])
                .await?
                .map(|r| r.try_get(0))
                .transpose()?,
            None => None,
        };
        let is_busy: bool = client.query_one(&busy, &[&session.id]).await?.try_get(0)?;
        if session.sweep(now_ms, last_beat, offline_after_ms, is_busy) {
            save(client, &session).await?;
        }
    }
    let orphans = client
        .prepare_cached(&format!(
            "SELECT t.id, {} FROM tasks t JOIN fleet_sessions s ON s.id = t.session_id \
             WHERE t.remote = 1 AND t.status = $1 AND t.leased_by IS NULL \
             AND s.status <> 'active' ORDER BY t.seq FOR UPDATE OF t SKIP LOCKED",
            SESSION_COLUMNS
                .split(", ")
                .map(|c| format!("s.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .await?;
    let fail = client
        .prepare_cached(
            "UPDATE tasks SET status = $2, error = $3, updated_at_ms = $4 WHERE id = $1",
        )
        .await?;
    let mut failed = Vec::new();
    for row in client.query(&orphans, &[&code(TaskStatus::Queued)]).await? {
        let task_id: String = row.try_get(0)?;
        // The session's columns follow the task id.
        let session = from_row_at(&row, 1)?;
        let error = session
            .refusal(&session.app)
            .map_or_else(|| "its session is over".to_string(), |e| e.to_string());
        client
            .execute(
                &fail,
                &[&task_id, &code(TaskStatus::Failed), &error, &now_ms],
            )
            .await?;
        failed.push(FailedCall { task_id, error });
    }
    Ok(failed)
}
