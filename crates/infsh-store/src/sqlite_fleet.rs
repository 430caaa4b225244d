//! [`FleetStore`] for [`SqliteStore`]: one API node with remote engines.
//! Every method is one write through the store's writer thread (one
//! transaction, serialised with every other write), so a claim's pick and
//! its lease are atomic without row locks (`postgres/fleet.rs` is the
//! PostgreSQL form; `tests/fleet_contract.rs` holds both to one contract).

use std::collections::HashSet;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::fleet::{
    app_hashes, engine_lost_message, is_version_task, AttemptRecord, CancelOutcome, ClaimRequest,
    ClaimedTask, EngineApp, EngineRecord, EngineRegistration, EngineSession, Expired, FailedCall,
    FleetError, FleetSession, FleetStore, HeartbeatOutcome, Report, SessionChange, WARM_GRACE_MS,
};
use crate::rows::{RawTask, TASK_COLUMNS};
use crate::sqlite::{append_logs, insert_task, to_json, SqliteStore};
use crate::sqlite_fleet_sessions;
use crate::{StoreError, TaskRecord, TaskStatus};

/// How many queued candidates one claim looks at (pinned runs another
/// engine must take are skipped past).
const CLAIM_WINDOW: usize = 256;

/// A refusal computed inside a write: the write commits nothing.
type Refusal<T> = Result<T, FleetError>;

fn corrupt_json(id: &str, field: &'static str, source: serde_json::Error) -> StoreError {
    StoreError::CorruptJson {
        id: id.to_string(),
        field,
        source,
    }
}

fn engine_from_row(conn: &Connection, row: &rusqlite::Row<'_>) -> Result<EngineRecord, StoreError> {
    let name: String = row.get(0)?;
    let slots: String = row.get(2)?;
    let apps: String = row.get(3)?;
    let draining: i64 = row.get(4)?;
    let slots: Value = serde_json::from_str(&slots).map_err(|e| corrupt_json(&name, "slots", e))?;
    let apps: Vec<EngineApp> =
        serde_json::from_str(&apps).map_err(|e| corrupt_json(&name, "apps", e))?;
    let running = conn
        .prepare_cached("SELECT id FROM tasks WHERE leased_by = ?1 AND status < 10 ORDER BY seq")?
        .query_map([&name], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EngineRecord {
        version: row.get(1)?,
        slots,
        apps,
        draining: draining != 0,
        registered_at_ms: row.get(5)?,
        last_heartbeat_ms: row.get(6)?,
        running,
        name,
    })
}

const ENGINE_COLUMNS: &str =
    "name, version, slots, apps, draining, registered_at_ms, last_heartbeat_ms";

fn get_engine(conn: &Connection, name: &str) -> Result<Option<EngineRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENGINE_COLUMNS} FROM engines WHERE name = ?1"
    ))?;
    let mut rows = stmt.query([name])?;
    match rows.next()? {
        Some(row) => Ok(Some(engine_from_row(conn, row)?)),
        None => Ok(None),
    }
}

fn list_engines(conn: &Connection) -> Result<Vec<EngineRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENGINE_COLUMNS} FROM engines ORDER BY name"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(engine_from_row(conn, row)?);
    }
    Ok(out)
}

/// The lease columns of a task: (status, leased_by).
fn lease_of(
    conn: &Connection,
    id: &str,
) -> Result<Option<(TaskStatus, Option<String>)>, StoreError> {
    let row = conn
        .prepare_cached("SELECT status, leased_by FROM tasks WHERE id = ?1")?
        .query_row([id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
        })
        .optional()?;
    row.map(|(status, holder)| Ok((decode_status(id, status)?, holder)))
        .transpose()
}

fn decode_status(id: &str, n: i64) -> Result<TaskStatus, StoreError> {
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

fn end_attempt(conn: &Connection, id: &str, outcome: &str, at_ms: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE task_attempts SET ended_at_ms = ?2, outcome = ?3 \
         WHERE task_id = ?1 AND outcome IS NULL",
    )?
    .execute(params![id, at_ms, outcome])?;
    Ok(())
}

fn claim(
    conn: &Connection,
    request: &ClaimRequest,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Vec<ClaimedTask>, StoreError> {
    let Some(engine) = get_engine(conn, &request.engine)? else {
        return Ok(Vec::new());
    };
    if engine.draining || request.max == 0 {
        return Ok(Vec::new());
    }
    // The apps it hosts with the hash they are served with.
    let served = app_hashes(&list_engines(conn)?, now_ms, lease_ms);
    let apps: HashSet<&str> = engine
        .apps
        .iter()
        .filter(|a| served.get(&a.app) == Some(&a.hash))
        .map(|a| a.app.as_str())
        .collect();
    if apps.is_empty() && !request.versions {
        return Ok(Vec::new());
    }
    let slots: HashSet<&str> = request.slots.iter().map(String::as_str).collect();
    let elsewhere = warm_elsewhere(conn, &request.engine, now_ms - lease_ms)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS}, pinned_workers FROM tasks \
         WHERE remote = 1 AND status = 2 AND leased_by IS NULL \
         AND (run_at_ms IS NULL OR run_at_ms <= ?2) ORDER BY seq LIMIT ?1"
    ))?;
    // A task whose `run_at` is ahead is not claimed yet.
    let mut rows = stmt.query([CLAIM_WINDOW as i64, now_ms])?;
    let mut candidates = Vec::new();
    let mut sessions_taken: HashSet<String> = HashSet::new();
    while let Some(row) = rows.next()? {
        let raw = RawTask::from_row(row)?;
        let pinned: Option<String> = row.get(17)?;
        let (seq, task) = raw.decode()?;
        let takes =
            apps.contains(task.app.as_str()) || (request.versions && is_version_task(&task.app));
        if !takes {
            continue;
        }
        // Left to an engine warm for it with a free slot, for a while.
        let queued_since = task.updated_at_ms.max(task.run_at_ms.unwrap_or(0));
        if !request.warm.contains(&task.app)
            && queued_since >= now_ms - WARM_GRACE_MS
            && elsewhere.contains(task.app.as_str())
        {
            continue;
        }
        // A session's call: only by the engine holding it, one at a time,
        // oldest first (one per session in this claim too).
        if let Some(session) = &task.session_id {
            if sessions_taken.contains(session)
                || !sqlite_fleet_sessions::claimable(conn, session, seq, &request.engine)?
            {
                continue;
            }
            sessions_taken.insert(session.clone());
        }
        let pinned: Option<Vec<String>> = pinned
            .map(|p| {
                serde_json::from_str(&p).map_err(|e| corrupt_json(&task.id, "pinned_workers", e))
            })
            .transpose()?;
        if let Some(p) = &pinned {
            if !p.iter().any(|s| slots.contains(s.as_str())) {
                continue;
            }
        }
        candidates.push((task, pinned));
    }
    drop(rows);
    // Warm apps first; the sort is stable, so oldest first within each.
    candidates.sort_by_key(|(t, _)| !request.warm.contains(&t.app));
    candidates.truncate(request.max);
    // What this engine is warm for and how much it runs at once, for the
    // others' claims (before this claim's leases: its `max` is on top of
    // what it holds now).
    conn.prepare_cached(
        "UPDATE engines SET warm = ?2, capacity = ?3 + (SELECT COUNT(*) FROM tasks \
         WHERE leased_by = ?1 AND status < 10) WHERE name = ?1",
    )?
    .execute(params![
        request.engine,
        serde_json::to_string(&request.warm).expect("strings serialize"),
        i64::try_from(request.max).unwrap_or(i64::MAX)
    ])?;
    let lease_until_ms = now_ms + lease_ms;
    let mut claimed = Vec::with_capacity(candidates.len());
    for (mut task, pinned_workers) in candidates {
        if let Some(session) = &task.session_id {
            sqlite_fleet_sessions::bind(conn, session, &request.engine, now_ms)?;
        }
        let attempt: i64 = conn
            .prepare_cached(
                "UPDATE tasks SET leased_by = ?2, lease_until_ms = ?3, attempt = attempt + 1, \
                 status = ?4, updated_at_ms = ?5 WHERE id = ?1 RETURNING attempt",
            )?
            .query_row(
                params![
                    task.id,
                    request.engine,
                    lease_until_ms,
                    u8::from(TaskStatus::Dispatched),
                    now_ms
                ],
                |r| r.get(0),
            )?;
        conn.prepare_cached(
            "INSERT INTO task_attempts (task_id, attempt, engine, claimed_at_ms) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![task.id, attempt, request.engine, now_ms])?;
        task.status = TaskStatus::Dispatched;
        task.updated_at_ms = now_ms;
        claimed.push(ClaimedTask {
            task,
            attempt: attempt.max(0) as u32,
            lease_until_ms,
            pinned_workers,
        });
    }
    Ok(claimed)
}

/// The apps other online, non-draining engines are warm for with a free
/// slot (their recorded capacity above the tasks they hold now).
fn warm_elsewhere(
    conn: &Connection,
    engine: &str,
    online_since_ms: i64,
) -> Result<HashSet<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT w.value FROM engines o, json_each(o.warm) w \
         WHERE o.name <> ?1 AND o.draining = 0 AND o.last_heartbeat_ms >= ?2 \
         AND o.capacity > (SELECT COUNT(*) FROM tasks h \
           WHERE h.leased_by = o.name AND h.status < 10)",
    )?;
    let apps = stmt
        .query_map(params![engine, online_since_ms], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(apps)
}

fn heartbeat(
    conn: &Connection,
    engine: &str,
    holding: &[String],
    now_ms: i64,
    lease_ms: i64,
) -> Result<Refusal<HeartbeatOutcome>, StoreError> {
    let n = conn
        .prepare_cached("UPDATE engines SET last_heartbeat_ms = ?2 WHERE name = ?1")?
        .execute(params![engine, now_ms])?;
    if n == 0 {
        return Ok(Err(FleetError::UnknownEngine(engine.to_string())));
    }
    let lease_until_ms = now_ms + lease_ms;
    // Only the leases the engine lists are extended: a task leased to it
    // that it does not know of (a claim answer lost on the wire) must
    // expire and run again, not stay leased for as long as it beats.
    let mut extend = conn.prepare_cached(
        "UPDATE tasks SET lease_until_ms = ?3 WHERE id = ?2 AND leased_by = ?1 AND status < 10 \
         RETURNING seq, cancel_requested",
    )?;
    let mut held = Vec::new();
    let mut lost = Vec::new();
    for id in holding {
        let row = extend
            .query_row(params![engine, id, lease_until_ms], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? != 0))
            })
            .optional()?;
        match row {
            Some((seq, cancel)) => held.push((seq, id.clone(), cancel)),
            None => lost.push(id.clone()),
        }
    }
    held.sort();
    let cancel = held
        .into_iter()
        .filter(|(_, _, cancel)| *cancel)
        .map(|(_, id, _)| id)
        .collect();
    Ok(Ok(HeartbeatOutcome {
        lease_until_ms,
        cancel,
        lost,
    }))
}

fn report(
    conn: &Connection,
    engine: &str,
    id: &str,
    report: &Report,
) -> Result<Refusal<()>, StoreError> {
    let Some((status, holder)) = lease_of(conn, id)? else {
        return Ok(Err(FleetError::UnknownTask(id.to_string())));
    };
    if status.is_terminal() || holder.as_deref() != Some(engine) {
        return Ok(Err(FleetError::NotLeased {
            task: id.to_string(),
            engine: engine.to_string(),
            holder,
            status,
        }));
    }
    if !report.logs.is_empty() {
        append_logs(conn, id, &report.logs)?;
    }
    // Before an end, which closes the attempt.
    if let Some(worker) = &report.worker {
        conn.prepare_cached(
            "UPDATE task_attempts SET worker = ?2 WHERE task_id = ?1 AND outcome IS NULL",
        )?
        .execute(params![id, worker])?;
    }
    let output = report.output.as_ref().map(to_json);
    match report.status {
        Some(end) if end.is_terminal() => {
            conn.prepare_cached(
                "UPDATE tasks SET status = ?2, output = COALESCE(?3, output), error = ?4, \
                 updated_at_ms = ?5, leased_by = NULL, lease_until_ms = NULL WHERE id = ?1",
            )?
            .execute(params![
                id,
                u8::from(end),
                output,
                report.error,
                report.at_ms
            ])?;
            end_attempt(conn, id, outcome_of(end), report.at_ms)?;
        }
        next => {
            conn.prepare_cached(
                "UPDATE tasks SET status = COALESCE(?2, status), output = COALESCE(?3, output), \
                 updated_at_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![id, next.map(u8::from), output, report.at_ms])?;
        }
    }
    Ok(Ok(()))
}

fn request_cancel(
    conn: &Connection,
    id: &str,
    at_ms: i64,
) -> Result<Refusal<CancelOutcome>, StoreError> {
    let Some((status, holder)) = lease_of(conn, id)? else {
        return Ok(Err(FleetError::UnknownTask(id.to_string())));
    };
    if status.is_terminal() {
        return Ok(Ok(CancelOutcome::Ended(status)));
    }
    match holder {
        None => {
            conn.prepare_cached("UPDATE tasks SET status = ?2, updated_at_ms = ?3 WHERE id = ?1")?
                .execute(params![id, u8::from(TaskStatus::Cancelled), at_ms])?;
            Ok(Ok(CancelOutcome::Cancelled))
        }
        Some(engine) => {
            conn.prepare_cached(
                "UPDATE tasks SET cancel_requested = 1, status = ?2, updated_at_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![id, u8::from(TaskStatus::Cancelling), at_ms])?;
            Ok(Ok(CancelOutcome::Requested { engine }))
        }
    }
}

fn expire_leases(
    conn: &Connection,
    now_ms: i64,
    max_attempts: u32,
) -> Result<Vec<Expired>, StoreError> {
    let expired = conn
        .prepare_cached(
            "SELECT id, leased_by, attempt, cancel_requested FROM tasks \
             WHERE leased_by IS NOT NULL AND status < 10 AND lease_until_ms < ?1 ORDER BY seq",
        )?
        .query_map([now_ms], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)? != 0,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
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
        conn.prepare_cached(
            "UPDATE tasks SET status = ?2, error = ?3, updated_at_ms = ?4, leased_by = NULL, \
             lease_until_ms = NULL WHERE id = ?1",
        )?
        .execute(params![id, u8::from(status), error, now_ms])?;
        end_attempt(conn, &id, "lost", now_ms)?;
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
impl FleetStore for SqliteStore {
    async fn register_engine(
        &self,
        registration: &EngineRegistration,
        at_ms: i64,
    ) -> Result<EngineRecord, FleetError> {
        let r = registration.clone();
        Ok(self
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO engines (name, version, slots, apps, draining, registered_at_ms, \
                     last_heartbeat_ms) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5) \
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
                     slots = excluded.slots, apps = excluded.apps, \
                     last_heartbeat_ms = excluded.last_heartbeat_ms",
                )?
                .execute(params![
                    r.name,
                    r.version,
                    to_json(&r.slots),
                    serde_json::to_string(&r.apps).expect("apps serialize"),
                    at_ms
                ])?;
                get_engine(conn, &r.name)?.ok_or_else(|| StoreError::NotFound {
                    kind: "engine",
                    id: r.name.clone(),
                })
            })
            .await?)
    }

    async fn list_engines(&self) -> Result<Vec<EngineRecord>, FleetError> {
        Ok(self.read(list_engines).await?)
    }

    async fn set_engine_draining(
        &self,
        name: &str,
        draining: bool,
    ) -> Result<EngineRecord, FleetError> {
        let name = name.to_string();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE engines SET draining = ?2 WHERE name = ?1")?
                .execute(params![name, i64::from(draining)])?;
            Ok(get_engine(conn, &name)?.ok_or(FleetError::UnknownEngine(name)))
        })
        .await?
    }

    async fn enqueue_remote(
        &self,
        task: &TaskRecord,
        pinned_workers: Option<&[String]>,
    ) -> Result<(), FleetError> {
        let t = task.clone();
        let pinned = pinned_workers.map(|p| serde_json::to_string(p).expect("strings serialize"));
        Ok(self
            .write(move |conn| {
                insert_task(conn, &t)?;
                conn.prepare_cached(
                    "UPDATE tasks SET remote = 1, pinned_workers = ?2 WHERE id = ?1",
                )?
                .execute(params![t.id, pinned])?;
                Ok(())
            })
            .await?)
    }

    async fn claim(
        &self,
        request: &ClaimRequest,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedTask>, FleetError> {
        let request = request.clone();
        Ok(self
            .write(move |conn| claim(conn, &request, now_ms, lease_ms))
            .await?)
    }

    async fn heartbeat(
        &self,
        engine: &str,
        holding: &[String],
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<HeartbeatOutcome, FleetError> {
        let engine = engine.to_string();
        let holding = holding.to_vec();
        self.write(move |conn| heartbeat(conn, &engine, &holding, now_ms, lease_ms))
            .await?
    }

    async fn report(&self, engine: &str, task_id: &str, update: &Report) -> Result<(), FleetError> {
        let engine = engine.to_string();
        let id = task_id.to_string();
        let update = update.clone();
        self.write(move |conn| report(conn, &engine, &id, &update))
            .await?
    }

    async fn request_cancel(&self, task_id: &str, at_ms: i64) -> Result<CancelOutcome, FleetError> {
        let id = task_id.to_string();
        self.write(move |conn| request_cancel(conn, &id, at_ms))
            .await?
    }

    async fn expire_leases(
        &self,
        now_ms: i64,
        max_attempts: u32,
    ) -> Result<Vec<Expired>, FleetError> {
        Ok(self
            .write(move |conn| expire_leases(conn, now_ms, max_attempts))
            .await?)
    }

    async fn attempts(&self, task_id: &str) -> Result<Vec<AttemptRecord>, FleetError> {
        let id = task_id.to_string();
        Ok(self
            .read(move |conn| {
                let rows = conn
                    .prepare_cached(
                        "SELECT attempt, engine, claimed_at_ms, ended_at_ms, outcome, worker \
                         FROM task_attempts WHERE task_id = ?1 ORDER BY attempt",
                    )?
                    .query_map([&id], |r| {
                        Ok(AttemptRecord {
                            attempt: r.get::<_, i64>(0)?.max(0) as u32,
                            engine: r.get(1)?,
                            claimed_at_ms: r.get(2)?,
                            ended_at_ms: r.get(3)?,
                            outcome: r.get(4)?,
                            worker: r.get(5)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?)
    }

    async fn queued_remote(&self, app: &str) -> Result<u64, FleetError> {
        let app = app.to_string();
        Ok(self
            .read(move |conn| {
                let n: i64 = conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM tasks \
                         WHERE remote = 1 AND status = 2 AND leased_by IS NULL AND app = ?1",
                    )?
                    .query_row([&app], |r| r.get(0))?;
                Ok(n.max(0) as u64)
            })
            .await?)
    }

    async fn is_remote(&self, task_id: &str) -> Result<bool, FleetError> {
        let id = task_id.to_string();
        Ok(self
            .read(move |conn| {
                let remote: Option<i64> = conn
                    .prepare_cached("SELECT remote FROM tasks WHERE id = ?1")?
                    .query_row([&id], |r| r.get(0))
                    .optional()?;
                Ok(remote == Some(1))
            })
            .await?)
    }

    async fn open_session(&self, session: &FleetSession) -> Result<(), FleetError> {
        let session = session.clone();
        Ok(self
            .write(move |conn| sqlite_fleet_sessions::insert(conn, &session))
            .await?)
    }

    async fn get_session(&self, id: &str) -> Result<Option<FleetSession>, FleetError> {
        let id = id.to_string();
        Ok(self
            .read(move |conn| sqlite_fleet_sessions::get(conn, &id))
            .await?)
    }

    async fn active_sessions(&self) -> Result<Vec<FleetSession>, FleetError> {
        Ok(self.read(sqlite_fleet_sessions::active).await?)
    }

    async fn change_session(
        &self,
        id: &str,
        change: &SessionChange,
        now_ms: i64,
    ) -> Result<FleetSession, FleetError> {
        let (id, change) = (id.to_string(), change.clone());
        self.write(move |conn| sqlite_fleet_sessions::change(conn, &id, &change, now_ms))
            .await?
    }

    async fn end_engine_sessions(
        &self,
        engine: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, FleetError> {
        let (engine, reason) = (engine.to_string(), reason.to_string());
        Ok(self
            .write(move |conn| sqlite_fleet_sessions::end_engine(conn, &engine, &reason, now_ms))
            .await?)
    }

    async fn sync_engine_sessions(
        &self,
        engine: &str,
        held: &[EngineSession],
        now_ms: i64,
    ) -> Result<Vec<String>, FleetError> {
        let (engine, held) = (engine.to_string(), held.to_vec());
        Ok(self
            .write(move |conn| sqlite_fleet_sessions::sync_engine(conn, &engine, &held, now_ms))
            .await?)
    }

    async fn sweep_sessions(
        &self,
        now_ms: i64,
        offline_after_ms: i64,
    ) -> Result<Vec<FailedCall>, FleetError> {
        Ok(self
            .write(move |conn| sqlite_fleet_sessions::sweep(conn, now_ms, offline_after_ms))
            .await?)
    }
}
