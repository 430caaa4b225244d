//! [`AppInfo`]: what a worker reported about an app in its `ready` message
//! (functions, schemas, setup schema), with the default function resolved
//! and input validators compiled on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use infsh_core::functions::FunctionSet;
use infsh_core::validate::InputValidator;
use infsh_protocol::{FunctionInfo, Ready};
use serde_json::{json, Value};

pub(crate) struct AppInfo {
    pub ready: Ready,
    pub functions: FunctionSet,
    /// Compiled schemas by function name (`""`: the setup schema). `None`:
    /// the schema does not compile, so nothing is checked before dispatch
    /// (the worker's pydantic still is).
    validators: Mutex<HashMap<String, Option<Arc<InputValidator>>>>,
}

impl std::fmt::Debug for AppInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppInfo")
            .field("functions", &self.functions.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A function's input schema; an entry without one validates nothing.
pub(crate) fn input_schema(function: &FunctionInfo) -> Value {
    function
        .input_schema()
        .cloned()
        .unwrap_or_else(|| json!({}))
}

impl AppInfo {
    pub fn new(ready: Ready, default_function: Option<&str>) -> AppInfo {
        let functions = FunctionSet::new(ready.functions.clone(), default_function);
        for warning in functions.warnings() {
            tracing::warn!("{warning}");
        }
        AppInfo {
            ready,
            functions,
            validators: Mutex::new(HashMap::new()),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.functions.names().map(str::to_string).collect()
    }

    fn validator(&self, key: &str, schema: impl FnOnce() -> Value) -> Option<Arc<InputValidator>> {
        let mut cache = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(key.to_string())
            .or_insert_with(|| match InputValidator::compile(&schema()) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    tracing::warn!(schema = key, error = %e, "schema does not compile; input is not checked before dispatch");
                    None
                }
            })
            .clone()
    }

    /// The validator of a function's input.
    pub fn input_validator(&self, function: &FunctionInfo) -> Option<Arc<InputValidator>> {
        self.validator(&format!("fn:{}", function.name), || input_schema(function))
    }

    /// The validator of the setup config.
    pub fn setup_validator(&self) -> Option<Arc<InputValidator>> {
        self.validator("setup", || self.ready.setup_schema.clone())
    }
}
