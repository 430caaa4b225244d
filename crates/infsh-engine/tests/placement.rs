//! Placement with real Python workers on a declared inventory (no GPU
//! needed): the `gpu-report` fixture reports the CUDA_VISIBLE_DEVICES its
//! worker got and the metadata.gpu_ids its setup got, and records its
//! `unload`. Served under other names with other `resources:` and
//! `infsh:` bounds, it is a two-GPU app, a CPU app, a keep_warm app.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use infsh_engine::{Engine, EngineConfig, EngineError};
use infsh_store::TaskStatus;
use serde_json::{json, Value};

const ONE_GPU: &str = "inventory:\n  gpus:\n    - {index: 0, name: \"Declared GPU\", vram: 80GB}\n";
const FOUR_GPUS: &str = "inventory:\n  gpus:\n    - {index: 0, vram: 80GB}\n    - {index: 1, vram: 80GB}\n    - {index: 2, vram: 24GB}\n    - {index: 3, vram: 24GB}\n";

fn config(fx: &Fixture, engine_yml: &str) -> EngineConfig {
    let mut config = fx.config();
    config.placement =
        infsh_placement::EngineConfig::parse(engine_yml, Path::new("engine.yml")).unwrap();
    config
}

async fn start(fx: &Fixture, engine_yml: &str) -> Engine {
    Engine::start(config(fx, engine_yml))
        .await
        .expect("engine start")
}

/// Serves gpu-report as `tests/<name>` with these `resources:` and extra
/// inf.yml lines; its unload is recorded in `<root>/unloads`.
fn serve_as(fx: &Fixture, name: &str, resources: &str, extra: &str) -> PathBuf {
    let marker = fx.path().join("unloads");
    let yml = format!(
        "namespace: tests\nname: {name}\ndefault_function: report\nkernel: python-3.11\n{resources}{extra}env:\n  UNLOAD_MARKER: \"{}\"\n  APP_LABEL: {name}\n",
        marker.display()
    );
    fx.add_fixture_as("gpu-report", name, &yml);
    marker
}

const ONE: &str = "resources:\n  gpu: {count: 1}\n";

fn report(app: &str, input: Value) -> infsh_engine::RunRequest {
    run(app, None, input)
}

fn output(view: &infsh_engine::TaskView) -> Value {
    view.record.output.clone().expect("an output").into_value()
}

fn unloads(marker: &Path) -> String {
    std::fs::read_to_string(marker).unwrap_or_default()
}

#[tokio::test]
async fn two_replicas_of_one_app_on_two_one_gpu_slots_see_different_gpus() {
    let fx = Fixture::new(&[]);
    serve_as(&fx, "gpu-a", ONE, "");
    let engine = start(
        &fx,
        &format!("{FOUR_GPUS}workers:\n  gpu:\n    - gpus: [0]\n    - gpus: [1]\napps:\n  tests/gpu-a: {{max_replicas: 2}}\n"),
    )
    .await;
    // Each task holds its replica until both run, so that they cannot
    // share one.
    let go = fx.path().join("go");
    let started = [fx.path().join("s1"), fx.path().join("s2")];
    let mut tasks = Vec::new();
    for file in &started {
        let input = json!({"started_file": file, "go_file": go});
        tasks.push(submit(&engine, report("tests/gpu-a", input)).await);
    }
    until(LIMIT, "both tasks run", || {
        started.iter().all(|f| f.exists()).then_some(())
    })
    .await;
    std::fs::write(&go, "").unwrap();
    let mut seen = Vec::new();
    for task in &tasks {
        let done = finished(&engine, &task.record.id).await;
        assert_eq!(
            done.record.status,
            TaskStatus::Completed,
            "{:?}",
            done.record.error
        );
        let out = output(&done);
        // CUDA numbers the GPUs as NVML (and so the slots) does.
        assert_eq!(out["cuda_device_order"], json!("PCI_BUS_ID"), "{out}");
        seen.push((out["cuda_visible_devices"].clone(), out["gpu_ids"].clone()));
    }
    seen.sort_by_key(|s| s.0.to_string());
    assert_eq!(
        seen,
        [(json!("0"), json!(["0"])), (json!("1"), json!(["1"]))]
    );
    let view = engine.engine_view();
    assert_eq!(view.inventory, "declared");
    let held: Vec<usize> = view.slots.iter().map(|s| s.replicas.len()).collect();
    assert_eq!(held, [1, 1]);
    shutdown(&engine).await;
}

#[tokio::test]
async fn a_two_gpu_app_lands_on_the_pair_slot_and_sees_both() {
    let fx = Fixture::new(&[]);
    serve_as(
        &fx,
        "gpu-pair",
        "resources:\n  gpu: {count: 2, vram: 20GB}\n",
        "",
    );
    let engine = start(
        &fx,
        &format!(
            "{FOUR_GPUS}workers:\n  gpu:\n    - gpus: [0]\n    - gpus: [1]\n    - gpus: [2, 3]\n"
        ),
    )
    .await;
    let done = completed(&engine, report("tests/gpu-pair", json!({}))).await;
    let out = output(&done);
    assert_eq!(out["cuda_visible_devices"], "2,3");
    assert_eq!(out["gpu_ids"], json!(["2", "3"]));
    let workers = engine.workers().await;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].id, "tests/gpu-pair#0");
    assert_eq!(workers[0].slot.as_deref(), Some("gpus [2, 3]"));
    assert_eq!(workers[0].state, "idle");
    shutdown(&engine).await;
}

#[tokio::test]
async fn two_whole_gpu_apps_on_one_slot_take_turns_by_eviction_with_unload() {
    let fx = Fixture::new(&[]);
    let marker = serve_as(&fx, "gpu-a", ONE, "");
    serve_as(&fx, "gpu-b", ONE, "");
    let engine = start(&fx, ONE_GPU).await;
    let mut tasks = Vec::new();
    let apps = ["tests/gpu-a", "tests/gpu-b", "tests/gpu-a", "tests/gpu-b"];
    for app in apps {
        tasks.push(submit(&engine, report(app, json!({"seconds": 0.2}))).await);
    }
    // (app, pid) of the worker that ran each task.
    let mut served = Vec::new();
    for (task, app) in tasks.iter().zip(apps) {
        let done = finished(&engine, &task.record.id).await;
        assert_eq!(
            done.record.status,
            TaskStatus::Completed,
            "{:?}",
            done.record.error
        );
        assert_eq!(output(&done)["cuda_visible_devices"], "0");
        let pid = output(&done)["pid"].as_u64().unwrap();
        served.push((app.trim_start_matches("tests/").to_string(), pid));
    }
    // Whoever held the slot was evicted (and unloaded) for the other once
    // idle; how often depends on when each discovery and task came.
    let unloaded_workers = |marker: &Path| -> Vec<(String, u64)> {
        unloads(marker)
            .lines()
            .map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                (words[1].to_string(), words[2].parse().unwrap())
            })
            .collect()
    };
    let unloaded = |marker: &Path| -> Vec<String> {
        unloaded_workers(marker)
            .into_iter()
            .map(|(app, _)| app)
            .collect()
    };
    let turns = unloaded(&marker);
    assert!(!turns.is_empty(), "no eviction");
    // Each eviction unloaded a worker that had served its app (not a
    // probe), and no worker was unloaded twice (an evicted worker never
    // came back to serve and be evicted again).
    let evicted = unloaded_workers(&marker);
    for worker in &evicted {
        assert!(served.contains(worker), "{evicted:?} {served:?}");
    }
    let mut pids: Vec<u64> = evicted.iter().map(|(_, pid)| *pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), evicted.len(), "{evicted:?}");
    assert_eq!(engine.engine_view().evictions_total, turns.len() as u64);
    // One more turn: the app that is not resident evicts the one that is.
    let workers = engine.workers().await;
    assert_eq!(workers.len(), 1, "{workers:?}");
    let resident = workers[0].app.clone();
    let other = if resident == "tests/gpu-a" {
        "tests/gpu-b"
    } else {
        "tests/gpu-a"
    };
    let again = completed(&engine, report(other, json!({}))).await;
    assert_eq!(output(&again)["gpu_ids"], json!(["0"]));
    let turns_now = unloaded(&marker);
    assert_eq!(turns_now.len(), turns.len() + 1, "{turns_now:?}");
    assert_eq!(format!("tests/{}", turns_now.last().unwrap()), resident);
    shutdown(&engine).await;
}

#[tokio::test]
async fn a_busy_replica_is_never_evicted_the_other_app_waits_then_runs() {
    let fx = Fixture::new(&[]);
    let marker = serve_as(&fx, "gpu-a", ONE, "");
    serve_as(&fx, "gpu-b", ONE, "");
    let engine = start(&fx, ONE_GPU).await;
    let a_started = fx.path().join("a-started");
    let b_started = fx.path().join("b-started");
    // a runs until the test lets it end.
    let go = fx.path().join("go");
    let a = submit(
        &engine,
        report(
            "tests/gpu-a",
            json!({"started_file": a_started, "go_file": go}),
        ),
    )
    .await;
    until(LIMIT, "a runs", || a_started.exists().then_some(())).await;
    let b = submit(
        &engine,
        report("tests/gpu-b", json!({"started_file": b_started})),
    )
    .await;
    let reason = "waiting for a GPU slot: tests/gpu-a (running a task) holds gpus [0]";
    let waited = told(&engine, &b.record.id, reason).await;
    assert_eq!(waited.record.status, TaskStatus::Queued);
    assert!(unloads(&marker).is_empty(), "a busy replica was evicted");
    assert!(!b_started.exists());
    std::fs::write(&go, "").unwrap();
    let done_b = finished(&engine, &b.record.id).await;
    assert_eq!(
        done_b.record.status,
        TaskStatus::Completed,
        "{:?}",
        done_b.record.error
    );
    let done_a = finished(&engine, &a.record.id).await;
    assert_eq!(done_a.record.status, TaskStatus::Completed);
    assert!(done_a.record.updated_at_ms <= done_b.record.updated_at_ms);
    assert_eq!(
        unloads(&marker).lines().count(),
        1,
        "a was unloaded once idle"
    );
    let told = done_b.logs.iter().filter(|l| l.content == reason).count();
    assert_eq!(told, 1);
    shutdown(&engine).await;
}

/// Polls the task until its logs hold `line`; returns it then.
async fn told(engine: &Engine, id: &str, line: &str) -> infsh_engine::TaskView {
    within(LIMIT, async {
        loop {
            let view = engine.get(id).await.unwrap();
            if view.logs.iter().any(|l| l.content == line) {
                return view;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_keep_warm_replica_is_never_evicted() {
    let fx = Fixture::new(&[]);
    let marker = serve_as(&fx, "gpu-warm", ONE, "infsh:\n  keep_warm: true\n");
    serve_as(&fx, "gpu-b", ONE, "");
    let engine = start(&fx, ONE_GPU).await;
    completed(&engine, report("tests/gpu-warm", json!({}))).await;
    let b = submit(&engine, report("tests/gpu-b", json!({}))).await;
    let reason = "waiting for a GPU slot: tests/gpu-warm (keep_warm) holds gpus [0]";
    told(&engine, &b.record.id, reason).await;
    assert_eq!(engine.engine_view().tasks_waiting_for_slot, 1);
    assert_eq!(
        engine.get(&b.record.id).await.unwrap().record.status,
        TaskStatus::Queued
    );
    assert!(unloads(&marker).is_empty());
    assert_eq!(engine.engine_view().evictions_total, 0);
    engine.cancel(&b.record.id).await.unwrap();
    shutdown(&engine).await;
}

#[tokio::test]
async fn a_cpu_app_gets_no_gpu_on_a_cpu_slot_and_never_a_gpu_slot() {
    let fx = Fixture::new(&[]);
    serve_as(&fx, "cpu-report", "", "");
    let engine = start(
        &fx,
        &format!("{ONE_GPU}workers:\n  cpu: {{count: 1}}\n  gpu:\n    - gpus: [0]\n"),
    )
    .await;
    let done = completed(&engine, report("tests/cpu-report", json!({}))).await;
    let out = output(&done);
    assert_eq!(out["cuda_visible_devices"], "");
    assert_eq!(out["gpu_ids"], Value::Null);
    let view = engine.engine_view();
    assert_eq!(view.cpu_slots, Some(1));
    let names: Vec<(&str, usize)> = view
        .slots
        .iter()
        .map(|s| (s.name.as_str(), s.replicas.len()))
        .collect();
    assert_eq!(names, [("gpus [0]", 0), ("cpu 0", 1)]);
    assert_eq!(view.slots[0].gpus[0].name, "Declared GPU");
    assert_eq!(view.slots[0].gpus[0].vram_total_gb, Some(80.0));
    shutdown(&engine).await;
}

#[tokio::test]
async fn drain_finishes_running_tasks_starts_none_and_undrain_runs_the_queue() {
    let fx = Fixture::new(&[]);
    serve_as(&fx, "cpu-report", "", "");
    let engine = start(&fx, "name: box-1\n").await;
    let started = fx.path().join("started");
    let running = submit(
        &engine,
        report(
            "tests/cpu-report",
            json!({"seconds": 1.0, "started_file": started}),
        ),
    )
    .await;
    until(LIMIT, "the task runs", || started.exists().then_some(())).await;
    engine.drain_engine("box-1").unwrap();
    let queued = submit(&engine, report("tests/cpu-report", json!({}))).await;
    let done = finished(&engine, &running.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Completed);
    // Once the replica is idle its scheduler has looked at the queue.
    let workers = within(LIMIT, async {
        loop {
            let workers = engine.workers().await;
            if workers.iter().all(|w| w.state == "idle") {
                return workers;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(workers.len(), 1);
    assert_eq!(
        engine.get(&queued.record.id).await.unwrap().record.status,
        TaskStatus::Queued
    );
    assert!(engine.engine_view().draining);
    assert!(matches!(
        engine.drain_engine("box-2"),
        Err(EngineError::UnknownEngine(name)) if name == "box-2"
    ));
    engine.undrain_engine("box-1").unwrap();
    let done = finished(&engine, &queued.record.id).await;
    assert_eq!(done.record.status, TaskStatus::Completed);
    shutdown(&engine).await;
}

#[tokio::test]
async fn an_app_no_slot_can_host_is_refused_at_once_with_no_matching_worker() {
    let fx = Fixture::new(&[]);
    serve_as(&fx, "gpu-big", "resources:\n  gpu: {count: 2}\n", "");
    let engine = start(&fx, ONE_GPU).await;
    let refused = within(
        std::time::Duration::from_secs(2),
        engine.submit(report("tests/gpu-big", json!({}))),
    )
    .await;
    let Err(e @ EngineError::NoMatchingWorker(_)) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(
        e.to_string(),
        "tests/gpu-big needs 2 GPUs; the largest slot here is gpus [0] (1 GPU, 80 GB)"
    );
    assert!(engine.workers().await.is_empty());
    shutdown(&engine).await;
}

/// A run pinned to a slot (`RunRequest::slots`, what `infsh engine run`
/// sets for a fleet run pinned by `workers`) runs there: with one replica
/// allowed, the idle one on another slot is stopped to make room. A pin no
/// slot here can serve is refused at once.
#[tokio::test]
async fn a_pinned_run_runs_on_its_slot_even_when_the_apps_replica_is_elsewhere() {
    let fx = Fixture::new(&[]);
    serve_as(&fx, "gpu-a", ONE, "");
    let engine = start(
        &fx,
        &format!("{FOUR_GPUS}workers:\n  gpu:\n    - gpus: [0]\n    - gpus: [1]\n"),
    )
    .await;
    let pinned = |slot: usize| {
        let mut request = report("tests/gpu-a", json!({}));
        request.slots = Some(vec![slot]);
        request
    };
    // Unpinned, placement picks slot 0.
    let first = completed(&engine, report("tests/gpu-a", json!({}))).await;
    assert_eq!(output(&first)["cuda_visible_devices"], json!("0"));
    for _ in 0..2 {
        let done = completed(&engine, pinned(1)).await;
        assert_eq!(output(&done)["cuda_visible_devices"], json!("1"));
    }
    let back = completed(&engine, pinned(0)).await;
    assert_eq!(output(&back)["cuda_visible_devices"], json!("0"));

    let refused = engine.submit(pinned(7)).await;
    let Err(e @ EngineError::InvalidWorkers(_)) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(
        e.to_string(),
        "app \"tests/gpu-a\" (1 GPU) cannot run on the slots the run is pinned to ([7])"
    );
    shutdown(&engine).await;
}
