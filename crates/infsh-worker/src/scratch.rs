//! The per-call scratch folder: `<spill folder>/scratch/<call id>/`, where
//! the worker points Python's `tempfile` during a call
//! (`python/infsh_worker/scratch.py`). Apps write their output files there;
//! the folder is removed once the host is done with the call's outcome (its
//! output files copied or stored), or at once when the call fails, so a
//! long-running server leaves no folder per call behind. The whole spill
//! folder goes with the worker.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use infsh_protocol::CallId;

/// The folder of call `id` under a worker's spill folder. Same rule as
/// `scratch.folder_name` in Python: letters, digits, `-`, `_` and `.` kept,
/// anything else `_`, and a leading `.` (or nothing) prefixed with `c`.
pub fn call_folder(spill_dir: &Path, id: &CallId) -> PathBuf {
    let mut name: String = id
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, 'c');
    }
    spill_dir.join("scratch").join(name)
}

/// Removes a call's scratch folder, if the call made one.
pub fn remove(folder: &Path) {
    match std::fs::remove_dir_all(folder) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(folder = %folder.display(), error = %e, "could not remove a call's scratch folder")
        }
    }
}

/// Held by a [`crate::CallOutcome`]: the call's scratch folder, removed
/// when the last clone of the outcome is dropped. Copy or store the
/// outcome's files before dropping it.
#[derive(Debug, Clone)]
pub struct Scratch(Arc<Folder>);

#[derive(Debug)]
struct Folder(PathBuf);

impl Scratch {
    pub(crate) fn new(folder: PathBuf) -> Scratch {
        Scratch(Arc::new(Folder(folder)))
    }

    /// The folder (it exists only if the call wrote a temporary file).
    pub fn path(&self) -> &Path {
        &self.0 .0
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        remove(&self.0);
    }
}

/// Outcomes compare by what they say, not by the folder they hold.
impl PartialEq for Scratch {
    fn eq(&self, _other: &Scratch) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_keep_safe_characters_only() {
        let spill = Path::new("/s");
        let folder = |id: &str| call_folder(spill, &CallId::new(id));
        assert_eq!(folder("task-1_a.b"), Path::new("/s/scratch/task-1_a.b"));
        assert_eq!(folder("../x/y"), Path::new("/s/scratch/c.._x_y"));
        assert_eq!(folder(""), Path::new("/s/scratch/c"));
        assert_eq!(folder("é 1"), Path::new("/s/scratch/__1"));
    }

    #[test]
    fn the_folder_goes_with_the_last_holder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("scratch/c1");
        std::fs::create_dir_all(folder.join("sub")).unwrap();
        std::fs::write(folder.join("sub/out.png"), b"x").unwrap();
        let scratch = Scratch::new(folder.clone());
        let clone = scratch.clone();
        drop(scratch);
        assert!(folder.exists(), "a clone still holds it");
        drop(clone);
        assert!(!folder.exists());
        // A call that wrote nothing has no folder: dropping is quiet.
        drop(Scratch::new(dir.path().join("scratch/never-made")));
    }
}
