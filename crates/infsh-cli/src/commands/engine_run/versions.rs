//! Deployed versions on this engine (docs/deploy.md, "Versions on
//! engines"). A claimed task of `ns/name@HASH` that this engine does not
//! host yet: the package is fetched from the API node
//! (`GET /engine/versions/NS/NAME/HASH/package`), checked to hash to HASH,
//! and deployed into the local engine (unpacked under
//! `<data-dir>/versions/NS/NAME/HASH/`, its environment built, one worker
//! started to discover its functions), then the task runs on it. With a
//! `--data-dir` the local store remembers it, so a restarted engine hosts
//! it again without a download. A fetch or build that fails fails that
//! task with the reason; the next task of the version tries again (no
//! retry loop here: the API node's queue decides what comes next).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infsh_core::package::PackageHasher;
use infsh_engine::{Engine, EngineError};

use super::link::{Link, LinkError};

/// Tries of a download while the API node is unreachable (100 ms doubling).
const FETCH_TRIES: u32 = 5;

/// One fetch per version at a time: two tasks of a version claimed
/// together download and build it once.
#[derive(Clone, Default)]
pub struct Fetches(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl Fetches {
    fn gate(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.0.lock().unwrap_or_else(|p| p.into_inner());
        gates.entry(id.to_string()).or_default().clone()
    }
}

/// Makes sure the version a task's app names (`ns/name@HASH`) is hosted
/// here; nothing for an app without a version. Err: the task's failure.
pub async fn ensure(
    engine: &Engine,
    link: &Link,
    fetches: &Fetches,
    app: &str,
) -> Result<(), String> {
    let Some((id, hash)) = app.split_once('@') else {
        return Ok(());
    };
    if engine.hosts_version(id, hash) {
        return Ok(());
    }
    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "version {app}: not a full version hash (64 hex digits)"
        ));
    }
    let gate = fetches.gate(app);
    let _fetching = gate.lock().await;
    if engine.hosts_version(id, hash) {
        return Ok(());
    }
    tracing::info!(%app, "fetching a version from the API node");
    let bytes = download(link, id, hash)
        .await
        .map_err(|e| format!("cannot fetch version {app} from the API node: {e}"))?;
    let mut hasher = PackageHasher::default();
    hasher.update(&bytes);
    let got = hasher.finish();
    if got != hash {
        return Err(format!(
            "version {app}: the package the API node sent hashes to {got}, not {hash}"
        ));
    }
    let dir = infsh_engine::upload_dir(&engine.config().data_dir);
    let path = dir.join(format!(".fetched-{hash}"));
    let written = async {
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::write(&path, &bytes).await
    };
    written
        .await
        .map_err(|e| format!("cannot store version {app} in {}: {e}", dir.display()))?;
    // `deploy_version` takes the file (and removes it).
    match engine
        .deploy_version(id, path, hash.to_string(), false)
        .await
    {
        Ok(_) => {
            tracing::info!(%app, bytes = bytes.len(), "fetched and built a version");
            Ok(())
        }
        Err(EngineError::VersionFailed {
            message, traceback, ..
        }) => Err(match traceback {
            Some(tb) => format!(
                "version {app} failed to build on engine {}: {message}\n{tb}",
                link.engine
            ),
            None => format!(
                "version {app} failed to build on engine {}: {message}",
                link.engine
            ),
        }),
        Err(e) => Err(format!(
            "version {app} cannot be hosted on engine {}: {e}",
            link.engine
        )),
    }
}

/// The package, retried a few times while the API node is unreachable; a
/// refusal (404: no such version or package) is final.
async fn download(link: &Link, id: &str, hash: &str) -> Result<Vec<u8>, LinkError> {
    let mut wait = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        match link.version_package(id, hash).await {
            Err(LinkError::Unreachable(e)) if tries + 1 < FETCH_TRIES => {
                tracing::warn!(app = %id, %hash, error = %e, "version download failed; retrying");
                tries += 1;
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
}
