//! End to end: `infsh engine status` against the real `infsh serve
//! --engine-config` with a declared GPU inventory (no GPU needed), and the
//! drain routes it reports on.

mod common;

use std::time::Duration;

use common::server::*;
use common::*;
use serde_json::{json, Value};

const ENGINE_YML: &str = "\
name: gpu-box-test
workers:
  cpu: {count: 1}
  gpu:
    - gpus: [0]
    - gpus: [2, 3]
inventory:
  gpus:
    - {index: 0, name: \"NVIDIA H100 80GB HBM3\", vram: 80GB}
    - {index: 2, vram: 24}
    - {index: 3, vram: 24GB}
";

/// A sandbox serving tests/slow (a CPU app) with `ENGINE_YML`, behind a key.
fn start() -> (ServeSandbox, Server) {
    let sb = ServeSandbox::new(&["slow"]);
    let config = sb.path().join("engine.yml");
    std::fs::write(&config, ENGINE_YML).unwrap();
    let server = sb.start_with_key(&["--engine-config", config.to_str().unwrap()]);
    (sb, server)
}

/// `infsh --json engine status`.
fn status(sb: &ServeSandbox, server: &Server) -> Value {
    sb.run_json(server, &["--json", "engine", "status"], 0)
}

fn slot_names(engine: &Value) -> Vec<String> {
    engine["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_drained_engine_queues_runs_until_undrained() {
    let (sb, server) = start();

    // The declared layout, as JSON and for people.
    let doc = status(&sb, &server);
    let engine = &doc["engines"][0];
    assert_eq!(engine["name"], "gpu-box-test", "{doc:#}");
    assert_eq!(engine["inventory"], "declared");
    assert_eq!(engine["cpu_slots"], 1);
    assert_eq!(
        slot_names(engine),
        vec!["gpus [0]", "gpus [2, 3]", "cpu 0"],
        "{engine:#}"
    );
    assert_eq!(doc["workers"], json!([]));
    let out = sb.run(&server, &["engine", "status"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "engine gpu-box-test (inventory: declared, CPU slots: 1, evictions: 0, waiting for a slot: 0)",
            "SLOT         GPUS  VRAM          REPLICAS  RUNNING  DRAINING",
            "gpus [0]     0     80 GB         -         0        no",
            "gpus [2, 3]  2,3   24 GB, 24 GB  -         0        no",
            "cpu 0        -     -             -         0        no",
            "",
        ],
        "{text}"
    );
    assert_eq!(lines[6], "no workers", "{text}");

    // Another engine's name is refused.
    let problem = server.api("POST", "/engines/elsewhere/drain", None, 404);
    assert_eq!(
        problem,
        json!({"type": "https://infsh.dev/errors/unknown_engine", "title": "Not Found",
               "status": 404, "detail": "unknown engine \"elsewhere\""})
    );

    let engine = server.api("POST", "/engines/gpu-box-test/drain", None, 200);
    assert_eq!(engine["draining"], true);
    let out = sb.run(&server, &["engine", "status"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).lines().nth(2).unwrap().ends_with(" yes"),
        "{}",
        stdout(&out)
    );

    // Accepted and queued, not started.
    let id = sb.submit(
        &server,
        "tests/slow",
        &["--input", r#"{"seconds": 0.1, "label": "held"}"#],
    );
    assert_eq!(server.task(&id)["status"], 2);
    let workers = status(&sb, &server)["workers"].clone();
    assert!(
        workers
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["current_tasks"] == json!([])),
        "{workers:#}"
    );

    let engine = server.api("POST", "/engines/gpu-box-test/undrain", None, 200);
    assert_eq!(engine["draining"], false);
    let task = server.wait_end(&id, Duration::from_secs(60));
    assert_eq!(task["status"], 10, "{task:#}");
}

#[test]
fn engine_status_with_a_wrong_key_exits_11() {
    let (sb, server) = start();
    let out = sb
        .infsh(&server)
        .env("INFSH_API_KEY", "wrong")
        .args(["engine", "status"])
        .output()
        .unwrap();
    assert_code(&out, 11);
}

#[test]
fn engine_status_shows_the_declared_layout_and_the_busy_worker() {
    let (sb, server) = start();

    let doc = status(&sb, &server);
    let engines = doc["engines"].as_array().expect("a list of engines");
    assert_eq!(engines.len(), 1, "{doc:#}");
    let engine = &engines[0];
    assert_eq!(engine["name"], "gpu-box-test");
    assert_eq!(engine["inventory"], "declared");
    assert_eq!(engine["draining"], false);
    assert_eq!(engine["cpu_slots"], 1);
    assert_eq!(
        slot_names(engine),
        vec!["gpus [0]", "gpus [2, 3]", "cpu 0"],
        "{engine:#}"
    );
    let big = &engine["slots"][1];
    assert_eq!(big["kind"], "gpu");
    let gpus: Vec<(Value, Value)> = big["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["index"].clone(), g["vram_total_gb"].clone()))
        .collect();
    assert_eq!(gpus, vec![(json!(2), json!(24.0)), (json!(3), json!(24.0))]);
    assert_eq!(
        engine["slots"][0]["gpus"][0]["name"],
        "NVIDIA H100 80GB HBM3"
    );
    // Declared, not measured: no reading.
    assert_eq!(engine["slots"][0]["gpus"][0]["vram_used_gb"], Value::Null);
    assert_eq!(doc["workers"], json!([]));

    // A long task: its worker is busy on the CPU slot.
    let long = sb.submit(
        &server,
        "tests/slow",
        &["--input", r#"{"seconds": 60, "label": "long"}"#],
    );
    server.wait_task(&long, Duration::from_secs(60), |t| t["status"] == 7);
    let mut doc = Value::Null;
    let busy = wait_for(Duration::from_secs(30), || {
        doc = status(&sb, &server);
        doc["workers"][0]["state"] == "busy"
    });
    assert!(busy, "the worker never showed busy: {doc:#}");
    let worker = &doc["workers"][0];
    assert_eq!(worker["app"], "tests/slow");
    assert_eq!(worker["slot"], "cpu 0");
    assert_eq!(worker["current_tasks"], json!([long]));
    assert!(worker["pid"].as_u64().is_some(), "{worker:#}");
    let id = worker["id"].as_str().unwrap().to_string();
    let cpu = &doc["engines"][0]["slots"][2];
    assert_eq!(cpu["replicas"], json!([id]));
    assert_eq!(cpu["running_tasks"], 1);

    // For people: the engine line, the slots and the worker.
    let out = sb.run(&server, &["engine", "status"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "engine gpu-box-test (inventory: declared, CPU slots: 1, evictions: 0, waiting for a slot: 0)",
        "{text}"
    );
    assert!(lines[1].starts_with("SLOT "), "{text}");
    assert!(
        lines[2].starts_with("gpus [0] ") && lines[2].contains(" 80 GB "),
        "{text}"
    );
    assert!(
        lines[3].starts_with("gpus [2, 3]  2,3  ") && lines[3].contains("24 GB, 24 GB"),
        "{text}"
    );
    let cpu_line = lines[4].split_whitespace().collect::<Vec<_>>();
    assert_eq!(
        cpu_line,
        vec!["cpu", "0", "-", "-", &id, "1", "no"],
        "{text}"
    );
    assert!(lines[6].starts_with("WORKER "), "{text}");
    let worker_line = lines[7].split_whitespace().collect::<Vec<_>>();
    assert_eq!(
        (
            worker_line[0],
            worker_line[1],
            worker_line[2],
            worker_line[3]
        ),
        (id.as_str(), "tests/slow", "cpu", "0"),
        "{text}"
    );
    assert!(lines[7].contains(" busy "), "{text}");
    assert!(lines[7].contains(&long), "{text}");

    let out = sb.run(&server, &["task", "cancel", &long, "--wait"]);
    assert_code(&out, 0);
}

#[test]
fn an_app_no_slot_can_host_is_warned_about_at_start_and_refused() {
    let sb = ServeSandbox::new(&["slow"]);
    let yml = std::fs::read_to_string(fixture("multi-fn").join("inf.yml"))
        .unwrap()
        .replace("name: multi-fn", "name: big")
        .replace("count: 0", "count: 2")
        .replace("vram: 0", "vram: 80")
        .replace("type: none", "type: nvidia");
    sb.add_fixture_as("multi-fn", "big", &yml);
    let config = sb.path().join("engine.yml");
    std::fs::write(&config, ENGINE_YML).unwrap();
    let server = sb.start_with_key(&["--engine-config", config.to_str().unwrap()]);
    let why = "tests/big needs 2 nvidia GPUs with 80 GB each and 1 GB of RAM; \
               the largest slot here is gpus [2, 3] (2 GPUs, 24 GB each)";
    let log = server.log();
    assert!(
        log.contains(&format!("{why}: its runs will be refused")),
        "{log}"
    );
    let out = sb.run(
        &server,
        &[
            "app",
            "run",
            "tests/big",
            "--function",
            "run",
            "--input",
            r#"{"text": "x"}"#,
        ],
    );
    assert_code(&out, 3);
    assert!(
        stderr(&out).ends_with(&format!("error: {why}\n")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_gpu_replica_shows_on_its_slot_in_status_and_metrics() {
    let sb = ServeSandbox::new(&["gpu-report"]);
    let config = sb.path().join("engine.yml");
    std::fs::write(&config, ENGINE_YML).unwrap();
    let server = sb.start_with_key(&["--engine-config", config.to_str().unwrap()]);

    let report = sb.run_json(
        &server,
        &["--json", "app", "run", "tests/gpu-report", "--input", "{}"],
        0,
    );
    assert_eq!(report["output"]["cuda_visible_devices"], "0", "{report:#}");
    let pid = report["output"]["pid"].clone();

    let doc = status(&sb, &server);
    let worker = &doc["workers"][0];
    assert_eq!(worker["app"], "tests/gpu-report", "{doc:#}");
    assert_eq!(worker["slot"], "gpus [0]");
    assert_eq!(worker["pid"], pid);
    assert_eq!(worker["state"], "idle");
    let slot = &doc["engines"][0]["slots"][0];
    assert_eq!(slot["name"], "gpus [0]");
    assert_eq!(slot["replicas"], json!([worker["id"]]));
    assert_eq!(slot["running_tasks"], 0);

    let out = sb.run(&server, &["engine", "status"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let id = worker["id"].as_str().unwrap();
    let gpu_line: Vec<&str> = text.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(
        gpu_line,
        vec!["gpus", "[0]", "0", "80", "GB", id, "0", "no"],
        "{text}"
    );

    let (status, metrics) = server.request("GET", "/metrics", None).unwrap();
    assert_eq!(status, 200);
    for line in [
        "infsh_slot_replicas{slot=\"gpus [0]\"} 1\n",
        "infsh_slot_replicas{slot=\"gpus [2, 3]\"} 0\n",
        "infsh_gpu_memory_total_bytes{gpu=\"0\"} 80000000000\n",
        "infsh_evictions_total 0\n",
    ] {
        assert!(metrics.contains(line), "{line:?} not in:\n{metrics}");
    }
}
