//! End to end: what survives the server. `kill -9` with one task running
//! and several queued, then a restart on the same data folder: every
//! acknowledged task is still there, the queued ones complete, the
//! interrupted one ended; with either `--durability` (a kill is a crash of
//! infsh, which `relaxed` survives too). And a graceful SIGTERM: exit 0,
//! nothing left.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::server::*;
use common::*;
use serde_json::json;

#[test]
fn kill_9_keeps_every_acknowledged_task_and_the_queued_ones_run_after_restart() {
    kill_9_then_restart("full", &[]);
}

#[test]
fn kill_9_keeps_every_acknowledged_task_with_relaxed_durability() {
    kill_9_then_restart("relaxed", &[]);
}

/// The same on PostgreSQL (`--store`): the recovery is the store's, not
/// SQLite's, and nothing is written to the data folder's database.
#[test]
fn kill_9_keeps_every_acknowledged_task_on_postgres() {
    let db = infsh_testkit::PgTestDb::create();
    let sb = kill_9_then_restart("full", &["--store", db.url()]);
    assert!(
        !sb.data_dir().join("infsh.db").exists(),
        "the tasks went to PostgreSQL, not to SQLite"
    );
}

fn kill_9_then_restart(durability: &str, store: &[&str]) -> ServeSandbox {
    let sb = ServeSandbox::new(&["slow"]);
    let flags = [
        &[
            "--replicas",
            "1",
            "--concurrency",
            "1",
            "--durability",
            durability,
        ][..],
        store,
    ]
    .concat();
    let mut server = sb.start(&flags);
    let long = sb.submit(
        &server,
        "tests/slow",
        &["--input", r#"{"seconds": 120, "label": "long"}"#],
    );
    server.wait_task(&long, Duration::from_secs(60), |t| t["status"] == 7);
    let queued: Vec<(String, String)> = (1..=4)
        .map(|n| {
            let label = format!("q{n}");
            let input = json!({"seconds": 0.05, "label": label}).to_string();
            (
                sb.submit(&server, "tests/slow", &["--input", &input]),
                label,
            )
        })
        .collect();
    for (id, _) in &queued {
        let status = sb.task(&server, id)["status"].as_u64().unwrap();
        assert!(status <= 2, "task {id} should be waiting, is {status}");
    }

    server.kill9();
    // The worker goes with its host (PR_SET_PDEATHSIG), even after kill -9.
    let left = server.wait_no_app_processes(Duration::from_secs(15));
    assert!(left.is_empty(), "app processes outlived kill -9: {left:?}");

    let server = sb.start(&flags);
    // The interrupted task ended (it cannot be resumed) with a reason.
    let interrupted = server.wait_task(&long, Duration::from_secs(30), |t| {
        t["status"].as_u64().unwrap() >= 10
    });
    assert_eq!(interrupted["status"], 11, "{interrupted:#}");
    assert!(
        !interrupted["error"].as_str().unwrap_or("").is_empty(),
        "{interrupted:#}"
    );
    assert_eq!(
        interrupted["input"],
        json!({"seconds": 120, "label": "long"})
    );
    // The queued ones run, each with its own input.
    for (id, label) in &queued {
        let doc = sb.run_json(&server, &["--json", "task", "get", id, "--wait"], 0);
        assert_eq!(
            doc["output"],
            json!({"output_meta": null, "label": label, "slept": 0.05}),
            "{doc:#}"
        );
    }
    let out = sb.run(&server, &["--json", "task", "list", "--all"]);
    assert_code(&out, 0);
    let listed: Vec<String> = json_stdout(&out)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<String> = queued.iter().rev().map(|(id, _)| id.clone()).collect();
    expected.push(long.clone());
    assert_eq!(listed, expected);
    sb
}

#[test]
fn sigterm_stops_the_server_gracefully_and_the_signing_key_persists() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let mut server = sb.start(&[]);
    let key_path = sb.data_dir().join("signing.key");
    let key = std::fs::read(&key_path).unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = sb.run(
        &server,
        &[
            "--json",
            "app",
            "run",
            "tests/multi-fn",
            "--input",
            r#"{"text": "a"}"#,
        ],
    );
    assert_code(&out, 0);
    let id = json_stdout(&out)["task_id"].as_str().unwrap().to_string();
    assert!(!server.app_processes().is_empty(), "a worker should be up");

    let status = server
        .terminate(Duration::from_secs(30))
        .expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        server
            .log()
            .contains("infsh serving 1 app on http://127.0.0.1:"),
        "{}",
        server.log()
    );
    let left = server.wait_no_app_processes(Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "workers outlived a graceful stop: {left:?}"
    );

    // Same data folder: same key, same tasks.
    let server = sb.start(&[]);
    assert_eq!(std::fs::read(&key_path).unwrap(), key);
    let task = sb.task(&server, &id);
    assert_eq!(task["status"], 10);
    assert_eq!(task["output"]["echo"], "a");
}
