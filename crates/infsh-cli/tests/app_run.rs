//! End to end: `infsh app run` with real Python workers on the fixture apps.

mod common;

use common::*;
use serde_json::json;

#[test]
fn runs_the_default_function_with_inline_json() {
    let sb = Sandbox::new();
    let out = sb.app_run_json(fixture("default-fn"), &["--input", r#"{"name": "Ada"}"#]);
    assert_code(&out, 0);
    let doc = json_stdout(&out);
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["function"], "greet");
    assert_eq!(doc["output"]["message"], "Hello, Ada!");
}

#[test]
fn runs_a_named_function_from_an_input_file() {
    let sb = Sandbox::new();
    let app = fixture("multi-fn");
    let out = sb
        .infsh()
        .args(["--json", "app", "run"])
        .arg(&app)
        .args(["--function", "upscale", "--input"])
        .arg(app.join("input_upscale.json"))
        .output()
        .unwrap();
    assert_code(&out, 0);
    let doc = json_stdout(&out);
    assert_eq!(doc["function"], "upscale");
    assert_eq!(doc["output"]["setup_count"], 1);
}

#[test]
fn app_colon_function_names_the_function() {
    let sb = Sandbox::new();
    let app = fixture("default-fn");
    let out = sb
        .infsh()
        .args(["--json", "app", "run"])
        .arg(format!("{}:shout", app.display()))
        .args(["--input", r#"{"text": "ada"}"#])
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(json_stdout(&out)["function"], "shout");
    assert_eq!(json_stdout(&out)["output"]["text"], "ADA!");
}

#[test]
fn the_example_file_is_the_default_input() {
    let sb = Sandbox::new();
    let out = sb.app_run_json(fixture("multi-fn"), &["--function", "generate"]);
    assert_code(&out, 0);
    assert_eq!(json_stdout(&out)["function"], "generate");
}

#[test]
fn every_setup_signature_gets_what_it_asks_for() {
    let cases = [
        ("setup-none", json!(null), json!(null), json!(null)),
        (
            "setup-metadata",
            json!(null),
            json!(null),
            json!("Metadata"),
        ),
        (
            "setup-config",
            json!({"model": "large", "scale": 1}),
            json!("AppSetup"),
            json!(null),
        ),
        (
            "setup-config-annotated",
            json!({"model": "large"}),
            json!("MySetup"),
            json!(null),
        ),
        (
            "setup-config-metadata",
            json!({"model": "large", "scale": 1}),
            json!("AppSetup"),
            json!("Metadata"),
        ),
    ];
    for (variant, config, config_type, metadata_type) in cases {
        let sb = Sandbox::new();
        let out = sb.app_run_json(
            fixture(variant),
            &["--input", "{}", "--setup", r#"{"model": "large"}"#],
        );
        assert_code(&out, 0);
        let output = &json_stdout(&out)["output"];
        assert_eq!(output["variant"], variant, "{variant}");
        assert_eq!(output["config"], config, "{variant}");
        assert_eq!(output["config_type"], config_type, "{variant}");
        assert_eq!(output["metadata_type"], metadata_type, "{variant}");
    }
}

#[test]
fn sync_async_streaming_metadata_and_plain_model_functions_all_run() {
    let sb = Sandbox::new();
    let app = fixture("functions-variety");
    let run = |function: &str, input: &str| {
        let out = sb.app_run_json(&app, &["--function", function, "--input", input]);
        assert_code(&out, 0);
        json_stdout(&out)
    };
    let sync = run("sync_fn", r#"{"text": "abc"}"#);
    assert_eq!(sync["output"]["text"], "ABC");
    assert_eq!(
        sync["output"]["in_event_loop"], false,
        "plain def runs off the event loop"
    );
    // Yields 50 ms apart, more than the worker's 10 ms snapshot interval:
    // each one is a snapshot.
    let stream = run("stream_fn", r#"{"delay": 0.05}"#);
    assert_eq!(stream["output"]["text"], "abc");
    assert_eq!(stream["snapshots"], 3);
    // Yields at once: the first is sent at once, the others may be folded
    // into the next one or into the result (docs/protocol.md, "Streaming").
    let iter = run("iter_fn", r#"{"n": 3}"#);
    let snapshots = iter["snapshots"].as_u64().unwrap();
    assert!((1..=3).contains(&snapshots), "{iter}");
    assert_eq!(iter["output"]["text"], "123");
    let meta = run("with_meta", r#"{"text": "abc"}"#);
    assert_eq!(meta["output"]["metadata_type"], "Metadata");
    assert!(
        meta["output"]["task_id"]
            .as_str()
            .unwrap()
            .starts_with("call-"),
        "metadata carries the task id: {}",
        meta["output"]
    );
    assert_eq!(
        run("plain_model", r#"{"x": 3, "y": 4}"#)["output"],
        json!({"product": 12})
    );
}

#[test]
fn relative_imports_work_in_a_folder_with_dashes() {
    let sb = Sandbox::new();
    let out = sb.app_run_json(
        fixture("my-app-with-dashes"),
        &["--input", r#"{"text": "hi"}"#],
    );
    assert_code(&out, 0);
    assert_eq!(json_stdout(&out)["output"]["result"], "HI!HI!");
}

#[test]
fn from_future_annotations_apps_are_discovered() {
    let sb = Sandbox::new();
    let out = sb.app_run_json(
        fixture("future-annotations"),
        &[
            "--input",
            r#"{"text": "hi"}"#,
            "--setup",
            r#"{"prefix": "pre"}"#,
        ],
    );
    assert_code(&out, 0);
    assert_eq!(json_stdout(&out)["output"]["text"], "pre:hi");
}

#[test]
fn human_output_prints_the_output_json_and_phases() {
    let sb = Sandbox::new();
    let out = sb.app_run(fixture("default-fn"), &["--input", r#"{"name": "Ada"}"#]);
    assert_code(&out, 0);
    let printed: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is the output JSON");
    assert!(printed.is_object());
    let err = stderr(&out);
    for phase in ["start", "setup", "run greet"] {
        assert!(err.contains(phase), "phase {phase} missing from:\n{err}");
    }
}

#[test]
fn app_logs_are_complete_and_in_order_before_the_result() {
    let sb = Sandbox::new();
    let out = sb.app_run(fixture("logs-app"), &["--input", "{}"]);
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("native stderr line"), "{err}");
    assert!(
        err.contains("stdout line 1") && err.contains("warning from logging"),
        "{err}"
    );
    let positions: Vec<usize> = (1..=500)
        .map(|i| {
            err.find(&format!("numbered line {i}\n"))
                .unwrap_or_else(|| panic!("numbered line {i} missing"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "log lines out of order"
    );
    // The phase line for the run comes after every log line of the run.
    let run_line = err.rfind("run run").expect("run phase line");
    assert!(run_line > *positions.last().unwrap());
}
