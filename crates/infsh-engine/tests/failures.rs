//! Tasks that do not simply complete: a full queue, cancellation (queued,
//! running, and a call that ignores it), worker crashes, timeouts, app
//! exceptions and failing setups. Every test also checks that the engine
//! keeps serving afterwards and that no process is left behind.

mod common;

use std::time::Duration;

use common::*;
use infsh_engine::{AppState, EngineError, RunRequest};
use infsh_store::{LogType, TaskStatus};
use serde_json::json;

fn pid_file_input(fx: &Fixture, name: &str) -> (std::path::PathBuf, serde_json::Value) {
    let path = fx.path().join(name);
    let input = json!({"pid_file": path.to_string_lossy()});
    (path, input)
}

async fn child_pid(path: &std::path::Path) -> u32 {
    wait_file(path).await.trim().parse().unwrap()
}

#[tokio::test]
async fn a_full_queue_refuses_and_stores_nothing() {
    let fx = Fixture::new(&["hangs"]);
    let mut config = fx.config();
    config.queue_capacity = 1;
    let engine = infsh_engine::Engine::start(config).await.unwrap();
    let (_, input) = pid_file_input(&fx, "hang.pid");
    let hang = submit(&engine, run("tests/hangs", Some("async_hang"), input)).await;
    reach(&engine, &hang.record.id, TaskStatus::Running).await;
    let waiting = submit(&engine, run("tests/hangs", Some("ok"), json!({}))).await;
    assert_eq!(engine.readiness()[0].queued, 1);
    match engine
        .submit(run("tests/hangs", Some("ok"), json!({})))
        .await
    {
        Err(EngineError::QueueFull {
            capacity,
            retry_after,
            ..
        }) => {
            assert_eq!(capacity, 1);
            assert!(retry_after >= Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        engine.list(None, None, 10, None).await.unwrap().items.len(),
        2
    );
    assert_eq!(engine.metrics().tasks_rejected_queue_full, 1);
    assert_eq!(engine.metrics().tasks_queued, 1);
    assert_eq!(engine.metrics().tasks_running, 1);

    engine.cancel(&hang.record.id).await.unwrap();
    let done = finished(&engine, &waiting.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Completed);
    assert_eq!(engine.readiness()[0].queued, 0);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn cancel_queued_and_running_tasks() {
    let fx = Fixture::new(&["hangs"]);
    let cancel_log = fx.path().join("cancel.log");
    fx.add_env("hangs", &[("INFSH_TEST_CANCEL_LOG", &cancel_log)]);
    let engine = fx.engine().await;
    let (pid_path, input) = pid_file_input(&fx, "async.pid");
    let running = submit(&engine, run("tests/hangs", Some("async_hang"), input)).await;
    reach(&engine, &running.record.id, TaskStatus::Running).await;
    let child = child_pid(&pid_path).await;
    let queued = submit(&engine, run("tests/hangs", Some("ok"), json!({}))).await;

    let cancelled = engine.cancel(&queued.record.id).await.unwrap();
    assert_eq!(
        cancelled.record.status,
        TaskStatus::Cancelled,
        "a queued task ends at once"
    );
    assert!(matches!(
        engine.cancel(&queued.record.id).await,
        Err(EngineError::TaskAlreadyEnded {
            status: TaskStatus::Cancelled,
            ..
        })
    ));

    let view = engine.cancel(&running.record.id).await.unwrap();
    assert!(
        matches!(
            view.record.status,
            TaskStatus::Cancelling | TaskStatus::Cancelled
        ),
        "{:?}",
        view.record.status
    );
    let done = finished(&engine, &running.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Cancelled);
    assert_eq!(std::fs::read_to_string(&cancel_log).unwrap(), "on_cancel\n");

    // A plain-def function is interrupted in its thread.
    let (_, input) = pid_file_input(&fx, "sync.pid");
    let sync = submit(&engine, run("tests/hangs", Some("sync_hang"), input)).await;
    reach(&engine, &sync.record.id, TaskStatus::Running).await;
    engine.cancel(&sync.record.id).await.unwrap();
    assert_eq!(
        finished(&engine, &sync.record.id).await.record.status,
        TaskStatus::Cancelled
    );

    // Cancellation did not cost the worker: the next call runs on it.
    completed(&engine, run("tests/hangs", Some("ok"), json!({}))).await;
    assert_eq!(engine.metrics().workers_started, 1);
    assert_eq!(engine.metrics().tasks_cancelled, 3);
    shutdown(&engine).await;
    wait_dead(child).await;
    fx.assert_no_processes().await;
}

const STUBBORN_PY: &str = r#"
import asyncio
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class Empty(BaseAppInput):
    pass


class Out(BaseAppOutput):
    ok: bool


class App(BaseApp):
    async def stubborn(self, input_data: Empty) -> Out:
        """Ignores cancellation."""
        print("stubborn started", flush=True)
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                print("ignoring cancel", flush=True)

    async def ok(self, input_data: Empty) -> Out:
        return Out(ok=True)
"#;

#[tokio::test]
async fn a_call_ignoring_cancel_is_killed_after_the_grace() {
    let fx = Fixture::new(&[]);
    fx.write_app(
        "stubborn",
        "namespace: tests\nname: stubborn\n",
        STUBBORN_PY,
    );
    let mut config = fx.config();
    config.cancel_grace = Duration::from_millis(500);
    let engine = infsh_engine::Engine::start(config).await.unwrap();
    let task = submit(&engine, run("tests/stubborn", Some("stubborn"), json!({}))).await;
    // Cancel once the function itself runs (not while its input is checked).
    let mut rx = engine.subscribe(&task.record.id).await.unwrap();
    within(LIMIT, async {
        while let Some(view) = rx.recv().await {
            if log_text(&view).contains("stubborn started") {
                return;
            }
        }
        panic!("the function never started");
    })
    .await;
    engine.cancel(&task.record.id).await.unwrap();
    let done = finished(&engine, &task.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Cancelled);
    let logs = log_text(&done);
    assert!(logs.contains("ignoring cancel"), "{logs}");
    assert!(logs.contains("did not stop after cancel"), "{logs}");
    completed(&engine, run("tests/stubborn", Some("ok"), json!({}))).await;
    assert_eq!(
        engine.metrics().workers_started,
        2,
        "the killed worker was replaced"
    );
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn a_worker_crash_fails_the_task_and_the_next_one_gets_a_new_worker() {
    let fx = Fixture::new(&["worker-dies"]);
    let engine = fx.engine().await;
    let crash = submit(&engine, run("tests/worker-dies", Some("exit3"), json!({}))).await;
    let done = finished(&engine, &crash.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Failed);
    let error = done.record.error.clone().unwrap();
    assert!(error.contains("exit status 3"), "{error}");
    assert!(log_text(&done).contains("about to exit"));

    let killed = submit(
        &engine,
        run("tests/worker-dies", Some("sigkill"), json!({})),
    )
    .await;
    let error = finished(&engine, &killed.record.id)
        .await
        .record
        .error
        .unwrap();
    assert!(error.contains("signal 9"), "{error}");

    let ok = submit(&engine, run("tests/worker-dies", Some("ok"), json!({}))).await;
    let done = finished(&engine, &ok.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Completed);
    assert_eq!(done.record.output.unwrap().into_value()["ok"], true);
    let metrics = engine.metrics();
    assert_eq!(metrics.workers_crashed, 2);
    assert_eq!(metrics.workers_started, 3);
    assert_eq!(engine.readiness()[0].state, AppState::Ready);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn a_task_past_its_timeout_fails_and_its_worker_is_replaced() {
    let fx = Fixture::new(&["hangs"]);
    let mut config = fx.config();
    config.task_timeout = Some(Duration::from_secs(1));
    let engine = infsh_engine::Engine::start(config).await.unwrap();
    let (pid_path, input) = pid_file_input(&fx, "t.pid");
    let req = RunRequest {
        timeout_secs: Some(1.5),
        ..run("tests/hangs", Some("async_hang"), input)
    };
    let task = submit(&engine, req).await;
    let done = finished(&engine, &task.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Failed);
    assert_eq!(done.record.error.as_deref(), Some("timed out after 1.5s"));
    // The whole process group went with the worker.
    wait_dead(child_pid(&pid_path).await).await;

    // The engine's default applies when the run sets none.
    let (_, input) = pid_file_input(&fx, "t2.pid");
    let task = submit(&engine, run("tests/hangs", Some("sync_hang"), input)).await;
    let done = finished(&engine, &task.record.id).await;
    assert_eq!(done.record.error.as_deref(), Some("timed out after 1s"));

    completed(&engine, run("tests/hangs", Some("ok"), json!({}))).await;
    assert_eq!(engine.metrics().workers_started, 3);
    assert_eq!(
        engine.metrics().workers_crashed,
        0,
        "a timeout is not a crash"
    );
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn app_exceptions_fail_the_task_with_a_traceback() {
    let fx = Fixture::new(&["fn-raises"]);
    let engine = fx.engine().await;
    let task = submit(&engine, run("tests/fn-raises", None, json!({"value": 3}))).await;
    let done = finished(&engine, &task.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Failed);
    assert_eq!(
        done.record.error.as_deref(),
        Some("ZeroDivisionError: division by zero")
    );
    let logs = log_text(&done);
    assert!(logs.contains("dividing by zero..."));
    assert!(
        done.logs.iter().any(|l| l.log_type == LogType::Task
            && l.content.contains("Traceback")
            && l.content.contains("_divide")),
        "{logs}"
    );
    completed(&engine, run("tests/fn-raises", Some("ok"), json!({}))).await;
    assert_eq!(
        engine.metrics().workers_started,
        1,
        "an exception does not cost the worker"
    );
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn a_failing_setup_fails_the_task_and_marks_the_app_unhealthy() {
    let fx = Fixture::new(&["setup-raises"]);
    let engine = fx.engine().await;
    for attempt in 1..=2 {
        let task = submit(&engine, run("tests/setup-raises", None, json!({}))).await;
        let done = finished(&engine, &task.record.id).await;
        assert_eq!(done.record.status, TaskStatus::Failed);
        assert_eq!(
            done.record.error.as_deref(),
            Some("setup failed: ValueError: setup exploded")
        );
        assert!(done
            .logs
            .iter()
            .any(|l| l.log_type == LogType::Setup && l.content == "setting up..."));
        assert!(done
            .logs
            .iter()
            .any(|l| l.log_type == LogType::Setup && l.content.contains("Traceback")));
        let ready = &engine.readiness()[0];
        assert_eq!(ready.state, AppState::Unhealthy);
        assert_eq!(ready.last_error.as_deref(), done.record.error.as_deref());
        assert_eq!(
            engine.metrics().workers_started,
            attempt,
            "each task starts afresh"
        );
    }
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}
