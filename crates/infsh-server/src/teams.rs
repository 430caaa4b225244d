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

/// The team of keys made without one, and of tasks run by admin keys or
/// stored before teams.
pub const DEFAULT_TEAM: &str = "default";

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
