//! End to end: a freshly scaffolded app lists, runs and tests as it is.

mod common;

use common::*;

#[test]
fn init_scaffolds_an_app_that_passes_its_own_tests() {
    let sb = Sandbox::new();
    let app = sb.path().join("my-app");
    let out = sb.infsh().args(["app", "init"]).arg(&app).output().unwrap();
    assert_code(&out, 0);
    for file in [
        "inference.py",
        "inf.yml",
        "requirements.txt",
        "input.json",
        "__init__.py",
    ] {
        assert!(app.join(file).exists(), "{file} missing");
    }
    assert!(std::fs::read_to_string(app.join("inf.yml"))
        .unwrap()
        .contains("name: my-app"));

    let out = sb
        .infsh()
        .args(["--json", "app", "test"])
        .arg(&app)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let doc = json_stdout(&out);
    assert_eq!(doc["passed"], 3, "{doc}");

    let out = sb.app_run_json(
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
}

#[test]
fn init_refuses_a_non_empty_folder() {
    let sb = Sandbox::new();
    let app = sb.path().join("taken");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("x"), "").unwrap();
    let out = sb.infsh().args(["app", "init"]).arg(&app).output().unwrap();
    assert_code(&out, 2);
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "error: {} already exists and is not empty; give a new folder name",
            app.display()
        )
    );
}

#[test]
fn every_command_has_help() {
    let sb = Sandbox::new();
    for args in [
        vec!["--help"],
        vec!["app", "--help"],
        vec!["app", "run", "--help"],
        vec!["app", "test", "--help"],
        vec!["app", "init", "--help"],
        vec!["app", "functions", "--help"],
        vec!["app", "schema", "--help"],
    ] {
        let out = sb.infsh().args(&args).output().unwrap();
        assert_code(&out, 0);
        assert!(stdout(&out).contains("Usage:"), "{args:?}");
    }
    let out = sb.infsh().args(["--help"]).output().unwrap();
    assert!(stdout(&out).contains("Exit codes:"));
}
