//! Everything that can go wrong, with real Python workers: apps that do not
//! load, setups and calls that raise, workers that die mid-call.

mod common;

use std::time::Duration;

use common::*;
use infsh_protocol::{FailureKind, LoadFailureKind, SetupFailureKind};
use infsh_worker::{LogStream, Worker, WorkerConfig, WorkerError};
use serde_json::json;
use tokio::sync::mpsc;

async fn start_err(cfg: WorkerConfig) -> WorkerError {
    let (idle, _) = mpsc::unbounded_channel();
    match within(START_TIMEOUT, Worker::start(cfg, idle)).await {
        Ok((worker, _)) => panic!("started pid {}", worker.pid()),
        Err(e) => e,
    }
}

#[tokio::test]
async fn load_failures() {
    let app = TestApp::new(Some("import definitely_not_a_module\n"));
    match start_err(app.config()).await {
        WorkerError::LoadFailed(f) => {
            assert_eq!(f.kind, LoadFailureKind::ImportError);
            assert!(f.error.contains("definitely_not_a_module"), "{}", f.error);
            assert!(!f.traceback.is_empty());
        }
        other => panic!("expected LoadFailed, got {other}"),
    }

    let app = TestApp::new(None);
    match start_err(app.config()).await {
        WorkerError::LoadFailed(f) => assert_eq!(f.kind, LoadFailureKind::NoInferencePy),
        other => panic!("expected LoadFailed, got {other}"),
    }

    let app = TestApp::new(Some("x = 1\n"));
    match start_err(app.config()).await {
        WorkerError::LoadFailed(f) => assert_eq!(f.kind, LoadFailureKind::NoAppClass),
        other => panic!("expected LoadFailed, got {other}"),
    }
}

#[tokio::test]
async fn death_before_ready_is_exited_during_startup() {
    let app = TestApp::new(Some(
        "import os, sys\nprint('dying at import', file=sys.stderr, flush=True)\nos._exit(7)\n",
    ));
    match start_err(app.config()).await {
        WorkerError::Exited {
            status,
            during,
            stderr_tail,
        } => {
            assert_eq!(status.to_string(), "exit status 7");
            assert_eq!(during, "startup");
            assert!(
                stderr_tail.iter().any(|l| l == "dying at import"),
                "{stderr_tail:?}"
            );
        }
        other => panic!("expected Exited, got {other}"),
    }
}

#[tokio::test]
async fn bad_interpreter_and_app_folder() {
    let app = TestApp::new(Some(APP));
    let mut cfg = app.config();
    cfg.python = "/nonexistent/python".into();
    assert!(matches!(start_err(cfg).await, WorkerError::Spawn { .. }));

    let mut cfg = app.config();
    cfg.app_dir = app.dir.path().join("missing");
    assert!(matches!(start_err(cfg).await, WorkerError::AppDir { .. }));

    // Not an infsh worker at all: a Python that exits at once.
    let mut cfg = app.config();
    cfg.python = "/bin/false".into();
    match start_err(cfg).await {
        WorkerError::Exited { status, during, .. } => {
            assert_eq!(status.code(), Some(1));
            assert_eq!(during, "startup");
        }
        other => panic!("expected Exited, got {other}"),
    }
}

#[tokio::test]
async fn setup_failures_leave_the_worker_usable() {
    let app = TestApp::new(Some(APP));
    let s = app.start().await;

    // Calls before any setup.
    let (events, _rx) = mpsc::unbounded_channel();
    match within(
        OP_TIMEOUT,
        s.worker
            .call(req("early", "echo", json!({})), events.clone()),
    )
    .await
    {
        Err(WorkerError::CallFailed(f)) => assert_eq!(f.kind, FailureKind::NotSetUp),
        other => panic!("expected not_set_up, got {other:?}"),
    }

    let (logs, mut log_rx) = mpsc::unbounded_channel();
    match within(
        OP_TIMEOUT,
        s.worker.setup(json!({"fail": true}), json!({}), logs),
    )
    .await
    {
        Err(WorkerError::SetupFailed(f)) => {
            assert_eq!(f.kind, SetupFailureKind::App);
            assert!(f.error.contains("setup was told to fail"), "{}", f.error);
            assert!(!f.traceback.is_empty());
        }
        other => panic!("expected SetupFailed, got {other:?}"),
    }
    // The traceback travels in the answer only, not also in the setup's
    // logs: hosts show it once.
    let lines = drain(&mut log_rx);
    assert!(
        !lines
            .iter()
            .any(|l| l.stream == LogStream::Stderr && l.line.contains("setup was told to fail")),
        "{lines:?}"
    );

    let (logs, _) = mpsc::unbounded_channel();
    match within(
        OP_TIMEOUT,
        s.worker
            .setup(json!({"fail": "not a bool"}), json!({}), logs),
    )
    .await
    {
        Err(WorkerError::SetupFailed(f)) => assert_eq!(f.kind, SetupFailureKind::Config),
        other => panic!("expected SetupFailed, got {other:?}"),
    }

    // Two setups at once are serialized; the last one wins.
    let (logs, _) = mpsc::unbounded_channel();
    let (a, b) = tokio::join!(
        s.worker
            .setup(json!({"fail": true}), json!({}), logs.clone()),
        s.worker.setup(json!({}), json!({}), logs)
    );
    assert!(matches!(a, Err(WorkerError::SetupFailed(_))));
    b.unwrap();
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
async fn app_exceptions_and_bad_input_fail_only_the_call() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    let (events, mut rx) = mpsc::unbounded_channel();
    match within(
        OP_TIMEOUT,
        s.worker
            .call(req("b", "boom", json!({"text": "bang"})), events.clone()),
    )
    .await
    {
        Err(WorkerError::CallFailed(f)) => {
            assert_eq!(f.kind, FailureKind::App);
            assert_eq!(f.id.as_str(), "b");
            assert!(f.error.starts_with("ValueError"), "{}", f.error);
            assert!(f.error.contains("boom: bang"));
            assert!(f.traceback.contains("Traceback"), "{}", f.traceback);
        }
        other => panic!("expected CallFailed, got {other:?}"),
    }
    let lines: Vec<_> = log_lines(&drain(&mut rx))
        .into_iter()
        .map(|l| l.line.clone())
        .collect();
    assert!(
        !lines.iter().any(|l| l.contains("boom: bang")),
        "the traceback is in the answer, not also in the call's logs: {lines:?}"
    );

    match within(
        OP_TIMEOUT,
        s.worker
            .call(req("i", "echo", json!({"delay": "soon"})), events.clone()),
    )
    .await
    {
        Err(WorkerError::CallFailed(f)) => {
            assert_eq!(f.kind, FailureKind::Input);
            assert_eq!(f.errors[0].loc, "delay");
        }
        other => panic!("expected input failure, got {other:?}"),
    }
    match within(
        OP_TIMEOUT,
        s.worker.call(req("u", "nope", json!({})), events.clone()),
    )
    .await
    {
        Err(WorkerError::CallFailed(f)) => assert_eq!(f.kind, FailureKind::UnknownFunction),
        other => panic!("expected unknown_function, got {other:?}"),
    }
    let out = within(
        OP_TIMEOUT,
        s.worker
            .call(req("ok", "echo", json!({"text": "still here"})), events),
    )
    .await
    .unwrap();
    assert_eq!(out.output.to_value()["text"], "still here");
}

#[tokio::test]
async fn exit_mid_call_fails_every_pending_call() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    let (events, mut rx) = mpsc::unbounded_channel();
    let worker = s.worker.clone();
    let bystander_events = events.clone();
    let bystander = tokio::spawn(async move {
        worker
            .call(
                req("slow", "sleep", json!({"seconds": 60})),
                bystander_events,
            )
            .await
    });
    wait_for_line(&mut rx, "started sleep").await;

    let err = within(
        OP_TIMEOUT,
        s.worker
            .call(req("x", "crash", json!({"how": "exit"})), events.clone()),
    )
    .await
    .unwrap_err();
    match &err {
        WorkerError::Exited {
            status,
            during,
            stderr_tail,
        } => {
            assert_eq!(status.to_string(), "exit status 3");
            assert_eq!(status.code(), Some(3));
            assert_eq!(during, "call crash");
            assert!(
                stderr_tail.iter().any(|l| l == "about to die"),
                "{stderr_tail:?}"
            );
        }
        other => panic!("expected Exited, got {other}"),
    }
    assert!(err.to_string().contains("exit status 3"), "{err}");
    match within(OP_TIMEOUT, bystander).await.unwrap() {
        Err(WorkerError::Exited { during, .. }) => assert_eq!(during, "call sleep"),
        other => panic!("expected Exited, got {other:?}"),
    }
    // Later operations fail at once.
    match within(
        OP_TIMEOUT,
        s.worker.call(req("y", "echo", json!({})), events),
    )
    .await
    {
        Err(WorkerError::Exited { status, .. }) => assert_eq!(status.code(), Some(3)),
        other => panic!("expected Exited, got {other:?}"),
    }
    let (logs, _) = mpsc::unbounded_channel();
    assert!(matches!(
        s.worker.setup(json!({}), json!({}), logs).await,
        Err(WorkerError::Exited { .. })
    ));
    assert!(matches!(
        s.worker.cancel(&"y".into()).await,
        Err(WorkerError::Exited { .. })
    ));
    assert!(wait_group_gone(s.worker.pid()).await);
}

#[tokio::test]
async fn sigkill_mid_call_names_the_signal() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    let (events, _rx) = mpsc::unbounded_channel();
    match within(
        OP_TIMEOUT,
        s.worker
            .call(req("k", "crash", json!({"how": "kill"})), events),
    )
    .await
    {
        Err(WorkerError::Exited { status, during, .. }) => {
            assert_eq!(status.to_string(), "signal 9 (SIGKILL)");
            assert_eq!(status.signal(), Some(9));
            assert_eq!(during, "call crash");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_on_the_channel_is_a_protocol_error() {
    for how in ["json", "oversize"] {
        let app = TestApp::new(Some(APP));
        let s = app.start_set_up().await;
        let (events, _rx) = mpsc::unbounded_channel();
        match within(
            OP_TIMEOUT,
            s.worker
                .call(req("g", "garbage", json!({"how": how})), events.clone()),
        )
        .await
        {
            Err(WorkerError::Protocol(msg)) => {
                let expected = if how == "json" {
                    "hello"
                } else {
                    "over the limit"
                };
                assert!(msg.contains(expected), "{how}: {msg}");
            }
            other => panic!("{how}: expected a protocol error, got {other:?}"),
        }
        // The worker was killed; later operations get the same error.
        assert!(wait_group_gone(s.worker.pid()).await, "{how}");
        match s.worker.call(req("h", "echo", json!({})), events).await {
            Err(WorkerError::Protocol(_)) => {}
            other => panic!("{how}: expected a protocol error, got {other:?}"),
        }
        let status = within(OP_TIMEOUT, s.worker.shutdown(Duration::from_secs(1)))
            .await
            .unwrap();
        assert_eq!(status.signal(), Some(9), "{how}: {status}");
    }
}
