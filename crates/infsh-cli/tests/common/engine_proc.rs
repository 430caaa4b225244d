//! [`EngineProc`]: an `infsh engine run` process for the end-to-end fleet
//! tests (`fleet_engines.rs` on SQLite, `fleet_postgres.rs` on PostgreSQL).

use std::path::PathBuf;
use std::process::{Child, Command as StdCommand, ExitStatus, Stdio};
use std::time::Duration;

use infsh_testkit::{copy_fixtures, processes_in};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::server::{ServeSandbox, Server};
use super::{python, wait_for};

/// An `infsh engine run` process with its own copy of the `slow` fixture
/// (or others: [`EngineProc::start_hosting`]);
/// killed (and its app processes with it) on drop.
pub struct EngineProc {
    pub child: Option<Child>,
    pub apps_dir: PathBuf,
    log_path: PathBuf,
}

impl EngineProc {
    pub fn start(
        sb: &ServeSandbox,
        server: &Server,
        name: &str,
        key: &str,
        extra: &[&str],
    ) -> Self {
        Self::start_hosting(sb, server, name, key, &["slow"], extra)
    }

    /// An engine hosting copies of these fixture apps.
    pub fn start_hosting(
        sb: &ServeSandbox,
        server: &Server,
        name: &str,
        key: &str,
        fixtures: &[&str],
        extra: &[&str],
    ) -> Self {
        Self::spawn(sb, &server.url, name, name, key, fixtures, extra)
    }

    /// An engine named `name` linked to the API node at `url` (a node, or a
    /// proxy in front of one), its apps, data and log in `sb/dir` (another
    /// `dir` for each life of an engine restarted under one name).
    pub fn spawn(
        sb: &ServeSandbox,
        url: &str,
        name: &str,
        dir: &str,
        key: &str,
        fixtures: &[&str],
        extra: &[&str],
    ) -> Self {
        Self::spawn_in(sb, url, name, dir, key, Some(fixtures), extra)
    }

    /// An engine started without `--apps`: it hosts only the deployed
    /// versions it fetches (into `sb/dir/data/versions`, kept across its
    /// restarts under the same `dir`).
    pub fn spawn_fetching(
        sb: &ServeSandbox,
        url: &str,
        name: &str,
        dir: &str,
        key: &str,
        extra: &[&str],
    ) -> Self {
        Self::spawn_in(sb, url, name, dir, key, None, extra)
    }

    fn spawn_in(
        sb: &ServeSandbox,
        url: &str,
        name: &str,
        dir: &str,
        key: &str,
        fixtures: Option<&[&str]>,
        extra: &[&str],
    ) -> Self {
        let dir = sb.path().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = StdCommand::new(assert_cmd::cargo::cargo_bin("infsh"));
        command.args(["engine", "run", "--server", url, "--name", name]);
        // Its workers run under this folder: the one looked in at drop.
        let apps_dir = match fixtures {
            Some(fixtures) => {
                let apps_dir = dir.join("apps");
                copy_fixtures(&apps_dir, fixtures);
                command.arg("--apps").arg(&apps_dir);
                apps_dir
            }
            None => dir.clone(),
        };
        let log_path = dir.join("engine.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = command
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--python")
            .arg(python())
            .args(["--shutdown-grace", "2", "--cancel-grace", "1"])
            .args(extra)
            .env("INFSH_ENGINE_KEY", key)
            .env("INFSH_CACHE_DIR", sb.path().join("cache"))
            .env("INFSH_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("INFSH_ENGINE_KEYS")
            .env_remove("INFSH_API_KEYS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn infsh engine run");
        EngineProc {
            child: Some(child),
            apps_dir: std::fs::canonicalize(&apps_dir).unwrap(),
            log_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let mut status = None;
        wait_for(limit, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            self.child = None;
        }
        status
    }
}

impl Drop for EngineProc {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            if self.wait_exit(Duration::from_secs(15)).is_none() {
                self.kill9();
            }
        }
        // A kill -9 leaves its workers to notice alone; never leave them.
        wait_for(Duration::from_secs(10), || {
            processes_in(&self.apps_dir).is_empty()
        });
        for (pid, _) in processes_in(&self.apps_dir) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}
