//! Test harness: a REAL engine over copies of tests/fixtures/apps, its
//! router, and helpers to send requests through `tower::ServiceExt::oneshot`
//! and read JSON / streamed bodies. The interpreter, fixture copies and
//! bounded waits come from `infsh-testkit`; forged upload tokens from the
//! server's own signer (`infsh_server::upload_token`).

#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use futures_util::StreamExt;
use infsh_engine::{Engine, EngineConfig};
pub use infsh_server::upload_token;
use infsh_server::{ServerConfig, StreamTiming};
pub use infsh_testkit::{copy_fixture_as, copy_fixtures, eventually, fixture, python, within};
use serde_json::Value;
use tower::ServiceExt;

pub const SIGNING_KEY: &[u8] = b"test-signing-key";
/// Every test body runs under this limit.
pub const TEST_LIMIT: Duration = Duration::from_secs(120);

/// The test body, bounded by [`TEST_LIMIT`].
pub async fn bounded<F: Future<Output = ()>>(f: F) {
    within(TEST_LIMIT, f).await
}

/// Adds `tests/secret-app`: multi-fn's code under another name, requiring
/// the secret `HF_TOKEN` (which no test configures).
pub fn add_secret_app(config: &mut EngineConfig) {
    let yml = std::fs::read_to_string(fixture("multi-fn").join("inf.yml")).unwrap();
    let yml = format!(
        "{}\nsecrets:\n  - key: HF_TOKEN\n    description: a token\n",
        yml.replace("name: multi-fn", "name: secret-app")
    );
    copy_fixture_as(&config.apps_dir, "multi-fn", "secret-app", &yml);
}

pub fn server_config() -> ServerConfig {
    ServerConfig {
        api_keys: vec![],
        insecure: false,
        max_body_bytes: 1024 * 1024,
        upload_token_ttl: Duration::from_secs(600),
        file_url_ttl: Duration::from_secs(7 * 86_400),
        signing_key: SIGNING_KEY.to_vec(),
        server_timing: false,
        engine_keys: vec![],
        limits: Default::default(),
        cors_origins: vec![],
        stream_delta_window: infsh_server::DEFAULT_DELTA_WINDOW,
    }
}

/// Changes the engine config after the fixtures were copied.
pub type Tweak = Box<dyn FnOnce(&mut EngineConfig, &Path) + Send>;

/// Knobs of one test server.
pub struct Setup {
    pub apps: Vec<&'static str>,
    pub server: ServerConfig,
    pub timing: StreamTiming,
    pub public_url: String,
    pub tweak: Tweak,
}

impl Setup {
    pub fn new(apps: &[&'static str]) -> Setup {
        Setup {
            apps: apps.to_vec(),
            server: server_config(),
            timing: StreamTiming::default(),
            public_url: "http://127.0.0.1:9".into(),
            tweak: Box::new(|_, _| {}),
        }
    }
}

pub struct TestServer {
    pub engine: Engine,
    pub router: Router,
    pub dir: tempfile::TempDir,
}

pub async fn start(setup: Setup) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let apps_dir = dir.path().join("apps");
    copy_fixtures(&apps_dir, &setup.apps);
    let mut config = EngineConfig {
        apps_dir,
        data_dir: dir.path().join("data"),
        cache_dir: dir.path().join("cache"),
        python: Some(python()),
        preload: false,
        replicas: 1,
        concurrency_per_replica: 1,
        queue_capacity: 16,
        task_timeout: None,
        setup_timeout: Some(Duration::from_secs(60)),
        cancel_grace: Duration::from_secs(2),
        public_url: setup.public_url.clone(),
        secrets: Default::default(),
        node: None,
        fork_workers: true,
        durability: Default::default(),
        placement: Default::default(),
        webhook_secret: None,
        files: None,
        versions_on_engines: false,
    };
    (setup.tweak)(&mut config, dir.path());
    let engine = Engine::start(config).await.expect("engine starts");
    let router = infsh_server::router_with_timing(engine.clone(), setup.server, setup.timing);
    TestServer {
        engine,
        router,
        dir,
    }
}

impl TestServer {
    pub async fn stop(self) {
        self.engine.shutdown(Duration::from_secs(5)).await;
    }

    pub async fn send(&self, req: Request<Body>) -> axum::response::Response {
        self.router.clone().oneshot(req).await.unwrap()
    }

    /// A JSON request; returns status, headers and the body parsed as JSON.
    pub async fn json(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut b = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        let resp = self.send(b.body(body).unwrap()).await;
        read_json(resp).await
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, HeaderMap, Value) {
        self.json(Method::GET, uri, None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> (StatusCode, HeaderMap, Value) {
        self.json(Method::POST, uri, Some(body)).await
    }

    /// [`TestServer::wait_terminal`] on a server with client keys: sends
    /// the first of them.
    pub async fn wait_terminal_with_key(&self, id: &str) -> Value {
        loop {
            let req = Request::get(format!("/tasks/{id}"))
                .header(header::AUTHORIZATION, "Bearer client-key-1")
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = read_json(self.send(req).await).await;
            assert_eq!(status, 200, "{body}");
            if body["data"]["status"].as_u64().unwrap() >= 10 {
                return body["data"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `GET /tasks/{id}` until the task ends.
    pub async fn wait_terminal(&self, id: &str) -> Value {
        loop {
            let (status, _, body) = self.get(&format!("/tasks/{id}")).await;
            assert_eq!(status, 200, "{body}");
            if body["data"]["status"].as_u64().unwrap() >= 10 {
                return body["data"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn read_json(resp: axum::response::Response) -> (StatusCode, HeaderMap, Value) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}), status {status}: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, headers, v)
}

pub async fn read_text(resp: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Reads a streamed body chunk by chunk, returning the chunks as they came.
pub async fn read_chunks(resp: axum::response::Response, limit: Duration) -> Vec<String> {
    let mut stream = resp.into_body().into_data_stream();
    let mut chunks = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(b))) => chunks.push(String::from_utf8(b.to_vec()).unwrap()),
            Ok(Some(Err(e))) => panic!("body error: {e}"),
            Ok(None) => return chunks,
            Err(_) => panic!("stream did not end within {limit:?}; got {chunks:?}"),
        }
    }
}

/// Asserts the RFC 9457 shape and returns the body.
pub fn assert_problem(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Value,
    want: u16,
    code: &str,
) {
    assert_eq!(status.as_u16(), want, "{body}");
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/problem+json",
        "{body}"
    );
    assert_eq!(
        body["type"],
        format!("https://infsh.dev/errors/{code}"),
        "{body}"
    );
    assert_eq!(body["status"], want, "{body}");
    assert!(body["title"].is_string(), "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}
