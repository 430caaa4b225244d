//! Sessions of apps that remote engines host (docs/sessions.md, "In a
//! fleet"): the record every API node on the store shares, and the rules
//! both stores apply to it (`sqlite_fleet_sessions.rs`,
//! `postgres/fleet_sessions.rs`; `tests/fleet_contract.rs` pins them).
//!
//! - A session is opened unbound; the claim that leases its first call
//!   binds it to the claiming engine, in the claim's transaction. From then
//!   on only that engine claims its calls, one at a time and oldest first
//!   (a call is claimed only when none of the session's calls is leased
//!   and no older one is queued).
//! - Calls, keepalives and ends go through [`FleetSession::apply`] under
//!   the row's lock: the first end wins; a call or keepalive of a session
//!   that is over is refused with why.
//! - The sweep expires a session idle past its timeout (one with a call
//!   queued or running is not idle: its clock restarts), ends the session
//!   of an engine that stopped beating (its worker's memory is out of
//!   reach), and fails the queued calls of sessions that are over.
//! - An engine that registers again has restarted: its sessions end (the
//!   API node calls [`crate::fleet::FleetStore::end_engine_sessions`]).

use serde::{Deserialize, Serialize};

/// Why a session refuses a call or keepalive (the texts are the engine's
/// own for its sessions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefusal {
    #[error("unknown session \"{0}\"")]
    NotFound(String),
    #[error("session \"{id}\" ended: {reason}")]
    Ended { id: String, reason: String },
    #[error("session \"{id}\" expired: idle for more than its timeout of {idle_timeout_secs}s")]
    Expired { id: String, idle_timeout_secs: u64 },
    #[error("session \"{id}\" belongs to app \"{session_app}\", not \"{app}\"")]
    AppMismatch {
        id: String,
        session_app: String,
        app: String,
    },
}

/// A fleet session's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSession {
    /// `sess_…`.
    pub id: String,
    pub app: String,
    /// The app version it keeps (None: the app's only version).
    pub app_version: Option<String>,
    /// The engine holding it; None until its first call is claimed.
    pub engine: Option<String>,
    /// The replica leased to it on that engine, as the engine names it.
    pub worker: Option<String>,
    pub status: SessionState,
    /// Why it is over.
    pub reason: Option<String>,
    pub idle_timeout_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub call_count: i64,
    pub last_call_at_ms: Option<i64>,
    /// The task that opened it.
    pub task_id: String,
}

/// `status` of a [`FleetSession`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Active,
    Ended,
    Expired,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Active => "active",
            SessionState::Ended => "ended",
            SessionState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<SessionState> {
        match s {
            "active" => Some(SessionState::Active),
            "ended" => Some(SessionState::Ended),
            "expired" => Some(SessionState::Expired),
            _ => None,
        }
    }
}

/// What a caller does to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    /// A call of `app`: counted, and the idle clock restarts.
    Call { app: String },
    /// `POST /sessions/{id}/keepalive`.
    Keepalive,
    /// Ends it with `reason` (a no-op for one already over).
    End { reason: String },
}

/// What an engine says of a session it holds (its claim carries these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSession {
    pub id: String,
    /// The replica leased to it there.
    #[serde(default)]
    pub worker: Option<String>,
    /// It ended there (its worker died): why.
    #[serde(default)]
    pub ended: Option<String>,
}

/// A queued call the sweep failed because its session is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCall {
    pub task_id: String,
    pub error: String,
}

/// Why a session whose engine stopped beating ends.
pub fn engine_lost_reason(engine: &str) -> String {
    format!("its engine \"{engine}\" was lost (no heartbeat within a lease): the state in its worker is gone")
}

/// Why the sessions of an engine that registered again end.
pub fn engine_restarted_reason(engine: &str) -> String {
    format!("its engine \"{engine}\" restarted: a session never survives a restart of its engine")
}

impl FleetSession {
    /// A new, unbound, active session whose first call is `task_id`.
    pub fn open(
        id: String,
        app: &str,
        idle_timeout_ms: i64,
        task_id: &str,
        now_ms: i64,
    ) -> FleetSession {
        FleetSession {
            id,
            app: app.to_string(),
            app_version: None,
            engine: None,
            worker: None,
            status: SessionState::Active,
            reason: None,
            idle_timeout_ms,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            expires_at_ms: now_ms + idle_timeout_ms,
            ended_at_ms: None,
            call_count: 1,
            last_call_at_ms: Some(now_ms),
            task_id: task_id.to_string(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == SessionState::Active
    }

    /// Why it refuses a call of `app` (or a keepalive: `app` = its own).
    pub fn refusal(&self, app: &str) -> Option<SessionRefusal> {
        match self.status {
            SessionState::Ended => Some(SessionRefusal::Ended {
                id: self.id.clone(),
                reason: self.reason.clone().unwrap_or_default(),
            }),
            SessionState::Expired => Some(SessionRefusal::Expired {
                id: self.id.clone(),
                idle_timeout_secs: (self.idle_timeout_ms / 1000).max(0) as u64,
            }),
            SessionState::Active if self.app != app => Some(SessionRefusal::AppMismatch {
                id: self.id.clone(),
                session_app: self.app.clone(),
                app: app.to_string(),
            }),
            SessionState::Active => None,
        }
    }

    /// Applies `change` at `now_ms`, or refuses it changing nothing.
    pub fn apply(&mut self, change: &SessionChange, now_ms: i64) -> Result<(), SessionRefusal> {
        match change {
            SessionChange::Call { app } => {
                if let Some(refused) = self.refusal(app) {
                    return Err(refused);
                }
                self.call_count += 1;
                self.last_call_at_ms = Some(now_ms);
                self.restart_clock(now_ms);
            }
            SessionChange::Keepalive => {
                if let Some(refused) = self.refusal(&self.app.clone()) {
                    return Err(refused);
                }
                self.restart_clock(now_ms);
            }
            SessionChange::End { reason } => self.finish(SessionState::Ended, reason, now_ms),
        }
        Ok(())
    }

    fn restart_clock(&mut self, now_ms: i64) {
        self.expires_at_ms = now_ms + self.idle_timeout_ms;
        self.updated_at_ms = now_ms;
    }

    /// Marks it over (the first end wins).
    pub fn finish(&mut self, state: SessionState, reason: &str, now_ms: i64) {
        if self.is_active() {
            self.status = state;
            self.reason = Some(reason.to_string());
            self.ended_at_ms = Some(now_ms);
            self.updated_at_ms = now_ms;
        }
    }

    /// The sweep's rule for an active session: its engine lost (no beat
    /// since `engine_beat_ms`, or unknown) ends it; past its expiry it
    /// expires unless `busy` (a call queued or running), which restarts
    /// its clock. True when it changed.
    pub fn sweep(
        &mut self,
        now_ms: i64,
        engine_beat_ms: Option<i64>,
        offline_after_ms: i64,
        busy: bool,
    ) -> bool {
        if !self.is_active() {
            return false;
        }
        if let Some(engine) = self.engine.clone() {
            if engine_beat_ms.is_none_or(|beat| now_ms - beat > offline_after_ms) {
                self.finish(SessionState::Ended, &engine_lost_reason(&engine), now_ms);
                return true;
            }
        }
        if self.expires_at_ms > now_ms {
            return false;
        }
        if busy {
            self.restart_clock(now_ms);
        } else {
            let reason = expired_reason(self.idle_timeout_ms);
            self.finish(SessionState::Expired, &reason, now_ms);
        }
        true
    }
}

/// The reason an expired session shows.
pub fn expired_reason(idle_timeout_ms: i64) -> String {
    format!(
        "idle for more than its timeout of {}s",
        idle_timeout_ms / 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_count_and_the_first_end_wins() {
        let mut s = FleetSession::open("sess_a".into(), "ns/a", 10_000, "t1", 1000);
        s.apply(&SessionChange::Call { app: "ns/a".into() }, 2000)
            .unwrap();
        assert_eq!((s.call_count, s.expires_at_ms), (2, 12_000));
        assert_eq!(
            s.apply(&SessionChange::Call { app: "ns/b".into() }, 2000)
                .unwrap_err()
                .to_string(),
            "session \"sess_a\" belongs to app \"ns/a\", not \"ns/b\""
        );
        s.apply(
            &SessionChange::End {
                reason: "bye".into(),
            },
            3000,
        )
        .unwrap();
        s.apply(
            &SessionChange::End {
                reason: "again".into(),
            },
            4000,
        )
        .unwrap();
        assert_eq!(s.reason.as_deref(), Some("bye"));
        assert_eq!(
            s.apply(&SessionChange::Keepalive, 5000)
                .unwrap_err()
                .to_string(),
            "session \"sess_a\" ended: bye"
        );
    }

    #[test]
    fn the_sweep_expires_idle_sessions_and_ends_those_of_lost_engines() {
        let mut idle = FleetSession::open("sess_a".into(), "ns/a", 10_000, "t1", 0);
        assert!(!idle.sweep(5_000, None, 1000, false));
        assert!(idle.sweep(10_001, None, 1000, true), "busy: clock restarts");
        assert_eq!(idle.expires_at_ms, 20_001);
        assert!(idle.sweep(20_002, None, 1000, false));
        assert_eq!(idle.status, SessionState::Expired);
        assert_eq!(
            idle.refusal("ns/a").unwrap().to_string(),
            "session \"sess_a\" expired: idle for more than its timeout of 10s"
        );

        let mut bound = FleetSession::open("sess_b".into(), "ns/a", 10_000, "t1", 0);
        bound.engine = Some("e1".into());
        assert!(!bound.sweep(5_000, Some(4_500), 1000, true));
        assert!(bound.sweep(5_000, Some(3_000), 1000, true));
        assert_eq!(
            bound.refusal("ns/a").unwrap().to_string(),
            "session \"sess_b\" ended: its engine \"e1\" was lost (no heartbeat within a lease): the state in its worker is gone"
        );
    }
}
