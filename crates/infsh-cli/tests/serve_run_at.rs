//! `infsh app run --run-at` end to end (issue 15): the real binary, real
//! Python workers, real SQLite. A task submitted to run later waits QUEUED
//! (2) in `infsh serve`, survives `kill -9` and a restart on the same data
//! folder, and runs at its time, not before.

mod common;

use std::time::Duration;

use common::server::ServeSandbox;
use common::*;

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn a_run_at_task_survives_kill_9_and_runs_at_its_time() {
    let sb = ServeSandbox::new(&["slow"]);
    let mut server = sb.start(&[]);
    let id = sb.submit(
        &server,
        "tests/slow",
        &[
            "--input",
            r#"{"seconds": 0.05, "label": "later"}"#,
            "--run-at",
            "+25s",
        ],
    );
    let task = server.task(&id);
    assert_eq!(task["status"], 2, "{task:#}");
    let run_at = task["run_at"].as_str().expect("run_at").to_string();

    server.kill9();
    let left = server.wait_no_app_processes(Duration::from_secs(15));
    assert!(left.is_empty(), "workers outlived kill -9: {left:?}");

    let server = sb.start(&[]);
    // Still waiting after the restart (QUEUED: the restart takes well under 25 s).
    let waiting = server.task(&id);
    assert_eq!(waiting["status"], 2, "{waiting:#}");
    assert_eq!(waiting["run_at"], run_at.as_str());
    let done = server.wait_end(&id, LIMIT);
    assert_eq!(done["status"], 10, "{done:#}");
    assert_eq!(done["output"]["label"], "later");
    // It ran at its time: it ended after it (both RFC 3339 UTC, same form).
    let ended = done["updated_at"].as_str().unwrap();
    assert!(ended >= run_at.as_str(), "ended {ended}, run_at {run_at}");
}

#[test]
fn run_at_without_a_server_or_with_a_bad_time_is_a_usage_error() {
    let sb = ServeSandbox::new(&["slow"]);
    let server = sb.start(&[]);
    let out = sb.run(
        &server,
        &["app", "run", "tests/slow", "--detach", "--run-at", "soon"],
    );
    assert_code(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--run-at"), "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
}
