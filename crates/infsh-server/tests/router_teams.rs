//! Router level: teams. A task run with a run-time key belongs to the key's
//! team (an admin key's: `default`); another team's key gets exactly the
//! 404 an unknown id gets on every task route (no existence leak), and its
//! listing leaves the task out; admin keys see every team.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-key";
const SCOPES: [&str; 5] = [
    "apps:execute",
    "tasks:read",
    "tasks:write",
    "files:read",
    "files:write",
];

async fn call(
    s: &TestServer,
    method: Method,
    uri: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&v).unwrap())
        }
        None => Body::empty(),
    };
    read_json(s.send(b.body(body).unwrap()).await).await
}

/// A key with every task and file scope, in `team`.
async fn key_of(s: &TestServer, team: &str) -> String {
    let body = json!({"name": team, "scopes": SCOPES, "team": team});
    let (st, _, v) = call(s, Method::POST, "/apikeys", ADMIN, Some(body)).await;
    assert_eq!(st, 201, "{v}");
    v["data"]["key"].as_str().unwrap().to_string()
}

/// Runs multi-fn's `run` with `key` until it ends; returns the task id.
async fn run_as(s: &TestServer, key: &str) -> String {
    let body = json!({"app": "tests/multi-fn", "function": "run", "input": {"text": "hi"}});
    let (st, _, v) = call(s, Method::POST, "/apps/run?wait=true", key, Some(body)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["status"], 10, "{v}");
    v["data"]["id"].as_str().unwrap().to_string()
}

async fn listed(s: &TestServer, key: &str) -> Vec<String> {
    let (st, _, v) = call(s, Method::GET, "/tasks?limit=100", key, None).await;
    assert_eq!(st, 200, "{v}");
    v["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every route naming one task, as (method, path).
fn task_routes(id: &str) -> Vec<(Method, String)> {
    vec![
        (Method::GET, format!("/tasks/{id}")),
        (Method::GET, format!("/tasks/{id}/status")),
        (Method::GET, format!("/tasks/{id}/stream")),
        (Method::GET, format!("/tasks/{id}/files")),
        (Method::POST, format!("/tasks/{id}/cancel")),
        (Method::DELETE, format!("/tasks/{id}/files")),
        (Method::DELETE, format!("/tasks/{id}")),
    ]
}

#[tokio::test]
async fn another_teams_task_is_an_unknown_task_and_admin_keys_see_all() {
    bounded(async {
        let mut setup = Setup::new(&["multi-fn"]);
        setup.server.api_keys = vec![ADMIN.into()];
        let s = start(setup).await;
        let blue = key_of(&s, "blue").await;
        let red = key_of(&s, "red").await;
        let default = key_of(&s, "default").await;

        let blues = run_as(&s, &blue).await;
        let admins = run_as(&s, ADMIN).await;

        // Listings: each team its own; admin keys every team's. An admin
        // key's task is the default team's.
        assert_eq!(listed(&s, &blue).await, vec![blues.clone()]);
        assert!(listed(&s, &red).await.is_empty());
        assert_eq!(listed(&s, &default).await, vec![admins.clone()]);
        assert_eq!(listed(&s, ADMIN).await, [admins.clone(), blues.clone()]);

        // The owner team reads it.
        let (st, _, v) = call(&s, Method::GET, &format!("/tasks/{blues}"), &blue, None).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"]["id"], blues.as_str());

        // Another team: on every task route, the same 404 as an id that
        // does not exist (only the id in the detail differs).
        let unknown = "tsk_doesnotexist";
        for ((method, path), (_, unknown_path)) in
            task_routes(&blues).into_iter().zip(task_routes(unknown))
        {
            let (st, h, theirs) = call(&s, method.clone(), &path, &red, None).await;
            assert_problem(st, &h, &theirs, 404, "not_found");
            let (st, h, none) = call(&s, method.clone(), &unknown_path, &red, None).await;
            assert_problem(st, &h, &none, 404, "not_found");
            let mut theirs = theirs;
            theirs["detail"] = json!(theirs["detail"].as_str().unwrap().replace(&blues, unknown));
            assert_eq!(theirs, none, "{method} {path}");
        }
        // Still there, untouched, for its team and for admins.
        let (st, _, v) = call(&s, Method::GET, &format!("/tasks/{blues}"), &blue, None).await;
        assert_eq!(
            (st.as_u16(), &v["data"]["status"]),
            (200, &json!(10)),
            "{v}"
        );
        let (st, h, v) = call(&s, Method::GET, &format!("/tasks/{admins}"), &blue, None).await;
        assert_problem(st, &h, &v, 404, "not_found");
        let (st, _, v) = call(&s, Method::GET, &format!("/tasks/{blues}"), ADMIN, None).await;
        assert_eq!(st, 200, "{v}");
        // Its owner may delete it.
        let (st, _, v) = call(&s, Method::DELETE, &format!("/tasks/{blues}"), &blue, None).await;
        assert_eq!(st, 200, "{v}");
    })
    .await;
}

/// Issue 15: a session is the team's of the task that opened it. Another
/// team's key gets the 404 `SESSION_NOT_FOUND` an unknown session gets, on
/// every session route and on a run continuing it; listings leave it out;
/// admin keys see it.
#[tokio::test]
async fn another_teams_session_is_an_unknown_session() {
    bounded(async {
        let mut setup = Setup::new(&["counter"]);
        setup.server.api_keys = vec![ADMIN.into()];
        let s = start(setup).await;
        let blue = key_of(&s, "blue").await;
        let red = key_of(&s, "red").await;
        let body =
            json!({"app": "tests/counter", "input": {}, "session": "new", "session_timeout": 30});
        let (st, _, v) = call(&s, Method::POST, "/apps/run?wait=true", &blue, Some(body)).await;
        assert_eq!(st, 200, "{v}");
        let id = v["data"]["session_id"].as_str().unwrap().to_string();

        let sessions = |key: String| {
            let s = &s;
            async move {
                let (st, _, v) = call(s, Method::GET, "/sessions", &key, None).await;
                assert_eq!(st, 200, "{v}");
                v["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x["id"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(sessions(blue.clone()).await, vec![id.clone()]);
        assert!(sessions(red.clone()).await.is_empty());
        assert_eq!(sessions(ADMIN.into()).await, vec![id.clone()]);

        let unknown = "sess_0123";
        for (method, path) in [
            (Method::GET, "/sessions/{}"),
            (Method::POST, "/sessions/{}/keepalive"),
            (Method::DELETE, "/sessions/{}"),
        ] {
            let (st, h, theirs) =
                call(&s, method.clone(), &path.replace("{}", &id), &red, None).await;
            assert_problem(st, &h, &theirs, 404, "SESSION_NOT_FOUND");
            let (_, _, none) =
                call(&s, method.clone(), &path.replace("{}", unknown), &red, None).await;
            let mut theirs = theirs;
            theirs["detail"] = json!(theirs["detail"].as_str().unwrap().replace(&id, unknown));
            theirs["session_id"] = json!(unknown);
            assert_eq!(theirs, none, "{method} {path}");
        }
        // A run in it from another team: the same 404, and no call made.
        let body = json!({"app": "tests/counter", "input": {}, "session": id});
        let (st, h, v) = call(
            &s,
            Method::POST,
            "/apps/run?wait=true",
            &red,
            Some(body.clone()),
        )
        .await;
        assert_problem(st, &h, &v, 404, "SESSION_NOT_FOUND");
        // Its team continues it (the count shows the red run never ran).
        let (st, _, v) = call(&s, Method::POST, "/apps/run?wait=true", &blue, Some(body)).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"]["output"]["count"], 2, "{v}");
        let (st, _, v) = call(&s, Method::GET, &format!("/sessions/{id}"), ADMIN, None).await;
        assert_eq!(st, 200, "{v}");
        s.stop().await;
    })
    .await;
}
