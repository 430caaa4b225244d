//! End to end, `infsh app dev DIR`: the real binary serves one app folder
//! with the playground at `/`; saving an edited `inference.py` reloads the
//! app, and the next call runs the new code. On SIGTERM it exits 0, leaves
//! no worker behind and removes its temporary data folder.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{python, wait_for};
use infsh_testkit::processes_in;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const INFERENCE_PY: &str = r#"from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class RunInput(BaseAppInput):
    name: str = "x"


class RunOutput(BaseAppOutput):
    greeting: str


class App(BaseApp):
    async def setup(self):
        pass

    async def run(self, input_data: RunInput) -> RunOutput:
        return RunOutput(greeting="hello " + input_data.name)
"#;

/// `infsh app dev`, stopped (and checked to stop) on drop.
struct Dev {
    child: Child,
    url: String,
    data_dir: PathBuf,
}

impl Dev {
    fn start(app: &Path, cache: &Path) -> Dev {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("infsh"))
            .args(["--json", "app", "dev"])
            .arg(app)
            .args(["--port", "0", "--python"])
            .arg(python())
            .env("INFSH_CACHE_DIR", cache)
            .env_remove("INFSH_API_KEYS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn infsh app dev");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let doc: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("first stdout line is not JSON ({e}): {line:?}"));
        assert_eq!(doc["apps"], json!(["dev/greeter"]));
        Dev {
            child,
            url: doc["url"].as_str().unwrap().to_string(),
            data_dir: PathBuf::from(doc["data_dir"].as_str().unwrap()),
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request (so the answer is not chunked): (status, body).
fn http(base: &str, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, String)> {
    let authority = base.strip_prefix("http://")?;
    let mut stream = TcpStream::connect(authority).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, raw.split_once("\r\n\r\n")?.1.to_string()))
}

/// The greeting of a `run` call, or None while the app is not answering
/// (a reload in progress).
fn greet(dev: &Dev, name: &str) -> Option<String> {
    let body = json!({"app": "dev/greeter", "input": {"name": name}, "wait": true});
    let (status, text) = http(&dev.url, "POST", "/apps/run", Some(&body))?;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&text).ok()?;
    v["data"]["output"]["greeting"].as_str().map(str::to_string)
}

#[test]
fn an_edited_function_runs_its_new_code_after_a_save() {
    let sandbox = tempfile::tempdir().unwrap();
    let app = sandbox.path().join("greeter");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("inf.yml"),
        "namespace: dev\nname: greeter\ndescription: says hello\nkernel: python-3.11\n",
    )
    .unwrap();
    std::fs::write(app.join("requirements.txt"), "inferencesh\n").unwrap();
    std::fs::write(app.join("inference.py"), INFERENCE_PY).unwrap();

    let mut dev = Dev::start(&app, &sandbox.path().join("cache"));
    let (status, page) = http(&dev.url, "GET", "/", None).expect("the page");
    assert_eq!(status, 200);
    assert!(page.contains("/_playground/app.js"), "{page}");
    assert_eq!(greet(&dev, "ada").as_deref(), Some("hello ada"));

    std::fs::write(
        app.join("inference.py"),
        INFERENCE_PY.replace("\"hello \"", "\"goodbye \""),
    )
    .unwrap();
    let mut last = None;
    let reloaded = wait_for(Duration::from_secs(60), || {
        last = greet(&dev, "ada");
        last.as_deref() == Some("goodbye ada")
    });
    assert!(reloaded, "still answering {last:?} after the save");

    // Ctrl-C's twin: exits 0, stops the app's workers, cleans up.
    kill(Pid::from_raw(dev.child.id() as i32), Signal::SIGTERM).unwrap();
    let exited = wait_for(Duration::from_secs(20), || {
        matches!(dev.child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "infsh app dev did not exit on SIGTERM");
    assert!(dev.child.wait().unwrap().success());
    assert_eq!(processes_in(&app), vec![], "workers left behind");
    assert!(
        !dev.data_dir.exists(),
        "{} left behind",
        dev.data_dir.display()
    );
}

#[test]
fn a_folder_without_inference_py_is_a_usage_error() {
    let sandbox = tempfile::tempdir().unwrap();
    let out = Command::new(assert_cmd::cargo::cargo_bin("infsh"))
        .args(["app", "dev"])
        .arg(sandbox.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: not an app folder (no inference.py nor inference.js)",
            sandbox.path().display()
        )),
        "{stderr}"
    );
}
