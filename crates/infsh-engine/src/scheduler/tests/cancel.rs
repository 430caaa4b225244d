//! Cancellation: a queued task leaves the queue without a worker hearing of
//! it; a running one gets the worker's cancel (CANCELLING, then CANCELLED),
//! and one that ignores it is killed after `cancel_grace` and its worker
//! replaced.

use infsh_store::TaskStatus;
use serde_json::json;

use super::*;
use crate::api::AppState;
use crate::testing::fake_worker::Op;
use crate::testing::Harness;

/// Whether `op` concerns task `id` at all.
fn touches(op: &Op, id: &str) -> bool {
    matches!(op,
        Op::Call { task, .. } | Op::CallEnded { task, .. } | Op::Cancel { task, .. } if task == id)
}

#[tokio::test(start_paused = true)]
async fn a_queued_task_is_cancelled_at_once_without_touching_a_worker() {
    let h = Harness::start(|_| {}).await;
    let running = h.submit(json!({"sleep": 10})).await;
    let queued = h.submit(json!({})).await;
    h.at(1.0).await;
    assert_eq!(h.cancel(&queued).await, TaskStatus::Cancelled);
    let record = h.ended(&queued).await;
    assert_eq!((record.status, record.error), (TaskStatus::Cancelled, None));

    assert_eq!(h.ended(&running).await.status, TaskStatus::Completed);
    let ops = h.fake.ops();
    assert!(!ops.iter().any(|op| touches(op, &queued)), "{ops:#?}");
    assert!(killed(&ops).is_empty());
    assert_eq!(h.status().busy, 0);
}

#[tokio::test(start_paused = true)]
async fn a_running_task_gets_the_workers_cancel_and_ends_cancelled() {
    let h = Harness::start(|_| {}).await;
    let id = h.submit(json!({"sleep": 100})).await;
    h.at(1.0).await;
    let status = h.cancel(&id).await;
    assert!(
        matches!(status, TaskStatus::Cancelling | TaskStatus::Cancelled),
        "{status:?}"
    );
    let record = h.ended(&id).await;
    assert_eq!((record.status, record.error), (TaskStatus::Cancelled, None));
    assert_eq!(
        h.fake.time_of(
            0,
            |op| matches!(op, Op::Cancel { pid: 1000, task } if *task == id)
        ),
        secs(1.0)
    );
    assert_eq!(h.fake.time_of(0, call_end_of(&id)), secs(1.0));

    // The worker stopped the call itself: it serves on.
    let next = h.submit(json!({})).await;
    assert_eq!(h.ended(&next).await.status, TaskStatus::Completed);
    assert_eq!(pid_of(&h.fake.ops(), &next), 1000);
    assert!(killed(&h.fake.ops()).is_empty());
    assert_eq!(h.fake.count(is_launch), 1);
    assert_eq!(h.health().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_ignoring_cancel_is_killed_after_the_grace_and_its_worker_replaced() {
    let h = Harness::start(|c| c.cancel_grace = secs(3.0)).await;
    let id = h.submit(json!({"sleep": 100, "ignore_cancel": true})).await;
    h.at(1.0).await;
    assert_eq!(h.cancel(&id).await, TaskStatus::Cancelling);
    h.at(2.0).await;
    assert_eq!(
        h.engine.get(&id).await.unwrap().record.status,
        TaskStatus::Cancelling,
        "still within the grace"
    );
    assert!(killed(&h.fake.ops()).is_empty());

    let record = h.ended(&id).await;
    assert_eq!((record.status, record.error), (TaskStatus::Cancelled, None));
    assert_eq!(
        h.fake.time_of(0, |op| matches!(op, Op::Kill { .. })),
        secs(4.0)
    );
    assert_eq!(killed(&h.fake.ops()), vec![1000]);
    let logs = h.logs(&id).await;
    assert!(logs
        .iter()
        .any(|l| l == "the task did not stop after cancel; stopping the worker"));
    let health = h.health();
    assert_eq!(
        (health.state, health.failures),
        (AppState::Idle, 0),
        "not the app's failure"
    );

    let next = h.submit(json!({})).await;
    assert_eq!(h.ended(&next).await.status, TaskStatus::Completed);
    assert_eq!(pid_of(&h.fake.ops(), &next), 1001, "on a new worker");
}

#[tokio::test(start_paused = true)]
async fn a_task_cancelled_during_setup_ends_after_it_without_a_call() {
    let h = Harness::start(|_| {}).await;
    let setup = json!({"sleep": 5});
    let id = h.submit_with_setup(json!({}), setup.clone()).await;
    h.at(1.0).await;
    assert_eq!(h.cancel(&id).await, TaskStatus::Cancelling);
    let record = h.ended(&id).await;
    assert_eq!((record.status, record.error), (TaskStatus::Cancelled, None));
    assert_eq!(
        h.fake.time_of(0, |op| matches!(op, Op::SetupEnded { .. })),
        secs(5.0),
        "setup is not interrupted"
    );
    assert!(!h.fake.ops().iter().any(|op| touches(op, &id)));

    // The replica keeps that setup.
    let next = h.submit_with_setup(json!({}), setup).await;
    assert_eq!(h.ended(&next).await.status, TaskStatus::Completed);
    assert_eq!(h.fake.count(is_setup), 1);
    assert!(killed(&h.fake.ops()).is_empty());
}
