//! `infsh gc --retention D [--dry-run]` end to end with the real binary
//! (issue 15): against the data folder a stopped `infsh serve` left, a dry
//! run counts the ended tasks past the retention and deletes nothing; the
//! real run deletes them (a server started again answers 404 for them).

mod common;

use std::path::Path;
use std::time::Duration;

use common::server::ServeSandbox;
use common::{assert_code, json_stdout, wait_for};
use serde_json::{json, Value};

fn gc(data_dir: &Path, extra: &[&str]) -> (i32, Value, String) {
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("infsh"))
        .args(["--json", "gc", "--retention", "1s", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("INFSH_STORE")
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (code, doc, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn gc_dry_run_counts_and_gc_deletes_ended_tasks() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let mut server = sb.start(&[]);
    let id = server.submit(json!({"app": "tests/multi-fn", "input": {"text": "hi"}}));
    assert_eq!(server.wait_end(&id, Duration::from_secs(60))["status"], 10);
    assert!(server.terminate(Duration::from_secs(30)).is_some());
    drop(server);
    let data = sb.data_dir();

    // Once the task ended more than 1 s ago, the dry run counts it...
    let counted = wait_for(Duration::from_secs(30), || {
        gc(&data, &["--dry-run"]).1["tasks"] == 1
    });
    assert!(counted, "{:?}", gc(&data, &["--dry-run"]));
    // ...and deleted nothing: a second dry run counts it again.
    let (code, doc, err) = gc(&data, &["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["tasks"], 1, "{doc}");

    let (code, doc, err) = gc(&data, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["dry_run"], false);
    assert_eq!(doc["tasks"], 1, "{doc}");
    assert_eq!(gc(&data, &["--dry-run"]).1["tasks"], 0);

    let server = sb.start(&[]);
    let (status, _) = server
        .request("GET", &format!("/tasks/{id}"), None)
        .unwrap();
    assert_eq!(status, 404);
}

#[test]
fn gc_refuses_a_folder_without_a_store() {
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("infsh"))
        .args(["--json", "gc", "--retention", "30d", "--data-dir"])
        .arg(empty.path())
        .env_remove("INFSH_STORE")
        .output()
        .unwrap();
    assert_code(&out, 2);
    let doc = json_stdout(&out);
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with(": no infsh.db in it")),
        "{doc}"
    );
}
