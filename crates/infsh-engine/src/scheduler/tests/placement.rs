//! Placement through the machine-wide broker, with fake workers on a
//! declared inventory: the least recently used idle replica is evicted
//! (its `unload` runs) for an app with no replica; a busy or `keep_warm`
//! replica never is, and the task that waits is told why, once.

use infsh_store::TaskStatus;
use serde_json::json;

use super::*;
use crate::api::EngineError;
use crate::testing::fake_worker::{Fake, Op};
use crate::testing::Harness;

/// Two one-GPU slots, and a CPU slot.
const TWO_GPUS: &str = "inventory:\n  gpus:\n    - {index: 0, vram: 80GB}\n    - {index: 1, vram: 80GB}\nworkers:\n  cpu: {count: 1}\n";
/// One one-GPU slot, and a CPU slot.
const ONE_GPU: &str =
    "inventory:\n  gpus:\n    - {index: 0, vram: 80GB}\nworkers:\n  cpu: {count: 1}\n";

fn gpu_app(name: &str) -> String {
    format!("name: {name}\nresources:\n  gpu: {{count: 1}}\n")
}

/// The pids that got `shutdown` (their `unload`), in order.
fn unloaded(ops: &[Op]) -> Vec<u32> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Shutdown { pid } => Some(*pid),
            _ => None,
        })
        .collect()
}

/// Apps a, b and c (one GPU each) on ONE_GPU; a ran a task and holds the
/// slot, idle.
async fn three_apps_with_a_idle_on_the_slot() -> Harness {
    let (a, b, c) = (gpu_app("a"), gpu_app("b"), gpu_app("c"));
    let h = Harness::start_apps(
        Fake::new(),
        &[("a", &a), ("b", &b), ("c", &c)],
        ONE_GPU,
        |_| {},
    )
    .await;
    let first = h.submit_to("local/a", json!({})).await;
    h.ended(&first).await;
    h
}

/// b's run evicts the idle a (its unload takes 4 s) and b is drained
/// before a is gone; c's run comes meanwhile and, 10 s in, still waits.
/// Returns b's ref, b's task and c's task.
async fn b_evicts_a_and_is_drained_while_c_waits(
    h: &Harness,
) -> (infsh_core::AppRef, String, String) {
    h.fake.script_unload_time(secs(4.0));
    let b_app: infsh_core::AppRef = "local/b".parse().unwrap();
    let for_b = h.submit_to("local/b", json!({})).await;
    assert_eq!(unloaded(&h.fake.ops()).len(), 1, "a is being evicted");
    h.engine.drain_app(&b_app).await.unwrap();
    let for_c = h.submit_to("local/c", json!({})).await;
    h.at(10.0).await;
    let c_now = h.engine.get(&for_c).await.unwrap().record.status;
    assert_eq!(c_now, TaskStatus::Queued);
    (b_app, for_b, for_c)
}

#[tokio::test(start_paused = true)]
async fn the_least_recently_used_idle_replica_is_evicted_with_its_unload() {
    let (a, b, c) = (gpu_app("a"), gpu_app("b"), gpu_app("c"));
    let h = Harness::start_apps(
        Fake::new(),
        &[("a", &a), ("b", &b), ("c", &c)],
        TWO_GPUS,
        |_| {},
    )
    .await;
    let first = h.submit_to("local/a", json!({"sleep": 1})).await;
    h.ended(&first).await;
    h.at(5.0).await;
    let second = h.submit_to("local/b", json!({"sleep": 1})).await;
    h.ended(&second).await;
    h.at(10.0).await;
    // Both slots are held by idle replicas; a's was used longest ago.
    let third = h.submit_to("local/c", json!({"sleep": 1})).await;
    assert_eq!(h.ended(&third).await.status, TaskStatus::Completed);

    let launches = h.fake.replica_launches();
    let pid = |app: &str| launches.iter().find(|l| l.app == app).unwrap().pid;
    let ops = h.fake.ops();
    assert_eq!(unloaded(&ops), vec![pid("local/a")], "{ops:#?}");
    let c_launch = launches.iter().find(|l| l.app == "local/c").unwrap();
    let a_launch = launches.iter().find(|l| l.app == "local/a").unwrap();
    assert_eq!(c_launch.slot, a_launch.slot, "c takes the slot a held");
    assert_eq!(c_launch.slot.gpu_ids, ["0"]);
    let view = h.engine.engine_view();
    assert_eq!(view.evictions_total, 1);
    assert_eq!(view.slots[0].replicas, ["local/c#0"]);
    assert_eq!(view.slots[1].replicas, ["local/b#0"]);
    let states: Vec<(String, String)> = h
        .engine
        .workers()
        .await
        .into_iter()
        .map(|w| (w.id, w.state))
        .collect();
    let idle = |id: &str| (id.to_string(), "idle".to_string());
    assert_eq!(states, [idle("local/b#0"), idle("local/c#0")], "a is gone");
}

#[tokio::test(start_paused = true)]
async fn a_busy_holder_is_never_evicted_and_the_waiter_is_told_once() {
    let (a, b) = (gpu_app("a"), gpu_app("b"));
    let cpu = "name: c\n";
    let h = Harness::start_apps(
        Fake::new(),
        &[("a", &a), ("b", &b), ("c", cpu)],
        ONE_GPU,
        |_| {},
    )
    .await;
    let long = h.submit_to("local/a", json!({"sleep": 10})).await;
    h.at(1.0).await;
    let waiting = h.submit_to("local/b", json!({"sleep": 1})).await;
    h.at(2.0).await;
    let view = h.engine.engine_view();
    assert_eq!(view.tasks_waiting_for_slot, 1);
    assert_eq!(view.slots[0].running_tasks, 1);
    // Tasks of a CPU app come and go meanwhile: each end wakes the
    // waiting scheduler, which asks again and is told the same.
    for _ in 0..3 {
        let quick = h.submit_to("local/c", json!({"sleep": 1})).await;
        h.ended(&quick).await;
    }
    assert_eq!(h.ended(&long).await.status, TaskStatus::Completed);
    assert_eq!(h.ended(&waiting).await.status, TaskStatus::Completed);

    let reason = "waiting for a GPU slot: local/a (running a task) holds gpus [0]";
    let logs = h.logs(&waiting).await;
    assert_eq!(logs.iter().filter(|l| *l == reason).count(), 1, "{logs:#?}");
    let ops = h.fake.ops();
    let a_end = h.fake.time_of(0, call_end_of(&long));
    let b_call = h.fake.time_of(0, call_of(&waiting));
    assert!(
        b_call >= a_end,
        "b ran at {b_call:?}, before a ended at {a_end:?}"
    );
    let a_pid = h.fake.replica_launches()[0].pid;
    assert_eq!(unloaded(&ops), vec![a_pid], "a is evicted once idle");
    assert_eq!(h.engine.engine_view().tasks_waiting_for_slot, 0);
}

#[tokio::test(start_paused = true)]
async fn a_keep_warm_replica_is_never_evicted() {
    let warm = "name: a\nresources:\n  gpu: {count: 1}\ninfsh:\n  keep_warm: true\n";
    let b = gpu_app("b");
    let h = Harness::start_apps(Fake::new(), &[("a", warm), ("b", &b)], ONE_GPU, |_| {}).await;
    let first = h.submit_to("local/a", json!({})).await;
    h.ended(&first).await;
    let waiting = h.submit_to("local/b", json!({})).await;
    h.at(600.0).await;
    let view = h.engine.get(&waiting).await.unwrap();
    assert_eq!(view.record.status, TaskStatus::Queued);
    let reason = "waiting for a GPU slot: local/a (keep_warm) holds gpus [0]";
    assert!(
        view.logs.iter().any(|l| l.content == reason),
        "{:#?}",
        view.logs
    );
    assert!(unloaded(&h.fake.ops()).is_empty());
    assert_eq!(h.engine.engine_view().evictions_total, 0);
}

#[tokio::test(start_paused = true)]
async fn an_app_no_slot_can_host_is_refused_at_once() {
    let big = "name: big\nresources:\n  gpu: {count: 2}\n";
    let h = Harness::start_apps(Fake::new(), &[("big", big)], ONE_GPU, |_| {}).await;
    let refused = h
        .try_submit(crate::api::RunRequest::new("local/big".parse().unwrap()))
        .await;
    let Err(EngineError::NoMatchingWorker(why)) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(
        why.to_string(),
        "local/big needs 2 GPUs; the largest slot here is gpus [0] (1 GPU, 80 GB)"
    );
    assert!(h.fake.launches().is_empty(), "nothing was started");
}

#[tokio::test(start_paused = true)]
async fn workers_get_their_slots_gpus_and_cpu_apps_never_a_gpu_slot() {
    let a = "name: a\nresources:\n  gpu: {count: 1}\ninfsh:\n  max_replicas: 2\n";
    let h = Harness::start_apps(
        Fake::new(),
        &[("a", a), ("c", "name: c\n")],
        TWO_GPUS,
        |c| c.concurrency_per_replica = 1,
    )
    .await;
    let one = h.submit_to("local/a", json!({"sleep": 2})).await;
    let two = h.submit_to("local/a", json!({"sleep": 2})).await;
    let cpu = h.submit_to("local/c", json!({})).await;
    for id in [&one, &two, &cpu] {
        assert_eq!(h.ended(id).await.status, TaskStatus::Completed);
    }
    let mut seen: Vec<(String, Option<String>)> = h
        .fake
        .replica_launches()
        .into_iter()
        .map(|l| (l.app, l.slot.cuda_visible_devices))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("local/a".to_string(), Some("0".to_string())),
            ("local/a".to_string(), Some("1".to_string())),
            ("local/c".to_string(), Some(String::new())),
        ]
    );
    let workers = h.engine.workers().await;
    let slots: Vec<(&str, Option<&str>)> = workers
        .iter()
        .map(|w| (w.id.as_str(), w.slot.as_deref()))
        .collect();
    assert_eq!(
        slots,
        [
            ("local/a#0", Some("gpus [0]")),
            ("local/a#1", Some("gpus [1]")),
            ("local/c#0", Some("cpu 0"))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_drained_engine_queues_and_undrain_runs_the_queue() {
    let h = Harness::start_apps(Fake::new(), &[("c", "name: c\n")], ONE_GPU, |_| {}).await;
    let name = h.engine.engine_view().name;
    let running = h.submit_to("local/c", json!({"sleep": 5})).await;
    h.at(1.0).await;
    h.engine.drain_engine(&name).unwrap();
    assert!(h.engine.engine_view().draining);
    let queued = h.submit_to("local/c", json!({})).await;
    assert_eq!(h.ended(&running).await.status, TaskStatus::Completed);
    h.at(60.0).await;
    assert_eq!(
        h.engine.get(&queued).await.unwrap().record.status,
        TaskStatus::Queued
    );
    assert!(matches!(
        h.engine.drain_engine("elsewhere"),
        Err(EngineError::UnknownEngine(n)) if n == "elsewhere"
    ));
    h.engine.undrain_engine(&name).unwrap();
    assert_eq!(h.ended(&queued).await.status, TaskStatus::Completed);

    let app = "local/c".parse().unwrap();
    h.engine.drain_app(&app).await.unwrap();
    let held = h.submit_to("local/c", json!({})).await;
    h.at(120.0).await;
    assert_eq!(
        h.engine.get(&held).await.unwrap().record.status,
        TaskStatus::Queued
    );
    assert!(h.engine.workers().await.iter().all(|w| w.draining));
    h.engine.undrain_app(&app).await.unwrap();
    assert_eq!(h.ended(&held).await.status, TaskStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn min_replicas_start_at_boot_set_up_and_are_never_evicted() {
    let a = "name: a\nresources:\n  gpu: {count: 1}\ninfsh:\n  min_replicas: 1\n";
    let b = gpu_app("b");
    let h = Harness::start_apps(Fake::new(), &[("a", a), ("b", &b)], ONE_GPU, |_| {}).await;
    h.at(1.0).await;
    let ops = h.fake.ops();
    let launches = h.fake.replica_launches();
    assert_eq!(launches.len(), 1, "{launches:?}");
    assert_eq!(launches[0].app, "local/a");
    assert!(
        ops.contains(&Op::Setup {
            pid: launches[0].pid,
            config: json!({})
        }),
        "{ops:#?}"
    );
    let waiting = h.submit_to("local/b", json!({})).await;
    h.at(60.0).await;
    assert_eq!(
        h.engine.get(&waiting).await.unwrap().record.status,
        TaskStatus::Queued
    );
    assert!(unloaded(&h.fake.ops()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_app_concurrency_bound_runs_that_many_tasks_on_one_replica() {
    let c = "name: c\ninfsh:\n  concurrency: 2\n  max_replicas: 1\n";
    let h = Harness::start_apps(Fake::new(), &[("c", c)], "", |_| {}).await;
    let one = h.submit_to("local/c", json!({"sleep": 2})).await;
    let two = h.submit_to("local/c", json!({"sleep": 2})).await;
    h.ended(&one).await;
    h.ended(&two).await;
    assert_eq!(h.fake.replica_launches().len(), 1);
    assert_eq!(
        h.fake.time_of(0, call_of(&one)),
        h.fake.time_of(0, call_of(&two)),
        "both ran at once"
    );
}

#[tokio::test(start_paused = true)]
async fn unreadable_resources_refuse_the_apps_runs() {
    let bad = "name: bad\nresources:\n  gpu: {count: two}\n";
    let h = Harness::start_apps(Fake::new(), &[("bad", bad)], ONE_GPU, |_| {}).await;
    let refused = h
        .try_submit(crate::api::RunRequest::new("local/bad".parse().unwrap()))
        .await;
    let Err(EngineError::AppUnavailable { message, .. }) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(
        message,
        "inf.yml: resources.gpu.count: \"two\" is not a whole number of GPUs"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slot_freed_by_an_eviction_goes_to_the_app_it_was_freed_for() {
    let h = three_apps_with_a_idle_on_the_slot().await;
    // b's first run evicts a; b is then drained, so it does not take the
    // slot when a is gone: c, coming meanwhile, must still leave it to b.
    let (b_app, for_b, for_c) = b_evicts_a_and_is_drained_while_c_waits(&h).await;
    h.engine.undrain_app(&b_app).await.unwrap();
    assert_eq!(h.ended(&for_b).await.status, TaskStatus::Completed);
    assert_eq!(h.ended(&for_c).await.status, TaskStatus::Completed);
    let apps: Vec<String> = h
        .fake
        .replica_launches()
        .into_iter()
        .map(|l| l.app)
        .collect();
    assert_eq!(apps, ["local/a", "local/b", "local/c"]);
}

#[tokio::test(start_paused = true)]
async fn an_evicted_replica_is_listed_stopping_until_its_unload_ends() {
    let (a, b) = (gpu_app("a"), gpu_app("b"));
    let fake = Fake::new();
    fake.script_unload_time(secs(4.0));
    let h = Harness::start_apps(fake, &[("a", &a), ("b", &b)], ONE_GPU, |_| {}).await;
    let first = h.submit_to("local/a", json!({})).await;
    h.ended(&first).await;
    let second = h.submit_to("local/b", json!({})).await;
    h.at(2.0).await;
    let rows: Vec<(String, String, Option<String>)> = h
        .engine
        .workers()
        .await
        .into_iter()
        .map(|w| (w.id, w.state, w.slot))
        .collect();
    assert_eq!(
        rows,
        [(
            "local/a#0".to_string(),
            "stopping".to_string(),
            Some("gpus [0]".to_string())
        )]
    );
    assert_eq!(h.engine.engine_view().slots[0].replicas, ["local/a#0"]);
    assert_eq!(h.ended(&second).await.status, TaskStatus::Completed);
    let a_unloaded = h.fake.time_of(0, |op| matches!(op, Op::Shutdown { .. }));
    assert!(h.fake.time_of(0, call_of(&second)) >= a_unloaded + secs(4.0));
    let states: Vec<String> = h.engine.workers().await.into_iter().map(|w| w.id).collect();
    assert_eq!(states, ["local/b#0"]);
}

#[tokio::test(start_paused = true)]
async fn a_drained_engine_starts_no_replica_for_an_app_without_one() {
    let h = Harness::start_apps(Fake::new(), &[("c", "name: c\n")], ONE_GPU, |_| {}).await;
    let name = h.engine.engine_view().name;
    h.engine.drain_engine(&name).unwrap();
    let queued = h.submit_to("local/c", json!({})).await;
    h.at(30.0).await;
    assert_eq!(
        h.engine.get(&queued).await.unwrap().record.status,
        TaskStatus::Queued
    );
    assert!(h.fake.replica_launches().is_empty(), "only a probe ran");
    assert_eq!(h.fake.launches().len(), 1);
    assert!(h.engine.workers().await.is_empty());
    h.engine.undrain_engine(&name).unwrap();
    assert_eq!(h.ended(&queued).await.status, TaskStatus::Completed);
    assert_eq!(h.fake.replica_launches().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn preloads_of_two_apps_on_one_slot_never_evict_each_other() {
    let (a, b) = (gpu_app("a"), gpu_app("b"));
    let h = Harness::start_apps(Fake::new(), &[("a", &a), ("b", &b)], ONE_GPU, |c| {
        c.preload = true;
    })
    .await;
    h.at(60.0).await;
    // One preload got the slot; the other waits for it (no task asked).
    assert!(unloaded(&h.fake.ops()).is_empty(), "{:#?}", h.fake.ops());
    let launches = h.fake.replica_launches();
    assert_eq!(launches.len(), 1, "{launches:?}");
    let (holder, other) = if launches[0].app == "local/a" {
        ("local/a", "local/b")
    } else {
        ("local/b", "local/a")
    };
    // A task of the other app may evict the idle holder, once: the
    // holder's preload then waits instead of evicting back.
    let task = h.submit_to(other, json!({})).await;
    assert_eq!(h.ended(&task).await.status, TaskStatus::Completed);
    h.at(120.0).await;
    let holder_pid = launches[0].pid;
    assert_eq!(unloaded(&h.fake.ops()), vec![holder_pid]);
    let apps: Vec<String> = h
        .fake
        .replica_launches()
        .into_iter()
        .map(|l| l.app)
        .collect();
    assert_eq!(apps, [holder, other]);
    assert_eq!(h.engine.engine_view().evictions_total, 1);
}

#[tokio::test(start_paused = true)]
async fn a_discovery_never_evicts_it_probes() {
    let (a, b) = (gpu_app("a"), gpu_app("b"));
    let h = Harness::start_apps(Fake::new(), &[("a", &a), ("b", &b)], ONE_GPU, |_| {}).await;
    let first = h.submit_to("local/a", json!({})).await;
    h.ended(&first).await;
    // A read-only GET /apps/local/b: the idle a stays.
    let detail = h.engine.app(&"local/b".parse().unwrap()).await.unwrap();
    assert!(!detail.functions.is_null());
    h.at(30.0).await;
    assert!(unloaded(&h.fake.ops()).is_empty(), "{:#?}", h.fake.ops());
    let apps: Vec<String> = h
        .fake
        .replica_launches()
        .into_iter()
        .map(|l| l.app)
        .collect();
    assert_eq!(apps, ["local/a"]);
    assert_eq!(h.engine.engine_view().evictions_total, 0);
}

#[tokio::test(start_paused = true)]
async fn an_app_whose_eviction_is_in_progress_evicts_no_second_app() {
    let (a, b, c) = (gpu_app("a"), gpu_app("b"), gpu_app("c"));
    let h = Harness::start_apps(
        Fake::new(),
        &[("a", &a), ("b", &b), ("c", &c)],
        TWO_GPUS,
        |_| {},
    )
    .await;
    let first = h.submit_to("local/a", json!({})).await;
    h.ended(&first).await;
    h.at(5.0).await;
    let second = h.submit_to("local/b", json!({})).await;
    h.ended(&second).await;
    h.at(10.0).await;
    // c evicts a (used longest ago), whose unload takes 4 s; c's second
    // task, meanwhile, must wait for that eviction, not evict b too.
    h.fake.script_unload_time(secs(4.0));
    let one = h.submit_to("local/c", json!({})).await;
    h.at(11.0).await;
    let two = h.submit_to("local/c", json!({})).await;
    assert_eq!(h.ended(&one).await.status, TaskStatus::Completed);
    assert_eq!(h.ended(&two).await.status, TaskStatus::Completed);
    let a_pid = h.fake.replica_launches()[0].pid;
    assert_eq!(unloaded(&h.fake.ops()), vec![a_pid], "{:#?}", h.fake.ops());
    assert_eq!(h.engine.engine_view().evictions_total, 1);
}
#[tokio::test(start_paused = true)]
async fn an_expired_reservation_wakes_the_app_that_waits_behind_it() {
    let h = three_apps_with_a_idle_on_the_slot().await;
    // b evicts a and is drained before a is gone: the slot stays b's for
    // the reservation's 30 s, then c (which nothing else wakes) gets it.
    let (_, for_b, for_c) = b_evicts_a_and_is_drained_while_c_waits(&h).await;
    h.at(40.0).await;
    assert_eq!(h.ended(&for_c).await.status, TaskStatus::Completed);
    let b_now = h.engine.get(&for_b).await.unwrap().record.status;
    assert_eq!(b_now, TaskStatus::Queued);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_gives_up_the_slot_freed_for_it() {
    let h = three_apps_with_a_idle_on_the_slot().await;
    h.at(1.0).await;
    // b evicts a, then its only task is cancelled: c, waiting meanwhile,
    // gets the slot once a is gone, not after the reservation expires.
    h.fake.script_unload_time(secs(4.0));
    let for_b = h.submit_to("local/b", json!({})).await;
    let for_c = h.submit_to("local/c", json!({})).await;
    assert_eq!(h.cancel(&for_b).await, TaskStatus::Cancelled);
    assert_eq!(h.ended(&for_c).await.status, TaskStatus::Completed);
    let a_unloaded = h.fake.time_of(0, |op| matches!(op, Op::Shutdown { .. }));
    let c_ran = h.fake.time_of(0, call_of(&for_c));
    assert!(c_ran < a_unloaded + secs(10.0), "c ran at {c_ran:?}");
}

#[tokio::test(start_paused = true)]
async fn a_replica_number_is_reused_only_once_its_evicted_worker_is_gone() {
    let (a, b, c) = (gpu_app("a"), gpu_app("b"), gpu_app("c"));
    let fake = Fake::new();
    let h = Harness::start_apps(fake, &[("a", &a), ("b", &b), ("c", &c)], TWO_GPUS, |_| {}).await;
    let first = h.submit_to("local/a", json!({})).await;
    h.ended(&first).await;
    h.at(5.0).await;
    let second = h.submit_to("local/b", json!({})).await;
    h.ended(&second).await;
    h.at(10.0).await;
    // c evicts a, whose unload takes 20 s; a task of a comes meanwhile.
    h.fake.script_unload_time(secs(20.0));
    let third = h.submit_to("local/c", json!({})).await;
    h.at(11.0).await;
    h.fake.script_unload_time(secs(0.0));
    let again = h.submit_to("local/a", json!({})).await;
    h.at(12.0).await;
    let mut ids: Vec<String> = h.engine.workers().await.into_iter().map(|w| w.id).collect();
    let listed = ids.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), listed.len(), "{listed:?}");
    assert_eq!(h.ended(&third).await.status, TaskStatus::Completed);
    assert_eq!(h.ended(&again).await.status, TaskStatus::Completed);
    let a_first = h.fake.replica_launches()[0].pid;
    let a_unloaded = h.fake.time_of(0, |op| *op == Op::Shutdown { pid: a_first });
    let a_again = h.fake.time_of(0, call_of(&again));
    assert!(
        a_again >= a_unloaded + secs(20.0),
        "a ran again at {a_again:?}"
    );
}
