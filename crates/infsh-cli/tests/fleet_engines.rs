//! End to end with the real binaries: one `infsh serve` hosting no app of
//! its own (engine keys, short leases) and `infsh engine run` processes
//! hosting the `slow` fixture, talking over loopback HTTP (docs/deploy.md,
//! "Engines"). Runs, cancels, drains, a kill -9 of an engine mid-task (the
//! task runs again on the other, attempt 2 recorded, or fails `engine
//! lost` with --max-attempts 1), a wrong engine key, and output files
//! uploaded from the engine and downloaded from the API node.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::engine_proc::EngineProc;
use common::fleet::wait_online;
use common::server::*;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

const ENGINE_KEY: &str = "engine-key-fleet";
const LEASE: &str = "1";

fn api_node(sb: &ServeSandbox, extra: &[&str]) -> Server {
    let flags = [
        &["--engine-key", ENGINE_KEY, "--lease-seconds", LEASE][..],
        extra,
    ]
    .concat();
    sb.start_with_key(&flags)
}

fn started_file(sb: &ServeSandbox, name: &str) -> PathBuf {
    sb.path().join(name)
}

#[test]
fn engines_register_run_and_cancel_tasks_and_a_drained_one_takes_none() {
    let sb = ServeSandbox::new(&[]);
    let server = api_node(&sb, &[]);
    let e1 = EngineProc::start(&sb, &server, "e1", ENGINE_KEY, &[]);
    let e2 = EngineProc::start(&sb, &server, "e2", ENGINE_KEY, &[]);
    let remote = wait_online(&server, &["e1", "e2"]);
    for engine in &remote {
        let apps = &engine["remote"]["apps"];
        assert_eq!(apps[0]["app"], "tests/slow", "{engine}");
        assert_eq!(apps[0]["conflict"], false, "{engine}");
        assert_eq!(apps[0]["hash"].as_str().unwrap().len(), 64, "{engine}");
        assert_eq!(engine["inventory"], "remote");
    }
    let out = sb.run(&server, &["engine", "list"]);
    assert_code(&out, 0);
    let listed = stdout(&out);
    for name in ["e1", "e2"] {
        assert!(
            listed.lines().any(|l| l.starts_with(name)
                && l.contains(" remote  online ")
                && l.contains("tests/slow@")),
            "{listed}"
        );
    }
    // Same code, same hash.
    assert_eq!(
        remote[0]["remote"]["apps"][0]["hash"],
        remote[1]["remote"]["apps"][0]["hash"]
    );

    // A wait run: output, logs and the attempt come back through the API node.
    let done = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/slow", "input": {"seconds": 0.1, "label": "a"}, "wait": true})),
        200,
    );
    assert_eq!(
        done["status"],
        10,
        "{done:#}\ne1: {}\ne2: {}",
        e1.log(),
        e2.log()
    );
    assert_eq!(done["output"]["label"], "a");
    let task = server.task(done["id"].as_str().unwrap());
    assert!(
        task["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["content"] == "napping a"),
        "{task:#}"
    );
    let attempts = task["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{task:#}");
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["outcome"], "completed");

    // Cancel of a running task reaches the engine that runs it.
    let started = started_file(&sb, "cancel-started");
    let id = server.submit(json!({"app": "tests/slow",
        "input": {"seconds": 60, "started_file": started.to_str().unwrap()}}));
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started"
    );
    server.api("POST", &format!("/tasks/{id}/cancel"), None, 200);
    let cancelled = server.wait_end(&id, Duration::from_secs(20));
    assert_eq!(cancelled["status"], 12, "{cancelled:#}");

    // A drained engine claims nothing: every run goes to the other one.
    let drained = server.api("POST", "/engines/e1/drain", None, 200);
    assert_eq!(drained["remote"]["state"], "draining", "{drained:#}");
    for label in ["b", "c"] {
        let done = server.api(
            "POST",
            "/apps/run",
            Some(json!({"app": "tests/slow", "input": {"label": label}, "wait": true})),
            200,
        );
        let task = server.task(done["id"].as_str().unwrap());
        assert_eq!(task["attempts"][0]["engine"], "e2", "{task:#}");
    }
    // `workers` pins a run to an engine (after the undrain below, both
    // could take it); `infra` other than `private` is refused.
    let bad = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/slow", "infra": "cloud"})),
        400,
    );
    assert_eq!(
        bad["detail"], "`infra` \"cloud\" is not one infsh has: expected one of \"private\"",
        "{bad}"
    );
    let undrained = server.api("POST", "/engines/e1/undrain", None, 200);
    assert_eq!(undrained["remote"]["state"], "online", "{undrained:#}");
    for label in ["p1", "p2", "p3"] {
        let done = server.api(
            "POST",
            "/apps/run",
            Some(
                json!({"app": "tests/slow", "input": {"label": label}, "wait": true,
                "workers": ["e1"], "infra": "private"}),
            ),
            200,
        );
        let task = server.task(done["id"].as_str().unwrap());
        assert_eq!(task["attempts"][0]["engine"], "e1", "{task:#}");
    }
    let missing = server.api("POST", "/engines/nope/drain", None, 404);
    assert_eq!(missing["status"], 404, "{missing}");
}

#[test]
fn a_task_of_a_killed_engine_runs_again_on_the_other_as_attempt_2() {
    let sb = ServeSandbox::new(&[]);
    let server = api_node(&sb, &[]);
    let mut engines = [
        EngineProc::start(&sb, &server, "e1", ENGINE_KEY, &[]),
        EngineProc::start(&sb, &server, "e2", ENGINE_KEY, &[]),
    ];
    wait_online(&server, &["e1", "e2"]);
    let started = started_file(&sb, "started");
    let id = server.submit(json!({"app": "tests/slow",
        "input": {"seconds": 2, "label": "again", "started_file": started.to_str().unwrap()}}));
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started"
    );
    let first = server.task(&id)["attempts"][0]["engine"]
        .as_str()
        .unwrap()
        .to_string();
    let (lost, other) = if first == "e1" { (0, "e2") } else { (1, "e1") };
    engines[lost].kill9();

    let done = server.wait_end(&id, Duration::from_secs(30));
    assert_eq!(done["status"], 10, "{done:#}\n{}", server.log());
    assert_eq!(done["output"]["label"], "again");
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{done:#}");
    assert_eq!(attempts[0]["engine"], first.as_str());
    assert_eq!(attempts[0]["outcome"], "lost");
    assert_eq!(attempts[1]["attempt"], 2);
    assert_eq!(attempts[1]["engine"], other);
    assert_eq!(attempts[1]["outcome"], "completed");
}

#[test]
fn with_max_attempts_1_a_killed_engines_task_fails_engine_lost() {
    let sb = ServeSandbox::new(&[]);
    let server = api_node(&sb, &["--max-attempts", "1"]);
    let mut engine = EngineProc::start(&sb, &server, "e1", ENGINE_KEY, &[]);
    wait_online(&server, &["e1"]);
    let started = started_file(&sb, "started");
    let id = server.submit(json!({"app": "tests/slow",
        "input": {"seconds": 30, "started_file": started.to_str().unwrap()}}));
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started"
    );
    engine.kill9();
    let failed = server.wait_end(&id, Duration::from_secs(20));
    assert_eq!(failed["status"], 11, "{failed:#}");
    assert_eq!(failed["error"], "engine lost: e1");
}

#[test]
fn a_wrong_engine_key_makes_the_engine_exit_11_and_both_sides_log_it() {
    let sb = ServeSandbox::new(&[]);
    let server = api_node(&sb, &[]);
    let mut engine = EngineProc::start(&sb, &server, "e1", "not-the-key", &[]);
    let status = engine.wait_exit(Duration::from_secs(60));
    let log = engine.log();
    assert_eq!(status.and_then(|s| s.code()), Some(11), "{log}");
    assert!(
        log.contains("engine e1: the API node refused the engine key (401): invalid engine key"),
        "{log}"
    );
    // The API node says so too, naming what was refused.
    let server_log = server.log();
    assert!(
        server_log
            .lines()
            .any(|l| l.contains("refused an engine request")
                && l.contains("path=/engine/register")
                && l.contains("detail=invalid engine key")),
        "{server_log}"
    );
}

#[test]
fn sigterm_lets_the_running_task_finish_and_be_reported_then_the_engine_exits_0() {
    let sb = ServeSandbox::new(&[]);
    let server = api_node(&sb, &[]);
    let mut engine = EngineProc::start(&sb, &server, "e1", ENGINE_KEY, &[]);
    wait_online(&server, &["e1"]);
    let started = started_file(&sb, "started");
    let id = server.submit(json!({"app": "tests/slow",
        "input": {"seconds": 1, "label": "drained", "started_file": started.to_str().unwrap()}}));
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started"
    );
    let pid = engine.child.as_ref().unwrap().id() as i32;
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let status = engine.wait_exit(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", engine.log());
    let done = server.task(&id);
    assert_eq!(done["status"], 10, "{done:#}\n{}", engine.log());
    assert_eq!(done["output"]["label"], "drained");
    assert!(engine.log().contains("draining"), "{}", engine.log());
}

/// Output files made on an engine are uploaded to the API node before the
/// output is reported: every `uri` in the output is the node's own
/// `/files/{id}`, and a client downloads the bytes from the node.
#[test]
fn output_files_of_a_task_run_on_an_engine_download_from_the_api_node() {
    let sb = ServeSandbox::new(&[]);
    let node = api_node(&sb, &[]);
    let engine = EngineProc::start_hosting(&sb, &node, "e1", ENGINE_KEY, &["files-app"], &[]);
    wait_online(&node, &["e1"]);
    let done = node.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/files-app", "function": "make_files",
            "input": {"label": "far"}, "wait": true})),
        200,
    );
    assert_eq!(done["status"], 10, "{done:#}\n{}", engine.log());
    let output = &done["output"];
    assert_eq!(output["nested"]["label"], "far");
    let files = [
        (&output["files"][0], "one.txt", "one\n"),
        (&output["files"][1], "two.txt", "two\n"),
        (&output["nested"]["file"], "nested.txt", "nested\n"),
    ];
    for (file, name, content) in files {
        let uri = file["uri"].as_str().unwrap_or_default();
        let path = uri
            .strip_prefix(node.url.as_str())
            .unwrap_or_else(|| panic!("{uri} is not the node's ({}): {done:#}", node.url));
        assert!(path.starts_with("/files/"), "{uri}");
        assert_eq!(file["filename"], name, "{file}");
        assert!(file.get("path").is_none(), "{file}");
        let (status, body) = http_get(&node.url, path, None).expect("download");
        assert_eq!((status, body.as_str()), (200, content), "{uri}");
    }
    // The node's task record says the same (the record is what other
    // nodes and later reads serve).
    let stored = node.task(done["id"].as_str().unwrap());
    assert_eq!(stored["output"]["files"], output["files"]);
}

/// An output file the API node refuses (larger than its `--max-body-mib`)
/// fails the task, naming the file and the node's answer, rather than
/// reporting a URL no client can reach.
#[test]
fn an_output_file_the_api_node_refuses_fails_the_task_saying_so() {
    let sb = ServeSandbox::new(&[]);
    let node = api_node(&sb, &["--max-body-mib", "1"]);
    let app = sb.path().join("e1").join("apps").join("big");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("inf.yml"),
        "namespace: tests\nname: big\nkernel: python-3.11\n",
    )
    .unwrap();
    std::fs::write(
        app.join("inference.py"),
        r#"import os, tempfile
from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, File

class RunInput(BaseAppInput):
    pass

class RunOutput(BaseAppOutput):
    file: File

class App(BaseApp):
    async def run(self, input_data: RunInput) -> RunOutput:
        path = os.path.join(tempfile.mkdtemp(), "big.bin")
        with open(path, "wb") as f:
            f.write(b"x" * (2 * 1024 * 1024))
        return RunOutput(file=File(path=path))
"#,
    )
    .unwrap();
    let engine = EngineProc::start_hosting(&sb, &node, "e1", ENGINE_KEY, &[], &[]);
    wait_online(&node, &["e1"]);
    let done = node.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/big", "input": {}, "wait": true})),
        200,
    );
    assert_eq!(done["status"], 11, "{done:#}\n{}", engine.log());
    let error = done["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("cannot upload output file "), "{error}");
    assert!(error.contains(": the API node answered 413: "), "{error}");
}

/// Two declared GPUs (no GPU needed): the engine's slots are `NAME-gpu-0`
/// and `NAME-gpu-1`.
const TWO_GPUS: &str =
    "inventory:\n  gpus:\n    - {index: 0, vram: 80GB}\n    - {index: 1, vram: 80GB}\n";

#[test]
fn runs_pinned_to_a_slot_run_on_that_slot_and_an_unknown_slot_is_400() {
    let sb = ServeSandbox::new(&[]);
    let server = api_node(&sb, &[]);
    let config = sb.path().join("engine.yml");
    std::fs::write(&config, TWO_GPUS).unwrap();
    // Two replicas: the engine claims two runs at once, and its placement
    // alone would put the second on the free slot 0.
    let engine = EngineProc::start_hosting(
        &sb,
        &server,
        "e1",
        ENGINE_KEY,
        &["gpu-report"],
        &[
            "--engine-config",
            config.to_str().unwrap(),
            "--replicas",
            "2",
        ],
    );
    wait_online(&server, &["e1"]);

    let pinned = |slot: &str| {
        json!({"app": "tests/gpu-report", "input": {"seconds": 0.3},
            "workers": [format!("e1-gpu-{slot}")]})
    };
    let to_one: Vec<String> = (0..3).map(|_| server.submit(pinned("1"))).collect();
    for id in &to_one {
        let done = server.wait_end(id, Duration::from_secs(60));
        assert_eq!(done["status"], 10, "{done:#}\n{}", engine.log());
        assert_eq!(done["output"]["cuda_visible_devices"], "1", "{done:#}");
        assert_eq!(done["attempts"][0]["worker"], "e1-gpu-1", "{done:#}");
    }
    // Slot 0 now: another replica starts there (slot 1's keeps to its own).
    for _ in 0..2 {
        let id = server.submit(pinned("0"));
        let done = server.wait_end(&id, Duration::from_secs(60));
        assert_eq!(done["status"], 10, "{done:#}\n{}", engine.log());
        assert_eq!(done["output"]["cuda_visible_devices"], "0", "{done:#}");
        assert_eq!(done["attempts"][0]["worker"], "e1-gpu-0", "{done:#}");
    }

    // A slot no engine has: refused at once, naming what there is.
    let bad = server.api("POST", "/apps/run", Some(pinned("7")), 400);
    assert_eq!(
        bad["type"], "https://infsh.dev/errors/invalid_request",
        "{bad}"
    );
    assert_eq!(bad["status"], 400, "{bad}");
    assert_eq!(
        bad["detail"],
        "`workers` names no engine or slot of this fleet: \"e1-gpu-7\"; \
         expected one of \"e1\", \"e1-gpu-0\", \"e1-gpu-1\"",
        "{bad}"
    );
}

/// Input files stored on the API node reach an engine as fresh signed URLs
/// in the claim: with API keys (private files) a run whose input is the
/// bare URL, which anyone without a key is refused (401), still runs on
/// the engine, which holds no client key. A tampered signature is 403
/// `invalid_signature`.
#[test]
fn an_engine_fetches_input_files_through_signed_urls_from_the_claim() {
    let sb = ServeSandbox::new(&[]);
    let server = api_node(&sb, &[]);
    let engine = EngineProc::start_hosting(&sb, &server, "e1", ENGINE_KEY, &["files-app"], &[]);
    wait_online(&server, &["e1"]);
    std::fs::write(sb.path().join("note.txt"), b"hello, engine\n").unwrap();
    // The CLI uploads the file to the API node (its signed uri is the input).
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
    assert_eq!(doc["status"], "completed", "{doc:#}\n{}", engine.log());
    let task = server.task(doc["task_id"].as_str().unwrap());
    let input = &task["input"]["file"];
    let uri = input.as_str().or_else(|| input["uri"].as_str()).unwrap();
    let bare = uri.split('?').next().unwrap().to_string();
    let path = bare.strip_prefix(server.url.as_str()).unwrap().to_string();
    let (status, body) = http_get(&server.url, &path, None).unwrap();
    assert_eq!(status, 401, "the bare URL needs a key: {body}");

    // The bare URL as input: only the claim's signature opens it.
    let id = server.submit(json!({"app": "tests/files-app", "function": "describe",
        "input": {"file": bare}}));
    let done = server.wait_end(&id, Duration::from_secs(60));
    assert_eq!(done["status"], 10, "{done:#}\n{}", engine.log());
    assert_eq!(done["output"]["size"], 14, "{done:#}");
    // What a client reads back is the input as given: signed only for the engine.
    assert_eq!(server.task(&id)["input"]["file"], bare.as_str());

    // Another team's run naming that (default team's) file: the claim
    // does not sign it, so the engine is refused it as the client would be.
    let red = server.api(
        "POST",
        "/apikeys",
        Some(json!({"name": "red", "scopes": ["apps:execute", "tasks:read"], "team": "red"})),
        201,
    )["key"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = http_post_json(
        &server.url,
        "/apps/run",
        Some(&red),
        &json!({"app": "tests/files-app", "function": "describe", "input": {"file": bare}}),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let foreign: serde_json::Value = serde_json::from_str(&body).unwrap();
    let foreign = server.wait_end(
        foreign["data"]["id"].as_str().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(foreign["status"], 11, "{foreign:#}\n{}", engine.log());
    assert!(
        foreign["error"].as_str().unwrap().contains("401"),
        "{foreign:#}"
    );

    // A signature tampered with opens nothing: the files route's 403.
    let sig = uri.split_once("?sig=").unwrap().1;
    let (expires, mac) = sig.split_once('.').unwrap();
    let flipped = if mac.starts_with('0') { "1" } else { "0" };
    let tampered = format!("{path}?sig={expires}.{flipped}{}", &mac[1..]);
    let (status, body) = http_get(&server.url, &tampered, None).unwrap();
    assert_eq!(status, 403, "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        problem["type"], "https://infsh.dev/errors/invalid_signature",
        "{problem}"
    );
    assert_eq!(problem["status"], 403, "{problem}");
    assert_eq!(
        problem["detail"], "invalid file signature: it was not made for this file by this server",
        "{problem}"
    );
}
