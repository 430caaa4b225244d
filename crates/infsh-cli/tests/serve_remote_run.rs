//! End to end: the real `infsh serve` with real Python workers, driven by
//! `infsh app run --api-url` (remote mode): outputs like a local run,
//! errors mapped to exit codes, uploads and downloads, logs, timeout and
//! Ctrl-C cancelling the remote task, API keys.

mod common;
#[path = "common/held_proxy.rs"]
mod held_proxy;

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use common::server::*;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

#[test]
fn a_remote_run_reports_like_a_local_run_and_setup_runs_once() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start(&[]);
    assert_eq!(server.apps, vec!["tests/multi-fn"]);
    let app_dir = sb.apps_dir().join("multi-fn");

    let doc = sb.run_json(
        &server,
        &[
            "--json",
            "app",
            "run",
            "tests/multi-fn",
            "--function",
            "upscale",
            "--input",
            app_dir.join("input_upscale.json").to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["app"], "tests/multi-fn");
    assert_eq!(doc["function"], "upscale");
    assert_eq!(
        doc["output"],
        json!({"output_meta": null, "value": 6.0, "setup_count": 1})
    );
    assert_eq!(doc["files"], json!([]));
    assert!(!doc["task_id"].as_str().unwrap().is_empty());

    // `ns/name:function` and inline JSON; the same worker, so still one setup.
    let out = sb.run(
        &server,
        &[
            "--json",
            "app",
            "run",
            "tests/multi-fn:summarize",
            "--input",
            r#"{"text": "one two three four", "max_words": 2}"#,
        ],
    );
    assert_code(&out, 0);
    assert_eq!(
        json_stdout(&out)["output"],
        json!({"output_meta": null, "summary": "one two", "word_count": 4, "setup_count": 1})
    );

    // A local app folder names the app (inf.yml) and gives its example input.
    let out = sb.run(
        &server,
        &[
            "--json",
            "app",
            "run",
            app_dir.to_str().unwrap(),
            "--function",
            "generate",
        ],
    );
    assert_code(&out, 0);
    assert_eq!(
        json_stdout(&out)["output"]["items"],
        json!(["cat-0", "cat-1"])
    );

    // People get the output JSON on stdout and the phases on stderr.
    let out = sb.run(
        &server,
        &[
            "app",
            "run",
            "tests/multi-fn",
            "--input",
            r#"{"text": "hey"}"#,
        ],
    );
    assert_code(&out, 0);
    let output: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Human output leaves out the SDK's empty `output_meta`.
    assert_eq!(
        output,
        json!({"echo": "hey", "length": 3, "setup_count": 1})
    );
    let err = stderr(&out);
    assert!(err.contains("✓ connect"), "{err}");
    assert!(err.contains("✓ run run"), "{err}");
}

#[test]
fn unknown_apps_functions_and_bad_input_exit_4() {
    let sb = ServeSandbox::new(&["multi-fn", "validation-app"]);
    let server = sb.start(&[]);

    let out = sb.run(&server, &["app", "run", "tests/nope"]);
    assert_code(&out, 4);
    let err = stderr(&out);
    assert!(err.contains("unknown app \"tests/nope\""), "{err}");
    assert!(err.contains("tests/multi-fn"), "{err}");

    let out = sb.run(
        &server,
        &["app", "run", "tests/multi-fn", "--function", "nope"],
    );
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains(
            "unknown function \"nope\"; available functions: generate, run, summarize, upscale"
        ),
        "{}",
        stderr(&out)
    );

    let doc = sb.run_json(
        &server,
        &[
            "--json",
            "app",
            "run",
            "tests/validation-app",
            "--input",
            r#"{"prompt": "x", "steps": 99, "mode": "medium"}"#,
        ],
        4,
    );
    assert_eq!(doc["error"]["code"], "input");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("input for function \"run\" is invalid:"),
        "{message}"
    );
    assert!(message.contains("steps"), "{message}");
    assert!(message.contains("mode"), "{message}");

    let out = sb.run(&server, &["app", "run", "not-an-id"]);
    assert_code(&out, 4);
    assert!(stderr(&out).contains("NAMESPACE/NAME"), "{}", stderr(&out));
}

#[test]
fn a_raising_function_exits_6_and_its_logs_are_shown() {
    let sb = ServeSandbox::new(&["fn-raises"]);
    let server = sb.start(&[]);
    let out = sb.run(&server, &["--json", "app", "run", "tests/fn-raises"]);
    assert_code(&out, 6);
    let doc = json_stdout(&out);
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["error"]["code"], "function");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("ZeroDivisionError"), "{message}");
    assert!(message.contains("division by zero"), "{message}");
    assert!(
        message.starts_with("the function raised ZeroDivisionError"),
        "{message}"
    );
    let traceback = doc["error"]["traceback"].as_str().expect("a traceback");
    assert!(
        traceback.starts_with("Traceback (most recent call last)"),
        "{traceback}"
    );
    assert!(traceback.contains("in _divide"), "{traceback}");
    assert!(
        stderr(&out).contains("dividing by zero..."),
        "{}",
        stderr(&out)
    );

    // The other function of the same app still works.
    let out = sb.run(&server, &["--json", "app", "run", "tests/fn-raises:ok"]);
    assert_code(&out, 0);
    assert_eq!(
        json_stdout(&out)["output"],
        json!({"output_meta": null, "ok": true})
    );
}

#[test]
fn a_failing_setup_exits_5() {
    let sb = ServeSandbox::new(&["setup-raises"]);
    let server = sb.start(&[]);
    let out = sb.run(&server, &["app", "run", "tests/setup-raises"]);
    assert_code(&out, 5);
    assert!(stderr(&out).contains("setup exploded"), "{}", stderr(&out));
}

/// The `error: ` line of a failed run.
fn error_line(out: &std::process::Output) -> String {
    let err = stderr(out);
    err.lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{err}"))
        .to_string()
}

#[test]
fn a_function_whose_schema_does_not_compile_exits_3_locally_and_remotely() {
    let sb = ServeSandbox::new(&["invalid-schema"]);
    let server = sb.start(&[]);
    let remote = sb
        .infsh(&server)
        .args([
            "app",
            "run",
            "tests/invalid-schema",
            "--input",
            r#"{"text": "x"}"#,
        ])
        .output()
        .unwrap();
    assert_code(&remote, 3);
    let local = Sandbox::new()
        .infsh()
        .args(["app", "run"])
        .arg(fixture("invalid-schema"))
        .args(["--input", r#"{"text": "x"}"#])
        .output()
        .unwrap();
    assert_code(&local, 3);
    // One rule and one message: infsh-core's, in both places.
    let line = error_line(&local);
    assert!(
        line.starts_with("error: function \"run\" is refused: its input schema does not compile: ")
            && line.contains(": at /type: 12 "),
        "{line}"
    );
    assert_eq!(error_line(&remote), line);
    // Nothing was submitted; the app's other function runs.
    let (status, body) = http_get(&server.url, "/tasks", server.key).expect("the server answers");
    assert_eq!(status, 200, "{body}");
    let tasks: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tasks["data"]["items"], json!([]), "{body}");
    let out = sb
        .infsh(&server)
        .args([
            "--json",
            "app",
            "run",
            "tests/invalid-schema:fine",
            "--input",
        ])
        .arg(r#"{"text": "x"}"#)
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(json_stdout(&out)["output"]["text"], "x");
}

#[test]
fn app_logs_stream_to_stderr_and_json_stays_clean() {
    let sb = ServeSandbox::new(&["logs-app"]);
    let server = sb.start(&[]);
    let out = sb.run(&server, &["--json", "app", "run", "tests/logs-app"]);
    assert_code(&out, 0);
    assert_eq!(
        json_stdout(&out)["output"],
        json!({"output_meta": null, "ok": true})
    );
    let err = stderr(&out);
    for line in [
        "stdout line 1",
        "stdout line 3",
        "numbered line 1",
        "numbered line 500",
    ] {
        assert!(err.contains(line), "stderr lacks {line:?}:\n{err}");
    }
    // Each line once, even though every snapshot repeats the whole list.
    assert_eq!(err.matches("numbered line 250\n").count(), 1, "{err}");
}

#[test]
fn local_files_are_uploaded_and_output_files_downloaded() {
    let sb = ServeSandbox::new(&["files-app"]);
    let server = sb.start(&[]);
    let sample = sb.apps_dir().join("files-app/samples/dot.png");
    let png = std::fs::read(&sample).unwrap();

    // A relative path, resolved against the input file's folder, uploaded.
    let inputs = sb.path().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(&sample, inputs.join("dot.png")).unwrap();
    std::fs::write(inputs.join("in.json"), r#"{"file": "dot.png"}"#).unwrap();
    let doc = sb.run_json(
        &server,
        &[
            "--json",
            "app",
            "run",
            "tests/files-app",
            "--function",
            "describe",
            "--input",
            inputs.join("in.json").to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(doc["output"]["size"], png.len());
    assert_eq!(doc["output"]["first_bytes_hex"], "89504e470d0a1a0a");
    assert_eq!(doc["output"]["filename"], "dot.png");

    // A missing local file fails before anything is sent.
    let out = sb.run(
        &server,
        &[
            "app",
            "run",
            "tests/files-app",
            "--function",
            "describe",
            "--input",
            r#"{"file": "/nonexistent/x.png"}"#,
        ],
    );
    assert_code(&out, 4);
    assert!(stderr(&out).contains("no such file"), "{}", stderr(&out));

    // An image out, downloaded from its URI into --output-dir.
    let out_dir = sb.path().join("out");
    let doc = sb.run_json(
        &server,
        &[
            "--json",
            "app",
            "run",
            "tests/files-app",
            "--function",
            "invert",
            "--input",
            &json!({"image": sample}).to_string(),
            "--output-dir",
            out_dir.to_str().unwrap(),
        ],
        0,
    );
    let file = &doc["files"][0];
    assert_eq!(file["pointer"], "/image");
    assert!(
        file["uri"].as_str().unwrap().starts_with(&server.url),
        "{doc:#}"
    );
    let copied = std::path::PathBuf::from(file["copied_to"].as_str().unwrap());
    assert_eq!(copied.parent().unwrap(), out_dir);
    let bytes = std::fs::read(&copied).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(file["size"], bytes.len());

    // Several files, nested, each downloaded under its own name.
    let many = sb.path().join("many");
    let doc = sb.run_json(
        &server,
        &[
            "--json",
            "app",
            "run",
            "tests/files-app:make_files",
            "--output-dir",
            many.to_str().unwrap(),
        ],
        0,
    );
    let pointers: Vec<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, vec!["/files/0", "/files/1", "/nested/file"]);
    assert_eq!(
        std::fs::read_to_string(many.join("one.txt")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(many.join("two.txt")).unwrap(),
        "two\n"
    );
    assert_eq!(
        std::fs::read_to_string(many.join("nested.txt")).unwrap(),
        "nested\n"
    );
    assert_eq!(doc["output"]["nested"]["label"], "nested");
}

#[test]
fn a_streaming_function_ends_with_its_last_snapshot() {
    let sb = ServeSandbox::new(&["functions-variety"]);
    let server = sb.start(&[]);
    let doc = sb.run_json(
        &server,
        &[
            "--json",
            "app",
            "run",
            "tests/functions-variety:stream_fn",
            "--input",
            r#"{"delay": 0.3}"#,
        ],
        0,
    );
    assert_eq!(doc["output"], json!({"output_meta": null, "text": "abc"}));
    assert!(doc["snapshots"].as_u64().unwrap() >= 1, "{doc:#}");
}

/// Reads a pid the hangs fixture wrote, waiting for the file.
fn read_pid(path: &std::path::Path) -> u32 {
    assert!(
        wait_for(Duration::from_secs(60), || path.exists()),
        "the function never started (no {})",
        path.display()
    );
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn timeout_cancels_the_remote_task_and_exits_8() {
    let sb = ServeSandbox::new(&["hangs"]);
    let server = sb.start(&[]);
    let pid_file = sb.path().join("child.pid");
    let out = sb.run(
        &server,
        &[
            "--json",
            "app",
            "run",
            "tests/hangs:sync_hang",
            "--timeout",
            "2",
            "--input",
            &json!({"pid_file": pid_file}).to_string(),
        ],
    );
    assert_code(&out, 8);
    let doc = json_stdout(&out);
    assert_eq!(doc["error"]["code"], "timeout");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{doc:#}"
    );
    // The app's child process goes with the stopped call.
    let child = read_pid(&pid_file);
    assert!(
        wait_for(Duration::from_secs(20), || process_gone(child)),
        "the hanging call's child {child} survived the timeout\n{}",
        server.log()
    );
    // The task ended on the server too.
    let out = sb.run(&server, &["--json", "task", "list", "--app", "tests/hangs"]);
    assert_code(&out, 0);
    let items = json_stdout(&out)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    let id = items[0]["id"].as_str().unwrap().to_string();
    let task = server.wait_task(&id, Duration::from_secs(20), |t| {
        t["status"].as_u64().unwrap() >= 10
    });
    assert!(
        matches!(task["status"].as_u64(), Some(11) | Some(12)),
        "{task:#}"
    );
}

/// Waits for an interrupted `infsh app run` of `async_hang`: exit 130 and
/// the message; returns its stderr.
fn exits_interrupted(child: &mut std::process::Child) -> String {
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted during function async_hang"),
        "{err}"
    );
    err
}

/// The newest task of tests/hangs, once it is CANCELLED (status 12).
fn last_hangs_task_cancelled(sb: &ServeSandbox, server: &Server) -> serde_json::Value {
    let out = sb.run(server, &["--json", "task", "list", "--app", "tests/hangs"]);
    let id = json_stdout(&out)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    server.wait_task(&id, Duration::from_secs(20), |t| t["status"] == 12)
}

#[test]
fn ctrl_c_cancels_the_remote_task_and_exits_130() {
    let sb = ServeSandbox::new(&["hangs"]);
    let pid_file = sb.path().join("child.pid");
    let cancel_log = sb.path().join("cancel.log");
    // on_cancel appends to INFSH_TEST_CANCEL_LOG (the workers inherit it).
    let server = sb.start_with_env(
        &[],
        &[(
            "INFSH_TEST_CANCEL_LOG",
            cancel_log.to_string_lossy().into_owned(),
        )],
    );
    let mut child = sb
        .std_infsh(&server)
        .args(["app", "run", "tests/hangs:async_hang", "--input"])
        .arg(json!({"pid_file": pid_file}).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let app_child = read_pid(&pid_file);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let err = exits_interrupted(&mut child);
    assert!(err.contains("cancel"), "{err}");

    let task = last_hangs_task_cancelled(&sb, &server);
    assert_eq!(task["status"], 12);
    assert_eq!(
        std::fs::read_to_string(&cancel_log).unwrap_or_default(),
        "on_cancel\n",
        "the app's on_cancel did not run once"
    );
    // The async call stopped in time, so its worker stays up; the child it
    // left behind goes at the latest with the worker (checked on drop).
    assert!(app_child > 0);
}

/// A Ctrl-C that comes after the run was submitted but before the server's
/// answer (the task already runs there) still cancels the task: the CLI
/// listens from before the submission, waits for the id, and cancels.
#[test]
fn ctrl_c_before_the_run_is_answered_still_cancels_the_task() {
    let sb = ServeSandbox::new(&["hangs"]);
    let pid_file = sb.path().join("child.pid");
    let server = sb.start(&[]);
    let proxy = held_proxy::HeldProxy::start(&server.url);
    let mut child = sb
        .std_infsh(&server)
        .env("INFSH_API_URL", &proxy.url)
        .args(["app", "run", "tests/hangs:async_hang", "--input"])
        .arg(json!({"pid_file": pid_file}).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The task runs on the server, and the CLI has not had its id yet.
    read_pid(&pid_file);
    proxy.wait_holding();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    proxy.release();
    let err = exits_interrupted(&mut child);
    assert!(err.contains("was cancelled"), "{err}");
    let task = last_hangs_task_cancelled(&sb, &server);
    assert_eq!(task["status"], 12, "{task:#}");
}

#[test]
fn api_keys_are_required_when_configured() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start_with_key(&[]);

    let out = sb
        .infsh(&server)
        .env_remove("INFSH_API_KEY")
        .args(["--json", "app", "run", "tests/multi-fn"])
        .output()
        .unwrap();
    assert_code(&out, 11);
    let doc = json_stdout(&out);
    assert_eq!(doc["error"]["code"], "auth");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the server refused the API key (HTTP 401)"),
        "{doc:#}"
    );

    let out = sb.run(
        &server,
        &["app", "run", "tests/multi-fn", "--api-key", "wrong"],
    );
    assert_code(&out, 11);

    let out = sb
        .infsh(&server)
        .args(["task", "list"])
        .env("INFSH_API_KEY", "wrong")
        .output()
        .unwrap();
    assert_code(&out, 11);

    let out = sb.run(
        &server,
        &[
            "--json",
            "app",
            "run",
            "tests/multi-fn",
            "--input",
            r#"{"text": "k"}"#,
        ],
    );
    assert_code(&out, 0);
    assert_eq!(json_stdout(&out)["output"]["echo"], "k");
    // /health needs no key, the API does.
    assert_eq!(http_get(&server.url, "/health", None).unwrap().0, 200);
    assert_eq!(http_get(&server.url, "/v1/tasks", None).unwrap().0, 401);
    assert_eq!(
        http_get(&server.url, "/v1/tasks", Some(TEST_KEY))
            .unwrap()
            .0,
        200
    );
}

/// `tests/secret-app`: requires API_TOKEN, may use OTHER; echoes both.
fn add_secret_app(sb: &ServeSandbox) {
    sb.add_app(
        "secret-app",
        &[
            (
                "inf.yml",
                "namespace: tests\nname: secret-app\nsecrets:\n  - key: API_TOKEN\n    description: needed\n  - key: OTHER\n    optional: true\n",
            ),
            ("requirements.txt", "inferencesh\n"),
            (
                "inference.py",
                r#"import os
from typing import Optional

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class RunInput(BaseAppInput):
    pass


class RunOutput(BaseAppOutput):
    token: Optional[str] = None
    other: Optional[str] = None


class App(BaseApp):
    async def run(self, input_data: RunInput) -> RunOutput:
        # Upper-cased: a secret's own value would be redacted from the output.
        upper = lambda key: os.environ[key].upper() if key in os.environ else None
        return RunOutput(token=upper("API_TOKEN"), other=upper("OTHER"))
"#,
            ),
        ],
    );
}

#[test]
fn secrets_reach_the_app_and_a_missing_one_exits_3() {
    let sb = ServeSandbox::new(&[]);
    add_secret_app(&sb);
    {
        let server = sb.start(&[]);
        let out = sb.run(&server, &["--json", "app", "run", "tests/secret-app"]);
        assert_code(&out, 3);
        let message = json_stdout(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("API_TOKEN"), "{message}");
    }
    // A flag wins over --secrets-file, which wins over INFSH_SECRET_<KEY>.
    let file = sb.path().join("secrets.env");
    std::fs::write(&file, "# secrets\nAPI_TOKEN=from-file\n").unwrap();
    let server = sb.start_with_env(
        &[
            "--secrets-file",
            file.to_str().unwrap(),
            "--secret",
            "API_TOKEN=from-flag",
        ],
        &[
            ("INFSH_SECRET_API_TOKEN", "from-env".to_string()),
            ("INFSH_SECRET_OTHER", "other-from-env".to_string()),
        ],
    );
    let out = sb.run(&server, &["--json", "app", "run", "tests/secret-app"]);
    assert_code(&out, 0);
    assert_eq!(
        json_stdout(&out)["output"],
        json!({"output_meta": null, "token": "FROM-FLAG", "other": "OTHER-FROM-ENV"})
    );
}
