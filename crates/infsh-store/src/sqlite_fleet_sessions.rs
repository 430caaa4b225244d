//! Fleet sessions (`fleet_sessions.rs`) in SQLite: every change is one
//! write through the writer thread, so reading a row, applying the rule and
//! saving it is atomic without row locks. The claim's side (binding a
//! session to the claiming engine, one call at a time) is in
//! `sqlite_fleet.rs`'s `claim`, which calls [`claimable`] and [`bind`].

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::fleet::{
    EngineSession, FailedCall, FleetError, FleetSession, SessionChange, SessionRefusal,
    SessionState,
};
use crate::{StoreError, TaskStatus};

/// The columns [`from_row`] reads, in its order.
pub(crate) const SESSION_COLUMNS: &str =
    "id, app, app_version, engine, worker, status, reason, idle_timeout_ms, created_at_ms, \
     updated_at_ms, expires_at_ms, ended_at_ms, call_count, last_call_at_ms, task_id";

fn from_row(row: &Row<'_>) -> rusqlite::Result<FleetSession> {
    let id: String = row.get(0)?;
    let status: String = row.get(5)?;
    Ok(FleetSession {
        status: SessionState::parse(&status).unwrap_or(SessionState::Ended),
        id,
        app: row.get(1)?,
        app_version: row.get(2)?,
        engine: row.get(3)?,
        worker: row.get(4)?,
        reason: row.get(6)?,
        idle_timeout_ms: row.get(7)?,
        created_at_ms: row.get(8)?,
        updated_at_ms: row.get(9)?,
        expires_at_ms: row.get(10)?,
        ended_at_ms: row.get(11)?,
        call_count: row.get(12)?,
        last_call_at_ms: row.get(13)?,
        task_id: row.get(14)?,
    })
}

pub(crate) fn get(conn: &Connection, id: &str) -> Result<Option<FleetSession>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM fleet_sessions WHERE id = ?1"
        ))?
        .query_row([id], from_row)
        .optional()?)
}

pub(crate) fn insert(conn: &Connection, s: &FleetSession) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO fleet_sessions ({SESSION_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))?
    .execute(params![
        s.id,
        s.app,
        s.app_version,
        s.engine,
        s.worker,
        s.status.as_str(),
        s.reason,
        s.idle_timeout_ms,
        s.created_at_ms,
        s.updated_at_ms,
        s.expires_at_ms,
        s.ended_at_ms,
        s.call_count,
        s.last_call_at_ms,
        s.task_id
    ])?;
    Ok(())
}

/// Writes back what the rules may change.
pub(crate) fn save(conn: &Connection, s: &FleetSession) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE fleet_sessions SET engine = ?2, worker = ?3, status = ?4, reason = ?5, \
         updated_at_ms = ?6, expires_at_ms = ?7, ended_at_ms = ?8, call_count = ?9, \
         last_call_at_ms = ?10 WHERE id = ?1",
    )?
    .execute(params![
        s.id,
        s.engine,
        s.worker,
        s.status.as_str(),
        s.reason,
        s.updated_at_ms,
        s.expires_at_ms,
        s.ended_at_ms,
        s.call_count,
        s.last_call_at_ms
    ])?;
    Ok(())
}

pub(crate) fn active(conn: &Connection) -> Result<Vec<FleetSession>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM fleet_sessions WHERE status = 'active' \
             ORDER BY created_at_ms, id"
        ))?
        .query_map([], from_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Whether `engine` may claim a queued call of session `id` whose row
/// sequence is `seq`: the session is active and unbound or held by it,
/// none of its calls is leased, and no older one is queued.
pub(crate) fn claimable(
    conn: &Connection,
    id: &str,
    seq: i64,
    engine: &str,
) -> Result<bool, StoreError> {
    let Some(session) = get(conn, id)? else {
        return Ok(false);
    };
    if !session.is_active() || session.engine.as_deref().is_some_and(|e| e != engine) {
        return Ok(false);
    }
    let blocked: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE session_id = ?1 AND status < 10 \
             AND (leased_by IS NOT NULL OR (status = ?3 AND seq < ?2)))",
        )?
        .query_row(params![id, seq, u8::from(TaskStatus::Queued)], |r| r.get(0))?;
    Ok(!blocked)
}

/// Binds session `id` to `engine` (its first claimed call); a no-op for
/// one already bound.
pub(crate) fn bind(
    conn: &Connection,
    id: &str,
    engine: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE fleet_sessions SET engine = ?2, updated_at_ms = ?3 WHERE id = ?1 AND engine IS NULL",
    )?
    .execute(params![id, engine, now_ms])?;
    Ok(())
}

pub(crate) fn change(
    conn: &Connection,
    id: &str,
    change: &SessionChange,
    now_ms: i64,
) -> Result<Result<FleetSession, FleetError>, StoreError> {
    let Some(mut session) = get(conn, id)? else {
        return Ok(Err(SessionRefusal::NotFound(id.to_string()).into()));
    };
    if let Err(refused) = session.apply(change, now_ms) {
        return Ok(Err(refused.into()));
    }
    save(conn, &session)?;
    Ok(Ok(session))
}

pub(crate) fn end_engine(
    conn: &Connection,
    engine: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let held: Vec<FleetSession> = conn
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM fleet_sessions WHERE engine = ?1 AND status = 'active'"
        ))?
        .query_map([engine], from_row)?
        .collect::<Result<_, _>>()?;
    let mut ended = Vec::with_capacity(held.len());
    for mut session in held {
        session.finish(SessionState::Ended, reason, now_ms);
        save(conn, &session)?;
        ended.push(session.id);
    }
    Ok(ended)
}

pub(crate) fn sync_engine(
    conn: &Connection,
    engine: &str,
    held: &[EngineSession],
    now_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let mut drop = Vec::new();
    for report in held {
        let Some(mut session) = get(conn, &report.id)? else {
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
        save(conn, &session)?;
    }
    Ok(drop)
}

pub(crate) fn sweep(
    conn: &Connection,
    now_ms: i64,
    offline_after_ms: i64,
) -> Result<Vec<FailedCall>, StoreError> {
    for mut session in active(conn)? {
        let beat: Option<i64> = match &session.engine {
            Some(engine) => conn
                .prepare_cached("SELECT last_heartbeat_ms FROM engines WHERE name = ?1")?
                .query_row([engine], |r| r.get(0))
                .optional()?,
            None => None,
        };
        let busy: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM tasks WHERE session_id = ?1 AND status < 10)",
            )?
            .query_row([&session.id], |r| r.get(0))?;
        if session.sweep(now_ms, beat, offline_after_ms, busy) {
            save(conn, &session)?;
        }
    }
    let orphans: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT t.id, t.session_id FROM tasks t JOIN fleet_sessions s ON s.id = t.session_id \
             WHERE t.remote = 1 AND t.status = ?1 AND t.leased_by IS NULL AND s.status <> 'active' \
             ORDER BY t.seq",
        )?
        .query_map([u8::from(TaskStatus::Queued)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut failed = Vec::with_capacity(orphans.len());
    for (task_id, session_id) in orphans {
        let Some(session) = get(conn, &session_id)? else {
            continue;
        };
        let error = session
            .refusal(&session.app)
            .map_or_else(|| "its session is over".to_string(), |e| e.to_string());
        conn.prepare_cached(
            "UPDATE tasks SET status = ?2, error = ?3, updated_at_ms = ?4 WHERE id = ?1",
        )?
        .execute(params![
            task_id,
            u8::from(TaskStatus::Failed),
            error,
            now_ms
        ])?;
        failed.push(FailedCall { task_id, error });
    }
    Ok(failed)
}
