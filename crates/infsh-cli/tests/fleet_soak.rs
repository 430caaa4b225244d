//! The fleet's soak (issue 13): 500 tasks over two API nodes and three
//! engines on one PostgreSQL database ([`PgTestDb`]), with engines killed
//! (-9) while they run tasks and started again under the same name. Every
//! acknowledged task must end, once: completed on its last attempt after
//! any number of lost ones, or failed `engine lost` after the last allowed
//! one; both nodes must agree on it. Short leases (3 s) keep it near a
//! minute and a half.

mod common;

use std::time::Duration;

use common::engine_proc::EngineProc;
use common::fleet::{assert_ended_once, pg_api_node, wait_online};
use common::server::*;
use common::*;
use infsh_testkit::PgTestDb;
use serde_json::json;

const ENGINE_KEY: &str = "engine-key-fleet-soak";
const TASKS: usize = 500;
/// Seconds. Short, so lost tasks come back soon; not shorter, as an engine
/// is offline (and its apps unknown) after a lease without a heartbeat, and
/// on a loaded 2-core machine a busy engine's heartbeats may be a second apart.
const LEASE: &str = "3";
const MAX_ATTEMPTS: usize = 4;
/// Engine kills at most (each while the engine runs something).
const KILLS: usize = 6;
const ENGINES: usize = 3;

/// A minute and a half on a loaded 2-core machine: not in every `cargo
/// nextest run`, but in `scripts/soak.sh` (which `scripts/test.sh`, the CI
/// suite, runs).
#[test]
#[ignore = "the fleet soak: scripts/soak.sh runs it (--run-ignored all)"]
fn five_hundred_tasks_through_engines_killed_and_restarted_end_once_each() {
    let db = PgTestDb::create();
    let (sb_a, sb_b) = (ServeSandbox::new(&[]), ServeSandbox::new(&[]));
    // Every task may wait at once (the submitter is faster than the engines
    // on a quiet machine): the soak is about engines lost, not about the
    // per-app queue limit, whose 429 has tests of its own.
    let capacity = TASKS.to_string();
    let flags = [
        "--max-attempts",
        &MAX_ATTEMPTS.to_string(),
        "--queue-capacity",
        &capacity,
    ];
    let node_a = pg_api_node(&sb_a, &db, ENGINE_KEY, LEASE, &flags);
    let node_b = pg_api_node(&sb_b, &db, ENGINE_KEY, LEASE, &flags);
    let nodes = [&node_a, &node_b];
    let names: Vec<String> = (0..ENGINES).map(|i| format!("e{i}")).collect();
    // Engine i links to node i % 2; each life has a folder of its own.
    let start = |i: usize, life: usize| {
        EngineProc::spawn(
            &sb_a,
            &nodes[i % 2].url,
            &names[i],
            &format!("{}-{life}", names[i]),
            ENGINE_KEY,
            &["slow"],
            &["--replicas", "2"],
        )
    };
    let mut engines: Vec<EngineProc> = (0..ENGINES).map(|i| start(i, 0)).collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_online(&node_a, &all);

    let mut kills = 0;
    let submitted = std::thread::scope(|scope| {
        let submitter = scope.spawn(|| {
            (0..TASKS)
                .map(|i| {
                    let label = format!("soak-{i}");
                    let node = nodes[i % 2];
                    let body = json!({"app": "tests/slow",
                        "input": {"seconds": 0.1, "label": label}});
                    let answer = node.request("POST", "/apps/run", Some(body));
                    let Some((200, text)) = answer else {
                        let problems = |log: String| {
                            log.lines()
                                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                                .map(str::to_string)
                                .collect::<Vec<_>>()
                                .join("\n")
                        };
                        panic!(
                            "submission {i} refused: {answer:?}; engines: {:?}\nA: {}\nB: {}",
                            node.request("GET", "/engines", None),
                            problems(node_a.log()),
                            problems(node_b.log()),
                        );
                    };
                    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
                    (doc["data"]["id"].as_str().unwrap().to_string(), label)
                })
                .collect::<Vec<_>>()
        });
        // Kill each engine in turn once its current life runs tasks (so the
        // kill loses some), and start it again under its name.
        for k in 0..KILLS {
            let i = k % ENGINES;
            let busy = wait_for(Duration::from_secs(60), || {
                engines[i].log().contains("claimed task=")
            });
            if !busy {
                break; // The work ran out.
            }
            engines[i].kill9();
            engines[i] = start(i, k + 1);
            kills += 1;
            // One engine down at a time: the next kill waits for this one
            // to be back at work (were all down, a run would be refused:
            // no live engine hosts its app).
            let back = wait_for(Duration::from_secs(60), || {
                engines[i].log().contains("claimed task=")
            });
            if !back {
                break; // The work ran out.
            }
        }
        submitter.join().unwrap()
    });
    assert_eq!(submitted.len(), TASKS);
    assert!(
        kills >= ENGINES,
        "only {kills} kills: the soak killed too little"
    );

    let (mut requeued, mut failed) = (0, 0);
    for (id, label) in &submitted {
        let done = node_b.wait_end(id, Duration::from_secs(120));
        let attempts = assert_ended_once(&done, label, MAX_ATTEMPTS);
        requeued += usize::from(attempts.len() > 1);
        failed += usize::from(done["status"] == 11);
        // Both nodes agree on how it ended.
        let seen = node_a.task(id);
        assert_eq!(
            (&seen["status"], &seen["attempts"], &seen["output"]),
            (&done["status"], &done["attempts"], &done["output"]),
            "{id}"
        );
    }
    eprintln!(
        "{TASKS} tasks, {kills} engine kills: {requeued} ran again, {failed} failed engine lost"
    );
    assert!(requeued > 0, "no task ran twice: the kills hit nothing");
}
