//! Router tier with a JavaScript app: tests/fixtures/apps/node-functions
//! (kernel: node-22, the Node worker) served beside the Python multi-fn by
//! one engine, through the real router. Its npm environment is built by the
//! engine (`npm ci`; the npm registry must be reachable) in a cache folder
//! under the target dir that these tests share.

mod common;

use common::*;
use serde_json::json;

fn node_setup() -> Setup {
    let mut setup = Setup::new(&["multi-fn", "node-functions"]);
    setup.tweak = Box::new(|config, _| {
        config.cache_dir =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-server-cache");
    });
    setup
}

#[tokio::test]
async fn a_javascript_app_is_listed_validated_and_run_beside_a_python_one() {
    bounded(async {
        let s = start(node_setup()).await;
        let (st, _, b) = s
            .post(
                "/v1/run",
                json!({"app": "tests/node-functions", "function": "echo", "input": {"text": "js", "times": 2}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["status"], 10, "{b}");
        assert_eq!(b["data"]["output"], json!({"text": "hello jsjs"}));
        let logs = b["data"]["logs"].to_string();
        assert!(logs.contains("echo js"), "the app's console.log: {logs}");

        let (st, _, b) = s
            .post(
                "/v1/run",
                json!({"app": "tests/multi-fn", "input": {"text": "py"}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["output"]["echo"], "py");

        // Checked against the Zod-made JSON Schema before the worker: 422.
        let (st, h, b) = s
            .post(
                "/v1/run",
                json!({"app": "tests/node-functions", "function": "count", "input": {"n": 0}, "wait": true}),
            )
            .await;
        assert_problem(st, &h, &b, 422, "validation_error");
        let errors = b["errors"].as_array().expect("errors list");
        assert!(errors.iter().any(|e| e["path"] == "n"), "{b}");

        // A File output becomes a served file with a uri.
        let (st, _, b) = s
            .post(
                "/v1/run",
                json!({"app": "tests/node-functions", "function": "write", "input": {"name": "o.txt", "content": "served"}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let file = &b["data"]["output"]["file"];
        assert!(
            file["uri"].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:9/")),
            "{b}"
        );
        assert!(file.get("path").is_none(), "{b}");
        s.stop().await;
    })
    .await;
}
