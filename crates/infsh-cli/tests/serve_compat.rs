//! Issue 15's smaller compatibility points, end to end with the real
//! binary: `INFERENCE_API_KEY` (the platform SDKs' variable) is accepted
//! beside `INFSH_API_KEY`, and `--no-wait` is `--detach`.

mod common;

use common::server::ServeSandbox;
use common::{assert_code, json_stdout};

#[test]
fn inference_api_key_is_accepted_beside_infsh_api_key() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start_with_key(&[]);
    // Without any key: refused.
    let out = sb
        .infsh(&server)
        .env_remove("INFSH_API_KEY")
        .args(["--json", "task", "list"])
        .output()
        .unwrap();
    assert_code(&out, 11);
    assert_eq!(json_stdout(&out)["error"]["code"], "auth");
    // INFERENCE_API_KEY alone: accepted.
    let out = sb
        .infsh(&server)
        .env_remove("INFSH_API_KEY")
        .env("INFERENCE_API_KEY", "test-key")
        .args(["--json", "task", "list"])
        .output()
        .unwrap();
    assert_code(&out, 0);
    // INFSH_API_KEY wins over it.
    let out = sb
        .infsh(&server)
        .env("INFERENCE_API_KEY", "wrong")
        .args(["--json", "task", "list"])
        .output()
        .unwrap();
    assert_code(&out, 0);
}

#[test]
fn no_wait_is_detach() {
    let sb = ServeSandbox::new(&["multi-fn"]);
    let server = sb.start(&[]);
    let out = sb
        .infsh(&server)
        .args(["--json", "app", "run", "tests/multi-fn", "--no-wait"])
        .args(["--input", r#"{"text": "hi"}"#])
        .output()
        .unwrap();
    assert_code(&out, 0);
    let doc = json_stdout(&out);
    let id = doc["id"].as_str().unwrap_or_else(|| panic!("{doc}"));
    let task = server.wait_end(id, std::time::Duration::from_secs(60));
    assert_eq!(task["status"], 10, "{task}");
}
