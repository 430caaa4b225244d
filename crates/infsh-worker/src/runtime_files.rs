//! The Python worker runtime, embedded in the binary by `build.rs` and
//! extracted on demand to `<state_dir>/runtime/<content hash>/infsh_worker/`,
//! the folder put first on the worker's `PYTHONPATH`.
//!
//! The folder name is a hash of the contents, so a new build never runs an
//! old runtime and several hosts (or several starts at once) can share one
//! state folder: each extracts into a private temporary folder and renames it
//! into place; whoever renames first wins, the others find it there.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

include!(concat!(env!("OUT_DIR"), "/runtime_files.rs"));

/// Name of the Python package, i.e. of the folder holding the files.
pub const PACKAGE: &str = "infsh_worker";

/// A short hex digest of every file's name and contents.
pub fn content_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut hasher = Sha256::new();
        for (name, contents) in RUNTIME_FILES {
            // Lengths first, so ("ab", "c") and ("a", "bc") differ.
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update((contents.len() as u64).to_le_bytes());
            hasher.update(contents.as_bytes());
        }
        hex::encode(&hasher.finalize()[..8])
    })
}

/// Makes sure the runtime is extracted under `state_dir` and returns the
/// folder to put on `PYTHONPATH` (the one that contains `infsh_worker/`).
/// Blocking file I/O: call it from `spawn_blocking`.
pub fn extract(state_dir: &Path) -> io::Result<PathBuf> {
    let runtime_root = state_dir.join("runtime");
    let target = runtime_root.join(content_hash());
    if target.join(PACKAGE).is_dir() {
        return Ok(target);
    }
    std::fs::create_dir_all(&runtime_root)?;

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = runtime_root.join(format!(
        ".tmp-{}-{}-{}",
        content_hash(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_tree(&tmp).and_then(|()| std::fs::rename(&tmp, &target));
    match result {
        Ok(()) => Ok(target),
        // Someone else renamed theirs into place first (ENOTEMPTY/EEXIST):
        // same contents by construction, so use theirs.
        Err(_) if target.join(PACKAGE).is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(target)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn write_tree(tmp: &Path) -> io::Result<()> {
    let package = tmp.join(PACKAGE);
    std::fs::create_dir_all(&package)?;
    for (name, contents) in RUNTIME_FILES {
        std::fs::write(package.join(name), contents)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_once_and_concurrently() {
        let state = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| extract(state.path()))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        assert!(dirs.iter().all(|d| d == &dirs[0]));
        let package = dirs[0].join(PACKAGE);
        for (name, contents) in RUNTIME_FILES {
            assert_eq!(
                &std::fs::read_to_string(package.join(name)).unwrap(),
                contents
            );
        }
        // No temporary folders left behind.
        let leftovers: Vec<_> = std::fs::read_dir(state.path().join("runtime"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // Present: a second call does nothing and returns the same folder.
        assert_eq!(extract(state.path()).unwrap(), dirs[0]);
    }

    #[test]
    fn table_is_sorted_python_files() {
        let names: Vec<_> = RUNTIME_FILES.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(names.iter().all(|n| n.ends_with(".py")));
        assert_eq!(content_hash().len(), 16);
    }
}
