//! Router tier, issue 15's deletion routes with a real engine and real
//! workers: `GET/DELETE /tasks/{id}/files?role=`, `DELETE /tasks/{id}
//! [?files=true]` (409 while the task runs), `GET /files` (paged),
//! `GET /files/{id}` as a record (JSON asked) or bytes, `DELETE /files/{id}`.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request};
use common::*;
use serde_json::{json, Value};

/// Uploads `bytes` as a new file; its id and uri.
async fn upload(s: &TestServer, bytes: &'static [u8]) -> (String, String) {
    let (st, _, b) = s
        .post(
            "/files",
            json!({"files": [{"filename": "in.txt", "content_type": "text/plain"}]}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let id = b["data"][0]["id"].as_str().unwrap().to_string();
    let uri = b["data"][0]["uri"].as_str().unwrap().to_string();
    let url = b["data"][0]["upload_url"].as_str().unwrap();
    let req = Request::put(&url[url.find("/files/").unwrap()..])
        .body(Body::from(bytes))
        .unwrap();
    let (st, _, b) = read_json(s.send(req).await).await;
    assert_eq!(st, 200, "{b}");
    (id, uri)
}

/// Runs files-app's make_files with `label` (a string the task's input
/// holds: here, an uploaded file's uri) and waits for its end.
async fn make_files(s: &TestServer, label: &str) -> Value {
    let (st, _, b) = s
        .post(
            "/apps/run",
            json!({"app": "tests/files-app", "function": "make_files", "input": {"label": label}}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let task = s.wait_terminal(b["data"]["id"].as_str().unwrap()).await;
    assert_eq!(task["status"], 10, "{task}");
    task
}

fn ids(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_tasks_files_are_listed_by_role_and_deleted_with_it() {
    bounded(async {
        let s = start(Setup::new(&["files-app"])).await;
        let (input_id, input_uri) = upload(&s, b"hello").await;
        let task = make_files(&s, &input_uri).await;
        let id = task["id"].as_str().unwrap();

        // make_files echoes its label into its output: the uploaded file is
        // named on both sides.
        let (st, _, b) = s.get(&format!("/tasks/{id}/files")).await;
        assert_eq!(st, 200, "{b}");
        let all = b["data"].as_array().unwrap().clone();
        assert_eq!(all.len(), 5, "{b}");
        let inputs: Vec<&Value> = all.iter().filter(|f| f["role"] == "input").collect();
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0]["id"], input_id.as_str());
        assert_eq!(inputs[0]["uri"], input_uri.as_str());
        assert_eq!(inputs[0]["filename"], "in.txt");
        assert_eq!(inputs[0]["content_type"], "text/plain");
        assert_eq!(inputs[0]["size"], 5);
        assert!(inputs[0]["created_at"].as_str().unwrap().ends_with('Z'));
        let (st, _, outs) = s.get(&format!("/tasks/{id}/files?role=output")).await;
        assert_eq!(st, 200);
        let outs = outs["data"].clone();
        assert_eq!(outs.as_array().unwrap().len(), 4);
        assert!(outs
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["role"] == "output"));
        assert!(ids(&outs).contains(&input_id));
        let (st, h, b) = s.get(&format!("/tasks/{id}/files?role=both")).await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        assert_eq!(
            b["detail"],
            "`role` must be \"input\" or \"output\", not \"both\""
        );

        // Delete the outputs: each file once, bytes and record.
        let (st, _, b) = s
            .json(
                Method::DELETE,
                &format!("/tasks/{id}/files?role=output"),
                None,
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let mut deleted: Vec<String> = b["data"]["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_string())
            .collect();
        deleted.sort();
        assert_eq!(deleted, ids(&outs));
        assert_eq!(b["data"]["skipped"], json!([]));
        for fid in &deleted {
            assert!(!s.dir.path().join("data/files").join(fid).exists());
            let (st, h, b) = s.get(&format!("/files/{fid}")).await;
            assert_problem(st, &h, &b, 404, "not_found");
        }
        let (_, _, b) = s.get(&format!("/tasks/{id}/files")).await;
        assert_eq!(b["data"], json!([]));

        // Delete the task with its files: they are already gone, so each is
        // skipped with a reason.
        let (st, _, b) = s
            .json(Method::DELETE, &format!("/tasks/{id}?files=true"), None)
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["id"], id);
        assert_eq!(b["data"]["deleted"], true);
        assert_eq!(b["data"]["files"]["deleted"], json!([]));
        let skipped = b["data"]["files"]["skipped"].clone();
        assert_eq!(ids(&skipped), deleted, "{b}");
        assert!(skipped
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["reason"] == "not stored on this server"));
        let (st, h, b) = s.get(&format!("/tasks/{id}")).await;
        assert_problem(st, &h, &b, 404, "not_found");
        let (st, h, b) = s.json(Method::DELETE, &format!("/tasks/{id}"), None).await;
        assert_problem(st, &h, &b, 404, "not_found");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn deleting_a_task_keeps_its_files_unless_asked_and_a_running_one_is_409() {
    bounded(async {
        let s = start(Setup::new(&["files-app", "slow"])).await;
        let task = make_files(&s, "x").await;
        let id = task["id"].as_str().unwrap();
        let (_, _, files) = s.get(&format!("/tasks/{id}/files")).await;
        assert_eq!(files["data"].as_array().unwrap().len(), 3);
        // The status alone (GET /tasks/{id}/status, polled by the JS SDK).
        let (st, _, b) = s.get(&format!("/tasks/{id}/status")).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["id"], id);
        assert_eq!(b["data"]["status"], 10);
        assert_eq!(b["data"]["status_name"], "completed");
        assert_eq!(b["data"]["terminal"], true);
        assert!(b["data"]["updated_at"].as_str().unwrap().ends_with('Z'));
        let (st, _, b) = s.json(Method::DELETE, &format!("/tasks/{id}"), None).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["files"]["deleted"], json!([]));
        let (st, h, b) = s.get(&format!("/tasks/{id}/status")).await;
        assert_problem(st, &h, &b, 404, "not_found");
        for f in files["data"].as_array().unwrap() {
            let resp = s
                .send(
                    Request::get(format!("/files/{}", f["id"].as_str().unwrap()))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(resp.status(), 200, "the file outlives its task");
        }

        // A running task: 409, and the task is untouched.
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/slow", "function": "nap", "input": {"seconds": 30}}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let running = b["data"]["id"].as_str().unwrap().to_string();
        for uri in [
            format!("/tasks/{running}"),
            format!("/tasks/{running}/files"),
        ] {
            let (st, h, b) = s.json(Method::DELETE, &uri, None).await;
            assert_problem(st, &h, &b, 409, "conflict");
            assert!(
                b["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("task \"{running}\" has not ended (status ")),
                "{b}"
            );
            assert!(
                b["detail"]
                    .as_str()
                    .unwrap()
                    .ends_with("): cancel it first"),
                "{b}"
            );
            assert!(b["task_status"].as_u64().unwrap() < 10, "{b}");
        }
        // Cancelled first, it can go.
        let (st, _, _) = s.post(&format!("/tasks/{running}/cancel"), json!({})).await;
        assert_eq!(st, 200);
        s.wait_terminal(&running).await;
        let (st, _, b) = s
            .json(Method::DELETE, &format!("/tasks/{running}"), None)
            .await;
        assert_eq!(st, 200, "{b}");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn files_are_listed_paged_read_as_records_and_deleted() {
    bounded(async {
        let s = start(Setup::new(&["files-app"])).await;
        let mut made = Vec::new();
        for _ in 0..5 {
            made.push(upload(&s, b"abc").await.0);
        }
        made.sort();
        let mut seen = Vec::new();
        let mut uri = "/files?limit=2".to_string();
        loop {
            let (st, _, b) = s.get(&uri).await;
            assert_eq!(st, 200, "{b}");
            let items = b["data"]["items"].as_array().unwrap();
            assert!(items.len() <= 2);
            seen.extend(items.iter().map(|f| f["id"].as_str().unwrap().to_string()));
            match b["data"]["next_cursor"].as_str() {
                Some(c) => uri = format!("/files?limit=2&cursor={c}"),
                None => break,
            }
        }
        seen.sort();
        assert_eq!(seen, made);
        for bad in ["/files?limit=0", "/files?limit=101", "/files?cursor=nope"] {
            let (st, h, b) = s.get(bad).await;
            assert_problem(st, &h, &b, 400, "invalid_request");
        }

        // JSON asked: the record; otherwise the bytes.
        let id = &made[0];
        let req = Request::get(format!("/files/{id}"))
            .header(header::ACCEPT, "application/json")
            .body(Body::empty())
            .unwrap();
        let (st, _, b) = read_json(s.send(req).await).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["id"], id.as_str());
        assert_eq!(b["data"]["size"], 3);
        assert_eq!(b["data"]["uploaded"], true);
        assert!(b["data"]["uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/files/{id}/in.txt")));
        // A JSON Content-Type alone (clients send one on any GET) is a download.
        for ct in [None, Some("application/json")] {
            let mut req = Request::get(format!("/files/{id}"));
            if let Some(ct) = ct {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            let resp = s.send(req.body(Body::empty()).unwrap()).await;
            assert_eq!(resp.status(), 200);
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(&bytes[..], b"abc");
        }

        let (st, _, b) = s.json(Method::DELETE, &format!("/files/{id}"), None).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["id"], id.as_str());
        let (st, h, b) = s.json(Method::DELETE, &format!("/files/{id}"), None).await;
        assert_problem(st, &h, &b, 404, "not_found");
        let (st, h, b) = s.get(&format!("/files/{id}")).await;
        assert_problem(st, &h, &b, 404, "not_found");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn file_records_and_deletion_need_the_key_when_keys_are_set() {
    bounded(async {
        let mut setup = Setup::new(&["files-app"]);
        setup.server.api_keys = vec!["k1".into()];
        let s = start(setup).await;
        let req = |method: Method, uri: &str, key: bool| {
            let mut r = Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json");
            if key {
                r = r.header(header::AUTHORIZATION, "Bearer k1");
            }
            r.body(Body::from(if uri == "/files" {
                r#"{"files":[{"filename":"a.txt"}]}"#
            } else {
                ""
            }))
            .unwrap()
        };
        let (st, _, b) = read_json(s.send(req(Method::POST, "/files", true)).await).await;
        assert_eq!(st, 200, "{b}");
        let id = b["data"][0]["id"].as_str().unwrap().to_string();
        let uri = format!("/files/{id}");
        for method in [Method::GET, Method::DELETE] {
            let (st, h, b) = read_json(s.send(req(method.clone(), &uri, false)).await).await;
            assert_problem(st, &h, &b, 401, "unauthorized");
            assert_eq!(
                b["detail"],
                "missing API key: send Authorization: Bearer <key>"
            );
        }
        let (st, _, b) = read_json(s.send(req(Method::GET, &uri, true)).await).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["uploaded"], false);
        let (st, _, b) = read_json(s.send(req(Method::DELETE, &uri, true)).await).await;
        assert_eq!(st, 200, "{b}");
        s.stop().await;
    })
    .await;
}
