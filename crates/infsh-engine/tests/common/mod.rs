//! Helpers for the engine's integration tests: fixture apps copied into a
//! temporary apps folder, an engine configured with the repo's test
//! interpreter (`INFSH_TEST_PYTHON`, else `.venv/bin/python`), bounded waits,
//! and a check that no process is left running in the test's folders.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infsh_engine::{Engine, EngineConfig, RunRequest, TaskView};
use infsh_store::TaskStatus;
use serde_json::Value;
use tempfile::TempDir;

/// Generous: cold Python starts on a busy 2-core machine.
pub const LIMIT: Duration = Duration::from_secs(90);

pub fn python() -> PathBuf {
    match std::env::var_os("INFSH_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../.venv/bin/python"
        )),
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/apps"
    ))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A temporary root with `apps/` (fixture copies), `data/` and `cache/`.
pub struct Fixture {
    pub root: TempDir,
}

impl Fixture {
    pub fn new(apps: &[&str]) -> Fixture {
        let root = tempfile::Builder::new()
            .prefix("engine-test-")
            .tempdir()
            .unwrap();
        let fixture = Fixture { root };
        std::fs::create_dir_all(fixture.apps_dir()).unwrap();
        for app in apps {
            copy_dir(&fixtures().join(app), &fixture.apps_dir().join(app));
        }
        fixture
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    pub fn apps_dir(&self) -> PathBuf {
        self.root.path().join("apps")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Adds `env:` entries to an app's inf.yml (which has none).
    pub fn add_env(&self, app: &str, vars: &[(&str, &Path)]) {
        let mut yml = String::from("\nenv:\n");
        for (k, v) in vars {
            yml.push_str(&format!("  {k}: \"{}\"\n", v.display()));
        }
        self.append_yml(app, &yml);
    }

    pub fn append_yml(&self, app: &str, text: &str) {
        let path = self.apps_dir().join(app).join("inf.yml");
        let mut yml = std::fs::read_to_string(&path).unwrap_or_default();
        yml.push_str(text);
        std::fs::write(path, yml).unwrap();
    }

    /// Writes an app of our own: `inference.py` and `inf.yml`.
    pub fn write_app(&self, folder: &str, yml: &str, source: &str) {
        let dir = self.apps_dir().join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("inf.yml"), yml).unwrap();
        std::fs::write(dir.join("inference.py"), source).unwrap();
        std::fs::write(dir.join("requirements.txt"), "inferencesh\n").unwrap();
    }

    pub fn config(&self) -> EngineConfig {
        EngineConfig {
            apps_dir: self.apps_dir(),
            data_dir: self.data_dir(),
            cache_dir: self.root.path().join("cache"),
            python: Some(python()),
            preload: false,
            replicas: 1,
            concurrency_per_replica: 1,
            queue_capacity: 100,
            task_timeout: None,
            setup_timeout: Some(Duration::from_secs(60)),
            cancel_grace: Duration::from_secs(2),
            public_url: "http://127.0.0.1:9".into(),
            secrets: BTreeMap::new(),
            fork_workers: true,
            durability: Default::default(),
        }
    }

    pub async fn engine(&self) -> Engine {
        Engine::start(self.config()).await.expect("engine start")
    }

    /// After a shutdown (or drop): no process runs with its cwd in our
    /// folders (workers run in their app folder).
    pub async fn assert_no_processes(&self) {
        let root = std::fs::canonicalize(self.root.path()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let left = processes_in(&root);
            if left.is_empty() {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("processes left running in {}: {left:?}", root.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Pids of live processes whose cwd is under `root`.
fn processes_in(root: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) {
            if cwd.starts_with(root) && !is_zombie(pid) {
                out.push(pid);
            }
        }
    }
    out
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Whether a process is alive (not a zombie).
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

/// Polls until `pid` is gone.
pub async fn wait_dead(pid: u32) {
    within(Duration::from_secs(15), async {
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
}

/// Polls until `path` exists, then reads it.
pub async fn wait_file(path: &Path) -> String {
    within(LIMIT, async {
        loop {
            if let Ok(s) = std::fs::read_to_string(path) {
                if !s.is_empty() {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
}

/// `fut`, or a panic naming the limit.
pub async fn within<F: Future>(limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?}"),
    }
}

pub fn run(app: &str, function: Option<&str>, input: Value) -> RunRequest {
    RunRequest {
        function: function.map(Into::into),
        input,
        ..RunRequest::new(app.parse().expect("an app reference"))
    }
}

pub async fn submit(engine: &Engine, req: RunRequest) -> TaskView {
    within(LIMIT, engine.submit(req)).await.expect("submit")
}

/// Waits for the end of a task (bounded).
pub async fn finished(engine: &Engine, id: &str) -> TaskView {
    let view = within(LIMIT, engine.wait(id, Some(LIMIT))).await.unwrap();
    assert!(
        view.record.status.is_terminal(),
        "task {id} did not end: {:?}",
        view.record
    );
    view
}

/// Waits (through `subscribe`) until the task has `status`.
pub async fn reach(engine: &Engine, id: &str, status: TaskStatus) -> TaskView {
    let mut rx = engine.subscribe(id).await.unwrap();
    within(LIMIT, async {
        while let Some(view) = rx.recv().await {
            if view.record.status == status {
                return view;
            }
            assert!(
                !view.record.status.is_terminal(),
                "task ended with {:?} before reaching {status:?}: {:?}",
                view.record.status,
                view.record.error
            );
        }
        panic!("subscription closed before {status:?}");
    })
    .await
}

pub fn log_text(view: &TaskView) -> String {
    view.logs
        .iter()
        .map(|l| l.content.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn shutdown(engine: &Engine) {
    within(
        Duration::from_secs(60),
        engine.shutdown(Duration::from_secs(5)),
    )
    .await;
}
