//! Shared helpers for the end-to-end tests: they run the real `infsh`
//! binary against the fixture apps in `tests/fixtures/apps/` with a real
//! Python interpreter (the one `scripts/dev-python.sh` builds, or
//! `INFSH_TEST_PYTHON`).

#![allow(dead_code)]

pub mod server;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// The interpreter with `inferencesh` and Pillow installed.
pub fn python() -> PathBuf {
    if let Ok(python) = std::env::var("INFSH_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "no test interpreter at {}: run scripts/dev-python.sh (or set INFSH_TEST_PYTHON)",
        python.display()
    );
    python
}

pub fn fixture(name: &str) -> PathBuf {
    let path = repo_root().join("tests/fixtures/apps").join(name);
    assert!(path.is_dir(), "missing fixture app {}", path.display());
    path
}

pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// A sandbox for one test: its own cache folder, so tests never share state.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `infsh` with the test interpreter (no environment build) and a private cache.
    pub fn infsh(&self) -> Command {
        let mut cmd = self.infsh_without_python();
        cmd.env("INFSH_PYTHON", python());
        cmd
    }

    /// `infsh` that builds app environments itself.
    pub fn infsh_without_python(&self) -> Command {
        let mut cmd = Command::cargo_bin("infsh").expect("infsh binary");
        cmd.env("INFSH_CACHE_DIR", self.path().join("cache"))
            .env_remove("INFSH_PYTHON")
            .env_remove("INFSH_LOG")
            .env_remove("INFSH_API_URL")
            .env_remove("INFSH_API_KEY")
            .env("NO_COLOR", "1")
            .timeout(Duration::from_secs(120));
        cmd
    }

    pub fn std_infsh(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("infsh"));
        cmd.env("INFSH_CACHE_DIR", self.path().join("cache"))
            .env("INFSH_PYTHON", python())
            .env_remove("INFSH_LOG")
            .env_remove("INFSH_API_URL")
            .env_remove("INFSH_API_KEY")
            .env("NO_COLOR", "1");
        cmd
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn json_stdout(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(output),
            stderr(output)
        )
    })
}

/// Asserts the exit status, showing both streams when it differs.
pub fn assert_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "unexpected exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

/// True once `pid` is gone (or a zombie nobody reaped yet).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .map(|rest| rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}
