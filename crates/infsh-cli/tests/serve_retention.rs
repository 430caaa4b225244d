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
