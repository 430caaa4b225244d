//! End to end: `infsh app deploy|versions|activate|remove` against the real
//! `infsh serve` with real Python workers. An app folder outside `--apps`
//! is deployed as versions; runs name the current one (`ns/name`), a
//! pinned one (`ns/name@HASH`) or `@latest`; a switch lets a running task
//! finish on its version; a version whose import fails never becomes
//! current; the current version survives a restart.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::server::*;
use common::*;
use serde_json::{json, Value};

const APP: &str = "tests/versioned";

/// Writes the app's source folder: `run` answers `label` after sleeping
/// `input.sleep` seconds; `extra_import` breaks its import when given.
fn write_app(dir: &Path, label: &str, extra_import: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("inf.yml"),
        "namespace: tests\nname: versioned\ndefault_function: run\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("inference.py"),
        format!(
            "import asyncio\n{extra_import}\n\
             from inferencesh import BaseApp, BaseAppInput, BaseAppOutput\n\n\
             LABEL = {label:?}\n\n\
             class RunInput(BaseAppInput):\n    sleep: float = 0\n\n\
             class RunOutput(BaseAppOutput):\n    label: str\n\n\
             class App(BaseApp):\n\
             \x20   async def setup(self):\n        pass\n\n\
             \x20   async def run(self, input_data: RunInput) -> RunOutput:\n\
             \x20       await asyncio.sleep(input_data.sleep)\n\
             \x20       return RunOutput(label=LABEL)\n"
        ),
    )
    .unwrap();
    // Never packed: an environment and an ignored file.
    std::fs::create_dir_all(dir.join(".venv/bin")).unwrap();
    std::fs::write(dir.join(".venv/bin/python"), "not packed").unwrap();
    std::fs::write(dir.join("notes.log"), "not packed").unwrap();
    std::fs::write(dir.join(".infshignore"), "*.log\n").unwrap();
}

fn src(sb: &ServeSandbox) -> PathBuf {
    sb.path().join("src")
}

/// `infsh app deploy src --json [extra]`: the version, as the server answered.
fn deploy(sb: &ServeSandbox, server: &Server, extra: &[&str]) -> Value {
    let src = src(sb);
    let args = [
        &["--json", "app", "deploy", src.to_str().unwrap()][..],
        extra,
    ]
    .concat();
    sb.run_json(server, &args, 0)
}

/// A run with `wait`: its label.
fn label(server: &Server, app: &str) -> String {
    let task = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": app, "input": {}, "wait": true})),
        200,
    );
    assert_eq!(task["status"], 10, "{task}");
    task["output"]["label"].as_str().unwrap().to_string()
}

/// The rows of `GET /workers` of one version (`ns/name@HASH`).
fn workers_of(server: &Server, version: &str) -> Vec<Value> {
    let rows = server.api("GET", "/workers", None, 200);
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|w| w["app"] == version)
        .cloned()
        .collect()
}

/// Polls `GET /workers` until no row of `version` is left.
fn wait_no_workers(server: &Server, version: &str) {
    let gone = wait_for(Duration::from_secs(30), || {
        workers_of(server, version).is_empty()
    });
    assert!(
        gone,
        "{version} still has workers: {:?}",
        workers_of(server, version)
    );
}

#[test]
fn deploys_switch_without_stopping_a_running_task_and_roll_back() {
    let sb = ServeSandbox::new(&[]);
    write_app(&src(&sb), "v1", "");
    let server = sb.start(&[]);

    // A dry run packs and checks, and uploads nothing.
    let dry = sb.run_json(
        &server,
        &[
            "--json",
            "app",
            "deploy",
            src(&sb).to_str().unwrap(),
            "--dry-run",
        ],
        0,
    );
    assert_eq!(dry["app"], APP);
    assert_eq!(
        dry["files"],
        json!([".infshignore", "inf.yml", "inference.py"])
    );
    let (st, body) = server
        .request("GET", "/apps/tests/versioned/versions", None)
        .unwrap();
    assert_eq!(st, 404, "{body}");

    let v1 = deploy(&sb, &server, &[]);
    assert_eq!(
        (&v1["status"], &v1["current"]),
        (&json!("ready"), &json!(true))
    );
    let v1_id = v1["id"].as_str().unwrap().to_string();
    assert_eq!(v1_id.len(), 64);
    assert_eq!(v1["short_id"].as_str().unwrap(), &v1_id[..12]);
    assert_eq!(label(&server, APP), "v1");

    // A long task on v1, running when v2 becomes current.
    let long = server.submit(json!({"app": APP, "input": {"sleep": 4}}));
    server.wait_task(&long, Duration::from_secs(60), |t| t["status"] == 7);

    write_app(&src(&sb), "v2", "");
    let out = sb.run(&server, &["app", "deploy", src(&sb).to_str().unwrap()]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("building"), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(": ready, current"),
        "{}",
        stdout(&out)
    );
    let versions = sb.run_json(&server, &["--json", "app", "versions", APP], 0);
    let list = versions.as_array().unwrap();
    assert_eq!(list.len(), 2, "{versions}");
    let v2_id = list[0]["id"].as_str().unwrap().to_string();
    assert_ne!(v2_id, v1_id);
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[1]["current"], false);

    // New runs get v2; v1 stays callable pinned; @latest is the current.
    assert_eq!(label(&server, APP), "v2");
    assert_eq!(label(&server, &format!("{APP}@{}", &v1_id[..8])), "v1");
    assert_eq!(label(&server, &format!("{APP}@latest")), "v2");
    // The long task finished on v1, where it started.
    let done = server.wait_task(&long, Duration::from_secs(60), |t| t["status"] == 10);
    assert_eq!(done["output"]["label"], "v1", "{done}");
    assert_eq!(done["app"], format!("{APP}@{v1_id}"), "{done}");

    // Rollback.
    let back = sb.run_json(&server, &["--json", "app", "activate", APP, &v1_id[..6]], 0);
    assert_eq!(
        (&back["id"], &back["current"]),
        (&json!(v1_id), &json!(true))
    );
    assert_eq!(label(&server, APP), "v1");

    // The current version stays; another goes, and is no longer callable.
    let out = sb.run(&server, &["app", "remove", APP, &v1_id[..6]]);
    assert_code(&out, 4);
    assert!(
        stderr(&out)
            .contains("is the current version of app \"tests/versioned\": activate another first"),
        "{}",
        stderr(&out)
    );
    let out = sb.run(&server, &["app", "remove", APP, &v2_id[..6]]);
    assert_code(&out, 0);
    let gone = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": format!("{APP}@{}", &v2_id[..6]), "input": {}})),
        404,
    );
    assert_eq!(
        gone["detail"],
        format!(
            "app \"{APP}\" has no version \"{}\" (list them: GET /apps/{APP}/versions)",
            &v2_id[..6]
        )
    );
}

#[test]
fn a_version_whose_import_fails_never_becomes_current() {
    let sb = ServeSandbox::new(&[]);
    write_app(&src(&sb), "v1", "");
    let server = sb.start(&[]);
    let v1 = deploy(&sb, &server, &[]);

    write_app(&src(&sb), "broken", "import no_such_module_for_infsh_tests");
    let out = sb.run(&server, &["app", "deploy", src(&sb).to_str().unwrap()]);
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("failed to build"), "{err}");
    assert!(
        err.contains("No module named 'no_such_module_for_infsh_tests'"),
        "{err}"
    );
    assert!(err.contains("Traceback"), "{err}");

    // v1 still serves; the failed one is listed as failed, with why.
    assert_eq!(label(&server, APP), "v1");
    let list = server.api("GET", "/apps/tests/versioned/versions", None, 200);
    let failed = &list[0];
    assert_eq!(failed["status"], "failed", "{list}");
    assert_eq!(failed["current"], false);
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("no_such_module_for_infsh_tests"));
    assert_eq!(list[1]["id"], v1["id"]);
    assert_eq!(list[1]["current"], true);
    // A failed version cannot be made current.
    let refused = server.api(
        "PUT",
        &format!(
            "/apps/tests/versioned/versions/{}/current",
            failed["id"].as_str().unwrap()
        ),
        None,
        409,
    );
    assert_eq!(refused["status"], 409);
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .ends_with("is failed: only a ready version becomes current"));

    // Not a package at all; a package of another app.
    let (st, body) = server
        .raw(
            "POST",
            "/apps/tests/versioned/versions",
            Some(b"PK\x03\x04"),
            "application/octet-stream",
        )
        .unwrap();
    assert_eq!(st, 400, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        doc["detail"],
        "the upload is not a valid app package: not an app package (it does not start with INFSHPKG1)"
    );
    write_app(&src(&sb), "v1", "");
    let mut package = Vec::new();
    infsh_core::package::pack(&src(&sb), &mut package).unwrap();
    let (st, body) = server
        .raw(
            "POST",
            "/apps/tests/other/versions",
            Some(&package),
            "application/octet-stream",
        )
        .unwrap();
    assert_eq!(st, 400, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        doc["detail"],
        "the package's inf.yml names app \"tests/versioned\", not \"tests/other\": deploy it to /apps/tests/versioned/versions"
    );
}

#[test]
fn an_old_versions_replicas_stop_once_idle_after_a_switch() {
    let sb = ServeSandbox::new(&[]);
    write_app(&src(&sb), "v1", "");
    let server = sb.start(&[]);
    let v1_id = deploy(&sb, &server, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v1_app = format!("{APP}@{v1_id}");

    // A long task on v1, running when v2 becomes current.
    let long = server.submit(json!({"app": APP, "input": {"sleep": 6}}));
    server.wait_task(&long, Duration::from_secs(60), |t| t["status"] == 7);
    write_app(&src(&sb), "v2", "");
    let v2_id = deploy(&sb, &server, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v2_app = format!("{APP}@{v2_id}");
    // v1's busy replica stays while its task runs.
    let rows = workers_of(&server, &v1_app);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "busy", "{rows:?}");
    assert_eq!(rows[0]["current_tasks"], json!([long]), "{rows:?}");
    assert_eq!(label(&server, APP), "v2");
    // The task finishes on v1; then its replica stops.
    let done = server.wait_task(&long, Duration::from_secs(60), |t| t["status"] == 10);
    assert_eq!(
        (&done["output"]["label"], &done["app"]),
        (&json!("v1"), &json!(v1_app)),
        "{done}"
    );
    wait_no_workers(&server, &v1_app);
    assert_eq!(workers_of(&server, &v2_app).len(), 1);
    assert!(server.log().contains(&format!(
        "retired (another version is current): stopping the idle replica app={v1_app}"
    )));

    // A pinned run starts v1 again, as any cold app.
    assert_eq!(label(&server, &format!("{APP}@{}", &v1_id[..8])), "v1");
    let rows = workers_of(&server, &v1_app);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "idle", "{rows:?}");

    // A rollback to v1: v2's idle replica stops at once, v1's stays.
    server.api(
        "PUT",
        &format!("/apps/tests/versioned/versions/{}/current", &v1_id[..8]),
        None,
        200,
    );
    wait_no_workers(&server, &v2_app);
    assert_eq!(workers_of(&server, &v1_app).len(), 1);
    assert_eq!(label(&server, APP), "v1");
}

/// Runs of `APP` with `wait` until `stop` is set and at least `min` ran:
/// each one's label, in order. Panics on any failed run.
fn run_until(
    url: String,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    min: usize,
) -> Vec<String> {
    let mut labels = Vec::new();
    while labels.len() < min || !stop.load(Ordering::SeqCst) {
        let (st, body) = http_post_json(
            &url,
            "/apps/run",
            None,
            &json!({"app": APP, "input": {}, "wait": true}),
        )
        .expect("the server answers");
        assert_eq!(st, 200, "{body}");
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["data"]["status"], 10, "{body}");
        labels.push(doc["data"]["output"]["label"].as_str().unwrap().to_string());
        count.fetch_add(1, Ordering::SeqCst);
    }
    labels
}

#[test]
fn two_hundred_runs_across_a_switch_all_succeed_and_the_current_version_survives_a_restart() {
    let sb = ServeSandbox::new(&[]);
    write_app(&src(&sb), "v1", "");
    let mut server = sb.start(&["--replicas", "2"]);
    deploy(&sb, &server, &[]);
    // Four callers, 50 runs each at least, going on until v2 is current
    // and 20 more runs went through.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, count) = (server.url.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || run_until(url, stop, count, 50))
        })
        .collect();
    assert!(wait_for(Duration::from_secs(60), || count
        .load(Ordering::SeqCst)
        >= 20));
    write_app(&src(&sb), "v2", "");
    let v2 = deploy(&sb, &server, &[]);
    let at_switch = count.load(Ordering::SeqCst);
    assert!(wait_for(Duration::from_secs(60), || {
        count.load(Ordering::SeqCst) >= at_switch + 20
    }));
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for caller in callers {
        let labels = caller.join().expect("every run succeeded");
        total += labels.len();
        // Each caller's runs in order: v1 first, then once v2, only v2.
        assert_eq!(labels[0], "v1", "{labels:?}");
        let first_v2 = labels.iter().position(|l| l == "v2").expect("v2 reached");
        assert!(labels[first_v2..].iter().all(|l| l == "v2"), "{labels:?}");
    }
    assert!(total >= 200, "{total}");
    assert_eq!(label(&server, APP), "v2");

    server.terminate(Duration::from_secs(30));
    drop(server);
    let server = sb.start(&[]);
    assert_eq!(label(&server, APP), "v2");
    let list = server.api("GET", "/apps/tests/versioned/versions", None, 200);
    assert_eq!(list[0]["id"], v2["id"]);
    assert_eq!(list[0]["current"], true);
}

#[test]
fn a_session_keeps_its_version_across_a_switch() {
    let sb = ServeSandbox::new(&[]);
    write_app(&src(&sb), "v1", "");
    let server = sb.start(&[]);
    let v1 = deploy(&sb, &server, &[]);
    let v1_id = v1["id"].as_str().unwrap().to_string();
    let opened = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": APP, "input": {}, "wait": true, "session": "new"})),
        200,
    );
    assert_eq!(opened["output"]["label"], "v1", "{opened}");
    let session = opened["session_id"].as_str().unwrap().to_string();
    let got = server.api("GET", &format!("/sessions/{session}"), None, 200);
    assert_eq!(
        (&got["app_id"], &got["app_version_id"]),
        (&json!(APP), &json!(v1_id))
    );

    write_app(&src(&sb), "v2", "");
    let v2 = deploy(&sb, &server, &[]);
    let v2_id = v2["id"].as_str().unwrap().to_string();
    assert_eq!(label(&server, APP), "v2");
    // Named without a version, the session's call stays on v1.
    let kept = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": APP, "input": {}, "wait": true, "session": session})),
        200,
    );
    assert_eq!(kept["output"]["label"], "v1", "{kept}");
    // Naming v2 in v1's session is refused.
    let refused = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": format!("{APP}@{}", &v2_id[..8]), "input": {}, "session": session})),
        400,
    );
    assert!(
        refused["type"]
            .as_str()
            .unwrap()
            .ends_with("/VERSION_MISMATCH"),
        "{refused}"
    );
    assert_eq!(
        refused["detail"],
        format!(
            "session \"{session}\" runs version {} of app \"{APP}\", not {}",
            &v1_id[..12],
            &v2_id[..12]
        )
    );
    // v1 cannot be removed while the session lives.
    let busy = server.api(
        "DELETE",
        &format!("/apps/tests/versioned/versions/{}", &v1_id[..8]),
        None,
        409,
    );
    assert_eq!(
        busy["detail"],
        format!(
            "version {} of app \"{APP}\" has 1 live session(s): end them first",
            &v1_id[..12]
        )
    );
    // The session's replica of v1 stays while the session lives.
    let leased = workers_of(&server, &format!("{APP}@{v1_id}"));
    assert_eq!(leased.len(), 1, "{leased:?}");
    assert_eq!(leased[0]["session"], session.as_str(), "{leased:?}");
    let (st, _) = server
        .request("DELETE", &format!("/sessions/{session}"), None)
        .unwrap();
    assert_eq!(st, 204);
    // Ended, it is an idle replica of a retired version: it stops.
    wait_no_workers(&server, &format!("{APP}@{v1_id}"));
    let (st, body) = server
        .request(
            "DELETE",
            &format!("/apps/tests/versioned/versions/{}", &v1_id[..8]),
            None,
        )
        .unwrap();
    assert_eq!(st, 204, "{body}");
}

/// The zygote the only worker of `version` was forked from.
fn zygote_of(server: &Server, version: &str) -> u32 {
    let rows = workers_of(server, version);
    assert_eq!(rows.len(), 1, "{rows:?}");
    zygote_of_worker(rows[0]["pid"].as_u64().unwrap() as u32)
}

#[test]
fn a_retired_versions_zygote_stops_with_its_last_replica_and_a_pinned_run_restarts_it() {
    let sb = ServeSandbox::new(&[]);
    write_app(&src(&sb), "v1", "");
    let server = sb.start(&[]);
    let v1_id = deploy(&sb, &server, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v1_app = format!("{APP}@{v1_id}");
    assert_eq!(label(&server, APP), "v1");
    let v1_zygote = zygote_of(&server, &v1_app);

    write_app(&src(&sb), "v2", "");
    deploy(&sb, &server, &[]);
    assert_eq!(label(&server, APP), "v2");
    wait_no_workers(&server, &v1_app);
    let gone = wait_for(Duration::from_secs(30), || process_gone(v1_zygote));
    assert!(gone, "v1's zygote {v1_zygote} lives on:\n{}", server.log());
    assert!(
        server.log().contains(&format!(
            "retired: stopping the zygote app={v1_app} pid={v1_zygote}"
        )),
        "{}",
        server.log()
    );

    // A pinned run: a new zygote for v1, and its worker.
    assert_eq!(label(&server, &format!("{APP}@{}", &v1_id[..8])), "v1");
    let again = zygote_of(&server, &v1_app);
    assert_ne!(again, v1_zygote);
    assert!(!process_gone(again));
}
