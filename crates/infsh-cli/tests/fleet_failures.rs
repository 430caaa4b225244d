//! What a fleet does on each failure (docs/reliability.md, "A fleet"), end
//! to end with the real binaries on a PostgreSQL database of their own
//! ([`PgTestDb`]) and real Python workers: an engine cut off from its API
//! node while it runs (a [`CutProxy`] between them), an API node killed
//! while clients submit, PostgreSQL restarted under load (a cluster of the
//! test's own, [`ThrowawayPg`]), and an engine whose app the API node
//! refuses.

mod common;

use std::time::Duration;

use common::cut_proxy::CutProxy;
use common::engine_proc::EngineProc;
use common::fleet::{assert_ended_once, pg_api_node, state_of, wait_engines, wait_online};
use common::server::*;
use common::throwaway_pg::ThrowawayPg;
use common::*;
use infsh_testkit::PgTestDb;
use serde_json::{json, Value};

const ENGINE_KEY: &str = "engine-key-fleet-failures";
const LEASE: &str = "1";

/// The lines of `log` that contain every one of `parts`.
fn lines_with<'a>(log: &'a str, parts: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

/// An engine whose connection to its API node breaks while it runs a task
/// (the process stays up): it shows offline and takes nothing, its task is
/// requeued once the lease runs out and completes on another engine, and
/// when the link comes back, the result it finished meanwhile is refused
/// (and logged on both sides); the task keeps the other engine's end.
#[test]
fn an_engine_cut_off_is_offline_its_task_runs_elsewhere_and_its_late_result_is_refused() {
    let db = PgTestDb::create();
    let sb = ServeSandbox::new(&[]);
    let node = pg_api_node(&sb, &db, ENGINE_KEY, LEASE, &[]);
    let proxy = CutProxy::start(&node.url);
    let e1 = EngineProc::spawn(&sb, &proxy.url, "e1", "e1", ENGINE_KEY, &["slow"], &[]);
    let e2 = EngineProc::start(&sb, &node, "e2", ENGINE_KEY, &[]);
    wait_online(&node, &["e1", "e2"]);
    // e2 takes nothing until e1 holds the task.
    node.api("POST", "/engines/e2/drain", None, 200);
    let started = sb.path().join("started");
    let id = node.submit(json!({"app": "tests/slow",
        "input": {"seconds": 3, "label": "cut", "started_file": started.to_str().unwrap()}}));
    assert!(
        wait_for(Duration::from_secs(30), || started.exists()),
        "never started\n{}",
        e1.log()
    );
    proxy.cut();
    node.api("POST", "/engines/e2/undrain", None, 200);

    // No heartbeat gets through: e1 goes offline, and its task runs again
    // on e2.
    wait_engines(&node, "e1 never offline", |r| {
        state_of(r, "e1") == Some("offline")
    });
    let done = node.wait_end(&id, Duration::from_secs(40));
    let attempts = assert_ended_once(&done, "cut", 2);
    assert_eq!(done["status"], 10, "{done:#}\n{}", node.log());
    assert_eq!(attempts[0]["engine"], "e1", "{done:#}");
    assert_eq!(attempts[1]["engine"], "e2", "{done:#}");
    // A task queued while e1 is cut off goes to e2 (e1 takes no work).
    let meanwhile = node.submit(json!({"app": "tests/slow",
        "input": {"seconds": 0.1, "label": "meanwhile"}}));
    let meanwhile = node.wait_end(&meanwhile, Duration::from_secs(30));
    assert_eq!(meanwhile["attempts"][0]["engine"], "e2", "{meanwhile:#}");

    // e1 finished its copy and keeps trying to report it.
    assert!(
        wait_for(Duration::from_secs(30), || !lines_with(
            &e1.log(),
            &["report not delivered; retrying", &id]
        )
        .is_empty()),
        "e1 never tried to report its late result\n{}",
        e1.log()
    );
    proxy.restore();
    assert!(
        wait_for(Duration::from_secs(30), || !lines_with(
            &node.log(),
            &["refused a report", "engine=e1", &id]
        )
        .is_empty()),
        "the API node did not log the refused late report\n{}",
        node.log()
    );
    assert!(
        wait_for(Duration::from_secs(30), || !lines_with(
            &e1.log(),
            &[
                "the API node refused a report; cancelling the local copy",
                &id
            ]
        )
        .is_empty()),
        "e1 did not log the refusal\n{}",
        e1.log()
    );
    // The late result changed nothing, and e1 is back.
    let after = node.task(&id);
    assert_eq!(after["status"], 10, "{after:#}");
    assert_eq!(after["attempts"], done["attempts"], "{after:#}");
    assert_eq!(after["output"], done["output"], "{after:#}");
    wait_online(&node, &["e1"]);
    drop(e2);
}

/// One acknowledged submission: which node took it, and its label.
struct Submitted {
    id: String,
    label: String,
}

/// `POST /apps/run` on the first node that answers, in the order given: a
/// client of a fleet retries a refused connection on another node.
fn submit_to_any(nodes: &[&Server], body: &Value) -> String {
    for node in nodes {
        if let Some((200, text)) = node.request("POST", "/apps/run", Some(body.clone())) {
            let doc: Value = serde_json::from_str(&text).unwrap();
            return doc["data"]["id"].as_str().unwrap().to_string();
        }
    }
    panic!("no node took {body}");
}

/// Clients submit to both API nodes; one is killed (-9) half way through.
/// Its clients go to the other node; every submission acknowledged before
/// or after completes (the dead node's engine loses its tasks' leases, and
/// the other node's engine runs them again); none ends twice.
#[test]
fn clients_retry_on_the_other_node_when_one_is_killed_and_no_task_is_lost() {
    let db = PgTestDb::create();
    let (sb_a, sb_b) = (ServeSandbox::new(&[]), ServeSandbox::new(&[]));
    let mut node_a = pg_api_node(&sb_a, &db, ENGINE_KEY, LEASE, &[]);
    let node_b = pg_api_node(&sb_b, &db, ENGINE_KEY, LEASE, &[]);
    let _e1 = EngineProc::start(&sb_a, &node_a, "e1", ENGINE_KEY, &["--replicas", "2"]);
    let _e2 = EngineProc::start(&sb_b, &node_b, "e2", ENGINE_KEY, &["--replicas", "2"]);
    wait_online(&node_a, &["e1", "e2"]);

    let mut submitted = Vec::new();
    for i in 0..40 {
        if i == 20 {
            // A dies while its engine holds tasks.
            wait_engines(&node_b, "e1 never ran anything", |r| {
                r.iter().any(|e| {
                    e["name"] == "e1"
                        && e["remote"]["running"]
                            .as_array()
                            .is_some_and(|a| !a.is_empty())
                })
            });
            node_a.kill9();
        }
        let label = format!("t{i}");
        let body = json!({"app": "tests/slow", "input": {"seconds": 0.5, "label": label}});
        // Even ones to A first, odd ones to B first.
        let order = if i % 2 == 0 {
            [&node_a, &node_b]
        } else {
            [&node_b, &node_a]
        };
        let id = submit_to_any(&order, &body);
        submitted.push(Submitted { id, label });
    }
    let mut requeued = 0;
    for task in &submitted {
        let done = node_b.wait_end(&task.id, Duration::from_secs(60));
        assert_eq!(done["status"], 10, "{done:#}\n{}", node_b.log());
        if assert_ended_once(&done, &task.label, 2).len() > 1 {
            requeued += 1;
        }
    }
    // The tasks e1 (linked to A) held when A died ran again on e2.
    assert!(requeued > 0, "no task was requeued");
}

/// An engine whose app's input schema does not compile: the API node
/// refuses its registration (400 `invalid_schema`, logged), and the engine
/// exits 3 saying which app and why instead of retrying for ever.
#[test]
fn an_engine_whose_app_schema_does_not_compile_exits_3_and_both_sides_say_why() {
    let db = PgTestDb::create();
    let sb = ServeSandbox::new(&[]);
    let node = pg_api_node(&sb, &db, ENGINE_KEY, LEASE, &[]);
    let mut engine =
        EngineProc::start_hosting(&sb, &node, "e1", ENGINE_KEY, &["invalid-schema"], &[]);
    let status = engine.wait_exit(Duration::from_secs(60));
    let log = engine.log();
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{log}");
    let refused = lines_with(
        &log,
        &["engine e1: the API node refused the registration (400): invalid_schema: app \"tests/invalid-schema\": function \"run\" is refused: its input schema does not compile: "],
    );
    assert_eq!(refused.len(), 1, "{log}");
    assert_eq!(
        lines_with(
            &node.log(),
            &[
                "refused an engine's registration",
                "engine=e1",
                "app \"tests/invalid-schema\": function \"run\" is refused"
            ]
        )
        .len(),
        1,
        "{}",
        node.log()
    );
    // Nothing was registered.
    let remote = wait_engines(&node, "listing", |_| true);
    assert!(remote.is_empty(), "{remote:#?}");
}

/// `POST /apps/run` of `body`, on `nodes` in turn until one acknowledges it
/// (bounded): while the database restarts, a node refuses a run (5xx), and
/// its client tries again. Only an acknowledged run must survive.
fn submit_retrying(nodes: &[&Server], body: &Value) -> String {
    let mut id = None;
    let mut tries = 0;
    let acknowledged = wait_for(Duration::from_secs(60), || {
        let node = nodes[tries % nodes.len()];
        tries += 1;
        if let Some((200, text)) = node.request("POST", "/apps/run", Some(body.clone())) {
            let doc: Value = serde_json::from_str(&text).unwrap();
            id = doc["data"]["id"].as_str().map(str::to_string);
        }
        id.is_some()
    });
    assert!(acknowledged, "no node took {body} in a minute");
    id.unwrap()
}

/// PostgreSQL restarts (`pg_ctl restart -m fast`: every session ended)
/// while two API nodes and their engines run and take tasks: the nodes'
/// pools and listeners and the engines reconnect, every run acknowledged
/// before, during or after completes, none twice, and a run submitted to
/// one node afterwards still wakes the other node's engine.
#[test]
fn postgres_restarted_under_load_nodes_and_engines_reconnect_and_no_acknowledged_task_is_lost() {
    let Some(pg) = ThrowawayPg::start() else {
        eprintln!("skipped: no initdb/pg_ctl here (Debian package postgresql)");
        return;
    };
    let (sb_a, sb_b) = (ServeSandbox::new(&[]), ServeSandbox::new(&[]));
    let flags = |_| {
        vec![
            "--store",
            pg.url.as_str(),
            "--engine-key",
            ENGINE_KEY,
            "--lease-seconds",
            "3",
            "--max-attempts",
            "3",
        ]
    };
    let node_a = sb_a.start_with_key(&flags(0));
    let node_b = sb_b.start_with_key(&flags(1));
    let _e1 = EngineProc::start(&sb_a, &node_a, "e1", ENGINE_KEY, &["--replicas", "2"]);
    let _e2 = EngineProc::start(&sb_b, &node_b, "e2", ENGINE_KEY, &["--replicas", "2"]);
    wait_online(&node_a, &["e1", "e2"]);

    let mut acknowledged = Vec::new();
    std::thread::scope(|scope| {
        let mut restart = None;
        for i in 0..40 {
            if i == 15 {
                restart = Some(scope.spawn(|| pg.restart()));
            }
            let label = format!("r{i}");
            let body = json!({"app": "tests/slow", "input": {"seconds": 0.3, "label": label}});
            let order = if i % 2 == 0 {
                [&node_a, &node_b]
            } else {
                [&node_b, &node_a]
            };
            acknowledged.push(Submitted {
                id: submit_retrying(&order, &body),
                label,
            });
        }
        restart.unwrap().join().expect("pg_ctl restart");
    });
    for task in &acknowledged {
        let done = node_b.wait_end(&task.id, Duration::from_secs(90));
        assert_ended_once(&done, &task.label, 3);
        assert_eq!(
            done["status"],
            10,
            "{done:#}\nA: {}\nB: {}\npg: {}",
            node_a.log(),
            node_b.log(),
            pg.log()
        );
    }
    assert!(
        pg.log().contains("received fast shutdown request"),
        "{}",
        pg.log()
    );
    // Both engines are back, and node A's queue wake-up reaches node B's
    // engine (B's listener is listening again).
    wait_online(&node_a, &["e1", "e2"]);
    node_a.api("POST", "/engines/e1/drain", None, 200);
    let id =
        node_a.submit(json!({"app": "tests/slow", "input": {"seconds": 0.1, "label": "after"}}));
    let after = node_a.wait_end(&id, Duration::from_secs(30));
    assert_eq!(after["status"], 10, "{after:#}");
    assert_eq!(after["attempts"][0]["engine"], "e2", "{after:#}");
}
