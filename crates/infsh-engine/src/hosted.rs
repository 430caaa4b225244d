//! [`HostedApps`]: the table of hosted apps and how a request's app
//! reference finds one. Used by the engine handle and by `submit`, below
//! both so that neither imports the other.
//!
//! Two kinds of entries: the apps of `--apps` (fixed at start, by id
//! `ns/name`), and deployed versions (`infsh app deploy`, added while the
//! server runs, by id `ns/name@HASH`). An app with a current version is
//! served by that version when a run names it without one; a switch is one
//! write to `current`, so runs taken after it go to the new version while
//! the old one's replicas finish what they run.

use std::collections::BTreeMap;
use std::sync::RwLock;

use infsh_core::AppRef;

use crate::api::EngineError;
use crate::handle::AppHandle;

/// Shortest hash prefix a run may pin a version with.
pub const MIN_VERSION_PREFIX: usize = 4;
/// How many hex digits of a version's hash are shown.
pub const SHORT_HASH: usize = 12;
/// What a version reference of `latest` names: the current version.
pub const LATEST: &str = "latest";

#[derive(Default)]
struct Table {
    /// By id: `ns/name` (folder apps) and `ns/name@HASH` (versions).
    handles: BTreeMap<String, AppHandle>,
    /// `ns/name` -> the hash of its current version.
    current: BTreeMap<String, String>,
}

/// Every hosted app's handle, by id.
pub(crate) struct HostedApps(RwLock<Table>);

impl HostedApps {
    pub fn new(apps: BTreeMap<String, AppHandle>) -> HostedApps {
        HostedApps(RwLock::new(Table {
            handles: apps,
            current: BTreeMap::new(),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The app a reference names: `ns/name` (its current version if it has
    /// one, else the folder app), `ns/name@HASH` (a version by a hash
    /// prefix of at least [`MIN_VERSION_PREFIX`]), `ns/name@latest` (the
    /// current version), or a bare name that one app has. An app with no
    /// deployed version ignores any `@version` (the folder app). Any
    /// `:function` is ignored here.
    pub fn resolve(&self, app: &AppRef) -> Result<AppHandle, EngineError> {
        let table = self.read();
        let id = if app.namespace().is_some() {
            app.id()
        } else {
            let mut ids = table
                .handles
                .values()
                .filter(|h| h.entry.name == app.name())
                .map(|h| h.entry.app_id())
                .collect::<Vec<_>>();
            ids.dedup();
            match ids.as_slice() {
                [only] => only.clone(),
                _ => return Err(Self::unknown(&table, app.to_string())),
            }
        };
        match app.version().filter(|v| *v != LATEST) {
            None => {
                let key = match table.current.get(&id) {
                    Some(hash) => format!("{id}@{hash}"),
                    None => id.clone(),
                };
                table
                    .handles
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| Self::unknown(&table, app.to_string()))
            }
            Some(prefix) => {
                // An app never deployed as versions (only its `--apps`
                // folder) ignores the version, as before versions existed:
                // clients send the platform's version names.
                let any_version = format!("{id}@");
                let has_versions = table
                    .handles
                    .range(any_version.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(&any_version));
                if !has_versions {
                    // No versions: the folder app, or no such app at all
                    // (an unknown app is a 404 about the app, not its
                    // version).
                    return table
                        .handles
                        .get(&id)
                        .cloned()
                        .ok_or_else(|| Self::unknown(&table, app.to_string()));
                }
                let prefix = prefix.to_ascii_lowercase();
                let start = format!("{id}@{prefix}");
                let matches: Vec<&AppHandle> = if prefix.len() < MIN_VERSION_PREFIX {
                    Vec::new()
                } else {
                    table
                        .handles
                        .range(start.clone()..)
                        .take_while(|(k, _)| k.starts_with(&start))
                        .map(|(_, h)| h)
                        .collect()
                };
                match matches.as_slice() {
                    [only] => Ok((*only).clone()),
                    [] => Err(EngineError::UnknownVersion {
                        app: id,
                        version: prefix,
                    }),
                    many => Err(EngineError::AmbiguousVersion {
                        app: id,
                        version: prefix,
                        matches: many.iter().map(|h| h.entry.id.clone()).collect(),
                    }),
                }
            }
        }
    }

    /// A hosted app by its id (`ns/name` or `ns/name@HASH`, as stored with
    /// its tasks); `ns/name` of an app hosted only as versions is its
    /// current version.
    pub fn by_id(&self, id: &str) -> Result<AppHandle, EngineError> {
        let table = self.read();
        if let Some(handle) = table.handles.get(id) {
            return Ok(handle.clone());
        }
        table
            .current
            .get(id)
            .and_then(|hash| table.handles.get(&format!("{id}@{hash}")))
            .cloned()
            .ok_or_else(|| Self::unknown(&table, id.to_string()))
    }

    /// Every handle (folder apps and versions), in id order.
    pub fn iter(&self) -> Vec<AppHandle> {
        self.read().handles.values().cloned().collect()
    }

    pub fn ids(&self) -> Vec<String> {
        self.read().handles.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().handles.len()
    }

    /// Hosts a version (its handle's id is `ns/name@HASH`). False when
    /// that id is hosted already (the handle given is not kept).
    pub fn add_version(&self, handle: AppHandle) -> bool {
        let mut table = self.write();
        if table.handles.contains_key(&handle.entry.id) {
            return false;
        }
        table.handles.insert(handle.entry.id.clone(), handle);
        true
    }

    /// Whether the version `ns/name@HASH` is hosted.
    pub fn has(&self, id: &str) -> bool {
        self.read().handles.contains_key(id)
    }

    /// Makes `hash` app `app`'s current version; the hash it replaces.
    /// Every other hosted version of the app, and its `--apps` folder app,
    /// is retired (its replicas stop once idle: `scheduler/retire.rs`);
    /// this one is not (a rollback brings a retired one back).
    pub fn set_current(&self, app: &str, hash: &str) -> Option<String> {
        let (previous, handles) = {
            let mut table = self.write();
            let previous = table.current.insert(app.to_string(), hash.to_string());
            let handles: Vec<AppHandle> = table
                .handles
                .values()
                .filter(|h| h.entry.app_id() == app)
                .cloned()
                .collect();
            (previous, handles)
        };
        for handle in handles {
            handle.retire(handle.entry.version.as_deref() != Some(hash));
        }
        previous
    }

    /// The hash of app `app`'s current version.
    pub fn current(&self, app: &str) -> Option<String> {
        self.read().current.get(app).cloned()
    }

    /// Stops hosting version `id` (`ns/name@HASH`); its handle, to shut down.
    pub fn remove_version(&self, id: &str) -> Option<AppHandle> {
        self.write().handles.remove(id)
    }

    fn unknown(table: &Table, app: String) -> EngineError {
        EngineError::UnknownApp {
            app,
            available: table.handles.keys().cloned().collect(),
        }
    }
}
