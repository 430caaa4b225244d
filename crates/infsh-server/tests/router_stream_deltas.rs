//! Router tier: delta lines on `GET /tasks/{id}/stream`, merged the way the
//! official client's `delta.py` merges them, against the full snapshots an
//! old client gets — over a real engine running the `tokens` fixture app.

mod common;

use axum::body::Body;
use axum::http::{header, Request};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// The text the fixture yields for `n` tokens.
fn full_text(n: usize) -> String {
    (0..n).map(|i| format!("tok{i} ")).collect()
}

fn stream_req(id: &str, query: &str, user_agent: Option<&str>) -> Request<Body> {
    let mut req = Request::get(format!("/tasks/{id}/stream{query}"))
        .header(header::ACCEPT, "application/x-ndjson")
        .header(header::ACCEPT_ENCODING, "identity");
    if let Some(ua) = user_agent {
        req = req.header(header::USER_AGENT, ua);
    }
    req.body(Body::empty()).unwrap()
}

fn parse(chunks: &[String]) -> Vec<Value> {
    chunks
        .concat()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn is_delta(line: &Value) -> bool {
    line["event"] == "delta"
}

/// What the official client does: an accumulator per connection, fed only
/// by delta lines, written over the terminal snapshot's output.
fn merge_like_the_client(lines: &[Value]) -> (String, Value) {
    let mut acc = String::new();
    let mut seqs = Vec::new();
    for l in lines.iter().filter(|l| is_delta(l)) {
        acc.push_str(l["data"]["delta"]["response"].as_str().unwrap_or(""));
        seqs.push(l["data"]["seq"].as_u64().unwrap());
    }
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq numbers"
    );
    let last = lines.last().unwrap().clone();
    (acc, last)
}

async fn run_tokens(s: &TestServer, n: usize, delay: f64) -> String {
    let (st, _, b) = s
        .post(
            "/apps/run",
            json!({"app": "tests/tokens", "input": {"n": n, "delay": delay}}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    b["data"]["id"].as_str().unwrap().to_string()
}

/// A server hosting the `tokens` fixture with this delta window.
async fn start_with_window(window: Duration) -> TestServer {
    let mut setup = Setup::new(&["tokens"]);
    setup.timing.delta_window = window;
    start(setup).await
}

/// Every line of a delta stream of task `id`, read to its end.
async fn delta_lines(s: &TestServer, id: &str) -> Vec<Value> {
    parse(
        &read_chunks(
            s.send(stream_req(id, "?deltas=true", None)).await,
            TEST_LIMIT,
        )
        .await,
    )
}

#[tokio::test]
async fn delta_lines_merge_to_the_same_output_as_snapshots_in_fewer_bytes() {
    bounded(async {
        // A window shorter than the producer's 4 ms between tokens: this
        // test is about what a delta line says, so most tokens get their
        // own line (the default window's coalescing is tested below).
        let s = start_with_window(Duration::from_millis(1)).await;
        let n = 150;
        let id = run_tokens(&s, n, 0.004).await;
        // Both streams open before the first token: the task is still
        // starting its worker.
        let with = s.send(stream_req(&id, "?deltas=true", None)).await;
        let without = s.send(stream_req(&id, "", None)).await;
        let (with, without) = tokio::join!(
            read_chunks(with, TEST_LIMIT),
            read_chunks(without, TEST_LIMIT)
        );
        let (d, f) = (parse(&with), parse(&without));
        let want = full_text(n);

        // The old contract: no delta line, the terminal snapshot is whole.
        assert!(!f.iter().any(is_delta), "snapshots only without deltas");
        assert_eq!(f.last().unwrap()["output"]["response"], want.as_str());

        // First line: a full snapshot; last: the terminal snapshot, whole.
        assert_eq!(d[0]["id"], id.as_str(), "{}", d[0]);
        let (merged, last) = merge_like_the_client(&d);
        assert_eq!(last["status"], 10, "{last}");
        assert_eq!(last["output"]["response"], want.as_str());
        assert_eq!(last["output"]["tokens"], n);
        assert_eq!(last["output"], f.last().unwrap()["output"]);
        // The deltas alone add up to the text (the client writes them over
        // the terminal output), and most changes were deltas.
        assert_eq!(merged, want);
        let deltas = d.iter().filter(|l| is_delta(l)).count();
        assert!(deltas >= n / 4, "{deltas} deltas of {n} tokens");
        // A delta line carries its token, not the text so far.
        let wire_with: usize = with.iter().map(String::len).sum();
        let wire_without: usize = without.iter().map(String::len).sum();
        assert!(
            wire_with * 5 < wire_without,
            "deltas {wire_with} B vs snapshots {wire_without} B"
        );
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_official_client_gets_deltas_unasked_older_ones_do_not() {
    bounded(async {
        let s = start(Setup::new(&["tokens"])).await;
        let id = run_tokens(&s, 40, 0.005).await;
        let new = s
            .send(stream_req(&id, "", Some("inference-sdk-py/0.36.0")))
            .await;
        let old = s
            .send(stream_req(&id, "", Some("inference-sdk-py/0.35.2")))
            .await;
        let refused = s
            .send(stream_req(
                &id,
                "?deltas=false",
                Some("inference-sdk-py/0.36.0"),
            ))
            .await;
        let (new, old, refused) = tokio::join!(
            read_chunks(new, TEST_LIMIT),
            read_chunks(old, TEST_LIMIT),
            read_chunks(refused, TEST_LIMIT)
        );
        assert!(parse(&new).iter().any(is_delta));
        assert!(!parse(&old).iter().any(is_delta));
        assert!(!parse(&refused).iter().any(is_delta));
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reconnect_gets_a_full_snapshot_first_and_deltas_from_empty() {
    bounded(async {
        let s = start(Setup::new(&["tokens"])).await;
        let n = 200;
        let id = run_tokens(&s, n, 0.01).await;

        // First connection: leave after a few deltas.
        let mut first = s
            .send(stream_req(&id, "?deltas=true", None))
            .await
            .into_body()
            .into_data_stream();
        let mut seen = 0;
        while seen < 3 {
            let chunk = tokio::time::timeout(TEST_LIMIT, first.next())
                .await
                .expect("a line in time")
                .expect("stream open")
                .unwrap();
            let line: Value = serde_json::from_slice(&chunk).unwrap();
            seen += usize::from(is_delta(&line));
        }
        drop(first);

        // Second connection, mid-stream: a full snapshot with the text so
        // far, then deltas that start from empty (the client's accumulator
        // is new), so they still add up to the whole text.
        let lines = delta_lines(&s, &id).await;
        let snapshot = &lines[0];
        assert_eq!(snapshot["id"], id.as_str());
        let so_far = snapshot["output"]["response"].as_str().unwrap();
        assert!(!so_far.is_empty(), "reconnected mid-stream: {snapshot}");
        let first_delta = lines
            .iter()
            .find(|l| is_delta(l))
            .expect("deltas after the reconnect");
        assert!(
            first_delta["data"]["delta"]["response"]
                .as_str()
                .unwrap()
                .starts_with(so_far),
            "{first_delta}"
        );
        let (merged, last) = merge_like_the_client(&lines);
        assert_eq!(merged, full_text(n));
        assert_eq!(last["output"]["response"], full_text(n).as_str());
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_deltas_value_other_than_true_or_false_is_400() {
    bounded(async {
        let s = start(Setup::new(&["tokens"])).await;
        let resp = s.send(stream_req("anything", "?deltas=yes", None)).await;
        let (st, h, b) = read_json(resp).await;
        assert_problem(st, &h, &b, 400, "invalid_request");
        let detail = b["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("invalid query string: ") && detail.contains("deltas"),
            "{detail}"
        );
        // After the query, a bad task is still a 404.
        let resp = s.send(stream_req("nope", "?deltas=true", None)).await;
        let (st, h, b) = read_json(resp).await;
        assert_problem(st, &h, &b, 404, "not_found");
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn appended_text_waits_for_the_delta_window_but_the_end_does_not() {
    bounded(async {
        // A window longer than the task: the first delta goes at once, the
        // rest of the text is held until the terminal snapshot, which takes
        // it along (a catch-up delta) without waiting for the window.
        let s = start_with_window(Duration::from_secs(3600)).await;
        let n = 60;
        let id = run_tokens(&s, n, 0.003).await;
        let lines = delta_lines(&s, &id).await;
        let deltas = lines.iter().filter(|l| is_delta(l)).count();
        assert!((1..=2).contains(&deltas), "{deltas} deltas: {lines:?}");
        let (merged, last) = merge_like_the_client(&lines);
        assert_eq!(last["status"], 10);
        assert_eq!(merged, full_text(n));
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn quick_appends_share_a_delta_line_but_the_first_is_not_held() {
    bounded(async {
        // Tokens every ~5 ms against a 200 ms window: the first text goes
        // out at once (time to first token), the tokens after the first
        // delta wait for the window and go out together, one line per
        // window.
        let window = Duration::from_millis(200);
        let s = start_with_window(window).await;
        let n = 80;
        let id = run_tokens(&s, n, 0.005).await;
        // Opened before the first token: the task is still starting its
        // worker.
        let mut body = s
            .send(stream_req(&id, "?deltas=true", None))
            .await
            .into_body()
            .into_data_stream();
        let deadline = Instant::now() + TEST_LIMIT;
        let (mut chunks, mut first_delta_at) = (Vec::new(), None);
        while let Some(chunk) = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("the stream ends in time")
        {
            let chunk = String::from_utf8(chunk.unwrap().to_vec()).unwrap();
            if first_delta_at.is_none() && chunk.contains(r#""event":"delta""#) {
                first_delta_at = Some(Instant::now());
            }
            chunks.push(chunk);
        }
        let elapsed = first_delta_at.expect("a delta line").elapsed();
        let lines = parse(&chunks);
        let deltas: Vec<&str> = lines
            .iter()
            .filter(|l| is_delta(l))
            .map(|l| l["data"]["delta"]["response"].as_str().unwrap())
            .collect();
        // The first text comes at once, in the snapshot of the first
        // output, and so does the first delta (which starts the
        // connection's accumulator with the text so far): a held line
        // would carry a window's worth, ~40 tokens. Under 20 leaves the
        // stream up to ~100 ms behind the producer on a loaded machine and
        // still tells the two apart.
        let first_text = lines
            .iter()
            .find_map(|l| l["output"]["response"].as_str())
            .expect("a snapshot with text");
        assert!(first_text.starts_with("tok0 "), "{first_text}");
        let first_tokens = deltas[0].matches("tok").count();
        assert!(
            deltas[0].starts_with("tok0 ") && first_tokens < 20,
            "the first delta is not held: {deltas:?}"
        );
        // After the first, one line per window (plus the catch-up that
        // travels with the terminal snapshot, and one window of slack for
        // the first line's own delivery).
        let most = 3 + (elapsed.as_secs_f64() / window.as_secs_f64()) as usize;
        assert!(
            deltas.len() <= most,
            "{} delta lines in {elapsed:?} (at most {most}): {deltas:?}",
            deltas.len()
        );
        // So lines carry several tokens each.
        assert!(
            deltas.len() * 4 <= n,
            "{} lines for {n} tokens",
            deltas.len()
        );
        let (merged, last) = merge_like_the_client(&lines);
        assert_eq!(last["status"], 10);
        assert_eq!(merged, full_text(n));
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_end_takes_the_place_of_a_delta_clients_uploading_line() {
    bounded(async {
        // A window far longer than the gap between UPLOADING and the end:
        // the delta client's UPLOADING line waits for the end, which
        // replaces it, so the whole text travels in one full snapshot (the
        // terminal one) besides the deltas.
        let s = start_with_window(Duration::from_secs(2)).await;
        let n = 30;
        let id = run_tokens(&s, n, 0.002).await;
        let lines = delta_lines(&s, &id).await;
        let want = full_text(n);
        let statuses: Vec<&Value> = lines
            .iter()
            .filter(|l| !is_delta(l))
            .map(|l| &l["status"])
            .collect();
        assert!(
            !statuses.iter().any(|s| **s == 9),
            "no UPLOADING line: {statuses:?}"
        );
        let whole = lines
            .iter()
            .filter(|l| l["output"]["response"] == want.as_str())
            .count();
        assert_eq!(whole, 1, "the whole text once, in the end: {lines:?}");
        let (merged, last) = merge_like_the_client(&lines);
        assert_eq!(last["status"], 10);
        assert_eq!(last["output"]["response"], want.as_str());
        assert_eq!(last["output"]["tokens"], n);
        assert_eq!(merged, want);
        s.stop().await;
    })
    .await;
}
