//! What `infsh engine run` registers: each hosted app with what its worker
//! said in `ready` (functions, schemas; a worker starts per app to learn
//! it) and the content hash of its folder, and the slot layout.

use infsh_core::AppRef;
use infsh_engine::{Engine, RemoteApp, RemoteRegistration};

use super::app_hash::app_hash;
use crate::exit::{ExitCode, Failure};

pub async fn registration(engine: &Engine, name: &str) -> Result<RemoteRegistration, Failure> {
    let mut apps = Vec::new();
    // Versions it fetched (hosted again at start) are not registered as
    // apps: their tasks reach it as an engine that fetches versions.
    for summary in engine.apps().into_iter().filter(|a| !a.id.contains('@')) {
        let reference: AppRef = summary
            .id
            .parse()
            .map_err(|e| Failure::new(ExitCode::AppLoad, format!("app \"{}\": {e}", summary.id)))?;
        let (ready, dir) = engine
            .app_ready(&reference)
            .await
            .map_err(|e| Failure::new(ExitCode::AppLoad, format!("app \"{}\": {e}", summary.id)))?;
        let hash = app_hash(&dir).map_err(|e| {
            Failure::new(
                ExitCode::AppLoad,
                format!("app \"{}\": cannot read {}: {e}", summary.id, dir.display()),
            )
        })?;
        apps.push(RemoteApp {
            app: summary.id,
            hash,
            default_function: summary.default_function,
            ready,
        });
    }
    let slots = serde_json::to_value(engine.engine_view())
        .ok()
        .and_then(|v| v.get("slots").cloned())
        .unwrap_or_default();
    Ok(RemoteRegistration {
        name: name.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        slots,
        apps,
    })
}

/// What its claims call `warm`: the apps with a replica up here (idle or
/// busy: its slot frees when the task ends) and the versions it has cached.
/// The API node claims their tasks here first, and other engines leave
/// them to it for a moment while it has a free slot (docs/deploy.md,
/// "Which engine runs a task"): no cold start, no package download.
pub async fn warm(engine: &Engine) -> Vec<String> {
    let mut warm = engine.hosted_versions();
    for worker in engine.workers().await {
        // `ns/name#0` (or `ns/name@HASH#0`): the app id and the replica.
        let app = worker
            .id
            .rsplit_once('#')
            .map_or(&*worker.id, |(app, _)| app);
        if matches!(worker.state.as_str(), "idle" | "busy") && !warm.iter().any(|w| w == app) {
            warm.push(app.to_string());
        }
    }
    warm
}

/// Tasks held at once: every app's workers busy (more would only queue
/// here while another engine could run them).
pub fn capacity(engine: &Engine) -> usize {
    let config = engine.config();
    let per_app = (config.replicas * config.concurrency_per_replica).max(1);
    per_app * engine.apps().len().max(1)
}

/// The names a run's `workers` may pin to this engine with: its own name
/// and each slot as `NAME-KIND-ID` (`gpu-box-1-gpu-0`, `gpu-box-1-cpu-3`).
/// A run pinned to slots is claimed here and runs on one of them
/// ([`pinned_slots`]).
pub fn worker_names(engine: &Engine, name: &str) -> Vec<String> {
    let mut names = vec![name.to_string()];
    names.extend(
        engine
            .engine_view()
            .slots
            .iter()
            .map(|slot| format!("{name}-{}-{}", slot.kind, slot.id)),
    );
    names
}

/// The local slots a claimed run pinned with `workers` must run on; None:
/// any (not pinned, or pinned to this engine by its name).
pub fn pinned_slots(engine: &Engine, name: &str, pinned: Option<&[String]>) -> Option<Vec<usize>> {
    let pinned = pinned?;
    if pinned.iter().any(|w| w == name) {
        return None;
    }
    let slots: Vec<usize> = engine
        .engine_view()
        .slots
        .iter()
        .filter(|slot| pinned.contains(&format!("{name}-{}-{}", slot.kind, slot.id)))
        .map(|slot| slot.id)
        .collect();
    // The claim matched one of these names, so one is here; none would be
    // a layout changed since: the local submit refuses the empty pin.
    Some(slots)
}
