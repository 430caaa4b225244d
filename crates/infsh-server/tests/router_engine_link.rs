//! The remote-engine link of an API node (routes/engine_link.rs) at router
//! level: a REAL engine with SQLite and no apps of its own, this test
//! playing the remote engine over `/v1/engine/...` (the real `infsh engine`
//! process is exercised end to end in crates/infsh-cli/tests). Leases are
//! a fraction of a second so expiry is observed quickly.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use common::*;
use infsh_engine::FleetOptions;
use serde_json::{json, Value};

const CLIENT_KEY: &str = "client-key-1";
const ENGINE_KEY: &str = "engine-key-1";

async fn fleet_server(lease: Duration, max_attempts: u32) -> TestServer {
    let mut setup = Setup::new(&[]);
    setup.server.api_keys = vec![CLIENT_KEY.into()];
    setup.server.engine_keys = vec![ENGINE_KEY.into()];
    let server = start(setup).await;
    server
        .engine
        .enable_fleet(FleetOptions::new(lease, max_attempts))
        .await
        .unwrap();
    server
}

async fn call(
    server: &TestServer,
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        b = b.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&v).unwrap())
        }
        None => Body::empty(),
    };
    let resp = server.send(b.body(body).unwrap()).await;
    if resp.status() == StatusCode::NO_CONTENT {
        return (resp.status(), resp.headers().clone(), Value::Null);
    }
    read_json(resp).await
}

async fn engine_post(
    server: &TestServer,
    uri: &str,
    body: Value,
) -> (StatusCode, HeaderMap, Value) {
    call(server, Method::POST, uri, Some(ENGINE_KEY), Some(body)).await
}

async fn client_get(server: &TestServer, uri: &str) -> Value {
    let (status, _, body) = call(server, Method::GET, uri, Some(CLIENT_KEY), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn registration(name: &str, input_schema: Value) -> Value {
    json!({
        "name": name,
        "version": "0.1.0",
        "slots": [{"name": format!("{name}-cpu-0")}],
        "apps": [{
            "app": "tests/remote",
            "hash": "abc123",
            "ready": {
                "protocol": 1, "pid": 1, "python": "3.11.0", "app_class": "App",
                "setup_schema": {"type": "object"},
                "functions": [{
                    "name": "run", "streaming": false, "is_async": false,
                    "accepts_metadata": false,
                    "entry": {"input_schema": input_schema, "output_schema": {"type": "object"}}
                }]
            }
        }]
    })
}

fn text_schema() -> Value {
    json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
}

async fn register(server: &TestServer, name: &str) {
    let (status, _, body) = engine_post(
        server,
        "/v1/engine/register",
        registration(name, text_schema()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["apps"][0]["app"], "tests/remote");
}

async fn run(server: &TestServer) -> String {
    let (status, _, body) = call(
        server,
        Method::POST,
        "/apps/run",
        Some(CLIENT_KEY),
        Some(json!({"app": "tests/remote", "input": {"text": "hi"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], 2, "queued for engines: {body}");
    body["data"]["id"].as_str().unwrap().to_string()
}

async fn claim(server: &TestServer, engine: &str, max: usize) -> Value {
    let (status, _, body) = engine_post(
        server,
        "/v1/engine/claim",
        json!({"engine": engine, "max": max, "slots": [format!("{engine}-cpu-0")]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn task_status(server: &TestServer, id: &str) -> (u64, Value) {
    let body = client_get(server, &format!("/tasks/{id}")).await;
    (
        body["data"]["status"].as_u64().unwrap(),
        body["data"].clone(),
    )
}

#[tokio::test]
async fn engine_routes_take_engine_keys_only_and_client_routes_refuse_them() {
    bounded(async {
        let server = fleet_server(Duration::from_secs(30), 2).await;
        let reg = registration("e1", text_schema());
        let (status, headers, body) = call(
            &server,
            Method::POST,
            "/v1/engine/register",
            Some(CLIENT_KEY),
            Some(reg.clone()),
        )
        .await;
        assert_problem(status, &headers, &body, 401, "unauthorized");
        assert_eq!(body["detail"], "invalid engine key");
        let (status, headers, body) = call(
            &server,
            Method::POST,
            "/v1/engine/register",
            None,
            Some(reg),
        )
        .await;
        assert_problem(status, &headers, &body, 401, "unauthorized");
        assert_eq!(
            body["detail"],
            "missing engine key: send Authorization: Bearer <engine key>"
        );
        let (status, headers, body) =
            call(&server, Method::GET, "/tasks", Some(ENGINE_KEY), None).await;
        assert_problem(status, &headers, &body, 401, "unauthorized");
        assert_eq!(body["detail"], "invalid API key");
        server.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_run_of_an_engine_app_is_claimed_reported_waited_and_late_reports_are_refused() {
    bounded(async {
        let server = fleet_server(Duration::from_secs(30), 2).await;
        register(&server, "e1").await;
        // Validated against the schema the engine registered.
        let (status, headers, body) = call(
            &server,
            Method::POST,
            "/apps/run",
            Some(CLIENT_KEY),
            Some(json!({"app": "tests/remote", "input": {"text": 5}})),
        )
        .await;
        assert_problem(status, &headers, &body, 422, "validation_error");
        let id = run(&server).await;

        let answer = claim(&server, "e1", 4).await;
        let tasks = answer["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 1, "{answer}");
        assert_eq!(tasks[0]["task"]["id"], id.as_str());
        assert_eq!(tasks[0]["attempt"], 1);
        assert_eq!(tasks[0]["task"]["input"], json!({"text": "hi"}));
        assert_eq!(task_status(&server, &id).await.0, 3, "DISPATCHED");

        // A client waiting on the task sees the engine's reports.
        let waiter = {
            let router = server.router.clone();
            let uri = format!("/tasks/{id}");
            tokio::spawn(async move {
                use tower::ServiceExt;
                loop {
                    let req = Request::get(&uri)
                        .header(header::AUTHORIZATION, format!("Bearer {CLIENT_KEY}"))
                        .body(Body::empty())
                        .unwrap();
                    let (_, _, body) = read_json(router.clone().oneshot(req).await.unwrap()).await;
                    if body["data"]["status"].as_u64().unwrap() >= 10 {
                        return body["data"].clone();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let report = format!("/v1/engine/tasks/{id}/report");
        let (status, _, body) = engine_post(
            &server,
            &report,
            json!({"engine": "e1", "status": 7, "logs": [{"log_type": 4, "content": "working\n", "at_ms": 1}]}),
        )
        .await;
        assert_eq!(status, 204, "{body}");
        let (code, task) = task_status(&server, &id).await;
        assert_eq!(code, 7, "RUNNING: {task}");
        let (status, _, body) = engine_post(
            &server,
            &report,
            json!({"engine": "e1", "status": 10, "output": {"text": "HI"}}),
        )
        .await;
        assert_eq!(status, 204, "{body}");
        let done = within(Duration::from_secs(10), waiter).await.unwrap();
        assert_eq!(done["status"], 10);
        assert_eq!(done["output"], json!({"text": "HI"}));
        let (_, task) = task_status(&server, &id).await;
        assert_eq!(task["output"], json!({"text": "HI"}));

        // The first terminal state wins: a second end is a 409 problem.
        let (status, headers, body) = engine_post(
            &server,
            &report,
            json!({"engine": "e1", "status": 11, "error": "late"}),
        )
        .await;
        assert_problem(status, &headers, &body, 409, "not_leased");
        assert_eq!(
            body["detail"],
            format!("task \"{id}\" is not leased by engine \"e1\" (it ended completed)")
        );
        assert_eq!(body["task_status"], 10);
        server.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_lost_engines_task_runs_again_elsewhere_then_fails_engine_lost() {
    bounded(async {
        let server = fleet_server(Duration::from_millis(400), 2).await;
        register(&server, "e1").await;
        register(&server, "e2").await;
        let id = run(&server).await;
        let first = claim(&server, "e1", 1).await;
        assert_eq!(first["tasks"][0]["task"]["id"], id.as_str());
        // e1 goes silent; e2 keeps claiming (a claim is its heartbeat).
        let second = loop {
            let answer = claim(&server, "e2", 1).await;
            if let Some(t) = answer["tasks"].as_array().and_then(|t| t.first()) {
                break t.clone();
            }
        };
        assert_eq!(second["task"]["id"], id.as_str());
        assert_eq!(second["attempt"], 2);
        // e1 comes back: its report is refused, naming the new holder.
        let (status, headers, body) = engine_post(
            &server,
            &format!("/v1/engine/tasks/{id}/report"),
            json!({"engine": "e1", "status": 10, "output": {}}),
        )
        .await;
        assert_problem(status, &headers, &body, 409, "not_leased");
        assert_eq!(body["holder"], "e2");
        // e2 dies too: attempt 2 of 2, FAILED naming it.
        let failed = server.wait_terminal_with_key(&id).await;
        assert_eq!(failed["status"], 11);
        assert_eq!(failed["error"], "engine lost: e2");
        server.stop().await;
    })
    .await
}

#[tokio::test]
async fn an_app_whose_schema_does_not_compile_is_refused_at_registration() {
    bounded(async {
        let server = fleet_server(Duration::from_secs(30), 2).await;
        let (status, headers, body) = engine_post(
            &server,
            "/v1/engine/register",
            registration("e1", json!({"type": 12})),
        )
        .await;
        assert_problem(status, &headers, &body, 400, "invalid_schema");
        assert_eq!(body["app"], "tests/remote");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("app \"tests/remote\": function \"run\" is refused: its input schema does not compile: "),
            "{detail}"
        );
        // Nothing was recorded: a run of the app is an unknown app.
        let (status, _, _) = call(
            &server,
            Method::POST,
            "/apps/run",
            Some(CLIENT_KEY),
            Some(json!({"app": "tests/remote", "input": {"text": "hi"}})),
        )
        .await;
        assert_eq!(status, 404);
        server.stop().await;
    })
    .await
}

#[tokio::test]
async fn cancel_ends_a_queued_remote_task_and_reaches_the_engine_of_a_claimed_one() {
    bounded(async {
        let server = fleet_server(Duration::from_secs(30), 2).await;
        register(&server, "e1").await;
        let queued = run(&server).await;
        let (status, _, body) = call(
            &server,
            Method::POST,
            &format!("/tasks/{queued}/cancel"),
            Some(CLIENT_KEY),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(task_status(&server, &queued).await.0, 12, "CANCELLED");

        let claimed = run(&server).await;
        claim(&server, "e1", 1).await;
        let (status, _, body) = call(
            &server,
            Method::POST,
            &format!("/tasks/{claimed}/cancel"),
            Some(CLIENT_KEY),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["status"], 8, "CANCELLING: {body}");
        let (status, _, answer) = engine_post(
            &server,
            "/v1/engine/heartbeat",
            json!({"engine": "e1", "holding": [claimed]}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["cancel"], json!([claimed]));
        let (status, _, _) = engine_post(
            &server,
            &format!("/v1/engine/tasks/{claimed}/report"),
            json!({"engine": "e1", "status": 12}),
        )
        .await;
        assert_eq!(status, 204);
        assert_eq!(task_status(&server, &claimed).await.0, 12);
        // An unknown engine must register first.
        let (status, headers, body) =
            engine_post(&server, "/v1/engine/heartbeat", json!({"engine": "ghost"})).await;
        assert_problem(status, &headers, &body, 404, "not_found");
        assert_eq!(body["detail"], "no such engine \"ghost\": register first");
        server.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_stream_of_a_remote_task_carries_the_engines_reports_to_the_end() {
    bounded(async {
        let server = fleet_server(Duration::from_secs(30), 2).await;
        register(&server, "e1").await;
        let id = run(&server).await;
        let req = Request::get(format!("/tasks/{id}/stream"))
            .header(header::AUTHORIZATION, format!("Bearer {CLIENT_KEY}"))
            .body(Body::empty())
            .unwrap();
        let resp = server.send(req).await;
        assert_eq!(resp.status(), 200);
        let reader = tokio::spawn(read_chunks(resp, Duration::from_secs(30)));
        claim(&server, "e1", 1).await;
        let report = format!("/v1/engine/tasks/{id}/report");
        for body in [
            json!({"engine": "e1", "status": 7}),
            json!({"engine": "e1", "output": {"text": "H"}}),
            json!({"engine": "e1", "status": 10, "output": {"text": "HI"}}),
        ] {
            let (status, _, answer) = engine_post(&server, &report, body).await;
            assert_eq!(status, 204, "{answer}");
        }
        let chunks = reader.await.unwrap();
        let lines: Vec<Value> = chunks
            .iter()
            .flat_map(|c| c.lines())
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|l: &Value| l["type"] != "heartbeat")
            .collect();
        let last = lines.last().unwrap();
        assert_eq!(last["id"], id.as_str());
        assert_eq!(last["status"], 10, "{last}");
        assert_eq!(last["output"], json!({"text": "HI"}));
        let statuses: Vec<u64> = lines
            .iter()
            .map(|l| l["status"].as_u64().unwrap())
            .collect();
        assert!(statuses.windows(2).all(|w| w[0] <= w[1]), "{statuses:?}");
        assert_eq!(statuses.first(), Some(&2), "it starts QUEUED: {statuses:?}");
        server.stop().await;
    })
    .await
}

/// `POST /engine/files`: an engine uploads an output file's raw bytes; the
/// answer's `uri` is this node's `/files/{id}`, which a client downloads
/// with the name and type given. Engine keys only; an unknown query member
/// is a 400.
#[tokio::test]
async fn an_engine_uploads_an_output_file_and_a_client_downloads_it_from_the_node() {
    bounded(async {
        let server = fleet_server(Duration::from_secs(30), 2).await;
        let upload = |key: &'static str, query: &'static str| {
            Request::builder()
                .method(Method::POST)
                .uri(format!("/v1/engine/files?{query}"))
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(Body::from(&b"one\ntwo\n"[..]))
                .unwrap()
        };
        let (status, _, file) = read_json(
            server
                .send(upload(
                    ENGINE_KEY,
                    "filename=one.txt&content_type=text/plain",
                ))
                .await,
        )
        .await;
        assert_eq!(status, 200, "{file}");
        assert_eq!(file["filename"], "one.txt");
        assert_eq!(file["content_type"], "text/plain");
        assert_eq!(file["size"], 8);
        let uri = file["uri"].as_str().unwrap();
        let id = file["id"].as_str().unwrap();
        // Unsigned: the engine reports it in the task's output, which is
        // signed each time it is shown (router_file_access.rs).
        assert!(uri.ends_with(&format!("/files/{id}")), "{uri}");

        // Private on a server with keys: a client reads it with its key.
        let download = |key: Option<&str>| {
            let mut b = Request::builder().uri(format!("/files/{id}"));
            if let Some(key) = key {
                b = b.header(header::AUTHORIZATION, format!("Bearer {key}"));
            }
            b.body(Body::empty()).unwrap()
        };
        assert_eq!(server.send(download(None)).await.status(), 401);
        let resp = server.send(download(Some(CLIENT_KEY))).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/plain");
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"one\ntwo\n");

        let (status, headers, body) =
            read_json(server.send(upload(CLIENT_KEY, "filename=x")).await).await;
        assert_problem(status, &headers, &body, 401, "unauthorized");
        assert_eq!(body["detail"], "invalid engine key");
        let (status, headers, body) =
            read_json(server.send(upload(ENGINE_KEY, "name=x")).await).await;
        assert_problem(status, &headers, &body, 400, "invalid_request");
        server.stop().await;
    })
    .await
}

/// `GET /engine/versions/{ns}/{name}/{hash}/package` (routes/engine_versions.rs):
/// engine keys only; an unknown version (or a hash that is not one) is a
/// 404 problem about the version. The package itself is served end to end
/// (crates/infsh-cli/tests/fleet_versions.rs), where versions are built.
#[tokio::test]
async fn the_version_package_route_takes_engine_keys_and_names_an_unknown_version() {
    bounded(async {
        let server = fleet_server(Duration::from_secs(30), 2).await;
        let hash = "ab".repeat(32);
        let uri = format!("/v1/engine/versions/tests/remote/{hash}/package");
        let (status, headers, body) =
            call(&server, Method::GET, &uri, Some(CLIENT_KEY), None).await;
        assert_problem(status, &headers, &body, 401, "unauthorized");
        assert_eq!(body["detail"], "invalid engine key");
        let (status, headers, body) =
            call(&server, Method::GET, &uri, Some(ENGINE_KEY), None).await;
        assert_problem(status, &headers, &body, 404, "not_found");
        assert_eq!(body["resource"], "version");
        assert_eq!(
            body["detail"],
            format!(
                "app \"tests/remote\" has no version \"{hash}\" (list them: GET /apps/tests/remote/versions)"
            )
        );
        let (status, headers, body) = call(
            &server,
            Method::GET,
            "/v1/engine/versions/tests/remote/not-hex/package",
            Some(ENGINE_KEY),
            None,
        )
        .await;
        assert_problem(status, &headers, &body, 404, "not_found");
        assert_eq!(
            body["detail"],
            "app \"tests/remote\" has no version \"not-hex\" (list them: GET /apps/tests/remote/versions)"
        );
        server.stop().await;
    })
    .await
}
