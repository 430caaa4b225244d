//! End to end with the real binaries on PostgreSQL: which engine a run goes
//! to when several could take it (docs/deploy.md, "Which engine runs a
//! task"). Two engines that fetch deployed versions: e1 has the version
//! warm (a first run fetched it and started its replica, `--replicas 1`),
//! e2 is cold. Every run goes to e1 while its slot is free, although e2
//! long-polls too (e2 downloads and builds nothing); a run queued while e1
//! is busy goes to e2.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::engine_proc::EngineProc;
use common::fleet::{pg_api_node, wait_online};
use common::server::*;
use common::*;
use infsh_testkit::PgTestDb;
use serde_json::{json, Value};

const ENGINE_KEY: &str = "engine-key-warm";
const LEASE: &str = "2";
const APP: &str = "tests/warmth";

/// The app's source: `run` touches `started_file` (if given), sleeps
/// `seconds`, answers `label`.
fn write_app(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("inf.yml"),
        "namespace: tests\nname: warmth\ndefault_function: run\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("inference.py"),
        "import asyncio\nimport pathlib\n\n\
         from inferencesh import BaseApp, BaseAppInput, BaseAppOutput\n\n\
         class RunInput(BaseAppInput):\n    seconds: float = 0\n    started_file: str = \"\"\n    label: str = \"\"\n\n\
         class RunOutput(BaseAppOutput):\n    label: str\n\n\
         class App(BaseApp):\n\
         \x20   async def setup(self):\n        pass\n\n\
         \x20   async def run(self, input_data: RunInput) -> RunOutput:\n\
         \x20       if input_data.started_file:\n\
         \x20           pathlib.Path(input_data.started_file).write_text(\"\")\n\
         \x20       await asyncio.sleep(input_data.seconds)\n\
         \x20       return RunOutput(label=input_data.label)\n",
    )
    .unwrap();
}

/// A wait run; the task as `GET /tasks/{id}` has it.
fn run(server: &Server, label: &str) -> Value {
    let done = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": APP, "input": {"label": label}, "wait": true})),
        200,
    );
    assert_eq!(done["status"], 10, "{done:#}");
    assert_eq!(done["output"]["label"], label, "{done:#}");
    server.task(done["id"].as_str().unwrap())
}

fn engines_of(task: &Value) -> Vec<String> {
    task["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["engine"].as_str().unwrap().to_string())
        .collect()
}

fn built(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("fetched and built a version"))
        .count()
}

fn started_file(sb: &ServeSandbox, name: &str) -> PathBuf {
    sb.path().join(name)
}

#[test]
fn runs_go_to_the_engine_where_the_version_is_warm_and_to_a_cold_one_while_it_is_busy() {
    let db = PgTestDb::create();
    let sb = ServeSandbox::new(&[]);
    let server = pg_api_node(&sb, &db, ENGINE_KEY, LEASE, &["--versions-on-engines"]);
    let fetching = |name: &str| {
        EngineProc::spawn_fetching(
            &sb,
            &server.url,
            name,
            name,
            ENGINE_KEY,
            &["--replicas", "1"],
        )
    };
    let e1 = fetching("e1");
    wait_online(&server, &["e1"]);
    let src = sb.path().join("src");
    write_app(&src);
    let version = sb.run_json(
        &server,
        &["--json", "app", "deploy", src.to_str().unwrap()],
        0,
    );
    assert_eq!(version["status"], "ready", "{version}");
    // The first run fetches the version on e1 and starts its replica there.
    assert_eq!(engines_of(&run(&server, "first")), ["e1"]);

    let e2 = fetching("e2");
    wait_online(&server, &["e1", "e2"]);
    // e2 long-polls too, cold: each run goes to e1, free again by then.
    for n in 0..8 {
        let task = run(&server, &format!("warm-{n}"));
        assert_eq!(
            engines_of(&task),
            ["e1"],
            "{task:#}\ne1: {}\ne2: {}",
            e1.log(),
            e2.log()
        );
    }
    let log = e2.log();
    assert_eq!(built(&log), 0, "e2 fetched the version:\n{log}");
    assert!(
        !log.contains("worker started"),
        "e2 started a worker:\n{log}"
    );

    // e1's one slot busy: the next run goes to e2 (it does not wait on e1).
    let started = started_file(&sb, "long-started");
    let long = server.submit(json!({"app": APP,
        "input": {"seconds": 60, "started_file": started.to_str().unwrap()}}));
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started\ne1: {}",
        e1.log()
    );
    assert_eq!(engines_of(&server.task(&long)), ["e1"]);
    let task = run(&server, "while-busy");
    assert_eq!(
        engines_of(&task),
        ["e2"],
        "{task:#}\ne1: {}\ne2: {}",
        e1.log(),
        e2.log()
    );
    assert_eq!(built(&e2.log()), 1, "{}", e2.log());
    server.api("POST", &format!("/tasks/{long}/cancel"), None, 200);
    let cancelled = server.wait_end(&long, Duration::from_secs(20));
    assert_eq!(cancelled["status"], 12, "{cancelled:#}");
}
