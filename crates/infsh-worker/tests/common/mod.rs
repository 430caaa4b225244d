//! Helpers for the integration tests: tiny apps in temporary folders and
//! real Python workers. The interpreter, bounded waits and process checks
//! come from `infsh-testkit`, re-exported here.

#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::path::PathBuf;
use std::time::Duration;

pub use infsh_testkit::{eventually, group_gone, pid_gone, python, until, within};
use infsh_worker::{CallEvent, CallRequest, LogLine, Ready, Worker, WorkerConfig};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::mpsc;

/// Generous: a cold Python import of pydantic on a busy 2-core machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed worker (or its group) may take to be reaped.
pub const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// An app folder holding `inference.py` (unless `source` is `None`), and a
/// state folder of its own.
pub struct TestApp {
    pub dir: TempDir,
    pub state: TempDir,
}

impl TestApp {
    pub fn new(source: Option<&str>) -> TestApp {
        let dir = tempfile::Builder::new().prefix("app-").tempdir().unwrap();
        if let Some(source) = source {
            std::fs::write(dir.path().join("inference.py"), source).unwrap();
        }
        TestApp {
            dir,
            state: tempfile::tempdir().unwrap(),
        }
    }

    pub fn config(&self) -> WorkerConfig {
        WorkerConfig {
            python: python(),
            runtime: infsh_worker::WorkerRuntime::Python,
            app_dir: self.dir.path().to_path_buf(),
            state_dir: self.state.path().to_path_buf(),
            env: vec![("INFSH_TEST_MARKER".into(), "yes".into())],
        }
    }

    pub async fn start(&self) -> Started {
        let (idle_tx, idle) = mpsc::unbounded_channel();
        let (worker, ready) = within(START_TIMEOUT, Worker::start(self.config(), idle_tx))
            .await
            .expect("worker start");
        Started {
            worker,
            ready,
            idle,
        }
    }

    /// Starts and runs a setup with an empty config.
    pub async fn start_set_up(&self) -> Started {
        let started = self.start().await;
        let (logs, _) = mpsc::unbounded_channel();
        within(OP_TIMEOUT, started.worker.setup(json!({}), json!({}), logs))
            .await
            .expect("setup");
        started
    }

    /// Spill folders of all workers that used this state folder.
    pub fn spill_files(&self) -> Vec<PathBuf> {
        let root = self.state.path().join("spill");
        let Ok(workers) = std::fs::read_dir(root) else {
            return Vec::new();
        };
        workers
            .flat_map(|w| std::fs::read_dir(w.unwrap().path()).into_iter().flatten())
            .map(|f| f.unwrap().path())
            .collect()
    }
}

pub struct Started {
    pub worker: Worker,
    pub ready: Ready,
    pub idle: mpsc::UnboundedReceiver<LogLine>,
}

pub fn req(id: &str, function: &str, input: Value) -> CallRequest {
    CallRequest {
        id: id.into(),
        function: function.into(),
        input,
        metadata: json!({"task_id": id}),
    }
}

/// Everything already in the channel, without waiting.
pub fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Ok(item) = rx.try_recv() {
        out.push(item);
    }
    out
}

/// Waits until the app writes `line` (the test app's functions that run a
/// while print "started <function>" first), so a test acts on a call that is
/// really in flight in the worker. Returns every event received until then.
pub async fn wait_for_line(
    rx: &mut mpsc::UnboundedReceiver<CallEvent>,
    line: &str,
) -> Vec<CallEvent> {
    let mut seen = Vec::new();
    let found = within(OP_TIMEOUT, async {
        while let Some(event) = rx.recv().await {
            let hit = matches!(&event, CallEvent::Log(l) if l.line == line);
            seen.push(event);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        found,
        "the app never wrote {line:?}; it wrote {:?}",
        log_lines(&seen)
    );
    seen
}

pub fn log_lines(events: &[CallEvent]) -> Vec<&LogLine> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Log(line) => Some(line),
            _ => None,
        })
        .collect()
}

/// Polls until no process has this pid, not even a zombie (the worker
/// must reap what it started), for up to [`REAP_TIMEOUT`].
pub async fn wait_pid_gone(pid: u32) -> bool {
    eventually(REAP_TIMEOUT, || pid_gone(pid)).await
}

/// Polls until no process is left in the group `pgid` (a worker leads its
/// own), for up to [`REAP_TIMEOUT`].
pub async fn wait_group_gone(pgid: u32) -> bool {
    eventually(REAP_TIMEOUT, || group_gone(pgid)).await
}

/// The app most tests use: one function per behaviour under test.
pub const APP: &str = r#"
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import AsyncGenerator

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, BaseAppSetup, File

print("importing the app")


class AppSetup(BaseAppSetup):
    fail: bool = False
    fail_unload: bool = False


class TextInput(BaseAppInput):
    text: str = ""
    delay: float = 0.0


class TextOutput(BaseAppOutput):
    text: str


class CountInput(BaseAppInput):
    n: int = 3


class CountOutput(BaseAppOutput):
    numbers: list[int]


class ChattyInput(BaseAppInput):
    lines: int = 1000


class HowInput(BaseAppInput):
    how: str = "exit"


class SleepInput(BaseAppInput):
    seconds: float = 60.0


class PidOutput(BaseAppOutput):
    pid: int


class BigInput(BaseAppInput):
    size: int = 0
    text: str = ""


class FileOutput(BaseAppOutput):
    image: File


class App(BaseApp):
    async def setup(self, config: AppSetup):
        print("setting up", flush=True)
        print("setup warning", file=sys.stderr, flush=True)
        if config.fail:
            raise RuntimeError("setup was told to fail")
        self.fail_unload = config.fail_unload

    async def unload(self):
        print("unloading")
        if self.fail_unload:
            raise RuntimeError("unload broke")

    async def on_cancel(self):
        print("on_cancel called")

    async def echo(self, input: TextInput) -> TextOutput:
        """Echo the text."""
        if input.delay:
            print("started echo", flush=True)
            await asyncio.sleep(input.delay)
        return TextOutput(text=input.text)

    def shout(self, input: TextInput, metadata) -> TextOutput:
        return TextOutput(text=input.text.upper() + " " + metadata.task_id)

    async def count(self, input: CountInput) -> AsyncGenerator[CountOutput, None]:
        numbers = []
        for i in range(input.n):
            numbers.append(i)
            print(f"yielding {i}")
            yield CountOutput(numbers=list(numbers))

    async def chatty(self, input: ChattyInput) -> TextOutput:
        for i in range(input.lines):
            print(f"out {i}")
            if i % 4 == 0:
                print(f"err {i}", file=sys.stderr)
        sys.stdout.write("no newline at the end")
        return TextOutput(text="done")

    async def boom(self, input: TextInput) -> TextOutput:
        raise ValueError("boom: " + input.text)

    async def crash(self, input: HowInput) -> TextOutput:
        print("about to die", file=sys.stderr, flush=True)
        if input.how == "exit":
            os._exit(3)
        os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.sleep(60)

    async def sleep(self, input: SleepInput) -> TextOutput:
        print("started sleep", flush=True)
        await asyncio.sleep(input.seconds)
        return TextOutput(text="slept")

    def busy(self, input: SleepInput) -> TextOutput:
        print("started busy", flush=True)
        end = time.monotonic() + input.seconds
        while time.monotonic() < end:
            time.sleep(0.01)
        return TextOutput(text="busy done")

    async def block(self, input: SleepInput) -> TextOutput:
        # Blocks the worker's event loop: it cannot even answer shutdown.
        print("started block", flush=True)
        time.sleep(input.seconds)
        return TextOutput(text="unblocked")

    async def garbage(self, input: HowInput) -> TextOutput:
        # Writes on the protocol channel behind the runtime's back.
        data = {"json": b"\x00\x00\x00\x05hello", "oversize": b"\xff\xff\xff\xff"}[input.how]
        os.write(int(os.environ["INFSH_PROTOCOL_FD"]), data)
        await asyncio.sleep(60)

    async def flood(self, input: BigInput) -> TextOutput:
        sys.stdout.write("z" * input.size)
        return TextOutput(text="flooded")

    async def spawn(self, input: TextInput) -> PidOutput:
        # A grandchild that ignores SIGTERM and shares our stdout/stderr.
        child = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 1000 & wait"])
        return PidOutput(pid=child.pid)

    async def ignore_term(self, input: TextInput) -> TextOutput:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return TextOutput(text="ignoring SIGTERM")

    async def big(self, input: BigInput) -> TextOutput:
        return TextOutput(text=input.text + "x" * input.size)

    async def image(self, input: TextInput) -> FileOutput:
        fd, path = tempfile.mkstemp(suffix=".png")
        os.write(fd, b"not really a png")
        os.close(fd)
        return FileOutput(image=File(path=path))

    async def env(self, input: TextInput) -> TextOutput:
        keys = ["INFSH_TEST_MARKER", "INFSH_PROTOCOL_FD", "PYTHONUNBUFFERED", "FILE_CACHE_DIR"]
        return TextOutput(text=" ".join(f"{k}={os.environ.get(k)}" for k in keys) + " cwd=" + os.getcwd())
"#;
