//! Output files of a claimed task. The local engine stores them in its own
//! file store and names them by its own URL (`<engine>/files/{id}`), which
//! no client of the API node can reach. Before an output is reported each
//! such file is uploaded to the API node (`POST /engine/files`) and its
//! `uri` replaced by the one the API node answers. A file is uploaded once
//! per task (streamed snapshots repeat the same files).

use std::collections::HashMap;
use std::time::Duration;

use infsh_engine::Engine;
use serde_json::Value;

use super::link::{Link, LinkError};

/// The local file ids already uploaded for this task, and their new URIs.
#[derive(Default)]
pub struct Uploaded(HashMap<String, String>);

/// Rewrites every local file URI in `output` to the API node's, uploading
/// the files not uploaded yet. An error names the file that failed.
pub async fn upload_outputs(
    engine: &Engine,
    link: &Link,
    uploaded: &mut Uploaded,
    output: &mut Value,
    task: &str,
) -> Result<(), String> {
    let prefix = engine.file_uri("");
    let mut slots = Vec::new();
    collect(output, &prefix, "", &mut slots);
    for (pointer, id) in slots {
        let uri = match uploaded.0.get(&id) {
            Some(uri) => uri.clone(),
            None => {
                let uri = upload(engine, link, &id, task)
                    .await
                    .map_err(|e| format!("cannot upload output file {id}: {e}"))?;
                uploaded.0.insert(id, uri.clone());
                uri
            }
        };
        if let Some(Value::String(slot)) = output.pointer_mut(&pointer) {
            *slot = uri;
        }
    }
    Ok(())
}

/// JSON pointers of the `uri` strings under `prefix`, with the file id.
fn collect(value: &Value, prefix: &str, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match child {
                    Value::String(uri) if key == "uri" => {
                        if let Some(rest) = uri.strip_prefix(prefix) {
                            let id = rest.split('/').next().unwrap_or_default();
                            if infsh_store::is_valid_id(id) {
                                out.push((here, id.to_string()));
                            }
                        }
                    }
                    _ => collect(child, prefix, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect(child, prefix, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// One upload, retried while the API node is unreachable.
async fn upload(engine: &Engine, link: &Link, id: &str, task: &str) -> Result<String, String> {
    let (record, stored) = engine.file(id).await.map_err(|e| e.to_string())?;
    let bytes = stored.to_vec().await.map_err(|e| e.to_string())?;
    let mut wait = Duration::from_millis(100);
    loop {
        match link
            .upload_file(bytes.clone(), &record.filename, &record.content_type, task)
            .await
        {
            Ok(uri) => return Ok(uri),
            Err(LinkError::Unreachable(e)) => {
                tracing::warn!(file = %id, error = %e, "output file not uploaded; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_local_file_uris_at_any_depth_and_leaves_others() {
        let id = "0123456789abcdef0123456789abcdef";
        let output = json!({
            "image": {"uri": format!("http://e:1/files/{id}"), "filename": "a.png"},
            "files": [{"uri": "https://elsewhere/x.png"}, {"uri": format!("http://e:1/files/{id}")}],
            "a/b": {"uri": format!("http://e:1/files/{id}/name.txt")},
            "bad": {"uri": "http://e:1/files/not-an-id"},
            "uri": "http://e:1/files/plain-string-at-top-is-not-a-file-object",
        });
        let mut found = Vec::new();
        collect(&output, "http://e:1/files/", "", &mut found);
        found.sort();
        assert_eq!(
            found,
            vec![
                ("/a~1b/uri".to_string(), id.to_string()),
                ("/files/1/uri".to_string(), id.to_string()),
                ("/image/uri".to_string(), id.to_string()),
            ]
        );
    }
}
