//! End to end: sessions of an app that only remote engines host, on a
//! fleet of two `infsh serve` API nodes on one PostgreSQL database and two
//! `infsh engine run` engines (one linked to each node), all hosting
//! tests/counter (a count kept in its worker's memory). The official
//! `inferencesh` client opens a session through node A with
//! `client.session(...)` and calls it through both nodes: every call
//! reaches one worker on one engine and the count goes on. Then the engine
//! holding another session is killed: the session ends with the reason,
//! and its next call, through either node, gets 410 saying why.

mod common;

use std::process::Command;
use std::time::Duration;

use common::engine_proc::EngineProc;
use common::server::*;
use common::*;
use infsh_testkit::PgTestDb;
use serde_json::{json, Value};

const ENGINE_KEY: &str = "engine-key-fleet-sessions";

fn api_node(sb: &ServeSandbox, db: &PgTestDb) -> Server {
    sb.start_with_key(&[
        "--store",
        db.url(),
        "--engine-key",
        ENGINE_KEY,
        "--lease-seconds",
        "1",
    ])
}

/// The client's side, in Python: a session opened through A by
/// `client.session`, called through A and B in turn; then a second
/// session opened through B and called once through A, left open.
const CLIENT: &str = r#"
import json, sys
from inferencesh import Inference

key, url_a, url_b = sys.argv[1:4]
a = Inference(api_key=key, base_url=url_a)
b = Inference(api_key=key, base_url=url_b)
out = {"calls": []}
with a.session("tests/counter") as session:
    out["session"] = session.session_id
    for i in range(6):
        if i % 2 == 0:
            result = session.call("run", {"add": 1})
        else:
            result = b.run({"app": "tests/counter", "input": {"add": 1},
                            "session": session.session_id})
        out["calls"].append({"status": result["status"], "output": result["output"],
                             "session_id": result.get("session_id")})
opened = b.run({"app": "tests/counter", "input": {}, "session": "new",
                "session_timeout": 600})
out["kept"] = opened["session_id"]
out["kept_opened"] = opened["output"]
out["kept_calls"] = [a.run({"app": "tests/counter", "input": {"add": 1},
                            "session": opened["session_id"]})["output"]]
print(json.dumps(out))
"#;

fn engines_sessions(node: &Server) -> Vec<(String, Value)> {
    node.api("GET", "/engines", None, 200)
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["remote"].is_object())
        .flat_map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            e["remote"]["sessions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |s| (name.clone(), s))
        })
        .collect()
}

#[test]
fn a_sessions_calls_through_two_api_nodes_reach_one_engine_and_its_engine_lost_ends_it() {
    let db = PgTestDb::create();
    let (sb_a, sb_b) = (ServeSandbox::new(&[]), ServeSandbox::new(&[]));
    let node_a = api_node(&sb_a, &db);
    let node_b = api_node(&sb_b, &db);
    let mut engines = [
        EngineProc::start_hosting(&sb_a, &node_a, "e1", ENGINE_KEY, &["counter"], &[]),
        EngineProc::start_hosting(&sb_b, &node_b, "e2", ENGINE_KEY, &["counter"], &[]),
    ];
    let online = wait_for(Duration::from_secs(60), || {
        let all = node_a.api("GET", "/engines", None, 200);
        ["e1", "e2"].iter().all(|n| {
            all.as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == *n && e["remote"]["state"] == "online")
        })
    });
    assert!(online, "engines never online\n{}", node_a.log());

    let out = Command::new(python())
        .args(["-c", CLIENT, TEST_KEY, &node_a.url, &node_b.url])
        .output()
        .expect("run the client");
    assert!(
        out.status.success(),
        "client failed: {}\nA: {}\nB: {}\ne1: {}\ne2: {}",
        String::from_utf8_lossy(&out.stderr),
        node_a.log(),
        node_b.log(),
        engines[0].log(),
        engines[1].log()
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let session = report["session"].as_str().unwrap();
    assert!(session.starts_with("sess_"), "{report:#}");
    // client.session's own first call counted 1; then 2..=7 on one worker.
    let calls = report["calls"].as_array().unwrap();
    let counts: Vec<i64> = calls
        .iter()
        .map(|c| c["output"]["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, (2..=7).collect::<Vec<_>>(), "{report:#}");
    let pids: std::collections::HashSet<i64> = calls
        .iter()
        .map(|c| c["output"]["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(pids.len(), 1, "one worker: {report:#}");
    // The `with` block ended it: both nodes see it ended.
    for node in [&node_a, &node_b] {
        let ended = node.api("GET", &format!("/sessions/{session}"), None, 200);
        assert_eq!(ended["status"], "ended", "{ended:#}");
    }

    // The kept session: on one engine, which names its replica.
    let kept = report["kept"].as_str().unwrap().to_string();
    // Its calls reach its one worker (which may be the first session's,
    // released: a worker keeps its memory between sessions).
    assert_eq!(
        report["kept_calls"][0]["count"].as_i64(),
        report["kept_opened"]["count"].as_i64().map(|n| n + 1),
        "{report:#}"
    );
    assert_eq!(
        report["kept_calls"][0]["pid"], report["kept_opened"]["pid"],
        "{report:#}"
    );
    let mut holder = None;
    let named = wait_for(Duration::from_secs(30), || {
        holder = engines_sessions(&node_b)
            .into_iter()
            .find(|(_, s)| s["id"] == kept.as_str() && s["worker"].is_string());
        holder.is_some()
    });
    assert!(
        named,
        "GET /engines never showed the kept session's replica"
    );
    let (engine_name, listed) = holder.unwrap();
    assert_eq!(listed["worker"], "tests/counter#0", "{listed:#}");
    let info = node_a.api("GET", &format!("/sessions/{kept}"), None, 200);
    assert_eq!(
        info["worker_id"],
        format!("tests/counter#0@{engine_name}"),
        "{info:#}"
    );
    assert_eq!(info["status"], "active");

    // Its engine killed: the session ends saying why (within a lease and a
    // sweep), and its next call through either node is refused with 410.
    let idx = if engine_name == "e1" { 0 } else { 1 };
    engines[idx].kill9();
    let why = format!("its engine \"{engine_name}\" was lost");
    let ended = wait_for(Duration::from_secs(30), || {
        node_b.api("GET", &format!("/sessions/{kept}"), None, 200)["status"] == "ended"
    });
    assert!(ended, "the session never ended\n{}", node_b.log());
    for node in [&node_a, &node_b] {
        let refused = node.api(
            "POST",
            "/apps/run",
            Some(json!({"app": "tests/counter", "input": {}, "session": kept})),
            410,
        );
        assert!(
            refused["type"].as_str().unwrap().ends_with("SESSION_ENDED"),
            "{refused:#}"
        );
        assert!(
            refused["detail"].as_str().unwrap().contains(&why),
            "{refused:#}"
        );
        assert_eq!(refused["session_id"], kept.as_str());
    }
    let info = node_a.api("GET", &format!("/sessions/{kept}"), None, 200);
    assert!(info["reason"].as_str().unwrap().contains(&why), "{info:#}");

    // Another app's session is refused, and a session id no node knows is
    // 404, through the fleet as on one server.
    let unknown = node_a.api(
        "POST",
        "/apps/run",
        Some(json!({"app": "tests/counter", "input": {}, "session": "sess_nope"})),
        404,
    );
    assert!(
        unknown["type"]
            .as_str()
            .unwrap()
            .ends_with("SESSION_NOT_FOUND"),
        "{unknown:#}"
    );
}
