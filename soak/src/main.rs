//! `infsh-soak`: the load soak of `infsh serve` (docs/reliability.md, item 5).
//!
//! Starts the real server on a temporary data folder with
//! `tests/fixtures/apps/soak-app`, submits N tasks (default 10,000) at
//! concurrency 64 with a fixed mix of functions, failures and
//! cancellations, follows each to its end, then checks that
//!
//! - every acknowledged task ended in the status its input calls for, with
//!   the expected output (and the output of its own call: `task_id`);
//! - inputs that fail the schema got 422 and were never stored;
//! - the store holds exactly the acknowledged tasks (nothing lost, nothing
//!   made up), and `GET /v1/tasks/{id}` agrees with what the stream said;
//! - the app's call log shows every completed or failed task exactly once,
//!   every cancelled one at most once, and no unknown task;
//! - the server's `/metrics` counters agree, no worker crashed;
//! - memory is flat after warm-up (the rule is in `memory_verdict`);
//! - SIGTERM stops the server with exit 0 and no worker left behind.
//!
//! It prints a summary and writes `<out-dir>/<name>.json` and `.md`; it
//! exits 1 on any violation (2 on a usage error).

mod load;
mod report;
mod server;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use load::{Kind, Outcome, Shared, CANCELLED, COMPLETED, FAILED};
use server::{MemSample, Sandbox, Server, API_KEY, APP_ID};

const USAGE: &str = "\
usage: infsh-soak --infsh PATH --python PATH [options]

  --infsh PATH              the infsh binary to serve with
  --python PATH             the interpreter for the app (with inferencesh installed)
  --app-dir DIR             the soak app (default tests/fixtures/apps/soak-app)
  --tasks N                 submissions (default 10000)
  --concurrency N           submissions in flight at once (default 64)
  --replicas N              serve --replicas (default 2)
  --worker-concurrency N    serve --concurrency (default 16)
  --queue-capacity N        serve --queue-capacity (default 10000)
  --warmup N                tasks before the reference memory sample (default min(1000, tasks/3))
  --sample-every N          a memory sample every N tasks (default tasks/10)
  --task-deadline SECS      longest a task may take, submit to end (default 120)
  --seed N                  shuffles the mix (default 1)
  --out-dir DIR             where the result files go (default soak/results)
  --name NAME               result file name without extension (default: today, UTC, YYYY-MM-DD)
  --label TEXT              recorded in the results (e.g. the git revision)
  --keep                    keep the temporary folder (server log, data, call log)
";

#[derive(Clone, Debug)]
pub struct Config {
    pub infsh: PathBuf,
    pub python: PathBuf,
    pub app_dir: PathBuf,
    pub tasks: usize,
    pub concurrency: usize,
    pub replicas: usize,
    pub worker_concurrency: usize,
    pub queue_capacity: usize,
    pub warmup: usize,
    pub sample_every: usize,
    pub task_deadline: Duration,
    pub seed: u64,
    pub out_dir: PathBuf,
    pub name: String,
    pub label: String,
    pub keep: bool,
}

fn parse_args() -> Result<Config> {
    let mut args = std::env::args().skip(1);
    let mut infsh = None;
    let mut python = None;
    let mut cfg = Config {
        infsh: PathBuf::new(),
        python: PathBuf::new(),
        app_dir: PathBuf::from("tests/fixtures/apps/soak-app"),
        tasks: 10_000,
        concurrency: 64,
        replicas: 2,
        worker_concurrency: 16,
        queue_capacity: 10_000,
        warmup: 0,
        sample_every: 0,
        task_deadline: Duration::from_secs(120),
        seed: 1,
        out_dir: PathBuf::from("soak/results"),
        name: report::today(),
        label: String::new(),
        keep: false,
    };
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--keep" {
            cfg.keep = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let num = || -> Result<usize> {
            value
                .parse()
                .with_context(|| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--infsh" => infsh = Some(PathBuf::from(&value)),
            "--python" => python = Some(PathBuf::from(&value)),
            "--app-dir" => cfg.app_dir = PathBuf::from(&value),
            "--tasks" => cfg.tasks = num()?,
            "--concurrency" => cfg.concurrency = num()?,
            "--replicas" => cfg.replicas = num()?,
            "--worker-concurrency" => cfg.worker_concurrency = num()?,
            "--queue-capacity" => cfg.queue_capacity = num()?,
            "--warmup" => cfg.warmup = num()?,
            "--sample-every" => cfg.sample_every = num()?,
            "--task-deadline" => cfg.task_deadline = Duration::from_secs(num()? as u64),
            "--seed" => cfg.seed = num()? as u64,
            "--out-dir" => cfg.out_dir = PathBuf::from(&value),
            "--name" => cfg.name = value.clone(),
            "--label" => cfg.label = value.clone(),
            _ => bail!("unknown flag {flag}"),
        }
    }
    cfg.infsh = infsh.context("--infsh is required")?;
    cfg.python = python.context("--python is required")?;
    if cfg.tasks == 0 || cfg.concurrency == 0 {
        bail!("--tasks and --concurrency must be positive");
    }
    if cfg.warmup == 0 {
        cfg.warmup = (cfg.tasks / 3).clamp(1, 1000);
    }
    if cfg.sample_every == 0 {
        cfg.sample_every = (cfg.tasks / 10).max(1);
    }
    Ok(cfg)
}

fn main() {
    let cfg = match parse_args() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("infsh-soak: {e:#}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    // One thread: the server and its workers share the machine with us.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(soak(cfg)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("infsh-soak: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Everything the report needs.
pub struct Run {
    pub cfg: Config,
    pub outcomes: Vec<Outcome>,
    pub violations: Vec<(String, String)>,
    pub notes: Vec<(String, String)>,
    pub samples: Vec<MemSample>,
    pub load_seconds: f64,
    pub metrics: BTreeMap<String, f64>,
    pub calls_logged: usize,
    pub stored_tasks: usize,
    pub shutdown: (Option<i32>, f64),
    pub server_log_tail: Vec<String>,
    pub memory: Value,
}

async fn soak(cfg: Config) -> Result<bool> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4 * cfg.concurrency)
        .build()?;
    let sb = Sandbox::new(&cfg)?;
    eprintln!(
        "soak: {} tasks at concurrency {} (replicas {}, worker concurrency {}); folder {}",
        cfg.tasks,
        cfg.concurrency,
        cfg.replicas,
        cfg.worker_concurrency,
        sb.dir.display()
    );
    let mut srv = Server::start(&cfg, &sb, &http).await?;
    eprintln!("soak: serving on {} (pid {})", srv.url, srv.pid);

    let shared = Arc::new(Shared {
        http: http.clone(),
        url: srv.url.clone(),
        kinds: load::plan(cfg.tasks, cfg.seed),
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        outcomes: Mutex::new(Vec::with_capacity(cfg.tasks)),
        violations: Mutex::new(Vec::new()),
        notes: Mutex::new(Vec::new()),
        task_deadline: cfg.task_deadline,
        replicas: cfg.replicas,
    });

    let start = Instant::now();
    let mut samples = vec![MemSample::take(srv.pid, "idle before load", 0, 0.0)];
    let clients: Vec<_> = (0..cfg.concurrency)
        .map(|_| tokio::spawn(load::client(shared.clone())))
        .collect();
    // Memory samples at warm-up, then every `sample_every` tasks.
    let mut next_sample = cfg.warmup;
    let mut last_print = 0;
    while clients.iter().any(|c| !c.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = shared.done.load(Ordering::SeqCst);
        if done >= next_sample && done < cfg.tasks {
            let label = if samples.len() == 1 {
                "warm-up"
            } else {
                "under load"
            };
            samples.push(MemSample::take(
                srv.pid,
                label,
                done,
                start.elapsed().as_secs_f64(),
            ));
            next_sample = (done / cfg.sample_every + 1) * cfg.sample_every;
        }
        if done >= last_print + cfg.tasks / 10 || done == cfg.tasks {
            if done > last_print {
                let v = shared.violations.lock().unwrap().len();
                eprintln!(
                    "soak: {done}/{} ended, {:.1} s, {v} violations",
                    cfg.tasks,
                    start.elapsed().as_secs_f64()
                );
            }
            last_print = done;
        }
    }
    for c in clients {
        c.await.context("a client task panicked")?;
    }
    let load_seconds = start.elapsed().as_secs_f64();
    samples.push(MemSample::take(
        srv.pid,
        "end of load",
        cfg.tasks,
        load_seconds,
    ));
    // Let what was freed settle, then an idle sample.
    tokio::time::sleep(Duration::from_secs(2)).await;
    samples.push(MemSample::take(
        srv.pid,
        "idle after load",
        cfg.tasks,
        start.elapsed().as_secs_f64(),
    ));
    eprintln!("soak: load done in {load_seconds:.1} s; reconciling");

    let mut outcomes = std::mem::take(&mut *shared.outcomes.lock().unwrap());
    outcomes.sort_by_key(|o| o.index);
    if outcomes.len() != cfg.tasks {
        shared.violation(
            "harness",
            format!("{} outcomes for {} submissions", outcomes.len(), cfg.tasks),
        );
    }

    reconcile_tasks(&shared, &outcomes).await;
    let stored_tasks = reconcile_store(&shared, &outcomes).await;
    let calls_logged = reconcile_calls(&shared, &outcomes, &sb)?;
    let metrics = reconcile_metrics(&shared, &outcomes).await;

    let tree_before_stop = server::descendants(srv.pid);
    let shutdown = srv.terminate(Duration::from_secs(60)).await;
    match shutdown.0 {
        Some(0) => {}
        Some(code) => shared.violation("shutdown", format!("infsh serve exited {code} on SIGTERM")),
        None => shared.violation(
            "shutdown",
            "infsh serve did not exit within 60 s of SIGTERM (killed)".to_string(),
        ),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left: Vec<i32> = tree_before_stop
        .into_iter()
        .filter(|&p| server::alive(p))
        .collect();
    if !left.is_empty() {
        shared.violation(
            "shutdown",
            format!("processes of the server outlived it: {left:?}"),
        );
        for pid in left {
            // SAFETY: kill(2) on a process that the server started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    let log = srv.log();
    let server_log_tail: Vec<String> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked"))
        .take(50)
        .map(str::to_string)
        .collect();
    if log.contains("panicked") {
        shared.violation("server panic", "the server log shows a panic".into());
    }

    let memory = report::memory_verdict(&samples, cfg.warmup);
    if memory["flat"] != Value::Bool(true) {
        shared.violation(
            "memory growth",
            memory["reason"].as_str().unwrap_or("").into(),
        );
    }

    let run = Run {
        violations: std::mem::take(&mut *shared.violations.lock().unwrap()),
        notes: std::mem::take(&mut *shared.notes.lock().unwrap()),
        cfg: cfg.clone(),
        outcomes,
        samples,
        load_seconds,
        metrics,
        calls_logged,
        stored_tasks,
        shutdown,
        server_log_tail,
        memory,
    };
    let ok = run.violations.is_empty();
    let (json_path, md_path) = report::write(&run)?;
    print!("{}", report::summary(&run));
    println!("results: {} and {}", json_path.display(), md_path.display());
    if cfg.keep || !ok {
        println!("kept: {}", sb.dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&sb.dir);
    }
    Ok(ok)
}

/// `GET /v1/tasks/{id}` for every acknowledged task: it exists, it is
/// terminal, and it agrees with what the harness saw end.
async fn reconcile_tasks(shared: &Arc<Shared>, outcomes: &[Outcome]) {
    let ids: Vec<(usize, Kind, String, Option<i64>)> = outcomes
        .iter()
        .filter_map(|o| o.id.clone().map(|id| (o.index, o.kind, id, o.terminal)))
        .collect();
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..16 {
        let (shared, ids, next) = (shared.clone(), ids.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((index, kind, id, seen)) = ids.get(i).cloned() else {
                    return;
                };
                let Some(task) = load::get_task(&shared, &id).await else {
                    shared.violation(
                        "lost task",
                        format!("#{index} {id}: GET /v1/tasks/{id} failed"),
                    );
                    continue;
                };
                let status = task["status"].as_i64().unwrap_or(-1);
                if seen.is_some() && seen != Some(status) {
                    shared.violation(
                        "status changed after the end",
                        format!("#{index} {id}: ended {seen:?}, the store now says {status}"),
                    );
                }
                let problems = load::check_terminal(kind, index, &task);
                if !problems.is_empty() {
                    shared.violation(
                        "stored task wrong",
                        format!("#{index} {id} ({}): {}", kind.name(), problems.join("; ")),
                    );
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

/// Pages through `GET /v1/tasks?app=…`: the store holds exactly the
/// acknowledged tasks, each once. Returns how many it holds.
async fn reconcile_store(shared: &Shared, outcomes: &[Outcome]) -> usize {
    let acked: HashSet<&str> = outcomes.iter().filter_map(|o| o.id.as_deref()).collect();
    let mut listed: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/tasks?app={APP_ID}&limit=100", shared.url);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let resp = shared.http.get(&url).bearer_auth(API_KEY).send().await;
        let Ok(resp) = resp else {
            shared.violation("transport", format!("GET {url} failed"));
            break;
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status != 200 {
            shared.violation(
                "task list",
                format!("GET {url}: HTTP {status} {}", load::clip(&text)),
            );
            break;
        }
        for item in doc["data"]["items"].as_array().cloned().unwrap_or_default() {
            listed.push(item["id"].as_str().unwrap_or("").to_string());
        }
        match doc["data"]["next_cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
            _ => break,
        }
        if listed.len() > 10 * outcomes.len() + 1000 {
            shared.violation("task list", "the listing does not end".into());
            break;
        }
    }
    let mut seen = HashSet::new();
    for id in &listed {
        if !seen.insert(id.as_str()) {
            shared.violation("task listed twice", id.clone());
        }
        if !acked.contains(id.as_str()) {
            shared.violation(
                "unknown task stored",
                format!("{id} is stored but was never acknowledged (a refused input stored, or a duplicate)"),
            );
        }
    }
    for id in &acked {
        if !seen.contains(id) {
            shared.violation(
                "lost task",
                format!("{id} was acknowledged but is not listed"),
            );
        }
    }
    listed.len()
}

/// The app's call log: completed and failed tasks ran exactly once,
/// cancelled ones at most once, nothing else ran. Returns the line count.
fn reconcile_calls(shared: &Shared, outcomes: &[Outcome], sb: &Sandbox) -> Result<usize> {
    let text = std::fs::read_to_string(sb.call_log())?;
    let mut calls: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        let mut parts = line.split(' ');
        let (Some(id), Some(function)) = (parts.next(), parts.next()) else {
            shared.violation("call log", format!("malformed line {line:?}"));
            continue;
        };
        calls.entry(id).or_default().push(function);
    }
    let mut known = HashSet::new();
    for o in outcomes {
        let Some(id) = o.id.as_deref() else { continue };
        known.insert(id);
        let ran = calls.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let at_most_once = o.kind.expected_status() == Some(CANCELLED);
        let ok = if at_most_once {
            ran.len() <= 1
        } else {
            ran.len() == 1
        };
        if !ok {
            let category = if ran.len() > 1 {
                "task ran more than once"
            } else {
                "task never ran"
            };
            shared.violation(
                category,
                format!("#{} {id} ({}): {} calls", o.index, o.kind.name(), ran.len()),
            );
        }
        if ran.iter().any(|f| *f != o.kind.function(o.index)) {
            shared.violation(
                "wrong function called",
                format!(
                    "#{} {id}: called {ran:?}, expected {}",
                    o.index,
                    o.kind.function(o.index)
                ),
            );
        }
    }
    for (id, fns) in &calls {
        if !known.contains(id) {
            shared.violation(
                "call of an unknown task",
                format!("{id} ({fns:?}) ran but was never acknowledged"),
            );
        }
    }
    Ok(lines)
}

/// `/metrics`: the counters agree with what the harness saw, and no worker
/// crashed.
async fn reconcile_metrics(shared: &Shared, outcomes: &[Outcome]) -> BTreeMap<String, f64> {
    let mut metrics = BTreeMap::new();
    let resp = shared
        .http
        .get(format!("{}/metrics", shared.url))
        .bearer_auth(API_KEY)
        .send()
        .await;
    let text = match resp {
        Ok(r) if r.status().as_u16() == 200 => r.text().await.unwrap_or_default(),
        _ => {
            shared.violation("metrics", "GET /metrics failed".into());
            return metrics;
        }
    };
    for line in text.lines() {
        if line.starts_with('#') || !line.starts_with("infsh_") {
            continue;
        }
        if let Some((name, value)) = line.rsplit_once(' ') {
            if let Ok(v) = value.parse::<f64>() {
                metrics.insert(name.to_string(), v);
            }
        }
    }
    let count = |status: i64| {
        outcomes
            .iter()
            .filter(|o| o.id.is_some() && o.kind.expected_status() == Some(status))
            .count() as f64
    };
    let acked = outcomes.iter().filter(|o| o.id.is_some()).count() as f64;
    let expect = [
        ("infsh_tasks_submitted_total", acked),
        ("infsh_tasks_completed_total", count(COMPLETED)),
        ("infsh_tasks_failed_total", count(FAILED)),
        ("infsh_tasks_cancelled_total", count(CANCELLED)),
        ("infsh_tasks_rejected_queue_full_total", 0.0),
        ("infsh_workers_crashed_total", 0.0),
        ("infsh_tasks_queued", 0.0),
        ("infsh_tasks_running", 0.0),
    ];
    if let Some(&started) = metrics.get("infsh_workers_started_total") {
        if started != shared.replicas as f64 {
            shared.note(
                "workers replaced",
                format!(
                    "infsh_workers_started_total is {started} for {} replicas",
                    shared.replicas as f64
                ),
            );
        }
    }
    for (name, want) in expect {
        match metrics.get(name) {
            Some(&v) if v == want => {}
            Some(&v) => shared.violation("metrics", format!("{name} is {v}, expected {want}")),
            None => shared.note("metrics", format!("{name} is not exported")),
        }
    }
    metrics
}
