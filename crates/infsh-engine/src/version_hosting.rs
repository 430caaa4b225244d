//! Hosting deployed versions: where a version's files live under the data
//! folder, starting a version's scheduler, and (at start) hosting every
//! ready version again before recovery. Below `engine` (which calls
//! [`rehost`]) and `versions` (the engine's version methods).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use infsh_core::app::AppDir;
use infsh_store::VersionStatus;

use crate::api::EngineError;
use crate::hosted::HostedApps;
use crate::registry::AppEntry;
use crate::scheduler;
use crate::shared::Shared;
use crate::worker_seam::WorkerLauncher;

/// The folder under `--data-dir` that holds versions.
pub const VERSIONS_DIR: &str = "versions";

pub(crate) fn app_dir(data_dir: &Path, app: &str) -> PathBuf {
    data_dir.join(VERSIONS_DIR).join(app)
}

/// Where an upload is written while it streams in (then renamed).
pub fn upload_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(VERSIONS_DIR).join(".uploads")
}

/// `ns/name` with both parts plain names (no `..`, no separators).
pub(crate) fn check_app_id(app: &str) -> Result<(), EngineError> {
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match app.split_once('/') {
        Some((ns, name)) if ok(ns) && ok(name) => Ok(()),
        _ => Err(EngineError::BadPackage(format!(
            "\"{app}\" is not an app id (namespace/name)"
        ))),
    }
}

/// Starts hosting a version whose folder is unpacked.
pub(crate) fn host(
    shared: &Arc<Shared>,
    apps: &HostedApps,
    launcher: &dyn WorkerLauncher,
    folder: &Path,
    hash: &str,
) -> Result<crate::handle::AppHandle, EngineError> {
    let dir = AppDir::open(folder).map_err(|e| EngineError::BadPackage(e.to_string()))?;
    let mut entry = AppEntry::for_version(dir, hash);
    entry.bounds = shared
        .config
        .placement
        .overrides_for(&entry.namespace, &entry.name)
        .over(entry.bounds);
    let id = entry.id.clone();
    if let Ok(handle) = apps.by_id(&id) {
        return Ok(handle);
    }
    let handle = scheduler::spawn(shared.clone(), entry, launcher);
    apps.add_version(handle.clone());
    Ok(handle)
}

/// At start: hosts every ready version found under the data folder and
/// sets each app's current version from the store. With
/// `--versions-on-engines` a version whose build stored its functions is
/// not hosted: its runs go to engines, validated from the store
/// (`stored_versions.rs`), so a scheduler here (a worker with `--preload`)
/// would only hold memory; one built before that has nothing else to run
/// it and is hosted as before.
pub(crate) async fn rehost(
    shared: &Arc<Shared>,
    apps: &HostedApps,
    launcher: &dyn WorkerLauncher,
) -> Result<usize, EngineError> {
    let root = shared.config.data_dir.join(VERSIONS_DIR);
    let mut hosted = 0;
    let Ok(namespaces) = std::fs::read_dir(&root) else {
        return Ok(0);
    };
    for ns in namespaces.flatten().filter(|e| e.path().is_dir()) {
        let ns_name = ns.file_name().to_string_lossy().into_owned();
        if ns_name.starts_with('.') {
            continue;
        }
        for name in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let app = format!("{ns_name}/{}", name.file_name().to_string_lossy());
            for record in shared.store.list_app_versions(&app).await? {
                let folder = name.path().join(&record.hash);
                if record.status != VersionStatus::Ready || !folder.is_dir() {
                    continue;
                }
                if shared.config.versions_on_engines && record.functions.is_some() {
                    continue;
                }
                match host(shared, apps, launcher, &folder, &record.hash) {
                    Ok(_) => hosted += 1,
                    Err(e) => tracing::warn!(%app, hash = %record.hash, "version not hosted: {e}"),
                }
            }
            if let Some(hash) = shared.store.current_app_version(&app).await? {
                if apps.has(&format!("{app}@{hash}")) {
                    apps.set_current(&app, &hash);
                }
            }
        }
    }
    Ok(hosted)
}
