//! Validating a function's input against its `input_schema` in Rust, before
//! anything is sent to the worker, so bad input gets a clear answer listing
//! every problem. Pydantic in the worker stays authoritative; this layer only
//! rejects what pydantic would reject too.
//!
//! Semantics: JSON Schema draft 2020-12 (what pydantic v2 emits: `$defs`,
//! `$ref`, `anyOf` for `Optional`, `oneOf` + `discriminator` for tagged
//! unions), adapted to what pydantic does with the same models:
//! - the tag of a tagged union is required (pydantic cannot pick a branch
//!   without it, though the schema gives each branch's tag a default);
//! - `{"type": "string", "format": "file"}` (the SDK's `File`) also accepts an
//!   object, as `File` accepts `{uri, path, content_type, ...}` dicts;
//! - `format` is an annotation only: no format (`file`, `uri`, `date-time`,
//!   unknown ones) ever fails validation, since pydantic's own parsing of
//!   those is laxer than JSON Schema's (e.g. datetimes without a zone).
//!
//! JSON types must match: pydantic's lax coercions (`"5"` for an integer) are
//! not reproduced. An integer is a valid number, as in JSON Schema.
//!
//! Errors are mapped to short messages with human paths (`images[0].url`).
//! A failed union does not just say "not valid under any of anyOf": the value
//! is checked against the branch that fits its JSON type (or the branch its
//! discriminator names) and that branch's errors are reported.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::pointer::{self, display_path, human_path};
use crate::schema::{self, accepted_types, is_file_node, type_fits, value_type};

/// One problem with an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Human path of the offending value (`images[0].url`; `""` for the
    /// input itself). For a missing required field, the field's own path.
    pub path: String,
    /// What is wrong, short (`expected integer, got string "abc"`).
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", display_path(&self.path), self.message)
    }
}

/// Every error on its own line, for terminals and problem `detail`s.
pub fn describe_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A schema the validator could not compile (malformed, or with a remote `$ref`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid input schema: {message}")]
pub struct SchemaError {
    pub message: String,
}

/// The name under which a union branch is compiled as its own document.
const BRANCH_DEF: &str = "__infsh_branch__";
/// How deep union errors are explained before falling back to a plain message.
const MAX_UNION_DEPTH: usize = 12;

/// A compiled input schema.
pub struct InputValidator {
    /// The schema as adapted (see the module docs); all keyword locations resolve here.
    schema: Value,
    validator: Validator,
    /// Validators for single union branches, by canonical pointer, compiled
    /// when a union first fails (to explain why).
    branches: Mutex<HashMap<String, Option<Arc<Validator>>>>,
}

impl fmt::Debug for InputValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputValidator")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

fn build(schema: &Value) -> Result<Validator, SchemaError> {
    // jsonschema >= 0.30 checks a schema against its draft's meta-schema
    // only (0.26 compiled validators for all five drafts on first use:
    // 11 MiB held for the life of the server).
    jsonschema::draft202012::options()
        .should_validate_formats(false)
        .should_ignore_unknown_formats(true)
        .build(schema)
        .map_err(|e| SchemaError {
            // Where in the schema, when the meta-schema says so
            // (`at /type: 12 is not valid ...`).
            message: match e.instance_path().as_str() {
                "" => e.to_string(),
                at => format!("at {at}: {e}"),
            },
        })
}

/// An error before mapping: where (a JSON pointer into the whole input) and what.
struct Raw {
    pointer: String,
    message: String,
}

impl InputValidator {
    /// Compiles a function's `input_schema`.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let mut schema = schema.clone();
        schema::relax_file_nodes(&mut schema);
        schema::require_discriminators(&mut schema);
        let validator = build(&schema)?;
        Ok(InputValidator {
            schema,
            validator,
            branches: Mutex::new(HashMap::new()),
        })
    }

    /// The schema validated against (adapted as the module docs say).
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Whether `input` is valid, without collecting errors.
    pub fn is_valid(&self, input: &Value) -> bool {
        self.validator.is_valid(input)
    }

    /// Validates `input`, returning every problem found.
    pub fn validate(&self, input: &Value) -> Result<(), Vec<FieldError>> {
        if self.validator.is_valid(input) {
            return Ok(());
        }
        let mut raw = Vec::new();
        self.collect(&self.validator, None, input, "", &mut raw, 0);
        let mut out: Vec<FieldError> = Vec::new();
        for r in raw {
            let e = FieldError {
                path: human_path(input, &r.pointer),
                message: r.message,
            };
            if !out.contains(&e) {
                out.push(e);
            }
        }
        if out.is_empty() {
            out.push(FieldError {
                path: String::new(),
                message: "is not valid".into(),
            });
        }
        Err(out)
    }

    /// Runs `validator` on `instance` (found at `base` in the whole input) and
    /// maps its errors. `branch` is the canonical pointer of the union branch
    /// `validator` was compiled for (its keyword locations start with `/$ref`).
    fn collect(
        &self,
        validator: &Validator,
        branch: Option<&str>,
        instance: &Value,
        base: &str,
        out: &mut Vec<Raw>,
        depth: usize,
    ) {
        for err in validator.iter_errors(instance) {
            let keyword_path = err.evaluation_path().as_str();
            let (start, keyword_path) = match branch {
                Some(b) => (
                    b,
                    keyword_path.strip_prefix("/$ref").unwrap_or(keyword_path),
                ),
                None => ("", keyword_path),
            };
            let owner_path = keyword_path.rsplit_once('/').map_or("", |(p, _)| p);
            let owner = schema::node_at_keyword_path(&self.schema, start, owner_path);
            let at = format!("{base}{}", err.instance_path().as_str());
            self.map_error(&err, owner, &at, out, depth);
        }
    }

    /// Maps one validator error; `owner` is the schema node holding the failed
    /// keyword (and its canonical pointer), when it could be found.
    fn map_error(
        &self,
        err: &ValidationError<'_>,
        owner: Option<(&Value, String)>,
        at: &str,
        out: &mut Vec<Raw>,
        depth: usize,
    ) {
        let value: &Value = err.instance();
        let mut push = |pointer: String, message: String| out.push(Raw { pointer, message });
        let got = describe_value(value);
        use ValidationErrorKind as K;
        match err.kind() {
            K::Required { property } => {
                let name = property
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| property.to_string());
                push(pointer::push(at, &name), "is required".into());
            }
            K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
                for name in unexpected {
                    push(pointer::push(at, name), "unknown field".into());
                }
            }
            K::Type { kind } => {
                let message = if owner.as_ref().is_some_and(|(n, _)| is_file_node(n)) {
                    format!("expected a file (URL, data URI, path, or an object with `uri` or `path`), got {got}")
                } else {
                    let names: Vec<String> = match kind {
                        TypeKind::Single(t) => vec![t.to_string()],
                        TypeKind::Multiple(ts) => ts.into_iter().map(|t| t.to_string()).collect(),
                    };
                    format!("expected {}, got {got}", names.join(" or "))
                };
                push(at.to_string(), message);
            }
            K::Enum { options } => push(
                at.to_string(),
                format!(
                    "must be one of: {} (got {})",
                    list_values(options),
                    compact(value)
                ),
            ),
            K::Constant { expected_value } => push(
                at.to_string(),
                format!(
                    "must be {} (got {})",
                    compact(expected_value),
                    compact(value)
                ),
            ),
            K::Minimum { limit } => push(
                at.to_string(),
                format!("must be at least {limit} (got {value})"),
            ),
            K::Maximum { limit } => push(
                at.to_string(),
                format!("must be at most {limit} (got {value})"),
            ),
            K::ExclusiveMinimum { limit } => push(
                at.to_string(),
                format!("must be greater than {limit} (got {value})"),
            ),
            K::ExclusiveMaximum { limit } => push(
                at.to_string(),
                format!("must be less than {limit} (got {value})"),
            ),
            K::MultipleOf { multiple_of } => push(
                at.to_string(),
                format!("must be a multiple of {multiple_of} (got {value})"),
            ),
            K::MinLength { limit } => push(
                at.to_string(),
                format!(
                    "must be at least {} long (got {})",
                    plural(*limit, "character"),
                    str_len(value)
                ),
            ),
            K::MaxLength { limit } => push(
                at.to_string(),
                format!(
                    "must be at most {} long (got {})",
                    plural(*limit, "character"),
                    str_len(value)
                ),
            ),
            K::MinItems { limit } => push(
                at.to_string(),
                format!(
                    "must have at least {} (got {})",
                    plural(*limit, "item"),
                    array_len(value)
                ),
            ),
            K::MaxItems { limit } => push(
                at.to_string(),
                format!(
                    "must have at most {} (got {})",
                    plural(*limit, "item"),
                    array_len(value)
                ),
            ),
            K::AdditionalItems { limit } => push(
                at.to_string(),
                format!(
                    "must have at most {} (got {})",
                    plural(*limit as u64, "item"),
                    array_len(value)
                ),
            ),
            K::MinProperties { limit } => push(
                at.to_string(),
                format!("must have at least {}", plural(*limit, "field")),
            ),
            K::MaxProperties { limit } => push(
                at.to_string(),
                format!("must have at most {}", plural(*limit, "field")),
            ),
            K::Pattern { pattern } => push(
                at.to_string(),
                format!("must match the pattern {pattern} (got {})", compact(value)),
            ),
            K::UniqueItems => push(at.to_string(), "must not contain duplicate items".into()),
            K::Contains => push(
                at.to_string(),
                "must contain at least one matching item".into(),
            ),
            K::UnevaluatedItems { .. } => {
                push(at.to_string(), "has more items than allowed".into())
            }
            K::FalseSchema | K::Not { .. } => push(at.to_string(), "is not allowed".into()),
            K::Format { format } => push(at.to_string(), format!("is not a valid {format}")),
            K::PropertyNames { error } => push(
                at.to_string(),
                format!("has an invalid field name {}", compact(error.instance())),
            ),
            K::OneOfMultipleValid { .. } => push(
                at.to_string(),
                "matches more than one of the allowed variants".into(),
            ),
            K::AnyOf { .. } | K::OneOfNotValid { .. } => {
                let keyword = if matches!(err.kind(), K::AnyOf { .. }) {
                    "anyOf"
                } else {
                    "oneOf"
                };
                match owner {
                    Some((node, ptr)) if depth < MAX_UNION_DEPTH => {
                        self.union_errors(node, &ptr, keyword, value, at, out, depth)
                    }
                    _ => out.push(Raw {
                        pointer: at.to_string(),
                        message: format!("does not match any of the allowed types (got {got})"),
                    }),
                }
            }
            K::Custom { message, .. } => push(at.to_string(), message.clone()),
            _ => push(at.to_string(), err.to_string()),
        }
    }

    /// Explains why `value` (at `at`) matched no branch of the union `keyword`
    /// of `node` (canonical pointer `node_ptr`).
    #[allow(clippy::too_many_arguments)]
    fn union_errors(
        &self,
        node: &Value,
        node_ptr: &str,
        keyword: &str,
        value: &Value,
        at: &str,
        out: &mut Vec<Raw>,
        depth: usize,
    ) {
        let Some(branches) = node.get(keyword).and_then(Value::as_array) else {
            out.push(Raw {
                pointer: at.to_string(),
                message: "does not match any of the allowed types".into(),
            });
            return;
        };
        let branch_ptr = |i: usize| format!("{node_ptr}/{keyword}/{i}");

        // A tagged union: the tag names the branch.
        if let (Some(tag_field), Value::Object(fields)) = (discriminator(node), value) {
            let tags = self.tags(node, node_ptr, keyword, &tag_field);
            if !tags.is_empty() {
                match fields.get(&tag_field) {
                    None => out.push(Raw {
                        pointer: pointer::push(at, &tag_field),
                        message: "is required".into(),
                    }),
                    Some(tag) => match tags.iter().find(|(t, _)| t == tag) {
                        Some((_, ptr)) => self.explain_branch(ptr, value, at, out, depth),
                        None => out.push(Raw {
                            pointer: pointer::push(at, &tag_field),
                            message: format!(
                                "must be one of: {} (got {})",
                                list_values(&Value::Array(
                                    tags.iter().map(|(t, _)| t.clone()).collect()
                                )),
                                compact(tag)
                            ),
                        }),
                    },
                }
                return;
            }
        }

        let vt = value_type(value);
        let fitting: Vec<usize> = (0..branches.len())
            .filter(|&i| {
                accepted_types(&self.schema, &branches[i]).is_none_or(|ts| type_fits(&ts, vt))
            })
            .collect();
        match fitting.as_slice() {
            [] => {
                let mut names: Vec<String> = Vec::new();
                for b in branches {
                    let (b, _) = schema::deref(&self.schema, b, String::new());
                    let labels: Vec<String> = if is_file_node(b) {
                        vec!["file".into()]
                    } else {
                        accepted_types(&self.schema, b)
                            .map(|ts| ts.into_iter().map(str::to_string).collect())
                            .unwrap_or_default()
                    };
                    for l in labels {
                        if !names.contains(&l) {
                            names.push(l);
                        }
                    }
                }
                out.push(Raw {
                    pointer: at.to_string(),
                    message: format!(
                        "expected {}, got {}",
                        names.join(" or "),
                        describe_value(value)
                    ),
                });
            }
            [only] => self.explain_branch(&branch_ptr(*only), value, at, out, depth),
            several => {
                // Report the branch that comes closest (fewest errors).
                let mut best: Option<Vec<Raw>> = None;
                for &i in several {
                    let mut errs = Vec::new();
                    self.explain_branch(&branch_ptr(i), value, at, &mut errs, depth);
                    if !errs.is_empty() && best.as_ref().is_none_or(|b| errs.len() < b.len()) {
                        best = Some(errs);
                    }
                }
                out.extend(best.unwrap_or_else(|| {
                    vec![Raw {
                        pointer: at.to_string(),
                        message: "does not match any of the allowed types".into(),
                    }]
                }));
            }
        }
    }

    /// The tags of a tagged union and the canonical pointer of each tag's
    /// branch: from `discriminator.mapping` when present, else from each
    /// branch's `const` on the tag field.
    fn tags(
        &self,
        node: &Value,
        node_ptr: &str,
        keyword: &str,
        tag_field: &str,
    ) -> Vec<(Value, String)> {
        if let Some(mapping) = node
            .pointer("/discriminator/mapping")
            .and_then(Value::as_object)
        {
            return mapping
                .iter()
                .filter_map(|(tag, r)| {
                    let (_, ptr) = schema::resolve_ref(&self.schema, r.as_str()?)?;
                    Some((Value::from(tag.as_str()), ptr))
                })
                .collect();
        }
        let branches = node
            .get(keyword)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        branches
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let (resolved, ptr) =
                    schema::deref(&self.schema, b, format!("{node_ptr}/{keyword}/{i}"));
                let tag = resolved.get("properties")?.get(tag_field)?.get("const")?;
                Some((tag.clone(), ptr))
            })
            .collect()
    }

    /// Validates `value` against the branch at canonical pointer `ptr` alone
    /// and maps its errors (paths relative to `at`).
    fn explain_branch(&self, ptr: &str, value: &Value, at: &str, out: &mut Vec<Raw>, depth: usize) {
        match self.branch_validator(ptr) {
            Some(v) => self.collect(&v, Some(ptr), value, at, out, depth + 1),
            None => out.push(Raw {
                pointer: at.to_string(),
                message: "does not match any of the allowed types".into(),
            }),
        }
    }

    /// A validator for the subschema at canonical pointer `ptr`, compiled as
    /// `{"$defs": {..., BRANCH_DEF: <subschema>}, "$ref": "#/$defs/BRANCH_DEF"}`
    /// so its own `$ref`s into `$defs` still resolve.
    fn branch_validator(&self, ptr: &str) -> Option<Arc<Validator>> {
        let mut cache = self.branches.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(ptr.to_string())
            .or_insert_with(|| {
                let branch = self.schema.pointer(ptr)?.clone();
                let mut defs: Map<String, Value> = self
                    .schema
                    .get("$defs")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                defs.insert(BRANCH_DEF.into(), branch);
                let mut doc = json!({"$defs": defs, "$ref": format!("#/$defs/{BRANCH_DEF}")});
                if let Some(d) = self.schema.get("definitions") {
                    doc["definitions"] = d.clone();
                }
                build(&doc).ok().map(Arc::new)
            })
            .clone()
    }
}

/// The tag field of a tagged union (`discriminator.propertyName`).
fn discriminator(node: &Value) -> Option<String> {
    match node.get("discriminator")? {
        Value::String(s) => Some(s.clone()),
        d => d.get("propertyName")?.as_str().map(str::to_string),
    }
}

/// `string "abc"`, `integer 5`, `null`, `array`, ...
fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Array(_) | Value::Object(_) => value_type(value).into(),
        _ => format!("{} {}", value_type(value), compact(value)),
    }
}

/// A value as short JSON (long strings cut).
fn compact(value: &Value) -> String {
    const MAX: usize = 60;
    match value {
        Value::String(s) if s.chars().count() > MAX => {
            let cut: String = s.chars().take(MAX).collect();
            Value::String(format!("{cut}…")).to_string()
        }
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
        _ => value.to_string(),
    }
}

fn list_values(options: &Value) -> String {
    match options {
        Value::Array(items) => items.iter().map(compact).collect::<Vec<_>>().join(", "),
        other => compact(other),
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn str_len(value: &Value) -> usize {
    value.as_str().map_or(0, |s| s.chars().count())
}

fn array_len(value: &Value) -> usize {
    value.as_array().map_or(0, Vec::len)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
