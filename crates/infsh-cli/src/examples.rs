//! Example inputs made from a function's JSON schema, for `app test` when a
//! function has no `input_<fn>.json` yet (and `--save-example` writes them).
//! Only required fields are filled: defaults, then `examples`, enums, or a
//! plain value of the declared type. A required file field cannot be
//! invented, so such a function gets no example.

use serde_json::{json, Map, Value};

/// Why no example could be made.
#[derive(Debug, PartialEq, Eq)]
pub struct NoExample(pub String);

pub fn synthesize(schema: &Value) -> Result<Value, NoExample> {
    value_for(schema, schema, "", 0)
}

fn value_for(node: &Value, root: &Value, path: &str, depth: usize) -> Result<Value, NoExample> {
    if depth > 32 {
        return Err(NoExample(format!("{} is recursive", display(path))));
    }
    if let Some(default) = node.get("default") {
        return Ok(default.clone());
    }
    if let Some(first) = node
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return Ok(first.clone());
    }
    if let Some(value) = node.get("const") {
        return Ok(value.clone());
    }
    if let Some(first) = node
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return Ok(first.clone());
    }
    if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let target = reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
            .ok_or_else(|| {
                NoExample(format!(
                    "{} refers to {reference}, which is not in the schema",
                    display(path)
                ))
            })?;
        return value_for(target, root, path, depth + 1);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = node.get(key).and_then(Value::as_array) {
            // Prefer an option that is not null; the first one that works wins.
            let mut last_error = None;
            for option in options
                .iter()
                .filter(|o| o.get("type") != Some(&json!("null")))
            {
                match value_for(option, root, path, depth + 1) {
                    Ok(value) => return Ok(value),
                    Err(e) => last_error = Some(e),
                }
            }
            return Err(last_error
                .unwrap_or_else(|| NoExample(format!("{} allows only null", display(path)))));
        }
    }
    if let Some(all) = node.get("allOf").and_then(Value::as_array) {
        if let Some(first) = all.first() {
            return value_for(first, root, path, depth + 1);
        }
    }
    if node.get("format").and_then(Value::as_str) == Some("file") {
        return Err(NoExample(format!("{} is a required file", display(path))));
    }
    let kind = match node.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if node.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "object" => object_for(node, root, path, depth),
        "array" => {
            let min = node.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let items = node.get("items").cloned().unwrap_or(json!({}));
            let mut out = Vec::new();
            for i in 0..min {
                out.push(value_for(&items, root, &format!("{path}[{i}]"), depth + 1)?);
            }
            Ok(Value::Array(out))
        }
        "integer" => Ok(json!(node
            .get("minimum")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(
                node.get("exclusiveMinimum")
                    .and_then(Value::as_i64)
                    .map(|m| m + 1)
                    .unwrap_or(i64::MIN)
            ))),
        "number" => Ok(json!(node
            .get("minimum")
            .and_then(Value::as_f64)
            .unwrap_or(1.0))),
        "boolean" => Ok(json!(false)),
        "null" => Ok(Value::Null),
        _ => {
            let min = node.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
            let mut text = String::from("example");
            while text.len() < min {
                text.push('x');
            }
            Ok(json!(text))
        }
    }
}

fn object_for(node: &Value, root: &Value, path: &str, depth: usize) -> Result<Value, NoExample> {
    let mut out = Map::new();
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let empty = Map::new();
    let properties = node
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for name in required {
        let child = properties.get(name).cloned().unwrap_or(json!({}));
        let child_path = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        out.insert(
            name.to_string(),
            value_for(&child, root, &child_path, depth + 1)?,
        );
    }
    Ok(Value::Object(out))
}

fn display(path: &str) -> String {
    if path.is_empty() {
        "the input".to_string()
    } else {
        format!("field `{path}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_required_fields_from_defaults_enums_and_types() {
        let schema = json!({
            "$defs": {"Options": {"properties": {"seed": {"type": "integer", "minimum": 3}}, "required": ["seed"], "type": "object"}},
            "properties": {
                "prompt": {"type": "string"},
                "mode": {"enum": ["fast", "slow"]},
                "options": {"$ref": "#/$defs/Options"},
                "steps": {"type": "integer", "default": 10},
                "optional": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null}
            },
            "required": ["prompt", "mode", "options"],
            "type": "object"
        });
        assert_eq!(
            synthesize(&schema).unwrap(),
            json!({"prompt": "example", "mode": "fast", "options": {"seed": 3}})
        );
    }

    #[test]
    fn a_required_file_cannot_be_invented() {
        let schema = json!({"properties": {"image": {"type": "string", "format": "file"}}, "required": ["image"], "type": "object"});
        assert_eq!(
            synthesize(&schema).unwrap_err(),
            NoExample("field `image` is a required file".into())
        );
    }
}
