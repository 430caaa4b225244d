//! Helpers of the end-to-end fleet tests (`fleet_*.rs`): API nodes that
//! take engines, waiting for engines to be online, and the checks every
//! failure test makes on a task's end and its attempts.

use std::time::Duration;

use infsh_testkit::PgTestDb;
use serde_json::Value;

use super::server::{ServeSandbox, Server};
use super::wait_for;

/// An API node on `db` (its own sandbox: data folder, logs) that takes
/// engines with `key`, leases of `lease` seconds, and `extra` flags.
pub fn pg_api_node(
    sb: &ServeSandbox,
    db: &PgTestDb,
    key: &str,
    lease: &str,
    extra: &[&str],
) -> Server {
    let flags = [
        &[
            "--store",
            db.url(),
            "--engine-key",
            key,
            "--lease-seconds",
            lease,
        ][..],
        extra,
    ]
    .concat();
    sb.start_with_key(&flags)
}

/// `GET /engines`' remote engines, once `pred` holds for them.
pub fn wait_engines(server: &Server, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut remote = Vec::new();
    let reached = wait_for(Duration::from_secs(60), || {
        let Some((200, text)) = server.request("GET", "/engines", None) else {
            return false;
        };
        let doc: Value = serde_json::from_str(&text).unwrap_or_default();
        remote = doc["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["remote"].is_object())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        pred(&remote)
    });
    assert!(reached, "{what}: {remote:#?}\n{}", server.log());
    remote
}

/// The engine's state in `GET /engines` (`online`, `draining`, `offline`).
pub fn state_of<'a>(remote: &'a [Value], name: &str) -> Option<&'a str> {
    remote
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["remote"]["state"].as_str())
}

/// `GET /engines`' remote engines once `names` are all online.
pub fn wait_online(server: &Server, names: &[&str]) -> Vec<Value> {
    wait_engines(server, &format!("engines {names:?} never online"), |r| {
        names.iter().all(|n| state_of(r, n) == Some("online"))
    })
}

/// Checks a task that ended after engines were lost under it: it ended
/// once, every attempt before its last was `lost`, and it either completed
/// (its output names `label`) on the last one, or failed `engine lost:
/// <the last attempt's engine>` after `max_attempts`. Returns its attempts.
pub fn assert_ended_once(task: &Value, label: &str, max_attempts: usize) -> Vec<Value> {
    let attempts = task["attempts"].as_array().cloned().unwrap_or_default();
    assert!(!attempts.is_empty(), "never claimed: {task:#}");
    assert!(attempts.len() <= max_attempts, "too many runs: {task:#}");
    for (i, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["attempt"], i + 1, "{task:#}");
    }
    let (last, before) = attempts.split_last().unwrap();
    assert!(
        before.iter().all(|a| a["outcome"] == "lost"),
        "an attempt before the last one did not end lost: {task:#}"
    );
    match task["status"].as_u64() {
        Some(10) => {
            assert_eq!(last["outcome"], "completed", "{task:#}");
            assert_eq!(task["output"]["label"], label, "{task:#}");
        }
        Some(11) => {
            assert_eq!(last["outcome"], "lost", "{task:#}");
            assert_eq!(attempts.len(), max_attempts, "{task:#}");
            assert_eq!(
                task["error"],
                format!("engine lost: {}", last["engine"].as_str().unwrap_or("")),
                "{task:#}"
            );
        }
        _ => panic!("not completed, nor failed by lost engines: {task:#}"),
    }
    attempts
}
