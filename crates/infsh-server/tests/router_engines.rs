//! Router tier, the worker layout: `GET /engines`, `GET /workers`, the
//! drain routes, `no_matching_worker` and the layout's `/metrics` lines,
//! through the real router over a real engine with a declared inventory
//! (no GPU needed), with exact statuses and bodies.

mod common;

use std::path::Path;

use axum::http::Method;
use common::*;
use infsh_engine::EngineConfig;
use serde_json::{json, Value};

const ENGINE_YML: &str = "\
name: box-1
workers:
  cpu: {count: 1}
  gpu:
    - gpus: [0]
    - gpus: [1, 2]
inventory:
  gpus:
    - {index: 0, name: \"NVIDIA H100 80GB HBM3\", vram: 80GB}
    - {index: 1, vram: 24}
    - {index: 2, vram: 24}
";

/// multi-fn's code as `tests/big`, declaring two GPUs of 80 GB each: more
/// than any slot of `ENGINE_YML` has.
fn add_big_app(config: &EngineConfig) {
    let yml = std::fs::read_to_string(fixture("multi-fn").join("inf.yml")).unwrap();
    let yml = yml
        .replace("name: multi-fn", "name: big")
        .replace("count: 0", "count: 2")
        .replace("vram: 0", "vram: 80")
        .replace("type: none", "type: nvidia");
    copy_fixture_as(&config.apps_dir, "multi-fn", "big", &yml);
}

async fn start_with_layout(apps: &[&'static str], key: Option<&str>) -> TestServer {
    let mut setup = Setup::new(apps);
    if let Some(key) = key {
        setup.server.api_keys = vec![key.to_string()];
    }
    setup.tweak = Box::new(|config: &mut EngineConfig, _: &Path| {
        config.placement =
            infsh_placement::EngineConfig::parse(ENGINE_YML, Path::new("engine.yml")).unwrap();
        add_big_app(config);
    });
    start(setup).await
}

fn gpu(index: u32, name: &str, vram: f64) -> Value {
    json!({"index": index, "name": name, "vendor": "nvidia", "vram_total_gb": vram,
           "vram_used_gb": null, "utilization_percent": null})
}

#[tokio::test]
async fn engines_list_the_declared_layout() {
    bounded(async {
        let s = start_with_layout(&["multi-fn"], None).await;
        let (st, _, body) = s.get("/engines").await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(
            body,
            json!({"data": [{
                "name": "box-1",
                "inventory": "declared",
                "draining": false,
                "cpu_slots": 1,
                "slots": [
                    {"id": 0, "kind": "gpu", "name": "gpus [0]",
                     "gpus": [gpu(0, "NVIDIA H100 80GB HBM3", 80.0)],
                     "replicas": [], "running_tasks": 0},
                    {"id": 1, "kind": "gpu", "name": "gpus [1, 2]",
                     "gpus": [gpu(1, "GPU 1", 24.0), gpu(2, "GPU 2", 24.0)],
                     "replicas": [], "running_tasks": 0},
                    {"id": 2, "kind": "cpu", "name": "cpu 0",
                     "gpus": [], "replicas": [], "running_tasks": 0},
                ],
                "evictions_total": 0,
                "tasks_waiting_for_slot": 0,
            }], "messages": []})
        );
        // Under /v1 too, like every route.
        let (st, _, v1) = s.get("/v1/engines").await;
        assert_eq!((st.as_u16(), &v1), (200, &body));
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn draining_the_engine_holds_new_tasks_in_the_queue() {
    bounded(async {
        let s = start_with_layout(&["multi-fn"], None).await;
        let (st, h, body) = s.json(Method::POST, "/engines/other/drain", None).await;
        assert_problem(st, &h, &body, 404, "unknown_engine");
        assert_eq!(
            body,
            json!({"type": "https://infsh.dev/errors/unknown_engine", "title": "Not Found",
                   "status": 404, "detail": "unknown engine \"other\""})
        );
        let (st, h, body) = s.json(Method::POST, "/engines/other/undrain", None).await;
        assert_problem(st, &h, &body, 404, "unknown_engine");

        let (st, _, body) = s.json(Method::POST, "/engines/box-1/drain", None).await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(body["data"]["name"], "box-1");
        assert_eq!(body["data"]["draining"], true);
        // Idempotent.
        let (st, _, again) = s.json(Method::POST, "/engines/box-1/drain", None).await;
        assert_eq!((st.as_u16(), &again), (200, &body));

        let (st, _, task) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "function": "run", "input": {"text": "held"}}),
            )
            .await;
        assert_eq!(st, 200, "{task}");
        assert_eq!(task["data"]["status"], 2, "{task}");
        let id = task["data"]["id"].as_str().unwrap().to_string();
        // Reads keep working while drained.
        let (st, _, _) = s.get(&format!("/tasks/{id}")).await;
        assert_eq!(st, 200);

        let (st, _, body) = s.json(Method::POST, "/engines/box-1/undrain", None).await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(body["data"]["draining"], false);
        let done = s.wait_terminal(&id).await;
        assert_eq!(done["status"], 10, "{done}");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn draining_an_app_holds_its_tasks_and_unknown_apps_are_404() {
    bounded(async {
        let s = start_with_layout(&["multi-fn"], None).await;
        for uri in [
            "/apps/tests/nope/drain",
            "/apps/tests/nope/undrain",
            "/apps/../x/drain",
        ] {
            let (st, h, body) = s.json(Method::POST, uri, None).await;
            assert_problem(st, &h, &body, 404, "not_found");
            assert_eq!(body["resource"], "app", "{uri}: {body}");
        }
        let (st, _, body) = s.json(Method::POST, "/apps/tests/nope/drain", None).await;
        assert_eq!(st, 404);
        assert_eq!(
            body["available"],
            json!(["tests/big", "tests/multi-fn"]),
            "{body}"
        );

        // A replica first, so the workers listing has a row to mark.
        let (st, _, task) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "function": "run", "input": {"text": "a"}, "wait": true}),
            )
            .await;
        assert_eq!((st.as_u16(), &task["data"]["status"]), (200, &json!(10)), "{task}");

        let (st, _, body) = s
            .json(Method::POST, "/apps/tests/multi-fn/drain", None)
            .await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(
            body,
            json!({"data": {"id": "tests/multi-fn", "draining": true}, "messages": []})
        );
        let (_, _, workers) = s.get("/workers").await;
        assert_eq!(workers["data"][0]["draining"], true, "{workers}");
        // The app's drain is not the engine's.
        let (_, _, engines) = s.get("/engines").await;
        assert_eq!(engines["data"][0]["draining"], false, "{engines}");
        let (_, _, task) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "function": "run", "input": {"text": "held"}}),
            )
            .await;
        assert_eq!(task["data"]["status"], 2, "{task}");
        let id = task["data"]["id"].as_str().unwrap().to_string();

        let (st, _, body) = s
            .json(Method::POST, "/apps/tests/multi-fn/undrain", None)
            .await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(
            body,
            json!({"data": {"id": "tests/multi-fn", "draining": false}, "messages": []})
        );
        let done = s.wait_terminal(&id).await;
        assert_eq!(done["status"], 10, "{done}");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn metrics_show_the_layout() {
    bounded(async {
        let s = start_with_layout(&["multi-fn"], None).await;
        let resp = s
            .send(
                axum::http::Request::get("/metrics")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let text = read_text(resp).await;
        for line in [
            "infsh_slot_replicas{slot=\"gpus [0]\"} 0\n",
            "infsh_slot_replicas{slot=\"gpus [1, 2]\"} 0\n",
            "infsh_slot_replicas{slot=\"cpu 0\"} 0\n",
            "infsh_gpu_memory_total_bytes{gpu=\"0\"} 80000000000\n",
            "infsh_gpu_memory_total_bytes{gpu=\"2\"} 24000000000\n",
            "infsh_evictions_total 0\n",
            "infsh_tasks_waiting_for_slot 0\n",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
        // A declared inventory has no readings.
        assert!(!text.contains("infsh_gpu_memory_used_bytes{"), "{text}");
        assert!(!text.contains("infsh_gpu_utilization_percent{"), "{text}");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_layout_routes_need_the_key() {
    bounded(async {
        let s = start_with_layout(&["multi-fn"], Some("k1")).await;
        for (method, uri) in [
            (Method::GET, "/engines"),
            (Method::GET, "/workers"),
            (Method::POST, "/engines/box-1/drain"),
            (Method::POST, "/engines/box-1/undrain"),
            (Method::POST, "/apps/tests/multi-fn/drain"),
            (Method::POST, "/apps/tests/multi-fn/undrain"),
        ] {
            let (st, h, b) = s.json(method.clone(), uri, None).await;
            assert_problem(st, &h, &b, 401, "unauthorized");
        }
        // Nothing was drained by the refused calls.
        let req = axum::http::Request::get("/engines")
            .header("authorization", "Bearer k1")
            .body(axum::body::Body::empty())
            .unwrap();
        let (st, _, body) = read_json(s.send(req).await).await;
        assert_eq!(st, 200);
        assert_eq!(body["data"][0]["draining"], false);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn workers_list_one_row_per_replica() {
    bounded(async {
        let s = start_with_layout(&["multi-fn"], None).await;
        let (st, _, body) = s.get("/workers").await;
        assert_eq!(st, 200);
        assert_eq!(body, json!({"data": [], "messages": []}));

        let (st, _, task) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "function": "run", "input": {"text": "hi"}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200, "{task}");
        assert_eq!(task["data"]["status"], 10, "{task}");

        let (_, _, body) = s.get("/workers").await;
        let rows = body["data"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{body}");
        let w = &rows[0];
        assert_eq!(w["app"], "tests/multi-fn");
        assert_eq!(w["slot"], "cpu 0");
        assert_eq!(w["state"], "idle");
        assert_eq!(w["current_tasks"], json!([]));
        assert_eq!(w["draining"], false);
        assert_eq!(w["session"], Value::Null, "leased to no session");
        assert!(w["pid"].as_u64().is_some(), "{w}");
        assert!(w["warm_since"].as_i64().is_some(), "{w}");
        assert!(w["last_used"].as_i64().is_some(), "{w}");
        let mut keys: Vec<&str> = w.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            vec![
                "app",
                "current_tasks",
                "draining",
                "id",
                "last_used",
                "pid",
                "session",
                "slot",
                "state",
                "warm_since"
            ]
        );
        // The slot lists the replica by the same id.
        let (_, _, engines) = s.get("/engines").await;
        assert_eq!(engines["data"][0]["slots"][2]["replicas"], json!([w["id"]]));
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_app_no_slot_can_host_is_refused_at_once() {
    bounded(async {
        let s = start_with_layout(&["multi-fn"], None).await;
        let (st, h, body) = s
            .post(
                "/apps/run",
                json!({"app": "tests/big", "function": "run", "input": {"text": "x"}}),
            )
            .await;
        assert_problem(st, &h, &body, 503, "no_matching_worker");
        assert!(h.get("retry-after").is_none());
        assert_eq!(
            body,
            json!({"type": "https://infsh.dev/errors/no_matching_worker",
                   "title": "Service Unavailable", "status": 503,
                   "detail": "tests/big needs 2 nvidia GPUs with 80 GB each and 1 GB of RAM; the largest slot here is gpus [1, 2] (2 GPUs, 24 GB each)",
                   "app": "tests/big",
                   "needs": "2 nvidia GPUs with 80 GB each and 1 GB of RAM"})
        );
        // Nothing was stored.
        let (_, _, page) = s.get("/tasks").await;
        assert_eq!(page["data"]["items"], json!([]), "{page}");
        s.stop().await;
    })
    .await;
}
