//! End to end: `File` inputs as a local path, a data URI and an http URL,
//! and `File` outputs reported with their path and copied by --output-dir.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use base64::Engine;
use common::*;
use serde_json::json;

const PNG_SAMPLE: &str = "samples/dot.png";

#[test]
fn a_relative_path_is_read_from_the_input_files_folder() {
    let sb = Sandbox::new();
    let app = fixture("files-app");
    let input = sb.path().join("in.json");
    std::fs::copy(app.join(PNG_SAMPLE), sb.path().join("dot.png")).unwrap();
    std::fs::write(&input, r#"{"file": "dot.png"}"#).unwrap();
    let out = sb
        .infsh()
        .args(["--json", "app", "run"])
        .arg(&app)
        .args(["--function", "describe", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let expected = std::fs::metadata(app.join(PNG_SAMPLE)).unwrap().len();
    assert_eq!(json_stdout(&out)["output"]["size"], expected);
}

#[test]
fn a_data_uri_is_decoded() {
    let sb = Sandbox::new();
    let uri = format!(
        "data:text/plain;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(b"hello infsh")
    );
    let input = json!({"file": uri}).to_string();
    let out = sb.app_run_json(
        fixture("files-app"),
        &["--function", "describe", "--input", &input],
    );
    assert_code(&out, 0);
    let doc = json_stdout(&out);
    assert_eq!(doc["output"]["size"], 11);
    assert_eq!(
        doc["output"]["first_bytes_hex"].as_str().unwrap().get(..10),
        Some("68656c6c6f")
    );
}

#[test]
fn an_http_url_is_downloaded() {
    let sb = Sandbox::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // One request, one fixed reply.
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).unwrap();
        let body = b"served over loopback";
        write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
        stream.write_all(body).unwrap();
    });
    let input = json!({"file": format!("http://127.0.0.1:{port}/note.txt")}).to_string();
    let out = sb.app_run_json(
        fixture("files-app"),
        &["--function", "describe", "--input", &input],
    );
    server.join().unwrap();
    assert_code(&out, 0);
    assert_eq!(json_stdout(&out)["output"]["size"], 20);
}

#[test]
fn file_outputs_are_reported_and_copied_to_the_output_dir() {
    let sb = Sandbox::new();
    let app = fixture("files-app");
    let target = sb.path().join("out");
    let input = json!({"image": app.join(PNG_SAMPLE)}).to_string();
    let out = sb
        .infsh()
        .args(["--json", "app", "run"])
        .arg(&app)
        .args(["--function", "invert", "--input", &input, "--output-dir"])
        .arg(&target)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let doc = json_stdout(&out);
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{doc}");
    let copied = files[0]["copied_to"].as_str().unwrap();
    assert!(copied.starts_with(target.to_str().unwrap()));
    let bytes = std::fs::read(copied).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    // The output names the copy; the app wrote the file (with
    // tempfile.mkdtemp) in its call's scratch folder, gone after the run.
    assert_eq!(doc["output"]["image"]["path"], copied, "{doc}");
    let written = files[0]["path"].as_str().unwrap();
    assert!(
        written.starts_with(sb.path().join("cache").to_str().unwrap())
            && written.contains("/scratch/"),
        "{written}"
    );
    assert!(!std::path::Path::new(written).exists(), "{written}");
    assert_eq!(scratch_leftovers(sb.path()), Vec::<String>::new());
}

/// Anything left in a `scratch` folder under `root`.
fn scratch_leftovers(root: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "scratch") {
                for inner in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    found.push(inner.path().display().to_string());
                }
            }
            stack.push(path);
        }
    }
    found
}

#[test]
fn without_an_output_dir_files_are_saved_in_the_cache_and_said_so() {
    let sb = Sandbox::new();
    let app = fixture("files-app");
    let input = json!({"image": app.join(PNG_SAMPLE)}).to_string();
    let out = sb.app_run(&app, &["--function", "invert", "--input", &input]);
    assert_code(&out, 0);
    let err = stderr(&out);
    let saved = err
        .lines()
        .find_map(|line| line.strip_prefix("saved image -> "))
        .unwrap_or_else(|| panic!("no `saved image -> PATH` line: {err}"));
    let outputs = sb.path().join("cache/outputs");
    assert!(saved.starts_with(outputs.to_str().unwrap()), "{saved}");
    assert!(saved.ends_with("/inverted.png"), "{saved}");
    assert_eq!(&std::fs::read(saved).unwrap()[1..4], b"PNG");
    // Human output: the path of the copy, and no `"output_meta": null`.
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["image"]["path"], saved);
    assert!(shown.get("output_meta").is_none(), "{shown}");
    assert_eq!(scratch_leftovers(sb.path()), Vec::<String>::new());
}

#[test]
fn nested_and_listed_file_outputs_all_get_copied() {
    let sb = Sandbox::new();
    let target = sb.path().join("out");
    let out = sb
        .infsh()
        .args(["--json", "app", "run"])
        .arg(fixture("files-app"))
        .args(["--function", "make_files", "--input", "{}", "--output-dir"])
        .arg(&target)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let doc = json_stdout(&out);
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{doc}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 3);
    for file in files {
        let pointer = file["pointer"].as_str().unwrap();
        assert!(
            doc["output"].pointer(pointer).is_some(),
            "pointer {pointer} not in output"
        );
    }
}
