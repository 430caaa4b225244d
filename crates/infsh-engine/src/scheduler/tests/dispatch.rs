//! Dispatch: which replica the head of the queue goes to, when replicas
//! start, how many calls a worker runs at once, and the order of the queue.

use infsh_store::TaskStatus;
use serde_json::json;

use super::*;
use crate::api::AppState;
use crate::testing::fake_worker::{Op, StartScript};
use crate::testing::Harness;

#[tokio::test(start_paused = true)]
async fn no_worker_starts_before_a_task_and_the_first_one_sets_up_then_calls() {
    let h = Harness::start(|_| {}).await;
    assert!(h.fake.ops().is_empty(), "nothing starts at boot");
    assert_eq!(h.status().state, AppState::Idle);

    let first = h.submit(json!({"n": 1})).await;
    let record = h.ended(&first).await;
    assert_eq!(record.status, TaskStatus::Completed);
    assert_eq!(
        record.output,
        Some(json!({"pid": 1000, "input": {"n": 1}}).into()),
        "the output is the worker's answer"
    );
    let second = h.submit(json!({"n": 2})).await;
    assert_eq!(h.ended(&second).await.status, TaskStatus::Completed);

    // One worker, set up once (its config `{}` is every run's default), then
    // both calls on it.
    assert_eq!(
        h.fake.ops(),
        vec![
            Op::Launch,
            Op::Started { pid: 1000 },
            Op::Setup {
                pid: 1000,
                config: json!({})
            },
            Op::SetupEnded { pid: 1000 },
            Op::Call {
                pid: 1000,
                task: first.clone()
            },
            Op::CallEnded {
                pid: 1000,
                task: first
            },
            Op::Call {
                pid: 1000,
                task: second.clone()
            },
            Op::CallEnded {
                pid: 1000,
                task: second
            },
        ]
    );
    let status = h.status();
    assert_eq!(
        (status.state, status.replicas, status.busy),
        (AppState::Ready, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn the_queue_is_served_in_order_even_when_a_later_task_could_skip_a_setup() {
    let h = Harness::start(|_| {}).await;
    let a = h.submit(json!({"sleep": 1})).await;
    // Queued behind a: b needs another setup; c could run on the worker as
    // it is set up now, but waits for its turn.
    let b = h.submit_with_setup(json!({}), json!({"v": 2})).await;
    let c = h.submit(json!({})).await;
    let d = h.submit_with_setup(json!({}), json!({"v": 2})).await;
    for id in [&a, &b, &c, &d] {
        assert_eq!(h.ended(id).await.status, TaskStatus::Completed);
    }
    let ops = h.fake.ops();
    assert_eq!(call_order(&ops), vec![a, b, c, d]);
    let setups: Vec<_> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Setup { config, .. } => Some(config.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        setups,
        vec![json!({}), json!({"v": 2}), json!({}), json!({"v": 2})],
        "setup re-runs for every change of config, in queue order"
    );
    assert_eq!(h.fake.count(is_launch), 1);
}

#[tokio::test(start_paused = true)]
async fn a_replica_set_up_alike_with_a_free_slot_is_picked_least_busy_first() {
    let h = Harness::start(|c| {
        c.replicas = 2;
        c.concurrency_per_replica = 2;
        c.preload = true;
    })
    .await;
    h.status_until("two workers up", |s| s.replicas == 2).await;
    assert_eq!(h.fake.count(is_setup), 2, "preload sets both up with {{}}");

    let a = h.submit(json!({"sleep": 10})).await;
    let b = h.submit(json!({"sleep": 10})).await;
    let c = h.submit(json!({"sleep": 10})).await;
    for id in [&a, &b, &c] {
        assert_eq!(h.ended(id).await.status, TaskStatus::Completed);
        assert_eq!(h.fake.time_of(0, call_of(id)), secs(0.0), "no waiting");
    }
    let ops = h.fake.ops();
    let (pa, pb, pc) = (pid_of(&ops, &a), pid_of(&ops, &b), pid_of(&ops, &c));
    assert_ne!(pa, pb, "b goes to the idle replica, not beside a");
    assert_eq!(pc, pa, "c, at a tie, goes where a went");
    assert_eq!(h.fake.count(is_setup), 2, "no setup re-ran");
    assert_eq!(h.fake.count(is_launch), 2);
}

#[tokio::test(start_paused = true)]
async fn another_setup_config_waits_for_an_idle_replica_and_reruns_setup_there() {
    let h = Harness::start(|c| c.concurrency_per_replica = 2).await;
    let a = h.submit(json!({"sleep": 10})).await;
    h.at(1.0).await;
    let b = h
        .submit_with_setup(json!({"sleep": 10}), json!({"v": 1}))
        .await;
    // c matches the worker's setup and a slot is free, but b is first.
    let c = h.submit(json!({})).await;
    for id in [&a, &b, &c] {
        assert_eq!(h.ended(id).await.status, TaskStatus::Completed);
    }
    let records = h.fake.records();
    let ops = h.fake.ops();
    assert_eq!(call_order(&ops), vec![a.clone(), b.clone(), c.clone()]);
    let a_end = h.fake.time_of(0, call_end_of(&a));
    let setups: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.op {
            Op::Setup { pid, config } => Some((r.at, *pid, config.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        setups,
        vec![
            (secs(0.0), 1000, json!({})),
            (secs(10.0), 1000, json!({"v": 1})),
            (secs(20.0), 1000, json!({})),
        ],
        "each re-setup waits until the worker is idle"
    );
    assert_eq!(a_end, secs(10.0));
    assert_eq!(h.fake.time_of(0, call_end_of(&b)), secs(20.0));
    assert_eq!(h.fake.count(is_launch), 1, "no second worker: replicas = 1");
}

#[tokio::test(start_paused = true)]
async fn nothing_is_dispatched_to_a_replica_while_it_runs_setup() {
    let h = Harness::start(|c| c.concurrency_per_replica = 2).await;
    let slow = json!({"sleep": 5});
    let a = h.submit_with_setup(json!({}), slow.clone()).await;
    // Same config, a free slot: but the worker is setting up.
    let b = h.submit_with_setup(json!({}), slow).await;
    for id in [&a, &b] {
        assert_eq!(h.ended(id).await.status, TaskStatus::Completed);
    }
    let setup_end = h.fake.time_of(0, |op| matches!(op, Op::SetupEnded { .. }));
    assert_eq!(setup_end, secs(5.0));
    assert_eq!(h.fake.time_of(0, call_of(&a)), setup_end);
    assert_eq!(h.fake.time_of(0, call_of(&b)), setup_end);
    assert_eq!(h.fake.count(is_setup), 1, "b shares a's setup");
    let ops = h.fake.ops();
    let ended = ops
        .iter()
        .position(|op| matches!(op, Op::SetupEnded { .. }))
        .unwrap();
    let b_called = ops.iter().position(call_of(&b)).unwrap();
    assert!(ended < b_called, "{ops:#?}");
}

#[tokio::test(start_paused = true)]
async fn replicas_start_lazily_and_no_more_than_the_waiting_tasks_need() {
    let h = Harness::start(|c| {
        c.replicas = 4;
        c.concurrency_per_replica = 2;
    })
    .await;
    h.at(1.0).await;
    assert!(h.fake.ops().is_empty(), "nothing starts before a task");
    let a = h.submit(json!({"sleep": 100})).await;
    h.at(2.0).await;
    let b = h.submit(json!({"sleep": 100})).await;
    h.at(3.0).await;
    assert_eq!(h.fake.count(is_launch), 1, "b took the free slot beside a");

    // The next starts take 10 s, during which four more tasks wait: two
    // starting replicas have a slot for each.
    h.fake
        .script_starts(vec![StartScript::Delay(secs(10.0)); 3]);
    let mut waiting = Vec::new();
    for _ in 0..4 {
        waiting.push(h.submit(json!({"sleep": 100})).await);
    }
    h.at(4.0).await;
    assert_eq!(
        h.fake.times(is_launch),
        vec![secs(1.0), secs(3.0), secs(3.0)]
    );

    for id in [&a, &b].into_iter().chain(&waiting) {
        assert_eq!(h.ended(id).await.status, TaskStatus::Completed);
    }
    let ops = h.fake.ops();
    assert_eq!(pid_of(&ops, &a), 1000);
    assert_eq!(pid_of(&ops, &b), 1000);
    for id in &waiting {
        assert_ne!(pid_of(&ops, id), 1000, "{id} ran on a new replica");
    }
    assert!(h.fake.count(is_launch) <= 4, "never more than `replicas`");
}

#[tokio::test(start_paused = true)]
async fn a_worker_runs_at_most_concurrency_per_replica_calls_at_once() {
    let h = Harness::start(|c| c.concurrency_per_replica = 2).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(h.submit(json!({"sleep": 10})).await);
    }
    for id in &ids {
        assert_eq!(h.ended(id).await.status, TaskStatus::Completed);
    }
    let starts: Vec<_> = ids
        .iter()
        .map(|id| h.fake.time_of(0, call_of(id)))
        .collect();
    assert_eq!(
        starts,
        vec![secs(0.0), secs(0.0), secs(10.0), secs(10.0), secs(20.0)]
    );
    let mut in_flight = 0usize;
    let mut most = 0;
    for op in h.fake.ops() {
        match op {
            Op::Call { .. } => in_flight += 1,
            Op::CallEnded { .. } => in_flight -= 1,
            _ => {}
        }
        most = most.max(in_flight);
    }
    assert_eq!(most, 2);
}
