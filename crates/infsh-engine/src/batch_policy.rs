//! Batching, opt in (docs/writing-apps.md, "Batching"): which functions of
//! an app take a list of inputs, from inf.yml's `infsh:` block, and the
//! check, when a worker starts, that the app's functions agree with it.
//!
//! ```yaml
//! infsh:
//!   functions:
//!     embed: {max_batch_size: 32, max_batch_wait_ms: 5}
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use infsh_core::app::AppRuntime;
use infsh_protocol::Ready;
use serde_json::Value;

/// How long the first call of a batch waits for others, unless inf.yml says.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_millis(5);

/// One batched function's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchPolicy {
    /// Most calls run together (at least 1).
    pub max_batch_size: usize,
    /// How long the oldest waiting call waits for more before its batch
    /// runs with what there is.
    pub max_wait: Duration,
}

/// The `infsh.functions` block: each batched function's policy. Values of
/// the wrong kind are reported in `problems` and the function is left
/// unbatched.
pub(crate) fn read_batching(
    block: &serde_json::Map<String, Value>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, BatchPolicy> {
    let mut out = BTreeMap::new();
    let functions = match block.get("functions") {
        None | Some(Value::Null) => return out,
        Some(Value::Object(map)) => map,
        Some(other) => {
            problems.push(format!("infsh.functions: expected a mapping, got {other}"));
            return out;
        }
    };
    for (name, value) in functions {
        let key = format!("infsh.functions.{name}");
        let Value::Object(fields) = value else {
            problems.push(format!("{key}: expected a mapping, got {value}"));
            continue;
        };
        let size = match fields.get("max_batch_size").filter(|v| !v.is_null()) {
            None => continue, // nothing about batching
            Some(v) => match v.as_u64().filter(|n| *n >= 1) {
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                None => {
                    problems.push(format!(
                        "{key}.max_batch_size: {v} is not a whole number of at least 1"
                    ));
                    continue;
                }
            },
        };
        let max_wait = match fields.get("max_batch_wait_ms").filter(|v| !v.is_null()) {
            None => DEFAULT_BATCH_WAIT,
            Some(v) => match v.as_f64().filter(|ms| ms.is_finite() && *ms >= 0.0) {
                Some(ms) => Duration::from_secs_f64(ms / 1000.0),
                None => {
                    problems.push(format!(
                        "{key}.max_batch_wait_ms: {v} is not a number of milliseconds"
                    ));
                    continue;
                }
            },
        };
        out.insert(
            name.clone(),
            BatchPolicy {
                max_batch_size: size,
                max_wait,
            },
        );
    }
    out
}

/// Why the app's functions and its inf.yml disagree about batching, if
/// they do: a declared function missing or not taking a list, a function
/// taking a list without a declaration, or a JavaScript app (whose worker
/// does not batch).
pub(crate) fn batching_mismatch(
    declared: &BTreeMap<String, BatchPolicy>,
    runtime: AppRuntime,
    ready: &Ready,
) -> Option<String> {
    if let (Some(name), AppRuntime::Node) = (declared.keys().next(), runtime) {
        return Some(format!(
            "inf.yml declares batching for function \"{name}\" (infsh.functions.{name}.max_batch_size), \
             but JavaScript apps cannot batch: remove it"
        ));
    }
    for (name, policy) in declared {
        match ready.function(name) {
            None => {
                let known: Vec<&str> = ready.functions.iter().map(|f| f.name.as_str()).collect();
                return Some(format!(
                    "inf.yml declares batching for function \"{name}\", but the app has no such function (its functions: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ));
            }
            Some(f) if !f.batched => {
                return Some(format!(
                    "inf.yml declares batching for function \"{name}\" (max_batch_size {}), but App.{name} \
                     does not take a list: write `def {name}(self, inputs: list[Input]) -> list[Output]`",
                    policy.max_batch_size
                ));
            }
            Some(_) => {}
        }
    }
    ready
        .functions
        .iter()
        .find(|f| f.batched && !declared.contains_key(&f.name))
        .map(|f| {
            let name = &f.name;
            format!(
                "App.{name} takes a list of inputs, but inf.yml declares no batching for it: \
                 add `infsh: {{functions: {{{name}: {{max_batch_size: 32}}}}}}`, or take one input"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use infsh_protocol::FunctionInfo;
    use serde_json::json;

    fn read(yaml: Value) -> (BTreeMap<String, BatchPolicy>, Vec<String>) {
        let mut problems = Vec::new();
        let Value::Object(block) = yaml else {
            unreachable!()
        };
        (read_batching(&block, &mut problems), problems)
    }

    fn ready(functions: &[(&str, bool)]) -> Ready {
        Ready {
            protocol: 1,
            pid: 1,
            python: "3.12.0".into(),
            sdk_version: None,
            app_class: "App".into(),
            functions: functions
                .iter()
                .map(|(name, batched)| FunctionInfo {
                    name: (*name).into(),
                    streaming: false,
                    is_async: false,
                    accepts_metadata: false,
                    batched: *batched,
                    entry: json!({}),
                })
                .collect(),
            setup_schema: json!({}),
            has_on_cancel: false,
        }
    }

    #[test]
    fn a_function_with_a_batch_size_is_batched_and_waits_5ms_unless_told() {
        let (policies, problems) = read(json!({"functions": {
            "embed": {"max_batch_size": 32, "max_batch_wait_ms": 2.5},
            "rank": {"max_batch_size": 8},
            "other": {"description": "not about batching"},
        }}));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            policies["embed"],
            BatchPolicy {
                max_batch_size: 32,
                max_wait: Duration::from_micros(2500)
            }
        );
        assert_eq!(policies["rank"].max_wait, DEFAULT_BATCH_WAIT);
        assert!(!policies.contains_key("other"));
    }

    #[test]
    fn bad_values_are_reported_and_leave_the_function_unbatched() {
        let (policies, problems) = read(json!({"functions": {
            "a": {"max_batch_size": 0},
            "b": {"max_batch_size": 4, "max_batch_wait_ms": "soon"},
            "c": 7,
        }}));
        assert!(policies.is_empty());
        assert_eq!(
            problems,
            [
                "infsh.functions.a.max_batch_size: 0 is not a whole number of at least 1",
                "infsh.functions.b.max_batch_wait_ms: \"soon\" is not a number of milliseconds",
                "infsh.functions.c: expected a mapping, got 7",
            ]
        );
        let (_, problems) = read(json!({"functions": [1]}));
        assert_eq!(problems, ["infsh.functions: expected a mapping, got [1]"]);
    }

    #[test]
    fn the_functions_must_agree_with_the_declaration() {
        let (declared, _) = read(json!({"functions": {"embed": {"max_batch_size": 4}}}));
        let py = AppRuntime::Python;
        assert_eq!(
            batching_mismatch(&declared, py, &ready(&[("embed", true), ("run", false)])),
            None
        );
        assert_eq!(
            batching_mismatch(&declared, py, &ready(&[("embed", false)])).unwrap(),
            "inf.yml declares batching for function \"embed\" (max_batch_size 4), but App.embed does not \
             take a list: write `def embed(self, inputs: list[Input]) -> list[Output]`"
        );
        assert_eq!(
            batching_mismatch(&declared, py, &ready(&[("run", false)])).unwrap(),
            "inf.yml declares batching for function \"embed\", but the app has no such function (its functions: run)"
        );
        assert_eq!(
            batching_mismatch(&BTreeMap::new(), py, &ready(&[("embed", true)])).unwrap(),
            "App.embed takes a list of inputs, but inf.yml declares no batching for it: add \
             `infsh: {functions: {embed: {max_batch_size: 32}}}`, or take one input"
        );
        assert_eq!(
            batching_mismatch(&declared, AppRuntime::Node, &ready(&[("embed", false)])).unwrap(),
            "inf.yml declares batching for function \"embed\" (infsh.functions.embed.max_batch_size), but \
             JavaScript apps cannot batch: remove it"
        );
    }
}
