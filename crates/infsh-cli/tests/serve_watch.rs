//! End to end: `infsh serve --apps DIR --watch` with the real binary and a
//! real Python app in a temporary folder. An edit of the app is deployed as
//! a new version that serves once it built; a broken edit is logged with
//! its traceback while the last good version keeps serving; fixing it
//! serves again. `--watch` without `--apps` is a usage error.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::server::*;
use common::*;
use serde_json::{json, Value};

const APP: &str = "tests/watched";
/// How long a redeploy may take (a fresh environment for the version).
const RELOAD_LIMIT: Duration = Duration::from_secs(120);

/// Writes the app's `inference.py`: `run` answers `label`; `extra_import`
/// breaks its import when given.
fn write_inference(dir: &Path, label: &str, extra_import: &str) {
    std::fs::write(
        dir.join("inference.py"),
        format!(
            "{extra_import}\n\
             from inferencesh import BaseApp, BaseAppInput, BaseAppOutput\n\n\
             class RunInput(BaseAppInput):\n    pass\n\n\
             class RunOutput(BaseAppOutput):\n    label: str\n\n\
             class App(BaseApp):\n\
             \x20   async def setup(self):\n        pass\n\n\
             \x20   async def run(self, input_data: RunInput) -> RunOutput:\n\
             \x20       return RunOutput(label={label:?})\n"
        ),
    )
    .unwrap();
}

fn app_dir(sb: &ServeSandbox) -> PathBuf {
    sb.apps_dir().join("watched")
}

fn write_app(sb: &ServeSandbox, label: &str) {
    let dir = app_dir(sb);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("inf.yml"),
        "namespace: tests\nname: watched\ndefault_function: run\n",
    )
    .unwrap();
    write_inference(&dir, label, "");
}

/// A run with `wait`: the task.
fn run(server: &Server) -> Value {
    let task = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": APP, "input": {}, "wait": true})),
        200,
    );
    assert_eq!(task["status"], 10, "{task}");
    task
}

/// Runs until one answers `label` (the reload is done): that task.
fn wait_for_label(server: &Server, label: &str) -> Value {
    let mut last = Value::Null;
    let seen = wait_for(RELOAD_LIMIT, || {
        last = run(server);
        last["output"]["label"] == label
    });
    assert!(
        seen,
        "runs never answered {label:?} (last: {last}); log:\n{}",
        server.log()
    );
    last
}

#[test]
fn watch_redeploys_an_edited_app_and_keeps_the_last_good_version_through_a_broken_edit() {
    let sb = ServeSandbox::new(&[]);
    write_app(&sb, "v1");
    let server = sb.start(&["--watch"]);
    assert!(
        server
            .log()
            .contains("watching 1 app folder for changes (tests/watched)"),
        "{}",
        server.log()
    );
    let first = run(&server);
    assert_eq!(first["output"]["label"], "v1");
    // The --apps folder itself, before any change: no version.
    assert_eq!(first["app"], APP, "{first}");

    // An edit: a new version, current once built.
    write_inference(&app_dir(&sb), "v2", "");
    let v2 = wait_for_label(&server, "v2");
    let v2_app = v2["app"].as_str().unwrap().to_string();
    let v2_hash = v2_app
        .strip_prefix(&format!("{APP}@"))
        .unwrap_or_else(|| panic!("{v2}"))
        .to_string();
    assert_eq!(v2_hash.len(), 64, "{v2}");
    // The hash `infsh app deploy` gives the same folder.
    let mut package = Vec::new();
    let (packed, _) = infsh_core::package::pack(&app_dir(&sb), &mut package).unwrap();
    assert_eq!(packed, v2_hash);
    let versions = server.api("GET", "/apps/tests/watched/versions", None, 200);
    assert_eq!(versions[0]["id"], v2_hash.as_str(), "{versions}");
    assert_eq!(versions[0]["current"], true, "{versions}");
    let log = server.log();
    assert!(
        log.contains(&format!(
            "--watch: reloading tests/watched: 1 file changed (inference.py); building version {}",
            &v2_hash[..8]
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "--watch: tests/watched ready as version {} in ",
            &v2_hash[..8]
        )),
        "{log}"
    );

    // A broken edit: logged with its traceback; v2 keeps serving.
    write_inference(
        &app_dir(&sb),
        "broken",
        "import no_such_module_for_infsh_tests",
    );
    let logged = wait_for(RELOAD_LIMIT, || {
        server
            .log()
            .contains("keeps serving; fix the app and save again")
    });
    let log = server.log();
    assert!(logged, "{log}");
    assert!(
        log.contains("No module named 'no_such_module_for_infsh_tests'"),
        "{log}"
    );
    // `--watch: tests/watched: version HASH8 failed to build: ...`
    let failed = log
        .lines()
        .find(|l| l.contains("--watch: tests/watched: version "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        failed.ends_with(
            " failed to build: ModuleNotFoundError: \
             No module named 'no_such_module_for_infsh_tests' (import_error)"
        ),
        "{failed}"
    );
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(
        log.contains(&format!(
            "the last good version ({}) keeps serving; fix the app and save again",
            &v2_hash[..8]
        )),
        "{log}"
    );
    for _ in 0..3 {
        let task = run(&server);
        assert_eq!(task["output"]["label"], "v2", "{task}");
        assert_eq!(task["app"], v2_app.as_str(), "{task}");
    }
    let versions = server.api("GET", "/apps/tests/watched/versions", None, 200);
    assert_eq!(versions[0]["status"], "failed", "{versions}");
    assert_eq!(versions[1]["id"], v2_hash.as_str(), "{versions}");
    assert_eq!(versions[1]["current"], true, "{versions}");

    // Fixed: serves again, as a third version.
    write_inference(&app_dir(&sb), "v3", "");
    let v3 = wait_for_label(&server, "v3");
    assert_ne!(v3["app"], v2_app.as_str(), "{v3}");

    // Saving the same content, then editing a file packing ignores: no
    // new reload.
    write_inference(&app_dir(&sb), "v3", "");
    std::fs::write(app_dir(&sb).join("inference.py~"), "editor backup").unwrap();
    // Then a real edit, to know the watch has seen the ones before it.
    write_inference(&app_dir(&sb), "v4", "");
    wait_for_label(&server, "v4");
    let reloads = server
        .log()
        .matches("--watch: reloading tests/watched")
        .count();
    assert_eq!(reloads, 4, "v2, broken, v3, v4:\n{}", server.log());
}

#[test]
fn watch_without_apps_is_a_usage_error() {
    let sb = Sandbox::new();
    let out = sb.infsh().args(["serve", "--watch"]).output().unwrap();
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("the following required arguments were not provided:\n  --apps <DIR>"),
        "{err}"
    );
}

/// Writes an app folder `name` (app `tests/NAME`) whose `run` answers
/// `label`, `inf.yml` first: a folder as an editor or `cp -r` fills it.
fn write_named_app(dir: &Path, name: &str, label: &str, extra_import: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("inf.yml"),
        format!("namespace: tests\nname: {name}\ndefault_function: run\n"),
    )
    .unwrap();
    write_inference(dir, label, extra_import);
}

#[test]
fn watch_deploys_an_app_folder_created_after_the_start() {
    let sb = ServeSandbox::new(&[]);
    write_app(&sb, "v1");
    // A folder of --apps that holds no app at the start.
    std::fs::create_dir_all(sb.apps_dir().join("group")).unwrap();
    let server = sb.start(&["--watch"]);
    let listed = |server: &Server| -> Vec<String> {
        let apps = server.api("GET", "/apps", None, 200);
        apps.as_array()
            .unwrap_or_else(|| panic!("{apps}"))
            .iter()
            .map(|a| a["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert!(
        !listed(&server)
            .iter()
            .any(|id| id.starts_with("tests/fresh")),
        "{:?}",
        listed(&server)
    );

    // Half-written: its import fails. Logged with the traceback; the
    // server keeps serving the other app.
    let fresh = sb.apps_dir().join("fresh");
    write_named_app(
        &fresh,
        "fresh",
        "first",
        "import no_such_module_for_infsh_tests",
    );
    let logged = wait_for(RELOAD_LIMIT, || {
        server
            .log()
            .contains("no version of it serves yet; fix the app and save again")
    });
    let log = server.log();
    assert!(logged, "{log}");
    assert!(
        log.contains(&format!(
            "--watch: new app folder {}: deploying tests/fresh; building version ",
            std::fs::canonicalize(&fresh).unwrap().display()
        )),
        "{log}"
    );
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(
        log.contains(
            " failed to build: ModuleNotFoundError: \
             No module named 'no_such_module_for_infsh_tests' (import_error)"
        ),
        "{log}"
    );
    assert_eq!(run(&server)["output"]["label"], "v1");
    let versions = server.api("GET", "/apps/tests/fresh/versions", None, 200);
    assert_eq!(versions[0]["status"], "failed", "{versions}");

    // Complete: its first version, current, listed and run.
    write_inference(&fresh, "first", "");
    let mut package = Vec::new();
    let (hash, _) = infsh_core::package::pack(&fresh, &mut package).unwrap();
    let id = format!("tests/fresh@{hash}");
    let appeared = wait_for(RELOAD_LIMIT, || listed(&server).contains(&id));
    assert!(appeared, "{:?}\n{}", listed(&server), server.log());
    // Listed from its build on; current once it built.
    let current = wait_for(RELOAD_LIMIT, || {
        let versions = server.api("GET", "/apps/tests/fresh/versions", None, 200);
        versions[0]["id"] == hash.as_str() && versions[0]["current"] == true
    });
    assert!(current, "{}", server.log());
    let task = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/fresh", "input": {}, "wait": true})),
        200,
    );
    assert_eq!(task["status"], 10, "{task}");
    assert_eq!(task["output"]["label"], "first", "{task}");
    assert_eq!(task["app"], id.as_str(), "{task}");

    // Watched like any app folder from then on: an edit is a new version.
    write_inference(&fresh, "second", "");
    let redeployed = wait_for(RELOAD_LIMIT, || {
        let task = server.api(
            "POST",
            "/apps/run",
            Some(json!({"app": "tests/fresh", "input": {}, "wait": true})),
            200,
        );
        task["output"]["label"] == "second"
    });
    assert!(redeployed, "{}", server.log());
    assert!(
        server
            .log()
            .contains("--watch: reloading tests/fresh: 1 file changed (inference.py)"),
        "{}",
        server.log()
    );

    // One created inside the folder that held no app: found too.
    write_named_app(&sb.apps_dir().join("group/nested"), "nested", "deep", "");
    let nested = wait_for(RELOAD_LIMIT, || {
        let (status, body) = server
            .request(
                "POST",
                "/apps/run",
                Some(json!({"app": "tests/nested", "input": {}, "wait": true})),
            )
            .unwrap();
        // A success's body is `{"data": task}`.
        status == 200
            && serde_json::from_str::<Value>(&body).unwrap()["data"]["output"]["label"] == "deep"
    });
    assert!(nested, "{}", server.log());
}
