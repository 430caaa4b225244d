//! End to end with the real binaries on one PostgreSQL database (a fresh
//! one per test, [`PgTestDb`]): two `infsh serve --store postgres://...
//! --engine-key` API nodes, each with a data folder of its own and no app
//! of its own, and `infsh engine run` processes hosting the `slow` fixture,
//! each linked to one node. A task submitted to one node is claimed by an
//! engine linked to the other, streamed and waited on from either; a node
//! restarted while the other's task runs leaves it alone; an engine killed
//! mid-task has its task run again by an engine of the other node, and so
//! does the task of a node killed mid-task.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::engine_proc::EngineProc;
use common::fleet::{pg_api_node, wait_online};
use common::server::*;
use common::*;
use infsh_testkit::PgTestDb;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

const ENGINE_KEY: &str = "engine-key-pg-fleet";
const LEASE: &str = "1";

/// An API node on `db` (its own sandbox: data folder, logs).
fn api_node(sb: &ServeSandbox, db: &PgTestDb) -> Server {
    pg_api_node(sb, db, ENGINE_KEY, LEASE, &[])
}

fn started_file(sb: &ServeSandbox, name: &str) -> PathBuf {
    sb.path().join(name)
}

#[test]
fn a_task_submitted_to_one_node_runs_on_the_others_engine_and_streams_from_both() {
    let db = PgTestDb::create();
    let (sb_a, sb_b) = (ServeSandbox::new(&[]), ServeSandbox::new(&[]));
    let node_a = api_node(&sb_a, &db);
    let node_b = api_node(&sb_b, &db);
    // The engine talks to node B only: its claims and reports go there.
    let engine = EngineProc::start(&sb_b, &node_b, "e1", ENGINE_KEY, &[]);
    // Node A lists it from the shared database.
    let remote = wait_online(&node_a, &["e1"]);
    assert_eq!(remote[0]["remote"]["apps"][0]["app"], "tests/slow");

    // Submitted to A, claimed through B (A's queue wake-up reaches B's
    // long-polling claim), followed from B with `task get --wait` (the
    // stream of a task B never had in memory).
    let id = node_a.submit(json!({"app": "tests/slow",
        "input": {"seconds": 1, "label": "across"}}));
    let followed = sb_b.run_json(&node_b, &["--json", "task", "get", &id, "--wait"], 0);
    assert_eq!(
        followed["status"],
        "completed",
        "{followed:#}\n{}",
        engine.log()
    );
    assert_eq!(followed["output"]["label"], "across", "{followed:#}");

    // A waits on a run it submitted: the engine's reports reach B, and A's
    // view follows them through PostgreSQL.
    let done = node_a.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/slow", "input": {"seconds": 0.5, "label": "waited"}, "wait": true})),
        200,
    );
    assert_eq!(
        done["status"],
        10,
        "{done:#}\nA: {}\nB: {}",
        node_a.log(),
        node_b.log()
    );
    assert_eq!(done["output"]["label"], "waited");

    // Both nodes read the same task: status, output, logs, attempt.
    for node in [&node_a, &node_b] {
        let task = node.task(&id);
        assert_eq!(task["status"], 10, "{task:#}");
        assert_eq!(task["output"]["label"], "across");
        assert_eq!(task["attempts"][0]["engine"], "e1", "{task:#}");
        assert!(
            task["logs"].as_array().unwrap().iter().any(|l| l["content"]
                .as_str()
                .unwrap_or("")
                .contains("napping across")),
            "{task:#}"
        );
    }
}

#[test]
fn restarting_one_node_leaves_the_other_nodes_running_task_alone() {
    let db = PgTestDb::create();
    let (sb_a, sb_b) = (ServeSandbox::new(&[]), ServeSandbox::new(&[]));
    let node_a = api_node(&sb_a, &db);
    let mut node_b = api_node(&sb_b, &db);
    let _engine = EngineProc::start(&sb_a, &node_a, "e1", ENGINE_KEY, &[]);
    wait_online(&node_a, &["e1"]);
    let started = started_file(&sb_a, "started");
    let id = node_a.submit(json!({"app": "tests/slow",
        "input": {"seconds": 3, "label": "survives", "started_file": started.to_str().unwrap()}}));
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started\n{}",
        node_a.log()
    );
    // B stops and starts again while A's task runs: B's start-up recovery
    // must not touch it.
    assert!(node_b.terminate(Duration::from_secs(15)).is_some());
    let node_b = api_node(&sb_b, &db);
    let done = node_b.wait_end(&id, Duration::from_secs(30));
    assert_eq!(done["status"], 10, "{done:#}\n{}", node_b.log());
    assert_eq!(done["output"]["label"], "survives");
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "one run, never interrupted: {done:#}");
}

#[test]
fn restarting_a_node_leaves_another_nodes_own_running_and_queued_tasks_alone() {
    let db = PgTestDb::create();
    // A runs `slow` on its own worker (one at a time); B hosts nothing.
    let (sb_a, sb_b) = (ServeSandbox::new(&["slow"]), ServeSandbox::new(&[]));
    let node_a = sb_a.start_with_key(&["--store", db.url(), "--replicas", "1"]);
    let mut node_b = sb_b.start_with_key(&["--store", db.url()]);
    let started = started_file(&sb_a, "started");
    let running = node_a.submit(json!({"app": "tests/slow",
        "input": {"seconds": 3, "label": "running", "started_file": started.to_str().unwrap()}}));
    let queued = node_a.submit(json!({"app": "tests/slow",
        "input": {"seconds": 0.1, "label": "queued"}}));
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started\n{}",
        node_a.log()
    );
    // B's start-up recovery would fail the running task as interrupted and
    // the queued one as "no longer hosted" were they not A's.
    assert!(node_b.terminate(Duration::from_secs(15)).is_some());
    let node_b = sb_b.start_with_key(&["--store", db.url()]);
    for (id, label) in [(&running, "running"), (&queued, "queued")] {
        let done = node_b.wait_end(id, Duration::from_secs(30));
        assert_eq!(done["status"], 10, "{done:#}\n{}", node_b.log());
        assert_eq!(done["output"]["label"], label);
    }
    // A keeps its id across restarts: its own recovery still finds them.
    let id_file = sb_a.data_dir().join("node-id");
    assert_eq!(std::fs::read_to_string(&id_file).unwrap().trim().len(), 32);
}

#[test]
fn a_killed_engines_task_runs_again_on_an_engine_of_the_other_node() {
    let db = PgTestDb::create();
    let (sb_a, sb_b) = (ServeSandbox::new(&[]), ServeSandbox::new(&[]));
    let node_a = api_node(&sb_a, &db);
    let node_b = api_node(&sb_b, &db);
    let mut e1 = EngineProc::start(&sb_a, &node_a, "e1", ENGINE_KEY, &[]);
    let _e2 = EngineProc::start(&sb_b, &node_b, "e2", ENGINE_KEY, &[]);
    wait_online(&node_a, &["e1", "e2"]);
    // e2 takes nothing until e1 holds the task (drained through A: the
    // flag is in the shared database).
    node_a.api("POST", "/engines/e2/drain", None, 200);
    let started = started_file(&sb_a, "started");
    let id = node_a.submit(json!({"app": "tests/slow",
        "input": {"seconds": 3, "label": "again", "started_file": started.to_str().unwrap()}}));
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started\n{}",
        node_a.log()
    );
    node_b.api("POST", "/engines/e2/undrain", None, 200);
    e1.kill9();

    let done = node_a.wait_end(&id, Duration::from_secs(40));
    assert_eq!(
        done["status"],
        10,
        "{done:#}\nA: {}\nB: {}",
        node_a.log(),
        node_b.log()
    );
    assert_eq!(done["output"]["label"], "again");
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{done:#}");
    assert_eq!(attempts[0]["engine"], "e1");
    assert_eq!(attempts[0]["outcome"], "lost");
    assert_eq!(attempts[1]["attempt"], 2);
    assert_eq!(attempts[1]["engine"], "e2");
    assert_eq!(attempts[1]["outcome"], "completed");
}

/// An API node dies without any shutdown (kill -9) while its engine runs a
/// task submitted to it. The task's state is in PostgreSQL: its lease runs
/// out there (the engine's heartbeats went to the dead node), the other
/// node's sweep queues it again, an engine linked to that node runs it,
/// and the dead node, once restarted, shows it completed (its start-up
/// recovery leaves a remote task of its own alone).
#[test]
fn a_task_of_a_killed_api_node_is_requeued_and_finishes_through_the_other_node() {
    let db = PgTestDb::create();
    let (sb_a, sb_b) = (ServeSandbox::new(&[]), ServeSandbox::new(&[]));
    let mut node_a = api_node(&sb_a, &db);
    let node_b = api_node(&sb_b, &db);
    let _e1 = EngineProc::start(&sb_a, &node_a, "e1", ENGINE_KEY, &[]);
    let _e2 = EngineProc::start(&sb_b, &node_b, "e2", ENGINE_KEY, &[]);
    wait_online(&node_a, &["e1", "e2"]);
    // e2 takes nothing until e1 holds the task.
    node_a.api("POST", "/engines/e2/drain", None, 200);
    let started = started_file(&sb_a, "started");
    let id = node_a.submit(json!({"app": "tests/slow",
        "input": {"seconds": 3, "label": "orphan", "started_file": started.to_str().unwrap()}}));
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started\n{}",
        node_a.log()
    );
    node_b.api("POST", "/engines/e2/undrain", None, 200);
    node_a.kill9();

    let done = node_b.wait_end(&id, Duration::from_secs(40));
    assert_eq!(
        done["status"],
        10,
        "{done:#}\nA: {}\nB: {}",
        node_a.log(),
        node_b.log()
    );
    assert_eq!(done["output"]["label"], "orphan");
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{done:#}");
    assert_eq!(attempts[0]["engine"], "e1");
    assert_eq!(attempts[0]["outcome"], "lost");
    assert_eq!(attempts[1]["engine"], "e2");
    assert_eq!(attempts[1]["outcome"], "completed");

    // A comes back with the same data folder (same node id): its recovery
    // does not touch the task it submitted, which ended elsewhere.
    let node_a = api_node(&sb_a, &db);
    let seen = node_a.task(&id);
    assert_eq!(seen["status"], 10, "{seen:#}\n{}", node_a.log());
    assert_eq!(seen["output"]["label"], "orphan");
    assert_eq!(seen["attempts"].as_array().unwrap().len(), 2, "{seen:#}");
}

/// Output files of a task submitted to node A and run by an engine linked
/// to node B are uploaded to B; the output A serves names B's URLs (the
/// bytes are on B), and a client of A downloads them from there. A node
/// signs only URLs under its own `--public-url` (behind one load balancer
/// every node has the same one): A hands out B's URL unsigned, so A's
/// client sends its key; B hands out the same URL signed, which opens
/// without one (the nodes share one `--signing-secret`).
#[test]
fn output_files_of_a_remote_task_reach_a_client_of_the_other_node() {
    let db = PgTestDb::create();
    let (sb_a, sb_b) = (ServeSandbox::new(&[]), ServeSandbox::new(&[]));
    let secret = ["--signing-secret", "one-signing-secret-for-the-fleet"];
    let node_a = pg_api_node(&sb_a, &db, ENGINE_KEY, LEASE, &secret);
    let node_b = pg_api_node(&sb_b, &db, ENGINE_KEY, LEASE, &secret);
    let engine = EngineProc::start_hosting(&sb_b, &node_b, "e1", ENGINE_KEY, &["files-app"], &[]);
    wait_online(&node_a, &["e1"]);
    let done = node_a.api(
        "POST",
        "/apps/run",
        Some(
            json!({"app": "tests/files-app", "function": "make_files", "input": {}, "wait": true}),
        ),
        200,
    );
    assert_eq!(done["status"], 10, "{done:#}\n{}", engine.log());
    let file = &done["output"]["nested"]["file"];
    let uri = file["uri"].as_str().unwrap_or_default();
    let path = uri
        .strip_prefix(node_b.url.as_str())
        .unwrap_or_else(|| panic!("{uri} is not node B's ({}): {done:#}", node_b.url));
    assert!(!uri.contains("sig="), "{uri}");
    let (status, body) = http_get(&node_b.url, path, Some(TEST_KEY)).expect("download");
    assert_eq!((status, body.as_str()), (200, "nested\n"), "{uri}");
    let (status, _) = http_get(&node_b.url, path, None).expect("download");
    assert_eq!(status, 401, "{uri}");

    let seen_by_b = node_b.task(done["id"].as_str().unwrap());
    let signed = seen_by_b["output"]["nested"]["file"]["uri"]
        .as_str()
        .unwrap_or_default();
    assert!(
        signed.starts_with(uri) && signed.contains("?sig="),
        "{signed}"
    );
    let signed_path = signed.strip_prefix(node_b.url.as_str()).unwrap();
    let (status, body) = http_get(&node_b.url, signed_path, None).expect("download");
    assert_eq!((status, body.as_str()), (200, "nested\n"), "{signed}");
}

#[test]
fn a_full_engine_takes_the_next_queued_task_as_soon_as_a_slot_frees() {
    let db = PgTestDb::create();
    let sb = ServeSandbox::new(&[]);
    // A long lease: a full engine's heartbeat-claim is held for half of it
    // (15 s), so a next task waiting for that would show.
    let node = sb.start_with_key(&[
        "--store",
        db.url(),
        "--engine-key",
        ENGINE_KEY,
        "--lease-seconds",
        "30",
    ]);
    let engine = EngineProc::start(
        &sb,
        &node,
        "e1",
        ENGINE_KEY,
        &["--replicas", "1", "--concurrency", "1"],
    );
    wait_online(&node, &["e1"]);
    let t0 = std::time::Instant::now();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            node.submit(json!({"app": "tests/slow",
                "input": {"seconds": 0.2, "label": format!("n{i}")}}))
        })
        .collect();
    for id in &ids {
        let done = node.wait_end(id, Duration::from_secs(60));
        assert_eq!(done["status"], 10, "{done:#}\n{}", engine.log());
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "three 0.2 s tasks on one slot took {took:?}\n{}",
        engine.log()
    );
}

/// Two nodes hosting `slow` on their own workers (`--apps`, no engine),
/// leases of 1 s; `extra` for B.
fn own_worker_nodes(
    db: &PgTestDb,
    extra_b: &[&str],
) -> (ServeSandbox, ServeSandbox, Server, Server) {
    let (sb_a, sb_b) = (ServeSandbox::new(&["slow"]), ServeSandbox::new(&["slow"]));
    let flags = [
        "--store",
        db.url(),
        "--lease-seconds",
        LEASE,
        "--replicas",
        "1",
    ];
    let node_a = sb_a.start_with_key(&flags);
    let node_b = sb_b.start_with_key(&[&flags[..], extra_b].concat());
    (sb_a, sb_b, node_a, node_b)
}

/// kill -9 of a node and of its workers: the machine is gone.
fn lose(node: &mut Server) {
    let workers = node.app_processes();
    node.kill9();
    for (pid, _) in workers {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

fn node_id(sb: &ServeSandbox) -> String {
    std::fs::read_to_string(sb.data_dir().join("node-id"))
        .unwrap()
        .trim()
        .to_string()
}

/// A node that hosts workers itself and dies for good: once its heartbeat
/// is a lease old, the other node hosting the app takes its tasks over.
/// The queued ones run there; the running one counts its run on the dead
/// node as attempt 1 (`lost`) and runs again there as attempt 2. Each ends
/// once: the dead node, restarted with its data folder (its node id), finds
/// none of them its own and changes nothing.
#[test]
fn a_lost_nodes_own_tasks_are_taken_over_by_a_node_hosting_the_app() {
    let db = PgTestDb::create();
    let (sb_a, sb_b, mut node_a, node_b) = own_worker_nodes(&db, &[]);
    let started = started_file(&sb_a, "started");
    let running = node_a.submit(json!({"app": "tests/slow",
        "input": {"seconds": 2, "label": "running", "started_file": started.to_str().unwrap()}}));
    let queued: Vec<(String, String)> = (0..3)
        .map(|i| {
            let label = format!("queued-{i}");
            let id = node_a.submit(json!({"app": "tests/slow",
                "input": {"seconds": 0.1, "label": label}}));
            (id, label)
        })
        .collect();
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started\n{}",
        node_a.log()
    );
    let (a, b) = (node_id(&sb_a), node_id(&sb_b));
    lose(&mut node_a);

    let done = node_b.wait_end(&running, Duration::from_secs(40));
    assert_eq!(done["status"], 10, "{done:#}\n{}", node_b.log());
    assert_eq!(done["output"]["label"], "running");
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{done:#}");
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["engine"], format!("node:{a}"));
    assert_eq!(attempts[0]["outcome"], "lost");
    assert_eq!(attempts[1]["attempt"], 2);
    assert_eq!(attempts[1]["engine"], format!("node:{b}"));
    assert_eq!(attempts[1]["outcome"], "completed");
    let mut ended = vec![(running.clone(), done)];
    for (id, label) in &queued {
        let done = node_b.wait_end(id, Duration::from_secs(30));
        assert_eq!(done["status"], 10, "{done:#}\n{}", node_b.log());
        assert_eq!(done["output"]["label"], label.as_str());
        // Never run before: no attempt to record.
        assert!(done.get("attempts").is_none(), "{done:#}");
        ended.push((id.clone(), done));
    }
    let took = node_b
        .log()
        .matches("took over a task of a lost API node")
        .count();
    assert_eq!(took, 4, "{}", node_b.log());

    // A comes back (same node id): its start-up recovery, done before it
    // answers, leaves them as B ended them.
    let node_a = sb_a.start_with_key(&["--store", db.url(), "--lease-seconds", LEASE]);
    for (id, before) in &ended {
        let seen = node_a.task(id);
        assert_eq!(seen["status"], 10, "{seen:#}\n{}", node_a.log());
        assert_eq!(seen["updated_at"], before["updated_at"], "{seen:#}");
        assert_eq!(seen["output"], before["output"], "{seen:#}");
    }
}

/// With `--max-attempts 1` the running task of a lost node is not run
/// again: it fails `node lost: <id>`; its queued one still runs.
#[test]
fn with_max_attempts_1_a_lost_nodes_running_task_fails_node_lost() {
    let db = PgTestDb::create();
    let (sb_a, _sb_b, mut node_a, node_b) = own_worker_nodes(&db, &["--max-attempts", "1"]);
    let started = started_file(&sb_a, "started");
    let running = node_a.submit(json!({"app": "tests/slow",
        "input": {"seconds": 30, "started_file": started.to_str().unwrap()}}));
    let queued = node_a.submit(json!({"app": "tests/slow",
        "input": {"seconds": 0.1, "label": "queued"}}));
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started\n{}",
        node_a.log()
    );
    let a = node_id(&sb_a);
    lose(&mut node_a);

    let failed = node_b.wait_end(&running, Duration::from_secs(30));
    assert_eq!(failed["status"], 11, "{failed:#}\n{}", node_b.log());
    assert_eq!(failed["error"], format!("node lost: {a}"));
    let attempts = failed["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{failed:#}");
    assert_eq!(attempts[0]["engine"], format!("node:{a}"));
    assert_eq!(attempts[0]["outcome"], "lost");
    let done = node_b.wait_end(&queued, Duration::from_secs(30));
    assert_eq!(done["status"], 10, "{done:#}\n{}", node_b.log());
    assert_eq!(done["output"]["label"], "queued");
}
