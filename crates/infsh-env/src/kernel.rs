//! inf.yml `kernel: python-3.X`: which Python an app asks for, and getting
//! that interpreter from uv (found installed, else installed by uv).
//!
//! Without uv nothing can provide another interpreter, so a kernel that
//! differs from the base interpreter is an error rather than ignored.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::EnvError;

/// The Python version (`3.11`) an inf.yml kernel asks for; `None` for kernels
/// that are not Python's (`node-22`, or none at all).
pub fn python_kernel_version(kernel: Option<&str>) -> Result<Option<String>, EnvError> {
    let Some(kernel) = kernel else {
        return Ok(None);
    };
    let Some(version) = kernel.strip_prefix("python-") else {
        return Ok(None);
    };
    let mut parts = version.split('.');
    let well_formed = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some("3"), Some(minor), None)
            if !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
    );
    if well_formed {
        Ok(Some(version.to_string()))
    } else {
        Err(EnvError::BadKernel {
            kernel: kernel.to_string(),
        })
    }
}

/// `3.11` out of a probe identity `CPython | 3.11.7 (main, ...) | x86_64`.
pub(crate) fn identity_version(identity: &str) -> Option<String> {
    let full = identity.split(" | ").nth(1)?.split_whitespace().next()?;
    let mut parts = full.split('.');
    Some(format!("{}.{}", parts.next()?, parts.next()?))
}

/// The interpreter uv has for `version`, installing it first when none is
/// found (uv downloads it; refused or impossible offline -> a clear error).
pub(crate) async fn uv_python(uv: &Path, kernel: &str, version: &str) -> Result<PathBuf, EnvError> {
    if let Ok(found) = uv_find(uv, version).await {
        return Ok(found);
    }
    let install = uv_command(uv)
        .args(["python", "install", version])
        .output()
        .await
        .map_err(|e| EnvError::io("cannot run", uv, e))?;
    if !install.status.success() {
        return Err(EnvError::KernelUnavailable {
            kernel: kernel.to_string(),
            version: version.to_string(),
            reason: last_line(&install.stderr),
        });
    }
    uv_find(uv, version)
        .await
        .map_err(|reason| EnvError::KernelUnavailable {
            kernel: kernel.to_string(),
            version: version.to_string(),
            reason,
        })
}

async fn uv_find(uv: &Path, version: &str) -> Result<PathBuf, String> {
    let out = uv_command(uv)
        .args(["python", "find", version])
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !path.is_empty() {
        Ok(PathBuf::from(path))
    } else {
        Err(last_line(&out.stderr))
    }
}

fn uv_command(uv: &Path) -> Command {
    let mut c = Command::new(uv);
    c.env("NO_COLOR", "1")
        .env("UV_NO_PROGRESS", "1")
        // An activated venv of the caller must not be what `find` answers.
        .env_remove("VIRTUAL_ENV")
        .stdin(std::process::Stdio::null());
    c
}

/// uv's own error line (its `error: ...`), else the last line it printed.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| l.starts_with("error:"))
        .or(lines.last())
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| "uv gave no reason".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_kernels_name_a_version() {
        assert_eq!(
            python_kernel_version(Some("python-3.11"))
                .unwrap()
                .as_deref(),
            Some("3.11")
        );
        assert_eq!(
            python_kernel_version(Some("python-3.12"))
                .unwrap()
                .as_deref(),
            Some("3.12")
        );
        assert_eq!(python_kernel_version(Some("node-22")).unwrap(), None);
        assert_eq!(python_kernel_version(None).unwrap(), None);
    }

    #[test]
    fn a_malformed_python_kernel_is_refused() {
        for bad in [
            "python-abc",
            "python-3",
            "python-3.x",
            "python-2.7",
            "python-3.11.2",
        ] {
            let err = python_kernel_version(Some(bad)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("inf.yml kernel: {bad} is not a Python version: write python-3.X, e.g. python-3.11"),
            );
        }
    }

    #[test]
    fn the_version_comes_out_of_a_probe_identity() {
        assert_eq!(
            identity_version("CPython | 3.11.7 (main, Dec  1 2023) [GCC 11.4.0] | x86_64")
                .as_deref(),
            Some("3.11")
        );
        assert_eq!(identity_version("CPython"), None);
    }

    #[test]
    fn uv_error_lines_are_kept_short() {
        assert_eq!(
            last_line(b"warning: x\nerror: No download found for request: cpython-3.99\n"),
            "No download found for request: cpython-3.99"
        );
        assert_eq!(last_line(b"something\n"), "something");
        assert_eq!(last_line(b""), "uv gave no reason");
    }
}
