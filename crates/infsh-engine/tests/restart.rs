//! Durability across stops: what a new engine on the same data folder does
//! with the tasks the last one left, after a crash-like stop (the engine
//! dropped) and after a graceful shutdown.

mod common;

use common::*;
use infsh_engine::INTERRUPTED;
use infsh_store::TaskStatus;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn after_a_stop_queued_tasks_run_and_running_ones_are_interrupted() {
    let fx = Fixture::new(&["hangs"]);
    let pid_path = fx.path().join("hang.pid");
    let (hang, queued) = {
        let engine = fx.engine().await;
        let hang = submit(
            &engine,
            run(
                "tests/hangs",
                Some("async_hang"),
                json!({"pid_file": pid_path.to_string_lossy()}),
            ),
        )
        .await;
        reach(&engine, &hang.record.id, TaskStatus::Running).await;
        // The call itself runs (its child is up) before the stop.
        wait_file(&pid_path).await;
        let mut queued = Vec::new();
        for _ in 0..3 {
            let task = submit(&engine, run("tests/hangs", Some("ok"), json!({}))).await;
            assert_eq!(task.record.status, TaskStatus::Queued);
            queued.push(task.record.id);
        }
        // A stop without shutdown, as a crash: the engine is dropped.
        drop(engine);
        (hang.record.id, queued)
    };
    let child: u32 = wait_file(&pid_path).await.trim().parse().unwrap();
    wait_dead(child).await;
    fx.assert_no_processes().await;

    let engine = fx.engine().await;
    let interrupted = engine.get(&hang).await.unwrap();
    assert_eq!(interrupted.record.status, TaskStatus::Failed);
    assert_eq!(interrupted.record.error.as_deref(), Some(INTERRUPTED));
    for id in &queued {
        let done = finished(&engine, id).await;
        assert_eq!(
            done.record.status,
            TaskStatus::Completed,
            "{:?}",
            done.record.error
        );
        assert_eq!(done.record.output.unwrap().into_value()["ok"], true);
    }
    let page = engine.list(None, None, 10, None).await.unwrap();
    let ids: Vec<_> = page.items.iter().map(|t| t.id.clone()).collect();
    let mut want = queued.clone();
    want.reverse();
    want.push(hang.clone());
    assert_eq!(ids, want, "newest first, nothing lost or duplicated");
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}

#[tokio::test]
async fn a_graceful_shutdown_keeps_queued_tasks_for_the_next_start() {
    let fx = Fixture::new(&["hangs"]);
    let engine = fx.engine().await;
    let hang = submit(&engine, run("tests/hangs", Some("async_hang"), json!({}))).await;
    reach(&engine, &hang.record.id, TaskStatus::Running).await;
    let queued = submit(&engine, run("tests/hangs", Some("ok"), json!({}))).await;
    within(LIMIT, engine.shutdown(Duration::from_millis(300))).await;
    let stopped = engine.get(&hang.record.id).await.unwrap();
    assert_eq!(stopped.record.status, TaskStatus::Failed);
    assert_eq!(stopped.record.error.as_deref(), Some(INTERRUPTED));
    assert_eq!(
        engine.get(&queued.record.id).await.unwrap().record.status,
        TaskStatus::Queued
    );
    fx.assert_no_processes().await;
    drop(engine);

    let engine = fx.engine().await;
    let done = finished(&engine, &queued.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Completed);
    shutdown(&engine).await;
    fx.assert_no_processes().await;
}
