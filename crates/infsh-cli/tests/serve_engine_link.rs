//! End to end with the real `infsh serve` binary: `--engine-key`,
//! `--lease-seconds` and `--max-attempts` reach the API node's engine link
//! (docs/deploy.md, "Engines"). The test plays the remote engine over
//! plain HTTP; the router tests (crates/infsh-server/tests/
//! router_engine_link.rs) cover every route's answers.

mod common;

use std::time::{Duration, Instant};

use common::server::*;
use common::*;
use serde_json::{json, Value};

const ENGINE_KEY: &str = "engine-key-e2e";

fn post(server: &Server, path: &str, key: &str, body: Value) -> (u16, Value) {
    let (status, text) = http_post_json(&server.url, path, Some(key), &body).expect("answers");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    (status, value)
}

fn task(server: &Server, id: &str) -> Value {
    let (status, text) =
        http_get(&server.url, &format!("/v1/tasks/{id}"), Some(TEST_KEY)).expect("answers");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["data"].clone()
}

fn registration() -> Value {
    json!({
        "name": "e1", "version": "0.1.0", "slots": [],
        "apps": [{"app": "tests/remote", "hash": "h1", "ready": {
            "protocol": 1, "pid": 1, "python": "3.11.0", "app_class": "App",
            "setup_schema": {"type": "object"},
            "functions": [{"name": "run", "streaming": false, "is_async": false,
                "accepts_metadata": false,
                "entry": {"input_schema": {"type": "object"}, "output_schema": {"type": "object"}}}]
        }}]
    })
}

/// Polls the task until `done` holds (at most `limit`).
fn wait_task(server: &Server, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let t = task(server, id);
        if done(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out; task is {t}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_takes_engines_with_their_keys_and_fails_a_twice_lost_task() {
    let sb = ServeSandbox::new(&[]);
    let server = sb.start_with_key(&["--engine-key", ENGINE_KEY, "--lease-seconds", "0.5"]);

    let (status, body) = post(&server, "/v1/engine/register", TEST_KEY, registration());
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["detail"], "invalid engine key");
    assert!(
        server.log().contains("refused an engine request"),
        "{}",
        server.log()
    );
    let (status, body) = post(&server, "/v1/engine/register", ENGINE_KEY, registration());
    assert_eq!(status, 200, "{body}");

    let (status, body) = post(
        &server,
        "/v1/apps/run",
        TEST_KEY,
        json!({"app": "tests/remote", "input": {}}),
    );
    assert_eq!(status, 200, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let claim = json!({"engine": "e1", "max": 1});
    for attempt in 1..=2 {
        // The first claim finds the task at once; the second once the
        // lease of the first ran out and the sweep requeued it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let claimed = loop {
            let (status, answer) = post(&server, "/v1/engine/claim", ENGINE_KEY, claim.clone());
            assert_eq!(status, 200, "{answer}");
            if let Some(t) = answer["tasks"].as_array().and_then(|t| t.first()) {
                break t.clone();
            }
            assert!(
                Instant::now() < deadline,
                "never claimed: {}",
                task(&server, &id)
            );
        };
        assert_eq!(claimed["task"]["id"], id.as_str());
        assert_eq!(claimed["attempt"], attempt);
        if attempt == 1 {
            // Not claiming again until it is requeued: the claim is a heartbeat.
            wait_task(&server, &id, Duration::from_secs(20), |t| t["status"] == 2);
        }
    }
    let failed = wait_task(&server, &id, Duration::from_secs(20), |t| {
        t["status"].as_u64().unwrap() >= 10
    });
    assert_eq!(failed["status"], 11);
    assert_eq!(failed["error"], "engine lost: e1");
}

#[test]
fn a_key_given_as_both_an_api_key_and_an_engine_key_is_refused() {
    let sb = ServeSandbox::new(&[]);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("infsh"))
        .args([
            "serve",
            "--port",
            "0",
            "--api-key",
            "same",
            "--engine-key",
            "same",
        ])
        .arg("--apps")
        .arg(sb.apps_dir())
        .arg("--data-dir")
        .arg(sb.data_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "a key is given both as an API key and as an engine key: engine keys must differ from client keys"
        ),
        "{}",
        stderr(&out)
    );
}
