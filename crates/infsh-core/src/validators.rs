//! [`FunctionValidators`]: one compiled [`InputValidator`] per function of
//! an app (and one for its setup config), compiled on first use and kept.
//! Local runs (the CLI's app session), remote runs (the CLI checks the
//! input before it submits) and the server (the engine's `AppInfo`) each
//! hold one, so they agree on what a schema that does not compile means.
//!
//! It means the function is refused ([`InvalidSchema`]), with a message
//! naming the function and the schema problem: a schema that is not JSON
//! Schema describes nothing infsh can check or publish, and it is the
//! app's bug (docs/writing-apps.md), not the caller's. A function needs its
//! own input schema and the app's setup schema (setup runs before any call),
//! so a setup schema that does not compile refuses every function.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use infsh_protocol::FunctionInfo;
use serde_json::{json, Value};

use crate::validate::{InputValidator, SchemaError};

/// A function's input schema; an entry without one validates nothing
/// (the worker always sends one, docs/protocol.md).
pub fn input_schema(function: &FunctionInfo) -> &Value {
    static EMPTY: LazyLock<Value> = LazyLock::new(|| json!({}));
    function.input_schema().unwrap_or(&EMPTY)
}

/// Which schema did not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    /// A function's `input_schema`.
    Input,
    /// The app's setup schema (its `setup` config).
    Setup,
}

impl SchemaKind {
    /// `input` or `setup`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaKind::Input => "input",
            SchemaKind::Setup => "setup",
        }
    }
}

/// A function refused because a schema it needs does not compile.
#[derive(Debug, Clone)]
pub struct InvalidSchema {
    /// The function refused; None for the setup schema on its own (before
    /// a function was named, as `infsh app test` runs setup).
    pub function: Option<String>,
    pub schema: SchemaKind,
    /// What the compiler said (the message includes it).
    pub problem: SchemaError,
}

impl fmt::Display for InvalidSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problem = &self.problem.message;
        match (&self.function, self.schema) {
            (Some(function), SchemaKind::Input) => write!(
                f,
                "function \"{function}\" is refused: its input schema does not compile: {problem}"
            ),
            (Some(function), SchemaKind::Setup) => write!(
                f,
                "function \"{function}\" is refused: the app's setup schema does not compile: {problem}"
            ),
            (None, _) => write!(
                f,
                "the app's {} schema does not compile: {problem}; no function can run",
                self.schema.as_str()
            ),
        }
    }
}

impl std::error::Error for InvalidSchema {}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Input(String),
    Setup,
}

type Compiled = Result<Arc<InputValidator>, SchemaError>;

/// The validators of one app's functions and setup config (see the module
/// docs). Each schema is compiled once, at its first use; a schema that
/// does not compile is remembered as such.
pub struct FunctionValidators {
    setup_schema: Value,
    compiled: Mutex<HashMap<Key, Compiled>>,
}

impl fmt::Debug for FunctionValidators {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("FunctionValidators")
            .field("compiled", &compiled.len())
            .finish_non_exhaustive()
    }
}

impl FunctionValidators {
    /// Validators for an app whose setup config follows `setup_schema`.
    pub fn new(setup_schema: Value) -> FunctionValidators {
        FunctionValidators {
            setup_schema,
            compiled: Mutex::new(HashMap::new()),
        }
    }

    fn compiled(&self, key: Key, schema: &Value) -> Compiled {
        let mut cache = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| InputValidator::compile(schema).map(Arc::new))
            .clone()
    }

    /// The validator of a function that can be called: refused when its
    /// input schema or the app's setup schema does not compile.
    pub fn function(&self, function: &FunctionInfo) -> Result<Arc<InputValidator>, InvalidSchema> {
        self.setup().map_err(|e| InvalidSchema {
            function: Some(function.name.clone()),
            ..e
        })?;
        self.compiled(Key::Input(function.name.clone()), input_schema(function))
            .map_err(|problem| InvalidSchema {
                function: Some(function.name.clone()),
                schema: SchemaKind::Input,
                problem,
            })
    }

    /// The validator of the setup config.
    pub fn setup(&self) -> Result<Arc<InputValidator>, InvalidSchema> {
        self.compiled(Key::Setup, &self.setup_schema)
            .map_err(|problem| InvalidSchema {
                function: None,
                schema: SchemaKind::Setup,
                problem,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(name: &str, input_schema: Value) -> FunctionInfo {
        FunctionInfo {
            name: name.into(),
            streaming: false,
            is_async: true,
            accepts_metadata: false,
            batched: false,
            entry: json!({"input_schema": input_schema}),
        }
    }

    /// What pydantic emits for a model whose `json_schema_extra` sets `type`
    /// to a number (the fixture app tests/fixtures/apps/invalid-schema).
    fn broken() -> Value {
        json!({"type": 12, "properties": {"text": {"type": "string"}}, "required": ["text"]})
    }

    fn compiler_message(schema: &Value) -> String {
        InputValidator::compile(schema).unwrap_err().message
    }

    #[test]
    fn a_function_is_validated_with_one_cached_validator() {
        let v = FunctionValidators::new(json!({}));
        let f = function(
            "run",
            json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
        );
        let first = v.function(&f).unwrap();
        assert!(Arc::ptr_eq(&first, &v.function(&f).unwrap()));
        assert!(first.validate(&json!({"n": 1})).is_ok());
        assert!(first.validate(&json!({"n": "x"})).is_err());
        // No input schema: nothing is checked.
        let bare = FunctionInfo {
            entry: json!({}),
            ..function("bare", json!({}))
        };
        assert!(v.function(&bare).unwrap().validate(&json!(5)).is_ok());
    }

    #[test]
    fn an_input_schema_that_does_not_compile_refuses_that_function() {
        let v = FunctionValidators::new(json!({}));
        let err = v.function(&function("bad", broken())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "function \"bad\" is refused: its input schema does not compile: {}",
                compiler_message(&broken())
            )
        );
        assert_eq!(
            (err.function.as_deref(), err.schema),
            (Some("bad"), SchemaKind::Input)
        );
        // Only that function: the others still work.
        assert!(v
            .function(&function("good", json!({"type": "object"})))
            .is_ok());
        assert!(v.setup().is_ok());
    }

    #[test]
    fn a_setup_schema_that_does_not_compile_refuses_every_function() {
        let v = FunctionValidators::new(broken());
        let problem = compiler_message(&broken());
        let err = v
            .function(&function("run", json!({"type": "object"})))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "function \"run\" is refused: the app's setup schema does not compile: {problem}"
            )
        );
        assert_eq!(err.schema, SchemaKind::Setup);
        let err = v.setup().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the app's setup schema does not compile: {problem}; no function can run")
        );
        assert_eq!(err.function, None);
    }

    #[test]
    fn the_compiler_names_the_problem() {
        let problem = compiler_message(&broken());
        assert!(problem.starts_with("at /type: 12 "), "{problem}");
    }
}
