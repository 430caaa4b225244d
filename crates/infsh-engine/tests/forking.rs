//! Workers forked from the app's zygote (`EngineConfig::fork_workers`):
//! which process is whose parent shows how a worker was started. Real
//! Python workers throughout.

mod common;

use common::*;
use infsh_store::TaskStatus;
use serde_json::{json, Value};

const FAMILY_PY: &str = r#"
import os

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class Empty(BaseAppInput):
    pass


class Out(BaseAppOutput):
    pid: int
    ppid: int


class App(BaseApp):
    async def family(self, input_data: Empty) -> Out:
        return Out(pid=os.getpid(), ppid=os.getppid())

    async def die(self, input_data: Empty) -> Out:
        os._exit(3)
"#;

fn family_app(fx: &Fixture, folder: &str, preamble: &str) -> String {
    let source = format!("{preamble}\n{FAMILY_PY}");
    fx.write_app(
        folder,
        &format!("namespace: tests\nname: {folder}\n"),
        &source,
    );
    format!("tests/{folder}")
}

async fn family(engine: &infsh_engine::Engine, app: &str) -> (u64, u64) {
    let task = submit(engine, run(app, Some("family"), json!({}))).await;
    let done = finished(engine, &task.record.id).await;
    assert_eq!(
        done.record.status,
        TaskStatus::Completed,
        "{:?}",
        done.record.error
    );
    let out: Value = done.record.output.unwrap().into_value();
    (out["pid"].as_u64().unwrap(), out["ppid"].as_u64().unwrap())
}

#[tokio::test]
async fn a_crashed_worker_is_replaced_by_a_fork_of_the_same_zygote() {
    let fx = Fixture::new(&[]);
    let app = family_app(&fx, "family", "");
    let engine = fx.engine().await;
    let ours = std::process::id() as u64;
    let (first, zygote) = family(&engine, &app).await;
    assert_ne!(zygote, ours, "the worker was forked by a zygote, not by us");

    let crash = submit(&engine, run(&app, Some("die"), json!({}))).await;
    let done = finished(&engine, &crash.record.id).await;
    assert_eq!(
        done.record.error.as_deref(),
        Some("the worker exited (exit status 3) while running the task")
    );
    let (second, parent) = family(&engine, &app).await;
    assert_ne!(second, first, "a new worker");
    assert_eq!(parent, zygote, "forked from the same zygote");
    assert!(alive(zygote as u32));
    shutdown(&engine).await;
    fx.assert_no_processes().await;
    // Polled, like the check above: a process on its way out has released
    // its cwd (so that check no longer sees it) a moment before it becomes
    // a zombie, and a busy machine can stretch that moment.
    assert!(
        eventually(std::time::Duration::from_secs(15), || !alive(zygote as u32)).await,
        "the zygote outlived the engine"
    );
}

#[tokio::test]
async fn without_forking_and_for_apps_that_start_threads_workers_are_our_children() {
    let fx = Fixture::new(&[]);
    let threads = family_app(
        &fx,
        "threads",
        "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True).start()",
    );
    let plain = family_app(&fx, "plain", "");
    let ours = std::process::id() as u64;

    // Forking on, but the app's import started a thread: not forkable.
    let engine = fx.engine().await;
    let (_, parent) = family(&engine, &threads).await;
    assert_eq!(parent, ours);
    shutdown(&engine).await;

    // Forking off (`infsh serve --no-fork`).
    let mut config = fx.config();
    config.fork_workers = false;
    let engine = infsh_engine::Engine::start(config).await.unwrap();
    let (_, parent) = family(&engine, &plain).await;
    assert_eq!(parent, ours);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}
