//! End to end: `infsh app test` runs every function's example on one
//! worker, with one setup.

mod common;

use common::*;

#[test]
fn four_functions_share_one_setup() {
    let sb = Sandbox::new();
    let setup_log = sb.path().join("setup.log");
    let out = sb
        .infsh()
        .args(["--json", "app", "test"])
        .arg(fixture("multi-fn"))
        .env("INFSH_TEST_SETUP_LOG", &setup_log)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let doc = json_stdout(&out);
    assert_eq!(doc["status"], "passed");
    assert_eq!(doc["passed"], 4);
    let functions: Vec<&str> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["function"].as_str().unwrap())
        .collect();
    assert_eq!(functions, ["generate", "run", "summarize", "upscale"]);
    let log = std::fs::read_to_string(&setup_log).unwrap();
    let setups = log.lines().filter(|l| l.starts_with("setup")).count();
    let calls = log.lines().filter(|l| l.starts_with("call")).count();
    assert_eq!(setups, 1, "setup ran {setups} times:\n{log}");
    assert_eq!(calls, 4, "{log}");
    for result in doc["results"].as_array().unwrap() {
        assert_eq!(result["output"]["setup_count"], 1, "{result}");
    }
}

#[test]
fn human_summary_ends_with_the_counts() {
    let sb = Sandbox::new();
    let out = sb
        .infsh()
        .args(["app", "test"])
        .arg(fixture("multi-fn"))
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(
        stdout(&out)
            .trim_end()
            .ends_with("4 passed, 0 failed, 0 skipped"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_failing_function_fails_the_test_run_but_the_others_still_run() {
    let sb = Sandbox::new();
    let out = sb
        .infsh()
        .args(["--json", "app", "test"])
        .arg(fixture("fn-raises"))
        .output()
        .unwrap();
    assert_code(&out, 6);
    let doc = json_stdout(&out);
    let by_name = |name: &str| {
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["function"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("ok")["status"], "passed");
    assert_eq!(by_name("run")["status"], "failed");
    assert!(by_name("run")["detail"]
        .as_str()
        .unwrap()
        .contains("ZeroDivisionError"));
}

#[test]
fn save_example_writes_generated_inputs_that_the_next_run_uses() {
    let sb = Sandbox::new();
    let app = sb.path().join("app");
    copy_dir(&fixture("default-fn"), &app);
    for entry in std::fs::read_dir(&app).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("input")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let out = sb
        .infsh()
        .args(["--json", "app", "test"])
        .arg(&app)
        .arg("--save-example")
        .output()
        .unwrap();
    assert_code(&out, 0);
    let doc = json_stdout(&out);
    assert!(
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["input"] == "generated from schema"),
        "{doc}"
    );
    assert!(app.join("input_greet.json").exists());
    assert!(app.join("input_shout.json").exists());
    let again = json_stdout(
        &sb.infsh()
            .args(["--json", "app", "test"])
            .arg(&app)
            .output()
            .unwrap(),
    );
    assert!(
        again["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["input"].as_str().unwrap().starts_with("input_")),
        "{again}"
    );
}

#[test]
fn test_with_explicit_input_and_function() {
    let sb = Sandbox::new();
    let out = sb
        .infsh()
        .args(["--json", "app", "test"])
        .arg(fixture("multi-fn"))
        .args(["--function", "summarize", "--input"])
        .arg(fixture("multi-fn").join("input_summarize.json"))
        .output()
        .unwrap();
    assert_code(&out, 0);
    let doc = json_stdout(&out);
    assert_eq!(doc["results"].as_array().unwrap().len(), 1);
}
