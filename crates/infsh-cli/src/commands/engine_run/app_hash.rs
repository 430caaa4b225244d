//! The content hash an engine registers for each app folder: SHA-256 over
//! every file's relative path and bytes, in path order. Two engines with
//! the same code register the same hash; the API node shows a mismatch as
//! a conflict. Caches and environments inside the folder are skipped, so a
//! built `.venv` or `__pycache__` does not make two copies differ.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Folder names never hashed.
const SKIPPED: [&str; 6] = [
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "node_modules",
    ".pytest_cache",
];

pub fn app_hash(root: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    collect(root, root, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for relative in files {
        let bytes = std::fs::read(root.join(&relative))?;
        hasher.update(relative.as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !SKIPPED.iter().any(|s| name == *s) {
                collect(root, &entry.path(), out)?;
            }
        } else if kind.is_file() && !name.to_string_lossy().ends_with(".pyc") {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap_or(&path);
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_follows_the_code_not_caches_or_the_folder_name() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for dir in [a.path(), b.path()] {
            std::fs::write(dir.join("inference.py"), "x = 1\n").unwrap();
            std::fs::create_dir(dir.join("lib")).unwrap();
            std::fs::write(dir.join("lib/util.py"), "y = 2\n").unwrap();
        }
        std::fs::create_dir(a.path().join("__pycache__")).unwrap();
        std::fs::write(a.path().join("__pycache__/x.pyc"), "junk").unwrap();
        let hash = app_hash(a.path()).unwrap();
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, app_hash(b.path()).unwrap());
        std::fs::write(b.path().join("lib/util.py"), "y = 3\n").unwrap();
        assert_ne!(hash, app_hash(b.path()).unwrap());
    }
}
