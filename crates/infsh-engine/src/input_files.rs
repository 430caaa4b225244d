//! Stored files handed to a worker on this machine in place (issue 17,
//! docs/performance.md "How the bytes move").
//!
//! A client passes an uploaded file as its URI, `{public_url}/files/{id}…`.
//! Handed over as is, the worker's SDK downloads it from this server over
//! loopback into its file cache: a second copy written and the bytes sent
//! through a socket. When the file's bytes are in this node's folder store,
//! the worker gets the SDK's own file object instead, `{"uri", "path",
//! "filename", "content_type", "size"}` with `path` the stored file: the
//! SDK's `File` takes a given path as resolved and downloads nothing, the
//! app reads the bytes where the upload wrote them, and `uri`, name and
//! type stay what the client gave (the name is the upload's, not the id).
//!
//! Only what the task could read anyway is handed over: a file of the
//! task's own team, or a public one (a key of another team holding a signed
//! URL still gets the URL, and the worker fetches it as before). The worker
//! only ever sees this for `File` fields of the function's input schema;
//! the task's stored input stays the client's. Stored files are read-only
//! on disk ([`infsh_store::FileStore`]), so an app that writes to its input
//! by mistake fails instead of changing what other readers get.

use infsh_core::files::file_pointers;
use infsh_store::{TaskRecord, DEFAULT_TEAM};
use serde_json::{Map, Value};

use crate::deletion::leading_file_id;
use crate::shared::Shared;

/// The input to send the worker for `task`: its own, with each `File`
/// field of `schema` that names a file stored in this node's folder (and
/// readable by the task's team) given as the SDK's file object with the
/// stored `path`. Any lookup that fails leaves that field as it was: the
/// worker then downloads it, as it would without this.
pub(crate) async fn with_stored_paths(shared: &Shared, schema: &Value, task: &TaskRecord) -> Value {
    let mut input = task.input.clone();
    let pointers = file_pointers(schema, &input);
    if pointers.is_empty() {
        return input;
    }
    let public_url = shared.config.public_url.trim_end_matches('/');
    for pointer in pointers {
        let Some(value) = input.pointer_mut(&pointer) else {
            continue;
        };
        let Some(uri) = uri_of(value) else { continue };
        let Some(id) = stored_file_id(uri, public_url) else {
            continue;
        };
        let id = id.to_string();
        if let Some(object) = in_place(shared, &id, uri, task).await {
            merge_into(value, object);
        }
    }
    input
}

/// The URI of a `File` value: the string, or an object's `uri` (an object
/// that already has a `path` is left alone).
fn uri_of(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Object(map) if map.get("path").is_none_or(Value::is_null) => {
            map.get("uri").and_then(Value::as_str)
        }
        _ => None,
    }
}

/// The file id of `uri` when it is one of this server's file URLs:
/// `{public_url}/files/{id}` or `/v1/files/{id}`, then the end, `/name`,
/// `?query` or `#fragment`.
fn stored_file_id<'a>(uri: &'a str, public_url: &str) -> Option<&'a str> {
    let rest = uri.strip_prefix(public_url)?;
    let rest = rest
        .strip_prefix("/files/")
        .or_else(|| rest.strip_prefix("/v1/files/"))?;
    leading_file_id(rest)
}

/// The SDK's file object for stored file `id`, when its bytes are in this
/// node's folder and the task's team may read it.
async fn in_place(
    shared: &Shared,
    id: &str,
    uri: &str,
    task: &TaskRecord,
) -> Option<Map<String, Value>> {
    let path = shared.files.path_of(id).ok()??;
    let (record, access) =
        tokio::try_join!(shared.store.get_file(id), shared.store.file_access(id)).ok()?;
    let (record, access) = (record?, access.unwrap_or_default());
    let task_team = task.team.as_deref().unwrap_or(DEFAULT_TEAM);
    if !record.uploaded
        || !(access.public || access.team.as_deref().unwrap_or(DEFAULT_TEAM) == task_team)
    {
        return None;
    }
    // The bytes must be here (another node's folder, or a file removed
    // since its record was read, leave the URL to the worker).
    let meta = tokio::fs::metadata(&path).await.ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut object = Map::new();
    object.insert("uri".into(), Value::String(uri.to_string()));
    object.insert(
        "path".into(),
        Value::String(path.to_string_lossy().into_owned()),
    );
    object.insert("filename".into(), Value::String(record.filename));
    object.insert("content_type".into(), Value::String(record.content_type));
    object.insert("size".into(), Value::from(meta.len()));
    Some(object)
}

/// `value` (a URI string or a file object) with `object`'s fields; what the
/// client set itself (its own `filename`, `content_type`) wins, but the
/// path and the size are the stored file's.
fn merge_into(value: &mut Value, mut object: Map<String, Value>) {
    if let Value::Object(client) = value {
        for (key, v) in std::mem::take(client) {
            if !v.is_null() && key != "path" && key != "size" {
                object.insert(key, v);
            }
        }
    }
    *value = Value::Object(object);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn only_this_servers_file_urls_name_a_stored_file() {
        let base = "http://127.0.0.1:8080";
        for uri in [
            format!("{base}/files/{ID}"),
            format!("{base}/files/{ID}/photo.png"),
            format!("{base}/files/{ID}/photo.png?sig=1.ab"),
            format!("{base}/v1/files/{ID}?sig=1.ab"),
            format!("{base}/files/{ID}#x"),
        ] {
            assert_eq!(stored_file_id(&uri, base), Some(ID), "{uri}");
        }
        for uri in [
            format!("http://example.com/files/{ID}"),
            format!("{base}0/files/{ID}"),
            format!("{base}/files/{ID}0"),
            format!("{base}/files/{}", &ID[1..]),
            format!("{base}/files/{}", ID.to_uppercase()),
            format!("{base}/other/files/{ID}"),
            "data:text/plain;base64,aGk=".to_string(),
        ] {
            assert_eq!(stored_file_id(&uri, base), None, "{uri}");
        }
    }

    #[test]
    fn a_file_object_with_its_own_path_is_left_alone() {
        assert_eq!(uri_of(&json!("http://h/files/x")), Some("http://h/files/x"));
        assert_eq!(uri_of(&json!({"uri": "http://h/a"})), Some("http://h/a"));
        assert_eq!(
            uri_of(&json!({"uri": "http://h/a", "path": null})),
            Some("http://h/a")
        );
        assert_eq!(uri_of(&json!({"uri": "http://h/a", "path": "/x"})), None);
        assert_eq!(uri_of(&json!(3)), None);
    }

    #[test]
    fn what_the_client_set_wins_over_the_record() {
        let stored = || {
            json!({"uri": "u", "path": "/store/x", "filename": "a.png", "content_type": "image/png", "size": 3})
                .as_object()
                .unwrap()
                .clone()
        };
        let mut plain = json!("u");
        merge_into(&mut plain, stored());
        assert_eq!(plain, Value::Object(stored()));

        let mut object = json!({"uri": "u", "filename": "mine.png", "content_type": null, "path": null, "size": 9});
        merge_into(&mut object, stored());
        assert_eq!(
            object,
            json!({"uri": "u", "path": "/store/x", "filename": "mine.png", "content_type": "image/png", "size": 3})
        );
    }
}
