//! File inputs: finding the values of an input that are `File` fields (schema
//! nodes with `format: file`), and making local paths among them absolute and
//! checked before the worker sees them.
//!
//! The input is walked guided by the schema: `$ref` into `$defs`, `anyOf` /
//! `oneOf` / `allOf` branches, `properties`, `additionalProperties`, `items`,
//! `prefixItems`. A `File` value is a string (http(s) URL, `data:` URI, or
//! path) or an object with `uri` and/or `path` (the SDK's serialized `File`).
//!
//! Relative paths are resolved against a base folder (the CLI passes the
//! folder of the input file, or the current directory), because the worker
//! runs with the app folder as its cwd and would otherwise look in the wrong
//! place.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::pointer::{self, human_path};
use crate::schema::{self, is_file_node};

/// A local file input that is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileInputError {
    #[error("file input \"{field}\": no such file: {}", .path.display())]
    NotFound { field: String, path: PathBuf },
    #[error("file input \"{field}\": not a regular file: {}", .path.display())]
    NotAFile { field: String, path: PathBuf },
}

/// One `File` value of an input.
#[derive(Debug, Clone, PartialEq)]
pub struct FileField {
    /// RFC 6901 pointer into the input.
    pub pointer: String,
    /// The value: a string, or an object with `uri` / `path`.
    pub value: Value,
}

/// Every `File` value in `input`, in input order: `(pointer, value)`.
pub fn file_fields(schema: &Value, input: &Value) -> Vec<FileField> {
    file_pointers(schema, input)
        .into_iter()
        .filter_map(|p| {
            let value = input.pointer(&p)?.clone();
            Some(FileField { pointer: p, value })
        })
        .collect()
}

/// Pointers of every `File` value in `input`.
pub fn file_pointers(schema: &Value, input: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, schema, input, "", &mut out, 0);
    out
}

/// Rewrites each local-path `File` value in `input` (a string, or the `path` /
/// `uri` of an object, that is neither an http(s) URL nor a `data:` URI) to an
/// absolute path against `base_dir` (`~/` expands to the home folder,
/// `file://` URLs become paths), and checks that the file exists. Returns the
/// pointers of the local-file values, rewritten or already absolute.
pub fn resolve_local_paths(
    schema: &Value,
    input: &mut Value,
    base_dir: &Path,
) -> Result<Vec<String>, FileInputError> {
    let pointers = file_pointers(schema, input);
    let mut local = Vec::new();
    for p in pointers {
        let field = human_path(input, &p);
        let Some(value) = input.pointer_mut(&p) else {
            continue;
        };
        let mut any = false;
        match value {
            Value::String(s) => {
                if let Some(abs) = check_local(s, base_dir, &field)? {
                    *s = abs;
                    any = true;
                }
            }
            Value::Object(map) => {
                for key in ["path", "uri"] {
                    if let Some(Value::String(s)) = map.get_mut(key) {
                        if let Some(abs) = check_local(s, base_dir, &field)? {
                            *s = abs;
                            any = true;
                        }
                    }
                }
            }
            _ => {}
        }
        if any {
            local.push(p);
        }
    }
    Ok(local)
}

/// Whether a file string is remote (handed to the SDK as is): an http(s) URL,
/// a `data:` URI, or another `scheme://` URL other than `file://`.
pub fn is_remote(s: &str) -> bool {
    let lower = s.trim_start().to_ascii_lowercase();
    if lower.starts_with("data:") {
        return true;
    }
    match lower.split_once("://") {
        Some((scheme, _)) => {
            scheme != "file"
                && !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// `Some(absolute path)` for a local path that exists; `None` for a remote
/// value or an empty string.
fn check_local(s: &str, base_dir: &Path, field: &str) -> Result<Option<String>, FileInputError> {
    if s.is_empty() || is_remote(s) {
        return Ok(None);
    }
    let path = absolute(s, base_dir);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(Some(path.to_string_lossy().into_owned())),
        Ok(_) => Err(FileInputError::NotAFile {
            field: field.to_string(),
            path,
        }),
        Err(_) => Err(FileInputError::NotFound {
            field: field.to_string(),
            path,
        }),
    }
}

fn absolute(s: &str, base_dir: &Path) -> PathBuf {
    let s = if s.len() > 7 && s[..7].eq_ignore_ascii_case("file://") {
        &s[7..]
    } else {
        s
    };
    let path = match s.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(rest),
            None => PathBuf::from(s),
        },
        None => PathBuf::from(s),
    };
    let joined = if path.is_absolute() {
        path
    } else {
        base_dir.join(path)
    };
    // Drop `.` components; `..` stays (resolving it lexically could be wrong with links).
    joined
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

/// Whether `value` at a file node is a file value (a string, or an object the
/// SDK's `File` would take).
fn is_file_value(value: &Value) -> bool {
    match value {
        Value::String(_) => true,
        Value::Object(map) => map.contains_key("uri") || map.contains_key("path"),
        _ => false,
    }
}

fn walk(root: &Value, node: &Value, value: &Value, at: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 128 {
        return;
    }
    let Value::Object(map) = node else { return };
    if is_file_node(node) {
        if is_file_value(value) && !out.iter().any(|p| p == at) {
            out.push(at.to_string());
        }
        return;
    }
    if let Some((target, _)) = map
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| schema::resolve_ref(root, r))
    {
        walk(root, target, value, at, out, depth + 1);
    }
    for keyword in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(branches)) = map.get(keyword) {
            for b in branches {
                walk(root, b, value, at, out, depth + 1);
            }
        }
    }
    match value {
        Value::Object(fields) => {
            let properties = map.get("properties").and_then(Value::as_object);
            let additional = map.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in fields {
                let sub = properties.and_then(|p| p.get(key)).or(additional);
                if let Some(sub) = sub {
                    walk(root, sub, child, &pointer::push(at, key), out, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            let prefix = map.get("prefixItems").and_then(Value::as_array);
            let rest = map.get("items");
            for (i, child) in items.iter().enumerate() {
                let sub = match (prefix.and_then(|p| p.get(i)), rest) {
                    (Some(s), _) => Some(s),
                    // Draft 4-7 tuple form: `items` as an array.
                    (None, Some(Value::Array(tuple))) => tuple.get(i),
                    (None, Some(s)) if s.is_object() => Some(s),
                    _ => None,
                };
                if let Some(sub) = sub {
                    walk(
                        root,
                        sub,
                        child,
                        &pointer::push(at, &i.to_string()),
                        out,
                        depth + 1,
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
