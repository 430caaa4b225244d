//! Router level: keys created at run time. An admin key creates scoped
//! keys (`POST /apikeys`, the key shown once), lists them (never the key)
//! and revokes them; a scoped key passes where it has the scope, gets 403
//! `insufficient_scope` naming the scope where it lacks it, 401 once
//! revoked or expired, and cannot mint a stronger key. Every documented
//! route maps to a scope.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request};
use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-key";

async fn call(
    s: &TestServer,
    method: Method,
    uri: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, axum::http::HeaderMap, Value) {
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
    let (st, h, v) = read_json(s.send(b.body(body).unwrap()).await).await;
    (st.as_u16(), h, v)
}

async fn server() -> TestServer {
    let mut setup = Setup::new(&["multi-fn"]);
    setup.server.api_keys = vec![ADMIN.into()];
    start(setup).await
}

/// Creates a key with `scopes` as the admin; returns (id, key).
async fn create(s: &TestServer, scopes: &[&str], extra: Value) -> (String, String) {
    let mut body = json!({"name": "ci", "scopes": scopes});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (st, _, v) = call(s, Method::POST, "/apikeys", ADMIN, Some(body)).await;
    assert_eq!(st, 201, "{v}");
    (
        v["data"]["id"].as_str().unwrap().to_string(),
        v["data"]["key"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_scoped_key_passes_only_where_it_has_the_scope() {
    bounded(async {
        let s = server().await;
        let (st, _, v) = call(
            &s,
            Method::POST,
            "/apikeys",
            ADMIN,
            Some(json!({"name": "ci", "scopes": ["apps:execute", "tasks:read"], "expires_in_seconds": 3600})),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        let data = &v["data"];
        let key = data["key"].as_str().unwrap().to_string();
        assert!(key.starts_with("infsh_") && key.len() == 6 + 64, "{key}");
        assert_eq!(data["name"], "ci");
        assert_eq!(data["scopes"], json!(["apps:execute", "tasks:read"]));
        assert_eq!(data["team"], "default");
        assert!(data["expires_at"].is_string());
        assert_eq!(data["revoked_at"], Value::Null);

        // apps:execute: it runs; tasks:read: it reads the task.
        let (st, _, run) = call(
            &s,
            Method::POST,
            "/apps/run",
            &key,
            Some(json!({"app": "tests/multi-fn", "input": {"text": "k"}, "wait": true})),
        )
        .await;
        assert_eq!(st, 200, "{run}");
        let id = run["data"]["id"].as_str().unwrap();
        let (st, _, _) = call(&s, Method::GET, &format!("/v1/tasks/{id}"), &key, None).await;
        assert_eq!(st, 200);

        // No files:write, no apps:read, no tasks:write: 403 naming each.
        for (method, uri, scope) in [
            (Method::POST, "/files", "files:write"),
            (Method::GET, "/apps", "apps:read"),
            (Method::POST, &*format!("/tasks/{id}/cancel"), "tasks:write"),
            (Method::GET, "/engines", "engines:read"),
            (Method::POST, "/apikeys/list", "apikeys:write"),
        ] {
            let (st, h, b) = call(&s, method, uri, &key, Some(json!({}))).await;
            assert_problem(axum::http::StatusCode::from_u16(st).unwrap(), &h, &b, 403, "insufficient_scope");
            assert_eq!(b["scope"], scope, "{uri}: {b}");
            assert_eq!(
                b["detail"],
                format!("this API key lacks the scope \"{scope}\" this request needs")
            );
        }
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn revoked_expired_and_unknown_keys_are_401() {
    bounded(async {
        let s = server().await;
        let (id, key) = create(&s, &["apps:read"], json!({})).await;
        assert_eq!(call(&s, Method::GET, "/apps", &key, None).await.0, 200);

        let (st, _, v) = call(&s, Method::DELETE, &format!("/apikeys/{id}"), ADMIN, None).await;
        assert_eq!(st, 200, "{v}");
        assert!(v["data"]["revoked_at"].is_string(), "{v}");
        let (st, h, b) = call(&s, Method::GET, "/apps", &key, None).await;
        assert_problem(
            axum::http::StatusCode::from_u16(st).unwrap(),
            &h,
            &b,
            401,
            "unauthorized",
        );
        assert_eq!(b["detail"], "API key revoked");

        // Expired: written straight to the store, a second in the past.
        let created = s
            .engine
            .create_api_key(infsh_engine::NewApiKey {
                name: "old".into(),
                scopes: vec!["apps:read".into()],
                team: "default".into(),
                expires_at_ms: Some(infsh_store::now_ms() - 1000),
            })
            .await
            .unwrap();
        let (st, h, b) = call(&s, Method::GET, "/apps", &created.key, None).await;
        assert_problem(
            axum::http::StatusCode::from_u16(st).unwrap(),
            &h,
            &b,
            401,
            "unauthorized",
        );
        assert_eq!(b["detail"], "API key expired");

        let (st, _, b) = call(&s, Method::GET, "/apps", "infsh_nope", None).await;
        assert_eq!((st, b["detail"].as_str()), (401, Some("invalid API key")));

        let (st, h, b) = call(&s, Method::DELETE, "/apikeys/nope", ADMIN, None).await;
        assert_problem(
            axum::http::StatusCode::from_u16(st).unwrap(),
            &h,
            &b,
            404,
            "not_found",
        );
        assert_eq!(b["detail"], "unknown API key \"nope\"");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn listing_never_shows_a_key_and_no_key_mints_a_stronger_one() {
    bounded(async {
        let s = server().await;
        let (_, writer) = create(&s, &["apikeys:write", "apps:read"], json!({})).await;
        create(&s, &["files:read"], json!({"team": "blue"})).await;

        let (st, _, v) = call(&s, Method::POST, "/apikeys/list", ADMIN, None).await;
        assert_eq!(st, 200, "{v}");
        let all = v["data"].as_array().unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|k| k.get("key").is_none() && k.get("key_hash").is_none()), "{v}");
        // A scoped key sees its own team's keys only.
        let (_, _, v) = call(&s, Method::POST, "/apikeys/list", &writer, None).await;
        assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");

        // Within its own scopes: allowed, in its team.
        let (st, _, v) = call(&s, Method::POST, "/apikeys", &writer, Some(json!({"name": "sub", "scopes": ["apps:read"]}))).await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["data"]["team"], "default");
        // Beyond them: 403 naming the scope; another team: 403.
        let (st, h, b) = call(&s, Method::POST, "/apikeys", &writer, Some(json!({"name": "x", "scopes": ["apps:execute"]}))).await;
        assert_problem(axum::http::StatusCode::from_u16(st).unwrap(), &h, &b, 403, "insufficient_scope");
        assert_eq!(b["scope"], "apps:execute");
        let (st, _, b) = call(&s, Method::POST, "/apikeys", &writer, Some(json!({"name": "x", "scopes": [], "team": "blue"}))).await;
        assert_eq!((st, &b["scope"]), (403, &Value::Null), "{b}");
        // Bad bodies: 400.
        let (st, h, b) = call(&s, Method::POST, "/apikeys", ADMIN, Some(json!({"name": "x", "scopes": ["apps:write"]}))).await;
        assert_problem(axum::http::StatusCode::from_u16(st).unwrap(), &h, &b, 400, "invalid_request");
        assert_eq!(
            b["detail"],
            "unknown scope \"apps:write\"; scopes are: apps:read, apps:execute, files:read, files:write, tasks:read, tasks:write, engines:read, engines:write, apikeys:write"
        );
        let (st, _, b) = call(&s, Method::POST, "/apikeys", ADMIN, Some(json!({"name": " ", "scopes": []}))).await;
        assert_eq!((st, b["detail"].as_str()), (400, Some("name: must not be empty")));
        s.stop().await;
    })
    .await;
}

/// Every route in the OpenAPI document needs a scope: none is left to
/// admin keys by accident. (The engine link has its own keys.)
#[tokio::test]
async fn every_documented_route_has_a_scope() {
    bounded(async {
        let s = server().await;
        let (_, key) = create(&s, &[], json!({})).await;
        let doc: Value = serde_json::from_str(&infsh_server::openapi_fixed_json()).unwrap();
        let public = ["/health", "/files/{id}", "/files/{id}/{filename}"];
        for (path, ops) in doc["paths"].as_object().unwrap() {
            if public.contains(&path.as_str()) || path.starts_with("/engine/") {
                continue;
            }
            for method in ops.as_object().unwrap().keys() {
                let uri = path
                    .replace("{namespace}", "tests")
                    .replace("{name}", "multi-fn")
                    .replace("{function}", "run")
                    .replace("{id}", "x");
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let (st, _, b) = call(&s, m, &uri, &key, Some(json!({}))).await;
                assert_eq!(st, 403, "{method} {path}: {b}");
                assert!(b["scope"].is_string(), "{method} {path} has no scope: {b}");
            }
        }
        s.stop().await;
    })
    .await;
}
