//! Router tier, issue 15's body limits and file bytes: the JSON limit
//! (`--max-json-mib`) and the upload limit (`--max-upload-gib`), each named
//! in its 413; uploads checked against their registered size; an upload cut
//! off half way leaves nothing on disk; downloads honour `Range` (206, and
//! 416 past the end). Memory under large bodies is measured end to end in
//! crates/infsh-cli/tests/serve_memory.rs.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request};
use common::*;
use infsh_server::Limits;
use serde_json::{json, Value};

/// A server with a 1 KiB JSON limit and a 4 KiB upload limit, no catch-all.
fn small_limits() -> Setup {
    let mut setup = Setup::new(&["multi-fn"]);
    setup.server.max_body_bytes = usize::MAX;
    setup.server.limits = Limits {
        max_json_bytes: 1024,
        max_upload_bytes: 4096,
        ..Limits::default()
    };
    setup
}

/// Registers one file (with `size` if given); its upload path.
async fn register(s: &TestServer, size: Option<u64>) -> (String, String) {
    let mut spec = json!({"filename": "clip.bin", "content_type": "application/octet-stream"});
    if let Some(n) = size {
        spec["size"] = json!(n);
    }
    let (st, _, b) = s.post("/files", json!({ "files": [spec] })).await;
    assert_eq!(st, 200, "{b}");
    let id = b["data"][0]["id"].as_str().unwrap().to_string();
    let url = b["data"][0]["upload_url"].as_str().unwrap();
    (id, url[url.find("/files/").unwrap()..].to_string())
}

fn put(path: &str, body: Body) -> Request<Body> {
    Request::put(path)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .unwrap()
}

/// A body of `chunks` chunks of `size` bytes, then (if `fail`) an error:
/// a client that went away half way.
fn chunked(chunks: usize, size: usize, fail: bool) -> Body {
    let mut items: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..chunks).map(|i| Ok(vec![i as u8; size])).collect();
    if fail {
        items.push(Err(std::io::Error::other("client went away")));
    }
    Body::from_stream(futures_util::stream::iter(items))
}

/// Names in the file store that are not finished files (temporary ones).
fn leftovers(s: &TestServer) -> Vec<String> {
    std::fs::read_dir(s.dir.path().join("data").join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

fn assert_limit(b: &Value, limit: u64, by: &str, detail: &str) {
    assert_eq!(b["limit"], limit, "{b}");
    assert_eq!(b["limited_by"], by, "{b}");
    assert_eq!(b["detail"], detail, "{b}");
}

#[tokio::test]
async fn json_bodies_past_max_json_are_413_naming_the_flag() {
    bounded(async {
        let s = start(small_limits()).await;
        let big = json!({"app": "tests/multi-fn", "input": {"text": "x".repeat(2000)}});
        for uri in ["/apps/run", "/files"] {
            // Declared length: refused before the body is read.
            let (st, h, b) = s.post(uri, big.clone()).await;
            assert_problem(st, &h, &b, 413, "payload_too_large");
            assert_eq!(h[header::CONNECTION], "close");
            assert_limit(
                &b,
                1024,
                "--max-json-mib",
                "the JSON body is larger than 1 KiB (--max-json-mib)",
            );
            // Chunked: refused when the limit is passed.
            let req = Request::post(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(chunked(20, 100, false))
                .unwrap();
            let (st, h, b) = read_json(s.send(req).await).await;
            assert_problem(st, &h, &b, 413, "payload_too_large");
            assert_eq!(b["limited_by"], "--max-json-mib", "{b}");
        }
        // The catch-all --max-body-mib names itself when it is the smaller.
        s.stop().await;
        let mut setup = small_limits();
        setup.server.max_body_bytes = 512;
        let s = start(setup).await;
        let (st, h, b) = s.post("/apps/run", big).await;
        assert_problem(st, &h, &b, 413, "payload_too_large");
        assert_limit(
            &b,
            512,
            "--max-body-mib",
            "the JSON body is larger than 512 bytes (--max-body-mib)",
        );
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn uploads_past_max_upload_or_their_size_are_413_and_leave_nothing() {
    bounded(async {
        let s = start(small_limits()).await;
        // Declared past the upload limit.
        let (id, path) = register(&s, None).await;
        let (st, h, b) = read_json(s.send(put(&path, Body::from(vec![1u8; 5000]))).await).await;
        assert_problem(st, &h, &b, 413, "payload_too_large");
        assert_limit(
            &b,
            4096,
            "--max-upload-gib",
            "the upload is larger than 4 KiB (--max-upload-gib)",
        );
        // Chunked past it.
        let (st, h, b) = read_json(s.send(put(&path, chunked(50, 100, false))).await).await;
        assert_problem(st, &h, &b, 413, "payload_too_large");
        assert_eq!(b["limited_by"], "--max-upload-gib", "{b}");
        // Past the registered size, declared and chunked.
        let (sized, sized_path) = register(&s, Some(300)).await;
        let (st, h, b) =
            read_json(s.send(put(&sized_path, Body::from(vec![1u8; 301]))).await).await;
        assert_problem(st, &h, &b, 413, "payload_too_large");
        assert_limit(
            &b,
            300,
            "registered_size",
            &format!(
                "the upload is larger than the 300 bytes file \"{sized}\" was registered with"
            ),
        );
        let (st, h, b) = read_json(s.send(put(&sized_path, chunked(4, 100, false))).await).await;
        assert_problem(st, &h, &b, 413, "payload_too_large");
        assert_eq!(b["limited_by"], "registered_size", "{b}");
        // Short of the registered size: 400.
        let (st, h, b) = read_json(s.send(put(&sized_path, chunked(2, 100, false))).await).await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        assert_eq!(
            b["detail"],
            format!(
                "the upload ended after 200 bytes, but file \"{sized}\" was registered with 300"
            )
        );
        // None of these left bytes behind, and the files have no content.
        assert_eq!(leftovers(&s), Vec::<String>::new());
        for id in [&id, &sized] {
            let (st, h, b) = s.get(&format!("/files/{id}")).await;
            assert_problem(st, &h, &b, 404, "not_found");
        }
        // Exactly the registered size is stored.
        let (st, _, b) = read_json(s.send(put(&sized_path, chunked(3, 100, false))).await).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["size"], 300, "{b}");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_upload_cut_off_half_way_leaves_no_partial_file() {
    bounded(async {
        let s = start(small_limits()).await;
        let (id, path) = register(&s, None).await;
        let (st, h, b) = read_json(s.send(put(&path, chunked(10, 100, true))).await).await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        assert!(
            b["detail"]
                .as_str()
                .unwrap()
                .starts_with("the upload was interrupted: "),
            "{b}"
        );
        assert_eq!(leftovers(&s), Vec::<String>::new());
        let (st, h, b) = s.get(&format!("/files/{id}")).await;
        assert_problem(st, &h, &b, 404, "not_found");

        // A finished upload is not replaced by a later one that fails.
        let (st, _, b) = read_json(s.send(put(&path, Body::from(vec![9u8; 100]))).await).await;
        assert_eq!(st, 200, "{b}");
        let (st, _, _) = read_json(s.send(put(&path, chunked(3, 100, true))).await).await;
        assert_eq!(st, 400);
        let resp = s
            .send(
                Request::get(format!("/files/{id}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&bytes[..], &[9u8; 100][..]);
        assert_eq!(leftovers(&s), Vec::<String>::new());
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn downloads_honour_range_and_refuse_past_the_end_with_416() {
    bounded(async {
        let s = start(small_limits()).await;
        let (id, path) = register(&s, None).await;
        let content: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let (st, _, b) = read_json(s.send(put(&path, Body::from(content.clone()))).await).await;
        assert_eq!(st, 200, "{b}");
        let get = |range: Option<&str>, named: bool| {
            let uri = if named {
                format!("/files/{id}/clip.bin")
            } else {
                format!("/files/{id}")
            };
            let mut req = Request::get(uri);
            if let Some(r) = range {
                req = req.header(header::RANGE, r);
            }
            s.send(req.body(Body::empty()).unwrap())
        };

        let resp = get(None, false).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::ACCEPT_RANGES], "bytes");
        assert_eq!(resp.headers()[header::CONTENT_LENGTH], "1000");
        for (range, start, end) in [
            ("bytes=10-19", 10usize, 19usize),
            ("bytes=990-", 990, 999),
            ("bytes=-5", 995, 999),
            ("bytes=900-5000", 900, 999),
        ] {
            for named in [false, true] {
                let resp = get(Some(range), named).await;
                assert_eq!(resp.status(), 206, "{range}");
                let h = resp.headers().clone();
                assert_eq!(
                    h[header::CONTENT_RANGE],
                    format!("bytes {start}-{end}/1000")
                );
                assert_eq!(h[header::CONTENT_LENGTH], (end - start + 1).to_string());
                assert_eq!(h[header::CONTENT_TYPE], "application/octet-stream");
                let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap();
                assert_eq!(&bytes[..], &content[start..=end], "{range}");
            }
        }
        // Several ranges: the whole file (allowed by RFC 9110).
        let resp = get(Some("bytes=0-1,5-6"), false).await;
        assert_eq!(resp.status(), 200);

        for range in ["bytes=1000-", "bytes=5000-6000"] {
            let (st, h, b) = read_json(get(Some(range), false).await).await;
            assert_problem(st, &h, &b, 416, "range_not_satisfiable");
            assert_eq!(h[header::CONTENT_RANGE], "bytes */1000");
            assert_eq!(b["size"], 1000);
            assert_eq!(
                b["detail"],
                format!("the requested range is outside file \"{id}\", which has 1000 bytes")
            );
        }
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn json_within_the_limit_still_works() {
    bounded(async {
        let s = start(small_limits()).await;
        let (st, _, b) = s
            .json(
                Method::POST,
                "/files",
                Some(json!({"files": [{"filename": "a.txt"}]})),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        s.stop().await;
    })
    .await;
}
