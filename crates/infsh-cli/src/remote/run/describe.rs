//! The app as the server describes it (`GET /v1/apps/{ns}/{name}`): its
//! functions, default function and the validators of their input, so a
//! remote run validates input here with the same messages as a local run.

use infsh_core::functions::FunctionSet;
use infsh_core::FunctionValidators;
use infsh_protocol::FunctionInfo;
use serde_json::{json, Value};

use crate::exit::{ExitCode, Failure};
use crate::remote::client::Remote;
use crate::remote::snippet::snippet;

/// An app as the server describes it: its functions and default, and the
/// validators of their input (as the server compiles them).
pub struct RemoteApp {
    pub functions: FunctionSet,
    pub validators: FunctionValidators,
}

/// `GET /v1/apps/{ns}/{name}` → the app's functions (from `functions`, the
/// content of functions_schema.json, at the top level or under `detail`).
pub async fn describe_app(remote: &Remote, id: &str) -> Result<RemoteApp, Failure> {
    let detail = remote.app(id).await.map_err(|e| match e.detail() {
        // An unknown app is the user's mistake (exit 4), in the server's words.
        Some(detail) if e.is_not_found() => Failure::new(ExitCode::Input, detail),
        _ => e.into_failure(),
    })?;
    let summary = detail.get("summary").unwrap_or(&detail);
    let functions_value = detail
        .get("functions")
        .filter(|f| f.is_object())
        .or_else(|| detail.get("functions_schema").filter(|f| f.is_object()));
    let Some(Value::Object(map)) = functions_value else {
        return Err(Failure::new(
            ExitCode::Server,
            format!(
                "the server described app {id} without its functions: {}",
                snippet(&detail.to_string())
            ),
        ));
    };
    let infos: Vec<FunctionInfo> = map
        .iter()
        .map(|(name, entry)| FunctionInfo {
            name: name.clone(),
            streaming: entry
                .get("streaming")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            is_async: true,
            accepts_metadata: false,
            batched: false,
            entry: entry.clone(),
        })
        .collect();
    let default = summary
        .get("default_function")
        .or_else(|| detail.get("default_function"))
        .and_then(Value::as_str);
    let setup_schema = detail
        .get("setup_schema")
        .filter(|s| !s.is_null())
        .cloned()
        .unwrap_or_else(|| json!({}));
    Ok(RemoteApp {
        functions: FunctionSet::new(infos, default),
        validators: FunctionValidators::new(setup_schema),
    })
}
