//! Results on stdout: pretty for people, one JSON document with `--json`.
//! Errors are printed by `main` through [`print_failure`].

use console::style;
use serde_json::{json, Value};

use crate::exit::Failure;

/// With `--json` prints `value` as one JSON document; otherwise calls `human`.
pub fn print_json_or(value: &Value, json_mode: bool, human: impl FnOnce()) {
    if json_mode {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("JSON values serialize")
        );
    } else {
        human();
    }
}

/// The output of `app run` for a person: the output JSON, then its files.
pub fn print_run_human(report: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(&report["output"]).expect("JSON values serialize")
    );
    if let Some(files) = report["files"].as_array() {
        for file in files {
            let place = file["copied_to"]
                .as_str()
                .or(file["path"].as_str())
                .or(file["uri"].as_str())
                .unwrap_or("?");
            eprintln!(
                "{} {} {}",
                style("file").cyan(),
                file["pointer"].as_str().unwrap_or(""),
                place
            );
        }
    }
}

/// An error for a person (stderr) or, with `--json`, as a JSON document on stdout.
pub fn print_failure(failure: &Failure, json_mode: bool) {
    if json_mode && !failure.report_printed {
        let doc = json!({
            "status": "failed",
            "error": {
                "code": failure.code.name(),
                "exit_code": failure.code as i32,
                "message": failure.message,
                "traceback": failure.traceback,
            }
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON values serialize")
        );
    }
    if let Some(traceback) = &failure.traceback {
        eprintln!("{}", traceback.trim_end());
    }
    eprintln!("{} {}", style("error:").red().bold(), failure.message);
}
