//! Sessions (inference.sh semantics): a run with `"session": "new"` opens a
//! session `sess_…` and leases one replica of its app to it; every later run
//! naming the id goes to that replica, one at a time and in order, and no
//! other run uses the replica while the lease holds. The lease ends with
//! `DELETE /sessions/{id}`, after `idle_timeout` without a call (reset by
//! each call's submit and end and by a keepalive), or when its worker dies.
//!
//! This table is the one record of sessions: the engine's submit and the
//! HTTP routes read and change it; each app's scheduler binds its replicas
//! to its sessions (`scheduler/sessions.rs`) and is the one that expires
//! them (it knows which have a call queued or running). It lives in memory
//! only: a session never survives a restart of the server (its worker's
//! state is gone with the process anyway), and its id is then unknown (404).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use infsh_store::{new_id, now_ms};
use serde::Serialize;
use tokio::time::Instant;

use crate::api::{EngineError, RunRequest};

/// `session_timeout` when a new session gives none (seconds).
pub const DEFAULT_SESSION_TIMEOUT: u64 = 60;
/// The longest `session_timeout` (seconds).
pub const MAX_SESSION_TIMEOUT: u64 = 3600;
/// How long an ended or expired session is remembered (its id answers
/// 410 with why); after that it is unknown (404).
pub const ENDED_KEPT: Duration = Duration::from_secs(3600);
/// The prefix of every session id.
pub const SESSION_PREFIX: &str = "sess_";

/// A session's state on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Active,
    Ended,
    Expired,
}

/// A session, for `GET /sessions/{id}` (times in Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionView {
    pub id: String,
    /// The app's id, `ns/name`.
    pub app: String,
    /// The replica leased to it (`ns/name#0`, as `GET /workers` names it);
    /// None until its first call was dispatched.
    pub worker: Option<String>,
    pub status: SessionStatus,
    /// Why it ended (ended or expired only).
    pub reason: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// When it expires if no call or keepalive comes before.
    pub expires_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// Seconds without a call after which it expires.
    pub idle_timeout_secs: u64,
    pub call_count: u64,
    pub last_call_at_ms: Option<i64>,
    /// The task that opened it.
    pub task_id: String,
}

/// What a run asks of sessions, checked before anything is stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Requested {
    None,
    /// `"new"`, with its idle timeout.
    New(Duration),
    Continue(String),
}

/// `session` and `session_timeout` of a run: 400 for a timeout out of
/// range or without `"new"`.
pub(crate) fn requested(request: &RunRequest) -> Result<Requested, EngineError> {
    let timeout = request.session_timeout;
    match request.session.as_deref() {
        Some("new") => {
            let secs = timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT as i64);
            if !(1..=MAX_SESSION_TIMEOUT as i64).contains(&secs) {
                return Err(EngineError::InvalidSession(format!(
                    "`session_timeout` must be from 1 to {MAX_SESSION_TIMEOUT} seconds, got {secs}"
                )));
            }
            Ok(Requested::New(Duration::from_secs(secs as u64)))
        }
        other if timeout.is_some() => Err(EngineError::InvalidSession(format!(
            "`session_timeout` is only valid with `\"session\": \"new\"`{}",
            other.map_or(String::new(), |s| format!(
                " (it was set when session \"{s}\" was opened)"
            ))
        ))),
        Some(id) if !id.is_empty() => Ok(Requested::Continue(id.to_string())),
        _ => Ok(Requested::None),
    }
}

#[derive(Debug, Clone)]
enum State {
    Active,
    Ended { at_ms: i64, reason: String },
    Expired { at_ms: i64 },
}

#[derive(Debug, Clone)]
struct Session {
    app: String,
    idle_timeout: Duration,
    created_at_ms: i64,
    updated_at_ms: i64,
    /// On the engine's clock (tokio's: paused in unit tests).
    expires_at: Instant,
    call_count: u64,
    last_call_at_ms: Option<i64>,
    task_id: String,
    /// The replica leased to it: its number, its generation (a replaced
    /// worker is another generation) and its name.
    lease: Option<(usize, u64, String)>,
    state: State,
    /// When it stopped being active, for forgetting it after [`ENDED_KEPT`].
    gone_at: Option<Instant>,
}

/// Where a session's next call may run, for its app's scheduler.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Binding {
    /// Active, no replica yet: its first call takes a free one.
    Unbound,
    /// Active, on this replica and generation.
    Bound { replica: usize, generation: u64 },
    /// Not active (or unknown): its queued calls fail with this message.
    Gone(String),
}

/// Every session of this engine, by id.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding it leaves nothing half-written that matters.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks that session `id` may take a call of `app` (before anything
    /// is stored).
    pub fn check(&self, id: &str, app: &str) -> Result<(), EngineError> {
        let map = self.lock();
        let session = map.get(id).ok_or_else(|| not_found(id))?;
        refusal(id, session, app).map_or(Ok(()), Err)
    }

    /// Opens a session for `app` whose first call is `task_id`.
    pub fn open(&self, app: &str, idle_timeout: Duration, task_id: &str) -> String {
        let id = format!("{SESSION_PREFIX}{}", new_id());
        let now = now_ms();
        let mut map = self.lock();
        forget_old(&mut map);
        map.insert(
            id.clone(),
            Session {
                app: app.to_string(),
                idle_timeout,
                created_at_ms: now,
                updated_at_ms: now,
                expires_at: Instant::now() + idle_timeout,
                call_count: 1,
                last_call_at_ms: Some(now),
                task_id: task_id.to_string(),
                lease: None,
                state: State::Active,
                gone_at: None,
            },
        );
        id
    }

    /// Counts a call of `app` in session `id` (checked again: it may have
    /// ended since [`Sessions::check`]) and resets its idle timeout.
    pub fn call(&self, id: &str, app: &str) -> Result<(), EngineError> {
        let mut map = self.lock();
        let session = map.get_mut(id).ok_or_else(|| not_found(id))?;
        if let Some(refused) = refusal(id, session, app) {
            return Err(refused);
        }
        let now = now_ms();
        session.call_count += 1;
        session.last_call_at_ms = Some(now);
        session.updated_at_ms = now;
        session.expires_at = Instant::now() + session.idle_timeout;
        Ok(())
    }

    pub fn view(&self, id: &str) -> Result<SessionView, EngineError> {
        let map = self.lock();
        map.get(id)
            .map(|s| view(id, s))
            .ok_or_else(|| not_found(id))
    }

    /// The active sessions, oldest first.
    pub fn active(&self) -> Vec<SessionView> {
        let map = self.lock();
        let mut views: Vec<SessionView> = map
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Active))
            .map(|(id, s)| view(id, s))
            .collect();
        views.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        views
    }

    /// Resets the idle timeout of an active session: 410 if it is not.
    pub fn keepalive(&self, id: &str) -> Result<SessionView, EngineError> {
        let mut map = self.lock();
        let session = map.get_mut(id).ok_or_else(|| not_found(id))?;
        if let Some(refused) = refusal(id, session, &session.app.clone()) {
            return Err(refused);
        }
        session.expires_at = Instant::now() + session.idle_timeout;
        session.updated_at_ms = now_ms();
        Ok(view(id, session))
    }

    /// Ends session `id` (a no-op for one that already ended or expired);
    /// its app's scheduler releases the replica when woken.
    pub fn end(&self, id: &str, reason: &str) -> Result<SessionView, EngineError> {
        let mut map = self.lock();
        let session = map.get_mut(id).ok_or_else(|| not_found(id))?;
        finish(
            session,
            State::Ended {
                at_ms: now_ms(),
                reason: reason.to_string(),
            },
        );
        Ok(view(id, session))
    }

    /// Where session `id`'s next call may run.
    pub fn binding(&self, id: &str) -> Binding {
        let map = self.lock();
        let Some(session) = map.get(id) else {
            return Binding::Gone(not_found(id).to_string());
        };
        if let Some(refused) = refusal(id, session, &session.app) {
            return Binding::Gone(refused.to_string());
        }
        match &session.lease {
            None => Binding::Unbound,
            Some((replica, generation, _)) => Binding::Bound {
                replica: *replica,
                generation: *generation,
            },
        }
    }

    /// Leases replica `replica` (generation `generation`, named `worker`)
    /// to session `id`, whose first call goes there now.
    pub fn bind(&self, id: &str, replica: usize, generation: u64, worker: String) {
        if let Some(session) = self.lock().get_mut(id) {
            session.lease = Some((replica, generation, worker));
            session.updated_at_ms = now_ms();
        }
    }

    /// A call of session `id` ended: its idle timeout starts again.
    pub fn touch(&self, id: &str) {
        if let Some(session) = self.lock().get_mut(id) {
            if matches!(session.state, State::Active) {
                session.expires_at = Instant::now() + session.idle_timeout;
                session.updated_at_ms = now_ms();
            }
        }
    }

    /// Whether session `id` is active.
    pub fn is_active(&self, id: &str) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|s| matches!(s.state, State::Active))
    }

    /// Expires `app`'s active sessions idle past their timeout; one with a
    /// call queued or running (`busy`) is not idle: its timeout restarts.
    pub fn expire_due(&self, app: &str, busy: impl Fn(&str) -> bool) {
        let now = Instant::now();
        let mut map = self.lock();
        for (id, session) in map.iter_mut() {
            if session.app != app || !matches!(session.state, State::Active) {
                continue;
            }
            if session.expires_at > now {
                continue;
            }
            if busy(id) {
                session.expires_at = now + session.idle_timeout;
            } else {
                finish(session, State::Expired { at_ms: now_ms() });
            }
        }
    }

    /// When `app`'s next active session is due to expire.
    pub fn next_expiry(&self, app: &str) -> Option<Instant> {
        self.lock()
            .values()
            .filter(|s| s.app == app && matches!(s.state, State::Active))
            .map(|s| s.expires_at)
            .min()
    }
}

/// Marks a session no longer active (the first end wins).
fn finish(session: &mut Session, state: State) {
    if matches!(session.state, State::Active) {
        session.state = state;
        session.updated_at_ms = now_ms();
        session.gone_at = Some(Instant::now());
    }
}

/// Forgets sessions gone for longer than [`ENDED_KEPT`].
fn forget_old(map: &mut HashMap<String, Session>) {
    let now = Instant::now();
    map.retain(|_, s| {
        s.gone_at
            .is_none_or(|at| now.duration_since(at) < ENDED_KEPT)
    });
}

fn not_found(id: &str) -> EngineError {
    EngineError::SessionNotFound(id.to_string())
}

/// Why session `id` refuses a call of `app`, if it does.
fn refusal(id: &str, session: &Session, app: &str) -> Option<EngineError> {
    match &session.state {
        State::Ended { reason, .. } => Some(EngineError::SessionEnded {
            id: id.to_string(),
            reason: reason.clone(),
        }),
        State::Expired { .. } => Some(EngineError::SessionExpired {
            id: id.to_string(),
            idle_timeout_secs: session.idle_timeout.as_secs(),
        }),
        State::Active if session.app != app => Some(EngineError::SessionAppMismatch {
            id: id.to_string(),
            session_app: session.app.clone(),
            app: app.to_string(),
        }),
        State::Active => None,
    }
}

fn view(id: &str, s: &Session) -> SessionView {
    let left = s.expires_at.saturating_duration_since(Instant::now());
    let (status, reason, ended_at_ms) = match &s.state {
        State::Active => (SessionStatus::Active, None, None),
        State::Ended { at_ms, reason } => {
            (SessionStatus::Ended, Some(reason.clone()), Some(*at_ms))
        }
        State::Expired { at_ms } => (
            SessionStatus::Expired,
            Some(format!(
                "idle for more than its timeout of {}s",
                s.idle_timeout.as_secs()
            )),
            Some(*at_ms),
        ),
    };
    let expires_at_ms = ended_at_ms.unwrap_or_else(|| now_ms() + left.as_millis() as i64);
    SessionView {
        id: id.to_string(),
        app: s.app.clone(),
        worker: s.lease.as_ref().map(|(_, _, name)| name.clone()),
        status,
        reason,
        created_at_ms: s.created_at_ms,
        updated_at_ms: s.updated_at_ms,
        expires_at_ms,
        ended_at_ms,
        idle_timeout_secs: s.idle_timeout.as_secs(),
        call_count: s.call_count,
        last_call_at_ms: s.last_call_at_ms,
        task_id: s.task_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(session: Option<&str>, timeout: Option<i64>) -> RunRequest {
        RunRequest {
            session: session.map(String::from),
            session_timeout: timeout,
            ..RunRequest::new("ns/a".parse().unwrap())
        }
    }

    #[test]
    fn session_timeout_is_checked_and_only_taken_with_new() {
        assert_eq!(requested(&req(None, None)).unwrap(), Requested::None);
        assert_eq!(
            requested(&req(Some("new"), None)).unwrap(),
            Requested::New(Duration::from_secs(60))
        );
        assert_eq!(
            requested(&req(Some("new"), Some(3600))).unwrap(),
            Requested::New(Duration::from_secs(3600))
        );
        assert_eq!(
            requested(&req(Some("sess_x"), None)).unwrap(),
            Requested::Continue("sess_x".into())
        );
        for bad in [0, -1, 3601] {
            assert_eq!(
                requested(&req(Some("new"), Some(bad)))
                    .unwrap_err()
                    .to_string(),
                format!("`session_timeout` must be from 1 to 3600 seconds, got {bad}")
            );
        }
        assert_eq!(
            requested(&req(None, Some(5))).unwrap_err().to_string(),
            "`session_timeout` is only valid with `\"session\": \"new\"`"
        );
        assert_eq!(
            requested(&req(Some("sess_x"), Some(5))).unwrap_err().to_string(),
            "`session_timeout` is only valid with `\"session\": \"new\"` (it was set when session \"sess_x\" was opened)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_refuses_other_apps_and_calls_once_ended_or_expired() {
        let sessions = Sessions::default();
        let id = sessions.open("ns/a", Duration::from_secs(10), "t1");
        assert!(id.starts_with("sess_") && id.len() == 37, "{id}");
        sessions.check(&id, "ns/a").unwrap();
        assert_eq!(
            sessions.check(&id, "ns/b").unwrap_err().to_string(),
            format!("session \"{id}\" belongs to app \"ns/a\", not \"ns/b\"")
        );
        assert_eq!(
            sessions.check("sess_nope", "ns/a").unwrap_err().to_string(),
            "unknown session \"sess_nope\" (sessions live in the server's memory: none survives a restart)"
        );
        sessions.call(&id, "ns/a").unwrap();
        assert_eq!(sessions.view(&id).unwrap().call_count, 2);

        tokio::time::advance(Duration::from_secs(10)).await;
        sessions.expire_due("ns/a", |_| true);
        assert!(
            sessions.is_active(&id),
            "a session with a call in flight is not idle"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        sessions.expire_due("ns/a", |_| false);
        assert_eq!(sessions.view(&id).unwrap().status, SessionStatus::Expired);
        assert_eq!(
            sessions.call(&id, "ns/a").unwrap_err().to_string(),
            format!("session \"{id}\" expired: idle for more than its timeout of 10s")
        );
        assert_eq!(
            sessions.end(&id, "ended by DELETE").unwrap().status,
            SessionStatus::Expired,
            "the first end wins"
        );

        let other = sessions.open("ns/a", Duration::from_secs(10), "t2");
        sessions
            .end(&other, "ended by DELETE /sessions/{id}")
            .unwrap();
        assert_eq!(
            sessions.keepalive(&other).unwrap_err().to_string(),
            format!("session \"{other}\" ended: ended by DELETE /sessions/{{id}}")
        );
        assert_eq!(sessions.active(), vec![]);
    }
}
