//! Test-only stand-ins for the engine's outside world, so the scheduler's
//! rules are tested in-process (`scheduler/tests/`): a scripted fake worker
//! behind the worker seam (`fake_worker.rs`), an in-memory task store
//! (`memory_store.rs`), and [`Harness`], an [`Engine`] started on them with
//! one hosted app, `local/fake`.
//!
//! The tests run on tokio's paused clock (`start_paused = true`): time only
//! moves when every task waits on a timer, and then jumps to the next one,
//! so a 30 s backoff takes no real time and the order of events is
//! deterministic. A test waits for what it expects (a task's end, a
//! published status) or moves its scenario on to a point in
//! time with [`Harness::at`], which returns once everything due before then
//! has happened.

pub(crate) mod fake_worker;
pub(crate) mod memory_store;

use std::sync::Arc;
use std::time::Duration;

use infsh_store::{LogEntry, TaskRecord, TaskStatus};
use serde_json::Value;

use crate::api::{AppHealth, EngineConfig, EngineError, RunRequest, TaskView};
use crate::handle::AppStatus;
use crate::Engine;
use fake_worker::Fake;
use memory_store::MemoryStore;

/// A wait that fails the test if what it waits for never comes: on the
/// paused clock it ends at once when nothing else can happen.
pub(crate) const NEVER: Duration = Duration::from_secs(24 * 3600);

/// The one app the harness hosts.
pub(crate) const APP: &str = "local/fake";

/// An engine on fakes, with the fakes' record and script.
pub(crate) struct Harness {
    pub engine: Engine,
    pub fake: Arc<Fake>,
    _dir: tempfile::TempDir,
}

/// The config of a harness before `configure` changes it: one replica,
/// one call at a time, no timeouts, a cancel grace of 5 s.
fn base_config(dir: &std::path::Path) -> EngineConfig {
    EngineConfig {
        apps_dir: dir.join("apps"),
        data_dir: dir.join("data"),
        cache_dir: dir.join("cache"),
        python: Some("/nonexistent/python".into()),
        preload: false,
        replicas: 1,
        concurrency_per_replica: 1,
        queue_capacity: 100,
        task_timeout: None,
        setup_timeout: None,
        cancel_grace: Duration::from_secs(5),
        public_url: "http://127.0.0.1:1".into(),
        secrets: Default::default(),
        node: None,
        fork_workers: false,
        durability: infsh_store::Durability::Full,
        placement: Default::default(),
        webhook_secret: None,
        files: None,
        versions_on_engines: false,
    }
}

/// An app folder under `root/apps` for the fake worker: its code is never
/// run, only its `inf.yml` (if given) is read.
fn write_fake_app(root: &std::path::Path, folder: &str, inf_yml: Option<&str>) {
    let app = root.join("apps").join(folder);
    std::fs::create_dir_all(&app).expect("app folder");
    std::fs::write(app.join("inference.py"), "# served by the fake worker\n")
        .expect("inference.py");
    if let Some(yml) = inf_yml {
        std::fs::write(app.join("inf.yml"), yml).expect("inf.yml");
    }
}

impl Harness {
    pub async fn start(configure: impl FnOnce(&mut EngineConfig)) -> Harness {
        Harness::start_on(Fake::new(), configure).await
    }

    /// [`Harness::start`] on a fake scripted beforehand (for what happens
    /// at boot, with `preload`).
    pub async fn start_on(fake: Arc<Fake>, configure: impl FnOnce(&mut EngineConfig)) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        write_fake_app(dir.path(), "fake", None);
        let mut config = base_config(dir.path());
        configure(&mut config);
        Harness::launch(fake, config, dir).await
    }

    /// An engine on `fake` hosting these apps (`(folder, inf.yml)`; with
    /// `name: x` the app is `local/x`), with `placement` as its engine.yml.
    pub async fn start_apps(
        fake: Arc<Fake>,
        apps: &[(&str, &str)],
        placement: &str,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        for (folder, yml) in apps {
            write_fake_app(dir.path(), folder, Some(yml));
        }
        let mut config = base_config(dir.path());
        config.placement =
            infsh_placement::EngineConfig::parse(placement, std::path::Path::new("engine.yml"))
                .expect("the engine config parses");
        configure(&mut config);
        Harness::launch(fake, config, dir).await
    }

    /// [`Harness::start`] on a store that already holds tasks (those of
    /// a previous run of the server, which the start recovers).
    pub async fn start_on_store(store: Arc<MemoryStore>) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        write_fake_app(dir.path(), "fake", None);
        let config = base_config(dir.path());
        Harness::launch_on(Fake::new(), config, dir, store).await
    }

    /// Starts the engine on `fake` with an in-memory store; `dir` (the apps
    /// and data folders) lives as long as the harness.
    async fn launch(fake: Arc<Fake>, config: EngineConfig, dir: tempfile::TempDir) -> Harness {
        Harness::launch_on(fake, config, dir, Arc::new(MemoryStore::default())).await
    }

    async fn launch_on(
        fake: Arc<Fake>,
        config: EngineConfig,
        dir: tempfile::TempDir,
        store: Arc<MemoryStore>,
    ) -> Harness {
        let engine = Engine::start_with(config, Arc::new(fake.clone()), Some(store))
            .await
            .expect("the engine starts");
        Harness {
            engine,
            fake,
            _dir: dir,
        }
    }

    /// Submits a run of `app` with this input (the fake's script).
    pub async fn submit_to(&self, app: &str, input: Value) -> String {
        let request = RunRequest {
            input,
            ..RunRequest::new(app.parse().expect("an app reference"))
        };
        self.try_submit(request).await.expect("submitted")
    }

    /// Submits `request` (a run of the app's `run` with `request(input)`).
    pub async fn try_submit(&self, request: RunRequest) -> Result<String, EngineError> {
        Ok(self.engine.submit(request).await?.record.id)
    }

    /// Submits a run with this input (the fake's script) and setup `{}`.
    pub async fn submit(&self, input: Value) -> String {
        self.try_submit(request(input)).await.expect("submitted")
    }

    /// Submits a run with this input and setup config.
    pub async fn submit_with_setup(&self, input: Value, setup: Value) -> String {
        let request = RunRequest {
            setup: Some(setup),
            ..request(input)
        };
        self.try_submit(request).await.expect("submitted")
    }

    /// Waits for the task's end.
    pub async fn ended(&self, id: &str) -> TaskRecord {
        let view = tokio::time::timeout(NEVER, self.engine.wait(id, None))
            .await
            .unwrap_or_else(|_| panic!("task {id} never ended"))
            .expect("a known task");
        assert!(view.record.status.is_terminal(), "{:?}", view.record);
        view.record
    }

    /// The task's logs (their text).
    pub async fn logs(&self, id: &str) -> Vec<String> {
        let view: TaskView = self.engine.get(id).await.expect("a known task");
        view.logs.into_iter().map(|l: LogEntry| l.content).collect()
    }

    /// Cancels the task; returns its status then.
    pub async fn cancel(&self, id: &str) -> TaskStatus {
        self.engine
            .cancel(id)
            .await
            .expect("cancelled")
            .record
            .status
    }

    /// Moves the scenario on to `secs` after the fake was made: returns
    /// once the paused clock got there, so once everything due before
    /// then has happened.
    pub async fn at(&self, secs: f64) {
        let at = self.fake.epoch() + Duration::from_secs_f64(secs);
        assert!(at >= tokio::time::Instant::now(), "{secs}s is past");
        tokio::time::sleep_until(at).await;
    }

    /// The app's scheduler status as it published it last.
    pub fn status(&self) -> AppStatus {
        self.handle().status()
    }

    /// Waits until the app's published status satisfies `done`.
    pub async fn status_until(&self, what: &str, done: impl Fn(&AppStatus) -> bool) {
        let mut status = self.handle().status.clone();
        let waited = tokio::time::timeout(NEVER, status.wait_for(|s| done(s))).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "the app never got {what}: {:?}",
            self.status()
        );
    }

    pub fn health(&self) -> AppHealth {
        self.engine
            .app_health(&APP.parse().expect("APP is an app reference"))
            .expect("the app is hosted")
    }

    fn handle(&self) -> crate::handle::AppHandle {
        self.engine
            .inner
            .apps
            .by_id(APP)
            .expect("the app is hosted")
    }
}

/// A run of the app's default function (`run`) with this input.
pub(crate) fn request(input: Value) -> RunRequest {
    RunRequest {
        input,
        ..RunRequest::new(APP.parse().expect("APP is an app reference"))
    }
}
