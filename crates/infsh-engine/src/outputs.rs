//! Output files: every `File` an app returned with a local `path` (the
//! worker lists them in `done.files`, `docs/protocol.md`) is copied into the
//! [`infsh_store::FileStore`] and the output rewritten at its JSON pointer to
//! `{"uri", "filename", "content_type", "size"}`, the uri being the server's
//! own `/files/{id}` URL. Local paths never reach a client.

use std::path::Path;

use infsh_protocol::OutputFile;
use infsh_store::FileAccess;
use serde_json::{json, Value};

use crate::shared::Shared;

/// An output file that could not be copied into the file store; its
/// message is the task's error.
#[derive(Debug, thiserror::Error)]
#[error("cannot store output file at {}: {source}", display_pointer(pointer))]
pub(crate) struct OutputFileError {
    /// Where the file is in the output (JSON pointer).
    pub pointer: String,
    #[source]
    pub source: infsh_store::StoreError,
}

/// Replaces the value at `pointer` (RFC 6901; `""` is the whole output).
fn replace_at(output: &mut Value, pointer: &str, value: Value) -> bool {
    if pointer.is_empty() {
        *output = value;
        return true;
    }
    match output.pointer_mut(pointer) {
        Some(slot) => {
            *slot = value;
            true
        }
        None => false,
    }
}

/// Stores the output's local files and rewrites it. Fails when a file
/// cannot be read or stored. Each file belongs to `team`, the task's (None:
/// the default team's), so another team's keys neither list nor read it.
pub(crate) async fn store_output_files(
    shared: &Shared,
    mut output: Value,
    files: &[OutputFile],
    team: Option<&str>,
) -> Result<Value, OutputFileError> {
    for file in files {
        let Some(path) = file.path.as_deref().filter(|p| !p.is_empty()) else {
            // Already remote: only make sure no `path` key is left.
            if let Some(Value::Object(map)) = output.pointer_mut(&file.pointer) {
                map.remove("path");
            }
            continue;
        };
        let filename = file
            .filename
            .clone()
            .filter(|f| !f.is_empty())
            .or_else(|| {
                Path::new(path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "file".into());
        let content_type = file
            .content_type
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| infsh_core::media::content_type_for(&filename).to_string());
        let record = shared
            .files
            .import(Path::new(path), &filename, &content_type)
            .await
            .map_err(|source| OutputFileError {
                pointer: file.pointer.clone(),
                source,
            })?;
        if let Some(team) = team {
            let access = FileAccess {
                team: Some(team.to_string()),
                public: false,
            };
            shared
                .store
                .set_file_access(&record.id, &access)
                .await
                .map_err(|source| OutputFileError {
                    pointer: file.pointer.clone(),
                    source,
                })?;
        }
        let value = json!({
            "uri": shared.file_uri(&record.id),
            "filename": record.filename,
            "content_type": record.content_type,
            "size": record.size,
        });
        if !replace_at(&mut output, &file.pointer, value) {
            tracing::warn!(pointer = %file.pointer, "output file pointer does not exist in the output");
        }
    }
    Ok(output)
}

/// For streamed snapshots (not copied: they are replaced by the next one):
/// drops the local `path` of every file object.
pub(crate) fn strip_local_paths(output: &mut Value, files: &[OutputFile]) {
    for file in files {
        if let Some(Value::Object(map)) = output.pointer_mut(&file.pointer) {
            map.remove("path");
        }
    }
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() {
        "/"
    } else {
        pointer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_file_error_names_the_pointer_and_keeps_the_store_error() {
        use std::error::Error;
        let e = OutputFileError {
            pointer: String::new(),
            source: infsh_store::StoreError::NotFound {
                kind: "file",
                id: "x".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "cannot store output file at /: no such file \"x\""
        );
        let cause = e
            .source()
            .and_then(|s| s.downcast_ref::<infsh_store::StoreError>());
        assert!(cause.is_some_and(infsh_store::StoreError::is_not_found));
    }

    #[test]
    fn pointers() {
        let mut v =
            json!({"files": [{"path": "/x"}, {"path": "/y"}], "nested": {"file": {"path": "/z"}}});
        assert!(replace_at(&mut v, "/files/1", json!("B")));
        assert!(!replace_at(&mut v, "/missing/0", json!("C")));
        let files = vec![OutputFile {
            pointer: "/nested/file".into(),
            path: Some("/z".into()),
            uri: None,
            filename: None,
            content_type: None,
            size: None,
        }];
        strip_local_paths(&mut v, &files);
        assert_eq!(
            v,
            json!({"files": [{"path": "/x"}, "B"], "nested": {"file": {}}})
        );
        assert!(replace_at(&mut v, "", json!(1)));
        assert_eq!(v, json!(1));
    }
}
