//! `--output-dir`: where a run's output files are copied (local) or
//! downloaded (remote). Both paths create the folder the same way and never
//! overwrite a file already there.

use std::path::{Path, PathBuf};

use crate::exit::{ExitCode, Failure};

/// Creates the `--output-dir` folder (and its parents).
pub fn create(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Failure::new(
            ExitCode::Internal,
            format!("--output-dir: cannot create {}: {e}", dir.display()),
        )
    })
}

/// `out.png`, then `out-1.png`, `out-2.png`... so two outputs never overwrite each other.
pub fn unique_target(dir: &Path, name: &str) -> PathBuf {
    let candidate = dir.join(name);
    if !candidate.exists() {
        return candidate;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_string(), format!(".{ext}")),
        _ => (name.to_string(), String::new()),
    };
    (1..)
        .map(|n| dir.join(format!("{stem}-{n}{ext}")))
        .find(|p| !p.exists())
        .expect("an unused name exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_target_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"x").unwrap();
        std::fs::write(dir.path().join("a-1.png"), b"x").unwrap();
        assert_eq!(
            unique_target(dir.path(), "a.png"),
            dir.path().join("a-2.png")
        );
        assert_eq!(unique_target(dir.path(), "b"), dir.path().join("b"));
    }

    #[test]
    fn create_makes_parents_and_says_which_flag_failed() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create(&nested).unwrap();
        assert!(nested.is_dir());
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = create(&file.join("sub")).unwrap_err();
        assert_eq!(err.code, ExitCode::Internal);
        assert!(
            err.message.starts_with(&format!(
                "--output-dir: cannot create {}: ",
                file.join("sub").display()
            )),
            "{}",
            err.message
        );
    }
}
