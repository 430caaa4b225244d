//! Timeouts: a task past its limit is FAILED "timed out after Ns" and its
//! worker killed and replaced, without blaming the app; a setup past its
//! limit fails its task (or the preload) and backs off like a failed setup.

use infsh_store::TaskStatus;
use serde_json::json;

use super::*;
use crate::api::{AppState, RunRequest};
use crate::testing::fake_worker::{Fake, Op};
use crate::testing::{request, Harness};

fn with_timeout(input: serde_json::Value, secs: f64) -> RunRequest {
    RunRequest {
        timeout_secs: Some(secs),
        ..request(input)
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_past_its_timeout_fails_and_its_worker_is_killed_and_replaced() {
    let h = Harness::start(|_| {}).await;
    let id = h
        .try_submit(with_timeout(json!({"sleep": 100}), 1.5))
        .await
        .unwrap();
    let record = h.ended(&id).await;
    assert_eq!(record.status, TaskStatus::Failed);
    assert_eq!(record.error.as_deref(), Some("timed out after 1.5s"));
    let logs = h.logs(&id).await;
    assert!(logs
        .iter()
        .any(|l| l == "timed out after 1.5s; stopping the worker"));
    assert_eq!(
        h.fake.time_of(0, |op| matches!(op, Op::Kill { .. })),
        secs(1.5)
    );
    assert_eq!(killed(&h.fake.ops()), vec![1000]);
    let health = h.health();
    assert_eq!((health.state, health.failures), (AppState::Idle, 0));

    let next = h.submit(json!({})).await;
    assert_eq!(h.ended(&next).await.status, TaskStatus::Completed);
    assert_eq!(pid_of(&h.fake.ops(), &next), 1001, "on a new worker");
    assert_eq!(h.fake.count(is_setup), 2, "set up again");
}

#[tokio::test(start_paused = true)]
async fn the_runs_own_timeout_wins_over_the_servers() {
    let h = Harness::start(|c| c.task_timeout = Some(secs(2.0))).await;
    let by_server = h.submit(json!({"sleep": 100})).await;
    let record = h.ended(&by_server).await;
    assert_eq!(record.error.as_deref(), Some("timed out after 2s"));
    assert_eq!(h.fake.time_of(0, call_end_of(&by_server)), secs(2.0));

    let own = h
        .try_submit(with_timeout(json!({"sleep": 100}), 0.5))
        .await
        .unwrap();
    let record = h.ended(&own).await;
    assert_eq!(record.error.as_deref(), Some("timed out after 0.5s"));
    let called = h.fake.time_of(0, call_of(&own));
    assert_eq!(h.fake.time_of(0, call_end_of(&own)) - called, secs(0.5));

    let quick = h.submit(json!({"sleep": 1})).await;
    assert_eq!(h.ended(&quick).await.status, TaskStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_on_a_shared_worker_fails_the_other_task_without_blaming_the_app() {
    let h = Harness::start(|c| c.concurrency_per_replica = 2).await;
    let timed = h
        .try_submit(with_timeout(json!({"sleep": 100}), 1.0))
        .await
        .unwrap();
    let other = h.submit(json!({"sleep": 100})).await;
    let record = h.ended(&timed).await;
    assert_eq!(record.error.as_deref(), Some("timed out after 1s"));
    let record = h.ended(&other).await;
    assert_eq!(record.status, TaskStatus::Failed);
    assert_eq!(
        record.error.as_deref(),
        Some(
            "the worker was stopped while running the task: another task on it timed out after 1s"
        )
    );
    assert_eq!(h.fake.time_of(0, call_end_of(&other)), secs(1.0));
    assert_eq!(killed(&h.fake.ops()), vec![1000]);
    assert_eq!(h.health().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_setup_past_its_timeout_fails_the_task_and_backs_off() {
    let h = Harness::start(|c| c.setup_timeout = Some(secs(1.0))).await;
    let id = h.submit_with_setup(json!({}), json!({"sleep": 10})).await;
    let record = h.ended(&id).await;
    assert_eq!(record.status, TaskStatus::Failed);
    assert_eq!(record.error.as_deref(), Some("setup timed out after 1s"));
    assert!(h
        .logs(&id)
        .await
        .iter()
        .any(|l| l == "setup timed out after 1s; stopping the worker"));
    assert_eq!(
        h.fake.time_of(0, |op| matches!(op, Op::Kill { .. })),
        secs(1.0)
    );
    assert_eq!(killed(&h.fake.ops()), vec![1000]);
    let health = h.health();
    assert_eq!(health.state, AppState::Unhealthy);
    assert_eq!(health.failures, 1);
    assert_eq!(
        health.last_error.as_deref(),
        Some("setup timed out after 1s")
    );
    assert_eq!(health.retry_in_secs, Some(0.5));

    let next = h.submit(json!({})).await;
    assert_eq!(h.ended(&next).await.status, TaskStatus::Completed);
    assert_eq!(h.fake.time_of(1, is_launch), secs(1.5));
    assert_eq!(h.health().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_preload_setup_past_its_timeout_backs_off_and_recovers() {
    let fake = Fake::new();
    fake.script_default_setup(json!({"sleep": 10}));
    let h = Harness::start_on(fake, |c| {
        c.preload = true;
        c.setup_timeout = Some(secs(1.0));
    })
    .await;
    h.status_until("two failures", |s| s.failures == 2).await;
    let status = h.status();
    assert_eq!(
        status.last_error.as_deref(),
        Some("setup timed out after 1s")
    );
    assert!(
        status.info.is_some(),
        "the functions are known from the worker's ready"
    );
    assert_eq!(h.health().retry_in_secs, Some(1.0));
    h.fake.script_default_setup(json!({}));

    h.status_until("ready", |s| s.state == AppState::Ready && s.replicas == 1)
        .await;
    assert_eq!(
        h.fake.times(is_launch),
        vec![secs(0.0), secs(1.5), secs(3.5)]
    );
    assert_eq!(
        h.fake.times(|op| matches!(op, Op::Kill { .. })),
        vec![secs(1.0), secs(2.5)]
    );
    assert_eq!(h.health().failures, 0);
    let id = h.submit(json!({})).await;
    assert_eq!(h.ended(&id).await.status, TaskStatus::Completed);
    assert_eq!(
        h.fake.count(is_setup),
        3,
        "no setup again: preloaded with {{}}"
    );
}
