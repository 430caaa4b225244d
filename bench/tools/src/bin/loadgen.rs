//! The benchmark's load generator. One keep-alive HTTP/1.1 connection per
//! virtual user (TCP_NODELAY), every reply's status and body checked: a
//! success is a 2xx whose body contains `--expect`. Latencies (request
//! written to body read) are of successes only. Prints one JSON document.
//!
//! ```text
//! loadgen --url URL [--method POST] [--body JSON] [--header 'K: V']... --expect TEXT
//!         --mode seq  [--n 2000] [--warmup 200]                 # one user, n requests one after another
//!         --mode conc [--concurrency 32] [--duration 10] [--warmup-secs 1]
//!         [--threads 1] [--timeout 30] [--ok-status CODE]   # CODE instead of any 2xx counts as success
//! ```
//!
//! A reply's `Server-Timing` header (infsh's `--server-timing`), when there
//! is one, is collected per stage; `outside` is the client's latency less
//! the server's `total`: HTTP parsing and writing, loopback, the client.
//! The JSON then has `server_timing: {stage: {p50_ms, p99_ms}}`.
//!
//! `conc` counts the replies that arrive within `duration` seconds after the
//! warm-up; `ok_per_s` is successes / duration. A connection the server
//! closes is reopened (and the request counted as an error).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

struct Opts {
    addr: SocketAddr,
    authority: String,
    path: String,
    method: hyper::Method,
    body: Bytes,
    headers: Vec<(String, String)>,
    expect: Vec<u8>,
    mode: String,
    n: usize,
    warmup: usize,
    concurrency: usize,
    duration: f64,
    warmup_secs: f64,
    threads: usize,
    timeout: Duration,
    ok_status: Option<u16>,
}

#[derive(Default)]
struct Tally {
    ok_us: Vec<u64>,
    /// `Server-Timing` stages of successful replies, in ms.
    stages: BTreeMap<String, Vec<f64>>,
    non_2xx: u64,
    wrong_body: u64,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
    first_wrong: Option<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.ok_us.extend(o.ok_us);
        for (k, v) in o.stages {
            self.stages.entry(k).or_default().extend(v);
        }
        self.non_2xx += o.non_2xx;
        self.wrong_body += o.wrong_body;
        self.errors += o.errors;
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.first_error = self.first_error.take().or(o.first_error);
        self.first_wrong = self.first_wrong.take().or(o.first_wrong);
    }
}

enum Outcome {
    Ok(u16, u64, Vec<(String, f64)>),
    Non2xx(u16),
    Wrong(u16, String),
    Error(String),
}

fn parse_args() -> Opts {
    let mut a = std::env::args().skip(1);
    let mut url = None;
    let mut o = Opts {
        addr: "127.0.0.1:80".parse().unwrap(),
        authority: String::new(),
        path: "/".into(),
        method: hyper::Method::GET,
        body: Bytes::new(),
        headers: Vec::new(),
        expect: Vec::new(),
        mode: "seq".into(),
        n: 2000,
        warmup: 200,
        concurrency: 32,
        duration: 10.0,
        warmup_secs: 1.0,
        threads: 1,
        timeout: Duration::from_secs(30),
        ok_status: None,
    };
    let mut method = None;
    while let Some(k) = a.next() {
        let mut v = || a.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--url" => url = Some(v()),
            "--method" => method = Some(v()),
            "--body" => o.body = Bytes::from(v()),
            "--header" => {
                let h = v();
                let (name, value) = h.split_once(':').expect("--header 'Name: value'");
                o.headers.push((name.trim().into(), value.trim().into()));
            }
            "--expect" => o.expect = v().into_bytes(),
            "--mode" => o.mode = v(),
            "--n" => o.n = v().parse().expect("--n"),
            "--warmup" => o.warmup = v().parse().expect("--warmup"),
            "--concurrency" => o.concurrency = v().parse().expect("--concurrency"),
            "--duration" => o.duration = v().parse().expect("--duration"),
            "--warmup-secs" => o.warmup_secs = v().parse().expect("--warmup-secs"),
            "--threads" => o.threads = v().parse().expect("--threads"),
            "--ok-status" => o.ok_status = Some(v().parse().expect("--ok-status")),
            "--timeout" => o.timeout = Duration::from_secs_f64(v().parse().expect("--timeout")),
            other => panic!("unknown argument {other}"),
        }
    }
    let url = url.expect("--url is required");
    let rest = url.strip_prefix("http://").expect("only http:// URLs");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    o.authority = authority.to_string();
    o.path = path.to_string();
    o.addr = authority
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("the URL's host must be an IP:port");
    o.method = match method {
        Some(m) => m.parse().expect("--method"),
        None if o.body.is_empty() => hyper::Method::GET,
        None => hyper::Method::POST,
    };
    o
}

async fn connect(o: &Opts) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(o.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

struct User {
    o: Arc<Opts>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl User {
    async fn one(&mut self) -> Outcome {
        match tokio::time::timeout(self.o.timeout, self.attempt()).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.sender = None;
                Outcome::Error("timeout".into())
            }
        }
    }

    async fn attempt(&mut self) -> Outcome {
        let o = self.o.clone();
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            match connect(&o).await {
                Ok(s) => self.sender = Some(s),
                Err(e) => return Outcome::Error(e),
            }
        }
        let sender = self.sender.as_mut().unwrap();
        let mut req = Request::builder()
            .method(o.method.clone())
            .uri(o.path.as_str())
            .header("host", o.authority.as_str());
        if !o.body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in &o.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Full::new(o.body.clone())).expect("request");
        let start = Instant::now();
        if let Err(e) = sender.ready().await {
            self.sender = None;
            return Outcome::Error(format!("connection: {e}"));
        }
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Outcome::Error(format!("request: {e}"));
            }
        };
        let status = resp.status().as_u16();
        let timing = resp
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .map(parse_server_timing)
            .unwrap_or_default();
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                self.sender = None;
                return Outcome::Error(format!("body: {e}"));
            }
        };
        let us = start.elapsed().as_micros() as u64;
        let good = match o.ok_status {
            Some(s) => status == s,
            None => (200..300).contains(&status),
        };
        if !good {
            Outcome::Non2xx(status)
        } else if !contains(&body, &o.expect) {
            Outcome::Wrong(
                status,
                String::from_utf8_lossy(&body[..body.len().min(300)]).into(),
            )
        } else {
            Outcome::Ok(status, us, timing)
        }
    }
}

fn record(t: &mut Tally, outcome: Outcome) {
    match outcome {
        Outcome::Ok(s, us, timing) => {
            t.ok_us.push(us);
            if let Some((_, total)) = timing.iter().find(|(k, _)| k == "total") {
                let outside = us as f64 / 1000.0 - total;
                t.stages.entry("outside".into()).or_default().push(outside);
            }
            for (k, v) in timing {
                t.stages.entry(k).or_default().push(v);
            }
            *t.statuses.entry(s).or_default() += 1;
        }
        Outcome::Non2xx(s) => {
            t.non_2xx += 1;
            *t.statuses.entry(s).or_default() += 1;
        }
        Outcome::Wrong(s, body) => {
            t.wrong_body += 1;
            *t.statuses.entry(s).or_default() += 1;
            t.first_wrong.get_or_insert(body);
        }
        Outcome::Error(e) => {
            t.errors += 1;
            t.first_error.get_or_insert(e);
        }
    }
}

async fn seq(o: Arc<Opts>) -> (Tally, f64) {
    let mut user = User {
        o: o.clone(),
        sender: None,
    };
    for _ in 0..o.warmup {
        let _ = user.one().await;
    }
    let mut t = Tally::default();
    let start = Instant::now();
    for _ in 0..o.n {
        let outcome = user.one().await;
        record(&mut t, outcome);
    }
    (t, start.elapsed().as_secs_f64())
}

async fn conc(o: Arc<Opts>) -> (Tally, f64) {
    let begin = Instant::now();
    let measure_from = begin + Duration::from_secs_f64(o.warmup_secs);
    let deadline = measure_from + Duration::from_secs_f64(o.duration);
    let mut handles = Vec::new();
    for _ in 0..o.concurrency {
        let o = o.clone();
        handles.push(tokio::spawn(async move {
            let mut user = User { o, sender: None };
            let mut t = Tally::default();
            loop {
                let sent = Instant::now();
                if sent >= deadline {
                    break;
                }
                let outcome = user.one().await;
                let done = Instant::now();
                if sent >= measure_from && done <= deadline {
                    record(&mut t, outcome);
                } else if matches!(outcome, Outcome::Error(_)) && done >= measure_from {
                    // Errors straddling the window still count (a refused
                    // connection ends fast; a timeout ends late).
                    record(&mut t, outcome);
                }
            }
            t
        }));
    }
    let mut total = Tally::default();
    for h in handles {
        total.merge(h.await.expect("user task"));
    }
    (total, o.duration)
}

/// `a;dur=1.5, b;dur=2` -> [(a, 1.5), (b, 2.0)]; entries without `dur` are skipped.
fn parse_server_timing(value: &str) -> Vec<(String, f64)> {
    value
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let name = parts.next()?.to_string();
            let dur = parts.find_map(|p| p.strip_prefix("dur="))?.parse().ok()?;
            Some((name, dur))
        })
        .collect()
}

/// Nearest-rank percentile, as [`pct`].
fn pct_f(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn pct(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    Some(sorted[idx] as f64 / 1000.0)
}

fn main() {
    let o = Arc::new(parse_args());
    let rt = if o.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.threads)
            .enable_all()
            .build()
    }
    .expect("runtime");
    let (mut t, elapsed) = rt.block_on(async {
        match o.mode.as_str() {
            "seq" => seq(o.clone()).await,
            "conc" => conc(o.clone()).await,
            m => panic!("unknown mode {m}"),
        }
    });
    t.ok_us.sort_unstable();
    let ok = t.ok_us.len() as u64;
    let requests = ok + t.non_2xx + t.wrong_body + t.errors;
    let mean = if ok > 0 {
        Some(t.ok_us.iter().sum::<u64>() as f64 / ok as f64 / 1000.0)
    } else {
        None
    };
    let out = json!({
        "mode": o.mode,
        "concurrency": if o.mode == "seq" { 1 } else { o.concurrency },
        "requests": requests,
        "ok": ok,
        "non_2xx": t.non_2xx,
        "wrong_body": t.wrong_body,
        "errors": t.errors,
        "non_2xx_share": if requests > 0 { t.non_2xx as f64 / requests as f64 } else { 0.0 },
        "statuses": t.statuses.iter().filter(|(_, n)| **n > 0).map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "p50_ms": pct(&t.ok_us, 50.0),
        "p90_ms": pct(&t.ok_us, 90.0),
        "p99_ms": pct(&t.ok_us, 99.0),
        "max_ms": t.ok_us.last().map(|u| *u as f64 / 1000.0),
        "mean_ms": mean,
        "elapsed_s": elapsed,
        "ok_per_s": ok as f64 / elapsed,
        "first_error": t.first_error,
        "first_wrong_body": t.first_wrong,
        "server_timing": t.stages.iter_mut().map(|(k, v)| {
            v.sort_unstable_by(f64::total_cmp);
            (k.clone(), json!({"p50_ms": pct_f(v, 50.0), "p99_ms": pct_f(v, 99.0), "n": v.len()}))
        }).collect::<serde_json::Map<_, _>>(),
    });
    println!("{out}");
}
