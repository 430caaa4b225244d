//! The environment key: what an environment was built from, hashed.
//!
//! Two builds with the same key are interchangeable, so the key covers
//! everything that changes the result: the requirements file's bytes, the base
//! interpreter (implementation, full version, machine, and its real path, since
//! a venv links to the interpreter it was made from), inf.yml's `kernel:`, and [`ENV_FORMAT_VERSION`],
//! bumped whenever this crate changes how environments are built.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::EnvError;

/// Bump when the layout or contents of built environments change, so old ones
/// are not reused.
pub const ENV_FORMAT_VERSION: &str = "1";

/// Prints the interpreter's real executable path, its prefix, then one identity line.
const PROBE: &str = "import sys, platform\n\
print(sys.executable)\n\
print(sys.prefix)\n\
print(platform.python_implementation(), sys.version.replace('\\n', ' '), platform.machine(), sep=' | ')\n";

/// What the base interpreter said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// `sys.executable`: the interpreter behind a shim (pyenv, asdf) when `python3` is one.
    pub executable: PathBuf,
    /// `sys.prefix`: the venv folder when the interpreter is a venv's.
    pub prefix: PathBuf,
    /// `CPython | 3.11.7 (main, ...) [GCC 11.4.0] | x86_64`.
    pub identity: String,
}

/// Runs `python` to learn its real path and identity.
pub async fn probe_interpreter(python: &Path) -> Result<Interpreter, EnvError> {
    let bad = |reason: String| EnvError::BadPython {
        python: python.to_path_buf(),
        reason,
    };
    let out = tokio::process::Command::new(python)
        .args(["-I", "-c", PROBE])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| bad(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(bad(format!(
            "{}: {}",
            out.status,
            stderr.lines().last().unwrap_or("").trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    match (lines.next(), lines.next(), lines.next()) {
        (Some(exe), Some(prefix), Some(identity)) if !exe.trim().is_empty() => Ok(Interpreter {
            executable: PathBuf::from(exe.trim()),
            prefix: PathBuf::from(prefix.trim()),
            identity: identity.trim().to_string(),
        }),
        _ => Err(bad(format!(
            "unexpected answer to a version probe: {stdout:?}"
        ))),
    }
}

/// The full hex sha256 key of an environment; `kernel` is inf.yml's
/// `kernel:` (empty when none), so asking for another Python never reuses an
/// environment built for the previous one.
pub fn env_key(requirements: &[u8], interpreter: &Interpreter, kernel: &str) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields so no two different inputs hash the same bytes.
    // The kernel comes last and only when there is one, so environments of
    // apps without a kernel keep the keys they had before kernels counted.
    let kernel_field = (!kernel.is_empty()).then_some(kernel.as_bytes());
    for field in [
        ENV_FORMAT_VERSION.as_bytes(),
        interpreter.identity.as_bytes(),
        interpreter.executable.as_os_str().as_encoded_bytes(),
        requirements,
    ]
    .into_iter()
    .chain(kernel_field)
    {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    hex::encode(h.finalize())
}

/// The directory name of an environment: the first 16 hex digits of its key.
pub fn short_key(key: &str) -> &str {
    &key[..16.min(key.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interp(id: &str, exe: &str) -> Interpreter {
        Interpreter {
            executable: PathBuf::from(exe),
            prefix: PathBuf::from("/usr"),
            identity: id.to_string(),
        }
    }

    #[test]
    fn key_is_stable_hex() {
        let i = interp("CPython | 3.11.7 | x86_64", "/usr/bin/python3.11");
        let k = env_key(b"inferencesh\n", &i, "");
        assert_eq!(k.len(), 64);
        assert!(k.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(k, env_key(b"inferencesh\n", &i, ""));
        assert_eq!(short_key(&k).len(), 16);
    }

    #[test]
    fn key_changes_with_each_input() {
        let i = interp("CPython | 3.11.7 | x86_64", "/usr/bin/python3.11");
        let base = env_key(b"torch\n", &i, "");
        assert_ne!(base, env_key(b"torch\nnumpy\n", &i, ""));
        assert_ne!(base, env_key(b"", &i, ""));
        assert_ne!(
            base,
            env_key(
                b"torch\n",
                &interp("CPython | 3.11.8 | x86_64", "/usr/bin/python3.11"),
                ""
            )
        );
        assert_ne!(
            base,
            env_key(
                b"torch\n",
                &interp("CPython | 3.11.7 | x86_64", "/opt/py/bin/python3.11"),
                ""
            )
        );
    }

    #[test]
    fn key_includes_the_kernel() {
        let i = interp("CPython | 3.11.7 | x86_64", "/usr/bin/python3.11");
        let none = env_key(b"torch\n", &i, "");
        let py311 = env_key(b"torch\n", &i, "python-3.11");
        assert_ne!(none, py311);
        assert_ne!(py311, env_key(b"torch\n", &i, "python-3.12"));
        assert_eq!(py311, env_key(b"torch\n", &i, "python-3.11"));
    }

    #[test]
    fn fields_do_not_run_together() {
        // Moving bytes from one field into the next must change the key.
        let a = env_key(b"xtorch", &interp("CPython", "/p"), "");
        let b = env_key(b"torch", &interp("CPythonx", "/p"), "");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn probes_a_real_interpreter() {
        let Ok(python) = which::which("python3").or_else(|_| which::which("python")) else {
            return;
        };
        let i = probe_interpreter(&python).await.unwrap();
        assert!(i.executable.is_absolute(), "{i:?}");
        assert!(i.identity.contains('3'), "{i:?}");
    }

    #[tokio::test]
    async fn a_missing_interpreter_is_a_clear_error() {
        let err = probe_interpreter(Path::new("/nonexistent/python3"))
            .await
            .unwrap_err();
        assert!(matches!(err, EnvError::BadPython { .. }), "{err}");
    }
}
