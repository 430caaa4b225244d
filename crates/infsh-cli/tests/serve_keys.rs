//! End to end: `infsh keys create|list|revoke` against a real server with
//! an admin key; the created key works where it has the scope, gets 403
//! `insufficient_scope` where it lacks it, and 401 once revoked, also
//! after a restart (keys live in the store).

mod common;

use common::server::*;
use common::*;
use serde_json::{json, Value};

#[test]
fn keys_are_created_listed_scoped_and_revoked() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start_with_key(&[]);
    let out = sb.run(
        &server,
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--scope",
            "apps:execute",
            "--scope",
            "tasks:read",
            "--expires",
            "30d",
        ],
    );
    assert_code(&out, 0);
    let key = stdout(&out).trim().to_string();
    assert!(key.starts_with("infsh_"), "{key}");
    assert!(
        stderr(&out).contains("it is shown this once"),
        "{}",
        stderr(&out)
    );

    let run = json!({"app": "tests/multi-fn", "input": {"text": "k"}, "wait": true});
    let (status, body) = http_post_json(&server.url, "/apps/run", Some(&key), &run).unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(&server.url, "/apps", Some(&key)).unwrap();
    assert_eq!(status, 403, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        problem["type"],
        "https://infsh.dev/errors/insufficient_scope"
    );
    assert_eq!(problem["scope"], "apps:read");

    let listed = sb.run_json(&server, &["--json", "keys", "list"], 0);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["scopes"], json!(["apps:execute", "tasks:read"]));
    assert!(listed[0].get("key").is_none());
    let id = listed[0]["id"].as_str().unwrap().to_string();

    // Keys are in the store: a restarted server knows them.
    drop(server);
    let server = sb.start_with_key(&[]);
    let (status, _) = http_post_json(&server.url, "/apps/run", Some(&key), &run).unwrap();
    assert_eq!(status, 200);
    let out = sb.run(&server, &["keys", "revoke", &id]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("revoked key {id}"));
    let (status, body) = http_post_json(&server.url, "/apps/run", Some(&key), &run).unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("API key revoked"), "{body}");

    // Errors: a bad duration is a usage error; an unknown id is 404.
    let out = sb.run(
        &server,
        &["keys", "create", "--name", "x", "--expires", "3y"],
    );
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("--expires 3y: expected a positive duration"),
        "{}",
        stderr(&out)
    );
    let out = sb.run(&server, &["keys", "revoke", "nope"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("unknown API key \"nope\""),
        "{}",
        stderr(&out)
    );
}

/// Creates a key of `team` through the binary; returns it.
fn key_of(sb: &ServeSandbox, server: &Server, team: &str) -> String {
    let out = sb.run(
        server,
        &[
            "keys",
            "create",
            "--name",
            team,
            "--team",
            team,
            "--scope",
            "apps:execute",
            "--scope",
            "tasks:read",
        ],
    );
    assert_code(&out, 0);
    stdout(&out).trim().to_string()
}

fn listed(server: &Server, key: &str) -> Vec<String> {
    let (status, body) = http_get(&server.url, "/tasks", Some(key)).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

/// Teams through the real binary and its SQLite file: another team's task
/// is 404 `not_found` and missing from its listing, also after a restart
/// (the team is stored with the task); the admin key sees it.
#[test]
fn another_teams_task_is_not_found_also_after_a_restart() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start_with_key(&[]);
    let blue = key_of(&sb, &server, "blue");
    let red = key_of(&sb, &server, "red");
    let run = json!({"app": "tests/multi-fn", "input": {"text": "t"}, "wait": true});
    let (status, body) = http_post_json(&server.url, "/apps/run", Some(&blue), &run).unwrap();
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    drop(server);
    let server = sb.start_with_key(&[]);
    let (status, body) = http_get(&server.url, &format!("/tasks/{id}"), Some(&red)).unwrap();
    assert_eq!(status, 404, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["type"], "https://infsh.dev/errors/not_found");
    assert_eq!(problem["resource"], "task");
    assert!(listed(&server, &red).is_empty());
    assert_eq!(listed(&server, &blue), vec![id.clone()]);
    let admin = server.key.unwrap();
    assert_eq!(listed(&server, admin), vec![id.clone()]);
    let (status, body) = http_get(&server.url, &format!("/tasks/{id}"), Some(&blue)).unwrap();
    assert_eq!(status, 200, "{body}");
}
