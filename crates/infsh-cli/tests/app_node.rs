//! End to end with real Node and real npm packages: JavaScript apps
//! (`kernel: node-*`, `inference.js`) through `infsh app functions|schema|run`:
//! the public markdown-to-html app unmodified, the node-functions fixture
//! with every kind of function, and the ways a JavaScript app fails.
//!
//! The app environments are built with `npm ci` from the fixtures' lock
//! files (the npm registry must be reachable); they are kept in one folder
//! under the target dir, shared by these tests (the build lock makes the
//! first one build and the others wait), so only the first run pays.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A sandbox whose environments folder is shared by the Node tests.
fn node_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    let shared = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-envs");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(sb.path().join("cache")).unwrap();
    std::os::unix::fs::symlink(&shared, sb.path().join("cache/envs")).unwrap();
    sb
}

fn markdown_app() -> PathBuf {
    fixture("public/markdown-to-html")
}

/// `infsh --json app run APP ARGS...`; its report holds `output`, `files`, `snapshots`.
fn run_json(sb: &Sandbox, app: &Path, args: &[&str]) -> std::process::Output {
    sb.infsh_without_python()
        .args(["--json", "app", "run"])
        .arg(app)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_public_markdown_to_html_app_runs_unmodified_and_returns_html_with_a_file() {
    let sb = node_sandbox();
    let app = markdown_app();
    let out = run_json(
        &sb,
        &app,
        &["--input", app.join("input.json").to_str().unwrap()],
    );
    assert_code(&out, 0);
    let report = json_stdout(&out);
    assert_eq!(report["status"], "completed");
    let result = &report["output"];
    let html = result["html"].as_str().unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains(r#"<h1 id="hello-world">Hello World</h1>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<span class="hljs-keyword">const</span>"#),
        "highlight.js ran: {html}"
    );
    assert!(html.contains("<table>"), "GFM tables: {html}");
    // The File output: saved by infsh, holding the same HTML.
    let file = &result["file"];
    assert_eq!(file["filename"], "output.html");
    assert_eq!(file["content_type"], "text/html");
    let path = Path::new(file["path"].as_str().unwrap());
    assert!(path.starts_with(sb.path()), "{}", path.display());
    assert_eq!(std::fs::read_to_string(path).unwrap(), html);
    assert_eq!(file["size"].as_u64().unwrap() as usize, html.len());
}

#[test]
fn functions_and_schema_reproduce_the_committed_functions_schema_json() {
    let sb = node_sandbox();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(markdown_app().join("functions_schema.json")).unwrap(),
    )
    .unwrap();
    let out = sb
        .infsh_without_python()
        .args(["--json", "app", "functions"])
        .arg(markdown_app())
        .output()
        .unwrap();
    assert_code(&out, 0);
    // Same keys in the same order, same values.
    assert_eq!(
        serde_json::to_string(&json_stdout(&out)).unwrap(),
        serde_json::to_string(&committed).unwrap()
    );
    // `app schema` writes the same file into (a copy of) the app folder.
    let copy = sb.path().join("markdown-to-html");
    copy_dir(&markdown_app(), &copy);
    std::fs::remove_file(copy.join("functions_schema.json")).unwrap();
    let out = sb
        .infsh_without_python()
        .args(["app", "schema"])
        .arg(&copy)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(copy.join("functions_schema.json")).unwrap())
            .unwrap();
    assert_eq!(
        serde_json::to_string(&written).unwrap(),
        serde_json::to_string(&committed).unwrap()
    );
}

#[test]
fn every_kind_of_function_is_discovered_with_its_zod_4_schema() {
    let sb = node_sandbox();
    let out = sb
        .infsh_without_python()
        .args(["--json", "app", "functions"])
        .arg(fixture("node-functions"))
        .output()
        .unwrap();
    assert_code(&out, 0);
    let functions = json_stdout(&out);
    let names: Vec<&str> = functions
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // Not helper (no schemas), _private, setup, unload or onCancel.
    assert_eq!(
        names,
        ["add", "big", "count", "crash", "echo", "fail", "hang", "read", "whoami", "write"]
    );
    assert_eq!(
        functions["echo"]["input_schema"]["properties"]["text"],
        serde_json::json!({"type": "string", "description": "Text to echo"})
    );
    assert_eq!(
        functions["echo"]["input_schema"]["required"],
        serde_json::json!(["text"])
    );
    assert_eq!(
        functions["read"]["input_schema"]["properties"]["file"],
        serde_json::json!({"description": "A file to read", "type": "string", "format": "file"})
    );
    assert_eq!(
        functions["whoami"]["output_schema"]["properties"]["mode"],
        serde_json::json!({"type": "string", "enum": ["fast", "slow"]})
    );

    let out = sb
        .infsh_without_python()
        .args(["app", "functions"])
        .arg(fixture("node-functions"))
        .output()
        .unwrap();
    assert_code(&out, 0);
    let lines: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for expected in ["add (sync)", "count (stream)", "echo (async, default)"] {
        assert!(lines.iter().any(|l| l == expected), "{expected}: {lines:?}");
    }
}

#[test]
fn every_signature_runs_with_setup_defaults_logs_and_files() {
    let sb = node_sandbox();
    let app = fixture("node-functions");
    // The default function, its input.json, AppSetup's default, logs.
    let out = sb
        .infsh_without_python()
        .args(["app", "run"])
        .arg(&app)
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(
        json_stdout(&out),
        serde_json::json!({"text": "hello world"})
    );
    let err = stderr(&out);
    assert!(err.contains("setup with greeting hello"), "{err}");
    assert!(err.contains("echo world"), "{err}");

    let out = run_json(
        &sb,
        &app,
        &[
            "--setup",
            r#"{"greeting": "hey"}"#,
            "--input",
            r#"{"text": "ab", "times": 2}"#,
        ],
    );
    assert_code(&out, 0);
    assert_eq!(
        json_stdout(&out)["output"],
        serde_json::json!({"text": "hey abab"})
    );

    let out = run_json(
        &sb,
        &app,
        &["--function", "add", "--input", r#"{"a": 2, "b": 3.5}"#],
    );
    assert_code(&out, 0);
    assert_eq!(json_stdout(&out)["output"], serde_json::json!({"sum": 5.5}));

    let out = run_json(&sb, &app, &["--function", "whoami", "--input", "{}"]);
    assert_code(&out, 0);
    let who = &json_stdout(&out)["output"];
    assert!(
        who["task_id"].as_str().unwrap().starts_with("call-"),
        "{who}"
    );
    assert_eq!(who["has_signal"], true);

    // Streaming: the last snapshot is the result.
    let out = run_json(
        &sb,
        &app,
        &["--function", "count", "--input", r#"{"n": 4}"#],
    );
    assert_code(&out, 0);
    let report = json_stdout(&out);
    assert_eq!(
        report["output"],
        serde_json::json!({"count": 4, "done": true})
    );
    // Yields at once: the first is sent at once, the others may be folded
    // into a later one or into the result (docs/protocol.md, "Streaming").
    let snapshots = report["snapshots"].as_u64().unwrap();
    assert!((1..=4).contains(&snapshots), "{report}");

    // A File input (a local path made absolute by infsh) and a File output.
    let input_file = sb.path().join("in.txt");
    std::fs::write(&input_file, "some text").unwrap();
    let input = serde_json::json!({"file": input_file}).to_string();
    let out = run_json(&sb, &app, &["--function", "read", "--input", &input]);
    assert_code(&out, 0);
    assert_eq!(
        json_stdout(&out)["output"],
        serde_json::json!({"content": "some text", "size": 9})
    );
    let out = run_json(
        &sb,
        &app,
        &[
            "--function",
            "write",
            "--input",
            r#"{"name": "w.txt", "content": "written"}"#,
        ],
    );
    assert_code(&out, 0);
    let report = json_stdout(&out);
    let file = &report["output"]["file"];
    assert_eq!(file["filename"], "w.txt");
    assert_eq!(report["files"][0]["pointer"], "/file");
    let saved = Path::new(file["path"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(saved).unwrap(), "written");
}

#[test]
fn messages_over_the_spill_threshold_travel_both_ways() {
    let sb = node_sandbox();
    // 1.5 MB of input (spilled by the host) and 2 MB of output (by the worker).
    let pad = "p".repeat(1_500_000);
    let input = serde_json::json!({"bytes": 2_000_000, "pad": pad}).to_string();
    let input_file = sb.path().join("big.json");
    std::fs::write(&input_file, input).unwrap();
    let out = run_json(
        &sb,
        &fixture("node-functions"),
        &["--function", "big", "--input", input_file.to_str().unwrap()],
    );
    assert_code(&out, 0);
    let output = &json_stdout(&out)["output"];
    assert_eq!(output["pad_length"], 1_500_000);
    assert_eq!(output["text"].as_str().unwrap().len(), 2_000_000);
}

#[test]
fn bad_input_is_refused_before_the_worker_and_unknown_functions_by_name() {
    let sb = node_sandbox();
    let app = fixture("node-functions");
    let out = run_json(
        &sb,
        &app,
        &["--function", "count", "--input", r#"{"n": 0}"#],
    );
    assert_code(&out, 4);
    let err = stderr(&out);
    assert!(
        err.contains(r#"error: input for function "count" is invalid:"#),
        "{err}"
    );
    let out = run_json(&sb, &app, &["--function", "nope", "--input", "{}"]);
    assert_code(&out, 4);
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn a_function_that_throws_fails_with_its_error_and_stack() {
    let sb = node_sandbox();
    let out = run_json(
        &sb,
        &fixture("node-functions"),
        &["--function", "fail", "--input", "{}"],
    );
    assert_code(&out, 6);
    let err = stderr(&out);
    assert!(
        err.contains("error: the function raised RangeError: boom from fail"),
        "{err}"
    );
    assert!(err.contains("about to fail"), "the app's stderr: {err}");
    assert!(err.contains("inference.js:"), "the stack: {err}");
}

#[test]
fn a_process_exit_is_reported_as_a_crash_with_its_status() {
    let sb = node_sandbox();
    let out = run_json(
        &sb,
        &fixture("node-functions"),
        &["--function", "crash", "--input", "{}"],
    );
    assert_code(&out, 7);
    let err = stderr(&out);
    assert!(
        err.contains("error: the worker process died during call crash (exit status 3)"),
        "{err}"
    );
    assert!(err.contains("crashing now"), "{err}");
}

#[test]
fn a_hanging_function_times_out_and_its_worker_is_stopped() {
    let sb = node_sandbox();
    let out = sb
        .infsh_without_python()
        .args(["app", "run"])
        .arg(fixture("node-functions"))
        .args(["--function", "hang", "--input", "{}", "--timeout", "2"])
        .output()
        .unwrap();
    assert_code(&out, 8);
    let err = stderr(&out);
    assert!(
        err.contains("error: function hang timed out after 2s; the worker was stopped"),
        "{err}"
    );
    let pid: u32 = err
        .split("hanging until cancelled (pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {err}"));
    assert!(
        wait_for(Duration::from_secs(5), || process_gone(pid)),
        "the Node worker {pid} outlived infsh"
    );
}

/// A one-file app in a temporary folder (no package.json: no environment).
fn js_app(sb: &Sandbox, name: &str, inference_js: &str, inf_yml: &str) -> PathBuf {
    let dir = sb.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("inference.js"), inference_js).unwrap();
    std::fs::write(dir.join("inf.yml"), inf_yml).unwrap();
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).unwrap();
    dir
}

#[test]
fn load_errors_of_a_javascript_app_say_what_is_wrong() {
    let sb = node_sandbox();
    let cases = [
        (
            "no-class",
            "export const x = 1;\n",
            "error: inference.js exports no `App` class",
        ),
        (
            "import-error",
            "throw new TypeError('boom at import');\n",
            "error: the app's inference.js failed to load: TypeError: boom at import",
        ),
        (
            "not-zod",
            "export const RunInput = {};\nexport class App { run() {} }\n",
            "error: the app's inference.js failed to load: RunInput (the input of run) is not a Zod schema",
        ),
        (
            "init-throws",
            "export class App { constructor() { throw new Error('no') } }\n",
            "error: new App() threw: Error: no",
        ),
    ];
    for (name, source, expected) in cases {
        let app = js_app(&sb, name, source, "kernel: node-22\n");
        let out = sb
            .infsh_without_python()
            .args(["app", "functions"])
            .arg(&app)
            .output()
            .unwrap();
        assert_code(&out, 3);
        assert!(stderr(&out).contains(expected), "{name}: {}", stderr(&out));
    }

    // kernel: node-22 without any inference.js.
    let dir = sb.path().join("no-js");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("inference.py"), "").unwrap();
    std::fs::write(dir.join("inf.yml"), "kernel: node-22\n").unwrap();
    let out = sb
        .infsh_without_python()
        .args(["app", "functions"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("has no inference.js nor src/inference.js"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_failing_npm_install_shows_npm_s_error() {
    let sb = node_sandbox();
    let app = js_app(
        &sb,
        "bad-package",
        "export class App {}\n",
        "kernel: node-22\n",
    );
    std::fs::write(app.join("package.json"), "{ not json").unwrap();
    let out = sb
        .infsh_without_python()
        .args(["app", "functions"])
        .arg(&app)
        .output()
        .unwrap();
    assert_code(&out, 9);
    let err = stderr(&out);
    assert!(
        err.contains("error: could not build the app's environment: npm failed (exit status: 1)"),
        "{err}"
    );
    assert!(err.contains("JSON"), "npm's own words: {err}");
}

#[test]
fn an_older_node_than_the_kernel_is_warned_about_and_used() {
    let sb = node_sandbox();
    let app = js_app(&sb, "future", "export class App {}\n", "kernel: node-99\n");
    let out = sb
        .infsh_without_python()
        .args(["app", "functions"])
        .arg(&app)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("warning: inf.yml asks for kernel node-99 but ")
            && err.contains(": running it anyway (pass --node PATH for a Node 99 or newer)"),
        "{err}"
    );
    // --node with something that is not Node is an environment error.
    let not_node = sb.path().join("not-node");
    std::fs::write(&not_node, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(
        &not_node,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = sb
        .infsh_without_python()
        .args(["app", "functions", "--node"])
        .arg(&not_node)
        .arg(&app)
        .output()
        .unwrap();
    assert_code(&out, 9);
    assert!(
        stderr(&out).contains(&format!(
            "error: could not build the app's environment: cannot use Node.js {}: `--version` answered \"\" (exit status: 1)",
            not_node.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_lang_node_scaffolds_a_javascript_app_that_passes_its_own_tests() {
    let sb = node_sandbox();
    let app = sb.path().join("my-js-app");
    let out = sb
        .infsh_without_python()
        .args(["app", "init", "--lang", "node"])
        .arg(&app)
        .output()
        .unwrap();
    assert_code(&out, 0);
    for file in [
        "inference.js",
        "inf.yml",
        "package.json",
        "package-lock.json",
    ] {
        assert!(app.join(file).exists(), "{file} missing");
    }
    assert!(!app.join("inference.py").exists());
    let yml = std::fs::read_to_string(app.join("inf.yml")).unwrap();
    assert!(
        yml.contains("name: my-js-app") && yml.contains("kernel: node-22"),
        "{yml}"
    );

    let out = sb
        .infsh_without_python()
        .args(["--json", "app", "test"])
        .arg(&app)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let doc = json_stdout(&out);
    assert_eq!(doc["passed"], 3, "{doc}");

    let out = run_json(
        &sb,
        &app,
        &[
            "--function",
            "run",
            "--input",
            r#"{"name": "Ada"}"#,
            "--setup",
            r#"{"greeting": "Hi"}"#,
        ],
    );
    assert_code(&out, 0);
    assert_eq!(json_stdout(&out)["output"]["text"], "Hi, Ada!");
    let out = run_json(
        &sb,
        &app,
        &[
            "--function",
            "stream",
            "--input",
            // 50 ms between yields, more than the worker's 10 ms snapshot
            // interval: each one is a snapshot.
            r#"{"text": "a b c", "delay": 0.05}"#,
        ],
    );
    assert_code(&out, 0);
    let report = json_stdout(&out);
    assert_eq!(report["output"]["text"], "a b c");
    assert_eq!(report["snapshots"], 3);
}
