//! Reliability of the `infsh serve` process itself, end to end: the real
//! binary, real Python workers, real SQLite.
//!
//! - `kill -9` and a restart on the same data folder: stored files (uploads
//!   and outputs) are still served, the task that was running is FAILED as
//!   interrupted, the queued ones run.
//! - Secrets: a missing one is a 412 before any worker starts; a configured
//!   one never shows in the API, the database files or the server's stderr.
//! - SIGTERM: the running task finishes, `unload` runs, exit 0, nothing left.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::server::{app_processes, http_get, ServeSandbox};
use common::{python, wait_for};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const INTERRUPTED: &str = "interrupted: the server stopped while the task was running";
const LIMIT: Duration = Duration::from_secs(90);

/// `infsh serve` started with exactly the flags a test gives (the shared
/// helper fixes `--shutdown-grace`); on drop it is killed, and so is any
/// process left in the apps folder (the test fails if there was one).
struct Serve {
    child: Option<Child>,
    url: String,
    log_path: PathBuf,
    apps_dir: PathBuf,
}

impl Serve {
    fn start(sb: &ServeSandbox, extra: &[&str]) -> Serve {
        let log_path = (0..)
            .map(|n| sb.path().join(format!("serve-{n}.log")))
            .find(|p| !p.exists())
            .unwrap();
        let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("infsh"))
            .args(["--json", "serve", "--host", "127.0.0.1", "--port", "0"])
            .arg("--apps")
            .arg(sb.apps_dir())
            .arg("--data-dir")
            .arg(sb.data_dir())
            .arg("--python")
            .arg(python())
            .args(extra)
            .env("INFSH_CACHE_DIR", sb.path().join("cache"))
            .env("INFSH_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("INFSH_API_KEYS")
            .env_remove("INFSH_API_URL")
            .env_remove("INFSH_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
            .spawn()
            .expect("spawn infsh serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut serve = Serve {
            child: Some(child),
            url: String::new(),
            log_path,
            apps_dir: std::fs::canonicalize(sb.apps_dir()).unwrap(),
        };
        let line = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("no address line; log:\n{}", serve.log()));
        let doc: Value = serde_json::from_str(&line).unwrap();
        serve.url = doc["url"].as_str().unwrap().to_string();
        assert!(
            wait_for(Duration::from_secs(30), || matches!(
                http_get(&serve.url, "/health", None),
                Some((200, _))
            )),
            "GET /health never answered; log:\n{}",
            serve.log()
        );
        serve
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit status (None: still running after `limit`).
    fn sigterm(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_ref()?;
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        self.wait_exit(limit)
    }

    /// The exit status once the server exits (None: still running after `limit`).
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn app_processes(&self) -> Vec<(i32, String)> {
        app_processes(&self.apps_dir)
    }

    /// Waits until no process runs in the apps folder; returns the ones left.
    fn wait_no_app_processes(&self) -> Vec<(i32, String)> {
        let mut left = Vec::new();
        wait_for(Duration::from_secs(15), || {
            left = self.app_processes();
            left.is_empty()
        });
        left
    }

    /// `data` of a JSON answer with this status.
    fn json(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        let (got, text) = request(&self.url, method, path, body)
            .unwrap_or_else(|| panic!("{method} {path}: no answer"));
        assert_eq!(got, status, "{method} {path}: {text}");
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        if (200..300).contains(&got) {
            doc["data"].clone()
        } else {
            doc
        }
    }

    fn task(&self, id: &str) -> Value {
        self.json("GET", &format!("/tasks/{id}"), None, 200)
    }

    fn submit(&self, body: Value) -> String {
        self.json("POST", "/apps/run", Some(body), 200)["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Polls the task until `pred` holds; returns it.
    fn wait_task(&self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let task = self.task(id);
            if pred(&task) {
                return task;
            }
            assert!(
                start.elapsed() < LIMIT,
                "task {id}: {task:#}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_end(&self, id: &str) -> Value {
        self.wait_task(id, |t| t["status"].as_u64().unwrap() >= 10)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
        let left = self.wait_no_app_processes();
        for (pid, _) in &left {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        if !left.is_empty() && !std::thread::panicking() {
            panic!("processes outlived the server: {left:?}");
        }
    }
}

/// One HTTP/1.1 request on loopback: `(status, body)`. `path` may be a full
/// `http://host:port/...` URL of the same server.
fn request(base: &str, method: &str, path: &str, body: Option<Value>) -> Option<(u16, String)> {
    let body = body.map(|b| b.to_string().into_bytes());
    raw(base, method, path, body.as_deref(), "application/json")
}

fn raw(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    content_type: &str,
) -> Option<(u16, String)> {
    let authority = base.strip_prefix("http://")?.trim_end_matches('/');
    let path = match path.strip_prefix(base) {
        Some(rest) => rest,
        None => path,
    };
    let mut stream = TcpStream::connect(authority).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    if let Some(body) = body {
        stream.write_all(body).ok()?;
    }
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The id in a file URI `http://…/files/<id>/<name>`.
fn file_id(uri: &str) -> String {
    let rest = uri.split("/files/").nth(1).expect(uri);
    rest.split('/').next().unwrap().to_string()
}

/// Whether `needle` occurs in the file's bytes.
fn file_holds(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Item 4: after `kill -9`, a restart on the same data folder serves the
/// stored files (an upload and a task's output file), fails the task that
/// was running as interrupted, and runs the queued ones.
#[test]
fn after_kill_9_stored_files_are_served_and_no_acknowledged_task_is_lost() {
    let sb = ServeSandbox::new(&["files-app"]);
    sb.add_slow_app();
    let mut server = Serve::start(&sb, &[]);

    let created = server.json(
        "POST",
        "/files",
        Some(json!({"files": [{"uri": "", "filename": "note.txt",
                               "content_type": "text/plain", "size": 12}]})),
        200,
    );
    let upload = created[0].clone();
    let (status, text) = raw(
        &server.url,
        "PUT",
        upload["upload_url"].as_str().unwrap(),
        Some(b"hello, disk\n"),
        "application/octet-stream",
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let upload_id = upload["id"].as_str().unwrap().to_string();

    let made = server.json(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/files-app", "function": "make_files",
                    "input": {"label": "L"}, "wait": true})),
        200,
    );
    assert_eq!(made["status"], 10, "{made:#}");
    let output_uri = made["output"]["files"][0]["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let output_id = file_id(&output_uri);

    let long =
        server.submit(json!({"app": "tests/slow", "input": {"seconds": 120, "label": "long"}}));
    server.wait_task(&long, |t| t["status"] == 7);
    let queued: Vec<(String, String)> = (1..=3)
        .map(|n| {
            let label = format!("q{n}");
            let id = server.submit(json!({"app": "tests/slow",
                                          "input": {"seconds": 0.05, "label": label}}));
            (id, label)
        })
        .collect();

    server.kill9();
    let left = server.wait_no_app_processes();
    assert!(left.is_empty(), "workers outlived kill -9: {left:?}");

    let server = Serve::start(&sb, &[]);
    for (path, want) in [
        (format!("/files/{upload_id}"), "hello, disk\n"),
        (format!("/files/{output_id}/one.txt"), "one\n"),
    ] {
        let (status, body) = request(&server.url, "GET", &path, None).unwrap();
        assert_eq!((status, body.as_str()), (200, want), "{path}");
    }
    let interrupted = server.wait_end(&long);
    assert_eq!(interrupted["status"], 11, "{interrupted:#}");
    assert_eq!(interrupted["error"], INTERRUPTED);
    for (id, label) in &queued {
        let done = server.wait_end(id);
        assert_eq!(done["status"], 10, "{done:#}");
        assert_eq!(done["output"]["label"], label.as_str());
    }
    let listed = server.json("GET", "/tasks?limit=100", None, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 5, "{listed:#}");
}

const LEAKY_PY: &str = r#"
import logging
import os
import sys

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput

SECRET = os.environ["LEAKY_TOKEN"]
print(f"importing with {SECRET}", flush=True)


class Empty(BaseAppInput):
    pass


class Out(BaseAppOutput):
    text: str


class App(BaseApp):
    async def setup(self):
        print(f"setup sees {SECRET}", flush=True)

    async def leak(self, input_data: Empty) -> Out:
        print(f"stdout {SECRET}", flush=True)
        sys.stderr.write(f"stderr {SECRET}\n")
        sys.stderr.flush()
        logging.getLogger("leaky").warning("logging %s", SECRET)
        return Out(text=f"the token is {SECRET}")

    async def boom(self, input_data: Empty) -> Out:
        raise ValueError(f"bad token {SECRET}")

    async def unload(self):
        print(f"unloading {SECRET}", flush=True)
"#;

/// Item 7: a missing required secret or integration is a 412 in the
/// client's shape before any worker starts; a configured secret reaches the
/// app, and whatever the app prints, logs, returns or raises with it shows
/// `[redacted]` in the API, and the value is nowhere in the database files
/// or the server's stderr. (Also item 2 on the wire: an app whose setup
/// fails makes `GET /ready` degraded, with its last error.)
#[test]
fn secrets_stay_out_of_the_api_the_database_and_the_servers_stderr() {
    let secret = "tok-51d3c0ffee-do-not-print";
    let sb = ServeSandbox::new(&[]);
    let yml =
        |name: &str| format!("namespace: tests\nname: {name}\nsecrets:\n  - key: LEAKY_TOKEN\n");
    sb.add_app(
        "leaky",
        &[
            ("inf.yml", &yml("leaky")),
            ("requirements.txt", "inferencesh\n"),
            ("inference.py", LEAKY_PY),
        ],
    );
    let failing_setup = LEAKY_PY.replace(
        "print(f\"setup sees {SECRET}\", flush=True)",
        "raise RuntimeError(f\"cannot log in with {SECRET}\")",
    );
    sb.add_app(
        "leaky-setup",
        &[
            ("inf.yml", &yml("leaky-setup")),
            ("requirements.txt", "inferencesh\n"),
            ("inference.py", &failing_setup),
        ],
    );
    sb.add_app(
        "needs-more",
        &[
            (
                "inf.yml",
                "namespace: tests\nname: needs-more\nsecrets:\n  - key: NOT_CONFIGURED\n    description: an API token\nintegrations:\n  - key: SOME_ACCOUNT\n",
            ),
            ("requirements.txt", "inferencesh\n"),
            ("inference.py", LEAKY_PY),
        ],
    );
    let secret_flag = format!("LEAKY_TOKEN={secret}");
    let mut server = Serve::start(&sb, &["--secret", &secret_flag]);

    // 412, before any worker starts.
    let (status, text) = request(
        &server.url,
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/needs-more", "function": "leak", "input": {}})),
    )
    .unwrap();
    assert_eq!(status, 412, "{text}");
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        problem["type"],
        "https://infsh.dev/errors/requirements_not_met"
    );
    assert_eq!(problem["status"], 412);
    let errors = problem["errors"].as_array().unwrap();
    let shape: Vec<(&str, &str, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["key"].as_str().unwrap(),
                e["action"]["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("secret", "NOT_CONFIGURED", "add_secret"),
            ("integration", "SOME_ACCOUNT", "connect")
        ]
    );
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("an API token"));
    assert!(server.app_processes().is_empty(), "no worker started");
    let ready = server.json("GET", "/ready", None, 200);
    let needs = ready["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "tests/needs-more")
        .unwrap()
        .clone();
    assert_eq!(needs["state"], "idle", "{ready:#}");

    // The secret leaks every way an app can leak it.
    let leak = server.json(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/leaky", "function": "leak", "input": {}, "wait": true})),
        200,
    );
    assert_eq!(leak["status"], 10, "{leak:#}");
    assert_eq!(leak["output"]["text"], "the token is [redacted]");
    let logs = leak["logs"].to_string();
    for line in ["setup sees", "stdout", "stderr", "logging"] {
        assert!(
            logs.contains(&format!("{line} [redacted]")),
            "{line}: {logs}"
        );
    }
    let boom = server.json(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/leaky", "function": "boom", "input": {}, "wait": true})),
        200,
    );
    assert_eq!(
        boom["error"], "ValueError: bad token [redacted]",
        "{boom:#}"
    );
    assert!(boom["logs"].to_string().contains("Traceback"));
    let setup = server.json(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/leaky-setup", "function": "leak", "input": {}, "wait": true})),
        200,
    );
    assert_eq!(
        setup["error"],
        "setup failed: RuntimeError: cannot log in with [redacted]"
    );
    let ready = server.json("GET", "/ready", None, 200);
    assert_eq!(ready["status"], "degraded", "{ready:#}");
    let broken = ready["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "tests/leaky-setup")
        .unwrap()
        .clone();
    assert_eq!(broken["state"], "unhealthy");
    assert_eq!(
        broken["last_error"],
        "setup failed: RuntimeError: cannot log in with [redacted]"
    );

    let mut answers = vec![ready.to_string()];
    for id in [&leak["id"], &boom["id"], &setup["id"]] {
        answers.push(server.task(id.as_str().unwrap()).to_string());
    }
    for path in ["/tasks?limit=100", "/apps", "/apps/tests/leaky", "/metrics"] {
        answers.push(request(&server.url, "GET", path, None).unwrap().1);
    }
    for answer in &answers {
        assert!(!answer.contains(secret), "{answer}");
    }

    // What the app prints outside of a task (at import, in unload) goes to
    // the server's stderr: redacted too.
    let status = server.sigterm(LIMIT).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(!log.contains(secret), "the server's stderr:\n{log}");
    assert!(
        log.contains("importing with [redacted]"),
        "the import's output is not logged:\n{log}"
    );
    let mut db_files = 0;
    for entry in std::fs::read_dir(sb.data_dir()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("infsh.db") {
            db_files += 1;
            assert!(
                !file_holds(&entry.path(), secret),
                "{} holds the secret",
                entry.path().display()
            );
        }
    }
    assert!(db_files >= 1);
}

const UNLOADS_PY: &str = r#"
import os
import time

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class NapInput(BaseAppInput):
    seconds: float
    started_file: str = ""


class Out(BaseAppOutput):
    slept: float


class App(BaseApp):
    async def setup(self):
        pass

    def nap(self, input_data: NapInput) -> Out:
        if input_data.started_file:
            open(input_data.started_file, "w").close()
        time.sleep(input_data.seconds)
        return Out(slept=input_data.seconds)

    async def unload(self):
        with open(os.environ["UNLOAD_MARKER"], "a") as f:
            f.write(f"unload {os.getpid()}\n")
"#;

fn add_unloads_app(sb: &ServeSandbox) -> PathBuf {
    let marker = sb.path().join("unloaded");
    let yml = format!(
        "namespace: tests\nname: unloads\nenv:\n  UNLOAD_MARKER: \"{}\"\n",
        marker.display()
    );
    sb.add_app(
        "unloads",
        &[
            ("inf.yml", &yml),
            ("requirements.txt", "inferencesh\n"),
            ("inference.py", UNLOADS_PY),
        ],
    );
    marker
}

/// Item 8: SIGTERM while a task runs: the task completes (within
/// `--shutdown-grace`), a queued one stays queued for the next start,
/// `unload` runs, the server exits 0 and no process is left in the apps
/// folder.
#[test]
fn sigterm_lets_the_running_task_finish_runs_unload_and_leaves_nothing() {
    let sb = ServeSandbox::new(&[]);
    let marker = add_unloads_app(&sb);
    let mut server = Serve::start(&sb, &["--shutdown-grace", "60"]);
    let started = sb.path().join("started");
    let running = server.submit(json!({"app": "tests/unloads", "function": "nap",
        "input": {"seconds": 2, "started_file": started.to_string_lossy()}}));
    let queued = server.submit(json!({"app": "tests/unloads", "function": "nap",
        "input": {"seconds": 0}}));
    assert!(
        wait_for(LIMIT, || started.exists()),
        "the task never started; log:\n{}",
        server.log()
    );
    assert!(!server.app_processes().is_empty());

    let status = server.sigterm(LIMIT).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        server.log().contains("infsh: shutting down"),
        "{}",
        server.log()
    );
    let unloads = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(unloads.lines().count(), 1, "unload ran once: {unloads:?}");
    let left = server.wait_no_app_processes();
    assert!(left.is_empty(), "left after SIGTERM: {left:?}");

    let server = Serve::start(&sb, &[]);
    let done = server.task(&running);
    assert_eq!(done["status"], 10, "{done:#}");
    assert_eq!(done["output"]["slept"], 2.0);
    let later = server.wait_end(&queued);
    assert_eq!(later["status"], 10, "the queued task ran after the restart");
}

/// Item 8: during the shutdown grace the server still answers, refuses new
/// runs with 503 `shutting_down`, and still serves the running task
/// (`infsh serve` keeps its listener open until the engine has stopped).
#[test]
fn during_the_shutdown_grace_new_runs_get_503() {
    let sb = ServeSandbox::new(&[]);
    let marker = add_unloads_app(&sb);
    let mut server = Serve::start(&sb, &["--shutdown-grace", "60"]);
    let started = sb.path().join("started");
    let running = server.submit(json!({"app": "tests/unloads", "function": "nap",
        "input": {"seconds": 3, "started_file": started.to_string_lossy()}}));
    assert!(wait_for(LIMIT, || started.exists()));
    let pid = server.child.as_ref().unwrap().id() as i32;
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    // An unknown app is a 404 until the shutdown begins, then a 503.
    let probe = json!({"app": "no/such-app", "input": {}});
    assert!(
        wait_for(LIMIT, || matches!(
            request(&server.url, "POST", "/apps/run", Some(probe.clone())),
            Some((503, _))
        )),
        "{}",
        server.log()
    );
    let refused = server.json(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/unloads", "function": "nap", "input": {"seconds": 0}})),
        503,
    );
    assert_eq!(refused["type"], "https://infsh.dev/errors/shutting_down");
    let task = server.task(&running);
    assert!(task["status"].as_u64().unwrap() <= 10, "{task:#}");
    let status = server.wait_exit(LIMIT).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
    let server = Serve::start(&sb, &[]);
    assert_eq!(server.task(&running)["status"], 10);
}
