//! Router level: file access (issue 15). On a server with keys a file is
//! private unless registered `public: true`: its bytes need the expiring
//! `?sig=` of the `uri` the API handed out, or a key with `files:read` of
//! its team. Missing both: 401; a tampered signature 403
//! `invalid_signature`; an expired one 403 `signature_expired`. Another
//! team's file or session is the 404 an unknown one is; file listings are
//! filtered by team; admin keys see all. A server without keys signs and
//! checks nothing.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-key";
const ID_LEN: usize = 32;

async fn call(
    s: &TestServer,
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
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
    read_json(s.send(b.body(body).unwrap()).await).await
}

/// GET `path` (no key unless given); status and body text.
async fn fetch(s: &TestServer, path: &str, key: Option<&str>) -> (StatusCode, String) {
    let mut b = Request::get(path);
    if let Some(key) = key {
        b = b.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let resp = s.send(b.body(Body::empty()).unwrap()).await;
    let status = resp.status();
    (status, read_text(resp).await)
}

/// `GET /files/{id}` asking for the record.
async fn record(s: &TestServer, id: &str, key: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
    let req = Request::get(format!("/files/{id}"))
        .header(header::ACCEPT, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    read_json(s.send(req).await).await
}

/// The part of an absolute URL the router routes.
fn path_of(url: &str) -> String {
    url[url.find("/files/").unwrap()..].to_string()
}

async fn key_of(s: &TestServer, team: &str) -> String {
    let body = json!({"name": team, "scopes": ["apps:execute", "tasks:read", "files:read", "files:write"], "team": team});
    let (st, _, v) = call(s, Method::POST, "/apikeys", Some(ADMIN), Some(body)).await;
    assert_eq!(st, 201, "{v}");
    v["data"]["key"].as_str().unwrap().to_string()
}

/// Registers and uploads `bytes` with `key`; returns the registration.
async fn upload(s: &TestServer, key: &str, public: Option<bool>, bytes: &'static str) -> Value {
    let spec = json!({"filename": "a.txt", "content_type": "text/plain", "size": bytes.len(), "public": public});
    let (st, _, v) = call(
        s,
        Method::POST,
        "/files",
        Some(key),
        Some(json!({"files": [spec]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let file = v["data"][0].clone();
    let put = Request::put(path_of(file["upload_url"].as_str().unwrap()))
        .body(Body::from(bytes))
        .unwrap();
    let (st, _, v) = read_json(s.send(put).await).await;
    assert_eq!(st, 200, "{v}");
    file
}

/// The ids `GET /files` lists for `key`.
async fn listed(s: &TestServer, key: &str) -> Vec<String> {
    let (st, _, v) = call(s, Method::GET, "/files?limit=100", Some(key), None).await;
    assert_eq!(st, 200, "{v}");
    v["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn with_keys() -> TestServer {
    let mut setup = Setup::new(&["files-app"]);
    setup.server.api_keys = vec![ADMIN.into()];
    start(setup).await
}

#[tokio::test]
async fn private_files_need_their_signature_or_a_key() {
    bounded(async {
        let s = with_keys().await;
        let file = upload(&s, ADMIN, None, "private bytes").await;
        let id = file["id"].as_str().unwrap().to_string();
        let uri = file["uri"].as_str().unwrap();
        let signed = path_of(uri);
        assert!(signed.contains("?sig="), "{uri}");

        // The signed URI opens it, without a key, under both names.
        assert_eq!(
            fetch(&s, &signed, None).await,
            (StatusCode::OK, "private bytes".into())
        );
        let sig = &signed[signed.find("?sig=").unwrap()..];
        assert_eq!(
            fetch(&s, &format!("/files/{id}{sig}"), None).await,
            (StatusCode::OK, "private bytes".into())
        );
        // A key does too.
        assert_eq!(
            fetch(&s, &format!("/files/{id}"), Some(ADMIN)).await,
            (StatusCode::OK, "private bytes".into())
        );

        // Neither: 401, never the bytes (for an unknown id as well).
        for path in [format!("/files/{id}"), format!("/files/{id}/a.txt")] {
            let (st, h, v) = call(&s, Method::GET, &path, None, None).await;
            assert_problem(st, &h, &v, 401, "unauthorized");
            assert!(v["detail"].as_str().unwrap().contains("is private"), "{v}");
        }
        let unknown = "0".repeat(ID_LEN);
        let (st, h, v) = call(&s, Method::GET, &format!("/files/{unknown}"), None, None).await;
        assert_problem(st, &h, &v, 401, "unauthorized");

        // Tampered: another file's signature, a stretched expiry, junk.
        let other = upload(&s, ADMIN, None, "other").await;
        let other_sig = &other["uri"].as_str().unwrap()
            [other["uri"].as_str().unwrap().find("?sig=").unwrap()..];
        let exp: u64 = sig["?sig=".len()..]
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let stretched = format!("?sig={}.{}", exp + 3600, sig.split('.').nth(1).unwrap());
        for bad in [other_sig.to_string(), stretched, "?sig=junk".into()] {
            let (st, h, v) = call(&s, Method::GET, &format!("/files/{id}{bad}"), None, None).await;
            assert_problem(st, &h, &v, 403, "invalid_signature");
        }
        // Expired: signed with the server's key, an expiry in the past.
        let past = now_secs() - 10;
        let expired = infsh_server::file_signature(SIGNING_KEY, &id, past);
        let (st, h, v) = call(
            &s,
            Method::GET,
            &format!("/files/{id}?sig={expired}"),
            None,
            None,
        )
        .await;
        assert_problem(st, &h, &v, 403, "signature_expired");
        assert_eq!(v["expired_at"], past, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("expired"), "{v}");
        // An upload token is not a download signature.
        let token = infsh_server::upload_token(SIGNING_KEY, &id, now_secs() + 60);
        let (st, h, v) = call(
            &s,
            Method::GET,
            &format!("/files/{id}?sig={token}"),
            None,
            None,
        )
        .await;
        assert_problem(st, &h, &v, 403, "invalid_signature");
        // A wrong key is 401 even for a file that exists.
        let (st, h, v) = call(
            &s,
            Method::GET,
            &format!("/files/{id}"),
            Some("wrong"),
            None,
        )
        .await;
        assert_problem(st, &h, &v, 401, "unauthorized");

        // The record and the listing hand out signed URIs too.
        let (st, _, v) = record(&s, &id, ADMIN).await;
        assert_eq!(st, 200, "{v}");
        let listed_uri = v["data"]["uri"].as_str().unwrap();
        assert_eq!(
            fetch(&s, &path_of(listed_uri), None).await.0,
            StatusCode::OK
        );
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn public_files_need_nothing() {
    bounded(async {
        let s = with_keys().await;
        let file = upload(&s, ADMIN, Some(true), "public bytes").await;
        let uri = file["uri"].as_str().unwrap();
        assert!(!uri.contains("?sig="), "{uri}");
        assert_eq!(
            fetch(&s, &path_of(uri), None).await,
            (StatusCode::OK, "public bytes".into())
        );
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn output_file_urls_are_signed_when_shown() {
    bounded(async {
        let s = with_keys().await;
        let body = json!({"app": "tests/files-app", "function": "make_files", "input": {}});
        let (st, _, v) = call(
            &s,
            Method::POST,
            "/apps/run?wait=true",
            Some(ADMIN),
            Some(body),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"]["status"], 10, "{v}");
        let uri = v["data"]["output"]["nested"]["file"]["uri"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(uri.contains("?sig="), "{uri}");
        let (st, text) = fetch(&s, &path_of(&uri), None).await;
        assert_eq!(st, StatusCode::OK, "{text}");
        // Stored unsigned: the signature is made when the task is shown.
        let id = v["data"]["id"].as_str().unwrap();
        let stored = s
            .engine
            .get(id)
            .await
            .unwrap()
            .record
            .output
            .unwrap()
            .into_value();
        let stored_uri = stored["nested"]["file"]["uri"].as_str().unwrap();
        assert!(!stored_uri.contains("sig="), "{stored_uri}");
        // The same URL without its signature: 401.
        let bare = path_of(&uri);
        let bare = &bare[..bare.find('?').unwrap()];
        assert_eq!(fetch(&s, bare, None).await.0, StatusCode::UNAUTHORIZED);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn another_teams_file_is_an_unknown_file() {
    bounded(async {
        let s = with_keys().await;
        let blue = key_of(&s, "blue").await;
        let red = key_of(&s, "red").await;
        let blues = upload(&s, &blue, None, "blue bytes").await;
        let admins = upload(&s, ADMIN, None, "admin bytes").await;
        let id = blues["id"].as_str().unwrap().to_string();
        let unknown = "0".repeat(ID_LEN);

        // Its team reads it with a key; another team gets what an unknown
        // id gets, on the bytes, the record and the delete.
        assert_eq!(
            fetch(&s, &format!("/files/{id}"), Some(&blue)).await,
            (StatusCode::OK, "blue bytes".into())
        );
        for file in [&id, &unknown] {
            let (st, h, v) =
                call(&s, Method::GET, &format!("/files/{file}"), Some(&red), None).await;
            assert_problem(st, &h, &v, 404, "not_found");
            assert_eq!(v["detail"], format!("unknown file \"{file}\""));
            let (st, h, v) = record(&s, file, &red).await;
            assert_problem(st, &h, &v, 404, "not_found");
            let (st, h, v) = call(
                &s,
                Method::DELETE,
                &format!("/files/{file}"),
                Some(&red),
                None,
            )
            .await;
            assert_problem(st, &h, &v, 404, "not_found");
        }
        // An admin key's file is the default team's: not blue's.
        let admin_id = admins["id"].as_str().unwrap();
        let (st, h, v) = call(
            &s,
            Method::GET,
            &format!("/files/{admin_id}"),
            Some(&blue),
            None,
        )
        .await;
        assert_problem(st, &h, &v, 404, "not_found");

        // Listings: each team its own; admin keys all.
        assert_eq!(listed(&s, &blue).await, vec![id.clone()]);
        assert!(listed(&s, &red).await.is_empty());
        assert_eq!(listed(&s, ADMIN).await.len(), 2);

        // The signed URI still opens it for anyone holding it (it is the
        // capability the owner chose to share).
        assert_eq!(
            fetch(&s, &path_of(blues["uri"].as_str().unwrap()), None)
                .await
                .0,
            StatusCode::OK
        );
        // Its team deletes it.
        let (st, _, v) = call(
            &s,
            Method::DELETE,
            &format!("/files/{id}"),
            Some(&blue),
            None,
        )
        .await;
        assert_eq!(st, 200, "{v}");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_server_without_keys_signs_and_checks_nothing() {
    bounded(async {
        let s = start(Setup::new(&["files-app"])).await;
        let spec = json!({"filename": "a.txt", "size": 2});
        let (st, _, v) = s.post("/files", json!({"files": [spec]})).await;
        assert_eq!(st, 200, "{v}");
        let uri = v["data"][0]["uri"].as_str().unwrap();
        assert!(!uri.contains("sig="), "{uri}");
        let put = Request::put(path_of(v["data"][0]["upload_url"].as_str().unwrap()))
            .body(Body::from("hi"))
            .unwrap();
        assert_eq!(s.send(put).await.status(), 200);
        assert_eq!(
            fetch(&s, &path_of(uri), None).await,
            (StatusCode::OK, "hi".into())
        );
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn output_files_belong_to_the_team_of_their_task() {
    bounded(async {
        let s = with_keys().await;
        let blue = key_of(&s, "blue").await;
        let red = key_of(&s, "red").await;
        let body =
            json!({"app": "tests/files-app", "function": "make_files", "input": {"label": "x"}});
        let (st, _, v) = call(
            &s,
            Method::POST,
            "/apps/run?wait=true",
            Some(&blue),
            Some(body),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"]["status"], 10, "{v}");
        let uri = v["data"]["output"]["nested"]["file"]["uri"]
            .as_str()
            .unwrap();
        let path = path_of(uri);
        let id = path["/files/".len().."/files/".len() + ID_LEN].to_string();

        // Blue's key reads and lists its task's outputs (three files).
        let (st, _, rec) = record(&s, &id, &blue).await;
        assert_eq!(st, 200, "{rec}");
        let blues = listed(&s, &blue).await;
        assert_eq!(blues.len(), 3, "{blues:?}");
        assert!(blues.contains(&id), "{blues:?}");
        // Red's key: neither listed nor readable by key (the same 404 as
        // an unknown id).
        assert!(listed(&s, &red).await.is_empty());
        let (st, h, v) = call(&s, Method::GET, &format!("/files/{id}"), Some(&red), None).await;
        assert_problem(st, &h, &v, 404, "not_found");
        s.stop().await;
    })
    .await;
}
