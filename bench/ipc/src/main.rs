//! `infsh-bench-ipc PYTHON APP_DIR FUNCTION [N] [WARMUP] [CONCURRENCY] [SECONDS]`
//!
//! Starts one worker (`python -m infsh_worker`, as `infsh serve` does), runs
//! `setup`, then calls FUNCTION with `{"text": "hello world"}`:
//! N calls one after another (after WARMUP), then CONCURRENCY calls kept in
//! flight for SECONDS. Checks every output is `{"text": "HELLO WORLD", ...}`.
//! Prints one JSON document. This is the host <-> Python round trip alone:
//! no HTTP, no schema validation on the host, no task store.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use infsh_worker::protocol::CallId;
use infsh_worker::{CallRequest, Worker, WorkerConfig, WorkerRuntime};
use serde_json::{json, Value};
use tokio::sync::mpsc;

fn pct(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0)
}

async fn call(worker: &Worker, function: &str, id: u64) -> Result<u64, String> {
    let (events, mut rx) = mpsc::unbounded_channel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let start = Instant::now();
    let out = worker
        .call(
            CallRequest {
                id: CallId::new(format!("c{id}")),
                function: function.to_string(),
                input: json!({"text": "hello world"}),
                metadata: json!({}),
            },
            events,
        )
        .await;
    let us = start.elapsed().as_micros() as u64;
    drain.abort();
    match out {
        Ok(o) if o.output.to_value().get("text") == Some(&Value::from("HELLO WORLD")) => Ok(us),
        Ok(o) => Err(format!("wrong output {}", o.output.json_text())),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!(
            "usage: infsh-bench-ipc PYTHON APP_DIR FUNCTION [N] [WARMUP] [CONCURRENCY] [SECONDS]"
        );
        std::process::exit(2);
    }
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n, warmup, concurrency, seconds) = (
        arg(4, 2000.0) as usize,
        arg(5, 200.0) as usize,
        arg(6, 32.0) as usize,
        arg(7, 5.0),
    );
    let function = args[3].clone();
    let state = std::env::temp_dir().join(format!("infsh-bench-ipc-{}", std::process::id()));
    let cfg = WorkerConfig {
        python: PathBuf::from(&args[1]),
        runtime: WorkerRuntime::Python,
        app_dir: PathBuf::from(&args[2]),
        state_dir: state.clone(),
        env: Vec::new(),
    };
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move { while idle_rx.recv().await.is_some() {} });
    let t0 = Instant::now();
    let (worker, _ready) = Worker::start(cfg, idle_tx).await.expect("worker start");
    let started = t0.elapsed().as_secs_f64();
    let (logs, mut logs_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move { while logs_rx.recv().await.is_some() {} });
    let setup_s = worker
        .setup(json!({}), json!({}), logs)
        .await
        .expect("setup");
    let mut id = 0u64;
    for _ in 0..warmup {
        id += 1;
        let _ = call(&worker, &function, id).await;
    }
    let mut seq = Vec::with_capacity(n);
    let mut failures = 0u64;
    let mut first_failure = None;
    let t = Instant::now();
    for _ in 0..n {
        id += 1;
        match call(&worker, &function, id).await {
            Ok(us) => seq.push(us),
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert(e);
            }
        }
    }
    let seq_elapsed = t.elapsed().as_secs_f64();
    seq.sort_unstable();

    // CONCURRENCY calls in flight for SECONDS.
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut set = tokio::task::JoinSet::new();
    for u in 0..concurrency as u64 {
        let worker = worker.clone();
        let function = function.clone();
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut fails = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                match call(&worker, &function, 1_000_000_000 + u * 10_000_000 + i).await {
                    Ok(us) => lat.push(us),
                    Err(_) => fails += 1,
                }
            }
            (lat, fails)
        });
    }
    let mut conc = Vec::new();
    let mut conc_fail = 0u64;
    while let Some(r) = set.join_next().await {
        let (lat, fails) = r.expect("user");
        conc.extend(lat);
        conc_fail += fails;
    }
    conc.sort_unstable();
    let _ = worker.shutdown(Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&state);
    println!(
        "{}",
        json!({
            "function": function,
            "worker_start_s": started,
            "setup_s": setup_s,
            "seq": {"n": n, "ok": seq.len(), "failures": failures, "first_failure": first_failure,
                     "p50_ms": pct(&seq, 50.0), "p99_ms": pct(&seq, 99.0),
                     "mean_ms": if seq.is_empty() { None } else { Some(seq.iter().sum::<u64>() as f64 / seq.len() as f64 / 1000.0) },
                     "calls_per_s": seq.len() as f64 / seq_elapsed},
            "conc": {"concurrency": concurrency, "seconds": seconds, "ok": conc.len(), "failures": conc_fail,
                      "p50_ms": pct(&conc, 50.0), "p99_ms": pct(&conc, 99.0),
                      "calls_per_s": conc.len() as f64 / seconds},
        })
    );
}
