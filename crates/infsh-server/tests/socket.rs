//! Real-socket tier: `serve()` on 127.0.0.1:0 with a real engine, spoken to
//! over TCP by reqwest and by the official `inferencesh` Python client
//! (docs/client-wire-notes.md). Also: the non-loopback refusal and graceful
//! shutdown with a stream still open.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use infsh_engine::Engine;
use serde_json::{json, Value};
use tokio::sync::oneshot;

struct Live {
    addr: SocketAddr,
    engine: Engine,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Result<(), infsh_server::ServerError>>,
    _dir: tempfile::TempDir,
}

async fn live(apps: &[&'static str], keys: Vec<String>) -> Live {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut setup = Setup::new(apps);
    setup.public_url = format!("http://{addr}");
    setup.server.api_keys = keys;
    setup.tweak = Box::new(|config, _| add_secret_app(config));
    let server_config = setup.server.clone();
    let s = start(setup).await;
    let (tx, rx) = oneshot::channel::<()>();
    let served = tokio::spawn(infsh_server::serve(
        s.engine.clone(),
        server_config,
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    Live {
        addr,
        engine: s.engine,
        stop: Some(tx),
        served,
        _dir: s.dir,
    }
}

impl Live {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server (must return promptly even with streams open),
    /// then the engine.
    async fn stop(mut self) {
        let t0 = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), &mut self.served)
            .await
            .expect("graceful shutdown finished")
            .unwrap()
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(20));
        self.engine.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn refuses_non_loopback_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("apps")).unwrap();
    let engine = Engine::start(infsh_engine::EngineConfig {
        apps_dir: dir.path().join("apps"),
        data_dir: dir.path().join("data"),
        cache_dir: dir.path().join("cache"),
        python: Some(python()),
        preload: false,
        replicas: 1,
        concurrency_per_replica: 1,
        queue_capacity: 4,
        task_timeout: None,
        setup_timeout: None,
        cancel_grace: Duration::from_secs(1),
        public_url: "http://127.0.0.1:9".into(),
        secrets: Default::default(),
        node: None,
        fork_workers: true,
        durability: Default::default(),
        placement: Default::default(),
        webhook_secret: None,
        files: None,
        versions_on_engines: false,
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let r = infsh_server::serve(engine.clone(), server_config(), listener, async {}).await;
    assert!(
        matches!(r, Err(infsh_server::ServerError::KeysRequired(_))),
        "{r:?}"
    );
    engine.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn over_tcp_streams_flush_per_line_and_shutdown_is_graceful() {
    tokio::time::timeout(TEST_LIMIT, async {
        let live = live(&["multi-fn", "hangs"], vec![]).await;
        let http = reqwest::Client::new();

        // //apps/run as a client with a trailing-slash base URL sends it.
        let r = http
            .post(live.url("//apps/run"))
            .json(&json!({"app": "tests/hangs", "function": "async_hang", "input": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let task: Value = r.json().await.unwrap();
        let id = task["data"]["id"].as_str().unwrap().to_string();

        // The stream's first line arrives at once, chunked, while the task
        // keeps running (the body has not ended).
        let mut resp = http
            .get(live.url(&format!("/v1/tasks/{id}/stream")))
            .header("Accept", "application/x-ndjson")
            .header("Accept-Encoding", "identity")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["transfer-encoding"], "chunked");
        let t0 = Instant::now();
        let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .expect("first line without waiting for the task")
            .unwrap()
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5));
        let line: Value = serde_json::from_slice(first.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(line["id"], id.as_str());

        // Graceful shutdown ends the open stream instead of waiting for the
        // hanging task.
        live.stop().await;
        // The body ends (cleanly or by close) after shutdown.
        let rest = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(_)) = resp.chunk().await {}
        })
        .await;
        assert!(rest.is_ok());
    })
    .await
    .expect("test took too long");
}

/// The official client against the server, sync: run (wait, no wait,
/// stream), uploads of a local file, errors, cancel, /v1 and trailing-slash
/// base URLs, the 412 requirements error, sessions.
#[tokio::test]
async fn official_python_client_works_against_serve() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let live = live(&["multi-fn", "files-app", "hangs"], vec!["k_test".into()]).await;
        let dir = tempfile::tempdir().unwrap();
        let pic = dir.path().join("pic.bin");
        std::fs::write(&pic, b"\x01\x02\x03hello").unwrap();
        let script = format!(
            r#"
import json, sys, time
from inferencesh import Inference
from inferencesh.models.errors import APIError, RequirementsNotMetError

base = "http://{addr}"
c = Inference(api_key="k_test", base_url=base)
out = {{}}

r = c.run({{"app": "tests/multi-fn", "function": "generate", "input": {{"prompt": "x", "n": 2}}}})
out["wait"] = r

t = c.run({{"app": "tests/multi-fn", "input": {{"text": "hi"}}}}, wait=False)
out["nowait_status_is_int"] = isinstance(t["status"], int)
out["get"] = c.get_task(t["id"]).data["id"] == t["id"]

updates = list(c.run({{"app": "tests/multi-fn", "function": "upscale", "input": {{"value": 2.0}}}}, stream=True))
out["stream_last"] = updates[-1]

c2 = Inference(api_key="k_test", base_url=base + "/")
out["slash"] = c2.run({{"app": "tests/multi-fn", "input": {{"text": "s"}}}})["output"]["echo"]
c3 = Inference(api_key="k_test", base_url=base + "/v1")
out["v1"] = c3.run({{"app": "tests/multi-fn", "input": {{"text": "v"}}}})["output"]["echo"]

out["upload"] = c.run({{"app": "tests/files-app", "function": "describe", "input": {{"file": {pic:?}}}}})["output"]

try:
    c.run({{"app": "tests/nope", "input": {{}}}})
except APIError as e:
    out["unknown_app"] = [e.status_code, e.code, str(e)]

try:
    c.run({{"app": "tests/secret-app", "input": {{"text": "x"}}}})
except RequirementsNotMetError as e:
    out["secrets"] = [str(e), e.errors[0].key, e.errors[0].type]

bad = Inference(api_key="wrong", base_url=base)
try:
    bad.run({{"app": "tests/multi-fn", "input": {{"text": "x"}}}}, wait=False)
except APIError as e:
    out["bad_key"] = e.status_code

h = c.run({{"app": "tests/hangs", "function": "async_hang", "input": {{}}}}, wait=False)
c.cancel(h["id"])
try:
    c.wait_for_completion(h["id"])
except RuntimeError as e:
    out["cancelled"] = str(e)

try:
    with c.session("tests/multi-fn", input={{"text": "s"}}) as s:
        out["session"] = bool(s.session_id)
except Exception as e:
    out["session"] = repr(e)

print("RESULT " + json.dumps(out))
"#,
            addr = live.addr,
            pic = pic.to_str().unwrap(),
        );
        let output = tokio::process::Command::new(python())
            .arg("-c")
            .arg(&script)
            .env_remove("INFERENCE_API_KEY")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("client failed\nstdout: {stdout}\nstderr: {stderr}"));
        let out: Value = serde_json::from_str(line).unwrap();

        assert_eq!(out["wait"]["status"], 10, "{out}");
        assert_eq!(out["wait"]["output"]["items"], json!(["x-0", "x-1"]));
        assert_eq!(out["nowait_status_is_int"], true);
        assert_eq!(out["get"], true);
        assert_eq!(out["stream_last"]["status"], 10, "{out}");
        assert_eq!(out["stream_last"]["output"]["value"], json!(4.0));
        assert_eq!(out["slash"], "s");
        assert_eq!(out["v1"], "v");
        assert_eq!(out["upload"]["size"], 8, "{out}");
        assert_eq!(out["upload"]["first_bytes_hex"], "01020368656c6c6f");
        // The app saw the uploaded file under its own name.
        assert_eq!(out["upload"]["filename"], "pic.bin", "{out}");
        assert_eq!(out["unknown_app"][0], 404);
        assert_eq!(out["unknown_app"][1], "not_found");
        assert_eq!(out["secrets"][1], "HF_TOKEN", "{out}");
        assert_eq!(out["secrets"][2], "secret");
        assert_eq!(out["bad_key"], 401);
        assert_eq!(out["cancelled"], "task cancelled", "{out}");
        assert_eq!(out["session"], true, "{out}");
        live.stop().await;
    })
    .await
    .expect("test took too long");
}
