//! Router tier, success flows: runs, waits, streams (NDJSON and SSE),
//! cancel, files, apps, OpenAPI, ops — through the real router over a real
//! engine running the fixture apps in Python.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request};
use common::*;
use infsh_server::StreamTiming;
use serde_json::{json, Value};

fn assert_task_shape(t: &Value) {
    for key in [
        "id",
        "status",
        "app",
        "function",
        "input",
        "output",
        "error",
        "session_id",
        "created_at",
        "updated_at",
    ] {
        assert!(t.get(key).is_some(), "task lacks {key}: {t}");
    }
    assert!(t["status"].is_u64(), "status must be an integer: {t}");
    for key in ["created_at", "updated_at"] {
        let ts = t[key].as_str().unwrap();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && &ts[10..11] == "T",
            "{ts}"
        );
    }
}

#[tokio::test]
async fn run_get_and_wait() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        // The client's shape, extra keys ignored, answered at once.
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "function": "generate",
                       "input": {"prompt": "cat", "n": 2}, "metadata": {"a": 1},
                       "unknown_key": true}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        assert_eq!(b["messages"], json!([]));
        let task = &b["data"];
        assert_task_shape(task);
        assert!(task["status"].as_u64().unwrap() < 10 || task["output"].is_object());
        assert_eq!(task["app"], "tests/multi-fn");
        assert_eq!(task["function"], "generate");
        assert_eq!(task["input"], json!({"prompt": "cat", "n": 2}));
        assert!(task["logs"].is_array());
        let id = task["id"].as_str().unwrap().to_string();

        let done = s.wait_terminal(&id).await;
        assert_eq!(done["status"], 10, "{done}");
        assert_eq!(done["output"]["items"], json!(["cat-0", "cat-1"]));
        assert_eq!(done["error"], Value::Null);

        // wait in the body, the seed shape on /v1/run, `:function` in app.
        let (st, h, b) = s
            .post(
                "/v1/run",
                json!({"app": "tests/multi-fn", "function": "upscale", "input": {"value": 1.5}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        // Only a server started with --server-timing sends it.
        assert!(h.get("server-timing").is_none(), "{h:?}");
        assert_eq!(b["data"]["status"], 10);
        assert_eq!(b["data"]["output"]["value"], json!(3.0));
        // ?wait=true on a double-slash path with `ns/name:function`.
        let (st, _, b) = s
            .post(
                "//apps/run?wait=true",
                json!({"app": "tests/multi-fn:summarize", "input": {"text": "a b c d e"}}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["status"], 10);
        assert_eq!(b["data"]["function"], "summarize");
        assert_eq!(b["data"]["output"]["summary"], "a b c");
        // Default function, input null.
        let (st, _, b) = s
            .post(
                "/run?wait=true",
                json!({"app": "tests/multi-fn", "input": {"text": "hey"}}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["function"], "run");
        assert_eq!(b["data"]["output"]["echo"], "hey");
        // The per-function path.
        let (st, _, b) = s
            .post(
                "/apps/tests/multi-fn/functions/generate/run",
                json!({"input": {"prompt": "z", "n": 1}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["output"]["items"], json!(["z-0"]));
        // /v1 alias of GET.
        let (st, _, b) = s.get(&format!("/v1/tasks/{id}/")).await;
        assert_eq!(st, 200);
        assert_eq!(b["data"]["id"], id.as_str());
        s.stop().await;
    })
    .await;
}

/// `Server-Timing` on `wait` runs (`--server-timing`), here with the
/// relaxed store: every stage of the task's way through the server, in
/// order, each within the whole.
#[tokio::test]
async fn server_timing_names_every_stage_of_a_waited_run() {
    bounded(async {
        let mut setup = Setup::new(&["multi-fn"]);
        setup.server.server_timing = true;
        setup.tweak = Box::new(|config, _| config.durability = infsh_store::Durability::Relaxed);
        let s = start(setup).await;
        for _ in 0..2 {
            let (st, h, b) = s
                .post(
                    "/v1/run",
                    json!({"app": "tests/multi-fn", "function": "upscale", "input": {"value": 2.0}, "wait": true}),
                )
                .await;
            assert_eq!(st, 200, "{b}");
            assert_eq!(b["data"]["output"]["value"], json!(4.0));
            let value = h["server-timing"].to_str().unwrap();
            let stages: Vec<(&str, f64)> = value
                .split(", ")
                .map(|entry| {
                    let (name, dur) = entry.split_once(";dur=").expect(value);
                    (name, dur.parse::<f64>().expect(value))
                })
                .collect();
            let names: Vec<&str> = stages.iter().map(|(n, _)| *n).collect();
            assert_eq!(
                names,
                ["accept", "queue", "dispatch", "ipc", "python", "store", "wake", "total"],
                "{value}"
            );
            let total = stages.last().unwrap().1;
            assert!(total > 0.0, "{value}");
            for (name, ms) in &stages {
                assert!(*ms >= 0.0 && *ms <= total, "{name} out of range: {value}");
            }
        }
        // A run that is not waited for has none (its end is not known yet).
        let (st, h, b) = s
            .post(
                "/v1/run",
                json!({"app": "tests/multi-fn", "function": "upscale", "input": {"value": 1.0}}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert!(h.get("server-timing").is_none(), "{h:?}");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn failing_task_carries_a_string_error() {
    bounded(async {
        let s = start(Setup::new(&["fn-raises"])).await;
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/fn-raises", "input": {}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["status"], 11);
        assert!(b["data"]["error"]
            .as_str()
            .unwrap()
            .contains("division by zero"));
        s.stop().await;
    })
    .await;
}

fn lines(chunks: &[String]) -> Vec<Value> {
    chunks
        .concat()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

#[tokio::test]
async fn ndjson_stream_starts_with_a_snapshot_and_ends_terminal() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        let (_, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "function": "generate", "input": {"prompt": "p", "n": 3}}),
            )
            .await;
        let id = b["data"]["id"].as_str().unwrap().to_string();
        let req = Request::get(format!("/tasks/{id}/stream"))
            .header(header::ACCEPT, "application/x-ndjson")
            .header(header::ACCEPT_ENCODING, "identity")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::empty())
            .unwrap();
        let resp = s.send(req).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/x-ndjson");
        assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
        assert!(resp.headers().get(header::CONTENT_ENCODING).is_none());
        let chunks = read_chunks(resp, Duration::from_secs(60)).await;
        // One line per chunk (each flushed on its own).
        for c in &chunks {
            assert!(c.ends_with('\n') && c.matches('\n').count() == 1, "{c:?}");
        }
        let all = lines(&chunks);
        let snapshots: Vec<&Value> = all.iter().filter(|l| l["type"] != "heartbeat").collect();
        let first = snapshots.first().unwrap();
        assert_eq!(first["id"], id.as_str());
        assert_task_shape(first);
        assert!(first.get("data").is_none(), "stream lines are not enveloped");
        let last = all.last().unwrap();
        assert_eq!(last["status"], 10, "{last}");
        assert_eq!(last["output"]["items"], json!(["p-0", "p-1", "p-2"]));
        // Statuses never go backwards; only the last is terminal.
        let statuses: Vec<u64> = snapshots.iter().map(|t| t["status"].as_u64().unwrap()).collect();
        assert!(statuses.windows(2).all(|w| w[0] <= w[1]), "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s >= 10).count(), 1);

        // The stream of an ended task is its terminal snapshot, once.
        let req = Request::get(format!("/tasks/{id}/stream"))
            .body(Body::empty())
            .unwrap();
        let all = lines(&read_chunks(s.send(req).await, Duration::from_secs(10)).await);
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0]["status"], 10);
        assert_eq!(all[0]["output"]["items"], json!(["p-0", "p-1", "p-2"]));
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn stream_heartbeats_repeats_snapshots_and_sse_framing_and_cancel() {
    bounded(async {
        let mut setup = Setup::new(&["hangs"]);
        setup.timing = StreamTiming {
            heartbeat: Duration::from_millis(150),
            snapshot: Duration::from_millis(400),
            ..StreamTiming::default()
        };
        let s = start(setup).await;
        let pid_file = s.dir.path().join("child.pid");
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/hangs", "function": "async_hang",
                       "input": {"pid_file": pid_file.to_str().unwrap()}}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let id = b["data"]["id"].as_str().unwrap().to_string();

        // SSE framing on request.
        let req = Request::get(format!("/tasks/{id}/stream"))
            .header(header::ACCEPT, "text/event-stream")
            .body(Body::empty())
            .unwrap();
        let resp = s.send(req).await;
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        let mut sse = resp.into_body().into_data_stream();

        // NDJSON stream, read while the task hangs.
        let req = Request::get(format!("/tasks/{id}/stream"))
            .header(header::ACCEPT, "application/x-ndjson")
            .body(Body::empty())
            .unwrap();
        let mut nd = s.send(req).await.into_body().into_data_stream();
        use futures_util::StreamExt;
        let mut got = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_millis(1500);
        while tokio::time::Instant::now() < until {
            match tokio::time::timeout_at(until, nd.next()).await {
                Ok(Some(Ok(b))) => got.push(String::from_utf8(b.to_vec()).unwrap()),
                Ok(other) => panic!("stream ended early: {other:?} after {got:?}"),
                Err(_) => break,
            }
        }
        let seen = lines(&got);
        assert!(seen[0]["id"] == id.as_str(), "{seen:?}");
        let heartbeats = seen
            .iter()
            .filter(|l| l == &&json!({"type": "heartbeat"}))
            .count();
        let snapshots = seen.iter().filter(|l| l["id"] == id.as_str()).count();
        assert!(heartbeats >= 3, "{seen:?}");
        // The snapshot is repeated (every 400 ms here) even without changes.
        assert!(snapshots >= 3, "{seen:?}");

        // Wait until the app runs (its child's pid appears), then cancel.
        assert!(
            eventually(TEST_LIMIT, || pid_file.exists()).await,
            "the app never ran"
        );
        let (st, _, b) = s
            .json(Method::POST, &format!("/tasks/{id}/cancel"), None)
            .await;
        assert_eq!(st, 200, "{b}");
        let status = b["data"]["status"].as_u64().unwrap();
        assert!(status == 8 || status == 12, "{b}");

        // Both streams end with the CANCELLED snapshot.
        let rest = {
            let mut rest = Vec::new();
            while let Ok(Some(Ok(b))) =
                tokio::time::timeout(Duration::from_secs(30), nd.next()).await
            {
                rest.push(String::from_utf8(b.to_vec()).unwrap());
            }
            rest
        };
        let last = lines(&rest).pop().unwrap();
        assert_eq!(last["status"], 12, "{last}");

        let mut sse_text = String::new();
        while let Ok(Some(Ok(b))) = tokio::time::timeout(Duration::from_secs(30), sse.next()).await
        {
            sse_text.push_str(std::str::from_utf8(&b).unwrap());
        }
        let events: Vec<Value> = sse_text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let data = e.strip_prefix("data: ").unwrap_or_else(|| panic!("{e:?}"));
                serde_json::from_str(data).unwrap()
            })
            .collect();
        assert_eq!(events[0]["id"], id.as_str());
        assert_eq!(events.last().unwrap()["status"], 12);
        assert!(sse_text.ends_with("\n\n"));

        let (_, _, b) = s.get(&format!("/tasks/{id}")).await;
        assert_eq!(b["data"]["status"], 12);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn files_round_trip_through_an_app() {
    bounded(async {
        let s = start(Setup::new(&["files-app"])).await;
        let (st, _, b) = s
            .post(
                "/files",
                json!({"files": [{"uri": "", "filename": null, "content_type": "image/png",
                                  "path": null, "size": 5, "public": null}]}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let f = &b["data"][0];
        let id = f["id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 32);
        assert_eq!(f["filename"], "upload.png");
        assert_eq!(f["content_type"], "image/png");
        assert!(f["uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/files/{id}/upload.png")));
        let upload = f["upload_url"].as_str().unwrap();
        assert!(upload.contains("?token="));
        let path = &upload[upload.find("/files/").unwrap()..];

        // PUT without Authorization, as the client does.
        let req = Request::put(path)
            .header(header::CONTENT_TYPE, "image/png")
            .body(Body::from(&b"\x89PNG\n"[..]))
            .unwrap();
        let (st, _, b) = read_json(s.send(req).await).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["size"], 5);
        assert_eq!(b["data"]["uploaded"], true);
        assert!(b["data"].get("upload_url").is_none());

        let uri = f["uri"].as_str().unwrap();
        let named = uri[uri.find("/files/").unwrap()..].to_string();
        for uri in [
            format!("/files/{id}"),
            format!("/files/{id}/any-name.png"),
            named,
        ] {
            let resp = s
                .send(Request::get(&uri).body(Body::empty()).unwrap())
                .await;
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], "image/png");
            assert_eq!(resp.headers()[header::CONTENT_LENGTH], "5");
            let bytes = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
            assert_eq!(&bytes[..], b"\x89PNG\n");
        }
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn apps_openapi_ready_metrics_listing_sessions() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn", "validation-app"])).await;

        let (st, _, b) = s.get("/apps").await;
        assert_eq!(st, 200);
        let apps = b["data"].as_array().unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0]["id"], "tests/multi-fn");
        assert_eq!(apps[0]["namespace"], "tests");
        assert_eq!(apps[0]["name"], "multi-fn");
        assert!(apps[0]["state"].is_string());

        let (st, _, b) = s.get("/apps/tests/validation-app").await;
        assert_eq!(st, 200, "{b}");
        let d = &b["data"];
        assert_eq!(d["id"], "tests/validation-app");
        assert!(d["functions"]["run"]["input_schema"]["properties"]["steps"].is_object());
        assert!(d["functions"]["run"]["output_schema"].is_object());
        assert_eq!(
            d["functions"]["run"]["description"],
            "Echo the validated input."
        );

        // OpenAPI: the fixed routes plus every hosted function.
        let resp = s
            .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
            .await;
        let (st, _, doc) = read_json(resp).await;
        assert_eq!(st, 200);
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/apps/run"].is_object());
        let schemas = &doc["components"]["schemas"];
        for f in ["generate", "run", "summarize", "upscale"] {
            assert!(
                schemas[format!("tests.multi-fn.{f}.Input")].is_object(),
                "{f}"
            );
            assert!(
                schemas[format!("tests.multi-fn.{f}.Output")].is_object(),
                "{f}"
            );
            let op = &doc["paths"][format!("/apps/tests/multi-fn/functions/{f}/run")]["post"];
            assert_eq!(
                op["requestBody"]["content"]["application/json"]["schema"]["properties"]["input"]
                    ["$ref"],
                format!("#/components/schemas/tests.multi-fn.{f}.Input")
            );
        }
        // validation-app's nested model was hoisted out of $defs.
        assert!(schemas["tests.validation-app.run.Input.Options"].is_object());
        let text = serde_json::to_string(&doc).unwrap();
        assert!(!text.contains("#/$defs/"));

        let (st, _, b) = s.get("/ready").await;
        assert_eq!(st, 200);
        let ids: Vec<&str> = b["data"]["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["tests/multi-fn", "tests/validation-app"]);
        assert!(["ready", "degraded"].contains(&b["data"]["status"].as_str().unwrap()));

        // Tasks to list.
        let mut ids = Vec::new();
        for i in 0..3 {
            let (st, _, b) = s
                .post(
                    "/apps/run?wait=true",
                    json!({"app": "tests/multi-fn", "input": {"text": format!("t{i}")}}),
                )
                .await;
            assert_eq!(st, 200, "{b}");
            ids.push(b["data"]["id"].as_str().unwrap().to_string());
        }
        let (st, _, b) = s
            .post(
                "/apps/run?wait=true",
                json!({"app": "tests/validation-app", "input": {"prompt": "p"}}),
            )
            .await;
        assert_eq!(st, 200, "{b}");

        let (st, _, b) = s.get("/tasks?limit=2&app=tests/multi-fn").await;
        assert_eq!(st, 200, "{b}");
        let page = &b["data"];
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        assert_eq!(page["items"][0]["id"], ids[2].as_str(), "newest first");
        assert!(page["items"][0].get("logs").is_none());
        let cursor = page["next_cursor"]
            .as_str()
            .expect("a next page")
            .to_string();
        let (st, _, b) = s
            .get(&format!(
                "/tasks?limit=2&app=tests/multi-fn&cursor={cursor}"
            ))
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["items"].as_array().unwrap().len(), 1);
        assert_eq!(b["data"]["items"][0]["id"], ids[0].as_str());
        assert_eq!(b["data"]["next_cursor"], Value::Null);
        let (_, _, b) = s.get("/tasks?status=completed&limit=100").await;
        assert_eq!(b["data"]["items"].as_array().unwrap().len(), 4);
        let (_, _, b) = s.get("/tasks?status=11").await;
        assert_eq!(b["data"]["items"].as_array().unwrap().len(), 0);

        // Metrics: Prometheus text that parses.
        let resp = s
            .send(Request::get("/metrics").body(Body::empty()).unwrap())
            .await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let text = read_text(resp).await;
        let mut submitted = None;
        for line in text.lines().filter(|l| !l.is_empty()) {
            if line.starts_with('#') {
                assert!(line.starts_with("# HELP ") || line.starts_with("# TYPE "));
                continue;
            }
            let (name, value) = line.rsplit_once(' ').unwrap();
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            if name == "infsh_tasks_submitted_total" {
                submitted = Some(v);
            }
        }
        assert!(submitted.unwrap() >= 4.0, "{text}");

        // Ending a session never opened: 404 (router_sessions.rs has the rest).
        let (st, h, b) = s.json(Method::DELETE, "/sessions/abc", None).await;
        assert_problem(st, &h, &b, 404, "SESSION_NOT_FOUND");
        s.stop().await;
    })
    .await;
}

/// `?status=` accepts what the CLI accepts (one `TaskStatus` table): the
/// client's `canceled` finds a cancelled task.
#[tokio::test]
async fn list_tasks_by_status_accepts_the_client_spellings() {
    bounded(async {
        let s = start(Setup::new(&["hangs"])).await;
        let (st, _, b) = s
            .post(
                "/apps/run?wait=true",
                json!({"app": "tests/hangs", "function": "ok", "input": {}}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["status"], 10, "{b}");
        let completed = b["data"]["id"].as_str().unwrap().to_string();
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/hangs", "function": "async_hang", "input": {}}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let cancelled = b["data"]["id"].as_str().unwrap().to_string();
        let (st, _, b) = s
            .json(Method::POST, &format!("/tasks/{cancelled}/cancel"), None)
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(s.wait_terminal(&cancelled).await["status"], 12);

        let ids = |b: &Value| -> Vec<String> {
            b["data"]["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string())
                .collect()
        };
        for spelling in ["canceled", "CANCELED", "cancelled", "Cancelled", "12"] {
            let (st, _, b) = s.get(&format!("/tasks?status={spelling}")).await;
            assert_eq!(st, 200, "{spelling}: {b}");
            assert_eq!(ids(&b), [cancelled.as_str()], "{spelling}");
        }
        for spelling in ["completed", "10"] {
            let (st, _, b) = s.get(&format!("/tasks?status={spelling}")).await;
            assert_eq!(st, 200, "{spelling}: {b}");
            assert_eq!(ids(&b), [completed.as_str()], "{spelling}");
        }
        for spelling in [
            "canceling",
            "setup",
            "settingup",
            "setting-up",
            "SETTING_UP",
        ] {
            let (st, _, b) = s.get(&format!("/tasks?status={spelling}")).await;
            assert_eq!(st, 200, "{spelling}: {b}");
            assert!(ids(&b).is_empty(), "{spelling}: {b}");
        }
        s.stop().await;
    })
    .await;
}
