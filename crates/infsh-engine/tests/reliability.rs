//! Reliability under faults, with real Python workers and a real SQLite
//! store: workers that crash mid-task (and the apps beside them that must not
//! notice), crash loops and failing setups backed off and recovering by
//! themselves, an app that cannot load, setup and task timeouts from
//! `inf.yml`, secrets kept out of everything stored, and a shutdown that lets
//! running tasks finish.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use infsh_engine::{
    restart_backoff, AppHealth, AppState, Engine, EngineError, RunRequest, REDACTED,
};
use infsh_store::{LogType, TaskStatus};
use serde_json::json;

fn health(engine: &Engine, app: &str) -> AppHealth {
    engine.app_health(&app.parse().unwrap()).unwrap()
}

/// The lines of a file the apps append to (empty while it does not exist).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `<word> <unix seconds>` lines with this word, as seconds.
fn times(path: &Path, word: &str) -> Vec<f64> {
    lines(path)
        .iter()
        .filter_map(|l| l.strip_prefix(word)?.trim().parse().ok())
        .collect()
}

/// The documented backoff after 1, 2, 3... consecutive failures.
const BACKOFF: [f64; 4] = [0.5, 1.0, 2.0, 4.0];

/// If the app got to start its `sleep` child (it writes the pid file once
/// it did), waits until that child is gone.
async fn child_gone(pid_file: &Path) {
    if let Ok(pid) = std::fs::read_to_string(pid_file) {
        wait_dead(pid.trim().parse().unwrap()).await;
    }
}

/// Asserts that attempt n+1 came at least the backoff after n failures
/// after attempt n.
fn assert_backed_off(at: &[f64]) {
    for (n, pair) in at.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let backoff = BACKOFF[n];
        assert!(
            gap >= backoff - 0.05,
            "attempt {} came {gap:.3}s after attempt {}, before the {backoff}s backoff: {at:?}",
            n + 2,
            n + 1
        );
    }
}

#[test]
fn backoff_doubles_from_half_a_second_to_thirty() {
    let secs: Vec<f64> = (0..=9).map(|n| restart_backoff(n).as_secs_f64()).collect();
    assert_eq!(
        secs,
        vec![0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    );
    assert_eq!(restart_backoff(u32::MAX), Duration::from_secs(30));
}

const STEADY_PY: &str = r#"
import asyncio
import os

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class GateInput(BaseAppInput):
    release_file: str


class Empty(BaseAppInput):
    pass


class Out(BaseAppOutput):
    pid: int


class App(BaseApp):
    async def gate(self, input_data: GateInput) -> Out:
        """Returns once release_file exists."""
        print("waiting at the gate", flush=True)
        while not os.path.exists(input_data.release_file):
            await asyncio.sleep(0.02)
        return Out(pid=os.getpid())

    async def ok(self, input_data: Empty) -> Out:
        return Out(pid=os.getpid())
"#;

/// Has `tests/worker-dies` log its setups and calls; returns the log.
fn worker_dies_log(fx: &Fixture) -> PathBuf {
    let log = fx.path().join("worker-dies.log");
    fx.add_env("worker-dies", &[("WORKER_DIES_LOG", &log)]);
    log
}

/// Item 1: a worker killed mid-task (SIGSEGV, SIGKILL, `os._exit`) fails
/// that task with an error naming how it died; the next task runs on a new
/// worker, with setup run again.
#[tokio::test]
async fn a_worker_dying_mid_task_fails_it_and_the_next_task_gets_a_new_set_up_worker() {
    let fx = Fixture::new(&["worker-dies"]);
    let log = worker_dies_log(&fx);
    let engine = fx.engine().await;
    let first = submit(&engine, run("tests/worker-dies", Some("ok"), json!({}))).await;
    let first = finished(&engine, &first.record.id)
        .await
        .record
        .output
        .unwrap()
        .into_value();
    assert_eq!(first["setups"], 1);
    let mut pids = vec![first["pid"].as_u64().unwrap()];

    for (function, needle) in [
        ("segfault", "signal 11 (SIGSEGV)"),
        ("sigkill", "signal 9 (SIGKILL)"),
        ("exit3", "exit status 3"),
    ] {
        let crash = submit(&engine, run("tests/worker-dies", Some(function), json!({}))).await;
        let done = finished(&engine, &crash.record.id).await;
        assert_eq!(done.record.status, TaskStatus::Failed, "{function}");
        let error = done.record.error.clone().unwrap();
        assert_eq!(
            error,
            format!("the worker exited ({needle}) while running the task"),
            "{function}"
        );
        // Whoever sees the task fail sees the app unhealthy with that error.
        let h = health(&engine, "tests/worker-dies");
        assert_eq!(h.state, AppState::Unhealthy, "{function}");
        assert_eq!(h.last_error.as_deref(), Some(error.as_str()));

        let done = completed(&engine, run("tests/worker-dies", Some("ok"), json!({}))).await;
        let output = done.record.output.unwrap().into_value();
        assert_eq!(output["setups"], 1, "a new process ran setup once");
        let pid = output["pid"].as_u64().unwrap();
        assert!(!pids.contains(&pid), "a new worker after {function}");
        pids.push(pid);
        let h = health(&engine, "tests/worker-dies");
        assert_eq!((h.state, h.failures), (AppState::Ready, 0), "{h:?}");
        assert_eq!(h.last_error, None);
    }
    let setups: Vec<String> = lines(&log)
        .into_iter()
        .filter(|l| l.starts_with("setup "))
        .collect();
    assert_eq!(setups.len(), 4, "setup ran once per worker: {setups:?}");
    let metrics = engine.metrics();
    assert_eq!(metrics.workers_crashed, 3);
    assert_eq!(metrics.workers_started, 4);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

/// Item 1, with `--concurrency 2`: every task running on a worker that
/// dies fails with the same error; the death counts once.
#[tokio::test]
async fn every_task_on_a_worker_that_dies_fails_with_the_same_error() {
    let fx = Fixture::new(&["worker-dies"]);
    let mut config = fx.config();
    config.concurrency_per_replica = 2;
    let engine = Engine::start(config).await.unwrap();
    let linger = submit(&engine, run("tests/worker-dies", Some("linger"), json!({}))).await;
    let mut rx = engine.subscribe(&linger.record.id).await.unwrap();
    within(LIMIT, async {
        while let Some(view) = rx.recv().await {
            if log_text(&view).contains("lingering") {
                return;
            }
        }
        panic!("the call never started");
    })
    .await;
    let exit = submit(&engine, run("tests/worker-dies", Some("exit3"), json!({}))).await;
    let error = "the worker exited (exit status 3) while running the task";
    for id in [&exit.record.id, &linger.record.id] {
        let done = finished(&engine, id).await;
        assert_eq!(done.record.status, TaskStatus::Failed);
        assert_eq!(done.record.error.as_deref(), Some(error));
    }
    let h = health(&engine, "tests/worker-dies");
    assert_eq!((h.state, h.failures), (AppState::Unhealthy, 1));
    assert_eq!(engine.metrics().workers_crashed, 1);
    completed(&engine, run("tests/worker-dies", Some("ok"), json!({}))).await;
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

/// Item 1: another app's tasks keep completing during and after a crash,
/// on the same worker.
#[tokio::test]
async fn other_apps_keep_serving_while_one_app_crashes() {
    let fx = Fixture::new(&["worker-dies"]);
    fx.write_app("steady", "namespace: tests\nname: steady\n", STEADY_PY);
    let engine = fx.engine().await;
    let release = fx.path().join("release");
    let gate = submit(
        &engine,
        run(
            "tests/steady",
            Some("gate"),
            json!({"release_file": release.to_string_lossy()}),
        ),
    )
    .await;
    reach(&engine, &gate.record.id, TaskStatus::Running).await;

    let crash = submit(
        &engine,
        run("tests/worker-dies", Some("segfault"), json!({})),
    )
    .await;
    let crashed = finished(&engine, &crash.record.id).await;
    assert!(crashed.record.error.unwrap().contains("SIGSEGV"));
    // Queued behind the running one, while the other app is unhealthy.
    let after: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                submit(&engine, run("tests/steady", Some("ok"), json!({})))
                    .await
                    .record
                    .id,
            );
        }
        ids
    };
    let states: Vec<(String, AppState)> = engine
        .readiness()
        .into_iter()
        .map(|r| (r.id, r.state))
        .collect();
    assert!(
        states.contains(&("tests/steady".into(), AppState::Ready)),
        "{states:?}"
    );
    assert_eq!(
        engine.get(&gate.record.id).await.unwrap().record.status,
        TaskStatus::Running,
        "the other app's running task is untouched"
    );
    std::fs::write(&release, "go").unwrap();
    let gate = finished(&engine, &gate.record.id).await;
    assert_eq!(gate.record.status, TaskStatus::Completed);
    let pid = gate.record.output.unwrap().into_value()["pid"].clone();
    for id in &after {
        let done = finished(&engine, id).await;
        assert_eq!(done.record.status, TaskStatus::Completed);
        assert_eq!(
            done.record.output.unwrap().into_value()["pid"],
            pid,
            "same worker"
        );
    }
    // And the crashed app recovers on its own worker.
    completed(&engine, run("tests/worker-dies", Some("ok"), json!({}))).await;
    let h = health(&engine, "tests/steady");
    assert_eq!((h.state, h.failures), (AppState::Ready, 0));
    assert_eq!(
        engine.metrics().workers_started,
        3,
        "steady: 1, worker-dies: 2"
    );
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

/// Item 2: a worker that dies at every task is restarted only after a
/// backoff that doubles; tasks wait in the queue meanwhile; the app is
/// unhealthy with its last error and the worker's last stderr lines until a
/// task succeeds, which resets the backoff.
#[tokio::test]
async fn a_crash_loop_is_backed_off_exponentially_and_a_success_resets_it() {
    let fx = Fixture::new(&["worker-dies"]);
    let log = worker_dies_log(&fx);
    let engine = fx.engine().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            submit(&engine, run("tests/worker-dies", Some("exit3"), json!({})))
                .await
                .record
                .id,
        );
    }
    let error = "the worker exited (exit status 3) while running the task";
    for id in &ids {
        let done = finished(&engine, id).await;
        assert_eq!(done.record.status, TaskStatus::Failed);
        assert_eq!(done.record.error.as_deref(), Some(error));
        assert!(log_text(&done).contains("about to exit"));
    }
    // Each waiting task was told why it waits.
    let last = engine.get(&ids[3]).await.unwrap();
    assert!(
        last.logs.iter().any(|l| l.log_type == LogType::Serve
            && l.content
                .starts_with(&format!("the app is unhealthy ({error})"))),
        "{}",
        log_text(&last)
    );
    let calls = times(&log, "exit3");
    assert_eq!(calls.len(), 4, "one worker per task, no more: {calls:?}");
    assert_backed_off(&calls);

    let h = health(&engine, "tests/worker-dies");
    assert_eq!(h.state, AppState::Unhealthy);
    assert_eq!(h.failures, 4);
    assert_eq!(h.last_error.as_deref(), Some(error));
    assert!(
        h.traceback
            .as_deref()
            .unwrap_or("")
            .contains("about to exit"),
        "{h:?}"
    );
    assert!(h.failed_at_ms.is_some());
    let retry_in = h.retry_in_secs.expect("backing off");
    assert!(retry_in > 0.0 && retry_in <= 4.0, "{retry_in}");
    let ready = engine.readiness();
    assert_eq!(ready[0].state, AppState::Unhealthy);
    assert_eq!(ready[0].last_error.as_deref(), Some(error));
    assert_eq!(engine.apps()[0].state, AppState::Unhealthy);
    assert_eq!(engine.metrics().workers_crashed, 4);

    // A task that succeeds ends the loop and resets the backoff.
    completed(&engine, run("tests/worker-dies", Some("ok"), json!({}))).await;
    let h = health(&engine, "tests/worker-dies");
    assert_eq!(
        (h.state, h.failures, h.last_error),
        (AppState::Ready, 0, None)
    );
    let die = submit(&engine, run("tests/worker-dies", Some("exit3"), json!({}))).await;
    finished(&engine, &die.record.id).await;
    let h = health(&engine, "tests/worker-dies");
    assert_eq!(h.failures, 1, "counted afresh");
    assert!(h.retry_in_secs.unwrap_or(0.0) <= 0.5, "{h:?}");
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

/// Writes the app `tests/<name>` from `source`, which records its attempts
/// in the file `TEST_LOG` and fails until the file `TEST_MARKER` exists;
/// returns both paths.
fn failing_until_marker(fx: &Fixture, name: &str, source: &str) -> (PathBuf, PathBuf) {
    let log = fx.path().join(format!("{name}.log"));
    let marker = fx.path().join(format!("{name}.ready"));
    fx.write_app(name, &format!("namespace: tests\nname: {name}\n"), source);
    fx.add_env(name, &[("TEST_LOG", &log), ("TEST_MARKER", &marker)]);
    (log, marker)
}

const FLAKY_SETUP_PY: &str = r#"
import os
import time

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class Empty(BaseAppInput):
    pass


class Out(BaseAppOutput):
    ok: bool


class App(BaseApp):
    async def setup(self):
        with open(os.environ["TEST_LOG"], "a") as f:
            f.write(f"setup {time.time()}\n")
        print("loading weights", flush=True)
        if not os.path.exists(os.environ["TEST_MARKER"]):
            self._fail()

    def _fail(self):
        raise RuntimeError("weights not downloaded yet")

    async def run(self, input_data: Empty) -> Out:
        return Out(ok=True)
"#;

/// Item 2: a setup that fails until a marker file appears. Each attempt
/// fails the one task that ran it (error, and the traceback in its logs);
/// the others wait through a doubling backoff; once the marker exists the
/// app recovers by itself.
#[tokio::test]
async fn a_failing_setup_is_backed_off_and_the_app_recovers_once_it_succeeds() {
    let fx = Fixture::new(&[]);
    let (log, marker) = failing_until_marker(&fx, "flaky-setup", FLAKY_SETUP_PY);
    let engine = fx.engine().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            submit(&engine, run("tests/flaky-setup", None, json!({})))
                .await
                .record
                .id,
        );
    }
    let error = "setup failed: RuntimeError: weights not downloaded yet";
    for id in &ids {
        let done = finished(&engine, id).await;
        assert_eq!(done.record.status, TaskStatus::Failed);
        assert_eq!(done.record.error.as_deref(), Some(error));
        assert!(done
            .logs
            .iter()
            .any(|l| l.log_type == LogType::Setup && l.content == "loading weights"));
        assert!(
            done.logs.iter().any(|l| l.log_type == LogType::Setup
                && l.content.contains("Traceback")
                && l.content.contains("_fail")),
            "{}",
            log_text(&done)
        );
    }
    let setups = times(&log, "setup");
    assert_eq!(setups.len(), 3, "{setups:?}");
    assert_backed_off(&setups);

    let h = health(&engine, "tests/flaky-setup");
    assert_eq!(h.state, AppState::Unhealthy);
    assert_eq!(h.failures, 3);
    assert_eq!(h.last_error.as_deref(), Some(error));
    let traceback = h.traceback.clone().unwrap_or_default();
    assert!(
        traceback.contains("Traceback") && traceback.contains("weights not downloaded yet"),
        "{traceback}"
    );
    assert_eq!(
        engine.readiness()[0].last_error.as_deref(),
        Some(error),
        "GET /ready"
    );
    // GET /apps/{id} still answers (the functions are known), unhealthy.
    let detail = engine
        .app(&"tests/flaky-setup".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(detail.summary.state, AppState::Unhealthy);

    std::fs::write(&marker, "ok").unwrap();
    completed(&engine, run("tests/flaky-setup", None, json!({}))).await;
    let h = health(&engine, "tests/flaky-setup");
    assert_eq!(
        (h.state, h.failures, h.last_error),
        (AppState::Ready, 0, None)
    );
    assert_eq!(times(&log, "setup").len(), 4);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

const LATE_IMPORT_PY: &str = r#"
import os
import time

with open(os.environ["TEST_LOG"], "a") as f:
    f.write(f"import {time.time()}\n")
if not os.path.exists(os.environ["TEST_MARKER"]):
    raise ImportError("a dependency is not installed yet")

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class Empty(BaseAppInput):
    pass


class Out(BaseAppOutput):
    ok: bool


class App(BaseApp):
    async def run(self, input_data: Empty) -> Out:
        return Out(ok=True)
"#;

/// Item 2: an app that cannot load is not restarted for every request:
/// during its backoff a run is refused at once ("retrying in Ns"), one
/// retry is made when the backoff ends, and the app recovers by itself.
#[tokio::test]
async fn an_app_that_cannot_load_is_refused_at_once_while_backing_off_and_recovers() {
    let fx = Fixture::new(&[]);
    let (log, marker) = failing_until_marker(&fx, "late-import", LATE_IMPORT_PY);
    let engine = fx.engine().await;
    let refused = |result: Result<_, EngineError>| match result {
        Err(EngineError::AppUnavailable {
            message, traceback, ..
        }) => (message, traceback.unwrap_or_default()),
        other => panic!("{other:?}"),
    };
    let (message, traceback) = refused(
        engine
            .submit(run("tests/late-import", None, json!({})))
            .await,
    );
    assert!(
        message.contains("a dependency is not installed yet"),
        "{message}"
    );
    assert!(traceback.contains("Traceback"), "{traceback}");
    assert_eq!(times(&log, "import").len(), 1);

    // At once, without starting anything.
    let (message, _) = refused(
        engine
            .submit(run("tests/late-import", None, json!({})))
            .await,
    );
    assert!(message.ends_with("; retrying in 1s"), "{message}");
    assert_eq!(times(&log, "import").len(), 1, "no new attempt yet");
    let h = health(&engine, "tests/late-import");
    assert_eq!((h.state, h.failures), (AppState::Unhealthy, 1));

    // The promised retry comes by itself, after the backoff.
    until(LIMIT, "the retry", || {
        (times(&log, "import").len() == 2).then_some(())
    })
    .await;
    assert_backed_off(&times(&log, "import"));
    until(LIMIT, "the retry's failure", || {
        (health(&engine, "tests/late-import").failures == 2).then_some(())
    })
    .await;

    std::fs::write(&marker, "").unwrap();
    let _ = engine.app(&"tests/late-import".parse().unwrap()).await;
    until(LIMIT, "recovery", || {
        (health(&engine, "tests/late-import").state == AppState::Ready).then_some(())
    })
    .await;
    completed(&engine, run("tests/late-import", None, json!({}))).await;
    assert_eq!(health(&engine, "tests/late-import").failures, 0);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

/// Item 3: `infsh: {setup_timeout}` in inf.yml limits setup (over the
/// server's default): the task fails with a timeout, the stuck worker and
/// its children are stopped, and the next task gets a new worker.
#[tokio::test]
async fn a_setup_past_the_apps_setup_timeout_fails_and_the_stuck_worker_is_replaced() {
    let fx = Fixture::new(&[]);
    fx.add_fixture_as(
        "hangs",
        "slow-setup",
        "namespace: tests\nname: slow-setup\ninfsh:\n  setup_timeout: 2\n",
    );
    let mut config = fx.config();
    config.setup_timeout = Some(Duration::from_secs(120));
    let engine = Engine::start(config).await.unwrap();
    let pid_file = fx.path().join("setup-child.pid");
    let stuck = RunRequest {
        setup: Some(json!({"hang_pid_file": pid_file.to_string_lossy()})),
        ..run("tests/slow-setup", Some("ok"), json!({}))
    };
    let stuck = submit(&engine, stuck).await;
    let done = finished(&engine, &stuck.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Failed);
    assert_eq!(
        done.record.error.as_deref(),
        Some("setup timed out after 2s")
    );
    let logs = log_text(&done);
    assert!(logs.contains("setup hangs"), "{logs}");
    assert!(
        logs.contains("setup timed out after 2s; stopping the worker"),
        "{logs}"
    );
    child_gone(&pid_file).await;
    let h = health(&engine, "tests/slow-setup");
    assert_eq!(
        (h.state, h.last_error.as_deref()),
        (AppState::Unhealthy, Some("setup timed out after 2s"))
    );

    completed(&engine, run("tests/slow-setup", Some("ok"), json!({}))).await;
    assert_eq!(engine.metrics().workers_started, 2);
    assert_eq!(health(&engine, "tests/slow-setup").state, AppState::Ready);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

/// Item 3: the task timeout of inf.yml (`timeout:` or
/// `infsh: {task_timeout}`) wins over the server's default, and a run's own
/// `timeout` wins over both; the stuck worker is replaced each time.
#[tokio::test]
async fn task_timeouts_come_from_the_run_then_inf_yml_then_the_server() {
    let fx = Fixture::new(&[]);
    fx.add_fixture_as(
        "hangs",
        "t-top",
        "namespace: tests\nname: t-top\ntimeout: 1\n",
    );
    fx.add_fixture_as(
        "hangs",
        "t-block",
        "namespace: tests\nname: t-block\ninfsh:\n  task_timeout: \"1.5s\"\n",
    );
    fx.add_fixture_as("hangs", "t-none", "namespace: tests\nname: t-none\n");
    let mut config = fx.config();
    config.task_timeout = Some(Duration::from_millis(1200));
    let engine = Engine::start(config).await.unwrap();
    let cases = [
        ("tests/t-top", None, "timed out after 1s"),
        ("tests/t-block", None, "timed out after 1.5s"),
        ("tests/t-none", None, "timed out after 1.2s"),
        ("tests/t-top", Some(2.5), "timed out after 2.5s"),
    ];
    let mut tasks = Vec::new();
    for (n, (app, timeout, _)) in cases.iter().enumerate() {
        let pid_file = fx.path().join(format!("hang-{n}.pid"));
        let req = RunRequest {
            timeout_secs: *timeout,
            ..run(
                app,
                Some("async_hang"),
                json!({"pid_file": pid_file.to_string_lossy()}),
            )
        };
        tasks.push((submit(&engine, req).await.record.id, pid_file));
    }
    for ((id, pid_file), (app, _, error)) in tasks.iter().zip(cases) {
        let done = finished(&engine, id).await;
        assert_eq!(done.record.status, TaskStatus::Failed, "{app}");
        assert_eq!(done.record.error.as_deref(), Some(error), "{app}");
        child_gone(pid_file).await;
    }
    for app in ["tests/t-top", "tests/t-block", "tests/t-none"] {
        completed(&engine, run(app, Some("ok"), json!({}))).await;
        let h = health(&engine, app);
        assert_eq!(
            (h.state, h.failures),
            (AppState::Ready, 0),
            "a timeout is not the app's failure"
        );
    }
    assert_eq!(
        engine.metrics().workers_started,
        7,
        "3 apps, 4 replaced workers"
    );
    assert_eq!(engine.metrics().workers_crashed, 0);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

/// Item 3, with `--concurrency 2`: a task past its timeout stops the
/// worker it shares; the other task on it fails saying so, and neither
/// counts as the app's failure.
#[tokio::test]
async fn a_timeout_on_a_shared_worker_fails_the_other_task_without_blaming_the_app() {
    let fx = Fixture::new(&[]);
    fx.add_fixture_as("hangs", "shared", "namespace: tests\nname: shared\n");
    let mut config = fx.config();
    config.concurrency_per_replica = 2;
    let engine = Engine::start(config).await.unwrap();
    let other_pid = fx.path().join("other.pid");
    let other = submit(
        &engine,
        run(
            "tests/shared",
            Some("async_hang"),
            json!({"pid_file": other_pid.to_string_lossy()}),
        ),
    )
    .await;
    wait_file(&other_pid).await;
    let late = RunRequest {
        timeout_secs: Some(1.0),
        ..run(
            "tests/shared",
            Some("async_hang"),
            json!({"pid_file": fx.path().join("late.pid").to_string_lossy()}),
        )
    };
    let late = submit(&engine, late).await;
    let done = finished(&engine, &late.record.id).await;
    assert_eq!(done.record.error.as_deref(), Some("timed out after 1s"));
    let done = finished(&engine, &other.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Failed);
    assert_eq!(
        done.record.error.as_deref(),
        Some(
            "the worker was stopped while running the task: another task on it timed out after 1s"
        )
    );
    child_gone(&other_pid).await;
    let h = health(&engine, "tests/shared");
    assert_eq!(h.failures, 0, "{h:?}");
    assert_ne!(h.state, AppState::Unhealthy);
    assert_eq!(engine.metrics().workers_crashed, 0);
    completed(&engine, run("tests/shared", Some("ok"), json!({}))).await;
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

/// Item 7: a secret an app prints, logs, returns or raises is stored and
/// shown as `[redacted]`: not in the task records, their logs, the app's
/// health, nor anywhere in the SQLite files.
#[tokio::test]
async fn secrets_never_reach_task_records_logs_or_the_database() {
    let secret = "tok-9f8e7d6c5b4a-very-secret";
    let fx = Fixture::new(&["leaky"]);
    fx.add_fixture_as(
        "leaky",
        "leaky-setup",
        "namespace: tests\nname: leaky-setup\nsecrets:\n  - key: LEAKY_TOKEN\nenv:\n  LEAKY_SETUP_FAILS: \"1\"\n",
    );
    let mut config = fx.config();
    config.secrets.insert("LEAKY_TOKEN".into(), secret.into());
    let engine = Engine::start(config).await.unwrap();

    let leak = submit(&engine, run("tests/leaky", Some("leak"), json!({}))).await;
    let leak = finished(&engine, &leak.record.id).await;
    assert_eq!(leak.record.status, TaskStatus::Completed);
    assert_eq!(
        leak.record.output.clone().unwrap().into_value()["text"],
        format!("the token is {REDACTED}")
    );
    assert_eq!(
        leak.record.output.clone().unwrap().into_value()["nested"],
        json!({REDACTED: [REDACTED]})
    );
    let logs = log_text(&leak);
    for line in ["setup sees", "stdout", "stderr", "logging"] {
        assert!(
            logs.contains(&format!("{line} {REDACTED}")),
            "{line}: {logs}"
        );
    }
    let boom = submit(&engine, run("tests/leaky", Some("boom"), json!({}))).await;
    let boom = finished(&engine, &boom.record.id).await;
    assert_eq!(
        boom.record.error.as_deref(),
        Some(format!("ValueError: bad token {REDACTED}").as_str())
    );
    assert!(log_text(&boom).contains("Traceback"));
    let setup = submit(&engine, run("tests/leaky-setup", Some("leak"), json!({}))).await;
    let setup = finished(&engine, &setup.record.id).await;
    assert_eq!(
        setup.record.error.as_deref(),
        Some(format!("setup failed: RuntimeError: cannot log in with {REDACTED}").as_str())
    );
    let h = health(&engine, "tests/leaky-setup");
    assert!(h.last_error.unwrap().contains(REDACTED));
    assert!(h.traceback.unwrap().contains(REDACTED));

    let mut everything = Vec::new();
    for id in [&leak.record.id, &boom.record.id, &setup.record.id] {
        everything.push(serde_json::to_string(&engine.get(id).await.unwrap()).unwrap());
    }
    everything.push(serde_json::to_string(&engine.health()).unwrap());
    everything.push(serde_json::to_string(&engine.readiness()).unwrap());
    everything
        .push(serde_json::to_string(&engine.list(None, None, 100, None).await.unwrap()).unwrap());
    for text in &everything {
        assert!(!text.contains(secret), "{text}");
    }
    shutdown(&engine).await;
    drop(engine);
    let mut db_files = 0;
    for entry in std::fs::read_dir(fx.data_dir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("infsh.db") {
            db_files += 1;
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{name} holds the secret"
            );
        }
    }
    assert!(db_files >= 1);
    fx.assert_no_processes().await;
}

/// Item 8 (engine side): a shutdown refuses new runs at once, lets the
/// running task finish within the grace, keeps the queued one queued, runs
/// `unload`, and leaves no process.
#[tokio::test]
async fn shutdown_refuses_runs_lets_running_tasks_finish_and_unloads() {
    let fx = Fixture::new(&["slow"]);
    let marker = fx.path().join("unloaded");
    fx.add_env("slow", &[("UNLOAD_MARKER", &marker)]);
    let engine = fx.engine().await;
    let started = fx.path().join("started");
    let running = submit(
        &engine,
        run(
            "tests/slow",
            Some("nap"),
            json!({"seconds": 1.5, "started_file": started.to_string_lossy()}),
        ),
    )
    .await;
    let queued = submit(
        &engine,
        run("tests/slow", Some("nap"), json!({"seconds": 0})),
    )
    .await;
    until(LIMIT, "the nap to start", || started.exists().then_some(())).await;
    let stopping = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.shutdown(Duration::from_secs(30)).await })
    };
    // An unknown app is refused as such until the shutdown begins.
    within(LIMIT, async {
        loop {
            let probe = engine.submit(run("no/such-app", None, json!({}))).await;
            match probe {
                Err(EngineError::ShuttingDown) => break,
                Err(EngineError::UnknownApp { .. }) => tokio::task::yield_now().await,
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert!(matches!(
        engine
            .submit(run("tests/slow", Some("nap"), json!({"seconds": 0})))
            .await,
        Err(EngineError::ShuttingDown)
    ));
    within(LIMIT, stopping).await.unwrap();
    let done = engine.get(&running.record.id).await.unwrap();
    assert_eq!(
        done.record.status,
        TaskStatus::Completed,
        "{:?}",
        done.record.error
    );
    assert_eq!(
        engine.get(&queued.record.id).await.unwrap().record.status,
        TaskStatus::Queued
    );
    assert_eq!(lines(&marker).len(), 1, "unload ran once");
    fx.assert_no_processes().await;
}
