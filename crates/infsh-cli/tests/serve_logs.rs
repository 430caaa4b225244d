//! What `infsh serve` writes on stderr by default: one line per finished
//! task and a failed task's traceback under its id (text, or JSON lines with
//! --log-format json); and that a task leaves no scratch folder behind.

mod common;

use std::path::Path;
use std::time::Duration;

use common::server::*;
use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// serve's own default logging: INFSH_LOG unset.
fn default_log() -> Vec<(&'static str, String)> {
    vec![("INFSH_LOG", String::new())]
}

#[test]
fn serve_logs_a_line_per_task_and_tracebacks_with_their_task_id() {
    let sb = ServeSandbox::new(&["fn-raises"]);
    let server = sb.start_with_env(&[], &default_log());
    let ok = sb.submit(
        &server,
        "tests/fn-raises",
        &["--function", "ok", "--input", "{}"],
    );
    let failed = sb.submit(&server, "tests/fn-raises", &["--input", "{}"]);
    server.wait_end(&ok, WAIT);
    server.wait_end(&failed, WAIT);
    let log_has = |needle: &str| wait_for(WAIT, || server.log().contains(needle));
    let ok_line = format!("task={ok} app=tests/fn-raises:ok status=completed seconds=");
    let failed_line = format!("task={failed} app=tests/fn-raises:run status=failed seconds=");
    assert!(log_has(&ok_line), "{}", server.log());
    assert!(log_has(&failed_line), "{}", server.log());
    let log = server.log();
    let line = log.lines().find(|l| l.contains(&failed_line)).unwrap();
    assert!(
        line.ends_with("error=ZeroDivisionError: division by zero"),
        "{line}"
    );
    // The traceback comes under its task's id, trimmed to the app's frames.
    let raised =
        format!("task {failed}: the app raised\nTraceback (most recent call last):\n  File ");
    assert!(log.contains(&raised), "{log}");
    assert!(log.contains("in _divide"), "{log}");
    assert!(!log.contains("infsh_worker"), "{log}");
    // INFO lines other than the task lines stay off by default.
    assert!(!log.contains(" INFO infsh_"), "{log}");
}

#[test]
fn serve_log_format_json_writes_one_object_per_line() {
    let sb = ServeSandbox::new(&["fn-raises"]);
    let server = sb.start_with_env(&["--log-format", "json"], &default_log());
    let id = sb.submit(
        &server,
        "tests/fn-raises",
        &["--function", "ok", "--input", "{}"],
    );
    server.wait_end(&id, WAIT);
    let task_line = || {
        server
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|doc| doc["task"] == id.as_str())
    };
    assert!(wait_for(WAIT, || task_line().is_some()), "{}", server.log());
    let doc = task_line().unwrap();
    assert_eq!(doc["target"], "infsh::task", "{doc}");
    assert_eq!(doc["level"], "INFO", "{doc}");
    assert_eq!(doc["app"], "tests/fn-raises:ok", "{doc}");
    assert_eq!(doc["status"], "completed", "{doc}");
    assert!(doc["seconds"].as_f64().unwrap() >= 0.0, "{doc}");
    // Every line of the log is JSON, serve's own messages too.
    let log = server.log();
    for line in log.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    let banner: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(banner["target"], "infsh::serve", "{banner}");
    assert_eq!(
        banner["message"],
        format!("infsh serving 1 app on {}", server.url),
        "{banner}"
    );
}

/// Every `scratch` folder under `root` that still has something in it.
fn leftover_scratch(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "scratch") {
                    for inner in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                        found.push(inner.path().display().to_string());
                    }
                }
                stack.push(path);
            }
        }
    }
    found
}

#[test]
fn a_served_task_leaves_no_scratch_folder_behind() {
    let sb = ServeSandbox::new(&["files-app"]);
    let server = sb.start(&[]);
    let image = fixture("files-app").join("samples/dot.png");
    let input = serde_json::json!({"image": image}).to_string();
    let out_dir = sb.path().join("downloads");
    let out = sb.run(
        &server,
        &[
            "app",
            "run",
            "tests/files-app",
            "--function",
            "invert",
            "--input",
            &input,
            "--output-dir",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_code(&out, 0);
    // The output was stored and downloaded...
    let downloaded: Vec<_> = std::fs::read_dir(&out_dir).unwrap().flatten().collect();
    assert_eq!(downloaded.len(), 1, "{}", stderr(&out));
    // ...and the folder the app wrote it in is gone, with the worker still up.
    assert!(
        wait_for(WAIT, || leftover_scratch(sb.path()).is_empty()),
        "{:?}",
        leftover_scratch(sb.path())
    );
    assert!(
        !server.app_processes().is_empty(),
        "the worker keeps running"
    );
}
