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

/// The output of `app run` for a person: the output JSON (without the SDK's
/// empty `output_meta`), then a line per file saying where it is.
pub fn print_run_human(report: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(&human_output(&report["output"]))
            .expect("JSON values serialize")
    );
    if let Some(files) = report["files"].as_array() {
        for file in files {
            eprintln!("{}", file_line(file));
        }
    }
}

/// The output as a person reads it: `"output_meta": null`, which every
/// output of the SDK's `BaseAppOutput` carries, says nothing and is left out.
fn human_output(output: &Value) -> Value {
    let mut output = output.clone();
    if let Value::Object(map) = &mut output {
        if map.get("output_meta").is_some_and(Value::is_null) {
            map.remove("output_meta");
        }
    }
    output
}

/// `saved image -> PATH` for a copied or downloaded file, `image -> URI`
/// for one left on the server.
fn file_line(file: &Value) -> String {
    let field = file["pointer"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/')
        .replace('/', ".");
    let field = if field.is_empty() {
        "output".to_string()
    } else {
        field
    };
    match file["copied_to"].as_str() {
        Some(place) => format!("{} {field} -> {place}", style("saved").green()),
        None => {
            let place = file["path"]
                .as_str()
                .or(file["uri"].as_str())
                .unwrap_or("?");
            format!("{field} -> {place}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_output_drops_only_a_null_output_meta() {
        assert_eq!(
            human_output(&json!({"output_meta": null, "text": "hi"})),
            json!({"text": "hi"})
        );
        let meta = json!({"output_meta": {"outputs": []}, "text": "hi"});
        assert_eq!(human_output(&meta), meta);
        assert_eq!(human_output(&json!("plain")), json!("plain"));
    }

    #[test]
    fn file_lines_are_sentences() {
        console::set_colors_enabled_stderr(false);
        console::set_colors_enabled(false);
        let copied =
            json!({"pointer": "/image", "path": "/scratch/a.png", "copied_to": "/out/a.png"});
        assert_eq!(file_line(&copied), "saved image -> /out/a.png");
        let nested = json!({"pointer": "/files/0", "copied_to": "/out/one.txt"});
        assert_eq!(file_line(&nested), "saved files.0 -> /out/one.txt");
        let remote = json!({"pointer": "/image", "uri": "http://127.0.0.1:8080/files/x"});
        assert_eq!(file_line(&remote), "image -> http://127.0.0.1:8080/files/x");
    }
}
