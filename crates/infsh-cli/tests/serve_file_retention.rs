//! `--file-retention` end to end (issue 15): the real binary, real Python
//! workers, real SQLite. Stored files older than the file retention that
//! no kept task names are swept by `infsh serve --file-retention`, and
//! counted (`--dry-run`) or deleted by `infsh gc --file-retention`; files a
//! task names stay.

mod common;

use std::path::Path;
use std::time::Duration;

use common::server::{ServeSandbox, Server};
use common::wait_for;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);

/// Registers and uploads a small text file; its id.
fn upload(server: &Server, text: &str) -> String {
    server.upload("unused.txt", "text/plain", text.as_bytes()).0
}

/// Runs files-app's make_files; the id of its first output file.
fn output_file(server: &Server) -> String {
    let made = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/files-app", "function": "make_files",
                    "input": {}, "wait": true})),
        200,
    );
    assert_eq!(made["status"], 10, "{made:#}");
    let uri = made["output"]["files"][0]["uri"].as_str().unwrap();
    let rest = uri.split("/files/").nth(1).unwrap();
    rest.split(['/', '?']).next().unwrap().to_string()
}

fn status_of(server: &Server, id: &str) -> u16 {
    server
        .request("GET", &format!("/files/{id}"), None)
        .unwrap()
        .0
}

#[test]
fn serve_sweeps_files_no_task_names() {
    let sb = ServeSandbox::new(&["files-app"]);
    let server = sb.start(&["--file-retention", "2s"]);
    let named = output_file(&server);
    let unused = upload(&server, "nobody uses me");
    assert_eq!(status_of(&server, &unused), 200);
    // Swept once older than 2 s (the sweep runs every second).
    assert!(
        wait_for(LIMIT, || status_of(&server, &unused) == 404),
        "the unused upload was never swept"
    );
    // The task's output file stays, however old.
    assert_eq!(status_of(&server, &named), 200);
}

fn gc(data_dir: &Path, extra: &[&str]) -> Value {
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("infsh"))
        .args(["--json", "gc", "--file-retention", "1s", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("INFSH_STORE")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn gc_counts_then_deletes_unreferenced_files() {
    let sb = ServeSandbox::new(&["files-app"]);
    let mut server = sb.start(&[]);
    let named = output_file(&server);
    let unused = upload(&server, "nobody uses me");
    assert!(server.terminate(Duration::from_secs(30)).is_some());
    drop(server);
    let data = sb.data_dir();

    // Once older than 1 s, the dry run counts the unused upload only...
    assert!(
        wait_for(LIMIT, || gc(&data, &["--dry-run"])["unreferenced_files"]
            == 1),
        "{}",
        gc(&data, &["--dry-run"])
    );
    let doc = gc(&data, &["--dry-run"]);
    assert_eq!(doc["unreferenced_bytes"], 14, "{doc}");
    assert_eq!(doc["tasks"], 0, "{doc}");
    // ...the real run deletes it, and then there is nothing left to count.
    assert_eq!(gc(&data, &[])["unreferenced_files"], 1);
    assert_eq!(gc(&data, &["--dry-run"])["unreferenced_files"], 0);

    let server = sb.start(&[]);
    assert_eq!(status_of(&server, &unused), 404);
    assert_eq!(status_of(&server, &named), 200);
}
