//! End to end with the real binaries: deployed versions run on a remote
//! engine that has no `--apps` (docs/deploy.md, "Versions on engines").
//! One `infsh serve --versions-on-engines` (no apps of its own) and one
//! `infsh engine run` without `--apps`: `infsh app deploy` to the API
//! node, runs of `ns/name` complete on the engine (which fetched, checked
//! and built the package), a second deploy's runs get v2 while `@v1`
//! still runs v1, a restarted engine runs both from its cache without a
//! download, the package route refuses a wrong key (401) and an unknown
//! hash (404), and a version whose package is gone fails its task saying
//! why. In a fleet of two API nodes on PostgreSQL, a version deployed to
//! one node runs, validates, lists, switches and is removed through the
//! other (docs/deploy.md, "Versions in a fleet"), and a switch retires the
//! old version's replicas on the engine.

mod common;

use std::path::{Path, PathBuf};

use std::time::Duration;

use common::engine_proc::EngineProc;
use common::fleet::{pg_api_node, wait_online};
use common::server::*;
use common::{process_gone, wait_for, zygote_of_worker};
use infsh_testkit::processes_in;
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
             class RunInput(BaseAppInput):\n    n: int = 0\n\n\
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

/// Two `--versions-on-engines` API nodes on `db` sharing one `--files`
/// folder (in A's sandbox), with their sandboxes.
fn two_nodes_sharing_files(
    db: &infsh_testkit::PgTestDb,
) -> (ServeSandbox, ServeSandbox, Server, Server) {
    let (sb_a, sb_b) = (ServeSandbox::new(&[]), ServeSandbox::new(&[]));
    let shared = sb_a.path().join("shared-files");
    let files = format!("file://{}", shared.display());
    let flags = ["--files", files.as_str(), "--versions-on-engines"];
    let node_a = pg_api_node(&sb_a, db, ENGINE_KEY, "2", &flags);
    let node_b = pg_api_node(&sb_b, db, ENGINE_KEY, "2", &flags);
    (sb_a, sb_b, node_a, node_b)
}

/// Two API nodes on one PostgreSQL database sharing one `--files` folder:
/// a version deployed to node A runs on an engine linked to node B, which
/// serves the package from the shared storage (B never saw the upload).
#[test]
fn a_version_deployed_to_one_node_runs_on_an_engine_of_the_other() {
    let db = infsh_testkit::PgTestDb::create();
    let (sb_a, sb_b, node_a, node_b) = two_nodes_sharing_files(&db);
    let shared = sb_a.path().join("shared-files");
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

/// The pids of the replicas of version `hash` the engine started, oldest
/// first (its log's `worker started` lines; the version's zygote is not
/// one).
fn replica_pids(log: &str, hash: &str) -> Vec<u32> {
    let app = format!("app={APP}@{hash} ");
    log.lines()
        .filter(|l| l.contains("worker started") && l.contains(&app))
        .filter_map(|l| l.split("pid=").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

/// Polls until version `hash` has a live replica on the engine (`up`), or
/// has had some and none is alive.
fn wait_replica(hash: &str, up: bool, log: &dyn Fn() -> String) {
    let live = || -> (usize, usize) {
        let pids = replica_pids(&log(), hash);
        let alive = pids.iter().filter(|p| !process_gone(**p)).count();
        (pids.len(), alive)
    };
    let reached = wait_for(Duration::from_secs(30), || match live() {
        (_, alive) if up => alive > 0,
        (started, alive) => started > 0 && alive == 0,
    });
    assert!(
        reached,
        "version {hash}: expected a replica {}, found (started, alive) {:?}\nengine: {}",
        if up { "up" } else { "stopped" },
        live(),
        log()
    );
}

/// Two API nodes on one PostgreSQL database, both `--versions-on-engines`
/// with one `--files` folder, one engine linked to node A. Versions
/// deployed to A are run through B by name, `@HASH` and `@latest`, listed
/// there (`GET /apps`, the detail's schemas, `GET .../versions`), their
/// bad input refused by B with the same 422 as by A; a switch made on B
/// is what A's next run gets, while a session opened on the old version
/// keeps it (and keeps it from removal); a version is removed through B.
/// On the engine, a switch retires the old version: its idle replica
/// stops (a session's once the session ends) and so does its zygote, and a
/// later pinned run starts both again.
#[test]
fn a_version_built_on_one_node_is_run_switched_and_removed_through_the_other() {
    let db = infsh_testkit::PgTestDb::create();
    let (sb_a, sb_b, node_a, node_b) = two_nodes_sharing_files(&db);
    let engine = EngineProc::spawn_fetching(&sb_a, &node_a.url, "e1", "e1", ENGINE_KEY, &[]);
    wait_online(&node_b, &["e1"]);
    let log = || engine.log();

    let v1 = deploy(&sb_a, &node_a, "v1");
    assert_runs_on_engine(&node_b, APP, &v1, "v1", &log);
    wait_replica(&v1, true, &log);
    let v1_zygote = zygote_of_worker(replica_pids(&log(), &v1)[0]);
    let v2 = deploy(&sb_a, &node_a, "v2");
    // B never saw either upload, nor built anything; A keeps no worker of
    // what it built (its build's stops once the version is ready).
    assert!(!sb_b.data_dir().join(format!("versions/{APP}")).exists());
    for hash in [&v1, &v2] {
        let folder = sb_a.data_dir().join(format!("versions/{APP}/{hash}"));
        assert!(folder.is_dir(), "{}", folder.display());
        let stopped = wait_for(Duration::from_secs(30), || processes_in(&folder).is_empty());
        assert!(stopped, "A still runs {:?}", processes_in(&folder));
    }

    // Runs through B: the current version, pinned, latest.
    assert_runs_on_engine(&node_b, APP, &v2, "v2", &log);
    // The switch to v2 reached the engine: v1's idle replica stopped, and
    // with it v1's zygote.
    wait_replica(&v1, false, &log);
    wait_replica(&v2, true, &log);
    let stopped = wait_for(Duration::from_secs(30), || process_gone(v1_zygote));
    assert!(
        stopped,
        "v1's zygote {v1_zygote} lives on\nengine: {}",
        log()
    );
    // A later pinned run starts one again, from a new zygote.
    assert_runs_on_engine(&node_b, &format!("{APP}@{}", &v1[..8]), &v1, "v1", &log);
    wait_replica(&v1, true, &log);
    let pinned = *replica_pids(&log(), &v1).last().unwrap();
    let v1_zygote_again = zygote_of_worker(pinned);
    assert_ne!(v1_zygote_again, v1_zygote);
    assert!(!process_gone(v1_zygote_again));
    assert_runs_on_engine(&node_b, &format!("{APP}@latest"), &v2, "v2", &log);

    // Bad input: B answers the 422 A answers, before anything is queued.
    let bad = json!({"app": APP, "input": {"n": "x"}});
    let refused_b = node_b.api("POST", "/apps/run", Some(bad.clone()), 422);
    let refused_a = node_a.api("POST", "/apps/run", Some(bad), 422);
    assert_eq!(refused_b, refused_a);
    // The shape of a local app's refusal (`submit.rs` words it the same).
    assert_eq!(
        refused_b,
        json!({
            "type": "https://infsh.dev/errors/validation_error",
            "title": "Unprocessable Entity",
            "status": 422,
            "detail": "input for function \"run\" is invalid: n: expected integer, got string \"x\"",
            "what": "input for function \"run\"",
            "errors": [{"path": "n", "message": "expected integer, got string \"x\""}],
        })
    );
    // A pinned hash no version has: the 404 of the node that built them.
    let unknown = node_b.api(
        "POST",
        "/apps/run",
        Some(json!({"app": format!("{APP}@ffffffff"), "input": {}})),
        404,
    );
    assert_eq!(
        unknown["detail"],
        format!("app \"{APP}\" has no version \"ffffffff\" (list them: GET /apps/{APP}/versions)"),
        "{unknown}"
    );

    // B lists it and shows its schemas.
    let apps = node_b.api("GET", "/apps", None, 200);
    let listed = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == format!("{APP}@{v2}"))
        .unwrap_or_else(|| panic!("{apps:#}"));
    assert_eq!(listed["functions"], json!(["run"]), "{listed}");
    assert_eq!(listed["hash"], v2.as_str(), "{listed}");
    assert_eq!(listed["state"], "ready", "{listed}");
    let detail = node_b.api("GET", &format!("/apps/{APP}"), None, 200);
    assert_eq!(detail["id"], format!("{APP}@{v2}"), "{detail}");
    assert_eq!(
        detail["functions"]["run"]["input_schema"]["properties"]["n"]["type"], "integer",
        "{detail}"
    );
    let versions = node_b.api("GET", &format!("/apps/{APP}/versions"), None, 200);
    let listed: Vec<(&str, bool)> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["current"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed, [(v2.as_str(), true), (v1.as_str(), false)]);

    // A session opened through A on v2 (the current version).
    let opened = node_a.api(
        "POST",
        "/apps/run",
        Some(json!({"app": APP, "input": {}, "session": "new", "wait": true})),
        200,
    );
    let opened = node_a.task(opened["id"].as_str().unwrap());
    assert_eq!(opened["status"], 10, "{opened:#}\nengine: {}", log());
    assert_eq!(opened["app"], format!("{APP}@{v2}"), "{opened:#}");
    let session = opened["session_id"].as_str().unwrap().to_string();

    // Rollback through B: A's next run gets v1.
    let switched = node_b.api(
        "PUT",
        &format!("/apps/{APP}/versions/{}/current", &v1[..12]),
        None,
        200,
    );
    assert_eq!(switched["current"], true, "{switched}");
    assert_runs_on_engine(&node_a, APP, &v1, "v1", &log);
    // The session keeps v2, through either node, naming the app only.
    let call = node_b.api(
        "POST",
        "/apps/run",
        Some(json!({"app": APP, "input": {}, "session": session, "wait": true})),
        200,
    );
    let call = node_b.task(call["id"].as_str().unwrap());
    assert_eq!(call["status"], 10, "{call:#}\nengine: {}", log());
    assert_eq!(call["output"]["label"], "v2", "{call:#}");
    assert_eq!(call["app"], format!("{APP}@{v2}"), "{call:#}");
    // Naming another version in it is refused, as on a single node.
    let mismatch = node_a.api(
        "POST",
        "/apps/run",
        Some(json!({"app": format!("{APP}@{}", &v1[..8]), "input": {}, "session": session})),
        400,
    );
    assert_eq!(
        mismatch["type"], "https://infsh.dev/errors/VERSION_MISMATCH",
        "{mismatch}"
    );
    assert_eq!(
        mismatch["detail"],
        format!(
            "session \"{session}\" runs version {} of app \"{APP}\", not {}",
            &v2[..12],
            &v1[..12]
        ),
        "{mismatch}"
    );
    // Its version cannot be removed while it lives, from any node.
    let held = node_b.api("DELETE", &format!("/apps/{APP}/versions/{v2}"), None, 409);
    assert_eq!(
        held["detail"],
        format!(
            "version {} of app \"{APP}\" has 1 live session(s): end them first",
            &v2[..12]
        ),
        "{held}"
    );
    // Ended, its replica on the engine (v2, retired) stops; v1's stays.
    let (status, body) = node_b
        .request("DELETE", &format!("/sessions/{session}"), None)
        .unwrap();
    assert_eq!(status, 204, "{body}");
    wait_replica(&v2, false, &log);
    wait_replica(&v1, true, &log);

    // Removal through B: the current one is refused, the other goes.
    let refused = node_b.api("DELETE", &format!("/apps/{APP}/versions/{v1}"), None, 409);
    assert_eq!(
        refused["detail"],
        format!(
            "version {} is the current version of app \"{APP}\": activate another first",
            &v1[..12]
        ),
        "{refused}"
    );
    let (status, body) = node_b
        .request("DELETE", &format!("/apps/{APP}/versions/{v2}"), None)
        .unwrap();
    assert_eq!(status, 204, "{body}");
    let versions = node_a.api("GET", &format!("/apps/{APP}/versions"), None, 200);
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    let gone = node_a.api(
        "POST",
        "/apps/run",
        Some(json!({"app": format!("{APP}@{}", &v2[..8]), "input": {}})),
        404,
    );
    assert_eq!(gone["resource"], "version", "{gone}");
}

/// A `--versions-on-engines` node restarted on its data folder (with
/// `--preload`) hosts none of its versions again: no local worker of one
/// appears, in `GET /workers` or as a process in its folder, and its runs
/// still go to the engine.
#[test]
fn a_restarted_versions_on_engines_node_hosts_no_version_itself() {
    let sb = ServeSandbox::new(&[]);
    let flags = [
        "--engine-key",
        ENGINE_KEY,
        "--lease-seconds",
        "2",
        "--versions-on-engines",
    ];
    let server = sb.start_with_key(&flags);
    let engine = EngineProc::spawn_fetching(&sb, &server.url, "e1", "e1", ENGINE_KEY, &[]);
    wait_online(&server, &["e1"]);
    let v1 = deploy(&sb, &server, "v1");
    assert_runs_on_engine(&server, APP, &v1, "v1", &|| engine.log());
    drop(engine);
    drop(server);

    let server = sb.start_with_key(&[&flags[..], &["--preload"]].concat());
    let local = |server: &Server| -> Vec<Value> {
        let rows = server.api("GET", "/workers", None, 200);
        rows.as_array()
            .unwrap_or_else(|| panic!("{rows}"))
            .iter()
            .filter(|w| w["app"] == format!("{APP}@{v1}"))
            .cloned()
            .collect()
    };
    // A preload's replica is `starting` from the start on: none here.
    assert_eq!(local(&server), Vec::<Value>::new(), "{}", server.log());
    let engine = EngineProc::spawn_fetching(&sb, &server.url, "e1", "e1", ENGINE_KEY, &[]);
    wait_online(&server, &["e1"]);
    assert_runs_on_engine(&server, APP, &v1, "v1", &|| engine.log());
    assert_runs_on_engine(&server, &format!("{APP}@{}", &v1[..8]), &v1, "v1", &|| {
        engine.log()
    });
    assert_eq!(local(&server), Vec::<Value>::new(), "{}", server.log());
    let folder = sb.data_dir().join(format!("versions/{APP}/{v1}"));
    assert!(folder.is_dir(), "{}", folder.display());
    assert_eq!(processes_in(&folder), Vec::new());
    assert_eq!(count(&server.log(), "hosting deployed versions"), 0);
    // Listed from the store, as before the restart.
    let apps = server.api("GET", "/apps", None, 200);
    assert!(
        apps.as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == format!("{APP}@{v1}") && a["state"] == "ready"),
        "{apps:#}"
    );
}
