//! Router tier, failures: every error the API can answer, through the real
//! router over a real engine, with its exact status and problem JSON.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, Method, Request};
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn auth_guards_every_route_but_the_public_ones() {
    bounded(async {
        let mut setup = Setup::new(&["multi-fn"]);
        setup.server.api_keys = vec!["k1".into(), "k2".into()];
        let s = start(setup).await;

        for (method, uri) in [
            (Method::GET, "/tasks"),
            (Method::GET, "/tasks/x"),
            (Method::GET, "/tasks/x/stream"),
            (Method::POST, "/tasks/x/cancel"),
            (Method::POST, "/apps/run"),
            (Method::POST, "/run"),
            (Method::POST, "/v1/run"),
            (Method::POST, "/files"),
            (Method::GET, "/apps"),
            (Method::GET, "/apps/tests/multi-fn"),
            (Method::GET, "/openapi.json"),
            (Method::GET, "/ready"),
            (Method::GET, "/metrics"),
            (Method::DELETE, "/sessions/s"),
            (Method::GET, "/sessions"),
            (Method::GET, "/sessions/s"),
            (Method::POST, "/sessions/s/keepalive"),
        ] {
            let (st, h, b) = s.json(method.clone(), uri, None).await;
            assert_problem(st, &h, &b, 401, "unauthorized");
            assert!(
                h[header::WWW_AUTHENTICATE]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer"),
                "{method} {uri}"
            );
        }

        // Wrong key, wrong scheme.
        for auth in ["Bearer nope", "Basic azE6", "Bearer"] {
            let req = Request::get("/tasks")
                .header(header::AUTHORIZATION, auth)
                .body(Body::empty())
                .unwrap();
            let (st, h, b) = read_json(s.send(req).await).await;
            assert_problem(st, &h, &b, 401, "unauthorized");
        }

        // Either configured key works.
        for key in ["k1", "k2"] {
            let req = Request::get("/apps")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap();
            let (st, _, b) = read_json(s.send(req).await).await;
            assert_eq!(st, 200, "{b}");
        }

        // Public: health and the signed upload (it fails on its own terms,
        // not with 401). A download without `?sig=` or a key is 401
        // whether or not the file exists (router_file_access.rs); with a
        // key, an unknown one is 404.
        let (st, _, b) = s.get("/health").await;
        assert_eq!(st, 200);
        assert_eq!(b, json!({"data": {"status": "ok"}, "messages": []}));
        let (st, h, b) = s.get("/files/0123456789abcdef0123456789abcdef").await;
        assert_problem(st, &h, &b, 401, "unauthorized");
        let req = Request::get("/files/0123456789abcdef0123456789abcdef")
            .header(header::AUTHORIZATION, "Bearer k1")
            .body(Body::empty())
            .unwrap();
        let (st, h, b) = read_json(s.send(req).await).await;
        assert_problem(st, &h, &b, 404, "not_found");
        let (st, h, b) = s
            .json(Method::PUT, "/files/0123456789abcdef0123456789abcdef", None)
            .await;
        assert_problem(st, &h, &b, 403, "forbidden");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_json() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        let (st, h, b) = s.get("/nope").await;
        assert_problem(st, &h, &b, 404, "not_found");
        assert_eq!(b["resource"], "route");
        let (st, h, b) = s.get("/v1/tasks/x/nope").await;
        assert_problem(st, &h, &b, 404, "not_found");
        let (st, h, b) = s.get("/apps/run").await;
        assert_problem(st, &h, &b, 405, "method_not_allowed");
        // (DELETE /tasks/{id} and GET /files exist since issue 15.)
        let (st, h, b) = s.json(Method::PUT, "/tasks/x", None).await;
        assert_problem(st, &h, &b, 405, "method_not_allowed");
        assert!(h[header::ALLOW].to_str().unwrap().contains("GET"), "{h:?}");
        assert!(
            h[header::ALLOW].to_str().unwrap().contains("DELETE"),
            "{h:?}"
        );
        let (st, h, b) = s.json(Method::PUT, "/files", None).await;
        assert_problem(st, &h, &b, 405, "method_not_allowed");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bad_bodies_are_400_413_415() {
    bounded(async {
        let mut setup = Setup::new(&["multi-fn"]);
        setup.server.max_body_bytes = 2048;
        let s = start(setup).await;

        // Malformed JSON → 400.
        let req = Request::post("/apps/run")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{\"app\": "))
            .unwrap();
        let (st, h, b) = read_json(s.send(req).await).await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        assert!(b["detail"].as_str().unwrap().contains("malformed JSON"), "{b}");

        // Valid JSON, wrong shape (no app) → 400.
        let (st, h, b) = s.post("/apps/run", json!({"input": {}})).await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        let (st, h, b) = s.post("/apps/run", json!([1, 2])).await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        let (st, h, b) = s.post("/files", json!({"files": []})).await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        let (st, h, b) = s.get("/tasks?limit=0").await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        let (st, h, b) = s.get("/tasks?limit=abc").await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        let (st, h, b) = s.get("/tasks?status=bogus").await;
        assert_problem(st, &h, &b, 400, "invalid_request");

        // Empty body under a JSON content type where a body is needed → 400.
        let req = Request::post("/apps/run")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::empty())
            .unwrap();
        let (st, h, b) = read_json(s.send(req).await).await;
        assert_problem(st, &h, &b, 400, "invalid_request");

        // Wrong content type → 415.
        for ct in [Some("text/plain"), None] {
            let mut req = Request::post("/apps/run");
            if let Some(ct) = ct {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            let req = req.body(Body::from(r#"{"app":"tests/multi-fn"}"#)).unwrap();
            let (st, h, b) = read_json(s.send(req).await).await;
            assert_problem(st, &h, &b, 415, "unsupported_media_type");
        }

        // Over the limit → 413, for JSON and for uploads.
        let big = json!({"app": "tests/multi-fn", "input": {"text": "x".repeat(4096)}});
        let (st, h, b) = s.post("/apps/run", big).await;
        assert_problem(st, &h, &b, 413, "payload_too_large");
        let (st, _, b) = s
            .post(
                "/files",
                json!({"files": [{"filename": "a.bin", "content_type": "application/octet-stream", "size": 4096}]}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let upload = b["data"][0]["upload_url"].as_str().unwrap();
        let path = &upload[upload.find("/files/").unwrap()..];
        let req = Request::put(path)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(vec![7u8; 4096]))
            .unwrap();
        let (st, h, b) = read_json(s.send(req).await).await;
        assert_problem(st, &h, &b, 413, "payload_too_large");

        // The client's bodyless cancel (JSON content type, empty body) is not
        // a body error: it reaches the handler (unknown task → 404).
        let req = Request::post("/tasks/nope/cancel")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, "0")
            .body(Body::empty())
            .unwrap();
        let (st, h, b) = read_json(s.send(req).await).await;
        assert_problem(st, &h, &b, 404, "not_found");
        // ... and GETs with a JSON content type are fine.
        let req = Request::get("/apps")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::empty())
            .unwrap();
        let (st, _, _) = read_json(s.send(req).await).await;
        assert_eq!(st, 200);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unknown_app_function_and_invalid_input() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn", "validation-app"])).await;

        let (st, h, b) = s
            .post("/apps/run", json!({"app": "tests/nope", "input": {}}))
            .await;
        assert_problem(st, &h, &b, 404, "not_found");
        assert_eq!(b["resource"], "app");
        assert_eq!(
            b["available"],
            json!(["tests/multi-fn", "tests/validation-app"])
        );
        assert!(b["detail"].as_str().unwrap().contains("tests/multi-fn"));

        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "function": "nope", "input": {}}),
            )
            .await;
        assert_problem(st, &h, &b, 404, "not_found");
        assert_eq!(b["resource"], "function");
        let avail: Vec<&str> = b["available"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for f in ["generate", "run", "summarize", "upscale"] {
            assert!(avail.contains(&f), "{b}");
        }
        // `ns/name:function` names the function too.
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn:nope", "input": {}}),
            )
            .await;
        assert_problem(st, &h, &b, 404, "not_found");

        // Schema-invalid input → 422 with [{path, message}].
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/validation-app", "input": {"prompt": "p", "steps": 100}}),
            )
            .await;
        assert_problem(st, &h, &b, 422, "validation_error");
        let errors = b["errors"].as_array().expect("errors list");
        assert!(!errors.is_empty());
        assert!(errors
            .iter()
            .all(|e| e["path"].is_string() && e["message"].is_string()));
        assert!(errors.iter().any(|e| e["path"] == "steps"), "{b}");
        // Missing required field.
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/validation-app", "input": null}),
            )
            .await;
        assert_problem(st, &h, &b, 422, "validation_error");
        assert!(b["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "prompt"));
        // The per-function path validates the same way.
        let (st, h, b) = s
            .post(
                "/apps/tests/validation-app/functions/run/run",
                json!({"input": {"prompt": "p", "mode": "warp"}}),
            )
            .await;
        assert_problem(st, &h, &b, 422, "validation_error");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn infra_other_than_private_and_workers_for_a_local_app_are_400() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "input": {}, "infra": "cloud"}),
            )
            .await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        assert_eq!(
            b["detail"],
            "`infra` \"cloud\" is not one infsh has: expected one of \"private\""
        );
        let (st, h, b) = s
            .post(
                "/apps/tests/multi-fn/functions/run/run",
                json!({"input": {}, "infra": "shared"}),
            )
            .await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        assert!(b["detail"].as_str().unwrap().contains("\"shared\""), "{b}");
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "input": {}, "workers": ["gpu-box-1"]}),
            )
            .await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        assert_eq!(
            b["detail"],
            "`workers` pins a run to remote engines' workers; app \"tests/multi-fn\" is hosted by this server itself"
        );
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_webhook_that_is_not_an_absolute_http_url_is_400() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        for (webhook, shown) in [
            ("hook", "\"hook\""),
            ("/relative/hook", "\"/relative/hook\""),
            ("ftp://127.0.0.1/hook", "\"ftp://127.0.0.1/hook\""),
            ("http://", "\"http://\""),
        ] {
            for (path, body) in [
                (
                    "/apps/run",
                    json!({"app": "tests/multi-fn", "input": {"text": "x"}, "webhook": webhook}),
                ),
                (
                    "/apps/tests/multi-fn/functions/run/run",
                    json!({"input": {"text": "x"}, "webhook": webhook}),
                ),
            ] {
                let (st, h, b) = s.post(path, body).await;
                assert_problem(st, &h, &b, 400, "invalid_request");
                assert_eq!(
                    b["detail"],
                    format!(
                        "`webhook` {shown} is not an absolute http(s) URL (e.g. \"https://example.com/hook\")"
                    ),
                    "{path}"
                );
            }
        }
        // Nothing was queued by the refusals; an http(s) URL or an empty
        // webhook (none) is taken.
        let (st, _, b) = s.get("/tasks").await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["items"], json!([]), "{b}");
        for webhook in ["http://127.0.0.1:9/hook", "https://127.0.0.1:9/h?a=1", " "] {
            let (st, _, b) = s
                .post(
                    "/apps/run",
                    json!({"app": "tests/multi-fn", "input": {"text": "x"}, "webhook": webhook}),
                )
                .await;
            assert_eq!(st, 200, "{webhook:?}: {b}");
        }
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn missing_secrets_are_412_in_the_client_shape() {
    bounded(async {
        let mut setup = Setup::new(&[]);
        setup.tweak = Box::new(|config, _| add_secret_app(config));
        let s = start(setup).await;
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/secret-app", "input": {"text": "hi"}}),
            )
            .await;
        assert_problem(st, &h, &b, 412, "requirements_not_met");
        let errors = b["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{b}");
        assert_eq!(errors[0]["type"], "secret");
        assert_eq!(errors[0]["key"], "HF_TOKEN");
        assert!(errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(errors[0]["action"]["type"], "add_secret");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn full_queue_is_429_with_retry_after() {
    bounded(async {
        let mut setup = Setup::new(&["hangs"]);
        setup.tweak = Box::new(|c, _| c.queue_capacity = 1);
        let s = start(setup).await;
        let mut ids = Vec::new();
        let mut refused = None;
        for _ in 0..4 {
            let (st, h, b) = s
                .post(
                    "/apps/run",
                    json!({"app": "tests/hangs", "function": "async_hang", "input": {}}),
                )
                .await;
            if st == 200 {
                ids.push(b["data"]["id"].as_str().unwrap().to_string());
            } else {
                refused = Some((st, h, b));
                break;
            }
        }
        let (st, h, b) = refused.expect("a run was refused");
        assert_problem(st, &h, &b, 429, "rate_limited");
        let secs: u64 = h[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!(secs >= 1);
        assert_eq!(b["app"], "tests/hangs");
        assert_eq!(b["capacity"], 1);
        for id in ids {
            let _ = s
                .json(Method::POST, &format!("/tasks/{id}/cancel"), None)
                .await;
        }
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unknown_task_and_ended_task_conflict() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        for (m, uri) in [
            (Method::GET, "/tasks/nope"),
            (Method::GET, "/tasks/nope/stream"),
            (Method::POST, "/tasks/nope/cancel"),
            (Method::GET, "/v1/tasks/nope"),
        ] {
            let (st, h, b) = s.json(m, uri, None).await;
            assert_problem(st, &h, &b, 404, "not_found");
            assert_eq!(b["resource"], "task");
        }

        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "input": {"text": "hi"}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["status"], 10);
        let id = b["data"]["id"].as_str().unwrap();
        let (st, h, b) = s
            .json(Method::POST, &format!("/tasks/{id}/cancel"), None)
            .await;
        assert_problem(st, &h, &b, 409, "conflict");
        assert_eq!(b["task_status"], 10);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn upload_tokens_are_checked_and_file_ids_validated() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        let (st, _, b) = s
            .post(
                "/files",
                json!({"files": [{"uri": "", "filename": "a.txt", "content_type": "text/plain", "path": null, "size": 2, "public": null}]}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let id = b["data"][0]["id"].as_str().unwrap().to_string();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();

        let put = |query: String| {
            Request::put(format!("/files/{id}{query}"))
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("hi"))
                .unwrap()
        };
        let cases = [
            String::new(),
            "?token=".to_string(),
            "?token=garbage".to_string(),
            format!("?token={}", upload_token(b"another key", &id, now + 600)),
            format!("?token={}", upload_token(SIGNING_KEY, &id, now - 10)),
            format!(
                "?token={}",
                upload_token(SIGNING_KEY, "ffffffffffffffffffffffffffffffff", now + 600)
            ),
        ];
        for q in cases {
            let (st, h, b) = read_json(s.send(put(q.clone())).await).await;
            assert_problem(st, &h, &b, 403, "forbidden");
            assert!(
                b["detail"].as_str().unwrap().contains("token"),
                "{q}: {b}"
            );
        }
        let (st, h, b) = s
            .get(&format!("/files/{id}"))
            .await;
        // Registered, no bytes yet.
        assert_problem(st, &h, &b, 404, "not_found");

        // A correctly signed token (made here with the configured key) works.
        let (st, _, b) = read_json(
            s.send(put(format!("?token={}", upload_token(SIGNING_KEY, &id, now + 600))))
                .await,
        )
        .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["uploaded"], true);

        // Malformed ids: 404 before any lookup.
        for bad in [
            "/files/nothex",
            "/files/0123456789ABCDEF0123456789ABCDEF",
            "/files/..%2F..%2Fetc%2Fpasswd",
            "/files/0123456789abcdef0123456789abcdef0",
            "/files/%2e%2e",
        ] {
            let (st, h, b) = s.get(bad).await;
            assert_problem(st, &h, &b, 404, "not_found");
        }
        let (st, h, b) = s.json(Method::PUT, "/files/nothex?token=1.00", None).await;
        assert_problem(st, &h, &b, 404, "not_found");
        // Unknown but well-formed id.
        let (st, h, b) = s.get("/files/0123456789abcdef0123456789abcdef").await;
        assert_problem(st, &h, &b, 404, "not_found");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn app_that_cannot_load_and_shutting_down_are_503() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn", "import-error"])).await;
        let (st, h, b) = s.get("/apps/tests/import-error").await;
        assert_problem(st, &h, &b, 503, "app_unavailable");
        assert_eq!(b["app"], "tests/import-error");
        let (st, h, b) = s.get("/apps/tests/nope").await;
        assert_problem(st, &h, &b, 404, "not_found");

        s.engine.shutdown(Duration::from_secs(5)).await;
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "input": {"text": "x"}}),
            )
            .await;
        assert_problem(st, &h, &b, 503, "shutting_down");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn problem_bodies_never_leak_plain_text() {
    // Everything above asserted problem JSON per status; here, a sweep of
    // odd requests: each answer parses as JSON.
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        let odd: Vec<(Method, &str, Option<Value>)> = vec![
            (Method::PATCH, "/apps/run", None),
            (Method::POST, "/tasks", Some(json!({}))),
            // `/` is the playground page (GET only).
            (Method::DELETE, "//", None),
            (Method::POST, "/v1", None),
            (Method::GET, "//nope", None),
            (Method::PUT, "/files", None),
            (Method::POST, "/apps/tests/multi-fn", Some(json!({}))),
        ];
        for (m, uri, body) in odd {
            let (st, h, b) = s.json(m.clone(), uri, body).await;
            assert!(st.is_client_error(), "{m} {uri}: {st}");
            assert_eq!(
                h[header::CONTENT_TYPE],
                "application/problem+json",
                "{m} {uri}"
            );
            assert!(b["type"]
                .as_str()
                .unwrap()
                .starts_with("https://infsh.dev/errors/"));
        }
        s.stop().await;
    })
    .await;
}

/// A run's `app` is parsed at the edge (infsh-core's `AppRef`): a text no
/// reference can spell is a 400 whose detail is the parser's message, for
/// `POST /apps/run` and `GET /tasks?app=` alike; a path naming no possible
/// app is, like any other unknown app, a 404.
#[tokio::test]
async fn malformed_app_references_are_400_with_the_parser_message() {
    bounded(async {
        let s = start(Setup::new(&[])).await;
        let bad_request = |detail: &str| {
            json!({"type": "https://infsh.dev/errors/invalid_request", "title": "Bad Request",
                   "status": 400, "detail": detail})
        };
        for (app, detail) in [
            (
                "a/b/c",
                "invalid app reference \"a/b/c\": more than one \"/\"; expected NAMESPACE/NAME[@VERSION][:FUNCTION]",
            ),
            (
                "",
                "the app reference is empty; expected NAMESPACE/NAME[@VERSION][:FUNCTION]",
            ),
            (
                "ns/app:fn@2",
                "invalid app reference \"ns/app:fn@2\": the function may not contain '@'; expected NAMESPACE/NAME[@VERSION][:FUNCTION]",
            ),
        ] {
            for path in ["/apps/run", "/run", "/v1/run"] {
                let (st, h, b) = s.post(path, json!({"app": app, "input": {}})).await;
                assert_problem(st, &h, &b, 400, "invalid_request");
                assert_eq!(b, bad_request(detail), "{path} {app:?}");
            }
        }
        let (st, h, b) = s.get("/tasks?app=ns%2F").await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        assert_eq!(
            b,
            bad_request(
                "`app`: invalid app reference \"ns/\": the name is empty; expected NAMESPACE/NAME[@VERSION][:FUNCTION]"
            )
        );
        // Well-formed references of apps that are not hosted: 404, as before.
        for app in ["tests/nope", "nope", "tests/nope@1:run"] {
            let (st, h, b) = s.post("/apps/run", json!({"app": app})).await;
            assert_problem(st, &h, &b, 404, "not_found");
            assert_eq!(b["resource"], "app", "{app}");
        }
        let (st, _, b) = s.get("/tasks?app=tests/nope@1:run").await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["items"], json!([]));
        for uri in ["/apps/tests/a%3Ab", "/apps/%2E/x"] {
            let (st, h, b) = s.get(uri).await;
            assert_problem(st, &h, &b, 404, "not_found");
            assert_eq!(b["resource"], "app", "{uri}");
            assert_eq!(b["available"], json!([]), "{uri}");
        }
        let (st, h, b) = s
            .post("/apps/tests/a%40b/functions/run/run", json!({}))
            .await;
        assert_problem(st, &h, &b, 404, "not_found");
        assert_eq!(
            b["detail"],
            "unknown app \"tests/a@b\"; available apps: ",
            "{b}"
        );
        s.stop().await;
    })
    .await;
}

/// `?status=` takes one table's spellings (infsh-core's `TaskStatus`); an
/// unknown one is a 400 naming every accepted spelling.
#[tokio::test]
async fn unknown_task_status_is_400_listing_what_is_accepted() {
    bounded(async {
        let s = start(Setup::new(&[])).await;
        let (st, h, b) = s.get("/tasks?status=done").await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        assert_eq!(
            b,
            json!({"type": "https://infsh.dev/errors/invalid_request", "title": "Bad Request",
                   "status": 400,
                   "detail": "`status`: unknown task status \"done\": use a number 0-13 or a name \
                              (unknown, received, queued, dispatched, preparing, serving, \
                              setting_up, running, cancelling, uploading, completed, failed, \
                              cancelled, rejected, canceled, canceling, setup, settingup)"})
        );
        let (st, h, b) = s.get("/tasks?status=14").await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        assert!(
            b["detail"]
                .as_str()
                .unwrap()
                .starts_with("`status`: unknown task status \"14\": use a number 0-13"),
            "{b}"
        );
        for ok in [
            "canceled",
            "CANCELED",
            "canceling",
            "setup",
            "setting-up",
            "12",
        ] {
            let (st, _, b) = s.get(&format!("/tasks?status={ok}")).await;
            assert_eq!(st, 200, "{ok}: {b}");
            assert_eq!(b["data"]["items"], json!([]), "{ok}");
        }
        s.stop().await;
    })
    .await;
}

/// A function whose input schema does not compile (fixture invalid-schema:
/// its type is 12) is refused with a 500 `invalid_schema` naming the app,
/// the function and the compiler's complaint; the app's other function runs.
#[tokio::test]
async fn a_function_whose_schema_does_not_compile_is_refused_with_500() {
    bounded(async {
        let s = start(Setup::new(&["invalid-schema"])).await;
        // The compiler's message for the schema the worker reports.
        let (st, _, b) = s.get("/apps/tests/invalid-schema").await;
        assert_eq!(st, 200, "{b}");
        let schema = &b["data"]["functions"]["run"]["input_schema"];
        assert_eq!(schema["type"], 12, "{schema}");
        let problem = infsh_core::InputValidator::compile(schema)
            .unwrap_err()
            .message;
        assert!(problem.starts_with("at /type: 12 "), "{problem}");
        let want = json!({
            "type": "https://infsh.dev/errors/invalid_schema",
            "title": "Internal Server Error",
            "status": 500,
            "detail": format!("function \"run\" is refused: its input schema does not compile: {problem}"),
            "app": "tests/invalid-schema",
            "function": "run",
            "schema": "input",
        });
        for (path, body) in [
            (
                "/apps/run",
                json!({"app": "tests/invalid-schema", "input": {"text": "x"}}),
            ),
            // Refused whatever the input: it is never looked at.
            (
                "/run",
                json!({"app": "tests/invalid-schema:run", "input": {"nonsense": true}}),
            ),
            (
                "/apps/tests/invalid-schema/functions/run/run",
                json!({"input": {"text": "x"}}),
            ),
        ] {
            let (st, h, b) = s.post(path, body).await;
            assert_problem(st, &h, &b, 500, "invalid_schema");
            assert_eq!(b, want, "{path}");
        }
        let (st, _, b) = s.get("/tasks").await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["items"], json!([]), "nothing was stored");
        let (st, _, b) = s
            .post(
                "/apps/run?wait=true",
                json!({"app": "tests/invalid-schema", "function": "fine", "input": {"text": "x"}}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["status"], 10, "{b}");
        assert_eq!(b["data"]["output"]["text"], "x", "{b}");
        s.stop().await;
    })
    .await;
}
