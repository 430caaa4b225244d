//! `infsh serve` for end-to-end tests: a sandbox holding copies of fixture
//! apps, a data folder and a cache; a [`Server`] guard that starts the real
//! binary on port 0, reads its address from the `--json` line, waits for
//! `GET /health`, and on drop stops it and checks that no process of the
//! apps (workers, their children) is left behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::{fixture, json_stdout, python, stderr, wait_for};

/// The shared test key of servers started with [`ServeSandbox::start_with_key`].
pub const TEST_KEY: &str = "test-key";

/// A folder with `apps/` (copies of fixture apps), `data/` and `cache/`.
pub struct ServeSandbox {
    pub dir: tempfile::TempDir,
}

impl ServeSandbox {
    /// A sandbox serving copies of these fixture apps.
    pub fn new(fixtures: &[&str]) -> ServeSandbox {
        let sb = ServeSandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir_all(sb.apps_dir()).unwrap();
        for name in fixtures {
            copy_dir(&fixture(name), &sb.apps_dir().join(name));
        }
        sb
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn apps_dir(&self) -> PathBuf {
        self.path().join("apps")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Writes an app of the test's own (`files`: name → content).
    pub fn add_app(&self, folder: &str, files: &[(&str, &str)]) {
        let dir = self.apps_dir().join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }

    /// `tests/slow`: `nap` sleeps `seconds` (plain def, so one worker runs
    /// one at a time) and returns its `label`.
    pub fn add_slow_app(&self) {
        self.add_app(
            "slow",
            &[
                (
                    "inf.yml",
                    "namespace: tests\nname: slow\ndescription: sleeps\ndefault_function: nap\n",
                ),
                ("requirements.txt", "inferencesh\n"),
                (
                    "inference.py",
                    r#"import time

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class NapInput(BaseAppInput):
    seconds: float = 0.1
    label: str = ""


class NapOutput(BaseAppOutput):
    label: str
    slept: float


class App(BaseApp):
    async def setup(self):
        pass

    def nap(self, input_data: NapInput) -> NapOutput:
        """Sleep, then return the label."""
        print(f"napping {input_data.label}", flush=True)
        time.sleep(input_data.seconds)
        return NapOutput(label=input_data.label, slept=input_data.seconds)
"#,
                ),
            ],
        );
    }

    /// Starts `infsh serve` (no API keys) with `extra` flags.
    pub fn start(&self, extra: &[&str]) -> Server {
        Server::start(self, extra, None, &[])
    }

    /// Starts `infsh serve --api-key test-key` with `extra` flags.
    pub fn start_with_key(&self, extra: &[&str]) -> Server {
        Server::start(self, extra, Some(TEST_KEY), &[])
    }

    /// Starts `infsh serve` with extra environment variables (its workers inherit them).
    pub fn start_with_env(&self, extra: &[&str], env: &[(&str, String)]) -> Server {
        Server::start(self, extra, None, env)
    }

    /// `infsh` pointed at `server` (`INFSH_API_URL`, and its key if it has one).
    pub fn infsh(&self, server: &Server) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("infsh").expect("infsh binary");
        cmd.env("INFSH_CACHE_DIR", self.path().join("client-cache"))
            .env("INFSH_API_URL", &server.url)
            .env_remove("INFSH_PYTHON")
            .env_remove("INFSH_LOG")
            .env("NO_COLOR", "1")
            .current_dir(self.path())
            .timeout(Duration::from_secs(120));
        match server.key {
            Some(key) => cmd.env("INFSH_API_KEY", key),
            None => cmd.env_remove("INFSH_API_KEY"),
        };
        cmd
    }

    /// `infsh` pointed at `server`, as a std Command (for signals).
    pub fn std_infsh(&self, server: &Server) -> StdCommand {
        let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("infsh"));
        cmd.env("INFSH_CACHE_DIR", self.path().join("client-cache"))
            .env("INFSH_API_URL", &server.url)
            .env_remove("INFSH_PYTHON")
            .env_remove("INFSH_LOG")
            .env("NO_COLOR", "1")
            .current_dir(self.path());
        match server.key {
            Some(key) => cmd.env("INFSH_API_KEY", key),
            None => cmd.env_remove("INFSH_API_KEY"),
        };
        cmd
    }

    /// `infsh app run APP --detach --json ...`: the submitted task's id.
    pub fn submit(&self, server: &Server, app: &str, args: &[&str]) -> String {
        let out = self
            .infsh(server)
            .args(["--json", "app", "run", app, "--detach"])
            .args(args)
            .output()
            .unwrap();
        super::assert_code(&out, 0);
        let task = json_stdout(&out);
        task["id"].as_str().expect("task id").to_string()
    }

    /// `infsh task get ID --json`.
    pub fn task(&self, server: &Server, id: &str) -> Value {
        let out = self
            .infsh(server)
            .args(["--json", "task", "get", id])
            .output()
            .unwrap();
        super::assert_code(&out, 0);
        json_stdout(&out)
    }

    /// Polls the task until `pred` holds for it; returns it.
    pub fn wait_task(
        &self,
        server: &Server,
        id: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let task = self.task(server, id);
            if pred(&task) {
                return task;
            }
            assert!(
                start.elapsed() < limit,
                "task {id} never reached the expected state; last: {task:#}\nserver log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A running `infsh serve`; stopped (and its apps' processes checked) on drop.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    /// App ids from the `--json` line.
    pub apps: Vec<String>,
    pub key: Option<&'static str>,
    log_path: PathBuf,
    apps_dir: PathBuf,
}

impl Server {
    fn start(
        sb: &ServeSandbox,
        extra: &[&str],
        key: Option<&'static str>,
        env: &[(&str, String)],
    ) -> Server {
        let log_path = unique_log_path(sb.path());
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("infsh"));
        cmd.args(["--json", "serve", "--host", "127.0.0.1", "--port", "0"])
            .arg("--apps")
            .arg(sb.apps_dir())
            .arg("--data-dir")
            .arg(sb.data_dir())
            .arg("--python")
            .arg(python())
            .args(["--shutdown-grace", "2", "--cancel-grace", "2"])
            .args(extra)
            .env("INFSH_CACHE_DIR", sb.path().join("cache"))
            .env("INFSH_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("INFSH_API_KEYS")
            .env_remove("INFSH_API_URL")
            .env_remove("INFSH_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(key) = key {
            cmd.args(["--api-key", key]);
        }
        for (name, value) in env {
            cmd.env(name, value);
        }
        let mut child = cmd.spawn().expect("spawn infsh serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            // The first line is the address; keep draining after it.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let apps_dir = std::fs::canonicalize(sb.apps_dir()).unwrap();
        let mut server = Server {
            child: Some(child),
            url: String::new(),
            apps: Vec::new(),
            key,
            log_path,
            apps_dir,
        };
        let line = match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(line) => line,
            Err(_) => panic!(
                "infsh serve printed no address line; its log:\n{}",
                server.log()
            ),
        };
        let doc: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the first stdout line is not JSON ({e}): {line}"));
        server.url = doc["url"].as_str().expect("url").to_string();
        server.apps = doc["apps"]
            .as_array()
            .expect("apps")
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let ready = wait_for(Duration::from_secs(30), || {
            matches!(http_get(&server.url, "/health", None), Some((200, _)))
        });
        assert!(
            ready,
            "GET /health never answered 200; log:\n{}",
            server.log()
        );
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    /// What the server wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `kill -9`: no shutdown at all.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `limit`).
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Processes whose working folder is in the served apps folder
    /// (workers run in their app's folder, and so do their children).
    pub fn app_processes(&self) -> Vec<(i32, String)> {
        app_processes(&self.apps_dir)
    }

    /// Waits until no app process is left; returns the ones that stayed.
    pub fn wait_no_app_processes(&self, limit: Duration) -> Vec<(i32, String)> {
        let mut left = Vec::new();
        wait_for(limit, || {
            left = self.app_processes();
            left.is_empty()
        });
        left
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() && self.terminate(Duration::from_secs(15)).is_none() {
            eprintln!("infsh serve did not stop on SIGTERM; it was killed");
        }
        let left = self.wait_no_app_processes(Duration::from_secs(15));
        for (pid, _) in &left {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        if !left.is_empty() && !std::thread::panicking() {
            panic!(
                "processes of the served apps outlived the server: {left:?}\nserver log:\n{}",
                self.log()
            );
        }
    }
}

fn unique_log_path(dir: &Path) -> PathBuf {
    (0..)
        .map(|n| dir.join(format!("server-{n}.log")))
        .find(|p| !p.exists())
        .unwrap()
}

/// Every live process whose cwd is inside `dir`: `(pid, command line)`.
pub fn app_processes(dir: &Path) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if !cwd.starts_with(dir) || super::process_gone(pid) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        found.push((pid, cmdline.trim().to_string()));
    }
    found
}

/// A plain HTTP/1.1 GET on loopback: `(status, body)`, None when nothing answers.
pub fn http_get(base: &str, path: &str, key: Option<&str>) -> Option<(u16, String)> {
    let authority = base.strip_prefix("http://")?.trim_end_matches('/');
    let mut stream = TcpStream::connect(authority).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() == "__pycache__" {
                continue;
            }
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Stderr of a finished command, for assertion messages.
pub fn both(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    )
}
