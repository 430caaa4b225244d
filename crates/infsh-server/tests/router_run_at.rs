//! Router tier: a run's `run_at` (the official client's field). The task
//! stays QUEUED until then and runs after; a time past runs at once; a
//! held task can be cancelled; a time that does not parse is a 400 naming
//! the field. Real router, real engine, the fixture app in Python.

mod common;

use std::time::Duration;

use axum::http::Method;
use common::*;
use infsh_store::{format_timestamp, now_ms};
use serde_json::json;

/// How far ahead the held run is set: long enough to see it wait.
const AHEAD_MS: i64 = 3_000;

#[tokio::test]
async fn a_run_waits_for_its_run_at_and_runs_after() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        // Warm the app so the held run's start is not hidden by a cold start.
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "function": "upscale",
                       "input": {"value": 1.0}, "wait": true}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["status"], 10, "{b}");

        let run_at_ms = now_ms() + AHEAD_MS;
        let run_at = format_timestamp(run_at_ms);
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "function": "upscale",
                       "input": {"value": 2.0}, "run_at": run_at}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["status"], 2, "{b}");
        assert_eq!(b["data"]["run_at"], run_at, "{b}");
        let id = b["data"]["id"].as_str().unwrap().to_string();

        // Until shortly before its time it is QUEUED on every look.
        let mut looks = 0;
        while now_ms() < run_at_ms - 300 {
            let (st, _, b) = s.get(&format!("/tasks/{id}")).await;
            assert_eq!(st, 200, "{b}");
            assert_eq!(b["data"]["status"], 2, "started before its run_at: {b}");
            assert_eq!(b["data"]["run_at"], run_at, "{b}");
            looks += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(looks >= 5, "too few looks ({looks}) to show it waited");

        let done = s.wait_terminal(&id).await;
        assert_eq!(done["status"], 10, "{done}");
        assert_eq!(done["output"]["value"], 4.0, "{done}");
        // It ended after its time, never before.
        assert!(
            done["updated_at"].as_str().unwrap() >= run_at.as_str(),
            "{done}"
        );
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_past_run_at_runs_at_once_and_a_held_run_can_be_cancelled() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        let past = format_timestamp(now_ms() - 60_000);
        let (st, _, b) = s
            .post(
                "/apps/tests/multi-fn/functions/upscale/run",
                json!({"input": {"value": 1.5}, "run_at": past, "wait": true}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["status"], 10, "{b}");
        assert_eq!(b["data"]["run_at"], past, "{b}");

        // Held for an hour, then cancelled while it waits.
        let later = format_timestamp(now_ms() + 3_600_000);
        let (st, _, b) = s
            .post(
                "/apps/run",
                json!({"app": "tests/multi-fn", "function": "upscale",
                       "input": {"value": 1.0}, "run_at": later}),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let id = b["data"]["id"].as_str().unwrap().to_string();
        let (st, _, b) = s
            .json(Method::POST, &format!("/tasks/{id}/cancel"), None)
            .await;
        assert_eq!(st, 200, "{b}");
        let done = s.wait_terminal(&id).await;
        assert_eq!(done["status"], 12, "{done}");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unparseable_run_at_is_a_400_naming_the_field() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        for (uri, body) in [
            (
                "/apps/run",
                json!({"app": "tests/multi-fn", "function": "upscale",
                       "input": {"value": 1.0}, "run_at": "tomorrow"}),
            ),
            (
                "/apps/tests/multi-fn/functions/upscale/run",
                json!({"input": {"value": 1.0}, "run_at": "tomorrow"}),
            ),
        ] {
            let (st, h, b) = s.post(uri, body).await;
            assert_problem(st, &h, &b, 400, "invalid_request");
            assert_eq!(
                b["detail"],
                "`run_at` \"tomorrow\" is not an RFC 3339 time (e.g. \"2026-01-02T03:04:05Z\")",
                "{b}"
            );
        }
        // Nothing was stored.
        let (st, _, b) = s.get("/tasks").await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["data"]["items"], json!([]), "{b}");
        s.stop().await;
    })
    .await;
}
