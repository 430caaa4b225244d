//! Batching (`scheduler/batching.rs`): calls of a batched function gathered
//! up to `max_batch_size` or until `max_batch_wait_ms` after the oldest,
//! sent as one `call_batch`, each task ending on its own; the batch holds
//! one slot until its last task ended.

use infsh_store::TaskStatus;
use serde_json::{json, Value};

use super::*;
use crate::api::RunRequest;
use crate::testing::fake_worker::{Fake, Op};
use crate::testing::{request, Harness};

/// Batches of at most 4, gathered for up to 50 ms.
const BATCHED: &str =
    "infsh:\n  functions:\n    embed: {max_batch_size: 4, max_batch_wait_ms: 50}\n";

async fn batched_app() -> Harness {
    let h = Harness::start_apps(Fake::new(), &[("fake", BATCHED)], "", |_| {}).await;
    // A worker set up and idle, so that the batches below only wait for
    // each other.
    let warm = h.submit(json!({})).await;
    h.ended(&warm).await;
    h
}

async fn embed(h: &Harness, input: Value) -> String {
    let request = RunRequest {
        function: Some("embed".into()),
        ..request(input)
    };
    h.try_submit(request).await.expect("submitted")
}

/// The batches sent, in order: their tasks and when.
fn batches(h: &Harness) -> Vec<(Duration, Vec<String>)> {
    h.fake
        .records()
        .into_iter()
        .filter_map(|r| match r.op {
            Op::CallBatch { tasks, .. } => Some((r.at, tasks)),
            _ => None,
        })
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_at_once_as_one_call() {
    let h = batched_app().await;
    let start = h.fake.epoch().elapsed();
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(embed(&h, json!({"n": n, "sleep": 1})).await);
    }
    for id in &ids {
        let record = h.ended(id).await;
        assert_eq!(record.status, TaskStatus::Completed);
        // Each task has its own output (the fake echoes its input).
        assert_eq!(record.output.unwrap().into_value()["input"], record.input);
    }
    let sent = batches(&h);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, start, "a full batch does not wait");
    assert_eq!(sorted(sent[0].1.clone()), sorted(ids));
    assert_eq!(h.status().busy, 0);
}

#[tokio::test(start_paused = true)]
async fn fewer_calls_than_the_size_go_together_when_the_wait_is_over() {
    let h = batched_app().await;
    let start = h.fake.epoch().elapsed();
    let a = embed(&h, json!({})).await;
    h.at(0.02).await; // b comes 20 ms after a
    let b = embed(&h, json!({})).await;
    assert_eq!(h.ended(&a).await.status, TaskStatus::Completed);
    assert_eq!(h.ended(&b).await.status, TaskStatus::Completed);
    let sent = batches(&h);
    assert_eq!(sent.len(), 1, "{sent:?}");
    // 50 ms after the oldest, not after the last.
    assert_eq!(sent[0].0 - start, secs(0.05));
    assert_eq!(sorted(sent[0].1.clone()), sorted(vec![a, b]));
}

#[tokio::test(start_paused = true)]
async fn more_calls_than_the_size_make_several_batches_one_slot_each() {
    let h = batched_app().await;
    let start = h.fake.epoch().elapsed();
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(embed(&h, json!({"n": n, "sleep": 1})).await);
    }
    for id in &ids {
        assert_eq!(h.ended(id).await.status, TaskStatus::Completed);
    }
    let sent = batches(&h);
    assert_eq!(sent.len(), 2, "{sent:?}");
    // FIFO: the first four at once; the other two once the first batch
    // freed the one slot (concurrency 1), having waited long enough.
    assert_eq!(sent[0].1.len(), 4);
    assert_eq!(sorted(sent[0].1.clone()), sorted(ids[..4].to_vec()));
    assert_eq!(sent[1].0 - start, secs(1.0));
    assert_eq!(sorted(sent[1].1.clone()), sorted(ids[4..].to_vec()));
}

#[tokio::test(start_paused = true)]
async fn one_calls_error_fails_that_task_only() {
    let h = batched_app().await;
    let ok = embed(&h, json!({})).await;
    let bad = embed(&h, json!({"fail": "ValueError: cannot embed"})).await;
    assert_eq!(h.ended(&ok).await.status, TaskStatus::Completed);
    let failed = h.ended(&bad).await;
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (TaskStatus::Failed, Some("ValueError: cannot embed"))
    );
    assert_eq!(batches(&h).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn cancelling_one_task_of_a_running_batch_leaves_the_others_and_the_worker() {
    let h = batched_app().await;
    let stays = embed(&h, json!({"sleep": 10})).await;
    let goes = embed(&h, json!({"sleep": 10})).await;
    h.at(1.0).await;
    h.cancel(&goes).await;
    let record = h.ended(&goes).await;
    assert_eq!((record.status, record.error), (TaskStatus::Cancelled, None));
    assert_eq!(h.ended(&stays).await.status, TaskStatus::Completed);
    assert!(killed(&h.fake.ops()).is_empty());
    assert_eq!(h.status().busy, 0);
}

#[tokio::test(start_paused = true)]
async fn a_task_cancelled_while_it_gathers_leaves_the_queue_and_the_batch() {
    let h = batched_app().await;
    let stays = embed(&h, json!({})).await;
    let goes = embed(&h, json!({})).await;
    h.at(0.01).await;
    assert_eq!(h.cancel(&goes).await, TaskStatus::Cancelled);
    assert_eq!(h.ended(&stays).await.status, TaskStatus::Completed);
    // The batch went without it: as a single call (a batch of one).
    assert!(batches(&h).is_empty());
    assert_eq!(h.fake.count(call_of(&goes)), 0);
    assert_eq!(h.fake.count(call_of(&stays)), 1);
}

#[tokio::test(start_paused = true)]
async fn the_batch_holds_its_slot_until_its_last_task_ended() {
    let h = batched_app().await;
    let start = h.fake.epoch().elapsed();
    let short = embed(&h, json!({"sleep": 1})).await;
    let long = embed(&h, json!({"sleep": 5})).await;
    let after = h.submit(json!({})).await;
    for id in [&short, &long, &after] {
        assert_eq!(h.ended(id).await.status, TaskStatus::Completed);
    }
    assert_eq!(h.fake.time_of(0, call_of(&after)) - start, secs(5.05));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_in_a_batch_stops_the_worker_and_fails_the_others_saying_why() {
    let h = batched_app().await;
    let mut slow = request(json!({"sleep": 10}));
    slow.function = Some("embed".into());
    slow.timeout_secs = Some(2.0);
    let slow = h.try_submit(slow).await.unwrap();
    let other = embed(&h, json!({"sleep": 10})).await;
    let timed_out = h.ended(&slow).await;
    assert_eq!(timed_out.error.as_deref(), Some("timed out after 2s"));
    let other = h.ended(&other).await;
    assert_eq!(
        (other.status, other.error.as_deref()),
        (
            TaskStatus::Failed,
            Some("the worker was stopped while running the task: another task on it timed out after 2s")
        )
    );
    assert_eq!(killed(&h.fake.ops()).len(), 1);
}
