//! Sessions of apps that remote engines host (docs/sessions.md, "In a
//! fleet"), the API node's side: the record and its lease are in the fleet
//! store (`infsh_store::fleet::FleetSession`), so every API node on it
//! opens, continues, shows, keeps alive and ends them alike. The engine
//! that claims a session's first call holds it and leases one of its
//! replicas to it with its own session code (`crate::sessions`); its later
//! calls are claimed by that engine only. The sweep ends a session whose
//! engine was lost and fails its queued calls; an engine that registers
//! again (it restarted) ends its sessions (`fleet_hub.rs`, `register`).

use std::time::Duration;

use infsh_store::fleet::{FleetSession, SessionChange, SessionState};
use infsh_store::{new_id, now_ms, TaskStatus};

use crate::api::EngineError;
use crate::fleet_hub::{fleet_error, FleetHub};
use crate::sessions::{Requested, SessionStatus, SessionView, SESSION_PREFIX};

/// What `DELETE /sessions/{id}` gives as the reason.
pub(crate) const ENDED_BY_DELETE: &str = "ended by DELETE /sessions/{id}";

impl FleetHub {
    /// The session a remote run opens or continues (checked and counted
    /// before the run is queued): its id, or None for a run without one.
    pub(crate) async fn session_for(
        &self,
        requested: Requested,
        app: &str,
        task_id: &str,
        now: i64,
    ) -> Result<Option<String>, EngineError> {
        match requested {
            Requested::None => Ok(None),
            Requested::New(idle_timeout) => {
                let id = format!("{SESSION_PREFIX}{}", new_id());
                let session = FleetSession::open(
                    id.clone(),
                    app,
                    idle_timeout.as_millis() as i64,
                    task_id,
                    now,
                );
                self.store
                    .open_session(&session)
                    .await
                    .map_err(fleet_error)?;
                Ok(Some(id))
            }
            Requested::Continue(id) => {
                self.store
                    .change_session(&id, &SessionChange::Call { app: app.into() }, now)
                    .await
                    .map_err(fleet_error)?;
                Ok(Some(id))
            }
        }
    }

    /// The active fleet sessions, oldest first.
    pub(crate) async fn sessions(&self) -> Result<Vec<SessionView>, EngineError> {
        let sessions = self.store.active_sessions().await.map_err(fleet_error)?;
        Ok(sessions.iter().map(view).collect())
    }

    pub(crate) async fn session(&self, id: &str) -> Result<SessionView, EngineError> {
        match self.store.get_session(id).await.map_err(fleet_error)? {
            Some(session) => Ok(view(&session)),
            None => Err(EngineError::SessionNotFound(id.to_string())),
        }
    }

    pub(crate) async fn keepalive_session(&self, id: &str) -> Result<SessionView, EngineError> {
        self.change(id, SessionChange::Keepalive).await
    }

    /// Ends it; the engine holding it hears of it in its claim (woken
    /// now) and releases the replica.
    pub(crate) async fn end_session(&self, id: &str) -> Result<SessionView, EngineError> {
        let reason = ENDED_BY_DELETE.to_string();
        let view = self.change(id, SessionChange::End { reason }).await?;
        self.wake.notify();
        Ok(view)
    }

    async fn change(&self, id: &str, change: SessionChange) -> Result<SessionView, EngineError> {
        self.store
            .change_session(id, &change, now_ms())
            .await
            .map(|s| view(&s))
            .map_err(fleet_error)
    }

    /// Expires idle sessions, ends those of lost engines, and fails (and
    /// publishes) the queued calls of sessions that are over.
    pub(crate) async fn sweep_sessions(&self) {
        let failed = match self.store.sweep_sessions(now_ms(), self.lease_ms()).await {
            Ok(failed) => failed,
            Err(e) => {
                tracing::error!(error = %e, "cannot sweep fleet sessions");
                return;
            }
        };
        for call in failed {
            self.wake.task_changed(&call.task_id);
            let at = now_ms();
            self.publish(&call.task_id, |view| {
                view.record.status = TaskStatus::Failed;
                view.record.error = Some(call.error.clone());
                view.record.updated_at_ms = at;
            });
            self.ended(&call.task_id).await;
        }
    }
}

/// A fleet session as `GET /sessions/{id}` shows it. Its worker is
/// `ns/name#0@engine`: the replica, on the engine holding it.
fn view(s: &FleetSession) -> SessionView {
    let status = match s.status {
        SessionState::Active => SessionStatus::Active,
        SessionState::Ended => SessionStatus::Ended,
        SessionState::Expired => SessionStatus::Expired,
    };
    SessionView {
        id: s.id.clone(),
        app: s.app.clone(),
        worker: match (&s.worker, &s.engine) {
            (Some(worker), Some(engine)) => Some(format!("{worker}@{engine}")),
            _ => None,
        },
        status,
        reason: s.reason.clone(),
        created_at_ms: s.created_at_ms,
        updated_at_ms: s.updated_at_ms,
        expires_at_ms: s.ended_at_ms.unwrap_or(s.expires_at_ms),
        ended_at_ms: s.ended_at_ms,
        idle_timeout_secs: Duration::from_millis(s.idle_timeout_ms.max(0) as u64).as_secs(),
        call_count: s.call_count.max(0) as u64,
        last_call_at_ms: s.last_call_at_ms,
        task_id: s.task_id.clone(),
    }
}
