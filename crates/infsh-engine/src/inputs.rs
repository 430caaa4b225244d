//! Checks on a run request before anything is stored: required secrets,
//! `File` inputs a remote client may send, and the input and setup config
//! against their schemas. Every refusal is an [`EngineError`] the HTTP layer
//! maps to a 4xx answer, but a schema of the app that does not compile (the
//! app's fault, a 500).

use std::collections::BTreeMap;
use std::sync::Arc;

use infsh_core::files::{file_fields, is_remote};
use infsh_core::functions::ResolveError;
use infsh_core::manifest::{Manifest, Requirement};
use infsh_core::pointer::human_path;
use infsh_core::validate::InputValidator;
use infsh_core::validators::input_schema;
use infsh_protocol::FunctionInfo;
use serde_json::{json, Value};

use crate::api::{EngineError, MissingSecret, RunRequest};
use crate::app_info::AppInfo;

/// The app's required (not optional) secrets and integrations that
/// `secrets` lacks (or holds empty).
pub(crate) fn missing_secrets(
    manifest: &Manifest,
    secrets: &BTreeMap<String, String>,
) -> Vec<MissingSecret> {
    let missing = |kind: &str, reqs: &[Requirement]| -> Vec<MissingSecret> {
        reqs.iter()
            .filter(|r| !r.optional)
            .filter(|r| secrets.get(&r.key).is_none_or(|v| v.is_empty()))
            .map(|r| MissingSecret {
                kind: kind.to_string(),
                key: r.key.clone(),
                message: match r.description.as_deref().filter(|d| !d.is_empty()) {
                    Some(d) => format!("the app requires the {kind} {} ({d})", r.key),
                    None => format!("the app requires the {kind} {}", r.key),
                },
            })
            .collect()
    };
    let mut out = missing("secret", &manifest.secrets);
    out.extend(missing("integration", &manifest.integrations));
    out
}

/// The environment of the app's workers: `inf.yml`'s `env`, then the
/// values of every secret and integration the app declares.
pub(crate) fn worker_env(
    manifest: &Manifest,
    secrets: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = manifest
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for req in manifest.secrets.iter().chain(&manifest.integrations) {
        if let Some(value) = secrets.get(&req.key) {
            env.retain(|(k, _)| k != &req.key);
            env.push((req.key.clone(), value.clone()));
        }
    }
    env
}

/// `File` inputs from a remote client must be URLs the worker can fetch
/// (http, https) or `data:` URIs; a local path would name a file on the
/// server's machine, which a client has no business reading.
pub(crate) fn check_file_inputs(function: &FunctionInfo, input: &Value) -> Result<(), EngineError> {
    let schema = input_schema(function);
    for field in file_fields(schema, input) {
        let name = human_path(input, &field.pointer);
        let refuse = |reason: String| EngineError::InvalidFile {
            field: name.clone(),
            reason,
        };
        let check = |s: &str| -> Result<(), EngineError> {
            let lower = s.trim().to_ascii_lowercase();
            if lower.starts_with("http://")
                || lower.starts_with("https://")
                || lower.starts_with("data:")
            {
                Ok(())
            } else if is_remote(s) {
                Err(refuse(format!(
                    "unsupported URL \"{s}\": use an http(s) URL or upload the file (POST /files)"
                )))
            } else {
                Err(refuse(format!(
                    "\"{s}\" is a local path; a remote client must upload the file (POST /files) and pass its uri"
                )))
            }
        };
        match &field.value {
            Value::String(s) if !s.is_empty() => check(s)?,
            Value::Object(map) => {
                if map.get("path").is_some_and(|p| !p.is_null()) {
                    return Err(refuse(
                        "a file object may not carry a local \"path\"; pass an uploaded file's uri"
                            .into(),
                    ));
                }
                if let Some(Value::String(uri)) = map.get("uri") {
                    check(uri)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The validators of a call of `function`: its input's and the setup
/// config's. A function whose input schema or the app's setup schema does
/// not compile is refused ([`EngineError::InvalidSchema`]).
pub(crate) fn call_validators(
    app: &str,
    info: &AppInfo,
    function: &FunctionInfo,
) -> Result<(Arc<InputValidator>, Arc<InputValidator>), EngineError> {
    let invalid_schema = |error| EngineError::InvalidSchema {
        app: app.to_string(),
        error,
    };
    let input = info.validators.function(function).map_err(invalid_schema)?;
    let setup = info.validators.setup().map_err(invalid_schema)?;
    Ok((input, setup))
}

/// Validates `value` (`what`: `input for function "f"`, `setup config`).
pub(crate) fn validate(
    validator: &InputValidator,
    value: &Value,
    what: impl FnOnce() -> String,
) -> Result<(), EngineError> {
    validator
        .validate(value)
        .map_err(|errors| EngineError::InvalidInput {
            what: what(),
            errors,
        })
}

/// The function a run names: its `function` field, else the `:function`
/// of its app reference; None asks for the app's default.
pub(crate) fn requested_function(request: &RunRequest) -> Option<String> {
    request
        .function
        .clone()
        .filter(|f| !f.trim().is_empty())
        .or_else(|| request.app.function().map(str::to_string))
}

/// A run's input and setup, `{}` where it gave none (or null).
pub(crate) fn input_and_setup(input: Value, setup: Option<Value>) -> (Value, Value) {
    let input = match input {
        Value::Null => json!({}),
        other => other,
    };
    let setup = match setup {
        None | Some(Value::Null) => json!({}),
        Some(setup) => setup,
    };
    (input, setup)
}

/// Why app `app` has no function to run for a request, as the engine's error.
pub(crate) fn resolve_error(app: &str, e: ResolveError) -> EngineError {
    match e {
        ResolveError::UnknownFunction { name, available } => EngineError::UnknownFunction {
            app: app.to_string(),
            function: name,
            available,
        },
        ResolveError::NoDefault { available } => EngineError::NoDefaultFunction {
            app: app.to_string(),
            available,
        },
        ResolveError::NoFunctions => EngineError::AppUnavailable {
            app: app.to_string(),
            message: e.to_string(),
            traceback: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(yml: &str) -> Manifest {
        Manifest::parse(yml, std::path::Path::new("inf.yml")).unwrap()
    }

    #[test]
    fn secrets() {
        let m = manifest(
            "secrets:\n  - key: API_KEY\n    description: the key\n  - key: OPT\n    optional: true\nintegrations:\n  - key: GOOGLE\nenv:\n  A: b\n  API_KEY: from-env\n",
        );
        let mut have = BTreeMap::new();
        let missing = missing_secrets(&m, &have);
        let keys: Vec<_> = missing
            .iter()
            .map(|m| (m.kind.as_str(), m.key.as_str()))
            .collect();
        assert_eq!(keys, vec![("secret", "API_KEY"), ("integration", "GOOGLE")]);
        assert!(missing[0].message.contains("the key"));
        have.insert("API_KEY".to_string(), "k".to_string());
        have.insert("GOOGLE".to_string(), "g".to_string());
        have.insert("UNRELATED".to_string(), "u".to_string());
        assert!(missing_secrets(&m, &have).is_empty());
        let env = worker_env(&m, &have);
        assert!(env.contains(&("A".into(), "b".into())));
        assert!(env.contains(&("API_KEY".into(), "k".into())));
        assert!(!env.iter().any(|(k, _)| k == "UNRELATED"));
        assert_eq!(env.iter().filter(|(k, _)| k == "API_KEY").count(), 1);
    }

    fn file_function() -> FunctionInfo {
        FunctionInfo {
            name: "f".into(),
            streaming: false,
            is_async: true,
            accepts_metadata: false,
            batched: false,
            entry: json!({"input_schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "file"}}
            }}),
        }
    }

    #[test]
    fn file_inputs() {
        let f = file_function();
        for ok in [
            json!({"file": "https://example.com/a.png"}),
            json!({"file": "HTTP://example.com/a.png"}),
            json!({"file": "data:text/plain;base64,aGk="}),
            json!({"file": {"uri": "https://example.com/a.png"}}),
            json!({}),
        ] {
            check_file_inputs(&f, &ok).unwrap();
        }
        for bad in [
            json!({"file": "/etc/passwd"}),
            json!({"file": "relative.png"}),
            json!({"file": "file:///etc/passwd"}),
            json!({"file": "s3://bucket/a"}),
            json!({"file": {"path": "/etc/passwd"}}),
            json!({"file": {"uri": "/etc/passwd"}}),
        ] {
            match check_file_inputs(&f, &bad) {
                Err(EngineError::InvalidFile { field, .. }) => assert_eq!(field, "file"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
