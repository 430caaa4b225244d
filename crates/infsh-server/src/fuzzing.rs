//! Fuzz entry points (not an API): the bodies of the cargo-fuzz targets in
//! `fuzz/` (`run_request`, `http_request`), kept here so the stable property
//! tests (`tests/hostile_fuzz.rs`) run exactly the same code on every
//! `cargo test`.
//!
//! Each one panics (an assertion) when the server would misbehave: a 5xx, a
//! panic, a non-problem error body, a normalised path that is not normal.
//!
//! Compiled only with the crate's `fuzzing` feature, which the fuzz crate
//! and this crate's own tests (through its dev-dependency on itself) turn
//! on: nothing else builds it, and the path normaliser it checks stays
//! private to the crate.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Uri};
use axum::Router;
use infsh_engine::{Engine, EngineConfig};
use serde_json::Value;
use tower::ServiceExt;

use crate::problem::TYPE_BASE;
use crate::routes::runs::{parse_function_run_body, parse_run_body, MAX_TIMEOUT_SECS};
use crate::{normalize_path, ServerConfig};

/// Bytes → run-body parsing and `RunRequest` conversion (both run
/// endpoints), then the same bytes as a request path through the
/// server's path normaliser (`normalize_path`).
pub fn run_request(data: &[u8]) {
    match parse_run_body(data) {
        Ok((req, _wait)) => {
            assert!(!req.app.name().is_empty(), "an empty app got through");
            assert!(!req.input.is_null(), "input null is {{}}");
            if let Some(t) = req.timeout_secs {
                assert!(t.is_finite() && t > 0.0 && t <= MAX_TIMEOUT_SECS, "{t}");
            }
        }
        Err(p) => {
            assert_eq!(p.status.as_u16(), 400, "{}", p.detail);
            assert_eq!(p.code, "invalid_request");
            check_problem_body(&p.body(), 400);
        }
    }
    match parse_function_run_body("ns", "name", "fn", data) {
        Ok((req, _)) => {
            assert_eq!(req.app.to_string(), "ns/name");
            assert_eq!(req.function.as_deref(), Some("fn"));
            assert!(!req.input.is_null());
        }
        Err(p) => assert_eq!(p.status.as_u16(), 400, "{}", p.detail),
    }
    check_normalized(&String::from_utf8_lossy(data));
}

/// The promises of the server's path normaliser (`normalize_path`): an absolute path without empty
/// segments, without a trailing slash (but `/`), the same segments less
/// one leading `v1`, and still a valid URI path when the input was one.
pub fn check_normalized(path: &str) {
    let out = normalize_path(path);
    let routed = out.clone().unwrap_or_else(|| path.to_string());
    if out.is_none() {
        // "Already normal" must be true.
        assert_eq!(normalize_path(&routed), None);
    }
    assert!(routed.starts_with('/'), "{path:?} → {routed:?}");
    assert!(!routed.contains("//"), "{path:?} → {routed:?}");
    assert!(
        routed == "/" || !routed.ends_with('/'),
        "{path:?} → {routed:?}"
    );
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.first() == Some(&"v1") {
        segs.remove(0);
    }
    let got: Vec<&str> = routed.split('/').filter(|s| !s.is_empty()).collect();
    assert_eq!(segs, got, "{path:?} → {routed:?}");
    if path.starts_with('/') && path.parse::<Uri>().is_ok() {
        assert!(routed.parse::<Uri>().is_ok(), "{path:?} → {routed:?}");
    }
}

/// Asserts the RFC 9457 shape of an error body.
pub fn check_problem_body(body: &Value, status: u16) {
    let ty = body["type"].as_str().expect("problem `type`");
    assert!(ty.starts_with(TYPE_BASE), "{body}");
    assert!(ty.len() > TYPE_BASE.len(), "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string(), "{body}");
    assert!(body["detail"].is_string(), "{body}");
}

/// The API key of [`http_request`]'s server.
pub const FUZZ_KEY: &str = "fuzz-key";

/// The scratch folder (apps, data) of [`http_request`]'s server in this
/// process; remove it when done.
pub fn http_scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("infsh-fuzz-http-{}", std::process::id()))
}

struct Harness {
    rt: tokio::runtime::Runtime,
    router: Router,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = http_scratch_dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("apps")).expect("fuzz folder");
        let config = EngineConfig {
            apps_dir: dir.join("apps"),
            data_dir: dir.join("data"),
            cache_dir: dir.join("cache"),
            python: None,
            preload: false,
            replicas: 1,
            concurrency_per_replica: 1,
            queue_capacity: 4,
            task_timeout: None,
            setup_timeout: Some(Duration::from_secs(5)),
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
        };
        let engine = rt
            .block_on(Engine::start(config))
            .expect("the engine starts");
        let router = crate::router(
            engine,
            ServerConfig {
                api_keys: vec![FUZZ_KEY.into()],
                insecure: false,
                max_body_bytes: 64 * 1024,
                upload_token_ttl: Duration::from_secs(60),
                file_url_ttl: Duration::from_secs(60),
                signing_key: b"fuzz-signing-key".to_vec(),
                server_timing: false,
                engine_keys: vec![],
                limits: Default::default(),
                cors_origins: vec![],
                stream_delta_window: crate::DEFAULT_DELTA_WINDOW,
            },
        );
        Harness { rt, router }
    })
}

const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::HEAD,
    Method::OPTIONS,
];

const CONTENT_TYPES: [Option<&[u8]>; 8] = [
    None,
    Some(b"application/json"),
    Some(b"application/json; charset=utf-8"),
    Some(b"text/plain"),
    Some(b"application/problem+json"),
    Some(b"multipart/form-data; boundary=x"),
    Some(b"application/\xffjson"),
    Some(b"application/octet-stream"),
];

/// One HTTP request through the whole router (normalisation, auth,
/// routing, extractors, handlers) of a server hosting no app:
///
/// `[method][flags][path bytes]\n[body]`: `flags` picks the content type
/// (low 3 bits) and the `Authorization` header (next 2 bits: none, the
/// key, a wrong key, non-UTF-8 bytes). A path that is not a valid URI is
/// skipped (hyper refuses those before the router).
///
/// Checked: no 5xx, no panic; every 4xx is problem JSON with the
/// answered status; every JSON 2xx parses.
pub fn http_request(data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let Some((&flags, rest)) = rest.split_first() else {
        return;
    };
    let (path, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(uri) = Uri::try_from(path) else {
        return;
    };
    if uri.scheme().is_some() || uri.authority().is_some() || !uri.path().starts_with('/') {
        return;
    }
    let method = METHODS[m as usize % METHODS.len()].clone();
    let mut req = Request::builder().method(method.clone()).uri(uri.clone());
    if let Some(ct) = CONTENT_TYPES[(flags & 7) as usize] {
        req = req.header(
            header::CONTENT_TYPE,
            HeaderValue::from_bytes(ct).expect("valid header bytes"),
        );
    }
    let auth: Option<&[u8]> = match (flags >> 3) & 3 {
        0 => None,
        1 => Some(b"Bearer fuzz-key"),
        2 => Some(b"Bearer wrong"),
        _ => Some(b"Bearer \xff\xfe"),
    };
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, HeaderValue::from_bytes(a).unwrap());
    }
    let req = req.body(Body::from(body.to_vec())).expect("a request");
    let h = harness();
    let (status, headers, bytes) = h.rt.block_on(async {
        let resp = h.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = tokio::time::timeout(
            Duration::from_secs(10),
            axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024),
        )
        .await
        .expect("the response ended")
        .expect("the response body reads");
        (status, headers, bytes)
    });
    let what = format!("{method} {uri} → {status}");
    assert!(!status.is_server_error(), "{what}: {bytes:?}");
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if method == Method::HEAD {
        assert!(bytes.is_empty(), "{what}: HEAD with a body");
        return;
    }
    if status.is_client_error() {
        assert_eq!(ct, "application/problem+json", "{what}");
        let body: Value = serde_json::from_slice(&bytes).expect("problem JSON");
        check_problem_body(&body, status.as_u16());
    } else if ct == "application/json" {
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        let routed = normalize_path(uri.path()).unwrap_or_else(|| uri.path().to_string());
        if routed != "/openapi.json" {
            assert!(body.get("data").is_some(), "{what}: {body}");
        }
    }
}
