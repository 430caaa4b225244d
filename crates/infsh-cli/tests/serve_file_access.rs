//! File access end to end (issue 15, docs/security.md "File access"): the
//! real binary with an API key, real Python workers, the real CLI. Files
//! are private: the CLI's upload flow hands the worker a signed `uri` it
//! fetches without a key, output URIs come back signed and the CLI
//! downloads them, a URI without its signature is 401, and signed URLs
//! outlive a restart (the signing key is kept in the data folder).

mod common;

use common::server::*;

#[test]
fn private_files_flow_through_signed_urls() {
    let sb = ServeSandbox::new(&["files-app"]);
    let mut server = sb.start_with_key(&[]);
    std::fs::write(sb.path().join("note.txt"), b"hello, private\n").unwrap();

    // Input: the CLI uploads the local file; the worker fetches the signed
    // uri it is given (no key), or the task would fail.
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
            r#"{"file": "note.txt"}"#,
        ],
        0,
    );
    assert_eq!(doc["status"], "completed", "{doc:#}");
    assert_eq!(doc["output"]["size"], 15, "{doc:#}");
    let task = server.api(
        "GET",
        &format!("/tasks/{}", doc["task_id"].as_str().unwrap()),
        None,
        200,
    );
    let input_uri = task["input"]["file"]
        .as_str()
        .or_else(|| task["input"]["file"]["uri"].as_str())
        .expect("the input's uri")
        .to_string();
    assert!(input_uri.contains("?sig="), "{input_uri}");

    // Outputs: signed in the answer; the CLI downloads them.
    let out_dir = sb.path().join("out");
    let doc = sb.run_json(
        &server,
        &[
            "--json",
            "app",
            "run",
            "tests/files-app",
            "--function",
            "make_files",
            "--output-dir",
            out_dir.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(doc["status"], "completed", "{doc:#}");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("one.txt")).unwrap(),
        "one\n"
    );
    let output_uri = doc["output"]["files"][0]["uri"]
        .as_str()
        .expect("output uri")
        .to_string();
    assert!(output_uri.contains("?sig="), "{output_uri}");

    // Without a key: the signed URI opens the file, the bare one is 401.
    let path = |uri: &str| uri.strip_prefix(server.url.as_str()).unwrap().to_string();
    let signed = path(&output_uri);
    let bare = signed.split('?').next().unwrap().to_string();
    let (status, body) = http_get(&server.url, &signed, None).unwrap();
    assert_eq!((status, body.as_str()), (200, "one\n"));
    let (status, body) = http_get(&server.url, &bare, None).unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("is private"), "{body}");
    // With the key, the bare one works.
    let (status, _) = http_get(&server.url, &bare, Some(TEST_KEY)).unwrap();
    assert_eq!(status, 200);

    // A restart on the same data folder keeps the signing key: the URL
    // handed out before still opens the file.
    server.kill9();
    let server = sb.start_with_key(&[]);
    let (status, body) = http_get(&server.url, &signed, None).unwrap();
    assert_eq!((status, body.as_str()), (200, "one\n"));
}

#[test]
fn a_short_signing_secret_is_refused_at_start() {
    let sb = ServeSandbox::new(&["files-app"]);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("infsh"))
        .args(["serve", "--port", "0", "--signing-secret", "short"])
        .arg("--apps")
        .arg(sb.apps_dir())
        .arg("--data-dir")
        .arg(sb.data_dir())
        .env_remove("INFSH_SIGNING_SECRET")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--signing-secret: 5 bytes is too short: give at least 24"),
        "{err}"
    );
    // Nothing was made in the data folder's place of the key.
    assert!(!sb.data_dir().join("signing.key").exists());
}
