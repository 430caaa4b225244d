//! The memory rule, the summary, and the result files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::load::{Kind, CANCELLED, COMPLETED, FAILED, MIX};
use crate::server::{round, MemSample};
use crate::Run;

/// Growth allowed after warm-up: `peak <= warm-up * RATIO + slack`.
pub const RATIO: f64 = 1.2;
/// Absolute slack for the server's own RSS, KiB.
pub const SERVER_SLACK_KIB: u64 = 16 * 1024;
/// Absolute slack for the PSS of the whole tree (server + workers), KiB.
pub const TREE_SLACK_KIB: u64 = 32 * 1024;
/// Largest growth of the server's RSS over the second half, KiB per 1000 tasks.
pub const SERVER_SLOPE_KIB: u64 = 512;
/// Largest growth of the tree's RSS over the second half, KiB per 1000 tasks.
pub const TREE_SLOPE_KIB: u64 = 1024;
/// The growth rule needs a second half at least this long (tasks).
pub const SLOPE_MIN_SPAN: usize = 4000;

/// Today's date, UTC, `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Howard Hinnant's days-since-epoch to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Memory is flat when both hold:
///
/// 1. Bounded: for the server's RSS and for the PSS of the whole process
///    tree (server + workers), every sample taken after the warm-up one
///    (under load, at the end of the load, and idle 2 s later) stays within
///    `warm-up * 1.2 + slack` (16 MiB for the server, 32 MiB for the tree).
///    The warm-up sample is taken once `warmup` tasks have ended.
/// 2. Not growing: over the second half of the run after warm-up (from the
///    last sample at or before its middle to the end of the load), the server's RSS
///    grows by at most 512 KiB per 1,000 tasks and the tree's RSS by at most
///    1 MiB per 1,000 tasks (a leak of half a KiB per task fails). Judged
///    only when that half spans at least 4,000 tasks (the full soak, not the
///    CI one). RSS, not PSS: PSS moves when unrelated processes that map the
///    same files (the binary, libpython) come and go.
pub fn memory_verdict(samples: &[MemSample], warmup: usize) -> Value {
    let Some(warm_idx) = samples.iter().position(|s| s.label == "warm-up") else {
        return json!({"flat": true, "reason": "no warm-up sample (too few tasks): not judged"});
    };
    let warm = &samples[warm_idx];
    let after = &samples[warm_idx + 1..];
    let end = samples.iter().rev().find(|s| s.label == "end of load");
    // The second half starts at the last sample at or before the middle.
    let mid = end.map(|e| {
        let middle = (warm.tasks_done + e.tasks_done) / 2;
        after
            .iter()
            .rev()
            .find(|s| s.tasks_done <= middle)
            .unwrap_or(warm)
    });
    let mut reasons = Vec::new();
    let mut checks = Map::new();
    type Get = fn(&MemSample) -> u64;
    let metrics: [(&str, Get, Option<u64>, Option<u64>); 3] = [
        (
            "server_rss_kib",
            |s| s.server_rss_kib,
            Some(SERVER_SLACK_KIB),
            Some(SERVER_SLOPE_KIB),
        ),
        (
            "tree_pss_kib",
            |s| s.tree_pss_kib,
            Some(TREE_SLACK_KIB),
            None,
        ),
        (
            "tree_rss_kib",
            |s| s.tree_rss_kib,
            None,
            Some(TREE_SLOPE_KIB),
        ),
    ];
    for (name, get, slack, slope_limit) in metrics {
        let base = get(warm);
        let peak = after.iter().map(get).max().unwrap_or(base);
        let mut check = Map::new();
        check.insert("warm_up".into(), json!(base));
        check.insert("peak_after_warm_up".into(), json!(peak));
        check.insert("end_of_load".into(), json!(end.map(get)));
        if let Some(slack) = slack {
            let limit = (base as f64 * RATIO) as u64 + slack;
            if peak > limit {
                reasons.push(format!(
                    "{name}: peak {peak} KiB after warm-up > limit {limit} KiB (warm-up {base} KiB * {RATIO} + {slack} KiB)"
                ));
            }
            check.insert("limit".into(), json!(limit));
            check.insert("bounded".into(), json!(peak <= limit));
        }
        if let (Some(e), Some(m)) = (end, mid) {
            let span = e.tasks_done.saturating_sub(m.tasks_done);
            let slope = (get(e) as f64 - get(m) as f64) / span.max(1) as f64 * 1000.0;
            check.insert("second_half_from_tasks".into(), json!(m.tasks_done));
            check.insert(
                "second_half_growth_kib_per_1000_tasks".into(),
                json!(round(slope, 1)),
            );
            if let Some(limit) = slope_limit {
                let judged = span >= SLOPE_MIN_SPAN;
                check.insert("growth_limit_kib_per_1000_tasks".into(), json!(limit));
                check.insert("growth_judged".into(), json!(judged));
                if judged && slope > limit as f64 {
                    reasons.push(format!(
                        "{name}: grows {slope:.0} KiB per 1000 tasks over the second half (tasks {}..{}), more than {limit}",
                        m.tasks_done, e.tasks_done
                    ));
                }
            }
        }
        checks.insert(name.to_string(), Value::Object(check));
    }
    json!({
        "rule": format!(
            "(1) server VmRSS and the PSS of server + workers: every sample after the warm-up one (taken after {warmup} tasks ended) <= warm-up * {RATIO} + slack ({} MiB server, {} MiB tree); (2) over the second half after warm-up, when it spans >= {SLOPE_MIN_SPAN} tasks: server VmRSS grows <= {SERVER_SLOPE_KIB} KiB and the tree's VmRSS <= {TREE_SLOPE_KIB} KiB per 1000 tasks",
            SERVER_SLACK_KIB / 1024, TREE_SLACK_KIB / 1024
        ),
        "flat": reasons.is_empty(),
        "reason": reasons.join("; "),
        "checks": checks,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn latency_stats(mut v: Vec<f64>) -> Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let ms = |x: f64| round(x * 1000.0, 1);
    let mean = if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    };
    json!({
        "n": v.len(),
        "p50_ms": ms(percentile(&v, 0.50)),
        "p90_ms": ms(percentile(&v, 0.90)),
        "p99_ms": ms(percentile(&v, 0.99)),
        "max_ms": ms(v.last().copied().unwrap_or(0.0)),
        "mean_ms": ms(mean),
    })
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "mem_total_kib": mem.and_then(|m| m.parse::<u64>().ok()),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
    })
}

pub fn to_json(run: &Run) -> Value {
    let cfg = &run.cfg;
    let acked: Vec<_> = run.outcomes.iter().filter(|o| o.id.is_some()).collect();
    let by_terminal = |s: i64| acked.iter().filter(|o| o.terminal == Some(s)).count();
    let refused = run
        .outcomes
        .iter()
        .filter(|o| o.id.is_none() && o.http_status == 422)
        .count();
    let ended: Vec<f64> = acked
        .iter()
        .filter(|o| o.terminal.is_some())
        .map(|o| o.latency_s)
        .collect();
    let mut per_kind = Map::new();
    for &(kind, _) in MIX {
        let of: Vec<_> = run.outcomes.iter().filter(|o| o.kind == kind).collect();
        let lat: Vec<f64> = of
            .iter()
            .filter(|o| o.terminal.is_some() || kind == Kind::Invalid)
            .map(|o| o.latency_s)
            .collect();
        let mut entry = latency_stats(lat);
        entry["submitted"] = json!(of.len());
        entry["expected_status"] = json!(kind.expected_status());
        per_kind.insert(kind.name().to_string(), entry);
    }
    let mut cancel_answers: BTreeMap<String, usize> = BTreeMap::new();
    for o in &run.outcomes {
        if let Some((http, status)) = o.cancel_answer {
            let key = format!("{}: HTTP {http}, status {status}", o.kind.name());
            *cancel_answers.entry(key).or_default() += 1;
        }
    }
    let mut categories: BTreeMap<&str, usize> = BTreeMap::new();
    for (c, _) in &run.violations {
        *categories.entry(c.as_str()).or_default() += 1;
    }
    let mut note_categories: BTreeMap<&str, usize> = BTreeMap::new();
    for (c, _) in &run.notes {
        *note_categories.entry(c.as_str()).or_default() += 1;
    }
    let first = |v: &[(String, String)]| -> Vec<String> {
        v.iter()
            .take(30)
            .map(|(c, d)| format!("{c}: {d}"))
            .collect()
    };
    json!({
        "name": cfg.name,
        "label": cfg.label,
        "ok": run.violations.is_empty(),
        "config": {
            "tasks": cfg.tasks,
            "concurrency": cfg.concurrency,
            "serve": {
                "replicas": cfg.replicas,
                "concurrency": cfg.worker_concurrency,
                "queue_capacity": cfg.queue_capacity,
                "cancel_grace_s": 5,
                "preload": true,
            },
            "warmup_tasks": cfg.warmup,
            "sample_every": cfg.sample_every,
            "task_deadline_s": cfg.task_deadline.as_secs(),
            "seed": cfg.seed,
            "infsh": cfg.infsh.display().to_string(),
            "mix_percent": MIX.iter().map(|(k, p)| (k.name().to_string(), json!(p))).collect::<Map<_, _>>(),
        },
        "machine": machine(),
        "results": {
            "submissions": run.outcomes.len(),
            "acknowledged": acked.len(),
            "refused_422": refused,
            "completed": by_terminal(COMPLETED),
            "failed": by_terminal(FAILED),
            "cancelled": by_terminal(CANCELLED),
            "not_ended": acked.iter().filter(|o| o.terminal.is_none()).count(),
            "stored_tasks": run.stored_tasks,
            "calls_logged": run.calls_logged,
            "load_seconds": round(run.load_seconds, 2),
            "submissions_per_second": round(run.outcomes.len() as f64 / run.load_seconds, 1),
            "tasks_per_second": round(acked.len() as f64 / run.load_seconds, 1),
            "latency_submit_to_terminal": latency_stats(ended),
            "per_kind": per_kind,
            "cancel_answers": cancel_answers,
        },
        "memory": {
            "verdict": run.memory,
            "samples": run.samples.iter().map(MemSample::to_json).collect::<Vec<_>>(),
        },
        "metrics": run.metrics,
        "shutdown": {"exit_code": run.shutdown.0, "seconds": round(run.shutdown.1, 2)},
        "violations": {"count": run.violations.len(), "by_category": categories, "first": first(&run.violations)},
        "notes": {"count": run.notes.len(), "by_category": note_categories, "first": first(&run.notes)},
        "server_log_warnings": run.server_log_tail,
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The human summary (also the body of the `.md` file).
pub fn summary(run: &Run) -> String {
    let doc = to_json(run);
    let r = &doc["results"];
    let l = &r["latency_submit_to_terminal"];
    let mut s = String::new();
    let verdict = if run.violations.is_empty() {
        "PASS"
    } else {
        "FAIL"
    };
    let _ = writeln!(s, "## Soak {}: {verdict}\n", run.cfg.name);
    if !run.cfg.label.is_empty() {
        let _ = writeln!(s, "Revision: {}\n", run.cfg.label);
    }
    let m = &doc["machine"];
    let _ = writeln!(
        s,
        "{} submissions at concurrency {} to `tests/soak-app` (`infsh serve --replicas {} --concurrency {}`), on {} CPUs ({}), server and harness on the same machine.\n",
        run.cfg.tasks,
        run.cfg.concurrency,
        run.cfg.replicas,
        run.cfg.worker_concurrency,
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| load time | {} s |", r["load_seconds"]);
    let _ = writeln!(
        s,
        "| throughput | {} tasks/s ({} submissions/s, 422s included) |",
        r["tasks_per_second"], r["submissions_per_second"]
    );
    let _ = writeln!(
        s,
        "| submit → terminal | p50 {} ms, p90 {} ms, p99 {} ms, max {} ms |",
        l["p50_ms"], l["p90_ms"], l["p99_ms"], l["max_ms"]
    );
    let _ = writeln!(
        s,
        "| outcomes | {} acknowledged: {} COMPLETED, {} FAILED, {} CANCELLED, {} not ended; {} refused with 422 |",
        r["acknowledged"], r["completed"], r["failed"], r["cancelled"], r["not_ended"], r["refused_422"]
    );
    let _ = writeln!(
        s,
        "| store / call log | {} tasks stored; {} calls logged |",
        r["stored_tasks"], r["calls_logged"]
    );
    let checks = &doc["memory"]["verdict"]["checks"];
    for (name, what) in [
        ("server_rss_kib", "server RSS"),
        ("tree_pss_kib", "server + workers PSS"),
        ("tree_rss_kib", "server + workers RSS"),
    ] {
        let c = &checks[name];
        if c.is_null() {
            continue;
        }
        let get = |k: &str| c[k].as_u64().unwrap_or(0);
        let idle_before = run.samples.first().map(|s| match name {
            "server_rss_kib" => s.server_rss_kib,
            "tree_pss_kib" => s.tree_pss_kib,
            _ => s.tree_rss_kib,
        });
        let mut row = format!(
            "| {what} | idle {} → warm-up {} → end of load {}; peak after warm-up {}",
            mib(idle_before.unwrap_or(0)),
            mib(get("warm_up")),
            mib(get("end_of_load")),
            mib(get("peak_after_warm_up")),
        );
        if !c["limit"].is_null() {
            let _ = write!(row, " (limit {})", mib(get("limit")));
        }
        if !c["second_half_growth_kib_per_1000_tasks"].is_null() {
            let _ = write!(
                row,
                "; second half: {} KiB per 1000 tasks",
                c["second_half_growth_kib_per_1000_tasks"]
            );
            if !c["growth_limit_kib_per_1000_tasks"].is_null() {
                let judged = if c["growth_judged"] == true {
                    ""
                } else {
                    ", not judged: too few tasks"
                };
                let _ = write!(
                    row,
                    " (limit {}{judged})",
                    c["growth_limit_kib_per_1000_tasks"]
                );
            }
        }
        let _ = writeln!(s, "{row} |");
    }
    let _ = writeln!(
        s,
        "| shutdown (SIGTERM) | exit {}, {} s |",
        doc["shutdown"]["exit_code"], doc["shutdown"]["seconds"]
    );
    let _ = writeln!(s, "| violations | {} |", run.violations.len());
    let _ = writeln!(
        s,
        "\nPer kind (latency: submit → terminal; for `invalid_422`, → the 422):\n"
    );
    let _ = writeln!(
        s,
        "| kind | submitted | expected | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|"
    );
    for (name, k) in r["per_kind"].as_object().into_iter().flatten() {
        let expected = match k["expected_status"].as_i64() {
            Some(10) => "COMPLETED",
            Some(11) => "FAILED",
            Some(12) => "CANCELLED",
            _ => "422",
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {expected} | {} | {} | {} |",
            k["submitted"], k["p50_ms"], k["p99_ms"], k["max_ms"]
        );
    }
    let _ = writeln!(s, "\nMemory samples:\n");
    let _ = writeln!(s, "| sample | tasks ended | s | server RSS | server RSS anon | server PSS | tree RSS | tree PSS | processes |\n|---|---|---|---|---|---|---|---|---|");
    for m in &run.samples {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |",
            m.label,
            m.tasks_done,
            m.elapsed_s,
            mib(m.server_rss_kib),
            mib(m.server_anon_kib),
            mib(m.server_pss_kib),
            mib(m.tree_rss_kib),
            mib(m.tree_pss_kib),
            m.processes
        );
    }
    let _ = writeln!(
        s,
        "\nMemory rule: {}",
        doc["memory"]["verdict"]["rule"].as_str().unwrap_or("")
    );
    if !run.violations.is_empty() {
        let _ = writeln!(s, "\nViolations by category:\n");
        for (c, n) in doc["violations"]["by_category"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let _ = writeln!(s, "- {c}: {n}");
        }
        let _ = writeln!(s, "\nFirst violations:\n");
        for v in doc["violations"]["first"].as_array().into_iter().flatten() {
            let _ = writeln!(s, "- {}", v.as_str().unwrap_or(""));
        }
    }
    if !run.notes.is_empty() {
        let _ = writeln!(s, "\nNotes (not violations):\n");
        for v in doc["notes"]["first"].as_array().into_iter().flatten() {
            let _ = writeln!(s, "- {}", v.as_str().unwrap_or(""));
        }
    }
    s
}

/// Writes `<out-dir>/<name>.json` and `.md`.
pub fn write(run: &Run) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(&run.cfg.out_dir)?;
    let json_path = run.cfg.out_dir.join(format!("{}.json", run.cfg.name));
    let md_path = run.cfg.out_dir.join(format!("{}.md", run.cfg.name));
    let mut text = serde_json::to_string_pretty(&to_json(run))?;
    text.push('\n');
    std::fs::write(&json_path, text)?;
    let md = format!(
        "{}\nProduced by `scripts/soak.sh` (the harness is `soak/`; what it checks: `docs/reliability.md`, item 5). Full data: `{}.json`.\n",
        summary(run),
        run.cfg.name
    );
    std::fs::write(&md_path, md)?;
    Ok((json_path, md_path))
}
