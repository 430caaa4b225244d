//! Cancelling calls and killing workers: nothing may survive, grandchildren
//! included, and nothing may hang.

mod common;

use std::time::{Duration, Instant};

use common::*;
use infsh_protocol::FailureKind;
use infsh_worker::WorkerError;
use serde_json::json;
use tokio::sync::mpsc;

#[tokio::test]
async fn cancel_async_and_plain_calls() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    for function in ["sleep", "busy"] {
        let (events, mut rx) = mpsc::unbounded_channel();
        let worker = s.worker.clone();
        let id = format!("cancel-{function}");
        let call = tokio::spawn({
            let id = id.clone();
            async move {
                worker
                    .call(req(&id, function, json!({"seconds": 60})), events)
                    .await
            }
        });
        let mut before = wait_for_line(&mut rx, &format!("started {function}")).await;
        let started = Instant::now();
        within(OP_TIMEOUT, s.worker.cancel(&id.as_str().into()))
            .await
            .unwrap();
        match within(OP_TIMEOUT, call).await.unwrap() {
            Err(WorkerError::CallFailed(f)) => {
                assert_eq!(f.kind, FailureKind::Cancelled, "{function}");
                assert_eq!(f.id.as_str(), id);
            }
            other => panic!("{function}: expected cancelled, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        // on_cancel ran while the call was in flight: its output is the call's.
        before.extend(drain(&mut rx));
        let lines: Vec<_> = log_lines(&before)
            .into_iter()
            .map(|l| l.line.clone())
            .collect();
        assert!(
            lines.iter().any(|l| l == "on_cancel called"),
            "{function}: {lines:?}"
        );
    }
    // Unknown and finished ids are fine.
    s.worker.cancel(&"never-existed".into()).await.unwrap();
    // Still usable.
    let (events, _rx) = mpsc::unbounded_channel();
    let out = within(
        OP_TIMEOUT,
        s.worker
            .call(req("after", "echo", json!({"text": "ok"})), events),
    )
    .await
    .unwrap();
    assert_eq!(out.output.to_value()["text"], "ok");
}

#[tokio::test]
async fn kill_takes_the_whole_group_grandchildren_included() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    let pgid = s.worker.pid();
    let (events, mut rx) = mpsc::unbounded_channel();
    let out = within(
        OP_TIMEOUT,
        s.worker.call(req("sp", "spawn", json!({})), events.clone()),
    )
    .await
    .unwrap();
    let grandchild = out.output.to_value()["pid"].as_u64().unwrap() as u32;
    assert!(!pid_gone(grandchild));

    let worker = s.worker.clone();
    let pending = tokio::spawn(async move {
        worker
            .call(req("hang", "busy", json!({"seconds": 60})), events)
            .await
    });
    wait_for_line(&mut rx, "started busy").await;

    within(OP_TIMEOUT, s.worker.kill(Duration::from_secs(5))).await;
    match within(OP_TIMEOUT, pending).await.unwrap() {
        Err(WorkerError::Exited { status, during, .. }) => {
            // The worker died of the SIGTERM; the grandchild ignores it and
            // is SIGKILLed with the rest of the group.
            assert_eq!(status.signal(), Some(15), "{status}");
            assert_eq!(during, "call busy");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
    assert!(
        wait_group_gone(pgid).await,
        "process group {pgid} still has members"
    );
    assert!(
        wait_pid_gone(grandchild).await,
        "grandchild {grandchild} survived"
    );
    // Idempotent.
    within(OP_TIMEOUT, s.worker.kill(Duration::from_secs(1))).await;
}

#[tokio::test]
async fn kill_escalates_to_sigkill_after_the_grace_period() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    let (events, _rx) = mpsc::unbounded_channel();
    within(
        OP_TIMEOUT,
        s.worker.call(req("t", "ignore_term", json!({})), events),
    )
    .await
    .unwrap();
    let started = Instant::now();
    within(OP_TIMEOUT, s.worker.kill(Duration::from_millis(500))).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(wait_group_gone(s.worker.pid()).await);
    let (logs, _) = mpsc::unbounded_channel();
    match s.worker.setup(json!({}), json!({}), logs).await {
        Err(WorkerError::Exited { status, .. }) => {
            assert_eq!(status.to_string(), "signal 9 (SIGKILL)")
        }
        other => panic!("expected Exited, got {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_of_a_stuck_worker_kills_it_after_the_grace() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    let (events, mut rx) = mpsc::unbounded_channel();
    let worker = s.worker.clone();
    let pending = tokio::spawn(async move {
        worker
            .call(req("hang", "block", json!({"seconds": 60})), events)
            .await
    });
    wait_for_line(&mut rx, "started block").await;
    let started = Instant::now();
    let status = within(OP_TIMEOUT, s.worker.shutdown(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(status.to_string(), "signal 9 (SIGKILL)");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    match within(OP_TIMEOUT, pending).await.unwrap() {
        Err(WorkerError::Exited { status, during, .. }) => {
            assert_eq!(status.signal(), Some(9));
            assert_eq!(during, "call block");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
    assert!(wait_group_gone(s.worker.pid()).await);
}

#[tokio::test]
async fn dropping_the_last_handle_kills_the_group() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    let pgid = s.worker.pid();
    let (events, _rx) = mpsc::unbounded_channel();
    let out = within(
        OP_TIMEOUT,
        s.worker.call(req("sp", "spawn", json!({})), events),
    )
    .await
    .unwrap();
    let grandchild = out.output.to_value()["pid"].as_u64().unwrap() as u32;
    let clone = s.worker.clone();
    drop(s.worker);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!group_gone(pgid), "a clone still holds it");
    drop(clone);
    assert!(
        wait_group_gone(pgid).await,
        "process group {pgid} survived its last handle"
    );
    assert!(wait_pid_gone(grandchild).await);
}

#[tokio::test]
async fn dropping_a_start_in_progress_kills_the_worker() {
    // An app that never becomes ready.
    let app = TestApp::new(Some(
        "import time, os\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(600)\n",
    ));
    let (idle, _) = mpsc::unbounded_channel();
    let start = infsh_worker::Worker::start(app.config(), idle);
    assert!(tokio::time::timeout(Duration::from_secs(3), start)
        .await
        .is_err());
    let pid: u32 = std::fs::read_to_string(app.dir.path().join("pid"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        wait_group_gone(pid).await,
        "worker {pid} outlived its start"
    );
}
