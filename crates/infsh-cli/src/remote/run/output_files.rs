//! Which values of a remote task's output are files: by the function's
//! output schema when there is one, else by shape.

use serde_json::Value;

/// A `File` of a remote output.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteFile {
    pub pointer: String,
    pub uri: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub size: Option<u64>,
}

/// The output's files: found by the output schema when there is one, else
/// every object that looks like a stored file (`uri` plus `filename`,
/// `content_type` or `size`).
pub fn output_files(schema: Option<&Value>, output: &Value) -> Vec<RemoteFile> {
    let fields: Vec<(String, Value)> = match schema {
        Some(schema) => infsh_core::files::file_fields(schema, output)
            .into_iter()
            .map(|f| (f.pointer, f.value))
            .collect(),
        None => {
            let mut found = Vec::new();
            find_file_like(output, String::new(), &mut found);
            found
        }
    };
    fields
        .into_iter()
        .filter_map(|(pointer, value)| {
            let (uri, filename, content_type, size) = match &value {
                Value::String(s) => (s.clone(), None, None, None),
                Value::Object(map) => (
                    map.get("uri").and_then(Value::as_str)?.to_string(),
                    map.get("filename")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    map.get("content_type")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    map.get("size").and_then(Value::as_u64),
                ),
                _ => return None,
            };
            if uri.is_empty() {
                return None;
            }
            Some(RemoteFile {
                pointer,
                uri,
                filename,
                content_type,
                size,
            })
        })
        .collect()
}

fn find_file_like(value: &Value, pointer: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            let looks_like_file = map.get("uri").is_some_and(Value::is_string)
                && ["filename", "content_type", "size"]
                    .iter()
                    .any(|k| map.contains_key(*k));
            if looks_like_file {
                out.push((pointer, value.clone()));
                return;
            }
            for (key, child) in map {
                find_file_like(child, infsh_core::pointer::push(&pointer, key), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                find_file_like(
                    child,
                    infsh_core::pointer::push(&pointer, &i.to_string()),
                    out,
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn output_files_by_schema_and_by_shape() {
        let output = json!({
            "image": {"uri": "http://h/files/f1/a.png", "filename": "a.png", "content_type": "image/png", "size": 3},
            "files": [{"uri": "http://h/files/f2/one.txt", "filename": "one.txt"}],
            "label": "x",
        });
        let found = output_files(None, &output);
        let pointers: Vec<&str> = found.iter().map(|f| f.pointer.as_str()).collect();
        assert_eq!(pointers, vec!["/image", "/files/0"]);
        assert_eq!(found[0].size, Some(3));
        let schema = json!({
            "type": "object",
            "properties": {"image": {"type": "string", "format": "file"}},
        });
        let found = output_files(Some(&schema), &json!({"image": "http://h/files/f1/a.png"}));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].uri, "http://h/files/f1/a.png");
    }
}
