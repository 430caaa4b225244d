//! The sessions this engine holds for its API node (docs/sessions.md, "In
//! a fleet"). The API node's session (`sess_…` in the fleet store) is run
//! here as a session of the local engine, opened by its first claimed call
//! (which leases it one local replica) and continued by the later ones,
//! which only this engine claims. Each claim tells the API node which
//! replica each session holds and which ended here (its worker died); the
//! answer names those over there (`DELETE`, expiry), which end here too,
//! releasing their replicas.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use infsh_engine::{Engine, EngineError, SessionStatus};
use infsh_store::fleet::EngineSession;

/// A local session's idle timeout: the API node keeps the real one (its
/// sweep expires the session and tells us), so ours only has to outlast it.
pub const LOCAL_TIMEOUT_SECS: i64 = 3600;

/// API node session id -> the local session that runs it.
#[derive(Clone, Default)]
pub struct HeldSessions {
    map: Arc<Mutex<HashMap<String, String>>>,
}

impl HeldSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The local session running `fleet_id`, if its first call ran here.
    pub fn local(&self, fleet_id: &str) -> Option<String> {
        self.lock().get(fleet_id).cloned()
    }

    pub fn insert(&self, fleet_id: &str, local: String) {
        self.lock().insert(fleet_id.to_string(), local);
    }

    /// What the next claim says of each held session.
    pub async fn reports(&self, engine: &Engine) -> Vec<EngineSession> {
        let held: Vec<(String, String)> = self
            .lock()
            .iter()
            .map(|(f, l)| (f.clone(), l.clone()))
            .collect();
        let mut reports = Vec::with_capacity(held.len());
        for (fleet_id, local) in held {
            let report = match engine.session(&local).await {
                Ok(view) => EngineSession {
                    id: fleet_id,
                    worker: view.worker.clone(),
                    ended: (view.status != SessionStatus::Active)
                        .then(|| view.reason.unwrap_or_else(|| "it ended".into())),
                },
                Err(e) => EngineSession {
                    id: fleet_id,
                    worker: None,
                    ended: Some(e.to_string()),
                },
            };
            reports.push(report);
        }
        reports
    }

    /// The API node is done with these: end them here (a no-op for one
    /// that ended already) and forget them.
    pub async fn end(&self, engine: &Engine, fleet_ids: &[String]) {
        for fleet_id in fleet_ids {
            let local = self.lock().remove(fleet_id);
            if let Some(local) = local {
                match engine.end_session(&local).await {
                    Ok(_) | Err(EngineError::SessionNotFound(_)) => {}
                    Err(e) => {
                        tracing::warn!(session = %fleet_id, error = %e, "cannot end a session")
                    }
                }
            }
        }
    }
}

/// A local session's refusal, told with the API node's session id (the
/// local one means nothing to a client).
pub fn refusal_text(fleet_id: &str, error: &EngineError) -> Option<String> {
    match error {
        EngineError::SessionEnded { reason, .. } => {
            Some(format!("session \"{fleet_id}\" ended: {reason}"))
        }
        EngineError::SessionExpired { .. } | EngineError::SessionNotFound(_) => Some(format!(
            "session \"{fleet_id}\" ended: its replica on this engine is gone ({error})"
        )),
        _ => None,
    }
}
