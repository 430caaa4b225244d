//! End to end: every failure the runtime promises a clear message and a
//! distinct exit code for (see `docs/cli.md`).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn unknown_function_lists_the_available_ones() {
    let sb = Sandbox::new();
    let out = sb.app_run(
        fixture("multi-fn"),
        &["--function", "nope", "--input", "{}"],
    );
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains(r#"error: unknown function "nope"; available functions: generate, run, summarize, upscale"#),
        "{}",
        stderr(&out)
    );
}

#[test]
fn schema_invalid_input_names_each_field() {
    let sb = Sandbox::new();
    let out = sb.app_run(
        fixture("validation-app"),
        &[
            "--input",
            r#"{"steps": 99, "mode": "medium", "options": {"seed": "x"}}"#,
        ],
    );
    assert_code(&out, 4);
    let err = stderr(&out);
    assert!(
        err.contains(r#"error: input for function "run" is invalid:"#),
        "{err}"
    );
    assert!(err.contains("  - prompt: is required"), "{err}");
    assert!(err.contains("  - steps: "), "{err}");
    assert!(err.contains("  - mode: "), "{err}");
    assert!(err.contains("  - options.seed: "), "{err}");
}

#[test]
fn schema_invalid_input_as_json_carries_the_error_code() {
    let sb = Sandbox::new();
    let out = sb.app_run_json(fixture("validation-app"), &["--input", "{}"]);
    assert_code(&out, 4);
    let doc = json_stdout(&out);
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["error"]["code"], "input");
    assert_eq!(doc["error"]["exit_code"], 4);
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains("prompt: is required"));
}

#[test]
fn malformed_json_input_is_refused_before_python_starts() {
    let sb = Sandbox::new();
    let out = sb.app_run(fixture("multi-fn"), &["--input", r#"{"text": "#]);
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains("error: --input: malformed JSON in inline JSON at line 1, column 9"),
        "{}",
        stderr(&out)
    );
    // Nothing started: no phase lines.
    assert!(!stderr(&out).contains("start"), "{}", stderr(&out));
}

#[test]
fn malformed_json_file_names_the_file() {
    let sb = Sandbox::new();
    let path = sb.path().join("broken.json");
    std::fs::write(&path, "{\n  \"a\": 1,\n}\n").unwrap();
    let out = sb
        .infsh()
        .args(["app", "run"])
        .arg(fixture("multi-fn"))
        .arg("--input")
        .arg(&path)
        .output()
        .unwrap();
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains(&format!(
            "error: --input: malformed JSON in {} at line 3",
            path.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_folder_without_inference_py_is_refused() {
    let sb = Sandbox::new();
    let app = fixture("no-inference-py");
    let out = sb.app_run(&app, &["--input", "{}"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("inference.py"), "{}", stderr(&out));
}

#[test]
fn a_missing_app_folder_is_refused() {
    let sb = Sandbox::new();
    let out = sb
        .infsh()
        .args(["app", "run", "/nonexistent/app", "--input", "{}"])
        .output()
        .unwrap();
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("/nonexistent/app"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_inference_py_without_app_class_is_refused() {
    let sb = Sandbox::new();
    let out = sb.app_run(fixture("no-app-class"), &["--input", "{}"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("error: inference.py defines no `App` class"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_import_error_shows_the_traceback() {
    let sb = Sandbox::new();
    let out = sb.app_run(fixture("import-error"), &["--input", "{}"]);
    assert_code(&out, 3);
    let err = stderr(&out);
    assert_eq!(
        err.matches("Traceback (most recent call last)").count(),
        1,
        "{err}"
    );
    assert!(err.contains("inference.py"), "{err}");
    assert!(!err.contains("importlib"), "{err}");
    assert!(
        err.contains(
            "error: inference.py raised while being imported: RuntimeError: boom at import"
        ),
        "{err}"
    );
}

#[test]
fn a_raising_setup_has_its_own_exit_code_and_traceback() {
    let sb = Sandbox::new();
    let out = sb.app_run(fixture("setup-raises"), &["--input", "{}"]);
    assert_code(&out, 5);
    let err = stderr(&out);
    assert_eq!(
        err.matches("Traceback (most recent call last)").count(),
        1,
        "{err}"
    );
    assert!(!err.contains("infsh_worker"), "{err}");
    assert!(
        err.contains("error: setup failed: ValueError: setup exploded"),
        "{err}"
    );
}

#[test]
fn a_raising_function_shows_the_traceback() {
    let sb = Sandbox::new();
    let out = sb.app_run(fixture("fn-raises"), &["--input", "{}"]);
    assert_code(&out, 6);
    let err = stderr(&out);
    assert_eq!(
        err.matches("Traceback (most recent call last)").count(),
        1,
        "the traceback once, not also in the app's logs: {err}"
    );
    // infsh's runtime frames are trimmed: the app's frame comes first.
    let first_frame = err
        .lines()
        .find(|line| line.trim_start().starts_with("File "))
        .unwrap_or_default();
    assert!(first_frame.contains("fn-raises/inference.py"), "{err}");
    assert!(!err.contains("infsh_worker"), "{err}");
    assert!(
        err.contains("error: the function raised ZeroDivisionError: division by zero"),
        "{err}"
    );
}

#[test]
fn a_worker_that_exits_mid_call_is_reported_with_its_status() {
    let sb = Sandbox::new();
    let out = sb.app_run(
        fixture("worker-dies"),
        &["--function", "exit3", "--input", "{}"],
    );
    assert_code(&out, 7);
    let err = stderr(&out);
    assert!(
        err.contains("error: the worker process died during call exit3 (exit status 3)"),
        "{err}"
    );
    assert!(
        err.contains("about to exit"),
        "the app's last words are shown: {err}"
    );
}

#[test]
fn a_worker_killed_by_a_signal_is_reported_with_the_signal() {
    let sb = Sandbox::new();
    for (function, signal) in [
        ("sigkill", "signal 9 (SIGKILL)"),
        ("segfault", "signal 11 (SIGSEGV)"),
    ] {
        let out = sb.app_run(
            fixture("worker-dies"),
            &["--function", function, "--input", "{}"],
        );
        assert_code(&out, 7);
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "error: the worker process died during call {function} ({signal})"
            )),
            "{err}"
        );
    }
}

#[test]
fn timeout_stops_a_hung_sync_function_and_its_children() {
    let sb = Sandbox::new();
    let pid_file = sb.path().join("child.pid");
    let input = serde_json::json!({"pid_file": pid_file}).to_string();
    let out = sb.app_run(
        fixture("hangs"),
        &[
            "--function",
            "sync_hang",
            "--timeout",
            "2",
            "--input",
            &input,
        ],
    );
    assert_code(&out, 8);
    assert!(
        stderr(&out)
            .contains("error: function sync_hang timed out after 2s; the worker was stopped"),
        "{}",
        stderr(&out)
    );
    let child: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || process_gone(child)),
        "the app's child process {child} outlived infsh"
    );
}

#[test]
fn ctrl_c_cancels_a_hung_async_function_and_leaves_no_process() {
    let sb = Sandbox::new();
    let pid_file = sb.path().join("child.pid");
    let cancel_log = sb.path().join("cancel.log");
    let input = serde_json::json!({"pid_file": pid_file}).to_string();
    let mut child = sb
        .std_infsh()
        .args(["app", "run"])
        .arg(fixture("hangs"))
        .args(["--function", "async_hang", "--input", &input])
        .env("INFSH_TEST_CANCEL_LOG", &cancel_log)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || pid_file.exists()
            && !std::fs::read_to_string(&pid_file)
                .unwrap_or_default()
                .trim()
                .is_empty()),
        "the function never started"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut status = None;
    assert!(
        wait_for(Duration::from_secs(15), || {
            status = child.try_wait().unwrap();
            status.is_some()
        }),
        "infsh did not exit after Ctrl-C"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        status.unwrap().code(),
        Some(130),
        "stderr:\n{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("interrupted during function async_hang"),
        "{}",
        stderr(&out)
    );
    assert!(
        std::fs::read_to_string(&cancel_log)
            .unwrap_or_default()
            .contains("on_cancel"),
        "on_cancel was not called"
    );
    let grandchild: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || process_gone(grandchild)),
        "the app's child process {grandchild} outlived infsh"
    );
}

#[test]
fn input_files_that_do_not_exist_are_named() {
    let sb = Sandbox::new();
    let out = sb.app_run(
        fixture("files-app"),
        &[
            "--function",
            "describe",
            "--input",
            r#"{"file": "no/such/file.png"}"#,
        ],
    );
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains("no/such/file.png"),
        "{}",
        stderr(&out)
    );
}
