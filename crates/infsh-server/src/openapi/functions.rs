//! Per-function documentation, merged into the fixed document at
//! `GET /openapi.json` for every hosted app: each function's input and
//! output schema becomes a component (`<ns>.<name>.<function>.Input` /
//! `.Output`, with pydantic's `$defs` hoisted to `<…>.Input.<Def>` and their
//! `$ref`s rewritten), and each function gets its own concrete path
//! `POST /apps/<ns>/<name>/functions/<function>/run`, a copy of the fixed
//! document's template path whose request body's `input` and response's
//! `data.output` point at those components.

use infsh_engine::AppDetail;
use serde_json::{json, Map, Value};

/// The template path of per-function runs in the fixed document.
pub const FUNCTION_RUN_TEMPLATE: &str = "/apps/{namespace}/{name}/functions/{function}/run";

/// Characters allowed in component names: `^[a-zA-Z0-9._-]+$`.
fn component_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Rewrites local `$ref`s (`#/$defs/X`, `#/definitions/X`) of a schema
/// owned by component `owner` to the hoisted components `<owner>.X`.
fn rewrite_refs(v: &mut Value, owner: &str) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                for prefix in ["#/$defs/", "#/definitions/"] {
                    if let Some(def) = r.strip_prefix(prefix) {
                        *r = format!(
                            "#/components/schemas/{}",
                            component_name(&format!("{owner}.{def}"))
                        );
                        break;
                    }
                }
            }
            for child in map.values_mut() {
                rewrite_refs(child, owner);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| rewrite_refs(c, owner)),
        _ => {}
    }
}

/// What a `File` field carries on the wire. The SDK declares `File` as
/// `{"type": "string", "format": "file"}`, but inputs may also be file
/// objects (`{"uri": …}`) and outputs always are (`{"uri", "filename",
/// "content_type", "size"}`, the local path replaced by a URL): the
/// document says so, or every output with a file would contradict it.
fn file_value_schema() -> Value {
    json!({
        "type": "object",
        "description": "A file: `uri` is where its bytes are (http(s) or data: URL).",
        "properties": {
            "uri": {"type": ["string", "null"]},
            "path": {"type": ["string", "null"]},
            "filename": {"type": ["string", "null"]},
            "content_type": {"type": ["string", "null"]},
            "size": {"type": ["integer", "null"]},
        },
    })
}

/// Replaces every `File` node (see [`file_value_schema`]) in an app's
/// schema by "a URL string or a file object", keeping its annotations.
fn widen_file_nodes(v: &mut Value) {
    if infsh_core::schema::is_file_node(v) {
        let Value::Object(node) = v else { return };
        let nullable =
            matches!(node.get("type"), Some(Value::Array(ts)) if ts.iter().any(|t| t == "null"));
        node.remove("type");
        node.remove("format");
        let mut branches = vec![
            json!({"type": "string", "format": "file"}),
            file_value_schema(),
        ];
        if nullable {
            branches.push(json!({"type": "null"}));
        }
        node.insert("anyOf".into(), Value::Array(branches));
        return;
    }
    match v {
        Value::Object(map) => map.values_mut().for_each(widen_file_nodes),
        Value::Array(items) => items.iter_mut().for_each(widen_file_nodes),
        _ => {}
    }
}

/// Lets every `number` node of an output schema be `null` too. JSON has no
/// spelling for NaN or infinity, so the worker sends them as `null`, as
/// pydantic's own `model_dump_json` does (docs/writing-apps.md, "Functions"):
/// the document says so, or an output holding one would contradict it.
fn allow_null_numbers(v: &mut Value) {
    if let Value::Object(node) = v {
        match node.get_mut("type") {
            Some(Value::String(t)) if t == "number" => {
                node.insert("type".into(), json!(["number", "null"]));
            }
            Some(Value::Array(types))
                if types.iter().any(|t| t == "number") && !types.iter().any(|t| t == "null") =>
            {
                types.push(json!("null"));
            }
            _ => {}
        }
    }
    match v {
        Value::Object(map) => map.values_mut().for_each(allow_null_numbers),
        Value::Array(items) => items.iter_mut().for_each(allow_null_numbers),
        _ => {}
    }
}

/// Which side of a call a schema describes.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Input,
    Output,
}

/// Adds `schema` as component `owner` (its `$defs` as `<owner>.<Def>`).
fn add_schema(schemas: &mut Map<String, Value>, owner: &str, schema: &Value, side: Side) {
    let mut schema = schema.clone();
    widen_file_nodes(&mut schema);
    if side == Side::Output {
        allow_null_numbers(&mut schema);
    }
    if let Value::Object(map) = &mut schema {
        for key in ["$defs", "definitions"] {
            if let Some(Value::Object(defs)) = map.remove(key) {
                for (name, mut def) in defs {
                    rewrite_refs(&mut def, owner);
                    schemas.insert(component_name(&format!("{owner}.{name}")), def);
                }
            }
        }
    }
    rewrite_refs(&mut schema, owner);
    schemas.insert(component_name(owner), schema);
}

/// Merges hosted apps' functions into a copy of `fixed` (the fixed
/// document, see document.rs). `apps` must be sorted by id; `unavailable`
/// lists `(app id, why)`.
pub fn document_with_apps(
    fixed: &Value,
    apps: &[AppDetail],
    unavailable: &[(String, String)],
) -> Value {
    let mut doc = fixed.clone();
    let template = doc["paths"][FUNCTION_RUN_TEMPLATE]["post"].clone();
    let mut new_paths = Map::new();
    let mut new_schemas = Map::new();
    let mut new_tags = Vec::new();
    for app in apps {
        let s = &app.summary;
        new_tags.push(json!({
            "name": s.id,
            "description": s.description.clone().unwrap_or_default(),
        }));
        let Some(functions) = app.functions.as_object() else {
            continue;
        };
        let mut names: Vec<&String> = functions.keys().collect();
        names.sort();
        for fname in names {
            let f = &functions[fname];
            let base = component_name(&format!("{}.{}.{}", s.namespace, s.name, fname));
            let input = format!("{base}.Input");
            let output = format!("{base}.Output");
            add_schema(
                &mut new_schemas,
                &input,
                f.get("input_schema").unwrap_or(&json!({})),
                Side::Input,
            );
            add_schema(
                &mut new_schemas,
                &output,
                f.get("output_schema").unwrap_or(&json!({})),
                Side::Output,
            );
            let mut op = template.clone();
            let description = f
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            op["tags"] = json!([s.id]);
            op["summary"] = json!(format!("{} · {}", s.id, fname));
            op["description"] = json!(description);
            op["operationId"] = json!(component_name(&format!("run.{base}")).replace('.', "_"));
            // Keep only the query parameters: the path is concrete.
            if let Some(Value::Array(params)) = op.get_mut("parameters") {
                params.retain(|p| p["in"] != "path");
            }
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {
                    "allOf": [schema_ref("FunctionRunBody")],
                    "properties": {"input": schema_ref(&input)},
                }}},
            });
            op["responses"]["200"] = json!({
                "description": "The task; `data.output` follows the function's output schema once COMPLETED",
                "content": {"application/json": {"schema": {
                    "allOf": [schema_ref("TaskEnvelope")],
                    "properties": {"data": {"properties": {"output": {
                        "oneOf": [schema_ref(&output), {"type": "null"}],
                    }}}},
                }}},
            });
            let path = format!("/apps/{}/{}/functions/{}/run", s.namespace, s.name, fname);
            new_paths.insert(path, json!({ "post": op }));
        }
    }
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.extend(new_paths);
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.extend(new_schemas);
    }
    if let Some(tags) = doc["tags"].as_array_mut() {
        tags.extend(new_tags);
    }
    if !unavailable.is_empty() {
        doc["x-infsh-unavailable-apps"] = Value::Array(
            unavailable
                .iter()
                .map(|(app, why)| json!({"app": app, "detail": why}))
                .collect(),
        );
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::fixed_document;
    use infsh_engine::{AppState, AppSummary};

    fn detail() -> AppDetail {
        AppDetail {
            summary: AppSummary {
                id: "tests/val".into(),
                namespace: "tests".into(),
                name: "val".into(),
                description: Some("d".into()),
                category: None,
                images: None,
                default_function: Some("run".into()),
                functions: Some(vec!["run".into()]),
                state: AppState::Ready,
            },
            functions: json!({"run": {
                "description": "Echo.",
                "input_schema": {
                    "type": "object",
                    "properties": {"options": {"anyOf": [{"$ref": "#/$defs/Options"}, {"type": "null"}]}},
                    "$defs": {"Options": {"type": "object", "properties": {"seed": {"type": "integer"}}}},
                },
                "output_schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
            }}),
            setup_schema: json!({}),
        }
    }

    #[test]
    fn merges_hosted_functions() {
        let doc = document_with_apps(
            fixed_document(),
            &[detail()],
            &[("tests/broken".into(), "boom".into())],
        );
        let schemas = &doc["components"]["schemas"];
        let input = &schemas["tests.val.run.Input"];
        assert!(input.get("$defs").is_none());
        assert_eq!(
            input["properties"]["options"]["anyOf"][0]["$ref"],
            "#/components/schemas/tests.val.run.Input.Options"
        );
        assert_eq!(
            schemas["tests.val.run.Input.Options"]["properties"]["seed"]["type"],
            "integer"
        );
        assert!(schemas["tests.val.run.Output"].is_object());
        let op = &doc["paths"]["/apps/tests/val/functions/run/run"]["post"];
        assert_eq!(op["description"], "Echo.");
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["properties"]["input"]
                ["$ref"],
            "#/components/schemas/tests.val.run.Input"
        );
        assert!(op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["in"] != "path"));
        assert_eq!(doc["x-infsh-unavailable-apps"][0]["app"], "tests/broken");
        // The fixed part is untouched.
        assert!(doc["paths"][FUNCTION_RUN_TEMPLATE].is_object());
    }

    #[test]
    fn output_numbers_may_be_null_and_input_numbers_may_not() {
        let mut d = detail();
        let numbers = json!({
            "type": "object",
            "properties": {
                "value": {"type": "number"},
                "maybe": {"type": ["number", "null"]},
                "scores": {"type": "array", "items": {"type": "number"}},
                "count": {"type": "integer"},
                "type": {"type": "string"},
            },
        });
        d.functions["run"]["output_schema"] = numbers.clone();
        d.functions["run"]["input_schema"] = numbers;
        let doc = document_with_apps(fixed_document(), &[d], &[]);
        let schemas = &doc["components"]["schemas"];
        let out = &schemas["tests.val.run.Output"]["properties"];
        assert_eq!(out["value"]["type"], json!(["number", "null"]));
        assert_eq!(out["maybe"]["type"], json!(["number", "null"]));
        assert_eq!(out["scores"]["items"]["type"], json!(["number", "null"]));
        assert_eq!(out["count"]["type"], "integer");
        assert_eq!(out["type"]["type"], "string");
        let input = &schemas["tests.val.run.Input"]["properties"];
        assert_eq!(input["value"]["type"], "number");
    }

    #[test]
    fn file_fields_accept_urls_and_file_objects() {
        let mut d = detail();
        d.functions["run"]["output_schema"] = json!({
            "type": "object",
            "properties": {
                "image": {"type": "string", "format": "file", "title": "Image"},
                "maybe": {"type": ["string", "null"], "format": "file"},
                "many": {"type": "array", "items": {"$ref": "#/$defs/Nested"}},
            },
            "$defs": {"Nested": {"type": "object", "properties": {"f": {"type": "string", "format": "file"}}}},
        });
        let doc = document_with_apps(fixed_document(), &[d], &[]);
        let schemas = &doc["components"]["schemas"];
        let out = &schemas["tests.val.run.Output"]["properties"];
        assert_eq!(out["image"]["title"], "Image");
        assert!(out["image"].get("type").is_none());
        assert_eq!(
            out["image"]["anyOf"][0],
            json!({"type": "string", "format": "file"})
        );
        assert_eq!(out["image"]["anyOf"][1]["type"], "object");
        assert_eq!(out["maybe"]["anyOf"].as_array().unwrap().len(), 3);
        assert_eq!(
            schemas["tests.val.run.Output.Nested"]["properties"]["f"]["anyOf"][1]["properties"]
                ["uri"]["type"],
            json!(["string", "null"])
        );
    }
}
