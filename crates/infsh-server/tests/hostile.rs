//! Router tier, hostile input: oversized and chunked bodies, deeply nested
//! JSON, non-UTF-8 anywhere, wrong content types, path traversal in app
//! names, function names, file ids and file inputs (plain, encoded and
//! double-encoded), forged and expired upload tokens, out-of-range numbers,
//! an app whose output is tens of MB and an app that floods stdout.
//!
//! Every case asserts the exact status and the RFC 9457 problem shape (or,
//! for the hostile apps, the task's terminal status and its error). None
//! may panic the server: a panic would be a 500 here.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request};
use common::*;
use serde_json::{json, Value};

/// A request with raw body bytes and an optional content type.
fn raw(method: Method, uri: &str, ct: Option<&[u8]>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(ct) = ct {
        b = b.header(header::CONTENT_TYPE, HeaderValue::from_bytes(ct).unwrap());
    }
    b.body(body.into()).unwrap()
}

const JSON: Option<&[u8]> = Some(b"application/json");

/// Every route that reads a JSON body.
const BODY_ROUTES: [&str; 5] = [
    "/apps/run",
    "/run",
    "/v1/run",
    "/apps/tests/multi-fn/functions/run/run",
    "/files",
];

#[tokio::test]
async fn oversized_and_chunked_bodies_are_413() {
    bounded(async {
        let mut setup = Setup::new(&["multi-fn"]);
        setup.server.max_body_bytes = 2048;
        let s = start(setup).await;
        let big = format!(
            r#"{{"app": "tests/multi-fn", "files": [], "input": {{"text": "{}"}}}}"#,
            "x".repeat(4096)
        );
        for uri in BODY_ROUTES {
            // With a length.
            let (st, h, b) =
                read_json(s.send(raw(Method::POST, uri, JSON, big.clone())).await).await;
            assert_problem(st, &h, &b, 413, "payload_too_large");
            // Chunked: no length up front, the limit trips while reading.
            let chunks: Vec<Result<String, std::io::Error>> =
                (0..64).map(|_| Ok("x".repeat(100))).collect();
            let body = Body::from_stream(futures_util::stream::iter(chunks));
            let (st, h, b) = read_json(s.send(raw(Method::POST, uri, JSON, body)).await).await;
            assert_problem(st, &h, &b, 413, "payload_too_large");
        }
        // Just under the limit is read (and then judged on its content).
        let fits = format!(r#"{{"app": "tests/nope", "pad": "{}"}}"#, "x".repeat(1900));
        let (st, h, b) = read_json(s.send(raw(Method::POST, "/apps/run", JSON, fits)).await).await;
        assert_problem(st, &h, &b, 404, "not_found");

        // A chunked upload over the limit, with a valid token.
        let (st, _, b) = s
            .post("/files", json!({"files": [{"filename": "a.bin"}]}))
            .await;
        assert_eq!(st, 200, "{b}");
        let url = b["data"][0]["upload_url"].as_str().unwrap();
        let path = &url[url.find("/files/").unwrap()..];
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..64).map(|_| Ok(vec![0u8; 100])).collect();
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let (st, h, b) = read_json(s.send(raw(Method::PUT, path, None, body)).await).await;
        assert_problem(st, &h, &b, 413, "payload_too_large");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn deeply_nested_json_is_400_and_moderate_nesting_runs() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_object = format!("{}1{}", r#"{"a":"#.repeat(50_000), "}".repeat(50_000));
        for nested in [&deep_array, &deep_object] {
            for field in ["input", "setup", "metadata"] {
                let body = format!(r#"{{"app": "tests/multi-fn", "{field}": {nested}}}"#);
                let (st, h, b) =
                    read_json(s.send(raw(Method::POST, "/apps/run", JSON, body)).await).await;
                assert_problem(st, &h, &b, 400, "invalid_request");
                assert!(
                    b["detail"].as_str().unwrap().contains("recursion limit"),
                    "{b}"
                );
            }
            // Unterminated, too.
            let body = format!(r#"{{"app": "x", "input": {}"#, &nested[..nested.len() / 2]);
            let (st, h, b) = read_json(s.send(raw(Method::POST, "/run", JSON, body)).await).await;
            assert_problem(st, &h, &b, 400, "invalid_request");
            let body = format!(r#"{{"files": {nested}}}"#);
            let (st, h, b) = read_json(s.send(raw(Method::POST, "/files", JSON, body)).await).await;
            assert_problem(st, &h, &b, 400, "invalid_request");
        }
        // 100 levels (under serde_json's 128) reach the app and come back.
        let mut nested = json!("leaf");
        for _ in 0..100 {
            nested = json!({ "n": nested });
        }
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "input": {"text": "deep"},
                       "metadata": {"deep": nested.clone()}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["status"], 10, "{b}");
        assert_eq!(b["data"]["metadata"]["deep"], nested);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn non_utf8_bodies_paths_queries_and_headers_are_4xx() {
    bounded(async {
        let mut setup = Setup::new(&["multi-fn"]);
        setup.server.api_keys = vec!["k".into()];
        let s = start(setup).await;
        let authed = |mut r: Request<Body>| {
            r.headers_mut()
                .insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
            r
        };
        // Bodies: invalid UTF-8 inside strings the route reads (serde_json
        // skips unknown keys without decoding them) and outside strings,
        // UTF-16, a BOM, a lone surrogate escape.
        for uri in BODY_ROUTES {
            let key: &[u8] = if uri == "/files" { b"files" } else { b"input" };
            let wrap = |inner: &[u8]| {
                let mut v = b"{\"app\": \"tests/multi-fn\", \"".to_vec();
                v.extend_from_slice(key);
                v.extend_from_slice(b"\": ");
                v.extend_from_slice(inner);
                v.push(b'}');
                v
            };
            for body in [
                wrap(b"[{\"filename\": \"a\xff\", \"text\": \"a\xff\"}]"),
                wrap(b"{\"text\": \"\xc3\x28\"}"),
                wrap(b"\xff"),
                wrap(b"\"\\ud800\""),
                b"\xff\xfe{\x00\"\x00a\x00\"\x00}\x00".to_vec(),
                b"\xef\xbb\xbf{\"app\": \"tests/multi-fn\"}".to_vec(),
            ] {
                let req = authed(raw(Method::POST, uri, JSON, body.clone()));
                let (st, h, b) = read_json(s.send(req).await).await;
                assert_problem(st, &h, &b, 400, "invalid_request");
            }
        }
        // Path parameters that do not decode to UTF-8: 400, not plain text.
        for (m, uri) in [
            (Method::GET, "/tasks/%FF"),
            (Method::GET, "/tasks/%C3%28/stream"),
            (Method::POST, "/tasks/%FF/cancel"),
            (Method::GET, "/apps/%FF/x"),
            (Method::GET, "/apps/tests/%80"),
            (Method::DELETE, "/sessions/%FE"),
        ] {
            let (st, h, b) =
                read_json(s.send(authed(raw(m, uri, None, Body::empty()))).await).await;
            assert_problem(st, &h, &b, 400, "invalid_request");
            assert!(b["detail"].as_str().unwrap().contains("path"), "{b}");
        }
        let req = authed(raw(
            Method::POST,
            "/apps/tests/multi-fn/functions/%FF/run",
            JSON,
            "{}",
        ));
        let (st, h, b) = read_json(s.send(req).await).await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        // Public file routes too (no key needed to get the 400).
        for (m, uri) in [
            (Method::GET, "/files/%FF"),
            (Method::GET, "/files/0123456789abcdef0123456789abcdef/%FF"),
            (Method::PUT, "/files/%FF?token=1.00"),
        ] {
            let (st, h, b) = read_json(s.send(raw(m, uri, None, Body::empty())).await).await;
            assert_problem(st, &h, &b, 400, "invalid_request");
        }
        // Query strings are decoded lossily (%FF → U+FFFD): a filter that
        // matches nothing, a cursor or a flag that does not parse (400).
        let req = authed(raw(Method::GET, "/tasks?app=%C3%28", None, Body::empty()));
        let (st, _, b) = read_json(s.send(req).await).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["items"], json!([]));
        for uri in [
            "/tasks?cursor=%FF",
            "/tasks?status=%FF",
            "/apps/run?wait=%FF",
        ] {
            let m = if uri.starts_with("/apps/run") {
                Method::POST
            } else {
                Method::GET
            };
            let req = authed(raw(m, uri, JSON, r#"{"app": "tests/nope"}"#));
            let (st, h, b) = read_json(s.send(req).await).await;
            assert_problem(st, &h, &b, 400, "invalid_request");
        }
        let (st, h, b) = read_json(
            s.send(raw(
                Method::PUT,
                "/files/0123456789abcdef0123456789abcdef?token=%FF",
                None,
                "x",
            ))
            .await,
        )
        .await;
        assert_problem(st, &h, &b, 403, "forbidden");
        // Headers: a non-UTF-8 key is a malformed Authorization (401); a
        // non-UTF-8 content type is not JSON (415).
        let mut req = raw(Method::GET, "/apps", None, Body::empty());
        req.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        );
        let (st, h, b) = read_json(s.send(req).await).await;
        assert_problem(st, &h, &b, 401, "unauthorized");
        let req = authed(raw(
            Method::POST,
            "/apps/run",
            Some(b"application/\xffjson"),
            r#"{"app": "tests/multi-fn"}"#,
        ));
        let (st, h, b) = read_json(s.send(req).await).await;
        assert_problem(st, &h, &b, 415, "unsupported_media_type");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn wrong_content_types_are_415_on_every_body_route() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        let body = r#"{"app": "tests/nope", "files": [{"filename": "a"}]}"#;
        for uri in BODY_ROUTES {
            for ct in [
                None,
                Some(&b"text/plain"[..]),
                Some(b"text/json"),
                Some(b"multipart/form-data; boundary=x"),
                Some(b"application/x-www-form-urlencoded"),
                Some(b"application/xml"),
                Some(b"application/jsonx"),
                Some(b"application/octet-stream"),
                Some(b""),
                Some(b"json"),
            ] {
                let (st, h, b) = read_json(s.send(raw(Method::POST, uri, ct, body)).await).await;
                assert_problem(st, &h, &b, 415, "unsupported_media_type");
                assert!(
                    b["detail"].as_str().unwrap().contains("application/json"),
                    "{b}"
                );
            }
            // JSON with parameters, and `+json` types, are JSON.
            for ct in [
                &b"application/json; charset=utf-8"[..],
                b"application/vnd.api+json",
                b"Application/JSON",
            ] {
                let resp = s.send(raw(Method::POST, uri, Some(ct), body)).await;
                assert_ne!(resp.status(), 415, "{uri} {ct:?}");
            }
        }
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn path_traversal_in_app_and_function_names_is_refused() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        // App names in the path: encoded, double-encoded, dotted.
        for uri in [
            "/apps/..%2F..%2Fetc/passwd",
            "/apps/..%252F..%252Fetc/passwd",
            "/apps/%2e%2e/%2e%2e",
            "/apps/%2E%2E%2F%2E%2E/etc%2Fpasswd",
            "/apps/..%5C..%5Cetc/passwd",
            "/apps/tests%2F..%2F..%2Fetc/passwd",
            "/apps/tests/multi-fn%00",
        ] {
            let (st, h, b) = s.get(uri).await;
            assert_problem(st, &h, &b, 404, "not_found");
            assert_eq!(b["resource"], "app", "{uri}: {b}");
            assert_eq!(b["available"], json!(["tests/multi-fn"]), "{uri}");
        }
        // Literal dot segments never match a route.
        for uri in [
            "/apps/../../etc/passwd",
            "/apps/tests/multi-fn/../../../etc",
        ] {
            let (st, h, b) = s.get(uri).await;
            assert_problem(st, &h, &b, 404, "not_found");
            assert_eq!(b["resource"], "route", "{uri}: {b}");
        }
        // App names in run bodies: a name no app reference can spell is a
        // 400 with the parser's message; one it can is an unknown app.
        for app in [
            "../../etc",
            "../../etc/passwd",
            "/etc/passwd",
            "tests/../../etc",
            "tests/multi-fn/../../../etc",
            "tests/multi-fn\u{0}",
            "~/.ssh/id_rsa",
            "file:///etc/passwd",
        ] {
            let (st, h, b) = s
                .post("/apps/run", json!({"app": app, "input": {"text": "x"}}))
                .await;
            assert_problem(st, &h, &b, 400, "invalid_request");
            let why = app.parse::<infsh_core::AppRef>().unwrap_err();
            assert_eq!(b["detail"], why.to_string(), "{app}: {b}");
        }
        for app in [
            "..%2F..%2Fetc",
            "..%252F..%252Fetc",
            "tests\\..\\..\\etc",
            "tests/..%2F..%2Fetc",
        ] {
            let (st, h, b) = s
                .post("/apps/run", json!({"app": app, "input": {"text": "x"}}))
                .await;
            assert_problem(st, &h, &b, 404, "not_found");
            assert_eq!(b["resource"], "app", "{app}: {b}");
        }
        let (st, h, b) = s
            .post(
                "/apps/..%2F..%2Fetc/passwd/functions/run/run",
                json!({"input": {}}),
            )
            .await;
        assert_problem(st, &h, &b, 404, "not_found");
        assert_eq!(b["resource"], "app");
        // Function names.
        for function in [
            "../../etc/passwd",
            "..%2Fsetup",
            "__init__",
            "setup",
            "_private",
        ] {
            let (st, h, b) = s
                .post(
                    "/apps/run",
                    json!({"app": "tests/multi-fn", "function": function, "input": {"text": "x"}}),
                )
                .await;
            assert_problem(st, &h, &b, 404, "not_found");
            assert_eq!(b["resource"], "function", "{function}: {b}");
        }
        let (st, h, b) = s
            .post("/apps/tests/multi-fn/functions/..%2F..%2Fx/run", json!({}))
            .await;
        assert_problem(st, &h, &b, 404, "not_found");
        assert_eq!(b["resource"], "function");
        // Task ids.
        for (m, uri) in [
            (Method::GET, "/tasks/..%2F..%2Fetc%2Fpasswd"),
            (Method::GET, "/tasks/..%2F..%2Fetc%2Fpasswd/stream"),
            (Method::POST, "/tasks/%2e%2e/cancel"),
        ] {
            let (st, h, b) = s.json(m, uri, None).await;
            assert_problem(st, &h, &b, 404, "not_found");
            assert_eq!(b["resource"], "task", "{uri}");
        }
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn path_traversal_in_file_ids_names_and_file_inputs() {
    bounded(async {
        let s = start(Setup::new(&["files-app"])).await;
        // File ids, encoded and double-encoded: 404 before any lookup.
        for (m, uri) in [
            (Method::GET, "/files/..%2F..%2Fetc%2Fpasswd"),
            (Method::GET, "/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
            (Method::GET, "/files/%252e%252e%252fetc%252fpasswd"),
            (Method::GET, "/files/..%5C..%5Cetc%5Cpasswd"),
            (Method::GET, "/files/%2e%2e/passwd"),
            (Method::GET, "/files/..%2F..%2Fetc/passwd"),
            (Method::PUT, "/files/..%2F..%2Fetc%2Fpasswd?token=1.00"),
            (Method::PUT, "/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
        ] {
            let (st, h, b) = s.json(m.clone(), uri, None).await;
            assert_problem(st, &h, &b, 404, "not_found");
            assert_eq!(b["resource"], "file", "{m} {uri}: {b}");
        }
        for uri in ["/files/../../etc/passwd", "/files/....//....//etc/passwd"] {
            let (st, h, b) = s.get(uri).await;
            assert_problem(st, &h, &b, 404, "not_found");
            assert_eq!(b["resource"], "route", "{uri}: {b}");
        }

        // Client-chosen names keep only their last component.
        let (st, _, b) = s
            .post(
                "/files",
                json!({"files": [
                    {"filename": "../../etc/passwd", "content_type": "text/plain"},
                    {"filename": "..", "content_type": "text/plain"},
                    {"filename": "..\\..\\win.ini"},
                    {"filename": "/"},
                ]}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let names: Vec<&str> = b["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["filename"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["passwd", "upload.txt", "win.ini", "upload.bin"]);
        // Upload the first; the name part of its URL is ignored, so a
        // traversal there still serves this file's bytes, never /etc/passwd.
        let id = b["data"][0]["id"].as_str().unwrap();
        let url = b["data"][0]["upload_url"].as_str().unwrap();
        let put = &url[url.find("/files/").unwrap()..];
        let (st, _, b) = read_json(s.send(raw(Method::PUT, put, None, "mine")).await).await;
        assert_eq!(st, 200, "{b}");
        for name in ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "passwd"] {
            let resp = s
                .send(raw(Method::GET, &format!("/files/{id}/{name}"), None, Body::empty()))
                .await;
            assert_eq!(resp.status(), 200, "{name}");
            assert_eq!(read_text(resp).await, "mine");
        }

        // File inputs naming server paths: 422 before anything runs.
        for file in [
            json!("/etc/passwd"),
            json!("../../etc/passwd"),
            json!("file:///etc/passwd"),
            json!("FILE:///etc/passwd"),
            json!("ftp://127.0.0.1/x"),
            json!({"path": "/etc/passwd"}),
            json!({"uri": "/etc/passwd"}),
            json!({"uri": "file:///etc/passwd", "path": null}),
            json!({"uri": "http://127.0.0.1:9/x", "path": "../../etc/passwd"}),
        ] {
            let (st, h, b) = s
                .post(
                    "/apps/run",
                    json!({"app": "tests/files-app", "function": "describe", "input": {"file": file}}),
                )
                .await;
            assert_problem(st, &h, &b, 422, "validation_error");
            assert_eq!(b["errors"][0]["path"], "file", "{file}: {b}");
            assert!(b["errors"][0]["message"].is_string());
        }
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn forged_expired_and_malformed_upload_tokens() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        let (st, _, b) = s
            .post(
                "/files",
                json!({"files": [{"filename": "a.txt"}, {"filename": "b.txt"}]}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let id = b["data"][0]["id"].as_str().unwrap().to_string();
        let other = b["data"][1]["id"].as_str().unwrap().to_string();
        let other_url = b["data"][1]["upload_url"].as_str().unwrap();
        let other_token = &other_url[other_url.find("token=").unwrap() + 6..];
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let good = upload_token(SIGNING_KEY, &id, now + 600);
        let (exp, sig) = good.split_once('.').unwrap();
        let forged: Vec<(String, &str)> = vec![
            (String::new(), "missing"),
            ("?token=".into(), "malformed"),
            ("?token=.".into(), "malformed"),
            (format!("?token={exp}"), "malformed"),
            (format!("?token=.{sig}"), "malformed"),
            (format!("?token={exp}."), "invalid"),
            (format!("?token=-{exp}.{sig}"), "malformed"),
            (format!("?token=%2B{exp}.{sig}"), "malformed"),
            (format!("?token={exp}.{}", &sig[..62]), "invalid"),
            (format!("?token={exp}.{sig}00"), "invalid"),
            (format!("?token={exp}.{}zz", &sig[..62]), "malformed"),
            (format!("?token={}.{sig}", now + 601), "invalid"),
            (format!("?token=99999999999999999999.{sig}"), "malformed"),
            (format!("?token=999999999999999999999.{sig}"), "malformed"),
            (
                format!("?token={}", upload_token(b"guess", &id, u64::MAX)),
                "invalid",
            ),
            (
                format!("?token={}", upload_token(b"", &id, now + 600)),
                "invalid",
            ),
            (
                format!("?token={}", upload_token(SIGNING_KEY, &id, now - 1)),
                "expired",
            ),
            (
                format!("?token={}", upload_token(SIGNING_KEY, &id, 0)),
                "expired",
            ),
            // Another file's genuine token.
            (format!("?token={other_token}"), "invalid"),
            (format!("?token={}", "0".repeat(20_000)), "malformed"),
        ];
        for (q, why) in &forged {
            let req = raw(Method::PUT, &format!("/files/{id}{q}"), None, "hi");
            let (st, h, b) = read_json(s.send(req).await).await;
            assert_problem(st, &h, &b, 403, "forbidden");
            let detail = b["detail"].as_str().unwrap();
            assert!(detail.contains(why), "{q}: {b}");
        }
        // A token in the header instead of the query is no token.
        let mut req = raw(Method::PUT, &format!("/files/{id}"), None, "hi");
        req.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {good}")).unwrap(),
        );
        let (st, h, b) = read_json(s.send(req).await).await;
        assert_problem(st, &h, &b, 403, "forbidden");
        // Two tokens: a malformed query string.
        let req = raw(
            Method::PUT,
            &format!("/files/{id}?token={good}&token={good}"),
            None,
            "hi",
        );
        let (st, h, b) = read_json(s.send(req).await).await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        // The other file's token is still good for the other file only.
        let req = raw(
            Method::PUT,
            &format!("/files/{other}?token={other_token}"),
            None,
            "b",
        );
        let (st, _, b) = read_json(s.send(req).await).await;
        assert_eq!(st, 200, "{b}");
        // Nothing was stored for the first file by any of the above.
        let (st, h, b) = s.get(&format!("/files/{id}")).await;
        assert_problem(st, &h, &b, 404, "not_found");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn out_of_range_numbers_and_cursors_are_400() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        // 1e300 s used to reach the engine, whose deadline arithmetic panics.
        for timeout in [
            json!(1e300),
            json!(0),
            json!(-1),
            json!(4e7),
            json!(f64::MAX),
        ] {
            let (st, h, b) = s
                .post(
                    "/apps/run",
                    json!({"app": "tests/multi-fn", "input": {"text": "x"}, "timeout": timeout}),
                )
                .await;
            assert_problem(st, &h, &b, 400, "invalid_request");
            assert!(b["detail"].as_str().unwrap().contains("timeout"), "{b}");
            let (st, h, b) = s
                .post(
                    "/apps/tests/multi-fn/functions/run/run",
                    json!({"input": {"text": "x"}, "timeout": timeout}),
                )
                .await;
            assert_problem(st, &h, &b, 400, "invalid_request");
        }
        for body in [
            r#"{"app": "tests/multi-fn", "timeout": 1e400}"#,
            r#"{"app": "tests/multi-fn", "timeout": "10"}"#,
            r#"{"app": "tests/multi-fn", "timeout": NaN}"#,
            r#"{"app": "tests/multi-fn", "wait": "yes"}"#,
            r#"{"app": 7}"#,
            r#"{"app": null}"#,
            r#"{"app": "  "}"#,
            r#"{"app": "tests/multi-fn", "function": ["run"]}"#,
            r#"{"app": "tests/multi-fn", "session": {}}"#,
            r#"{"app": "tests/multi-fn", "app": "tests/multi-fn"}"#,
        ] {
            let (st, h, b) =
                read_json(s.send(raw(Method::POST, "/apps/run", JSON, body)).await).await;
            assert_problem(st, &h, &b, 400, "invalid_request");
        }
        for q in [
            "cursor=abc",
            "cursor=-5",
            "cursor=0",
            "cursor=99999999999999999999",
            "cursor=1.5",
            "limit=-1",
            "limit=1e3",
            "limit=101",
            "limit=99999999999999999999999",
            "status=14",
            "status=255",
            "status=-1",
            "status=completedx",
            "limit=1&limit=2",
        ] {
            let (st, h, b) = s.get(&format!("/tasks?{q}")).await;
            assert_problem(st, &h, &b, 400, "invalid_request");
        }
        for q in ["wait=maybe", "wait=2", "wait=true&wait=false"] {
            let (st, h, b) = s
                .post(&format!("/apps/run?{q}"), json!({"app": "tests/multi-fn"}))
                .await;
            assert_problem(st, &h, &b, 400, "invalid_request");
        }
        // A valid cursor nobody handed out is just an empty page.
        let (st, _, b) = s.get("/tasks?cursor=1").await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["items"], json!([]));
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn huge_output_is_stored_or_fails_with_a_clear_error() {
    bounded(async {
        let s = start(Setup::new(&["hostile-huge-output"])).await;
        // 50 MB: under the 64 MiB message limit, stored and served whole.
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/hostile-huge-output", "input": {"megabytes": 50}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200);
        let task = &b["data"];
        assert_eq!(task["status"], 10, "{}", task["error"]);
        let size = 50 * 1024 * 1024;
        assert_eq!(task["output"]["size"], size);
        assert_eq!(task["output"]["data"].as_str().unwrap().len(), size);
        let id = task["id"].as_str().unwrap().to_string();
        let (st, _, b) = s.get(&format!("/tasks/{id}")).await;
        assert_eq!(st, 200);
        assert_eq!(b["data"]["output"]["data"].as_str().unwrap().len(), size);

        let worker_pid = |workers: &Value| workers["data"][0]["pid"].as_u64();
        let (_, _, before) = s.get("/workers").await;
        assert!(worker_pid(&before).is_some(), "{before}");

        // 80 MB: over the limit. The task fails and says why; the worker
        // does not send the message, so it is not replaced and the app is
        // not counted unhealthy (a poison input must not back the app off).
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/hostile-huge-output", "input": {"megabytes": 80}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200);
        let task = &b["data"];
        assert_eq!(task["status"], 11, "{task}");
        assert_eq!(task["output"], Value::Null);
        let error = task["error"].as_str().unwrap();
        assert!(
            error.contains("over the limit of 67108864 bytes"),
            "{error}"
        );

        assert!(error.contains("the output is too large to return"), "{error}");
        let (_, _, after) = s.get("/workers").await;
        assert_eq!(worker_pid(&after), worker_pid(&before), "{after}");
        let (_, _, app) = s.get("/apps/tests/hostile-huge-output").await;
        assert_eq!(app["data"]["state"], "ready", "{app}");

        // The app still serves, on the same worker.
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/hostile-huge-output", "input": {"megabytes": 0}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200);
        assert_eq!(b["data"]["status"], 10, "{b}");
        assert_eq!(b["data"]["output"]["data"], "");
        s.stop().await;
    })
    .await;
}

/// Lines of the flood test: enough that an uncapped answer would be tens
/// of MB (INFSH_FLOOD_LINES raises it, e.g. to 5 000 000).
fn flood_lines() -> u64 {
    std::env::var("INFSH_FLOOD_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

#[tokio::test]
async fn stdout_flood_is_capped_in_task_answers_and_streams() {
    bounded(async {
        let s = start(Setup::new(&["hostile-flood"])).await;
        let n = flood_lines();
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/hostile-flood", "input": {"lines": n}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200);
        let task = &b["data"];
        assert_eq!(task["status"], 10, "{}", task["error"]);
        assert_eq!(task["output"]["printed"], n);
        let id = task["id"].as_str().unwrap().to_string();

        let check = |task: &Value| {
            let logs = task["logs"].as_array().expect("logs");
            assert_eq!(logs.len(), 1000 + 1 + 1000, "head, marker, tail");
            let marker = logs[1000]["content"].as_str().unwrap();
            let dropped: u64 = marker
                .strip_prefix("[... ")
                .and_then(|m| m.strip_suffix(" lines dropped ...]"))
                .expect("the marker")
                .parse()
                .unwrap();
            assert_eq!(logs[1000]["log_type"], 1);
            // Every flood line is in the head, the tail or the count.
            assert!(dropped >= n - 2000 && dropped <= n - 2000 + 20, "{dropped}");
            assert!(
                logs[..1000].iter().any(|l| l["content"] == "flood line 0"),
                "the head starts the flood"
            );
            for (k, l) in logs[1001..].iter().enumerate() {
                assert_eq!(l["content"], format!("flood line {}", n - 1000 + k as u64));
            }
        };
        check(task);
        let (st, _, b) = s.get(&format!("/tasks/{id}")).await;
        assert_eq!(st, 200);
        check(&b["data"]);
        // The stream of the ended task: one capped snapshot.
        let resp = s
            .send(raw(
                Method::GET,
                &format!("/tasks/{id}/stream"),
                None,
                Body::empty(),
            ))
            .await;
        assert_eq!(resp.status(), 200);
        let text = read_text(resp).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "the terminal snapshot only");
        check(&serde_json::from_str(lines[0]).unwrap());

        // 8 MB without a newline: cut into 64 KiB lines, never one 8 MB line.
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/hostile-flood", "function": "long_line",
                       "input": {"megabytes": 8}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200);
        assert_eq!(b["data"]["status"], 10, "{b}");
        let logs = b["data"]["logs"].as_array().unwrap();
        let total: usize = logs
            .iter()
            .map(|l| l["content"].as_str().unwrap().len())
            .inspect(|len| assert!(*len <= 64 * 1024, "a {len}-byte line"))
            .sum();
        assert!(total >= 8 * 1024 * 1024, "{total}");
        s.stop().await;
    })
    .await;
}
