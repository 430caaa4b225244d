//! Uploaded input files read in place (issue 17, docs/performance.md "How
//! the bytes move"): the real binary, real Python workers, the real SDK's
//! `File`. A file uploaded to this server and named by its URI reaches the
//! app as the stored file itself (no loopback download, no second copy),
//! with the upload's name and type, and read-only; a file the task's team
//! may not read is fetched by its URL as before.

mod common;

use std::os::unix::fs::MetadataExt;

use common::server::*;
use serde_json::{json, Value};

/// Runs files-app's `locate` on `file` with `key`; the completed task.
fn locate(server: &Server, key: Option<&str>, file: Value) -> Value {
    let run = json!({"app": "tests/files-app", "function": "locate",
                     "input": {"file": file}, "wait": true});
    let (status, body) = http_post_json(&server.url, "/apps/run", key, &run).unwrap();
    assert_eq!(status, 200, "{body}");
    let task: Value = serde_json::from_str::<Value>(&body).unwrap()["data"].clone();
    assert_eq!(
        task["status"],
        10,
        "{task:#}\nserver log:\n{}",
        server.log()
    );
    task
}

/// The task's log lines, joined.
fn logs(server: &Server, key: Option<&str>, id: &str) -> String {
    let (status, body) = http_get(&server.url, &format!("/tasks/{id}"), key).unwrap();
    assert_eq!(status, 200, "{body}");
    let task: Value = serde_json::from_str::<Value>(&body).unwrap()["data"].clone();
    task["logs"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| e["content"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn an_uploaded_input_is_read_where_it_was_stored() {
    let sb = ServeSandbox::new(&["files-app"]);
    let server = sb.start(&[]);
    let (id, uri) = server.upload("notes.txt", "text/x-notes", b"hello, in place\n");
    let stored = std::fs::canonicalize(sb.data_dir().join("files").join(&id)).unwrap();

    // A URI string: the app's File is the stored file, with the upload's
    // name and type, and the SDK downloaded nothing.
    let task = locate(&server, None, json!(uri));
    let out = &task["output"];
    assert_eq!(
        std::fs::canonicalize(out["path"].as_str().unwrap()).unwrap(),
        stored,
        "{out:#}"
    );
    assert_eq!(
        out["inode"],
        std::fs::metadata(&stored).unwrap().ino(),
        "{out:#}"
    );
    assert_eq!(out["filename"], "notes.txt", "{out:#}");
    assert_eq!(out["content_type"], "text/x-notes", "{out:#}");
    assert_eq!(out["size"], 16, "{out:#}");
    assert_eq!(out["text"], "hello, in place\n", "{out:#}");
    // Read-only: an app writing to its input fails, the stored bytes stay
    // (root ignores the mode, so only its mode can be checked there).
    let mode = std::fs::metadata(&stored).unwrap().mode();
    assert_eq!(mode & 0o777, 0o444, "{mode:o}");
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    if !root {
        assert_eq!(out["writable"], false, "{out:#}");
    }
    let log = logs(&server, None, task["id"].as_str().unwrap());
    assert!(!log.contains("Downloading URL"), "{log}");

    // A file object: what the client set (its filename) wins; the task's
    // stored input is still the client's.
    let task = locate(&server, None, json!({"uri": uri, "filename": "mine.txt"}));
    assert_eq!(task["output"]["filename"], "mine.txt", "{task:#}");
    assert_eq!(
        task["output"]["inode"],
        std::fs::metadata(&stored).unwrap().ino()
    );
    let stored_task = server.task(task["id"].as_str().unwrap());
    assert_eq!(
        stored_task["input"]["file"],
        json!({"uri": uri, "filename": "mine.txt"})
    );

    // A file removed from the store since is no longer handed over: the
    // worker asks for the URL and the task fails with the server's 404.
    server.api("DELETE", &format!("/files/{id}"), None, 200);
    let run = json!({"app": "tests/files-app", "function": "locate",
                     "input": {"file": uri}, "wait": true});
    let task = server.api("POST", "/apps/run", Some(run), 200);
    assert_eq!(task["status"], 11, "{task:#}");
    let error = task["error"].as_str().unwrap_or_default();
    assert!(error.contains("404"), "{error}");
}

#[test]
fn another_teams_file_is_fetched_by_its_url_not_read_in_place() {
    let sb = ServeSandbox::new(&["files-app"]);
    let server = sb.start_with_key(&[]);
    let admin = server.key;
    let blue = {
        let out = sb.run(
            &server,
            &[
                "keys",
                "create",
                "--name",
                "blue",
                "--team",
                "blue",
                "--scope",
                "apps:execute",
                "--scope",
                "tasks:read",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    // Uploaded with the admin key: the default team's, private (its uri
    // carries a signature).
    let (id, uri) = server.upload("shared.txt", "text/plain", b"signed bytes\n");
    assert!(uri.contains("?sig="), "{uri}");
    let stored = std::fs::canonicalize(sb.data_dir().join("files").join(&id)).unwrap();

    // The default team's task reads it in place.
    let task = locate(&server, admin, json!(uri));
    assert_eq!(
        std::fs::canonicalize(task["output"]["path"].as_str().unwrap()).unwrap(),
        stored
    );

    // Blue holds the signed URL, so it may have the bytes, but not the
    // stored file: the worker downloads them as any holder of the URL would.
    let task = locate(&server, Some(&blue), json!(uri));
    let out = &task["output"];
    let path = std::fs::canonicalize(out["path"].as_str().unwrap()).unwrap();
    assert_ne!(path, stored, "{out:#}");
    let files_dir = std::fs::canonicalize(sb.data_dir().join("files")).unwrap();
    assert!(!path.starts_with(files_dir), "{out:#}");
    assert_eq!(out["text"], "signed bytes\n", "{out:#}");
    let log = logs(&server, Some(&blue), task["id"].as_str().unwrap());
    assert!(log.contains("Downloading URL"), "{log}");
}
