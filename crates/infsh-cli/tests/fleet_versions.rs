//! End to end with the real binaries: deployed versions run on a remote
//! engine that has no `--apps` (docs/deploy.md, "Versions on engines").
//! One `infsh serve --versions-on-engines` (no apps of its own) and one
//! `infsh engine run` without `--apps`: `infsh app deploy` to the API
//! node, runs of `ns/name` complete on the engine (which fetched, checked
//! and built the package), a second deploy's runs get v2 while `@v1`
//! still runs v1, a restarted engine runs both from its cache without a
//! download, the package route refuses a wrong key (401) and an unknown
//! hash (404), and a version whose package is gone fails its task saying
//! why.

mod common;

use std::path::{Path, PathBuf};

use common::engine_proc::EngineProc;
use common::fleet::{pg_api_node, wait_online};
use common::server::*;
use serde_json::{json, Value};

const ENGINE_KEY: &str = "engine-key-versions";
const APP: &str = "tests/versioned";

/// The app's source folder: `run` answers `label`.
fn write_app(dir: &Path, label: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("inf.yml"),
        "namespace: tests\nname: versioned\ndefault_function: run\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("inference.py"),
        format!(
            "from inferencesh import BaseApp, BaseAppInput, BaseAppOutput\n\n\
             LABEL = {label:?}\n\n\
             class RunInput(BaseAppInput):\n    pass\n\n\
             class RunOutput(BaseAppOutput):\n    label: str\n\n\
             class App(BaseApp):\n\
             \x20   async def setup(self):\n        pass\n\n\
             \x20   async def run(self, input_data: RunInput) -> RunOutput:\n\
             \x20       return RunOutput(label=LABEL)\n"
        ),
    )
    .unwrap();
}

fn src(sb: &ServeSandbox) -> PathBuf {
    sb.path().join("src")
}

/// `infsh app deploy src --json`: the new version's full hash.
fn deploy(sb: &ServeSandbox, server: &Server, label: &str) -> String {
    write_app(&src(sb), label);
    let version = sb.run_json(
        server,
        &["--json", "app", "deploy", src(sb).to_str().unwrap()],
        0,
    );
    assert_eq!(version["status"], "ready", "{version}");
    version["id"].as_str().unwrap().to_string()
}

/// A `wait` run of `app`: the task as the API node shows it after.
fn run(server: &Server, app: &str) -> Value {
    let done = server.api(
        "POST",
        "/apps/run",
        Some(json!({"app": app, "input": {}, "wait": true})),
        200,
    );
    server.task(done["id"].as_str().unwrap())
}

/// Runs `app` and checks it completed on engine `e1` as version `hash`.
fn assert_runs_on_engine(
    server: &Server,
    app: &str,
    hash: &str,
    label: &str,
    log: &dyn Fn() -> String,
) {
    let task = run(server, app);
    assert_eq!(task["status"], 10, "{task:#}\nengine: {}", log());
    assert_eq!(task["output"]["label"], label, "{task:#}");
    assert_eq!(task["app"], format!("{APP}@{hash}"), "{task:#}");
    assert_eq!(task["attempts"][0]["engine"], "e1", "{task:#}");
}

fn count(log: &str, line: &str) -> usize {
    log.lines().filter(|l| l.contains(line)).count()
}

#[test]
fn an_engine_without_apps_fetches_builds_and_caches_deployed_versions() {
    let sb = ServeSandbox::new(&[]);
    let server = sb.start_with_key(&[
        "--engine-key",
        ENGINE_KEY,
        "--lease-seconds",
        "2",
        "--versions-on-engines",
    ]);
    let engine = EngineProc::spawn_fetching(&sb, &server.url, "e1", "e1", ENGINE_KEY, &[]);
    wait_online(&server, &["e1"]);

    let v1 = deploy(&sb, &server, "v1");
    assert_runs_on_engine(&server, APP, &v1, "v1", &|| engine.log());
    let v2 = deploy(&sb, &server, "v2");
    assert_runs_on_engine(&server, APP, &v2, "v2", &|| engine.log());
    assert_runs_on_engine(&server, &format!("{APP}@{}", &v1[..8]), &v1, "v1", &|| {
        engine.log()
    });
    // Each version was downloaded once, into the engine's data folder.
    let log = engine.log();
    assert_eq!(count(&log, "fetched and built a version"), 2, "{log}");
    for hash in [&v1, &v2] {
        assert!(
            sb.path()
                .join(format!("e1/data/versions/{APP}/{hash}"))
                .is_dir(),
            "{hash} not cached"
        );
    }
    assert_eq!(
        count(&server.log(), "sent a version's package to an engine"),
        2,
        "{}",
        server.log()
    );

    // Restarted (same data folder): both run from its cache, no download.
    drop(engine);
    let engine = EngineProc::spawn_fetching(&sb, &server.url, "e1", "e1", ENGINE_KEY, &[]);
    wait_online(&server, &["e1"]);
    assert_runs_on_engine(&server, APP, &v2, "v2", &|| engine.log());
    assert_runs_on_engine(&server, &format!("{APP}@{}", &v1[..8]), &v1, "v1", &|| {
        engine.log()
    });
    let log = engine.log();
    assert_eq!(count(&log, "fetching a version"), 0, "{log}");
    assert_eq!(
        count(&server.log(), "sent a version's package to an engine"),
        2,
        "{}",
        server.log()
    );

    // The package route: engine keys only; an unknown hash is a 404 problem.
    let route = format!("/v1/engine/versions/{APP}/{v1}/package");
    let (status, body) = http_get(&server.url, &route, Some("not-an-engine-key")).unwrap();
    assert_eq!(status, 401, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["detail"], "invalid engine key", "{problem}");
    let (status, body) = http_get(&server.url, &route, Some(ENGINE_KEY)).unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("INFSHPKG1\n"), "{body}");
    let unknown = "0".repeat(64);
    let (status, body) = http_get(
        &server.url,
        &format!("/v1/engine/versions/{APP}/{unknown}/package"),
        Some(ENGINE_KEY),
    )
    .unwrap();
    assert_eq!(status, 404, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 404, "{problem}");
    assert_eq!(problem["resource"], "version", "{problem}");
    assert_eq!(
        problem["detail"],
        format!("app \"{APP}\" has no version \"{unknown}\" (list them: GET /apps/{APP}/versions)"),
        "{problem}"
    );

    // A version whose package the API node lost: its task fails, saying
    // why, once (no retry loop), and the engine goes on.
    let v3 = deploy(&sb, &server, "v3");
    let package = sb.data_dir().join(format!("versions/{APP}/{v3}.pkg"));
    std::fs::remove_file(&package).unwrap();
    let task = run(&server, APP);
    assert_eq!(task["status"], 11, "{task:#}");
    assert_eq!(
        task["error"],
        format!(
            "cannot fetch version {APP}@{v3} from the API node: the API node answered 404: \
             version {v3} of app \"{APP}\" has no package on this API node (deploy it again, \
             or give every API node the same --files)"
        ),
        "{task:#}"
    );
    assert_eq!(task["attempts"].as_array().unwrap().len(), 1, "{task:#}");
    assert_runs_on_engine(&server, &format!("{APP}@{}", &v2[..8]), &v2, "v2", &|| {
        engine.log()
    });
}

/// Two API nodes on one PostgreSQL database sharing one `--files` folder:
/// a version deployed to node A runs on an engine linked to node B, which
/// serves the package from the shared storage (B never saw the upload).
#[test]
fn a_version_deployed_to_one_node_runs_on_an_engine_of_the_other() {
    let db = infsh_testkit::PgTestDb::create();
    let (sb_a, sb_b) = (ServeSandbox::new(&[]), ServeSandbox::new(&[]));
    let shared = sb_a.path().join("shared-files");
    let files = format!("file://{}", shared.display());
    let flags = ["--files", files.as_str(), "--versions-on-engines"];
    let node_a = pg_api_node(&sb_a, &db, ENGINE_KEY, "2", &flags);
    let node_b = pg_api_node(&sb_b, &db, ENGINE_KEY, "2", &flags);
    let engine = EngineProc::spawn_fetching(&sb_b, &node_b.url, "e1", "e1", ENGINE_KEY, &[]);
    wait_online(&node_a, &["e1"]);

    let v1 = deploy(&sb_a, &node_a, "v1");
    assert!(
        shared.join(format!("versions/{APP}/{v1}.pkg")).is_file(),
        "the package is not in the shared storage"
    );
    assert!(!sb_b.data_dir().join(format!("versions/{APP}")).exists());
    assert_runs_on_engine(&node_a, APP, &v1, "v1", &|| engine.log());
    assert_eq!(
        count(&node_b.log(), "sent a version's package to an engine"),
        1,
        "{}",
        node_b.log()
    );
    assert_eq!(
        count(&node_a.log(), "sent a version's package to an engine"),
        0
    );
}
