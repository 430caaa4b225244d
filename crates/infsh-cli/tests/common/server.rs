//! `infsh serve` for end-to-end tests: a sandbox holding copies of fixture
//! apps, a data folder and a cache; a [`Server`] guard that starts the real
//! binary on port 0, reads its address from the `--json` line, waits for
//! `GET /health`, speaks HTTP to it, and on drop stops it and checks that no
//! process of the apps (workers, their children) is left behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use infsh_testkit::{copy_fixture_as, copy_fixtures, processes_in};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::{json_stdout, python, wait_for};

/// The shared test key of servers started with [`ServeSandbox::start_with_key`].
pub const TEST_KEY: &str = "test-key";

/// Short graces, so that stopping a server does not hold up a test.
const SHORT_GRACES: [&str; 4] = ["--shutdown-grace", "2", "--cancel-grace", "2"];

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
        copy_fixtures(&sb.apps_dir(), fixtures);
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

    /// Serves the fixture app `fixture` again as `folder`, with `yml` as its
    /// inf.yml (another name, other settings).
    pub fn add_fixture_as(&self, fixture: &str, folder: &str, yml: &str) {
        copy_fixture_as(&self.apps_dir(), fixture, folder, yml);
    }

    /// Starts `infsh serve` (no API keys, short graces) with `extra` flags.
    pub fn start(&self, extra: &[&str]) -> Server {
        Server::start(self, &[&SHORT_GRACES[..], extra].concat(), None, &[])
    }

    /// Starts `infsh serve` with exactly these flags (the defaults of every
    /// other one): for tests of the graces themselves.
    pub fn start_exact(&self, flags: &[&str]) -> Server {
        Server::start(self, flags, None, &[])
    }

    /// Starts `infsh serve --api-key test-key` with `extra` flags.
    pub fn start_with_key(&self, extra: &[&str]) -> Server {
        Server::start(
            self,
            &[&SHORT_GRACES[..], extra].concat(),
            Some(TEST_KEY),
            &[],
        )
    }

    /// Starts `infsh serve` with extra environment variables (its workers inherit them).
    pub fn start_with_env(&self, extra: &[&str], env: &[(&str, String)]) -> Server {
        Server::start(self, &[&SHORT_GRACES[..], extra].concat(), None, env)
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
        cmd.env_remove("INFERENCE_API_KEY");
        cmd
    }

    /// `infsh ARGS...` pointed at `server`, run to its end.
    pub fn run(&self, server: &Server, args: &[&str]) -> Output {
        self.infsh(server).args(args).output().unwrap()
    }

    /// `infsh ARGS...` pointed at `server`: asserts its exit status, returns
    /// its stdout as JSON.
    pub fn run_json(&self, server: &Server, args: &[&str], code: i32) -> Value {
        let out = self.run(server, args);
        super::assert_code(&out, code);
        json_stdout(&out)
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
        let args = [&["--json", "app", "run", app, "--detach"][..], args].concat();
        let task = self.run_json(server, &args, 0);
        task["id"].as_str().expect("task id").to_string()
    }

    /// `infsh task get ID --json`.
    pub fn task(&self, server: &Server, id: &str) -> Value {
        self.run_json(server, &["--json", "task", "get", id], 0)
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
        flags: &[&str],
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
            .args(flags)
            .env("INFSH_CACHE_DIR", sb.path().join("cache"))
            .env("INFSH_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("INFSH_API_KEYS")
            .env_remove("INFSH_API_URL")
            .env_remove("INFSH_API_KEY")
            .env_remove("INFSH_ENGINE_CONFIG")
            .env_remove("INFSH_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(key) = key {
            cmd.args(["--api-key", key]);
        }
        for (name, value) in env {
            // An empty value unsets the variable (e.g. INFSH_LOG, to see
            // serve's default logging).
            if value.is_empty() {
                cmd.env_remove(name);
            } else {
                cmd.env(name, value);
            }
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

    /// SIGTERM, then waits for the exit (SIGKILL after `limit`, and None).
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let _ = kill(
            Pid::from_raw(self.child.as_ref()?.id() as i32),
            Signal::SIGTERM,
        );
        let status = self.wait_exit(limit);
        if status.is_none() {
            self.kill9();
        }
        status
    }

    /// The exit status once the server exits by itself (None: still
    /// running after `limit`).
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

    /// Processes whose working folder is in the served apps folder
    /// (workers run in their app's folder, and so do their children).
    pub fn app_processes(&self) -> Vec<(u32, String)> {
        processes_in(&self.apps_dir)
    }

    /// Waits until no app process is left; returns the ones that stayed.
    pub fn wait_no_app_processes(&self, limit: Duration) -> Vec<(u32, String)> {
        let mut left = Vec::new();
        wait_for(limit, || {
            left = self.app_processes();
            left.is_empty()
        });
        left
    }

    /// One HTTP request with a JSON body (and the server's key): `(status,
    /// body)`, None when nothing answers. `path` may be a full URL of this
    /// server.
    pub fn request(&self, method: &str, path: &str, body: Option<Value>) -> Option<(u16, String)> {
        let body = body.map(|b| b.to_string().into_bytes());
        self.raw(method, path, body.as_deref(), "application/json")
    }

    /// One HTTP request with raw body bytes of this content type.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> Option<(u16, String)> {
        let path = path.strip_prefix(self.url.as_str()).unwrap_or(path);
        http(
            &self.url,
            method,
            path,
            self.key,
            body.map(|b| (b, content_type)),
        )
    }

    /// The answer to a JSON request, which must have this status: its
    /// `data` for a success, the whole document (a problem) otherwise.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        let (got, text) = self
            .request(method, path, body)
            .unwrap_or_else(|| panic!("{method} {path}: no answer"));
        assert_eq!(got, status, "{method} {path}: {text}");
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        if (200..300).contains(&got) {
            doc["data"].clone()
        } else {
            doc
        }
    }

    /// Registers a file (`POST /files`) and uploads `bytes` to its
    /// `upload_url`: `(id, uri)`.
    pub fn upload(&self, filename: &str, content_type: &str, bytes: &[u8]) -> (String, String) {
        let created = self.api(
            "POST",
            "/files",
            Some(serde_json::json!({"files": [{"filename": filename,
                "content_type": content_type, "size": bytes.len()}]})),
            200,
        );
        let (status, body) = self
            .raw(
                "PUT",
                created[0]["upload_url"].as_str().unwrap(),
                Some(bytes),
                "application/octet-stream",
            )
            .unwrap();
        assert_eq!(status, 200, "{body}");
        (
            created[0]["id"].as_str().unwrap().to_string(),
            created[0]["uri"].as_str().unwrap().to_string(),
        )
    }

    /// `GET /tasks/{id}`.
    pub fn task(&self, id: &str) -> Value {
        self.api("GET", &format!("/tasks/{id}"), None, 200)
    }

    /// `POST /apps/run` with this body: the task's id.
    pub fn submit(&self, body: Value) -> String {
        self.api("POST", "/apps/run", Some(body), 200)["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Polls the task until `pred` holds for it (bounded by `limit`);
    /// returns it.
    pub fn wait_task(&self, id: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let mut task = Value::Null;
        let reached = wait_for(limit, || {
            task = self.task(id);
            pred(&task)
        });
        assert!(
            reached,
            "task {id} never reached the expected state; last: {task:#}\nserver log:\n{}",
            self.log()
        );
        task
    }

    /// Polls the task until it ended (bounded by `limit`); returns it.
    pub fn wait_end(&self, id: &str, limit: Duration) -> Value {
        self.wait_task(id, limit, |t| t["status"].as_u64().unwrap() >= 10)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() && self.terminate(Duration::from_secs(15)).is_none() {
            eprintln!("infsh serve did not stop on SIGTERM; it was killed");
        }
        let left = self.wait_no_app_processes(Duration::from_secs(15));
        for (pid, _) in &left {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
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

/// A plain HTTP/1.1 GET on loopback: `(status, body)`, None when nothing answers.
pub fn http_get(base: &str, path: &str, key: Option<&str>) -> Option<(u16, String)> {
    http(base, "GET", path, key, None)
}

/// A plain HTTP/1.1 POST of a JSON body on loopback: `(status, body)`.
pub fn http_post_json(
    base: &str,
    path: &str,
    key: Option<&str>,
    body: &serde_json::Value,
) -> Option<(u16, String)> {
    let bytes = serde_json::to_vec(body).unwrap();
    http(base, "POST", path, key, Some((&bytes, "application/json")))
}

/// One HTTP/1.1 request on loopback, `body` with its content type:
/// `(status, body)`, None when nothing answers.
fn http(
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<(&[u8], &str)>,
) -> Option<(u16, String)> {
    let authority = base.strip_prefix("http://")?.trim_end_matches('/');
    let mut stream = TcpStream::connect(authority).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    if let Some((bytes, content_type)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    if let Some((bytes, _)) = body {
        stream.write_all(bytes).ok()?;
    }
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
