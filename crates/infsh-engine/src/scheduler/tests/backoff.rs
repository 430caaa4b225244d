//! Failures and backoff: a failed start (load), a failed setup and a crash
//! make the app unhealthy and back off 0.5 s doubling to 30 s; nothing
//! starts or sets up meanwhile; the next success clears it.

use infsh_store::TaskStatus;
use serde_json::json;

use super::*;
use crate::api::{AppState, EngineError};
use crate::testing::fake_worker::{Op, StartScript, CRASH_LINE};
use crate::testing::{Harness, APP};

const CRASHED: &str = "the worker exited (exit status 1) while running the task";

#[tokio::test(start_paused = true)]
async fn a_crash_loop_backs_off_from_half_a_second_doubling_to_thirty_and_a_success_resets_it() {
    let h = Harness::start(|_| {}).await;
    let backoffs = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0];
    let mut last_crash = None;
    for (n, backoff) in backoffs.iter().enumerate() {
        // Submitted at the last crash: it waits out the backoff, then its
        // worker starts, and it crashes too.
        let id = h.submit(json!({"crash": true})).await;
        let record = h.ended(&id).await;
        assert_eq!(record.status, TaskStatus::Failed);
        assert_eq!(record.error.as_deref(), Some(CRASHED));
        let launches = h.fake.times(is_launch);
        assert_eq!(launches.len(), n + 1, "one start per attempt");
        if let Some(last_crash) = last_crash {
            assert_eq!(
                launches[n] - last_crash,
                secs(backoffs[n - 1]),
                "start #{n}"
            );
        }
        last_crash = Some(h.fake.time_of(0, call_end_of(&id)));

        let health = h.health();
        assert_eq!(health.state, AppState::Unhealthy);
        assert_eq!(health.failures, n as u32 + 1);
        assert_eq!(health.last_error.as_deref(), Some(CRASHED));
        assert_eq!(health.traceback.as_deref(), Some(CRASH_LINE));
        assert_eq!(health.retry_in_secs, Some(*backoff), "after crash #{n}");
    }
    let ok = h.submit(json!({})).await;
    assert_eq!(h.ended(&ok).await.status, TaskStatus::Completed);
    let launches = h.fake.times(is_launch);
    assert_eq!(launches.len(), backoffs.len() + 1);
    assert_eq!(launches[backoffs.len()] - last_crash.unwrap(), secs(30.0));
    let health = h.health();
    assert_eq!(health.state, AppState::Ready);
    assert_eq!(health.failures, 0, "a success resets the count");
    assert_eq!(health.last_error, None);
    assert_eq!(health.retry_in_secs, None);
}

#[tokio::test(start_paused = true)]
async fn tasks_waiting_at_a_crash_are_told_and_run_when_the_backoff_ends() {
    let h = Harness::start(|_| {}).await;
    let crash = h.submit(json!({"sleep": 1, "crash": true})).await;
    let waiting = h.submit(json!({})).await;
    assert_eq!(h.ended(&crash).await.error.as_deref(), Some(CRASHED));
    let record = h.ended(&waiting).await;
    assert_eq!(record.status, TaskStatus::Completed);
    assert_eq!(h.fake.time_of(0, call_of(&waiting)), secs(1.5));
    assert_eq!(pid_of(&h.fake.ops(), &waiting), 1001, "on a new worker");
    let note = format!("the app is unhealthy ({CRASHED}); its next attempt is in 0.5s");
    assert!(
        h.logs(&waiting).await.contains(&note),
        "{:?}",
        h.logs(&waiting).await
    );
    assert_eq!(h.health().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_setup_fails_its_task_backs_off_and_a_successful_setup_clears_it() {
    let h = Harness::start(|_| {}).await;
    let error = "RuntimeError: no weights";
    let failed = h.submit_with_setup(json!({}), json!({"fail": error})).await;
    let record = h.ended(&failed).await;
    assert_eq!(record.status, TaskStatus::Failed);
    assert_eq!(
        record.error.as_deref(),
        Some("setup failed: RuntimeError: no weights")
    );
    let traceback = format!("Traceback (fake setup):\n{error}");
    assert!(h.logs(&failed).await.contains(&traceback));
    assert_eq!(killed(&h.fake.ops()), vec![1000], "the worker is replaced");
    assert!(!h.fake.ops().iter().any(call_of(&failed)), "never called");

    let health = h.health();
    assert_eq!(health.state, AppState::Unhealthy);
    assert_eq!(health.failures, 1);
    assert_eq!(
        health.last_error.as_deref(),
        Some("setup failed: RuntimeError: no weights")
    );
    assert_eq!(health.traceback.as_deref(), Some(traceback.as_str()));
    assert_eq!(health.retry_in_secs, Some(0.5));

    let next = h.submit(json!({})).await;
    assert_eq!(h.ended(&next).await.status, TaskStatus::Completed);
    assert_eq!(h.fake.times(is_launch), vec![secs(0.0), secs(0.5)]);
    let health = h.health();
    assert_eq!((health.state, health.failures), (AppState::Ready, 0));
}

#[tokio::test(start_paused = true)]
async fn no_setup_runs_during_the_backoff_even_on_an_idle_replica() {
    let h = Harness::start(|c| {
        c.replicas = 2;
        c.preload = true;
    })
    .await;
    h.status_until("two workers up", |s| s.replicas == 2).await;
    let failed = h
        .submit_with_setup(json!({}), json!({"fail": "RuntimeError: boom"}))
        .await;
    assert_eq!(h.ended(&failed).await.status, TaskStatus::Failed);
    let killed = h
        .fake
        .ops()
        .iter()
        .find_map(|op| match op {
            Op::Kill { pid } => Some(*pid),
            _ => None,
        })
        .expect("the failed worker is killed");
    let survivor = if killed == 1000 { 1001 } else { 1000 };

    // The other replica is idle, but setting it up must wait.
    let next = h.submit_with_setup(json!({}), json!({"v": 2})).await;
    assert_eq!(h.ended(&next).await.status, TaskStatus::Completed);
    let setups: Vec<_> = h
        .fake
        .records()
        .into_iter()
        .filter_map(|r| match r.op {
            Op::Setup { pid, config } if config == json!({"v": 2}) => Some((r.at, pid)),
            _ => None,
        })
        .collect();
    assert_eq!(setups, vec![(secs(0.5), survivor)]);
    assert_eq!(pid_of(&h.fake.ops(), &next), survivor);
    // Preload restarts the killed replica when the backoff ends.
    assert_eq!(
        h.fake.times(is_launch),
        vec![secs(0.0), secs(0.0), secs(0.5)]
    );
}

#[tokio::test(start_paused = true)]
async fn an_app_that_cannot_load_is_refused_while_backing_off_and_retries_once_by_itself() {
    let fake = crate::testing::fake_worker::Fake::new();
    let error = "ImportError: No module named 'torch'";
    fake.script_starts([StartScript::Fail(error.into())]);
    let h = Harness::start_on(fake, |_| {}).await;

    let refused = h.try_submit(crate::testing::request(json!({}))).await;
    let Err(EngineError::AppUnavailable {
        app,
        message,
        traceback,
    }) = refused
    else {
        panic!("not refused as unavailable: {refused:?}");
    };
    assert_eq!((app.as_str(), message.as_str()), (APP, error));
    assert_eq!(traceback, Some(format!("Traceback (fake):\n{error}")));
    let health = h.health();
    assert_eq!(health.state, AppState::Unhealthy);
    assert_eq!(health.failures, 1);
    assert_eq!(health.retry_in_secs, Some(0.5));

    // During the backoff: refused at once, nothing started.
    h.at(0.25).await;
    match h.try_submit(crate::testing::request(json!({}))).await {
        Err(EngineError::AppUnavailable { message, .. }) => {
            assert_eq!(message, format!("{error}; retrying in 1s"))
        }
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(h.health().retry_in_secs, Some(0.25));
    assert_eq!(h.fake.count(is_launch), 1);

    // One retry when the backoff ends; it loads.
    h.status_until("ready", |s| s.state == AppState::Ready)
        .await;
    assert_eq!(h.fake.times(is_launch), vec![secs(0.0), secs(0.5)]);
    let health = h.health();
    assert_eq!((health.failures, health.retry_in_secs), (0, None));
    let id = h.submit(json!({})).await;
    assert_eq!(h.ended(&id).await.status, TaskStatus::Completed);
    assert_eq!(h.fake.count(is_launch), 2);
}

#[tokio::test(start_paused = true)]
async fn a_load_failure_with_no_worker_up_fails_the_waiting_tasks() {
    let h = Harness::start(|_| {}).await;
    let crash = h.submit(json!({"crash": true})).await;
    assert_eq!(h.ended(&crash).await.error.as_deref(), Some(CRASHED));
    let error = "ImportError: broken";
    h.fake.script_starts([StartScript::Fail(error.into())]);
    let waiting = [h.submit(json!({})).await, h.submit(json!({})).await];
    let failed = format!("app \"{APP}\" failed to load: {error}");
    for id in &waiting {
        let record = h.ended(id).await;
        assert_eq!(record.status, TaskStatus::Failed);
        assert_eq!(record.error.as_deref(), Some(failed.as_str()));
        assert!(h
            .logs(id)
            .await
            .contains(&format!("Traceback (fake):\n{error}")));
        assert!(!h.fake.ops().iter().any(call_of(id)));
    }
    let health = h.health();
    assert_eq!(health.failures, 2);
    assert_eq!(health.last_error.as_deref(), Some(error));
    assert_eq!(health.retry_in_secs, Some(1.0), "the second failure: 1 s");

    // The functions are known, so a run is taken and waits for the retry.
    let next = h.submit(json!({})).await;
    assert_eq!(h.ended(&next).await.status, TaskStatus::Completed);
    assert_eq!(
        h.fake.times(is_launch),
        vec![secs(0.0), secs(0.5), secs(1.5)]
    );
    assert_eq!(h.health().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_load_failure_while_another_replica_serves_leaves_the_tasks_waiting() {
    let h = Harness::start(|c| c.replicas = 2).await;
    let busy = h.submit(json!({"sleep": 10})).await;
    h.at(1.0).await;
    h.fake
        .script_starts([StartScript::Fail("ImportError: flaky".into())]);
    let waiting = h.submit(json!({})).await;
    let record = h.ended(&waiting).await;
    assert_eq!(record.status, TaskStatus::Completed);
    assert_eq!(h.ended(&busy).await.status, TaskStatus::Completed);
    assert_eq!(h.fake.time_of(0, call_of(&waiting)), secs(10.0));
    assert_eq!(pid_of(&h.fake.ops(), &waiting), 1000);
    let note = "the app is unhealthy (ImportError: flaky); its next attempt is in 0.5s";
    assert!(h.logs(&waiting).await.iter().any(|l| l == note));
    assert_eq!(
        h.fake.times(is_launch),
        vec![secs(0.0), secs(1.0)],
        "the replica that failed to load is not retried while another serves"
    );
    assert_eq!(h.health().failures, 0, "the served task cleared it");
}
