//! Sessions over the router with a real engine and real Python workers:
//! `"session": "new"` opens one (its id in the task), later runs naming it
//! reach the same worker's memory (tests/fixtures/apps/counter), the
//! session routes, and every refusal's status and problem body.

mod common;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use common::*;
use infsh_engine::SessionStatus;
use serde_json::{json, Value};

/// `POST /apps/run?wait=true` of counter's `run`, with these extra keys.
async fn run(s: &TestServer, extra: Value) -> (StatusCode, HeaderMap, Value) {
    let mut body = json!({"app": "tests/counter", "input": {}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    s.post("/apps/run?wait=true", body).await
}

async fn delete(s: &TestServer, uri: &str) -> (u16, Vec<u8>) {
    let resp = s
        .send(Request::delete(uri).body(Body::empty()).unwrap())
        .await;
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

#[tokio::test]
async fn a_session_keeps_its_workers_state_and_ends_with_delete() {
    bounded(async {
        let s = start(Setup::new(&["counter"])).await;
        let (st, _, b) = run(&s, json!({"session": "new", "session_timeout": 30})).await;
        assert_eq!(st, 200, "{b}");
        let first = &b["data"];
        let id = first["session_id"].as_str().unwrap().to_string();
        assert!(id.starts_with("sess_"), "{id}");
        assert_eq!(first["output"]["count"], 1, "{b}");
        let task_id = first["id"].clone();
        for n in 2..=4 {
            let (st, _, b) = run(&s, json!({"session": id})).await;
            assert_eq!(st, 200, "{b}");
            assert_eq!(b["data"]["output"]["count"], n, "state kept: {b}");
            assert_eq!(b["data"]["session_id"], id.as_str());
        }

        // `GET /workers` shows the replica's lease.
        let (_, _, b) = s.get("/workers").await;
        assert_eq!(b["data"][0]["session"], id.as_str(), "{b}");

        let (st, _, b) = s.get("/sessions").await;
        assert_eq!(st, 200, "{b}");
        let list = b["data"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{b}");
        assert_eq!(list[0]["id"], id.as_str());

        let (st, _, b) = s.get(&format!("/sessions/{id}")).await;
        assert_eq!(st, 200, "{b}");
        let d = &b["data"];
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "id",
            "app_id",
            "app_version_id",
            "worker_id",
            "status",
            "reason",
            "created_at",
            "updated_at",
            "expires_at",
            "ended_at",
            "task_id",
            "call_count",
            "last_call_at",
            "idle_timeout",
        ];
        want.sort();
        let mut keys = keys.clone();
        keys.sort();
        assert_eq!(keys, want);
        assert_eq!(d["app_id"], "tests/counter");
        assert_eq!(d["app_version_id"], Value::Null);
        assert_eq!(d["worker_id"], "tests/counter#0");
        assert_eq!(d["status"], "active");
        assert_eq!(d["reason"], Value::Null);
        assert_eq!(d["ended_at"], Value::Null);
        assert_eq!(d["task_id"], task_id);
        assert_eq!(d["call_count"], 4);
        assert_eq!(d["idle_timeout"], 30);
        assert!(d["expires_at"].as_str().unwrap().ends_with('Z'));
        assert!(d["last_call_at"].is_string());

        let (st, _, b) = s
            .json(Method::POST, &format!("/sessions/{id}/keepalive"), None)
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["status"], "active");
        assert!(b["data"]["expires_at"].as_str().unwrap() >= d["expires_at"].as_str().unwrap());

        let (st, body) = delete(&s, &format!("/sessions/{id}")).await;
        assert_eq!((st, body.len()), (204, 0));
        let (st, h, b) = run(&s, json!({"session": id})).await;
        assert_problem(st, &h, &b, 410, "SESSION_ENDED");
        assert_eq!(
            b["detail"],
            format!("session \"{id}\" ended: ended by DELETE /sessions/{{id}}")
        );
        assert_eq!(b["session_id"], id.as_str());
        assert_eq!(b["reason"], "ended by DELETE /sessions/{id}");
        let (st, h, b) = s
            .json(Method::POST, &format!("/sessions/{id}/keepalive"), None)
            .await;
        assert_problem(st, &h, &b, 410, "SESSION_ENDED");
        let (st, _, b) = s.get(&format!("/sessions/{id}")).await;
        assert_eq!(st, 200);
        assert_eq!(b["data"]["status"], "ended");
        assert!(b["data"]["ended_at"].is_string());
        let (st, _, b) = s.get("/sessions").await;
        assert_eq!(st, 200);
        assert_eq!(b["data"], json!([]), "only active ones are listed");
        let (st, body) = delete(&s, &format!("/sessions/{id}")).await;
        assert_eq!((st, body.len()), (204, 0), "ending it again is no error");

        // The replica is free again: a run outside sessions uses it.
        let (st, _, b) = run(&s, json!({})).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["output"]["count"], 5, "the same worker, released");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn session_refusals_have_their_platform_codes() {
    bounded(async {
        let s = start(Setup::new(&["counter", "multi-fn"])).await;
        let missing = "sess_0123";
        let not_found = format!(
            "unknown session \"{missing}\" (sessions live in the server's memory: none survives a restart)"
        );
        let (st, h, b) = run(&s, json!({"session": missing})).await;
        assert_problem(st, &h, &b, 404, "SESSION_NOT_FOUND");
        assert_eq!(b["detail"], not_found.as_str());
        assert_eq!(b["resource"], "session");
        assert_eq!(b["session_id"], missing);
        for (method, uri) in [
            (Method::GET, format!("/sessions/{missing}")),
            (Method::POST, format!("/sessions/{missing}/keepalive")),
            (Method::DELETE, format!("/sessions/{missing}")),
        ] {
            let (st, h, b) = s.json(method.clone(), &uri, None).await;
            assert_problem(st, &h, &b, 404, "SESSION_NOT_FOUND");
            assert_eq!(b["detail"], not_found.as_str(), "{method} {uri}");
        }

        for (extra, detail) in [
            (
                json!({"session": "new", "session_timeout": 0}),
                "`session_timeout` must be from 1 to 3600 seconds, got 0",
            ),
            (
                json!({"session": "new", "session_timeout": 3601}),
                "`session_timeout` must be from 1 to 3600 seconds, got 3601",
            ),
            (
                json!({"session_timeout": 10}),
                "`session_timeout` is only valid with `\"session\": \"new\"`",
            ),
        ] {
            let (st, h, b) = run(&s, extra.clone()).await;
            assert_problem(st, &h, &b, 400, "invalid_request");
            assert_eq!(b["detail"], detail, "{extra}");
        }

        let (st, _, b) = run(&s, json!({"session": "new", "session_timeout": 1})).await;
        assert_eq!(st, 200, "{b}");
        let id = b["data"]["session_id"].as_str().unwrap().to_string();
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "input": {"text": "x"}, "session": id}),
            )
            .await;
        assert_problem(st, &h, &b, 400, "APP_MISMATCH");
        assert_eq!(
            b["detail"],
            format!("session \"{id}\" belongs to app \"tests/counter\", not \"tests/multi-fn\"")
        );
        assert_eq!(b["session_app"], "tests/counter");
        assert_eq!(b["app"], "tests/multi-fn");

        // Idle past its 1 s: expired, and its calls are refused.
        // (Bounded by the test's own limit.)
        while !s
            .engine
            .session(&id)
            .await
            .is_ok_and(|v| v.status == SessionStatus::Expired)
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let (st, h, b) = run(&s, json!({"session": id})).await;
        assert_problem(st, &h, &b, 410, "SESSION_EXPIRED");
        assert_eq!(
            b["detail"],
            format!("session \"{id}\" expired: idle for more than its timeout of 1s")
        );
        assert_eq!(b["idle_timeout"], 1);
        let (st, _, b) = s.get(&format!("/sessions/{id}")).await;
        assert_eq!(st, 200);
        assert_eq!(b["data"]["status"], "expired");
        assert_eq!(b["data"]["reason"], "idle for more than its timeout of 1s");
        s.stop().await;
    })
    .await;
}

/// A remote engine's registration hosting `tests/remote` and `tests/other`.
fn remote_registration() -> Value {
    let app = |id: &str| {
        json!({
            "app": id, "hash": "abc123",
            "ready": {
                "protocol": 1, "pid": 1, "python": "3.11.0", "app_class": "App",
                "setup_schema": {"type": "object"},
                "functions": [{
                    "name": "run", "streaming": false, "is_async": false,
                    "accepts_metadata": false,
                    "entry": {"input_schema": {"type": "object"}, "output_schema": {"type": "object"}}
                }]
            }
        })
    };
    json!({
        "name": "box", "version": "0.1.0", "slots": [{"name": "box-cpu-0"}],
        "apps": [app("tests/remote"), app("tests/other")]
    })
}

/// The engine's side of the link (this test plays the remote engine).
async fn engine_post(s: &TestServer, uri: &str, body: Value) -> Value {
    let req = Request::post(uri)
        .header(header::AUTHORIZATION, "Bearer engine-key-1")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = s.send(req).await;
    if resp.status() == StatusCode::NO_CONTENT {
        return Value::Null;
    }
    let (st, _, b) = read_json(resp).await;
    assert_eq!(st, 200, "{uri}: {b}");
    b
}

/// Claims (as engine "box", telling of `sessions`) until the answer has
/// news; returns it.
async fn claim(s: &TestServer, holding: &[&str], sessions: Value) -> Value {
    engine_post(
        s,
        "/v1/engine/claim",
        json!({"engine": "box", "max": 4, "holding": holding, "sessions": sessions}),
    )
    .await
}

async fn done(s: &TestServer, task: &str) {
    engine_post(
        s,
        &format!("/v1/engine/tasks/{task}/report"),
        json!({"engine": "box", "status": 10, "output": {}}),
    )
    .await;
}

/// A session of an app only a remote engine hosts: its record and lease
/// are in the fleet store; the engine that claims its first call holds it,
/// names its replica in its claims (`GET /engines`, `GET /sessions/{id}`),
/// hears in a claim's answer that it was ended; expiry, refusals, and an
/// engine that registers again (it restarted) ending its sessions.
#[tokio::test]
async fn a_session_of_a_remote_engines_app_lives_in_the_fleet_store() {
    bounded(async {
        let mut setup = Setup::new(&[]);
        setup.server.engine_keys = vec!["engine-key-1".into()];
        let s = start(setup).await;
        s.engine
            .enable_fleet(infsh_engine::FleetOptions::new(
                std::time::Duration::from_secs(10),
                1,
            ))
            .await
            .unwrap();
        engine_post(&s, "/v1/engine/register", remote_registration()).await;

        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/remote", "input": {}, "session": "new", "session_timeout": 600}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let id = b["data"]["session_id"].as_str().unwrap().to_string();
        assert!(id.starts_with("sess_"), "{b}");
        let first = b["data"]["id"].as_str().unwrap().to_string();
        let (_, _, b) = s.get(&format!("/sessions/{id}")).await;
        assert_eq!(b["data"]["status"], "active", "{b}");
        assert_eq!(b["data"]["app_id"], "tests/remote");
        assert_eq!(b["data"]["task_id"], first.as_str());
        assert_eq!(b["data"]["worker_id"], Value::Null, "no engine holds it yet");

        // The engine claims its first call (the session's id travels with it).
        let answer = claim(&s, &[], json!([])).await;
        assert_eq!(answer["tasks"][0]["task"]["id"], first.as_str(), "{answer}");
        assert_eq!(answer["tasks"][0]["task"]["session_id"], id.as_str());
        done(&s, &first).await;

        // Refusals of a call, before anything is queued.
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/other", "input": {}, "session": id}),
            )
            .await;
        assert_problem(st, &h, &b, 400, "APP_MISMATCH");
        assert_eq!(
            b["detail"],
            format!("session \"{id}\" belongs to app \"tests/remote\", not \"tests/other\"")
        );
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/remote", "input": {}, "session": "sess_nope"}),
            )
            .await;
        assert_problem(st, &h, &b, 404, "SESSION_NOT_FOUND");

        // Its second call: the engine names the replica it leased.
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/remote", "input": {}, "session": id}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let second = b["data"]["id"].as_str().unwrap().to_string();
        let answer = claim(&s, &[], json!([{"id": id, "worker": "tests/remote#0"}])).await;
        assert_eq!(answer["tasks"][0]["task"]["id"], second.as_str(), "{answer}");
        done(&s, &second).await;
        let (_, _, b) = s.get(&format!("/sessions/{id}")).await;
        assert_eq!(b["data"]["worker_id"], "tests/remote#0@box", "{b}");
        assert_eq!(b["data"]["call_count"], 2);
        let (_, _, b) = s.get("/engines").await;
        let remote = b["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "box")
            .unwrap()
            .clone();
        assert_eq!(
            remote["remote"]["sessions"],
            json!([{"id": id, "app": "tests/remote", "worker": "tests/remote#0"}])
        );
        let (st, _, b) = s.post(&format!("/sessions/{id}/keepalive"), json!({})).await;
        assert_eq!((st.as_u16(), &b["data"]["status"]), (200, &json!("active")));

        // Ended through the API: 204, the engine is told to let it go, and
        // its next call is 410 with why.
        let (st, _) = delete(&s, &format!("/sessions/{id}")).await;
        assert_eq!(st, 204);
        let answer = claim(&s, &[], json!([{"id": id, "worker": "tests/remote#0"}])).await;
        assert_eq!(answer["end_sessions"], json!([id]), "{answer}");
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/remote", "input": {}, "session": id}),
            )
            .await;
        assert_problem(st, &h, &b, 410, "SESSION_ENDED");
        assert_eq!(b["reason"], "ended by DELETE /sessions/{id}");

        // Idle past its timeout (its first call done): expired, 410.
        let (_, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/remote", "input": {}, "session": "new", "session_timeout": 1}),
            )
            .await;
        let idle = b["data"]["session_id"].as_str().unwrap().to_string();
        let answer = claim(&s, &[], json!([])).await;
        done(&s, answer["tasks"][0]["task"]["id"].as_str().unwrap()).await;
        loop {
            let (_, _, b) = s.get(&format!("/sessions/{idle}")).await;
            if b["data"]["status"] == "expired" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/remote", "input": {}, "session": idle}),
            )
            .await;
        assert_problem(st, &h, &b, 410, "SESSION_EXPIRED");

        // The engine registers again (it restarted): its sessions end.
        let (_, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/remote", "input": {}, "session": "new"}),
            )
            .await;
        let held = b["data"]["session_id"].as_str().unwrap().to_string();
        let answer = claim(&s, &[], json!([])).await;
        done(&s, answer["tasks"][0]["task"]["id"].as_str().unwrap()).await;
        engine_post(&s, "/v1/engine/register", remote_registration()).await;
        let (st, h, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/remote", "input": {}, "session": held}),
            )
            .await;
        assert_problem(st, &h, &b, 410, "SESSION_ENDED");
        assert_eq!(
            b["reason"],
            "its engine \"box\" restarted: a session never survives a restart of its engine"
        );
        let (_, _, b) = s.get("/sessions").await;
        assert_eq!(b["data"], json!([]), "none active");
        s.stop().await;
    })
    .await;
}
