//! Helpers for the engine's integration tests: fixture apps copied into a
//! temporary apps folder, an engine configured with the test interpreter,
//! and a check that no process is left running in the test's folders. The
//! interpreter, fixture copies, bounded waits and process checks come from
//! `infsh-testkit`, re-exported here.

#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infsh_engine::{Engine, EngineConfig, RunRequest, TaskView};
use infsh_store::TaskStatus;
pub use infsh_testkit::{
    add_env, alive, copy_fixture_as, copy_fixtures, eventually, processes_in, python, until,
    wait_dead, within,
};
use serde_json::Value;
use tempfile::TempDir;

/// Generous: cold Python starts on a busy 2-core machine.
pub const LIMIT: Duration = Duration::from_secs(90);

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
        copy_fixtures(&fixture.apps_dir(), apps);
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
        add_env(&self.apps_dir().join(app), vars);
    }

    /// Serves the fixture app `fixture` again as `folder`, with `yml` as its
    /// inf.yml (another name, other settings).
    pub fn add_fixture_as(&self, fixture: &str, folder: &str, yml: &str) {
        copy_fixture_as(&self.apps_dir(), fixture, folder, yml);
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
            node: None,
            fork_workers: true,
            durability: Default::default(),
            placement: Default::default(),
            webhook_secret: None,
            files: None,
            versions_on_engines: false,
        }
    }

    pub async fn engine(&self) -> Engine {
        Engine::start(self.config()).await.expect("engine start")
    }

    /// After a shutdown (or drop): no process runs with its cwd in our
    /// folders (workers run in their app folder), within 15 s.
    pub async fn assert_no_processes(&self) {
        let mut left = Vec::new();
        let gone = eventually(Duration::from_secs(15), || {
            left = processes_in(self.root.path());
            left.is_empty()
        })
        .await;
        assert!(
            gone,
            "processes left running in {}: {left:?}",
            self.root.path().display()
        );
    }
}

/// Polls until `path` exists with some content, then reads it.
pub async fn wait_file(path: &Path) -> String {
    until(LIMIT, &format!("{}", path.display()), || {
        std::fs::read_to_string(path).ok().filter(|s| !s.is_empty())
    })
    .await
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

/// Submits `req`, waits for its end and asserts that it completed (its
/// error shown if not).
pub async fn completed(engine: &Engine, req: RunRequest) -> TaskView {
    let task = submit(engine, req).await;
    let done = finished(engine, &task.record.id).await;
    assert_eq!(
        done.record.status,
        TaskStatus::Completed,
        "{:?}",
        done.record.error
    );
    done
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
