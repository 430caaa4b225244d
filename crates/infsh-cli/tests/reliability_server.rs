//! Reliability of the `infsh serve` process itself, end to end: the real
//! binary, real Python workers, real SQLite.
//!
//! - `kill -9` and a restart on the same data folder: stored files (uploads
//!   and outputs) are still served, the task that was running is FAILED as
//!   interrupted, the queued ones run.
//! - Secrets: a missing one is a 412 before any worker starts; a configured
//!   one never shows in the API, the database files or the server's stderr.
//! - SIGTERM: the running task finishes, `unload` runs, exit 0, nothing left.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::server::ServeSandbox;
use common::wait_for;
use infsh_testkit::add_env;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const INTERRUPTED: &str = "interrupted: the server stopped while the task was running";
const LIMIT: Duration = Duration::from_secs(90);

/// The id in a file URI `http://…/files/<id>/<name>`.
fn file_id(uri: &str) -> String {
    let rest = uri.split("/files/").nth(1).expect(uri);
    rest.split('/').next().unwrap().to_string()
}

/// Whether `needle` occurs in the file's bytes.
fn file_holds(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Item 4: after `kill -9`, a restart on the same data folder serves the
/// stored files (an upload and a task's output file), fails the task that
/// was running as interrupted, and runs the queued ones.
#[test]
fn after_kill_9_stored_files_are_served_and_no_acknowledged_task_is_lost() {
    let sb = ServeSandbox::new(&["files-app", "slow"]);
    let mut server = sb.start_exact(&[]);

    let created = server.api(
        "POST",
        "/files",
        Some(json!({"files": [{"uri": "", "filename": "note.txt",
                               "content_type": "text/plain", "size": 12}]})),
        200,
    );
    let upload = created[0].clone();
    let (status, text) = server
        .raw(
            "PUT",
            upload["upload_url"].as_str().unwrap(),
            Some(b"hello, disk\n"),
            "application/octet-stream",
        )
        .unwrap();
    assert_eq!(status, 200, "{text}");
    let upload_id = upload["id"].as_str().unwrap().to_string();

    let made = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/files-app", "function": "make_files",
                    "input": {"label": "L"}, "wait": true})),
        200,
    );
    assert_eq!(made["status"], 10, "{made:#}");
    let output_uri = made["output"]["files"][0]["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let output_id = file_id(&output_uri);

    let long =
        server.submit(json!({"app": "tests/slow", "input": {"seconds": 120, "label": "long"}}));
    server.wait_task(&long, LIMIT, |t| t["status"] == 7);
    let queued: Vec<(String, String)> = (1..=3)
        .map(|n| {
            let label = format!("q{n}");
            let id = server.submit(json!({"app": "tests/slow",
                                          "input": {"seconds": 0.05, "label": label}}));
            (id, label)
        })
        .collect();

    server.kill9();
    let left = server.wait_no_app_processes(Duration::from_secs(15));
    assert!(left.is_empty(), "workers outlived kill -9: {left:?}");

    let server = sb.start_exact(&[]);
    for (path, want) in [
        (format!("/files/{upload_id}"), "hello, disk\n"),
        (format!("/files/{output_id}/one.txt"), "one\n"),
    ] {
        let (status, body) = server.request("GET", &path, None).unwrap();
        assert_eq!((status, body.as_str()), (200, want), "{path}");
    }
    let interrupted = server.wait_end(&long, LIMIT);
    assert_eq!(interrupted["status"], 11, "{interrupted:#}");
    assert_eq!(interrupted["error"], INTERRUPTED);
    for (id, label) in &queued {
        let done = server.wait_end(id, LIMIT);
        assert_eq!(done["status"], 10, "{done:#}");
        assert_eq!(done["output"]["label"], label.as_str());
    }
    let listed = server.api("GET", "/tasks?limit=100", None, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 5, "{listed:#}");
}

/// Item 7: a missing required secret or integration is a 412 in the
/// client's shape before any worker starts; a configured secret reaches the
/// app, and whatever the app prints, logs, returns or raises with it shows
/// `[redacted]` in the API, and the value is nowhere in the database files
/// or the server's stderr. (Also item 2 on the wire: an app whose setup
/// fails makes `GET /ready` degraded, with its last error.)
#[test]
fn secrets_stay_out_of_the_api_the_database_and_the_servers_stderr() {
    let secret = "tok-51d3c0ffee-do-not-print";
    let sb = ServeSandbox::new(&["leaky"]);
    sb.add_fixture_as(
        "leaky",
        "leaky-setup",
        "namespace: tests\nname: leaky-setup\nsecrets:\n  - key: LEAKY_TOKEN\nenv:\n  LEAKY_SETUP_FAILS: \"1\"\n",
    );
    sb.add_fixture_as(
        "leaky",
        "needs-more",
        "namespace: tests\nname: needs-more\nsecrets:\n  - key: NOT_CONFIGURED\n    description: an API token\nintegrations:\n  - key: SOME_ACCOUNT\n",
    );
    let secret_flag = format!("LEAKY_TOKEN={secret}");
    let mut server = sb.start_exact(&["--secret", &secret_flag]);

    // 412, before any worker starts.
    let (status, text) = server
        .request(
            "POST",
            "/apps/run",
            Some(json!({"app": "tests/needs-more", "function": "leak", "input": {}})),
        )
        .unwrap();
    assert_eq!(status, 412, "{text}");
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        problem["type"],
        "https://infsh.dev/errors/requirements_not_met"
    );
    assert_eq!(problem["status"], 412);
    let errors = problem["errors"].as_array().unwrap();
    let shape: Vec<(&str, &str, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["key"].as_str().unwrap(),
                e["action"]["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("secret", "NOT_CONFIGURED", "add_secret"),
            ("integration", "SOME_ACCOUNT", "connect")
        ]
    );
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("an API token"));
    assert!(server.app_processes().is_empty(), "no worker started");
    let ready = server.api("GET", "/ready", None, 200);
    let needs = ready["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "tests/needs-more")
        .unwrap()
        .clone();
    assert_eq!(needs["state"], "idle", "{ready:#}");

    // The secret leaks every way an app can leak it.
    let leak = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/leaky", "function": "leak", "input": {}, "wait": true})),
        200,
    );
    assert_eq!(leak["status"], 10, "{leak:#}");
    assert_eq!(leak["output"]["text"], "the token is [redacted]");
    let logs = leak["logs"].to_string();
    for line in ["setup sees", "stdout", "stderr", "logging"] {
        assert!(
            logs.contains(&format!("{line} [redacted]")),
            "{line}: {logs}"
        );
    }
    let boom = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/leaky", "function": "boom", "input": {}, "wait": true})),
        200,
    );
    assert_eq!(
        boom["error"], "ValueError: bad token [redacted]",
        "{boom:#}"
    );
    assert!(boom["logs"].to_string().contains("Traceback"));
    let setup = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/leaky-setup", "function": "leak", "input": {}, "wait": true})),
        200,
    );
    assert_eq!(
        setup["error"],
        "setup failed: RuntimeError: cannot log in with [redacted]"
    );
    let ready = server.api("GET", "/ready", None, 200);
    assert_eq!(ready["status"], "degraded", "{ready:#}");
    let broken = ready["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "tests/leaky-setup")
        .unwrap()
        .clone();
    assert_eq!(broken["state"], "unhealthy");
    assert_eq!(
        broken["last_error"],
        "setup failed: RuntimeError: cannot log in with [redacted]"
    );

    let mut answers = vec![ready.to_string()];
    for id in [&leak["id"], &boom["id"], &setup["id"]] {
        answers.push(server.task(id.as_str().unwrap()).to_string());
    }
    for path in ["/tasks?limit=100", "/apps", "/apps/tests/leaky", "/metrics"] {
        answers.push(server.request("GET", path, None).unwrap().1);
    }
    for answer in &answers {
        assert!(!answer.contains(secret), "{answer}");
    }

    // What the app prints outside of a task (at import, in unload) goes to
    // the server's stderr: redacted too.
    let status = server.terminate(LIMIT).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(!log.contains(secret), "the server's stderr:\n{log}");
    assert!(
        log.contains("importing with [redacted]"),
        "the import's output is not logged:\n{log}"
    );
    let mut db_files = 0;
    for entry in std::fs::read_dir(sb.data_dir()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("infsh.db") {
            db_files += 1;
            assert!(
                !file_holds(&entry.path(), secret),
                "{} holds the secret",
                entry.path().display()
            );
        }
    }
    assert!(db_files >= 1);
}

/// Has `tests/slow` record its unloads; returns the record.
fn record_unloads(sb: &ServeSandbox) -> PathBuf {
    let marker = sb.path().join("unloaded");
    add_env(&sb.apps_dir().join("slow"), &[("UNLOAD_MARKER", &marker)]);
    marker
}

/// Item 8: SIGTERM while a task runs: the task completes (within
/// `--shutdown-grace`), a queued one stays queued for the next start,
/// `unload` runs, the server exits 0 and no process is left in the apps
/// folder.
#[test]
fn sigterm_lets_the_running_task_finish_runs_unload_and_leaves_nothing() {
    let sb = ServeSandbox::new(&["slow"]);
    let marker = record_unloads(&sb);
    let mut server = sb.start_exact(&["--shutdown-grace", "60"]);
    let started = sb.path().join("started");
    let running = server.submit(json!({"app": "tests/slow", "function": "nap",
        "input": {"seconds": 2, "started_file": started.to_string_lossy()}}));
    let queued = server.submit(json!({"app": "tests/slow", "function": "nap",
        "input": {"seconds": 0}}));
    assert!(
        wait_for(LIMIT, || started.exists()),
        "the task never started; log:\n{}",
        server.log()
    );
    assert!(!server.app_processes().is_empty());

    let status = server.terminate(LIMIT).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        server.log().contains("infsh: shutting down"),
        "{}",
        server.log()
    );
    let unloads = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(unloads.lines().count(), 1, "unload ran once: {unloads:?}");
    let left = server.wait_no_app_processes(Duration::from_secs(15));
    assert!(left.is_empty(), "left after SIGTERM: {left:?}");

    let server = sb.start_exact(&[]);
    let done = server.task(&running);
    assert_eq!(done["status"], 10, "{done:#}");
    assert_eq!(done["output"]["slept"], 2.0);
    let later = server.wait_end(&queued, LIMIT);
    assert_eq!(later["status"], 10, "the queued task ran after the restart");
}

/// Item 8: during the shutdown grace the server still answers, refuses new
/// runs with 503 `shutting_down`, and still serves the running task
/// (`infsh serve` keeps its listener open until the engine has stopped).
#[test]
fn during_the_shutdown_grace_new_runs_get_503() {
    let sb = ServeSandbox::new(&["slow"]);
    let marker = record_unloads(&sb);
    let mut server = sb.start_exact(&["--shutdown-grace", "60"]);
    let started = sb.path().join("started");
    let running = server.submit(json!({"app": "tests/slow", "function": "nap",
        "input": {"seconds": 3, "started_file": started.to_string_lossy()}}));
    assert!(wait_for(LIMIT, || started.exists()));
    let pid = server.pid();
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    // An unknown app is a 404 until the shutdown begins, then a 503.
    let probe = json!({"app": "no/such-app", "input": {}});
    assert!(
        wait_for(LIMIT, || matches!(
            server.request("POST", "/apps/run", Some(probe.clone())),
            Some((503, _))
        )),
        "{}",
        server.log()
    );
    let refused = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/slow", "function": "nap", "input": {"seconds": 0}})),
        503,
    );
    assert_eq!(refused["type"], "https://infsh.dev/errors/shutting_down");
    let task = server.task(&running);
    assert!(task["status"].as_u64().unwrap() <= 10, "{task:#}");
    let status = server.wait_exit(LIMIT).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
    let server = sb.start_exact(&[]);
    assert_eq!(server.task(&running)["status"], 10);
}
