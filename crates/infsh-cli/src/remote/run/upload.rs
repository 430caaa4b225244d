//! Local `File` inputs of a remote run: each local path is uploaded
//! (`POST /v1/files`, then a PUT to the signed URL) and replaced by the
//! uploaded file's `uri` before the run is submitted.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::exit::Failure;
use crate::remote::client::Remote;
use crate::remote::errors::RemoteError;
use crate::ui::Ui;

/// Uploads every local-path `File` value and puts its `uri` in its place.
pub async fn upload_local_files(
    remote: &Remote,
    ui: &Arc<Ui>,
    input: &mut Value,
    pointers: &[String],
) -> Result<(), Failure> {
    let phase = ui.phase("upload");
    let mut count = 0usize;
    let mut bytes = 0u64;
    for pointer in pointers {
        let Some(value) = input.pointer_mut(pointer) else {
            continue;
        };
        bytes += local_size(value);
        let result = match value {
            Value::String(path) => match remote.upload(Path::new(path.as_str())).await {
                Ok(uri) => {
                    *value = Value::String(uri);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Value::Object(map) => upload_in_object(remote, map).await,
            _ => Ok(()),
        };
        if let Err(err) = result {
            phase.fail("");
            return Err(err.into_failure());
        }
        count += 1;
    }
    // What the phase timed: sending these bytes to the server.
    phase.finish(&format!(
        "{count} file{}, {} sent",
        if count == 1 { "" } else { "s" },
        human_bytes(bytes)
    ));
    Ok(())
}

/// The size of the local file a `File` value names (0 if unreadable: the
/// upload then fails with its own message).
fn local_size(value: &Value) -> u64 {
    let path = match value {
        Value::String(path) => Some(path.as_str()),
        Value::Object(map) => ["path", "uri"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str)),
        _ => None,
    };
    path.and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len())
}

fn human_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{:.1} MiB", b / KIB / KIB)
    }
}

/// `{"path": "/local"}` or `{"uri": "/local"}` → `{"uri": "<uploaded>"}`, other keys kept.
async fn upload_in_object(
    remote: &Remote,
    map: &mut Map<String, Value>,
) -> Result<(), RemoteError> {
    let local = ["path", "uri"].iter().find_map(|k| {
        map.get(*k)
            .and_then(Value::as_str)
            .filter(|s| !infsh_core::files::is_remote(s) && Path::new(s).is_file())
            .map(str::to_string)
    });
    if let Some(path) = local {
        let uri = remote.upload(Path::new(&path)).await?;
        map.remove("path");
        map.insert("uri".into(), Value::String(uri));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn upload_sizes_read_as_people_write_them() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(12_800), "12.5 KiB");
        assert_eq!(super::human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
