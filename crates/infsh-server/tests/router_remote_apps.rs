//! Apps of remote engines in the app listing routes, and remote runs under
//! the queue limit and in `/metrics`, at router level: a REAL engine with
//! SQLite hosting `multi-fn` itself, this test playing the remote engines
//! over `/v1/engine/...` (as router_engine_link.rs does).

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::*;
use infsh_engine::FleetOptions;
use serde_json::{json, Value};

const CLIENT_KEY: &str = "client-key-1";
const ENGINE_KEY: &str = "engine-key-1";

async fn fleet_server(queue_capacity: usize) -> TestServer {
    let mut setup = Setup::new(&["multi-fn"]);
    setup.server.api_keys = vec![CLIENT_KEY.into()];
    setup.server.engine_keys = vec![ENGINE_KEY.into()];
    setup.tweak = Box::new(move |config, _| config.queue_capacity = queue_capacity);
    let server = start(setup).await;
    server
        .engine
        .enable_fleet(FleetOptions::new(Duration::from_secs(30), 2))
        .await
        .unwrap();
    server
}

async fn call(
    server: &TestServer,
    method: Method,
    uri: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&v).unwrap())
        }
        None => Body::empty(),
    };
    let (status, _, body) = read_json(server.send(b.body(body).unwrap()).await).await;
    (status, body)
}

/// Registers engine `name` hosting `tests/remote` with content `hash`.
async fn register(server: &TestServer, name: &str, hash: &str) {
    let body = json!({
        "name": name,
        "version": "0.1.0",
        "slots": [{"name": format!("{name}-cpu-0")}],
        "apps": [{
            "app": "tests/remote",
            "hash": hash,
            "default_function": "run",
            "ready": {
                "protocol": 1, "pid": 1, "python": "3.11.0", "app_class": "App",
                "setup_schema": {"type": "object"},
                "functions": [{
                    "name": "run", "streaming": false, "is_async": false,
                    "accepts_metadata": false,
                    "entry": {
                        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
                        "output_schema": {"type": "object"}
                    }
                }]
            }
        }]
    });
    let (status, body) = call(
        server,
        Method::POST,
        "/v1/engine/register",
        ENGINE_KEY,
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn metrics(server: &TestServer) -> String {
    let req = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {CLIENT_KEY}"))
        .body(Body::empty())
        .unwrap();
    let resp = server.send(req).await;
    assert_eq!(resp.status(), 200);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_of_remote_engines_are_listed_with_their_hash_and_conflicts() {
    let server = fleet_server(16).await;
    register(&server, "gpu-a", "abc123").await;
    register(&server, "gpu-b", "def456").await;

    let (status, body) = call(&server, Method::GET, "/apps", CLIENT_KEY, None).await;
    assert_eq!(status, 200, "{body}");
    let apps = body["data"].as_array().unwrap();
    let ids: Vec<&str> = apps.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["tests/multi-fn", "tests/remote"], "sorted by id");
    // The local app is shown as before: no remote fields.
    assert!(
        apps[0].get("hash").is_none() && apps[0].get("engines").is_none(),
        "{}",
        apps[0]
    );
    let remote = &apps[1];
    assert_eq!(remote["namespace"], "tests");
    assert_eq!(remote["name"], "remote");
    assert_eq!(remote["state"], "ready");
    assert_eq!(remote["functions"], json!(["run"]));
    assert_eq!(remote["default_function"], "run");
    // The first registration's hash is served; the other engine conflicts.
    assert_eq!(remote["hash"], "abc123");
    assert_eq!(
        remote["engines"],
        json!([
            {"engine": "gpu-a", "hash": "abc123", "conflict": false, "state": "online"},
            {"engine": "gpu-b", "hash": "def456", "conflict": true, "state": "online"},
        ])
    );

    // The detail comes from the served registration.
    let (status, body) = call(&server, Method::GET, "/apps/tests/remote", CLIENT_KEY, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["id"], "tests/remote");
    assert_eq!(
        body["data"]["functions"]["run"]["input_schema"]["properties"]["text"]["type"],
        "string"
    );
    assert_eq!(body["data"]["setup_schema"], json!({"type": "object"}));
    // An app nobody hosts is still the 404 it was.
    let (status, body) = call(
        &server,
        Method::GET,
        "/apps/tests/nowhere",
        CLIENT_KEY,
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["type"], "https://infsh.dev/errors/not_found", "{body}");
    assert_eq!(
        body["detail"],
        "unknown app \"tests/nowhere\"; available apps: tests/multi-fn"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_runs_honour_the_queue_limit_and_are_counted_in_metrics() {
    let server = fleet_server(2).await;
    register(&server, "gpu-a", "abc123").await;
    let before = metrics(&server).await;
    let run = json!({"app": "tests/remote", "input": {"text": "hi"}});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, body) = call(
            &server,
            Method::POST,
            "/apps/run",
            CLIENT_KEY,
            Some(run.clone()),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["data"]["id"].as_str().unwrap().to_string());
    }
    // The third waits beyond --queue-capacity 2: the same 429 as a local app's.
    let (status, body) = call(
        &server,
        Method::POST,
        "/apps/run",
        CLIENT_KEY,
        Some(run.clone()),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body["type"], "https://infsh.dev/errors/rate_limited",
        "{body}"
    );
    assert_eq!(body["app"], "tests/remote");
    assert_eq!(body["capacity"], 2);
    assert_eq!(
        body["detail"],
        "app \"tests/remote\" is busy: its queue holds 2 tasks; retry later"
    );
    assert!(body["retry_after"].as_u64().unwrap() >= 1, "{body}");

    // A cancelled one frees its place.
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/tasks/{}/cancel", ids[0]),
        CLIENT_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&server, Method::POST, "/apps/run", CLIENT_KEY, Some(run)).await;
    assert_eq!(status, 200, "{body}");

    let after = metrics(&server).await;
    let delta = |name: &str| counter(&after, name) - counter(&before, name);
    assert_eq!(delta("infsh_tasks_submitted_total"), 3, "{after}");
    assert_eq!(delta("infsh_tasks_rejected_queue_full_total"), 1, "{after}");
    assert_eq!(delta("infsh_tasks_cancelled_total"), 1, "{after}");
    server.stop().await;
}
