//! Deployed app versions (`infsh app deploy`): a package uploaded to the
//! server becomes a version of its app, named by its content hash. The
//! server unpacks it, builds its environment and discovers its functions
//! (one worker starts) before it may become current; a failed build or
//! import is kept as `failed`, with its traceback, and never becomes
//! current.
//!
//! On disk, under `--data-dir`: `versions/NS/NAME/HASH.pkg` (the package
//! as uploaded) and `versions/NS/NAME/HASH/` (unpacked: the app folder its
//! workers run). The store keeps each version's status and which one is
//! current (`infsh-store`'s `app_versions`). A start hosts every ready
//! version again, before recovery, so queued tasks of a version find it
//! (with `--versions-on-engines`, only one without stored functions:
//! `version_hosting::rehost`).
//!
//! Switching is one write to the store and one to the hosted table: runs
//! taken after it go to the new version, whose replica is already up (the
//! deploy started one); the old version's running tasks finish on it, its
//! replicas stop once idle (`scheduler/retire.rs`, sent by
//! `HostedApps::set_current`), and it stays callable as `ns/name@HASH`
//! until removed.
//!
//! With `infsh serve --versions-on-engines` a node hosts no version: what
//! the build discovered is stored with the version, the build's worker
//! stops once it is ready, a switch is the store's write alone, and every
//! node of a fleet resolves and validates runs from the store
//! (`stored_versions.rs`); engines retire the old version's replicas when
//! their claim names the new current one ([`Engine::follow_current_versions`]).

use std::path::{Path, PathBuf};

use infsh_core::app::AppDir;
use infsh_store::{now_ms, AppVersionRecord, VersionOutcome, VersionStatus};
use serde::Serialize;

use crate::api::EngineError;
use crate::engine::Engine;
use crate::hosted::{MIN_VERSION_PREFIX, SHORT_HASH};
use crate::registry::AppEntry;
use crate::stored_versions::discovered;
use crate::version_hosting::{app_dir, check_app_id, host, VERSIONS_DIR};
use crate::worker_seam::UNLOAD_GRACE;

/// A version as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionView {
    /// `ns/name`.
    pub app: String,
    /// The content hash (hex SHA-256).
    pub id: String,
    /// Its first [`SHORT_HASH`] digits.
    pub short: String,
    pub status: VersionStatus,
    pub current: bool,
    pub error: Option<String>,
    pub size_bytes: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl VersionView {
    fn of(record: AppVersionRecord, current: Option<&str>) -> VersionView {
        VersionView {
            current: current == Some(record.hash.as_str()),
            short: record.hash.chars().take(SHORT_HASH).collect(),
            app: record.app,
            id: record.hash,
            status: record.status,
            error: record.error,
            size_bytes: record.size_bytes,
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
        }
    }
}

impl Engine {
    /// Makes a version of app `app` (`ns/name`) from the package at
    /// `upload` (hashed as it was received: `hash`), builds it and, with
    /// `activate`, makes it current. The same content deployed again is
    /// the same version (built again only if it had failed).
    pub async fn deploy_version(
        &self,
        app: &str,
        upload: PathBuf,
        hash: String,
        activate: bool,
    ) -> Result<VersionView, EngineError> {
        let result = self.deploy_inner(app, &upload, hash, activate).await;
        let _ = tokio::fs::remove_file(&upload).await;
        result
    }

    async fn deploy_inner(
        &self,
        app: &str,
        upload: &Path,
        hash: String,
        activate: bool,
    ) -> Result<VersionView, EngineError> {
        check_app_id(app)?;
        let store = &self.shared().store;
        let existing = store.get_app_version(app, &hash).await?;
        match existing.as_ref().map(|v| v.status) {
            Some(VersionStatus::Ready) => {
                if activate {
                    return self.activate_version(app, &hash).await;
                }
                return self.version_view(app, &hash).await;
            }
            Some(VersionStatus::Building) => {
                return Err(EngineError::VersionConflict(format!(
                    "version {hash} of app \"{app}\" is being built already"
                )))
            }
            Some(VersionStatus::Failed) | None => {}
        }
        let base = app_dir(&self.shared().config.data_dir, app);
        let folder = base.join(&hash);
        let size = tokio::fs::metadata(upload)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        // Unpack beside the final folder, check, then rename into place.
        let (upload_path, base_path, folder_path, expected) = (
            upload.to_path_buf(),
            base.clone(),
            folder.clone(),
            app.to_string(),
        );
        let hash_for_io = hash.clone();
        tokio::task::spawn_blocking(move || -> Result<(), EngineError> {
            let io = |what: &str, e: std::io::Error| {
                EngineError::BadPackage(format!("cannot store the version ({what}): {e}"))
            };
            std::fs::create_dir_all(&base_path).map_err(|e| io("create its folder", e))?;
            let tmp = base_path.join(format!(".{hash_for_io}.unpacking"));
            let _ = std::fs::remove_dir_all(&tmp);
            let file = std::fs::File::open(&upload_path).map_err(|e| io("open the upload", e))?;
            let unpacked = infsh_core::package::unpack(std::io::BufReader::new(file), &tmp)
                .and_then(|_| {
                    AppDir::open(&tmp).map_err(|e| infsh_core::package::PackageError::Io {
                        path: tmp.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })
                });
            let dir = match unpacked {
                Ok(dir) => dir,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(EngineError::BadPackage(format!(
                        "the upload is not a valid app package: {e}"
                    )));
                }
            };
            let named = AppEntry::new(dir).app_id();
            if named != expected {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(EngineError::BadPackage(format!(
                    "the package's inf.yml names app \"{named}\", not \"{expected}\": \
                     deploy it to /apps/{named}/versions"
                )));
            }
            let _ = std::fs::remove_dir_all(&folder_path);
            std::fs::rename(&tmp, &folder_path).map_err(|e| io("rename the folder", e))?;
            std::fs::copy(&upload_path, base_path.join(format!("{hash_for_io}.pkg")))
                .map_err(|e| io("keep the package", e))?;
            Ok(())
        })
        .await
        .map_err(|source| EngineError::Background {
            what: "unpacking a version",
            source,
        })??;
        let now = now_ms();
        let record = AppVersionRecord {
            app: app.to_string(),
            hash: hash.clone(),
            size_bytes: size,
            status: VersionStatus::Building,
            error: None,
            created_at_ms: now,
            updated_at_ms: now,
            functions: None,
        };
        if !store.insert_app_version(&record).await? {
            store
                .set_app_version_status(
                    app,
                    &hash,
                    VersionOutcome::status(VersionStatus::Building, now),
                )
                .await?;
        }
        tracing::info!(%app, %hash, "building a new version");
        let handle = host(
            self.shared(),
            &self.inner.apps,
            &*self.inner.launcher,
            &folder,
            &hash,
        )?;
        match handle.discover().await {
            Ok(info) => {
                tracing::info!(%app, %hash, functions = ?info.names(), "version ready");
                // Ready means every API node sharing `--files` can hand its
                // package to an engine (`version_package`).
                self.share_package(app, &hash).await?;
                // With what discovery found, so that any node on the store
                // can validate and queue its runs (`stored_versions.rs`).
                let outcome = VersionOutcome {
                    status: VersionStatus::Ready,
                    error: None,
                    functions: Some(discovered(&handle.entry, &info)),
                    at_ms: now_ms(),
                };
                store.set_app_version_status(app, &hash, outcome).await?;
                // Its runs go to engines, which read what the build found
                // from the store: this node keeps no worker of it.
                if self.versions_on_engines() {
                    if let Some(built) = self.inner.apps.remove_version(&handle.entry.id) {
                        built.shutdown(UNLOAD_GRACE);
                    }
                    tracing::info!(%app, %hash, "built for engines: its worker here stopped");
                }
                if activate {
                    self.activate_version(app, &hash).await
                } else {
                    self.version_view(app, &hash).await
                }
            }
            Err(e) => {
                let (message, traceback) = match e {
                    EngineError::AppUnavailable {
                        message, traceback, ..
                    } => (message, traceback),
                    other => (other.to_string(), None),
                };
                let error = match &traceback {
                    Some(tb) => format!("{message}\n{tb}"),
                    None => message.clone(),
                };
                tracing::warn!(%app, %hash, "version failed: {message}");
                store
                    .set_app_version_status(
                        app,
                        &hash,
                        VersionOutcome {
                            status: VersionStatus::Failed,
                            error: Some(error),
                            functions: None,
                            at_ms: now_ms(),
                        },
                    )
                    .await?;
                if let Some(h) = self.inner.apps.remove_version(&handle.entry.id) {
                    h.shutdown(UNLOAD_GRACE);
                }
                Err(EngineError::VersionFailed {
                    app: app.to_string(),
                    hash,
                    message,
                    traceback,
                })
            }
        }
    }

    /// An app's versions, newest first.
    pub async fn list_versions(&self, app: &str) -> Result<Vec<VersionView>, EngineError> {
        let store = &self.shared().store;
        let current = store.current_app_version(app).await?;
        let list = store.list_app_versions(app).await?;
        if list.is_empty() {
            return Err(EngineError::UnknownVersion {
                app: app.to_string(),
                version: "(any)".into(),
            });
        }
        Ok(list
            .into_iter()
            .map(|v| VersionView::of(v, current.as_deref()))
            .collect())
    }

    async fn version_view(&self, app: &str, hash: &str) -> Result<VersionView, EngineError> {
        let store = &self.shared().store;
        let current = store.current_app_version(app).await?;
        let record =
            store
                .get_app_version(app, hash)
                .await?
                .ok_or_else(|| EngineError::UnknownVersion {
                    app: app.to_string(),
                    version: hash.to_string(),
                })?;
        Ok(VersionView::of(record, current.as_deref()))
    }

    /// The full hash of app `app`'s version named by `version` (a hash
    /// prefix of at least [`MIN_VERSION_PREFIX`] digits, or `latest`).
    async fn find_version(&self, app: &str, version: &str) -> Result<String, EngineError> {
        let store = &self.shared().store;
        if version == crate::hosted::LATEST {
            if let Some(hash) = store.current_app_version(app).await? {
                return Ok(hash);
            }
        }
        let prefix = version.to_ascii_lowercase();
        let unknown = || EngineError::UnknownVersion {
            app: app.to_string(),
            version: version.to_string(),
        };
        if prefix.len() < MIN_VERSION_PREFIX {
            return Err(unknown());
        }
        let matches: Vec<String> = store
            .list_app_versions(app)
            .await?
            .into_iter()
            .map(|v| v.hash)
            .filter(|h| h.starts_with(&prefix))
            .collect();
        match matches.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(unknown()),
            many => Err(EngineError::AmbiguousVersion {
                app: app.to_string(),
                version: version.to_string(),
                matches: many.to_vec(),
            }),
        }
    }

    /// Makes a ready version current (a rollback names an older one).
    pub async fn activate_version(
        &self,
        app: &str,
        version: &str,
    ) -> Result<VersionView, EngineError> {
        let hash = self.find_version(app, version).await?;
        let view = self.version_view(app, &hash).await?;
        if view.status != VersionStatus::Ready {
            return Err(EngineError::VersionConflict(format!(
                "version {} of app \"{app}\" is {}: only a ready version becomes current",
                view.short,
                view.status.as_str()
            )));
        }
        let folder = app_dir(&self.shared().config.data_dir, app).join(&hash);
        // Sending versions to engines, a node hosts no version (whichever
        // node built it): the switch is the store's, which every node
        // reads for each run (`stored_versions.rs`), and engines retire
        // the old version's replicas when a claim tells them.
        let hosted_here = !self.versions_on_engines();
        if hosted_here {
            host(
                self.shared(),
                &self.inner.apps,
                &*self.inner.launcher,
                &folder,
                &hash,
            )?;
        }
        self.shared()
            .store
            .set_current_app_version(app, &hash, now_ms())
            .await?;
        let previous = hosted_here.then(|| self.inner.apps.set_current(app, &hash));
        tracing::info!(%app, %hash, ?previous, "current version switched");
        self.version_view(app, &hash).await
    }

    /// Removes a version that is neither current nor leased to a live
    /// session: its record, its files, its workers.
    pub async fn remove_version(&self, app: &str, version: &str) -> Result<(), EngineError> {
        let hash = self.find_version(app, version).await?;
        let short: String = hash.chars().take(SHORT_HASH).collect();
        let id = format!("{app}@{hash}");
        // Sending versions to engines, the store's current version is the
        // one (another node may have switched since this one did).
        let current_here = !self.versions_on_engines()
            && self.inner.apps.current(app).as_deref() == Some(hash.as_str());
        if current_here
            || self
                .shared()
                .store
                .current_app_version(app)
                .await?
                .as_deref()
                == Some(&hash)
        {
            return Err(EngineError::VersionConflict(format!(
                "version {short} is the current version of app \"{app}\": activate another first"
            )));
        }
        let mut live = self
            .shared()
            .sessions
            .active()
            .into_iter()
            .filter(|s| s.app == id)
            .count();
        // Sessions on engines, opened through any node of the fleet.
        if let Some(hub) = self.inner.fleet.get() {
            live += hub
                .sessions()
                .await?
                .into_iter()
                .filter(|s| s.app == id)
                .count();
        }
        if live > 0 {
            return Err(EngineError::VersionConflict(format!(
                "version {short} of app \"{app}\" has {live} live session(s): end them first"
            )));
        }
        if !self.shared().store.delete_app_version(app, &hash).await? {
            return Err(EngineError::VersionConflict(format!(
                "version {short} of app \"{app}\" became current meanwhile"
            )));
        }
        if let Some(hub) = self.inner.fleet.get() {
            hub.forget_stored_version(&id);
        }
        if let Some(handle) = self.inner.apps.remove_version(&id) {
            if let Some(stopped) = handle.shutdown(UNLOAD_GRACE) {
                let _ = stopped.await;
            }
        }
        let base = app_dir(&self.shared().config.data_dir, app);
        let _ = tokio::fs::remove_dir_all(base.join(&hash)).await;
        let _ = tokio::fs::remove_file(base.join(format!("{hash}.pkg"))).await;
        if let Some(files) = &self.shared().config.files {
            if let Err(e) = files.delete_object(&package_key(app, &hash)).await {
                tracing::warn!(%app, %hash, error = %e, "cannot delete the version's shared package");
            }
        }
        tracing::info!(%app, %hash, "version removed");
        Ok(())
    }
}

/// Where a version's package lives in the `--files` storage.
fn package_key(app: &str, hash: &str) -> String {
    format!("{VERSIONS_DIR}/{app}/{hash}.pkg")
}

impl Engine {
    /// With `--files` given, copies a version's package there, so any API
    /// node sharing that storage serves it to engines. Without it the
    /// package stays under this node's data folder only (one node).
    async fn share_package(&self, app: &str, hash: &str) -> Result<(), EngineError> {
        let Some(files) = &self.shared().config.files else {
            return Ok(());
        };
        let path = app_dir(&self.shared().config.data_dir, app).join(format!("{hash}.pkg"));
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            EngineError::BadPackage(format!("cannot read the version's package: {e}"))
        })?;
        files
            .put_object(&package_key(app, hash), bytes.into())
            .await?;
        Ok(())
    }

    /// The package of app `app`'s ready version `hash` (the full hash), for
    /// an engine that runs it (`GET /engine/versions/{ns}/{name}/{hash}/package`):
    /// from this node's data folder, else from the `--files` storage (a
    /// version deployed to another API node).
    pub async fn version_package(&self, app: &str, hash: &str) -> Result<Vec<u8>, EngineError> {
        let unknown = || EngineError::UnknownVersion {
            app: app.to_string(),
            version: hash.to_string(),
        };
        if check_app_id(app).is_err() || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        let record = self.shared().store.get_app_version(app, hash).await?;
        if record.map(|r| r.status) != Some(VersionStatus::Ready) {
            return Err(unknown());
        }
        let path = app_dir(&self.shared().config.data_dir, app).join(format!("{hash}.pkg"));
        match tokio::fs::read(&path).await {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(EngineError::BadPackage(format!(
                    "cannot read the version's package: {e}"
                )))
            }
        }
        if let Some(files) = &self.shared().config.files {
            if let Some(bytes) = files.get_object(&package_key(app, hash)).await? {
                return Ok(bytes.to_vec());
            }
        }
        Err(EngineError::VersionPackageMissing {
            app: app.to_string(),
            hash: hash.to_string(),
        })
    }

    /// `infsh serve --versions-on-engines`: runs of versions go to engines.
    fn versions_on_engines(&self) -> bool {
        self.inner
            .fleet
            .get()
            .is_some_and(|hub| hub.options.versions_on_engines)
    }

    /// Whether version `hash` of app `app` is hosted here (an engine's
    /// cache of fetched versions: hosted again at each start).
    pub fn hosts_version(&self, app: &str, hash: &str) -> bool {
        self.inner.apps.has(&format!("{app}@{hash}"))
    }

    /// An engine's side of a switch made on the API node (a claim's
    /// `current_versions`, app -> hash): each app with versions hosted
    /// here takes that hash as its current one, so every other version of
    /// it retires (idle replicas stop, busy ones after their task, a
    /// session's stays; a later pinned run starts one again:
    /// `scheduler/retire.rs`). Nothing changes for an app already at that
    /// hash, nor for one hosted here from an `--apps` folder (its runs name
    /// no version).
    pub fn follow_current_versions(&self, current: &std::collections::BTreeMap<String, String>) {
        for (app, hash) in current {
            if self.inner.apps.current(app).as_deref() == Some(hash.as_str())
                || self.inner.apps.has(app)
            {
                continue;
            }
            let prefix = format!("{app}@");
            if !self
                .inner
                .apps
                .ids()
                .iter()
                .any(|id| id.starts_with(&prefix))
            {
                continue;
            }
            let previous = self.inner.apps.set_current(app, hash);
            tracing::info!(%app, %hash, ?previous, "the API node's current version: the others retire here");
        }
    }

    /// The ids (`ns/name@HASH`) of the versions hosted here.
    pub fn hosted_versions(&self) -> Vec<String> {
        self.inner
            .apps
            .ids()
            .into_iter()
            .filter(|id| id.contains('@'))
            .collect()
    }
}
