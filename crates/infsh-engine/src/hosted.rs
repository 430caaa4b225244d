//! [`HostedApps`]: the table of hosted apps, fixed at start, and how a
//! request's app reference finds one. Used by the engine handle and by
//! `submit`, below both so that neither imports the other.

use std::collections::BTreeMap;

use infsh_core::AppRef;

use crate::api::EngineError;
use crate::handle::AppHandle;

/// Every hosted app's handle, by id (`ns/name`).
pub(crate) struct HostedApps(BTreeMap<String, AppHandle>);

impl HostedApps {
    pub fn new(apps: BTreeMap<String, AppHandle>) -> HostedApps {
        HostedApps(apps)
    }

    /// The app a reference names: `ns/name` (any `@version` and
    /// `:function` ignored here), or a bare name that one app has.
    pub fn resolve(&self, app: &AppRef) -> Result<&AppHandle, EngineError> {
        if app.namespace().is_some() {
            if let Some(handle) = self.0.get(&app.id()) {
                return Ok(handle);
            }
        } else {
            let mut by_name = self.0.values().filter(|h| h.entry.name == app.name());
            if let (Some(only), None) = (by_name.next(), by_name.next()) {
                return Ok(only);
            }
        }
        Err(self.unknown(app.to_string()))
    }

    /// A hosted app by its id (`ns/name`, as stored with its tasks).
    pub fn by_id(&self, id: &str) -> Result<&AppHandle, EngineError> {
        self.0.get(id).ok_or_else(|| self.unknown(id.to_string()))
    }

    /// In id order.
    pub fn iter(&self) -> impl Iterator<Item = &AppHandle> {
        self.0.values()
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn unknown(&self, app: String) -> EngineError {
        EngineError::UnknownApp {
            app,
            available: self.0.keys().cloned().collect(),
        }
    }
}
