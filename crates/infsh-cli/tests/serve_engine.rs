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
