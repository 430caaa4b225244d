//! Output files: every `File` an app returned with a local `path` (the
//! worker lists them in `done.files`, `docs/protocol.md`) is put into the
//! [`infsh_store::FileStore`] and the output rewritten at its JSON pointer to
//! `{"uri", "filename", "content_type", "size"}`, the uri being the server's
//! own `/files/{id}` URL. Local paths never reach a client.
//!
//! A file in the call's scratch folder is the call's own and is deleted with
//! the folder anyway, so it is moved (renamed) into a local store instead of
//! copied ([`infsh_store::FileStore::adopt`]); a file anywhere else (the
//! app's folder, a cache) may be read again and is copied.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use infsh_protocol::{OutputFile, Payload};
use infsh_store::{FileAccess, Placed};
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

/// `path` resolved (its folder's links and `..` followed), when it lies
/// inside `scratch` (resolved too), so neither `..` nor a linked folder
/// leads out of it. None when it does not, or either cannot be resolved:
/// the file is then copied, which is always safe.
async fn in_scratch(path: &Path, scratch: Option<&Path>) -> Option<PathBuf> {
    let scratch = tokio::fs::canonicalize(scratch?).await.ok()?;
    let name = path.file_name()?;
    let resolved = tokio::fs::canonicalize(path.parent()?)
        .await
        .ok()?
        .join(name);
    resolved.starts_with(scratch).then_some(resolved)
}

/// Stores the output's local files and rewrites it. Fails when a file
/// cannot be read or stored. Each file belongs to `team`, the task's (None:
/// the default team's), so another team's keys neither list nor read it.
/// Files inside `scratch` (the call's scratch folder) are moved, not
/// copied, where the store allows it.
pub(crate) async fn store_output_files(
    shared: &Shared,
    mut output: Payload,
    files: &[OutputFile],
    team: Option<&str>,
    scratch: Option<&Path>,
) -> Result<Payload, OutputFileError> {
    if files.is_empty() {
        // Nothing to rewrite: the worker's text goes on as it is.
        return Ok(output);
    }
    let value = output.value_mut();
    // A scratch file named twice in the output (by its resolved path) was
    // moved the first time: later mentions copy it from where it went.
    let mut moved: HashMap<PathBuf, PathBuf> = HashMap::new();
    for file in files {
        let Some(path) = file.path.as_deref().filter(|p| !p.is_empty()) else {
            // Already remote: only make sure no `path` key is left.
            if let Some(Value::Object(map)) = value.pointer_mut(&file.pointer) {
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
        let source = Path::new(path);
        let stored = match in_scratch(source, scratch).await {
            Some(resolved) => match moved.get(&resolved) {
                Some(now_at) => shared.files.import(now_at, &filename, &content_type).await,
                None => {
                    let adopted = shared.files.adopt(source, &filename, &content_type).await;
                    adopted.map(|(record, placed)| {
                        if placed == Placed::Moved {
                            if let Ok(Some(now_at)) = shared.files.path_of(&record.id) {
                                moved.insert(resolved, now_at);
                            }
                        }
                        record
                    })
                }
            },
            None => shared.files.import(source, &filename, &content_type).await,
        };
        let record = stored.map_err(|source| OutputFileError {
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
        let pointed = json!({
            "uri": shared.file_uri(&record.id),
            "filename": record.filename,
            "content_type": record.content_type,
            "size": record.size,
        });
        if !replace_at(value, &file.pointer, pointed) {
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

    #[tokio::test]
    async fn only_files_resolved_inside_the_scratch_folder_are_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch/call-1");
        std::fs::create_dir_all(scratch.join("sub")).unwrap();
        std::os::unix::fs::symlink(dir.path(), scratch.join("out")).unwrap();
        let s = Some(scratch.as_path());
        let real = std::fs::canonicalize(&scratch).unwrap();
        assert_eq!(
            in_scratch(&scratch.join("a.png"), s).await,
            Some(real.join("a.png"))
        );
        // Another spelling of the same file resolves to the same path.
        assert_eq!(
            in_scratch(&scratch.join("sub/../a.png"), s).await,
            Some(real.join("a.png"))
        );
        assert!(in_scratch(&scratch.join("sub/a.png"), s).await.is_some());
        assert!(
            in_scratch(&scratch.join("../a.png"), s).await.is_none(),
            ".."
        );
        assert!(in_scratch(&scratch.join("sub/../../a.png"), s)
            .await
            .is_none());
        assert!(
            in_scratch(&scratch.join("out/a.png"), s).await.is_none(),
            "a linked folder"
        );
        assert!(in_scratch(&dir.path().join("a.png"), s).await.is_none());
        assert!(in_scratch(&scratch.join("missing/a.png"), s)
            .await
            .is_none());
        assert!(in_scratch(&scratch.join("a.png"), None).await.is_none());
        assert!(in_scratch(
            &dir.path().join("gone/a.png"),
            Some(&dir.path().join("gone"))
        )
        .await
        .is_none());
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
