//! `infsh engine status`: a server's worker layout as `GET /engines` and
//! `GET /workers` show it (docs/http-api.md, "Engines and workers"): each
//! engine's slots with their GPUs, VRAM, replicas and running tasks, then
//! one row per replica. With `--json`, the two answers as the API gives
//! them, under `engines` and `workers`.
//!
//! The rendering reads the JSON loosely (a missing field shows as `-`), so
//! a newer server with more fields, or an older one with fewer, still
//! prints.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde_json::{json, Value};

use crate::cli::{EngineStatusArgs, GlobalArgs};
use crate::exit::{ExitCode, Failure};
use crate::output;
use crate::remote::{self, errors::RemoteError};

pub async fn status(args: EngineStatusArgs, global: &GlobalArgs) -> Result<()> {
    let remote = remote::connect_server(args.server)?;
    let (engines, workers) = tokio::join!(remote.engines(), remote.workers());
    let engines = engines.map_err(|e| layout_error(remote.base(), e))?;
    let workers = workers.map_err(|e| layout_error(remote.base(), e))?;
    let doc = json!({"engines": engines, "workers": workers});
    output::print_json_or(&doc, global.json, || {
        for line in render(&engines, &workers, now_ms()) {
            println!("{line}");
        }
    });
    Ok(())
}

/// A server without the layout routes (another inference.sh-compatible API,
/// an older infsh) answers 404 for the route: say that, not "not found".
pub(crate) fn layout_error(base: &str, err: RemoteError) -> Failure {
    if err.is_not_found() {
        return Failure::new(
            ExitCode::Server,
            format!(
                "the server at {base} does not show its worker layout (GET /v1/engines or /v1/workers: {}); `infsh engine status` needs an infsh serve that has them",
                err.detail().unwrap_or("not found")
            ),
        );
    }
    err.into_failure()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The human form: per engine a header line and a table of its slots, then
/// the table of workers. `now_ms` dates `warm since` and `last used`.
fn render(engines: &Value, workers: &Value, now_ms: i64) -> Vec<String> {
    let mut lines = Vec::new();
    let engines = engines.as_array().map(Vec::as_slice).unwrap_or_default();
    if engines.is_empty() {
        lines.push("no engines".to_string());
    }
    for engine in engines {
        lines.push(engine_header(engine));
        let draining = yes_no(engine.get("draining"));
        let mut rows = vec![row(&[
            "SLOT", "GPUS", "VRAM", "REPLICAS", "RUNNING", "DRAINING",
        ])];
        for slot in engine
            .get("slots")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let gpus = slot
                .get("gpus")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            rows.push(vec![
                text(slot.get("name")),
                dash_if_empty(
                    gpus.iter()
                        .map(|g| text(g.get("index")))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                dash_if_empty(gpus.iter().map(vram).collect::<Vec<_>>().join(", ")),
                dash_if_empty(strings(slot.get("replicas")).join(", ")),
                text(slot.get("running_tasks")),
                draining.clone(),
            ]);
        }
        lines.extend(table(&rows));
        lines.push(String::new());
    }
    let workers = workers.as_array().map(Vec::as_slice).unwrap_or_default();
    if workers.is_empty() {
        lines.push("no workers".to_string());
        return lines;
    }
    let mut rows = vec![row(&[
        "WORKER",
        "APP",
        "SLOT",
        "PID",
        "STATE",
        "TASKS",
        "WARM SINCE",
        "LAST USED",
        "DRAINING",
    ])];
    for w in workers {
        rows.push(vec![
            text(w.get("id")),
            text(w.get("app")),
            text(w.get("slot")),
            text(w.get("pid")),
            text(w.get("state")),
            dash_if_empty(strings(w.get("current_tasks")).join(", ")),
            ago(w.get("warm_since"), now_ms),
            ago(w.get("last_used"), now_ms),
            yes_no(w.get("draining")),
        ]);
    }
    lines.extend(table(&rows));
    lines
}

/// `engine gpu-box-1 (inventory: declared, CPU slots: 2, evictions: 0,
/// waiting for a slot: 0)`.
fn engine_header(engine: &Value) -> String {
    let cpu = match engine.get("cpu_slots") {
        Some(Value::Number(n)) => n.to_string(),
        _ => "unbounded".to_string(),
    };
    format!(
        "engine {} (inventory: {}, CPU slots: {cpu}, evictions: {}, waiting for a slot: {})",
        text(engine.get("name")),
        text(engine.get("inventory")),
        text(engine.get("evictions_total")),
        text(engine.get("tasks_waiting_for_slot")),
    )
}

/// One GPU's memory: `80 GB`, `12.5/80 GB` when the use is known, `-`.
fn vram(gpu: &Value) -> String {
    let total = gpu.get("vram_total_gb").and_then(Value::as_f64);
    let used = gpu.get("vram_used_gb").and_then(Value::as_f64);
    match (used, total) {
        (Some(used), Some(total)) => format!("{}/{} GB", gb(used), gb(total)),
        (None, Some(total)) => format!("{} GB", gb(total)),
        (Some(used), None) => format!("{}/? GB", gb(used)),
        (None, None) => "-".to_string(),
    }
}

/// `80`, `12.5`: one decimal at most.
fn gb(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// How long ago a Unix-ms timestamp was: `12s ago`, `3m ago`, `2h ago`,
/// `4d ago`; `-` when absent.
fn ago(v: Option<&Value>, now_ms: i64) -> String {
    let Some(then) = v.and_then(Value::as_i64) else {
        return "-".to_string();
    };
    let secs = (now_ms - then).max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

fn yes_no(v: Option<&Value>) -> String {
    match v.and_then(Value::as_bool) {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
    .to_string()
}

/// A scalar as text; `-` for null or absent.
pub(crate) fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|items| items.iter().map(|i| text(Some(i))).collect())
        .unwrap_or_default()
}

pub(crate) fn dash_if_empty(s: String) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s
    }
}

pub(crate) fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Rows as lines, columns padded to their widest cell, two spaces apart
/// (the last column unpadded, so lines carry no trailing spaces).
pub(crate) fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
                }
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_100_000;

    fn engines() -> Value {
        json!([{
            "name": "gpu-box-1",
            "inventory": "declared",
            "draining": false,
            "cpu_slots": 2,
            "evictions_total": 3,
            "tasks_waiting_for_slot": 1,
            "slots": [
                {"id": 0, "kind": "gpu", "name": "gpus [0]", "running_tasks": 1,
                 "replicas": ["acme/flux#0"],
                 "gpus": [{"index": 0, "name": "NVIDIA H100", "vendor": "nvidia",
                           "vram_total_gb": 80.0, "vram_used_gb": 12.5, "utilization_percent": 40}]},
                {"id": 1, "kind": "gpu", "name": "gpus [2, 3]", "running_tasks": 0,
                 "replicas": [],
                 "gpus": [{"index": 2, "vram_total_gb": 24.0}, {"index": 3, "vram_total_gb": null}]},
                {"id": 2, "kind": "cpu", "name": "cpu 0", "running_tasks": 0,
                 "replicas": [], "gpus": []}
            ]
        }])
    }

    fn workers() -> Value {
        json!([
            {"id": "acme/flux#0", "app": "acme/flux", "slot": "gpus [0]", "pid": 4242,
             "state": "busy", "current_tasks": ["tsk_1"], "warm_since": NOW - 125_000,
             "last_used": NOW - 3_000, "draining": false},
            {"id": "tests/slow#0", "app": "tests/slow", "slot": null, "pid": null,
             "state": "starting", "current_tasks": [], "warm_since": null,
             "last_used": null, "draining": true}
        ])
    }

    #[test]
    fn slots_and_workers_are_tables() {
        let lines = render(&engines(), &workers(), NOW);
        let expected = vec![
            "engine gpu-box-1 (inventory: declared, CPU slots: 2, evictions: 3, waiting for a slot: 1)",
            "SLOT         GPUS  VRAM        REPLICAS     RUNNING  DRAINING",
            "gpus [0]     0     12.5/80 GB  acme/flux#0  1        no",
            "gpus [2, 3]  2,3   24 GB, -    -            0        no",
            "cpu 0        -     -           -            0        no",
            "",
            "WORKER        APP         SLOT      PID   STATE     TASKS  WARM SINCE  LAST USED  DRAINING",
            "acme/flux#0   acme/flux   gpus [0]  4242  busy      tsk_1  2m ago      3s ago     no",
            "tests/slow#0  tests/slow  -         -     starting  -      -           -          yes",
        ];
        assert_eq!(lines, expected);
    }

    #[test]
    fn an_unbounded_engine_without_workers_says_so() {
        let engines = json!([{"name": "box", "inventory": "none", "draining": true,
                              "cpu_slots": null, "evictions_total": 0,
                              "tasks_waiting_for_slot": 0, "slots": []}]);
        let lines = render(&engines, &json!([]), NOW);
        assert_eq!(
            lines,
            vec![
                "engine box (inventory: none, CPU slots: unbounded, evictions: 0, waiting for a slot: 0)",
                "SLOT  GPUS  VRAM  REPLICAS  RUNNING  DRAINING",
                "",
                "no workers",
            ]
        );
        assert_eq!(render(&json!([]), &json!(null), NOW)[0], "no engines");
    }

    #[test]
    fn a_server_without_the_layout_routes_is_said_plainly() {
        let missing = RemoteError::from_response(
            reqwest::StatusCode::NOT_FOUND,
            r#"{"type": "https://infsh.dev/errors/not_found", "status": 404, "detail": "no route for /engines", "resource": "route"}"#,
        );
        let failure = layout_error("http://h:1", missing);
        assert_eq!(failure.code, ExitCode::Server);
        assert_eq!(
            failure.message,
            "the server at http://h:1 does not show its worker layout (GET /v1/engines or /v1/workers: no route for /engines); `infsh engine status` needs an infsh serve that has them"
        );
        let refused = RemoteError::from_response(
            reqwest::StatusCode::UNAUTHORIZED,
            r#"{"detail": "wrong key"}"#,
        );
        assert_eq!(layout_error("http://h:1", refused).code, ExitCode::Auth);
    }

    #[test]
    fn ages_and_sizes_read_short() {
        assert_eq!(ago(Some(&json!(NOW - 59_999)), NOW), "59s ago");
        assert_eq!(ago(Some(&json!(NOW - 7_200_000)), NOW), "2h ago");
        assert_eq!(ago(Some(&json!(NOW - 3 * 86_400_000)), NOW), "3d ago");
        assert_eq!(ago(Some(&json!(NOW + 5_000)), NOW), "0s ago");
        assert_eq!(ago(None, NOW), "-");
        assert_eq!(gb(80.0), "80");
        assert_eq!(gb(0.26), "0.3");
        assert_eq!(vram(&json!({"vram_used_gb": 1.0})), "1/? GB");
    }
}
