//! [`AppInfo`]: what a worker reported about an app in its `ready` message
//! (functions, schemas, setup schema), with the default function resolved
//! and the input validators infsh-core compiles on first use
//! ([`FunctionValidators`]: a function whose schema does not compile is
//! refused, as it is by the CLI).

use infsh_core::functions::FunctionSet;
use infsh_core::FunctionValidators;
use infsh_protocol::Ready;

pub(crate) struct AppInfo {
    pub ready: Ready,
    pub functions: FunctionSet,
    /// One compiled validator per function, and the setup config's.
    pub validators: FunctionValidators,
}

impl std::fmt::Debug for AppInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppInfo")
            .field("functions", &self.functions.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl AppInfo {
    pub fn new(ready: Ready, default_function: Option<&str>) -> AppInfo {
        let functions = FunctionSet::new(ready.functions.clone(), default_function);
        for warning in functions.warnings() {
            tracing::warn!("{warning}");
        }
        AppInfo {
            validators: FunctionValidators::new(ready.setup_schema.clone()),
            ready,
            functions,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.functions.names().map(str::to_string).collect()
    }
}
