//! Navigating the JSON schemas pydantic generates: local `$ref`s (into
//! `$defs`, or `definitions` for pydantic v1), the subschema tree, keyword
//! locations reported by the validator, and `format: file` nodes (the SDK's
//! `File`, whose schema is `{"type": "string", "format": "file"}`).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::pointer;

/// The `format` of the SDK's `File` fields.
pub const FILE_FORMAT: &str = "file";

/// Keywords whose value is one subschema.
const SCHEMA_KEYWORDS: &[&str] = &[
    "additionalProperties",
    "additionalItems",
    "items",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
];
/// Keywords whose value is an array of subschemas.
const SCHEMA_ARRAY_KEYWORDS: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems", "items"];
/// Keywords whose value maps names to subschemas.
const SCHEMA_MAP_KEYWORDS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

/// Whether `node` is a `File` field: `format: file` on a string type.
pub fn is_file_node(node: &Value) -> bool {
    node.get("format").and_then(Value::as_str) == Some(FILE_FORMAT)
        && match node.get("type") {
            Some(Value::String(t)) => t == "string",
            Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
            _ => false,
        }
}

/// Resolves a document-local reference (`#`, `#/$defs/Name`) against `root`,
/// returning the node and its canonical JSON pointer. Remote references are
/// not followed (`None`).
pub fn resolve_ref<'a>(root: &'a Value, reference: &str) -> Option<(&'a Value, String)> {
    let fragment = reference.strip_prefix('#')?;
    let fragment = percent_decode(fragment);
    root.pointer(&fragment).map(|node| (node, fragment))
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// Follows a node's `$ref` chain (at most a few hops); a node without one is
/// returned as is.
pub fn deref<'a>(root: &'a Value, node: &'a Value, node_ptr: String) -> (&'a Value, String) {
    let (mut node, mut ptr) = (node, node_ptr);
    for _ in 0..16 {
        match node
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| resolve_ref(root, r))
        {
            Some((next, next_ptr)) => {
                node = next;
                ptr = next_ptr;
            }
            None => break,
        }
    }
    (node, ptr)
}

/// The schema node at a keyword location as the validator reports it
/// (`/properties/a/$ref/properties/b/type`), starting from the node at the
/// canonical pointer `start`: `$ref` tokens are followed, other tokens index
/// into the schema. Returns the node and its canonical pointer.
pub fn node_at_keyword_path<'a>(
    root: &'a Value,
    start: &str,
    keyword_path: &str,
) -> Option<(&'a Value, String)> {
    let mut node = root.pointer(start)?;
    let mut ptr = start.to_string();
    for token in pointer::tokens(keyword_path) {
        if token == "$ref" {
            if let Some((next, next_ptr)) = node
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| resolve_ref(root, r))
            {
                node = next;
                ptr = next_ptr;
                continue;
            }
        }
        node = match node {
            Value::Object(map) => map.get(&token)?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
        ptr = pointer::push(&ptr, &token);
    }
    Some((node, ptr))
}

/// Calls `f` on `node` and every subschema below it (schema positions only:
/// never inside `default`, `examples`, `const` or `enum` values).
pub fn for_each_subschema_mut(node: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    f(node);
    let Value::Object(map) = node else { return };
    for (key, value) in map.iter_mut() {
        let key = key.as_str();
        if SCHEMA_MAP_KEYWORDS.contains(&key) {
            if let Value::Object(children) = value {
                for child in children.values_mut() {
                    for_each_subschema_mut(child, f);
                }
            }
        } else if SCHEMA_ARRAY_KEYWORDS.contains(&key) && value.is_array() {
            for child in value.as_array_mut().expect("checked") {
                for_each_subschema_mut(child, f);
            }
        } else if SCHEMA_KEYWORDS.contains(&key) && value.is_object() {
            for_each_subschema_mut(value, f);
        }
    }
}

/// Makes every `File` node also accept an object: the SDK's `File` takes a
/// string (URL, `data:` URI, path) or a dict `{uri, path, content_type, ...}`,
/// but its schema says only `"type": "string"`.
pub fn relax_file_nodes(schema: &mut Value) {
    for_each_subschema_mut(schema, &mut |node| {
        if !is_file_node(node) {
            return;
        }
        let types = match node.get("type") {
            Some(Value::Array(ts)) => {
                let mut ts = ts.clone();
                if !ts.iter().any(|t| t == "object") {
                    ts.push(Value::from("object"));
                }
                ts
            }
            _ => vec![Value::from("string"), Value::from("object")],
        };
        node["type"] = Value::Array(types);
    });
}

/// Makes the tag of every tagged union (`discriminator.propertyName` next to
/// `oneOf`/`anyOf`) required, as pydantic requires it in input even though each
/// branch's schema gives the tag a default.
pub fn require_discriminators(schema: &mut Value) {
    for_each_subschema_mut(schema, &mut |node| {
        let Some(tag) = node
            .get("discriminator")
            .and_then(|d| d.get("propertyName").or(Some(d)))
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return;
        };
        if !(node.get("oneOf").is_some() || node.get("anyOf").is_some()) {
            return;
        }
        let required = node
            .as_object_mut()
            .expect("has keys")
            .entry("required")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(names) = required {
            if !names.iter().any(|n| n == tag.as_str()) {
                names.push(Value::from(tag));
            }
        }
    });
}

/// The JSON type name of a value, with integral numbers as `integer`.
pub fn value_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|x| x.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The JSON types a schema node can accept, as far as can be told cheaply
/// (`type`, `const`, `enum`, nested unions, object/array keywords); `None`
/// when it could accept anything.
pub fn accepted_types(root: &Value, node: &Value) -> Option<BTreeSet<&'static str>> {
    accepted_types_at(root, node, 0)
}

fn accepted_types_at(root: &Value, node: &Value, depth: usize) -> Option<BTreeSet<&'static str>> {
    if depth > 16 {
        return None;
    }
    let (node, _) = deref(root, node, String::new());
    let Value::Object(map) = node else {
        // `true` accepts anything; `false` nothing.
        return if node == &Value::Bool(false) {
            Some(BTreeSet::new())
        } else {
            None
        };
    };
    let type_name = |t: &str| -> Option<&'static str> {
        Some(match t {
            "null" => "null",
            "boolean" => "boolean",
            "integer" => "integer",
            "number" => "number",
            "string" => "string",
            "array" => "array",
            "object" => "object",
            _ => return None,
        })
    };
    if let Some(t) = map.get("type") {
        let names: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return None,
        };
        return Some(names.into_iter().filter_map(type_name).collect());
    }
    if let Some(c) = map.get("const") {
        return Some([value_type(c)].into());
    }
    if let Some(Value::Array(options)) = map.get("enum") {
        return Some(options.iter().map(value_type).collect());
    }
    for keyword in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = map.get(keyword) {
            let mut all = BTreeSet::new();
            for b in branches {
                all.extend(accepted_types_at(root, b, depth + 1)?);
            }
            return Some(all);
        }
    }
    if [
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
    ]
    .iter()
    .any(|k| map.contains_key(*k))
    {
        return Some(["object"].into());
    }
    if ["items", "prefixItems"]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return Some(["array"].into());
    }
    None
}

/// Whether a value of JSON type `value_type` fits a set of accepted types
/// (an integer is also a number).
pub fn type_fits(accepted: &BTreeSet<&str>, value_type: &str) -> bool {
    accepted.contains(value_type) || (value_type == "integer" && accepted.contains("number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_nodes() {
        assert!(is_file_node(&json!({"type": "string", "format": "file"})));
        assert!(is_file_node(
            &json!({"type": ["string", "null"], "format": "file"})
        ));
        assert!(!is_file_node(&json!({"type": "string", "format": "uri"})));
        assert!(!is_file_node(&json!({"format": "file"})));
    }

    #[test]
    fn relaxes_only_schema_positions() {
        let mut s = json!({
            "properties": {
                "a": {"type": "string", "format": "file"},
                "b": {"anyOf": [{"type": "string", "format": "file"}, {"type": "null"}],
                      "default": {"type": "string", "format": "file"}},
                "c": {"type": "array", "items": {"type": "string", "format": "file"}}
            },
            "$defs": {"M": {"properties": {"f": {"format": "file", "type": "string", "title": "F"}}}}
        });
        relax_file_nodes(&mut s);
        assert_eq!(s["properties"]["a"]["type"], json!(["string", "object"]));
        assert_eq!(
            s["properties"]["b"]["anyOf"][0]["type"],
            json!(["string", "object"])
        );
        assert_eq!(
            s["properties"]["b"]["default"]["type"], "string",
            "defaults are data, not schemas"
        );
        assert_eq!(
            s["properties"]["c"]["items"]["type"],
            json!(["string", "object"])
        );
        assert_eq!(
            s["$defs"]["M"]["properties"]["f"]["type"],
            json!(["string", "object"])
        );
        // Key order of the node is kept.
        let keys: Vec<_> = s["$defs"]["M"]["properties"]["f"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["format", "type", "title"]);
    }

    #[test]
    fn discriminator_tags_become_required() {
        let mut s = json!({"properties": {
            "u": {"discriminator": {"propertyName": "kind", "mapping": {}}, "oneOf": [{"type": "object"}]},
            "v": {"discriminator": "t", "anyOf": [], "required": ["t"]},
            "w": {"discriminator": {"propertyName": "k"}}
        }});
        relax_file_nodes(&mut s);
        require_discriminators(&mut s);
        assert_eq!(s["properties"]["u"]["required"], json!(["kind"]));
        assert_eq!(s["properties"]["v"]["required"], json!(["t"]));
        assert!(s["properties"]["w"].get("required").is_none());
    }

    #[test]
    fn refs_and_keyword_paths() {
        let s = json!({
            "$defs": {"R": {"properties": {"x": {"minimum": 0}}}, "a/b": {"type": "null"}},
            "properties": {"r": {"$ref": "#/$defs/R"}, "o": {"anyOf": [{"$ref": "#/$defs/R"}, {"type": "null"}]}}
        });
        assert_eq!(resolve_ref(&s, "#/$defs/R").unwrap().1, "/$defs/R");
        assert_eq!(
            resolve_ref(&s, "#/$defs/a~1b").unwrap().0,
            &json!({"type": "null"})
        );
        assert_eq!(resolve_ref(&s, "#").unwrap().1, "");
        assert!(resolve_ref(&s, "other.json#/x").is_none());
        assert_eq!(resolve_ref(&s, "#/%24defs/R").unwrap().1, "/$defs/R");
        let (node, ptr) = node_at_keyword_path(&s, "", "/properties/r/$ref/properties/x").unwrap();
        assert_eq!(node, &json!({"minimum": 0}));
        assert_eq!(ptr, "/$defs/R/properties/x");
        let (_, ptr) =
            node_at_keyword_path(&s, "/properties/o/anyOf/0", "/$ref/properties/x/minimum")
                .unwrap();
        assert_eq!(ptr, "/$defs/R/properties/x/minimum");
        assert!(node_at_keyword_path(&s, "", "/properties/nope").is_none());
    }

    #[test]
    fn accepted_type_sets() {
        let root = json!({"$defs": {"E": {"enum": ["a", "b"]}, "M": {"properties": {}}}});
        let t = |n: Value| accepted_types(&root, &n).map(|s| s.into_iter().collect::<Vec<_>>());
        assert_eq!(t(json!({"type": "integer"})), Some(vec!["integer"]));
        assert_eq!(
            t(json!({"type": ["string", "object"]})),
            Some(vec!["object", "string"])
        );
        assert_eq!(t(json!({"$ref": "#/$defs/E"})), Some(vec!["string"]));
        assert_eq!(t(json!({"$ref": "#/$defs/M"})), Some(vec!["object"]));
        assert_eq!(t(json!({"const": 2})), Some(vec!["integer"]));
        assert_eq!(t(json!({"items": {}})), Some(vec!["array"]));
        assert_eq!(
            t(json!({"anyOf": [{"type": "integer"}, {"type": "null"}]})),
            Some(vec!["integer", "null"])
        );
        assert_eq!(t(json!({"description": "anything"})), None);
        assert!(type_fits(&["number"].into(), "integer"));
        assert!(!type_fits(&["integer"].into(), "number"));
        assert_eq!(value_type(&json!(1.0)), "integer");
        assert_eq!(value_type(&json!(1.5)), "number");
    }
}
