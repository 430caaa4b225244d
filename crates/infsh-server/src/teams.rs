//! Teams: every key created at run time belongs to one (admin keys to
//! all). A task is stored with the team of the key that ran it (admin keys:
//! [`DEFAULT_TEAM`]); a run-time key sees only its own team's tasks, and
//! another team's task answers exactly as an unknown id does (404
//! `not_found`, never 403: its existence does not leak).

use axum::Extension;
use infsh_engine::EngineError;

use crate::problem::Problem;
use crate::scoped_keys::Principal;
use crate::state::ServerState;

pub use infsh_store::DEFAULT_TEAM;

/// Who a handler's request is: the middleware attaches it on every
/// authenticated route; absent (a router built without auth) it is admin.
pub type Caller = Option<Extension<Principal>>;

/// The only team `caller` may see; None: every team (admin keys).
pub fn visible_team(caller: &Caller) -> Option<&str> {
    match caller {
        Some(Extension(Principal::Key(k))) => Some(&k.team),
        _ => None,
    }
}

/// The team a task run by `caller` belongs to.
pub fn team_of_new_task(caller: &Caller) -> String {
    visible_team(caller).unwrap_or(DEFAULT_TEAM).to_string()
}

/// Ok when `caller` may see task `id`; an unknown task and another team's
/// are the same 404.
pub async fn check_task(state: &ServerState, caller: &Caller, id: &str) -> Result<(), Problem> {
    let Some(team) = visible_team(caller) else {
        return Ok(());
    };
    let record = state.engine.get(id).await?.record;
    if record.team.as_deref().unwrap_or(DEFAULT_TEAM) == team {
        Ok(())
    } else {
        Err(EngineError::UnknownTask(id.to_string()).into())
    }
}

/// Ok when `principal` may see file `id`: an unknown file and another
/// team's are the same 404 (`not_found`, kind `file`).
pub async fn check_file(
    state: &ServerState,
    principal: &Principal,
    id: &str,
) -> Result<(), Problem> {
    let unknown = || Problem::not_found("file", format!("unknown file \"{id}\""));
    if !infsh_store::is_valid_id(id) {
        return Err(unknown());
    }
    let access = match state.engine.file_access(id).await {
        Ok(a) => a,
        Err(EngineError::UnknownFile(_)) => return Err(unknown()),
        Err(e) => return Err(e.into()),
    };
    if same_team(principal, access.team.as_deref()) {
        Ok(())
    } else {
        Err(unknown())
    }
}

/// Ok when `caller` may see session `id`: a session is its opening task's
/// team's; an unknown session and another team's are the same 404.
pub async fn check_session(state: &ServerState, caller: &Caller, id: &str) -> Result<(), Problem> {
    if visible_team(caller).is_none() {
        return Ok(());
    }
    let view = state.engine.session(id).await?;
    check_task(state, caller, &view.task_id)
        .await
        .map_err(|_| EngineError::SessionNotFound(id.to_string()).into())
}

/// Whether `caller` may see `session` (for listings).
pub async fn sees_session(
    state: &ServerState,
    caller: &Caller,
    session: &infsh_engine::SessionView,
) -> bool {
    check_task(state, caller, &session.task_id).await.is_ok()
}

/// Whether `principal` may see a file of `file_team` (None: the default
/// team): its own team's, or any for admin keys.
pub fn same_team(principal: &Principal, file_team: Option<&str>) -> bool {
    match principal {
        Principal::Admin => true,
        Principal::Key(k) => file_team.unwrap_or(DEFAULT_TEAM) == k.team,
    }
}
