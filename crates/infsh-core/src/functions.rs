//! Which function a request runs: the set of functions a worker reported in
//! its `ready` message (`infsh_protocol::FunctionInfo`), the default one, and
//! name resolution with errors that list what exists. Also rebuilds
//! `functions_schema.json` from the same entries.

use serde_json::{Map, Value};

use infsh_protocol::FunctionInfo;

/// The name of the default function when `inf.yml` names none.
pub const CONVENTIONAL_DEFAULT: &str = "run";

/// Why a function name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown function \"{name}\"; available functions: {}", .available.join(", "))]
    UnknownFunction {
        name: String,
        available: Vec<String>,
    },
    #[error("no function given and the app has no default (no `run`, no `default_function` in inf.yml); available functions: {}", .available.join(", "))]
    NoDefault { available: Vec<String> },
    #[error("the app exposes no functions (a function is a method of App whose input and return types are pydantic models)")]
    NoFunctions,
}

/// An app's functions, sorted by name, with its default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSet {
    functions: Vec<FunctionInfo>,
    default: Option<String>,
    declared_missing: Option<String>,
    warnings: Vec<String>,
}

impl FunctionSet {
    /// `functions` as reported by the worker (any order; a repeated name keeps
    /// its first entry); `manifest_default` is `inf.yml`'s `default_function`.
    ///
    /// The default is `manifest_default` if the app has it, else `run` if
    /// present, else the only function if there is exactly one, else none.
    pub fn new(functions: Vec<FunctionInfo>, manifest_default: Option<&str>) -> Self {
        let mut unique: Vec<FunctionInfo> = Vec::with_capacity(functions.len());
        for f in functions {
            if !unique.iter().any(|u| u.name == f.name) {
                unique.push(f);
            }
        }
        unique.sort_by(|a, b| a.name.cmp(&b.name));
        let has = |name: &str| unique.iter().any(|f| f.name == name);

        let manifest_default = manifest_default.map(str::trim).filter(|s| !s.is_empty());
        let mut warnings = Vec::new();
        let declared_missing = manifest_default.filter(|d| !has(d)).map(str::to_string);
        if let Some(d) = &declared_missing {
            let names: Vec<&str> = unique.iter().map(|f| f.name.as_str()).collect();
            warnings.push(format!(
                "inf.yml sets default_function: {d}, but the app has no function \"{d}\" (functions: {})",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ));
        }
        let default = match manifest_default {
            Some(d) if has(d) => Some(d.to_string()),
            _ if has(CONVENTIONAL_DEFAULT) => Some(CONVENTIONAL_DEFAULT.to_string()),
            _ if unique.len() == 1 => Some(unique[0].name.clone()),
            _ => None,
        };
        FunctionSet {
            functions: unique,
            default,
            declared_missing,
            warnings,
        }
    }

    /// The function run when a request names none.
    pub fn default_name(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// The function a request runs: `name`, or the default when `None` (or empty).
    pub fn resolve(&self, name: Option<&str>) -> Result<&FunctionInfo, ResolveError> {
        if self.functions.is_empty() {
            return Err(ResolveError::NoFunctions);
        }
        match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => self.get(n).ok_or_else(|| ResolveError::UnknownFunction {
                name: n.to_string(),
                available: self.names().map(str::to_string).collect(),
            }),
            None => self
                .default
                .as_deref()
                .and_then(|d| self.get(d))
                .ok_or_else(|| ResolveError::NoDefault {
                    available: self.names().map(str::to_string).collect(),
                }),
        }
    }

    /// The function called `name`.
    pub fn get(&self, name: &str) -> Option<&FunctionInfo> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The functions, sorted by name.
    pub fn functions(&self) -> &[FunctionInfo] {
        &self.functions
    }

    /// The function names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.iter().map(|f| f.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.functions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// `inf.yml`'s `default_function` when the app has no such function.
    pub fn default_function_declared_but_missing(&self) -> Option<&str> {
        self.declared_missing.as_deref()
    }

    /// Problems worth telling the user about (not errors).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// `functions_schema.json`: an object keyed by function name, keys sorted,
    /// each value exactly the function's `entry` (key order untouched).
    pub fn functions_schema(&self) -> Value {
        let mut map = Map::new();
        for f in &self.functions {
            map.insert(f.name.clone(), f.entry.clone());
        }
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> FunctionInfo {
        FunctionInfo {
            name: name.into(),
            streaming: false,
            is_async: true,
            accepts_metadata: false,
            batched: false,
            entry: json!({"description": format!("{name} doc"), "input_schema": {"type": "object"}, "output_schema": {}}),
        }
    }

    fn set(names: &[&str], default: Option<&str>) -> FunctionSet {
        FunctionSet::new(names.iter().map(|n| f(n)).collect(), default)
    }

    #[test]
    fn default_follows_manifest_then_run_then_single() {
        assert_eq!(set(&["a", "run", "b"], Some("b")).default_name(), Some("b"));
        assert_eq!(set(&["a", "run", "b"], None).default_name(), Some("run"));
        assert_eq!(set(&["a", "run"], Some("zzz")).default_name(), Some("run"));
        assert_eq!(set(&["only"], None).default_name(), Some("only"));
        assert_eq!(set(&["only"], Some("zzz")).default_name(), Some("only"));
        assert_eq!(set(&["a", "b"], None).default_name(), None);
        assert_eq!(set(&["a", "b"], Some(" ")).default_name(), None);
        assert_eq!(set(&[], None).default_name(), None);
    }

    #[test]
    fn resolves_names_and_default() {
        let s = set(&["upscale", "run", "caption"], None);
        assert_eq!(s.resolve(Some("caption")).unwrap().name, "caption");
        assert_eq!(s.resolve(None).unwrap().name, "run");
        assert_eq!(s.resolve(Some("")).unwrap().name, "run");
        let err = s.resolve(Some("x")).unwrap_err();
        assert_eq!(
            err,
            ResolveError::UnknownFunction {
                name: "x".into(),
                available: vec!["caption".into(), "run".into(), "upscale".into()]
            }
        );
        assert_eq!(
            err.to_string(),
            "unknown function \"x\"; available functions: caption, run, upscale"
        );
    }

    #[test]
    fn no_default_and_no_functions() {
        let err = set(&["b", "a"], None).resolve(None).unwrap_err();
        assert_eq!(
            err,
            ResolveError::NoDefault {
                available: vec!["a".into(), "b".into()]
            }
        );
        assert!(
            err.to_string().ends_with("available functions: a, b"),
            "{err}"
        );
        assert_eq!(
            set(&[], None).resolve(None).unwrap_err(),
            ResolveError::NoFunctions
        );
        assert_eq!(
            set(&[], None).resolve(Some("run")).unwrap_err(),
            ResolveError::NoFunctions
        );
    }

    #[test]
    fn warns_about_a_missing_declared_default() {
        let s = set(&["a", "b"], Some("generate"));
        assert_eq!(s.default_function_declared_but_missing(), Some("generate"));
        assert_eq!(s.warnings().len(), 1);
        assert!(
            s.warnings()[0].contains("generate") && s.warnings()[0].contains("a, b"),
            "{:?}",
            s.warnings()
        );
        let ok = set(&["a", "generate"], Some("generate"));
        assert_eq!(ok.default_function_declared_but_missing(), None);
        assert!(ok.warnings().is_empty());
    }

    #[test]
    fn sorted_and_deduplicated() {
        let mut dup = f("a");
        dup.streaming = true;
        let s = FunctionSet::new(vec![f("c"), f("a"), dup, f("b")], None);
        assert_eq!(s.names().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(!s.get("a").unwrap().streaming, "first entry wins");
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
    }

    #[test]
    fn functions_schema_is_sorted_with_entries_untouched() {
        let mut z = f("zeta");
        // Entry keys deliberately not alphabetical, plus an extra decorator key.
        z.entry = serde_json::from_str(r#"{"input_schema": {"b": 1, "a": 2}, "description": "", "output_schema": {}, "credentials": ["x"]}"#).unwrap();
        let s = FunctionSet::new(vec![z.clone(), f("alpha")], None);
        let schema = s.functions_schema();
        let keys: Vec<_> = schema.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["alpha", "zeta"]);
        assert_eq!(schema["zeta"], z.entry);
        assert_eq!(
            serde_json::to_string(&schema["zeta"]).unwrap(),
            r#"{"input_schema":{"b":1,"a":2},"description":"","output_schema":{},"credentials":["x"]}"#
        );
    }
}
