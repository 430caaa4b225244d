//! Versions as the store knows them, for an API node that sends runs of
//! versions to engines (`infsh serve --versions-on-engines`;
//! docs/deploy.md, "Versions in a fleet"). The node that built a version
//! stored what its discovery found (migration 0010's `functions`), so any
//! node on the store resolves a run's `ns/name`, `ns/name@HASH` or
//! `@latest` against the store (the current version is the store's, which
//! every node sees at once after a switch), validates its input against
//! those schemas and queues it for engines, without hosting the version.
//! `GET /apps` and `GET /apps/{ns}/{name}` show the current versions the
//! same way.

use std::sync::Arc;

use infsh_core::AppRef;
use infsh_store::fleet::EngineState;
use infsh_store::{now_ms, AppVersionRecord, VersionStatus};
use serde_json::{json, Value};

use crate::api::{AppDetail, AppState, AppSummary, EngineError};
use crate::app_info::AppInfo;
use crate::fleet_api::HostedRemotely;
use crate::fleet_hub::{fleet_error, lock, FleetHub};
use crate::hosted::{LATEST, MIN_VERSION_PREFIX, SHORT_HASH};
use crate::registry::AppEntry;

/// What a version's build found, as stored with it: the worker's `ready`
/// (functions, schemas, setup schema), inf.yml's default function (the
/// shape of an engine's registered `functions`) and its listing fields.
pub(crate) fn discovered(entry: &AppEntry, info: &AppInfo) -> Value {
    let manifest = &entry.dir.manifest;
    json!({
        "ready": info.ready,
        "default_function": manifest.default_function,
        "description": manifest.description,
        "category": manifest.category,
        "images": manifest.images,
    })
}

/// A stored version another node may run: its id (`ns/name@HASH`), what
/// its build found, and the listing fields of its inf.yml.
pub(crate) struct StoredVersion {
    pub id: String,
    pub info: Arc<AppInfo>,
    pub summary: AppSummary,
}

impl FleetHub {
    /// The stored version a run names, when the node sends versions to
    /// engines and the store knows one: `ns/name` and `@latest` the current
    /// version, `@HASH` a ready version by a prefix of at least
    /// [`MIN_VERSION_PREFIX`] digits (404 `UnknownVersion` when none, 400
    /// when several match, as on the node that built it). None: no stored
    /// version answers (an app without versions, or a version stored before
    /// its functions were), so the caller goes on as before.
    pub(crate) async fn stored_version(
        &self,
        app: &AppRef,
    ) -> Result<Option<StoredVersion>, EngineError> {
        if !self.options.versions_on_engines {
            return Ok(None);
        }
        let store = &self.shared.store;
        let id = match app.namespace() {
            Some(_) => app.id(),
            None => {
                let current = store.current_app_versions().await?;
                let mut by_name = current
                    .iter()
                    .filter(|(id, _)| id.rsplit('/').next() == Some(app.name()));
                match (by_name.next(), by_name.next()) {
                    (Some((only, _)), None) => only.clone(),
                    _ => return Ok(None),
                }
            }
        };
        let record = match app.version().filter(|v| *v != LATEST) {
            None => {
                let Some(hash) = store.current_app_version(&id).await? else {
                    return Ok(None);
                };
                if let Some(found) = self.cached_version(&id, &hash) {
                    return Ok(Some(found));
                }
                match store.get_app_version(&id, &hash).await? {
                    Some(record) => record,
                    None => return Ok(None),
                }
            }
            Some(prefix) => {
                let versions = store.list_app_versions(&id).await?;
                if versions.is_empty() {
                    // An app never deployed as versions ignores the
                    // version, as the node hosting its folder does.
                    return Ok(None);
                }
                pick(&id, prefix, versions)?
            }
        };
        Ok(self.remember(record))
    }

    /// [`FleetHub::stored_version`] for a run in fleet session `session`
    /// opened on a version (as `submit.rs` does for a local one): naming
    /// the app without a version (or `@latest`) goes to the session's
    /// version even after a switch; naming another version is refused
    /// (400 `VERSION_MISMATCH`).
    pub(crate) async fn stored_version_for(
        &self,
        app: &AppRef,
        session: Option<&str>,
    ) -> Result<Option<StoredVersion>, EngineError> {
        let resolved = self.stored_version(app).await?;
        let (Some(found), Some(id)) = (&resolved, session.filter(|s| *s != "new")) else {
            return Ok(resolved);
        };
        let Some(kept) = self.store.get_session(id).await.map_err(fleet_error)? else {
            return Ok(resolved);
        };
        let (Some((kept_app, kept_hash)), Some((app_id, hash))) =
            (kept.app.split_once('@'), found.id.split_once('@'))
        else {
            return Ok(resolved);
        };
        if kept_app != app_id || kept_hash == hash {
            // Another app (the session's check refuses it) or the very version.
            return Ok(resolved);
        }
        if app.version().filter(|v| *v != LATEST).is_none() {
            if let Ok(pinned) = kept.app.parse::<AppRef>() {
                return self.stored_version(&pinned).await;
            }
        }
        let short = |h: &str| h.chars().take(SHORT_HASH).collect::<String>();
        Err(EngineError::SessionVersionMismatch {
            id: id.to_string(),
            app: kept_app.to_string(),
            session_version: short(kept_hash),
            version: short(hash),
        })
    }

    fn cached_version(&self, app: &str, hash: &str) -> Option<StoredVersion> {
        let id = format!("{app}@{hash}");
        let (info, summary) = lock(&self.stored_versions).get(&id).cloned()?;
        Some(StoredVersion { id, info, summary })
    }

    /// What a ready record's `functions` say, kept by id (a version's
    /// content never changes); None without them.
    fn remember(&self, record: AppVersionRecord) -> Option<StoredVersion> {
        if let Some(found) = self.cached_version(&record.app, &record.hash) {
            return Some(found);
        }
        let functions = record.functions.as_ref()?;
        let id = format!("{}@{}", record.app, record.hash);
        let ready = serde_json::from_value(functions.get("ready")?.clone()).ok()?;
        let default = functions.get("default_function").and_then(Value::as_str);
        let info = Arc::new(AppInfo::new(ready, default));
        let summary = summary_of(&id, &record.app, &info, functions);
        lock(&self.stored_versions).insert(id.clone(), (info.clone(), summary.clone()));
        Some(StoredVersion { id, info, summary })
    }

    /// Forgets a removed version.
    pub(crate) fn forget_stored_version(&self, id: &str) {
        lock(&self.stored_versions).remove(id);
    }

    /// Every app's current version that this node can show from the store,
    /// for `GET /apps` (ids `ns/name@HASH`, as the node hosting a version
    /// lists it): `ready` while an engine is online (every engine fetches
    /// versions), else `unhealthy`. Empty unless versions go to engines.
    pub(crate) async fn stored_apps(&self) -> Result<Vec<HostedRemotely>, EngineError> {
        if !self.options.versions_on_engines {
            return Ok(Vec::new());
        }
        let store = &self.shared.store;
        let state = self.versions_state().await?;
        let mut apps = Vec::new();
        for (app, hash) in store.current_app_versions().await? {
            let version = match self.cached_version(&app, &hash) {
                Some(found) => Some(found),
                None => store
                    .get_app_version(&app, &hash)
                    .await?
                    .and_then(|record| self.remember(record)),
            };
            let Some(mut version) = version else {
                continue;
            };
            version.summary.state = state;
            apps.push(HostedRemotely {
                summary: version.summary,
                hash: Some(hash),
                engines: Vec::new(),
                info: Some(version.info),
            });
        }
        Ok(apps)
    }

    /// `GET /apps/{ns}/{name}` of a stored version (its current one).
    pub(crate) async fn stored_detail(
        &self,
        app: &AppRef,
    ) -> Result<Option<AppDetail>, EngineError> {
        let Some(mut version) = self.stored_version(app).await? else {
            return Ok(None);
        };
        version.summary.state = self.versions_state().await?;
        Ok(Some(AppDetail {
            summary: version.summary,
            functions: version.info.functions.functions_schema(),
            setup_schema: version.info.ready.setup_schema.clone(),
        }))
    }

    /// `ready` while an engine that would fetch a version is online.
    async fn versions_state(&self) -> Result<AppState, EngineError> {
        let engines = self.store.list_engines().await.map_err(fleet_error)?;
        let now = now_ms();
        let online = engines
            .iter()
            .any(|e| e.state(now, self.lease_ms()) == EngineState::Online);
        Ok(if online {
            AppState::Ready
        } else {
            AppState::Unhealthy
        })
    }
}

/// The one ready version of `app` whose hash starts with `prefix`.
fn pick(
    app: &str,
    prefix: &str,
    versions: Vec<AppVersionRecord>,
) -> Result<AppVersionRecord, EngineError> {
    let prefix = prefix.to_ascii_lowercase();
    let mut matches: Vec<AppVersionRecord> = if prefix.len() < MIN_VERSION_PREFIX {
        Vec::new()
    } else {
        // A failed or building version runs nowhere (the building node
        // hosts it only while it builds).
        versions
            .into_iter()
            .filter(|v| v.status == VersionStatus::Ready && v.hash.starts_with(&prefix))
            .collect()
    };
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(EngineError::UnknownVersion {
            app: app.to_string(),
            version: prefix,
        }),
        _ => Err(EngineError::AmbiguousVersion {
            app: app.to_string(),
            version: prefix,
            matches: matches
                .iter()
                .map(|v| format!("{app}@{}", v.hash))
                .collect(),
        }),
    }
}

/// The listing entry of version `id` of app `app` (`state` set by the caller).
fn summary_of(id: &str, app: &str, info: &AppInfo, functions: &Value) -> AppSummary {
    let (namespace, name) = app.split_once('/').unwrap_or(("", app));
    let text = |key: &str| {
        functions
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    AppSummary {
        id: id.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        description: text("description"),
        category: text("category"),
        images: functions.get("images").filter(|v| !v.is_null()).cloned(),
        default_function: info.functions.default_name().map(str::to_string),
        functions: Some(info.names()),
        state: AppState::Ready,
    }
}
