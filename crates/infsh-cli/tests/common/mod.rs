//! Shared helpers for the end-to-end tests: they run the real `infsh`
//! binary against the fixture apps in `tests/fixtures/apps/` with a real
//! Python interpreter. The interpreter, fixture paths, waits and process
//! checks come from `infsh-testkit`, re-exported here.

#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub mod cut_proxy;
pub mod engine_proc;
pub mod fleet;
pub mod server;
pub mod throwaway_pg;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
pub use infsh_testkit::{copy_dir, example, fixture, process_gone, python, wait_for};
use serde_json::Value;

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

    /// `infsh app run APP ARGS...`, run to its end.
    pub fn app_run(&self, app: impl AsRef<OsStr>, args: &[&str]) -> Output {
        self.infsh()
            .args(["app", "run"])
            .arg(app)
            .args(args)
            .output()
            .unwrap()
    }

    /// `infsh --json app run APP ARGS...`, run to its end.
    pub fn app_run_json(&self, app: impl AsRef<OsStr>, args: &[&str]) -> Output {
        self.infsh()
            .args(["--json", "app", "run"])
            .arg(app)
            .args(args)
            .output()
            .unwrap()
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

/// The zygote worker `pid` was forked from: its parent
/// (`/proc/PID/stat`), asserted to be a zygote (started with
/// `INFSH_ZYGOTE=1`).
pub fn zygote_of_worker(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    let parent: u32 = rest.split_whitespace().nth(1).unwrap().parse().unwrap();
    let environ = std::fs::read(format!("/proc/{parent}/environ")).unwrap_or_default();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|var| var == b"INFSH_ZYGOTE=1"),
        "worker {pid} was not forked from a zygote (its parent: {parent})"
    );
    parent
}
