//! The Node worker (node/infsh-worker) through the same `Worker` API as the
//! Python one: ready, setup, calls, snapshots, logs, cancel with onCancel, a
//! crash, shutdown. The app is tests/fixtures/apps/node-functions, its npm
//! environment built with infsh-env (`npm ci`; the npm registry must be
//! reachable) into a folder under the target dir shared with the CLI's
//! app_node.rs.

mod common;

use std::path::Path;

use common::*;
use infsh_protocol::FailureKind;
use infsh_testkit::fixture;
use infsh_worker::{CallEvent, Worker, WorkerConfig, WorkerError, WorkerRuntime};
use serde_json::json;
use tokio::sync::mpsc;

async fn start_node(state: &Path) -> Started {
    let app = fixture("node-functions");
    let node = infsh_env::node::default_node().expect("these tests need `node` on PATH");
    let spec = infsh_env::NodeEnvSpec {
        app_dir: app.clone(),
        node,
        cache_dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-envs"),
    };
    let env = infsh_env::prepare_node(&spec, |_| {})
        .await
        .expect("npm environment");
    let cfg = WorkerConfig {
        python: env.node.clone(),
        runtime: WorkerRuntime::Node,
        app_dir: app,
        state_dir: state.to_path_buf(),
        env: env.worker_env(),
    };
    let (idle_tx, idle) = mpsc::unbounded_channel();
    let (worker, ready) = within(START_TIMEOUT, Worker::start(cfg, idle_tx))
        .await
        .expect("node worker start");
    Started {
        worker,
        ready,
        idle,
    }
}

#[tokio::test]
async fn ready_setup_calls_snapshots_and_shutdown() {
    let state = tempfile::tempdir().unwrap();
    let s = start_node(state.path()).await;
    assert_eq!(s.ready.protocol, 1);
    assert_eq!(s.ready.pid, s.worker.pid());
    assert_eq!(s.ready.app_class, "App");
    assert!(s.ready.has_on_cancel);
    assert!(s.ready.sdk_version.is_some());
    let names: Vec<_> = s.ready.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["add", "big", "count", "crash", "echo", "fail", "hang", "read", "whoami", "write"]
    );
    let count = s.ready.function("count").unwrap();
    assert!(count.streaming && count.is_async && !count.accepts_metadata);
    let add = s.ready.function("add").unwrap();
    assert!(!add.streaming && !add.is_async);
    assert!(s.ready.function("whoami").unwrap().accepts_metadata);
    assert_eq!(
        s.ready.setup_schema["properties"]["greeting"]["default"],
        "hello"
    );

    let (logs_tx, mut logs) = mpsc::unbounded_channel();
    within(
        OP_TIMEOUT,
        s.worker
            .setup(json!({"greeting": "yo"}), json!({}), logs_tx),
    )
    .await
    .unwrap();
    let lines: Vec<_> = drain(&mut logs).into_iter().map(|l| l.line).collect();
    assert_eq!(lines, ["setup with greeting yo"]);

    let (tx, mut rx) = mpsc::unbounded_channel();
    let out = within(
        OP_TIMEOUT,
        s.worker.call(req("c1", "echo", json!({"text": "a"})), tx),
    )
    .await
    .unwrap();
    assert_eq!(out.output, json!({"text": "yo a"}));
    let lines: Vec<_> = log_lines(&drain(&mut rx))
        .into_iter()
        .map(|l| l.line.clone())
        .collect();
    assert_eq!(lines, ["echo a"]);

    let (tx, mut rx) = mpsc::unbounded_channel();
    let out = within(
        OP_TIMEOUT,
        s.worker.call(req("c2", "count", json!({"n": 3})), tx),
    )
    .await
    .unwrap();
    assert_eq!(out.output, json!({"count": 3, "done": true}));
    let snapshots: Vec<_> = drain(&mut rx)
        .into_iter()
        .filter_map(|e| match e {
            CallEvent::Snapshot { output, .. } => Some(output["count"].clone()),
            _ => None,
        })
        .collect();
    // The first yield at once, then some of the others in order (the three
    // come within the worker's 10 ms snapshot interval, so which of them
    // are sent and which are folded into a later one or into the result
    // depends on timing).
    let counts: Vec<u64> = snapshots.iter().map(|c| c.as_u64().unwrap()).collect();
    assert_eq!(counts.first(), Some(&1), "{counts:?}");
    assert!(
        counts.windows(2).all(|w| w[0] < w[1]) && counts.iter().all(|c| *c <= 3),
        "{counts:?}"
    );

    // Input the worker's own Zod parse refuses (the host validates first in
    // real use): failed, kind input, with a location per error.
    let (tx, _rx) = mpsc::unbounded_channel();
    match within(
        OP_TIMEOUT,
        s.worker.call(req("c3", "count", json!({"n": "x"})), tx),
    )
    .await
    {
        Err(WorkerError::CallFailed(f)) => {
            assert_eq!(f.kind, FailureKind::Input);
            assert_eq!(f.errors.len(), 1, "{:?}", f.errors);
            assert_eq!(f.errors[0].loc, "n");
        }
        other => panic!("expected an input failure, got {other:?}"),
    }

    let pid = s.worker.pid();
    let exit = within(OP_TIMEOUT, s.worker.shutdown(GRACE)).await.unwrap();
    assert_eq!(exit.code(), Some(0), "{exit}");
    assert!(wait_group_gone(pid).await);
}

const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[tokio::test]
async fn cancel_runs_on_cancel_and_the_worker_serves_on() {
    let state = tempfile::tempdir().unwrap();
    let s = start_node(state.path()).await;
    let (logs_tx, _logs) = mpsc::unbounded_channel();
    within(OP_TIMEOUT, s.worker.setup(json!({}), json!({}), logs_tx))
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker = s.worker.clone();
    let call = tokio::spawn(async move { worker.call(req("hang-1", "hang", json!({})), tx).await });
    let line = format!("hanging until cancelled (pid {})", s.worker.pid());
    let mut seen = wait_for_line(&mut rx, &line).await;
    within(OP_TIMEOUT, s.worker.cancel(&"hang-1".into()))
        .await
        .unwrap();
    match within(OP_TIMEOUT, call).await.unwrap() {
        Err(WorkerError::CallFailed(f)) => {
            assert_eq!(f.kind, FailureKind::Cancelled);
            assert_eq!(f.error, "call hang-1 was cancelled");
        }
        other => panic!("expected cancelled, got {other:?}"),
    }
    seen.extend(drain(&mut rx));
    assert!(
        log_lines(&seen).iter().any(|l| l.line == "onCancel hang-1"),
        "{:?}",
        log_lines(&seen)
    );
    let (tx, _rx) = mpsc::unbounded_channel();
    let out = within(
        OP_TIMEOUT,
        s.worker
            .call(req("add-1", "add", json!({"a": 1, "b": 2})), tx),
    )
    .await
    .unwrap();
    assert_eq!(out.output, json!({"sum": 3}));
}

#[tokio::test]
async fn process_exit_is_reported_with_its_status_and_a_throw_as_an_app_failure() {
    let state = tempfile::tempdir().unwrap();
    let s = start_node(state.path()).await;
    let (logs_tx, _logs) = mpsc::unbounded_channel();
    within(OP_TIMEOUT, s.worker.setup(json!({}), json!({}), logs_tx))
        .await
        .unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    match within(OP_TIMEOUT, s.worker.call(req("f", "fail", json!({})), tx)).await {
        Err(WorkerError::CallFailed(f)) => {
            assert_eq!(f.kind, FailureKind::App);
            assert_eq!(f.error, "RangeError: boom from fail");
            assert!(f.traceback.contains("inference.js:"), "{}", f.traceback);
        }
        other => panic!("expected an app failure, got {other:?}"),
    }
    let pid = s.worker.pid();
    let (tx, _rx) = mpsc::unbounded_channel();
    match within(OP_TIMEOUT, s.worker.call(req("x", "crash", json!({})), tx)).await {
        Err(WorkerError::Exited { status, during, .. }) => {
            assert_eq!(status.code(), Some(3));
            assert_eq!(during, "call crash");
        }
        other => panic!("expected the worker to exit, got {other:?}"),
    }
    assert!(wait_group_gone(pid).await);
}

/// Processes the app starts must not hold the protocol channel (Python's
/// worker makes fd 3 non-inheritable; for Node, libuv does).
#[tokio::test]
async fn the_protocol_socket_is_not_inherited_by_the_app_s_children() {
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("package.json"), r#"{"type": "module"}"#).unwrap();
    std::fs::write(
        app.path().join("inference.js"),
        r#"import { execSync } from "node:child_process";
export class App {
  async setup() {
    const fd3 = execSync("readlink /proc/self/fd/3 2>/dev/null || echo closed").toString().trim();
    console.log(`child fd 3: ${fd3}`);
  }
}
"#,
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let cfg = WorkerConfig {
        python: infsh_env::node::default_node().expect("node on PATH"),
        runtime: WorkerRuntime::Node,
        app_dir: app.path().to_path_buf(),
        state_dir: state.path().to_path_buf(),
        env: Vec::new(),
    };
    let (idle_tx, _idle) = mpsc::unbounded_channel();
    let (worker, ready) = within(START_TIMEOUT, Worker::start(cfg, idle_tx))
        .await
        .unwrap();
    assert!(ready.functions.is_empty());
    assert_eq!(ready.sdk_version, None);
    let (logs_tx, mut logs) = mpsc::unbounded_channel();
    within(OP_TIMEOUT, worker.setup(json!({}), json!({}), logs_tx))
        .await
        .unwrap();
    let lines: Vec<_> = drain(&mut logs).into_iter().map(|l| l.line).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    // The child's own fd 3 (readlink opened /proc/self/fd itself) or none,
    // never the host's socket.
    assert!(lines[0].starts_with("child fd 3: "), "{lines:?}");
    assert!(!lines[0].contains("socket:"), "{lines:?}");
}
