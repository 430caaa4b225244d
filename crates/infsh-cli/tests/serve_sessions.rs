//! End to end: `infsh app run --session new|ID [--session-timeout S]` and
//! `infsh session list|get|keepalive|end` against the real `infsh serve`,
//! on tests/fixtures/apps/counter (a count kept in its worker's memory).

mod common;

use common::server::*;
use common::*;
use serde_json::Value;

#[test]
fn a_session_opened_by_app_run_keeps_its_state_and_is_ended_by_session_end() {
    let sb = ServeSandbox::new(&["counter"]);
    let server = sb.start(&["--replicas", "2"]);

    // Human mode: the result on stdout, the session id on stderr.
    let out = sb.run(
        &server,
        &[
            "app",
            "run",
            "tests/counter",
            "--session",
            "new",
            "--session-timeout",
            "120",
        ],
    );
    assert_code(&out, 0);
    let err = stderr(&out);
    let id = err
        .split_whitespace()
        .skip_while(|w| *w != "session")
        .nth(1)
        .expect("the session id on stderr")
        .trim_end_matches(':')
        .to_string();
    assert!(id.starts_with("sess_"), "{err}");
    assert!(stdout(&out).contains("\"count\": 1"), "{}", stdout(&out));

    for n in 2..=3 {
        let report = sb.run_json(
            &server,
            &["--json", "app", "run", "tests/counter", "--session", &id],
            0,
        );
        assert_eq!(report["output"]["count"], n, "{report}");
        assert_eq!(report["session_id"], id.as_str());
    }

    let list = sb.run_json(&server, &["--json", "session", "list"], 0);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let out = sb.run(&server, &["session", "list"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains(&format!("{id}  tests/counter  tests/counter#")),
        "{}",
        stdout(&out)
    );

    let got = sb.run_json(&server, &["--json", "session", "get", &id], 0);
    assert_eq!(got["status"], "active");
    assert_eq!(got["call_count"], 3);
    assert_eq!(got["idle_timeout"], 120);
    let out = sb.run(&server, &["session", "get", &id]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("calls        3"), "{}", stdout(&out));

    let kept = sb.run_json(&server, &["--json", "session", "keepalive", &id], 0);
    assert_eq!(kept["status"], "active");
    let out = sb.run(&server, &["session", "end", &id]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("session {id}: ended"));

    // Over: its calls and its keepalive are refused (exit 4) in the
    // server's words.
    let out = sb.run(&server, &["app", "run", "tests/counter", "--session", &id]);
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains(&format!(
            "session \"{id}\" ended: ended by DELETE /sessions/{{id}}"
        )),
        "{}",
        stderr(&out)
    );
    let out = sb.run(&server, &["session", "keepalive", &id]);
    assert_code(&out, 4);
    let out = sb.run(&server, &["session", "get", "sess_nope"]);
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains("unknown session \"sess_nope\" (sessions live in the server's memory: none survives a restart)"),
        "{}",
        stderr(&out)
    );
    let list: Value = sb.run_json(&server, &["--json", "session", "list"], 0);
    assert_eq!(list, Value::Array(vec![]));
}

#[test]
fn session_flags_are_checked_before_anything_runs() {
    let sb = Sandbox::new();
    // A local run has no server to keep a worker on.
    let out = sb.app_run("tests/counter", &["--session", "new"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out)
            .contains("--session needs a server (a local run's worker ends with the command)"),
        "{}",
        stderr(&out)
    );
    let out = sb.app_run(".", &["--session-timeout", "5"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--session"), "{}", stderr(&out));
    let out = sb.app_run(".", &["--session", "new", "--session-timeout", "3601"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("3601 is not in 1..=3600"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_session_does_not_survive_a_restart_of_the_server_and_says_so() {
    let sb = ServeSandbox::new(&["counter"]);
    let mut server = sb.start(&[]);
    let report = sb.run_json(
        &server,
        &["--json", "app", "run", "tests/counter", "--session", "new"],
        0,
    );
    let id = report["session_id"].as_str().unwrap().to_string();
    assert!(server
        .terminate(std::time::Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let server = sb.start(&[]);
    let out = sb.run(&server, &["app", "run", "tests/counter", "--session", &id]);
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains(&format!(
            "unknown session \"{id}\" (sessions live in the server's memory: none survives a restart)"
        )),
        "{}",
        stderr(&out)
    );
    // The task that opened it is still stored, with its session id.
    let task = sb.task(&server, report["task_id"].as_str().unwrap());
    assert_eq!(task["session_id"], id.as_str());
}
