//! The zygote (`infsh_worker::Zygote`): the app imported once, workers
//! forked from it. Real Python processes throughout.

mod common;

use std::time::{Duration, Instant};

use common::*;
use infsh_worker::{LogLine, WorkerError, Zygote, ZygoteStart};
use serde_json::json;
use tokio::sync::mpsc;

async fn start_zygote(app: &TestApp) -> (Zygote, mpsc::UnboundedReceiver<LogLine>) {
    let (idle_tx, idle) = mpsc::unbounded_channel();
    match within(START_TIMEOUT, Zygote::start(app.config(), idle_tx))
        .await
        .expect("zygote start")
    {
        ZygoteStart::Ready(zygote) => (zygote, idle),
        ZygoteStart::NotForkable(reason) => panic!("not forkable: {reason}"),
    }
}

fn pgid(pid: u32) -> i32 {
    nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)))
        .expect("getpgid")
        .as_raw()
}

#[tokio::test]
async fn forked_workers_share_one_import_and_serve_like_started_ones() {
    let app = TestApp::new(Some(APP));
    let (zygote, mut zygote_logs) = start_zygote(&app).await;
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (idle_tx, idle) = mpsc::unbounded_channel();
        let started = Instant::now();
        let (worker, ready) = within(START_TIMEOUT, zygote.fork(idle_tx))
            .await
            .expect("fork");
        eprintln!("forked worker ready in {:?}", started.elapsed());
        assert!(ready.functions.iter().any(|f| f.name == "echo"));
        assert_eq!(ready.pid, worker.pid());
        workers.push((worker, idle));
    }
    let pids: Vec<u32> = workers.iter().map(|(w, _)| w.pid()).collect();
    assert_ne!(pids[0], pids[1]);
    for pid in &pids {
        assert_ne!(*pid, zygote.pid());
        // Each leads a process group of its own, as a started worker does.
        assert_eq!(pgid(*pid), *pid as i32);
    }
    for (i, (worker, _)) in workers.iter().enumerate() {
        let (logs, _) = mpsc::unbounded_channel();
        within(OP_TIMEOUT, worker.setup(json!({}), json!({}), logs))
            .await
            .expect("setup");
        let (events, mut rx) = mpsc::unbounded_channel();
        let text = format!("worker {i}");
        let out = within(
            OP_TIMEOUT,
            worker.call(req("c", "echo", json!({"text": text})), events),
        )
        .await
        .expect("call");
        assert_eq!(out.output.to_value()["text"], json!(text));
        drop(rx.try_recv());
    }
    // The app was imported once, by the zygote; its module-level print is
    // not repeated by the workers.
    let imported = |lines: Vec<LogLine>| {
        lines
            .iter()
            .filter(|l| l.line == "importing the app")
            .count()
    };
    assert_eq!(imported(drain(&mut zygote_logs)), 1);
    for (_, idle) in &mut workers {
        assert_eq!(imported(drain(idle)), 0);
    }
}

#[tokio::test]
async fn a_forked_worker_that_dies_reports_its_exit_status_and_the_zygote_forks_again() {
    let app = TestApp::new(Some(APP));
    let (zygote, _logs) = start_zygote(&app).await;
    let fork = || async {
        let (idle_tx, _idle) = mpsc::unbounded_channel();
        let (worker, _) = within(START_TIMEOUT, zygote.fork(idle_tx))
            .await
            .expect("fork");
        let (logs, _) = mpsc::unbounded_channel();
        within(OP_TIMEOUT, worker.setup(json!({}), json!({}), logs))
            .await
            .expect("setup");
        worker
    };
    let doomed = fork().await;
    let survivor = fork().await;
    for (how, expected) in [("kill", "signal 9 (SIGKILL)"), ("exit", "exit status 3")] {
        let worker = if how == "kill" {
            doomed.clone()
        } else {
            fork().await
        };
        let (events, _rx) = mpsc::unbounded_channel();
        match within(
            OP_TIMEOUT,
            worker.call(req("x", "crash", json!({"how": how})), events),
        )
        .await
        {
            Err(WorkerError::Exited {
                status,
                during,
                stderr_tail,
            }) => {
                assert_eq!(status.to_string(), expected);
                assert_eq!(during, "call crash");
                assert!(stderr_tail.iter().any(|l| l == "about to die"));
            }
            other => panic!("expected Exited, got {other:?}"),
        }
        assert!(wait_pid_gone(worker.pid()).await);
    }
    // The other worker and the zygote are unaffected.
    let (events, _rx) = mpsc::unbounded_channel();
    let out = within(
        OP_TIMEOUT,
        survivor.call(req("s", "echo", json!({"text": "still here"})), events),
    )
    .await
    .expect("survivor call");
    assert_eq!(out.output.to_value()["text"], json!("still here"));
    assert!(!zygote.is_gone());
}

#[tokio::test]
async fn dropping_the_zygote_and_its_workers_leaves_no_process() {
    let app = TestApp::new(Some(APP));
    let (zygote, _logs) = start_zygote(&app).await;
    let zygote_pid = zygote.pid();
    let (idle_tx, _idle) = mpsc::unbounded_channel();
    let (worker, _) = within(START_TIMEOUT, zygote.fork(idle_tx))
        .await
        .expect("fork");
    let worker_pid = worker.pid();
    // The worker keeps the zygote alive (its workers die with it).
    drop(zygote);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pid_gone(zygote_pid), "the zygote died under its worker");
    let (events, _rx) = mpsc::unbounded_channel();
    let (logs, _) = mpsc::unbounded_channel();
    within(OP_TIMEOUT, worker.setup(json!({}), json!({}), logs))
        .await
        .expect("setup");
    within(
        OP_TIMEOUT,
        worker.call(req("e", "echo", json!({"text": "hi"})), events),
    )
    .await
    .expect("call");
    drop(worker);
    assert!(
        wait_group_gone(worker_pid).await,
        "worker {worker_pid} left"
    );
    assert!(
        wait_group_gone(zygote_pid).await,
        "zygote {zygote_pid} left"
    );
}

#[tokio::test]
async fn an_app_whose_import_starts_a_thread_is_not_forked() {
    let app = TestApp::new(Some(
        r#"
import threading, time
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput

threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()

class In(BaseAppInput):
    text: str = ""

class Out(BaseAppOutput):
    text: str

class App(BaseApp):
    async def run(self, input: In) -> Out:
        return Out(text=input.text)
"#,
    ));
    let (idle_tx, _idle) = mpsc::unbounded_channel();
    match within(START_TIMEOUT, Zygote::start(app.config(), idle_tx)).await {
        Ok(ZygoteStart::NotForkable(reason)) => {
            assert_eq!(reason, "the app's import started 1 thread(s)")
        }
        Ok(ZygoteStart::Ready(_)) => panic!("forkable despite a thread"),
        Err(e) => panic!("zygote start failed: {e}"),
    }
}

#[tokio::test]
async fn an_app_that_cannot_be_imported_fails_the_zygote_like_a_worker() {
    let app = TestApp::new(Some("import no_such_module_here\n"));
    let (idle_tx, _idle) = mpsc::unbounded_channel();
    match within(START_TIMEOUT, Zygote::start(app.config(), idle_tx)).await {
        Err(WorkerError::LoadFailed(failed)) => {
            assert_eq!(
                failed.error,
                "ModuleNotFoundError: No module named 'no_such_module_here'"
            );
            assert!(failed.traceback.contains("no_such_module_here"));
        }
        Err(other) => panic!("expected LoadFailed, got {other}"),
        Ok(_) => panic!("a broken app started"),
    }
}
