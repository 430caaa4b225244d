//! `infsh serve --retention` end to end with the real binary (issue 15): a
//! task that ended longer ago than the retention is deleted by the
//! background sweep (GET answers 404), while the server keeps answering.

mod common;

use std::time::Duration;

use common::server::ServeSandbox;
use common::wait_for;
use serde_json::json;

#[test]
fn ended_tasks_past_the_retention_are_swept() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start(&["--retention", "1s"]);
    let id = server.submit(json!({"app": "tests/multi-fn", "input": {"text": "hi"}}));
    let task = server.wait_end(&id, Duration::from_secs(60));
    assert_eq!(task["status"], 10, "{task}");
    let path = format!("/tasks/{id}");
    let gone = wait_for(Duration::from_secs(30), || {
        matches!(server.request("GET", &path, None), Some((404, _)))
    });
    assert!(gone, "task {id} still there 30 s after a 1 s retention");
    // The sweep ran beside the server, which still takes runs.
    let next = server.submit(json!({"app": "tests/multi-fn", "input": {"text": "again"}}));
    assert_eq!(
        server.wait_end(&next, Duration::from_secs(60))["status"],
        10
    );
}

#[test]
fn retention_flag_refuses_a_bad_duration() {
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("infsh"))
        .args(["serve", "--retention", "0d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value '0d' for '--retention <DURATION>'")
            && err.contains("expected a positive duration such as 30d, 12h, 45m or 90s"),
        "{err}"
    );
}

/// The value of gauge `name` in a Prometheus text.
fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_report_disk_used_by_files_and_the_store() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start(&[]);
    let metrics = || server.request("GET", "/metrics", None).unwrap().1;
    let before = metrics();
    let files_before = gauge(&before, "infsh_files_bytes").unwrap_or_else(|| panic!("{before}"));
    let store = gauge(&before, "infsh_store_bytes").unwrap_or_else(|| panic!("{before}"));
    // The SQLite file in the data dir, with its schema: pages of it.
    assert!(store > 4096, "{store}");
    // A 5000-byte upload shows in the files gauge.
    let body = vec![b'x'; 5000];
    let file = server.api(
        "POST",
        "/files",
        Some(json!({"files": [{"filename": "a.bin", "content_type": "application/octet-stream", "size": 5000}]})),
        200,
    );
    let upload = file[0]["upload_url"]
        .as_str()
        .unwrap_or_else(|| panic!("{file}"));
    let (status, text) = server
        .raw("PUT", upload, Some(&body), "application/octet-stream")
        .unwrap();
    assert_eq!(status, 200, "{text}");
    let after = metrics();
    assert_eq!(
        gauge(&after, "infsh_files_bytes"),
        Some(files_before + 5000),
        "{after}"
    );
}
