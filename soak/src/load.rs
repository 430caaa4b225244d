//! The load: which task each slot submits, how it is followed to its end,
//! and what its end must be.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::API_KEY;

/// What one submission is, and so what its end must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `echo`, followed on the stream: COMPLETED.
    Echo,
    /// `echo` with `"wait": true`: the POST answers the COMPLETED task.
    EchoWait,
    /// `upper` (a plain `def`, run in a thread): COMPLETED.
    Upper,
    /// `stream` (3 snapshots): COMPLETED with the last one.
    Stream,
    /// `slow` sleeping 20–200 ms: COMPLETED.
    SlowOk,
    /// `fail`, which raises: FAILED with the app's message.
    Fail,
    /// Input that fails the function's schema: 422, no task.
    Invalid,
    /// `slow` (30 s) cancelled right after it is acknowledged: CANCELLED.
    CancelEarly,
    /// `slow` (30 s) cancelled once the stream shows it RUNNING: CANCELLED.
    CancelRunning,
}

/// The mix, in percent of all submissions.
pub const MIX: &[(Kind, usize)] = &[
    (Kind::Echo, 20),
    (Kind::EchoWait, 5),
    (Kind::Upper, 22),
    (Kind::Stream, 23),
    (Kind::SlowOk, 10),
    (Kind::Fail, 5),
    (Kind::Invalid, 5),
    (Kind::CancelEarly, 5),
    (Kind::CancelRunning, 5),
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Echo => "echo",
            Kind::EchoWait => "echo_wait",
            Kind::Upper => "upper",
            Kind::Stream => "stream",
            Kind::SlowOk => "slow_ok",
            Kind::Fail => "fail",
            Kind::Invalid => "invalid_422",
            Kind::CancelEarly => "cancel_early",
            Kind::CancelRunning => "cancel_running",
        }
    }

    /// The function the app runs for it.
    pub fn function(self, index: usize) -> &'static str {
        match self {
            Kind::Echo | Kind::EchoWait => "echo",
            Kind::Upper => "upper",
            Kind::Stream => "stream",
            Kind::SlowOk | Kind::CancelEarly | Kind::CancelRunning => "slow",
            Kind::Fail => "fail",
            Kind::Invalid => INVALID[index % INVALID.len()].0,
        }
    }

    /// The terminal status it must end in (None: never becomes a task).
    pub fn expected_status(self) -> Option<i64> {
        match self {
            Kind::Fail => Some(FAILED),
            Kind::CancelEarly | Kind::CancelRunning => Some(CANCELLED),
            Kind::Invalid => None,
            _ => Some(COMPLETED),
        }
    }
}

pub const RUNNING: i64 = 7;
pub const COMPLETED: i64 = 10;
pub const FAILED: i64 = 11;
pub const CANCELLED: i64 = 12;

/// Inputs that the schema refuses (function, input, what is wrong).
const INVALID: &[(&str, &str, &str)] = &[
    ("echo", r#"{"repeat": 2}"#, "text is missing"),
    (
        "echo",
        r#"{"text": "x", "repeat": 0}"#,
        "repeat below its minimum",
    ),
    ("upper", r#"{"text": 123}"#, "text is not a string"),
    (
        "stream",
        r#"{"prefix": "p", "count": 50}"#,
        "count above its maximum",
    ),
];

/// The kinds of `n` submissions: the mix's exact proportions (the rest are
/// `Echo`), shuffled with `seed`.
pub fn plan(n: usize, seed: u64) -> Vec<Kind> {
    let mut kinds = Vec::with_capacity(n);
    for &(kind, pct) in MIX {
        kinds.extend(std::iter::repeat(kind).take(n * pct / 100));
    }
    while kinds.len() < n {
        kinds.push(Kind::Echo);
    }
    let mut rng = SplitMix(seed);
    for i in (1..kinds.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        kinds.swap(i, j);
    }
    kinds
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Words mixed into inputs so that every output differs.
const WORDS: &[&str] = &["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];

/// The input of submission `index` of `kind`.
pub fn input(kind: Kind, index: usize) -> Value {
    let word = WORDS[index % WORDS.len()];
    match kind {
        Kind::Echo | Kind::EchoWait => {
            json!({"text": format!("soak-{index}-{word}"), "repeat": 1 + index % 3})
        }
        Kind::Upper => json!({"text": format!("soak-{index}-{word}")}),
        Kind::Stream => json!({"prefix": format!("s{index}"), "count": 3}),
        Kind::SlowOk => {
            json!({"seconds": 0.02 + (index % 10) as f64 * 0.02, "label": format!("nap-{index}")})
        }
        Kind::CancelEarly | Kind::CancelRunning => {
            json!({"seconds": 30.0, "label": format!("cancel-{index}")})
        }
        Kind::Fail => json!({"token": format!("f{index}"), "fail": true}),
        Kind::Invalid => serde_json::from_str(INVALID[index % INVALID.len()].1).unwrap(),
    }
}

/// Checks a terminal task against what `kind` must produce; the problems.
pub fn check_terminal(kind: Kind, index: usize, task: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let id = task["id"].as_str().unwrap_or("");
    let status = task["status"].as_i64().unwrap_or(-1);
    let want = kind.expected_status().unwrap_or(-1);
    if status != want {
        problems.push(format!(
            "status {status}, expected {want} (error: {})",
            task["error"]
        ));
        return problems;
    }
    if task["function"] != kind.function(index) {
        problems.push(format!(
            "function {} is not {}",
            task["function"],
            kind.function(index)
        ));
    }
    let input = input(kind, index);
    let out = &task["output"];
    let expect = |problems: &mut Vec<String>, field: &str, value: Value| {
        if out[field] != value {
            problems.push(format!(
                "output.{field} is {}, expected {value}",
                out[field]
            ));
        }
    };
    match kind {
        Kind::Echo | Kind::EchoWait => {
            let text = input["text"]
                .as_str()
                .unwrap()
                .repeat(input["repeat"].as_u64().unwrap() as usize);
            expect(&mut problems, "length", json!(text.len()));
            expect(&mut problems, "text", json!(text));
        }
        Kind::Upper => expect(
            &mut problems,
            "text",
            json!(input["text"].as_str().unwrap().to_uppercase()),
        ),
        Kind::Stream => {
            let prefix = input["prefix"].as_str().unwrap();
            let parts: Vec<String> = (0..3).map(|i| format!("{prefix}-{i}")).collect();
            expect(&mut problems, "parts", json!(parts));
        }
        Kind::SlowOk => expect(&mut problems, "label", input["label"].clone()),
        Kind::Fail => {
            let want = format!("soak failure {}", input["token"].as_str().unwrap());
            if !task["error"].as_str().unwrap_or("").contains(&want) {
                problems.push(format!("error {} does not contain {want:?}", task["error"]));
            }
        }
        Kind::CancelEarly | Kind::CancelRunning | Kind::Invalid => {}
    }
    if status == COMPLETED {
        // The output went to the task whose metadata the call was given.
        expect(&mut problems, "task_id", json!(id));
    } else if !out.is_null() {
        problems.push(format!("output {out} on a task that did not complete"));
    }
    problems
}

/// What happened to one submission.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub index: usize,
    pub kind: Kind,
    /// The task id, once acknowledged (HTTP 200).
    pub id: Option<String>,
    /// The HTTP status of the submission (0: no answer).
    pub http_status: u16,
    /// The terminal status seen by the harness (stream, or the wait answer).
    pub terminal: Option<i64>,
    /// Submit → terminal snapshot received (→ answer for 422s), seconds.
    pub latency_s: f64,
    /// The answer to the cancel request, if one was sent: (HTTP, task status).
    pub cancel_answer: Option<(u16, i64)>,
}

/// Counters and problems shared by the client tasks.
pub struct Shared {
    pub http: reqwest::Client,
    pub url: String,
    pub kinds: Vec<Kind>,
    pub next: AtomicUsize,
    pub done: AtomicUsize,
    pub outcomes: Mutex<Vec<Outcome>>,
    pub violations: Mutex<Vec<(String, String)>>,
    pub notes: Mutex<Vec<(String, String)>>,
    pub task_deadline: Duration,
    pub replicas: usize,
}

impl Shared {
    pub fn violation(&self, category: &str, detail: String) {
        self.violations
            .lock()
            .unwrap()
            .push((category.to_string(), detail));
    }

    /// Something worth reporting that is not a broken guarantee.
    pub fn note(&self, category: &str, detail: String) {
        self.notes
            .lock()
            .unwrap()
            .push((category.to_string(), detail));
    }
}

/// One client: takes the next submission until none is left.
pub async fn client(shared: Arc<Shared>) {
    loop {
        let index = shared.next.fetch_add(1, Ordering::SeqCst);
        if index >= shared.kinds.len() {
            return;
        }
        let kind = shared.kinds[index];
        let outcome = one(&shared, index, kind).await;
        shared.outcomes.lock().unwrap().push(outcome);
        shared.done.fetch_add(1, Ordering::SeqCst);
    }
}

async fn one(shared: &Shared, index: usize, kind: Kind) -> Outcome {
    let mut outcome = Outcome {
        index,
        kind,
        id: None,
        http_status: 0,
        terminal: None,
        latency_s: 0.0,
        cancel_answer: None,
    };
    let mut body = json!({
        "app": crate::server::APP_ID,
        "function": kind.function(index),
        "input": input(kind, index),
    });
    if kind == Kind::EchoWait {
        body["wait"] = json!(true);
    }
    let start = Instant::now();
    let resp = shared
        .http
        .post(format!("{}/v1/run", shared.url))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(shared.task_deadline)
        .send()
        .await;
    let (status, text) = match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => {
            shared.violation(
                "transport",
                format!("#{index} {}: POST /v1/run: {e}", kind.name()),
            );
            return outcome;
        }
    };
    outcome.http_status = status;
    let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if kind == Kind::Invalid {
        outcome.latency_s = start.elapsed().as_secs_f64();
        let code = doc["type"].as_str().unwrap_or("");
        if status != 422 || !code.ends_with("/validation_error") {
            shared.violation(
                "invalid input not refused with 422",
                format!(
                    "#{index} ({}): HTTP {status} {}",
                    INVALID[index % INVALID.len()].2,
                    clip(&text)
                ),
            );
            if let Some(id) = doc["data"]["id"].as_str() {
                outcome.id = Some(id.to_string());
            }
        }
        return outcome;
    }
    if status != 200 {
        let category = if status >= 500 {
            "HTTP 5xx"
        } else {
            "submission refused"
        };
        shared.violation(
            category,
            format!("#{index} {}: HTTP {status} {}", kind.name(), clip(&text)),
        );
        return outcome;
    }
    let Some(id) = doc["data"]["id"].as_str().map(str::to_string) else {
        shared.violation("malformed answer", format!("#{index}: {}", clip(&text)));
        return outcome;
    };
    outcome.id = Some(id.clone());
    let ack = doc["data"]["status"].as_i64().unwrap_or(-1);
    if kind == Kind::EchoWait {
        outcome.latency_s = start.elapsed().as_secs_f64();
        outcome.terminal = Some(ack);
        report_terminal(shared, kind, index, &doc["data"], "wait answer");
        return outcome;
    }
    if !(1..=2).contains(&ack) {
        shared.note(
            "acknowledged past QUEUED",
            format!("#{index} {id}: the run answered status {ack}"),
        );
    }
    if kind == Kind::CancelEarly {
        outcome.cancel_answer = Some(cancel(shared, index, &id).await);
    }
    let followed = tokio::time::timeout(
        shared.task_deadline,
        follow(shared, index, kind, &id, &mut outcome),
    )
    .await;
    match followed {
        Ok(Some(task)) => {
            outcome.latency_s = start.elapsed().as_secs_f64();
            outcome.terminal = task["status"].as_i64();
            report_terminal(shared, kind, index, &task, "stream");
        }
        Ok(None) => {}
        Err(_) => shared.violation(
            "task never ended",
            format!(
                "#{index} {id} ({}): not terminal after {:?}",
                kind.name(),
                shared.task_deadline
            ),
        ),
    }
    outcome
}

fn report_terminal(shared: &Shared, kind: Kind, index: usize, task: &Value, via: &str) {
    let problems = check_terminal(kind, index, task);
    if !problems.is_empty() {
        let category = if task["status"].as_i64() == kind.expected_status() {
            "wrong output"
        } else {
            "wrong terminal status"
        };
        shared.violation(
            category,
            format!(
                "#{index} {} ({}, via {via}): {}",
                task["id"].as_str().unwrap_or("?"),
                kind.name(),
                problems.join("; ")
            ),
        );
    }
}

/// `POST /v1/tasks/{id}/cancel`: (HTTP status, task status answered).
async fn cancel(shared: &Shared, index: usize, id: &str) -> (u16, i64) {
    let resp = shared
        .http
        .post(format!("{}/v1/tasks/{id}/cancel", shared.url))
        .bearer_auth(API_KEY)
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let task_status = doc["data"]["status"].as_i64().unwrap_or(-1);
            if status != 200 || !(task_status == 8 || task_status == CANCELLED) {
                shared.violation(
                    "cancel refused",
                    format!("#{index} {id}: HTTP {status} {}", clip(&text)),
                );
            }
            (status, task_status)
        }
        Err(e) => {
            shared.violation("transport", format!("#{index} {id}: cancel: {e}"));
            (0, -1)
        }
    }
}

/// Follows the task on `GET /v1/tasks/{id}/stream` to its terminal snapshot
/// (cancelling it once RUNNING for `CancelRunning`). A stream that ends
/// without one is reopened (at most 3 times), then the task is polled.
async fn follow(
    shared: &Shared,
    index: usize,
    kind: Kind,
    id: &str,
    outcome: &mut Outcome,
) -> Option<Value> {
    for attempt in 0..3 {
        let resp = shared
            .http
            .get(format!("{}/v1/tasks/{id}/stream", shared.url))
            .bearer_auth(API_KEY)
            .header("accept", "application/x-ndjson")
            .send()
            .await;
        let mut resp = match resp {
            Ok(r) if r.status().as_u16() == 200 => r,
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                shared.violation(
                    if status >= 500 {
                        "HTTP 5xx"
                    } else {
                        "stream refused"
                    },
                    format!("#{index} {id}: stream: HTTP {status} {}", clip(&text)),
                );
                break;
            }
            Err(e) => {
                shared.violation("transport", format!("#{index} {id}: stream: {e}"));
                break;
            }
        };
        let mut buf: Vec<u8> = Vec::new();
        let mut terminal = None;
        'read: loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    shared.note("stream error", format!("#{index} {id}: {e}"));
                    break;
                }
            };
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(snap) = serde_json::from_slice::<Value>(&line) else {
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        shared.violation(
                            "malformed stream line",
                            format!("#{index} {id}: {}", clip(&String::from_utf8_lossy(&line))),
                        );
                    }
                    continue;
                };
                if snap.get("type").is_some() {
                    continue; // heartbeat
                }
                let status = snap["status"].as_i64().unwrap_or(-1);
                if snap["id"] != id {
                    shared.violation(
                        "stream of another task",
                        format!("#{index} {id}: got a snapshot of {}", snap["id"]),
                    );
                }
                if status >= COMPLETED {
                    terminal = Some(snap);
                    break 'read;
                }
                if kind == Kind::CancelRunning
                    && status == RUNNING
                    && outcome.cancel_answer.is_none()
                {
                    outcome.cancel_answer = Some(cancel(shared, index, id).await);
                }
            }
        }
        if let Some(task) = terminal {
            // Read the rest so that the connection can be reused.
            while let Ok(Some(_)) = resp.chunk().await {}
            return Some(task);
        }
        shared.violation(
            "stream ended without a terminal snapshot",
            format!("#{index} {id} (attempt {})", attempt + 1),
        );
    }
    // Fall back to polling.
    loop {
        if let Some(task) = get_task(shared, id).await {
            if task["status"].as_i64().unwrap_or(0) >= COMPLETED {
                return Some(task);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /v1/tasks/{id}`'s task, None on any error.
pub async fn get_task(shared: &Shared, id: &str) -> Option<Value> {
    let resp = shared
        .http
        .get(format!("{}/v1/tasks/{id}", shared.url))
        .bearer_auth(API_KEY)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().await.ok()?;
    if status != 200 {
        shared.violation(
            if status >= 500 {
                "HTTP 5xx"
            } else {
                "task lookup failed"
            },
            format!("GET /v1/tasks/{id}: HTTP {status} {}", clip(&text)),
        );
        return None;
    }
    let doc: Value = serde_json::from_str(&text).ok()?;
    Some(doc["data"].clone())
}

/// The first 300 characters of a body, for messages.
pub fn clip(text: &str) -> String {
    let t: String = text.chars().take(300).collect();
    if t.len() < text.len() {
        format!("{t}…")
    } else {
        t
    }
}
