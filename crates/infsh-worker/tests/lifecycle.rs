//! A worker's normal life with a real Python worker: ready, setup, calls
//! (plain, streaming, concurrent, with files), logs, shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use infsh_worker::{CallEvent, LogStream, WorkerError};
use serde_json::json;
use tokio::sync::mpsc;

#[tokio::test]
async fn ready_lists_the_functions() {
    let app = TestApp::new(Some(APP));
    let mut s = app.start().await;
    let ready = &s.ready;
    assert_eq!(ready.protocol, infsh_protocol::PROTOCOL_VERSION);
    assert_eq!(ready.pid, s.worker.pid());
    assert_eq!(ready.app_class, "App");
    assert!(ready.has_on_cancel);
    assert!(ready.python.starts_with("3."), "{}", ready.python);
    let names: Vec<_> = ready.functions.iter().map(|f| f.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name");
    for expected in ["echo", "shout", "count", "chatty", "crash", "busy", "big"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let echo = ready.function("echo").unwrap();
    assert!(echo.is_async && !echo.streaming && !echo.accepts_metadata);
    assert_eq!(echo.description(), "Echo the text.");
    assert!(echo.input_schema().unwrap()["properties"]["text"].is_object());
    let count = ready.function("count").unwrap();
    assert!(count.streaming);
    let shout = ready.function("shout").unwrap();
    assert!(!shout.is_async && shout.accepts_metadata);
    assert!(ready.setup_schema["properties"]["fail"].is_object());

    // Output before any operation goes to the idle logs.
    let idle = drain(&mut s.idle);
    assert!(
        idle.iter()
            .any(|l| l.line == "importing the app" && l.stream == LogStream::Stdout),
        "{idle:?}"
    );
    within(OP_TIMEOUT, s.worker.shutdown(Duration::from_secs(10)))
        .await
        .unwrap();
}

/// Starting a worker compiles the runtime's bytecode beside it, in a process
/// of its own, so the next worker of this state folder imports no source.
#[tokio::test]
async fn starting_a_worker_compiles_the_runtime_ahead() {
    let app = TestApp::new(Some(APP));
    let _s = app.start().await;
    let runtime_root = app.state.path().join("runtime");
    let dir = until(START_TIMEOUT, "the runtime's bytecode", || {
        let dirs: Vec<_> = std::fs::read_dir(&runtime_root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        let marked = std::fs::read_dir(&dirs[0]).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".bytecode-")
        });
        marked.then(|| dirs[0].clone())
    })
    .await;
    let pyc = dir.join("infsh_worker/__pycache__");
    let names: Vec<String> = std::fs::read_dir(&pyc)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("runtime.") && n.ends_with(".pyc")),
        "{names:?}"
    );
}

#[tokio::test]
async fn setup_then_calls() {
    let app = TestApp::new(Some(APP));
    let s = app.start().await;
    let (logs_tx, mut logs) = mpsc::unbounded_channel();
    let seconds = within(OP_TIMEOUT, s.worker.setup(json!({}), json!({}), logs_tx))
        .await
        .unwrap();
    assert!(seconds >= 0.0);
    // Setup's output is complete when setup returns.
    let lines = drain(&mut logs);
    assert!(
        lines
            .iter()
            .any(|l| l.line == "setting up" && l.stream == LogStream::Stdout),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.line == "setup warning" && l.stream == LogStream::Stderr),
        "{lines:?}"
    );

    let (events, _rx) = mpsc::unbounded_channel();
    let out = within(
        OP_TIMEOUT,
        s.worker
            .call(req("c1", "echo", json!({"text": "hi"})), events.clone()),
    )
    .await
    .unwrap();
    assert_eq!(out.output.to_value()["text"], "hi");
    assert!(out.files.is_empty());
    assert!(out.seconds >= 0.0);

    // Plain `def` with metadata.
    let out = within(
        OP_TIMEOUT,
        s.worker
            .call(req("c2", "shout", json!({"text": "hi"})), events.clone()),
    )
    .await
    .unwrap();
    assert_eq!(out.output.to_value()["text"], "HI c2");

    // Environment and cwd as the protocol says.
    let out = within(
        OP_TIMEOUT,
        s.worker.call(req("c3", "env", json!({})), events.clone()),
    )
    .await
    .unwrap();
    let output = out.output.to_value();
    let text = output["text"].as_str().unwrap();
    let cwd = std::fs::canonicalize(app.dir.path()).unwrap();
    let cache = std::path::absolute(app.state.path().join("file-cache")).unwrap();
    for expected in [
        "INFSH_TEST_MARKER=yes".to_string(),
        "INFSH_PROTOCOL_FD=3".into(),
        "PYTHONUNBUFFERED=1".into(),
        format!("FILE_CACHE_DIR={}", cache.display()),
        format!("cwd={}", cwd.display()),
    ] {
        assert!(text.contains(&expected), "{expected} not in {text}");
    }

    // A File in the output is listed with its pointer.
    let out = within(
        OP_TIMEOUT,
        s.worker.call(req("c4", "image", json!({})), events),
    )
    .await
    .unwrap();
    assert_eq!(out.files.len(), 1, "{out:?}");
    let file = &out.files[0];
    assert_eq!(file.pointer, "/image");
    let path = file.path.as_deref().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"not really a png");
    let _ = std::fs::remove_file(path);

    let status = within(OP_TIMEOUT, s.worker.shutdown(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.to_string(), "exit status 0");
    assert!(wait_group_gone(s.worker.pid()).await);
}

#[tokio::test]
async fn streaming_sends_snapshots_before_the_result() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    let (events, mut rx) = mpsc::unbounded_channel();
    let out = within(
        OP_TIMEOUT,
        s.worker.call(req("s1", "count", json!({"n": 4})), events),
    )
    .await
    .unwrap();
    assert_eq!(out.output.to_value()["numbers"], json!([0, 1, 2, 3]));
    let events = drain(&mut rx);
    let snapshots: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Snapshot { output, .. } => Some(output["numbers"].as_array().unwrap().len()),
            _ => None,
        })
        .collect();
    // The first yield at once, then some of the others in order (the
    // four come within the worker's 10 ms snapshot interval, so which of
    // them are sent and which are folded into a later one or into the
    // result depends on timing).
    assert_eq!(snapshots.first(), Some(&1), "{snapshots:?}");
    assert!(
        snapshots.windows(2).all(|w| w[0] < w[1]) && snapshots.iter().all(|n| *n <= 4),
        "{snapshots:?}"
    );
    // What was printed before a yield arrives before the snapshot of that
    // yield or a later one (lines printed after it may arrive earlier than
    // the snapshot too: the pipes and the socket are not ordered with each
    // other).
    let order: Vec<String> = events
        .iter()
        .map(|e| match e {
            CallEvent::Log(l) => l.line.clone(),
            CallEvent::Snapshot { output, .. } => {
                format!("snapshot {}", output["numbers"].as_array().unwrap().len())
            }
        })
        .collect();
    assert_eq!(order.len(), 4 + snapshots.len(), "{order:?}");
    let at = |s: String| order.iter().position(|o| *o == s).unwrap();
    for n in &snapshots {
        for i in 0..*n {
            assert!(
                at(format!("yielding {i}")) < at(format!("snapshot {n}")),
                "{order:?}"
            );
        }
    }
}

#[tokio::test]
async fn call_logs_are_complete_when_the_result_arrives() {
    let app = TestApp::new(Some(APP));
    let mut s = app.start_set_up().await;
    drain(&mut s.idle);
    for round in 0..5 {
        let (events, mut rx) = mpsc::unbounded_channel();
        let id = format!("chatty-{round}");
        let out = within(
            OP_TIMEOUT,
            s.worker
                .call(req(&id, "chatty", json!({"lines": 2000})), events),
        )
        .await
        .unwrap();
        assert_eq!(out.output.to_value()["text"], "done");
        // Nothing more is awaited: everything must be there already.
        let events = drain(&mut rx);
        let lines = log_lines(&events);
        let stdout: Vec<_> = lines
            .iter()
            .filter(|l| l.stream == LogStream::Stdout)
            .map(|l| l.line.as_str())
            .collect();
        let stderr: Vec<_> = lines
            .iter()
            .filter(|l| l.stream == LogStream::Stderr)
            .map(|l| l.line.as_str())
            .collect();
        let mut expected: Vec<String> = (0..2000).map(|i| format!("out {i}")).collect();
        expected.push("no newline at the end".into());
        assert_eq!(stdout, expected, "round {round}");
        let expected_err: Vec<String> = (0..2000).step_by(4).map(|i| format!("err {i}")).collect();
        assert_eq!(stderr, expected_err, "round {round}");
    }
    // None of it leaked to the idle logs.
    assert!(drain(&mut s.idle).is_empty());
}

#[tokio::test]
async fn concurrent_calls_are_routed_by_id() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    let started = Instant::now();
    let calls = (0..8).map(|i| {
        let worker = s.worker.clone();
        async move {
            let (events, _rx) = mpsc::unbounded_channel();
            let text = format!("call {i}");
            let input = json!({"text": text, "delay": 1.0 - i as f64 * 0.1});
            let out = worker
                .call(req(&format!("id-{i}"), "echo", input), events)
                .await
                .unwrap();
            assert_eq!(out.output.to_value()["text"], text);
        }
    });
    within(OP_TIMEOUT, futures_join_all(calls)).await;
    // Run concurrently: well under the 5.2 s they would take one by one.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // An id already in flight is refused without disturbing the first call.
    let (events, mut rx) = mpsc::unbounded_channel();
    let worker = s.worker.clone();
    let first = tokio::spawn(async move {
        worker
            .call(
                req("dup", "echo", json!({"text": "a", "delay": 0.5})),
                events,
            )
            .await
    });
    wait_for_line(&mut rx, "started echo").await;
    let (events, _rx2) = mpsc::unbounded_channel();
    let err = s
        .worker
        .call(req("dup", "echo", json!({})), events)
        .await
        .unwrap_err();
    assert!(matches!(err, WorkerError::DuplicateCallId(_)), "{err}");
    assert_eq!(
        within(OP_TIMEOUT, first)
            .await
            .unwrap()
            .unwrap()
            .output
            .to_value()["text"],
        "a"
    );
}

/// `join_all` without a dependency on the futures crate.
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test]
async fn big_messages_spill_both_ways() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    let (events, _rx) = mpsc::unbounded_channel();
    // Output of 3 MB: the worker spills it.
    let out = within(
        OP_TIMEOUT,
        s.worker
            .call(req("b1", "big", json!({"size": 3_000_000})), events.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        out.output.to_value()["text"].as_str().unwrap().len(),
        3_000_000
    );
    // Input of 2 MB: the host spills it; it comes back spilled too.
    let text = "y".repeat(2_000_000);
    let out = within(
        OP_TIMEOUT,
        s.worker
            .call(req("b2", "big", json!({"text": text, "size": 5})), events),
    )
    .await
    .unwrap();
    assert_eq!(
        out.output.to_value()["text"].as_str().unwrap().len(),
        2_000_005
    );
    assert!(app.spill_files().is_empty(), "{:?}", app.spill_files());
}

#[tokio::test]
async fn shutdown_runs_unload_and_reports_its_error() {
    let app = TestApp::new(Some(APP));
    let mut s = app.start().await;
    let (logs, _) = mpsc::unbounded_channel();
    within(
        OP_TIMEOUT,
        s.worker
            .setup(json!({"fail_unload": true}), json!({}), logs),
    )
    .await
    .unwrap();
    drain(&mut s.idle);
    let status = within(OP_TIMEOUT, s.worker.shutdown(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let idle = drain(&mut s.idle);
    assert!(idle.iter().any(|l| l.line == "unloading"), "{idle:?}");
    assert!(
        idle.iter()
            .any(|l| l.line.starts_with("unload failed: RuntimeError")
                && l.line.contains("unload broke")),
        "{idle:?}"
    );
    // Gone now: later operations say so, shutdown and kill stay harmless.
    let (events, _rx) = mpsc::unbounded_channel();
    let err = s
        .worker
        .call(req("late", "echo", json!({})), events)
        .await
        .unwrap_err();
    match err {
        WorkerError::Exited { status, during, .. } => {
            assert!(status.success());
            assert_eq!(during, "call echo");
        }
        other => panic!("expected Exited, got {other}"),
    }
    assert_eq!(
        s.worker.shutdown(Duration::from_secs(1)).await.unwrap(),
        status
    );
    within(OP_TIMEOUT, s.worker.kill(Duration::from_secs(1))).await;
}

#[tokio::test]
async fn a_line_without_end_arrives_in_bounded_pieces() {
    let app = TestApp::new(Some(APP));
    let s = app.start_set_up().await;
    let (events, mut rx) = mpsc::unbounded_channel();
    let size = 5 * infsh_worker::MAX_LINE_BYTES + 123;
    within(
        OP_TIMEOUT,
        s.worker
            .call(req("f", "flood", json!({"size": size})), events),
    )
    .await
    .unwrap();
    let events = drain(&mut rx);
    let pieces = log_lines(&events);
    assert!(pieces
        .iter()
        .all(|l| l.line.len() <= infsh_worker::MAX_LINE_BYTES));
    assert_eq!(pieces.iter().map(|l| l.line.len()).sum::<usize>(), size);
    assert_eq!(pieces.len(), 6);
}
