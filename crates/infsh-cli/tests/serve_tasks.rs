//! End to end: `infsh task get|list|cancel` and `app run --detach` against
//! the real `infsh serve`, with one worker so that tasks queue.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::server::*;
use common::*;
use serde_json::{json, Value};

const ONE_AT_A_TIME: &[&str] = &["--replicas", "1", "--concurrency", "1"];

fn ids(doc: &Value) -> Vec<String> {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn tasks_are_listed_paged_fetched_and_cancelled() {
    let sb = ServeSandbox::new(&["slow"]);
    let server = sb.start(ONE_AT_A_TIME);
    assert_eq!(server.apps, vec!["tests/slow"]);

    let long = sb.submit(
        &server,
        "tests/slow",
        &["--input", r#"{"seconds": 60, "label": "long"}"#],
    );
    server.wait_task(&long, Duration::from_secs(60), |t| t["status"] == 7);
    let queued: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|label| {
            let input = json!({"seconds": 0.1, "label": label}).to_string();
            sb.submit(&server, "tests/slow", &["--input", &input])
        })
        .collect();

    // get: the running task, as JSON and for people.
    let task = sb.task(&server, &long);
    assert_eq!(task["id"], long.as_str());
    assert_eq!(task["app"], "tests/slow");
    assert_eq!(task["function"], "nap");
    assert_eq!(task["status"], 7);
    assert_eq!(task["input"], json!({"seconds": 60, "label": "long"}));
    let out = sb.run(&server, &["task", "get", &long]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains(&format!("task      {long}")), "{text}");
    assert!(text.contains("status    running"), "{text}");
    assert!(text.contains("function  nap"), "{text}");

    // list: newest first, a page at a time.
    let first = sb.run_json(&server, &["--json", "task", "list", "--limit", "2"], 0);
    assert_eq!(ids(&first), vec![queued[2].clone(), queued[1].clone()]);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second = sb.run_json(
        &server,
        &[
            "--json", "task", "list", "--limit", "2", "--cursor", &cursor,
        ],
        0,
    );
    assert_eq!(ids(&second), vec![queued[0].clone(), long.clone()]);
    let all = sb.run_json(
        &server,
        &["--json", "task", "list", "--limit", "1", "--all"],
        0,
    );
    assert_eq!(ids(&all).len(), 4);
    assert_eq!(all["next_cursor"], Value::Null);
    let out = sb.run(&server, &["--json", "task", "list", "--status", "running"]);
    assert_eq!(ids(&json_stdout(&out)), vec![long.clone()]);
    let out = sb.run(&server, &["task", "list", "--limit", "2"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("tests/slow:nap"), "{text}");
    assert!(
        stderr(&out).contains("more: infsh task list --cursor"),
        "{}",
        stderr(&out)
    );

    // cancel: the running one ends CANCELLED; then the queue moves on.
    let out = sb.run(&server, &["task", "cancel", &long, "--wait"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("task {long}: cancelled"));
    assert_eq!(sb.task(&server, &long)["status"], 12);
    for (id, label) in queued.iter().zip(["a", "b", "c"]) {
        let doc = sb.run_json(&server, &["--json", "task", "get", id, "--wait"], 0);
        assert_eq!(doc["status"], "completed");
        assert_eq!(
            doc["output"],
            json!({"output_meta": null, "label": label, "slept": 0.1})
        );
        assert_eq!(doc["task_id"], id.as_str());
    }

    // Cancelling a task that already ended is refused.
    let out = sb.run(&server, &["task", "cancel", &queued[0]]);
    assert_code(&out, 4);
    assert!(stderr(&out).contains("already ended"), "{}", stderr(&out));

    let out = sb.run(
        &server,
        &["--json", "task", "list", "--status", "completed"],
    );
    let done: BTreeSet<String> = ids(&json_stdout(&out)).into_iter().collect();
    assert_eq!(done, queued.iter().cloned().collect());
    // The client's spelling of CANCELLED (one status table with the server).
    let out = sb
        .infsh(&server)
        .args(["--json", "task", "list", "--status", "canceled"])
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(ids(&json_stdout(&out)), vec![long.clone()]);
}

#[test]
fn an_unknown_status_is_a_usage_error_before_any_request() {
    let sb = Sandbox::new();
    let out = sb
        .infsh()
        // Nothing listens there: the status is refused before any request.
        .args(["task", "list", "--api-url", "http://127.0.0.1:9"])
        .args(["--status", "done"])
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains(
            "error: --status: unknown task status \"done\": use a number 0-13 or a name (unknown, received, queued, dispatched, preparing, serving, setting_up, running, cancelling, uploading, completed, failed, cancelled, rejected, canceled, canceling, setup, settingup)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_queued_task_is_cancelled_at_once_and_unknown_ids_exit_4() {
    let sb = ServeSandbox::new(&["slow"]);
    let server = sb.start(ONE_AT_A_TIME);
    let long = sb.submit(&server, "tests/slow", &["--input", r#"{"seconds": 60}"#]);
    server.wait_task(&long, Duration::from_secs(60), |t| t["status"] == 7);
    let waiting = sb.submit(&server, "tests/slow", &["--input", r#"{"label": "w"}"#]);
    let out = sb.run(&server, &["--json", "task", "cancel", &waiting]);
    assert_code(&out, 0);
    assert_eq!(json_stdout(&out)["status"], 12);
    // `task get --wait` on a cancelled task exits like the run would.
    let out = sb.run(&server, &["task", "get", &waiting, "--wait"]);
    assert_code(&out, 6);
    assert!(
        stderr(&out).contains(&format!("task {waiting} was cancelled")),
        "{}",
        stderr(&out)
    );

    let out = sb.run(&server, &["task", "get", "no-such-task"]);
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains("unknown task \"no-such-task\""),
        "{}",
        stderr(&out)
    );
    let out = sb.run(&server, &["task", "cancel", "no-such-task"]);
    assert_code(&out, 4);
    let out = sb.run(&server, &["task", "cancel", &long]);
    assert_code(&out, 0);
}

#[test]
fn a_full_queue_exits_12() {
    let sb = ServeSandbox::new(&["slow"]);
    let server = sb.start(&[
        "--replicas",
        "1",
        "--concurrency",
        "1",
        "--queue-capacity",
        "1",
    ]);
    let long = sb.submit(&server, "tests/slow", &["--input", r#"{"seconds": 60}"#]);
    server.wait_task(&long, Duration::from_secs(60), |t| t["status"] == 7);
    let waiting = sb.submit(&server, "tests/slow", &[]);
    let doc = sb.run_json(&server, &["--json", "app", "run", "tests/slow"], 12);
    assert_eq!(doc["error"]["code"], "busy");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the server is busy (HTTP 429)"),
        "{doc:#}"
    );
    for id in [&waiting, &long] {
        let out = sb.run(&server, &["task", "cancel", id]);
        assert_code(&out, 0);
    }
}
