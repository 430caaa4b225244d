//! The test interpreter: a Python with the `inferencesh` SDK and Pillow,
//! which `scripts/dev-python.sh` builds in the repository's `.venv`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::paths::repo_root;

/// `INFSH_TEST_PYTHON` if set, else the repository's `.venv/bin/python`;
/// panics, saying how to get one, when there is neither.
pub fn python() -> PathBuf {
    choose(
        std::env::var_os("INFSH_TEST_PYTHON"),
        &repo_root().join(".venv/bin/python"),
    )
}

fn choose(from_env: Option<OsString>, venv: &Path) -> PathBuf {
    if let Some(python) = from_env {
        return PathBuf::from(python);
    }
    assert!(
        venv.exists(),
        "no test interpreter: INFSH_TEST_PYTHON is not set and {} does not exist; \
         run scripts/dev-python.sh (it builds .venv and prints the interpreter to \
         export as INFSH_TEST_PYTHON)",
        venv.display()
    );
    venv.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_wins_then_the_venv() {
        let venv = std::env::current_exe().unwrap();
        assert_eq!(
            choose(Some("/opt/py/bin/python3".into()), &venv),
            PathBuf::from("/opt/py/bin/python3")
        );
        assert_eq!(choose(None, &venv), venv);
    }

    #[test]
    #[should_panic(
        expected = "no test interpreter: INFSH_TEST_PYTHON is not set and /nonexistent/.venv/bin/python does not exist; run scripts/dev-python.sh"
    )]
    fn without_either_the_panic_says_how_to_get_one() {
        choose(None, Path::new("/nonexistent/.venv/bin/python"));
    }
}
