//! Operations endpoints: `GET /health` (liveness, no auth), `GET /ready`
//! (per-app worker state from `Engine::readiness`), `GET /metrics`
//! (Prometheus text exposition 0.0.4 from `Engine::metrics`, readiness and
//! the worker layout, `Engine::engine_view`),
//! and `GET /openapi.json` (the fixed document with every hosted app's
//! functions merged in, openapi/functions.rs; apps whose schemas cannot be
//! had, by a load error or discovery slower than [`APP_DISCOVERY_TIMEOUT`],
//! are listed under `x-infsh-unavailable-apps`). The document is served bare
//! (no `{"data":…}` envelope): it is for tools.

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::Json;
use infsh_engine::{AppReadiness, AppState, EngineView, GpuView, MetricsSnapshot};
use serde_json::Value;

use crate::dto::{AppReadinessDto, Envelope, HealthDto, HealthEnvelope, ReadyDto, ReadyEnvelope};
use crate::openapi::functions::document_with_apps;
use crate::openapi::responses::AuthErrors;
use crate::state::ServerState;

/// How long `GET /openapi.json` waits for one app's schemas (its first
/// worker may have to start).
pub const APP_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(20);

/// Liveness: 200 while the process serves. No auth.
#[utoipa::path(
    get, path = "/health", tag = "ops",
    responses((status = 200, description = "Alive", body = HealthEnvelope))
)]
pub async fn health() -> Json<Envelope<HealthDto>> {
    Json(Envelope::new(HealthDto {
        status: "ok".into(),
    }))
}

/// Readiness: each app's worker state. Always 200 while serving (an app
/// that cannot start must not take the others out of rotation); `status` is
/// `degraded` when any app is `unhealthy`.
#[utoipa::path(
    get, path = "/ready", tag = "ops",
    responses(
        (status = 200, description = "Per-app worker state", body = ReadyEnvelope),
        AuthErrors,
    ),
    security(("bearer" = []))
)]
pub async fn ready(State(state): State<ServerState>) -> Json<Envelope<ReadyDto>> {
    let apps = state.engine.readiness();
    let degraded = apps.iter().any(|a| a.state == AppState::Unhealthy);
    Json(Envelope::new(ReadyDto {
        status: if degraded { "degraded" } else { "ready" }.into(),
        apps: apps.iter().map(AppReadinessDto::from_readiness).collect(),
    }))
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain; version=0.0.4", body = String),
        AuthErrors,
    ),
    security(("bearer" = []))
)]
pub async fn metrics(State(state): State<ServerState>) -> impl IntoResponse {
    let mut text = render_metrics(
        &state.engine.metrics(),
        &state.engine.readiness(),
        &state.engine.engine_view(),
    );
    text.push_str(&state.limit_metrics.render());
    text.push_str(&crate::disk_metrics::render_disk(
        &state.engine.disk_usage().await,
    ));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
}

/// This document, with every hosted function's schemas and run path.
#[utoipa::path(
    get, path = "/openapi.json", tag = "ops",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document (not enveloped), hosted functions included", body = Object),
        AuthErrors,
    ),
    security(("bearer" = []))
)]
pub async fn openapi_json(State(state): State<ServerState>) -> Json<Value> {
    let summaries = state.engine.apps();
    let lookups = summaries.iter().map(|s| {
        let engine = state.engine.clone();
        async move {
            let app =
                s.id.parse()
                    .map_err(|e: infsh_core::AppRefError| (s.id.clone(), e.to_string()))?;
            match tokio::time::timeout(APP_DISCOVERY_TIMEOUT, engine.app(&app)).await {
                Ok(Ok(detail)) => Ok(detail),
                Ok(Err(e)) => Err((s.id.clone(), e.to_string())),
                Err(_) => Err((
                    s.id.clone(),
                    format!(
                        "its functions were not known within {}s",
                        APP_DISCOVERY_TIMEOUT.as_secs()
                    ),
                )),
            }
        }
    });
    let mut details = Vec::new();
    let mut unavailable = Vec::new();
    for r in futures_util::future::join_all(lookups).await {
        match r {
            Ok(d) => details.push(d),
            Err(u) => unavailable.push(u),
        }
    }
    details.sort_by(|a, b| a.summary.id.cmp(&b.summary.id));
    Json(document_with_apps(state.openapi, &details, &unavailable))
}

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name} {value}");
}

/// One number of an app's readiness, as a per-app gauge shows it.
type PerAppValue = fn(&AppReadiness) -> usize;

/// One reading of a GPU, as a per-GPU gauge shows it; None: not known
/// (a declared inventory has no readings, NVML may lack one).
type PerGpuValue = fn(&GpuView) -> Option<f64>;

/// Bytes in the GB (10^9) that the views count memory in.
const BYTES_PER_GB: f64 = 1e9;

/// The exposition text; names are prefixed `infsh_`.
pub fn render_metrics(m: &MetricsSnapshot, apps: &[AppReadiness], engine: &EngineView) -> String {
    let mut out = String::new();
    let counters: [(&str, &str, u64); 8] = [
        (
            "infsh_tasks_submitted_total",
            "Tasks accepted by run requests.",
            m.tasks_submitted,
        ),
        (
            "infsh_tasks_completed_total",
            "Tasks that ended COMPLETED.",
            m.tasks_completed,
        ),
        (
            "infsh_tasks_failed_total",
            "Tasks that ended FAILED.",
            m.tasks_failed,
        ),
        (
            "infsh_tasks_cancelled_total",
            "Tasks that ended CANCELLED.",
            m.tasks_cancelled,
        ),
        (
            "infsh_tasks_rejected_queue_full_total",
            "Runs refused with 429 because the app's queue was full.",
            m.tasks_rejected_queue_full,
        ),
        (
            "infsh_workers_started_total",
            "Worker processes started.",
            m.workers_started,
        ),
        (
            "infsh_workers_crashed_total",
            "Worker processes that died unexpectedly.",
            m.workers_crashed,
        ),
        (
            "infsh_evictions_total",
            "Idle replicas stopped to free a slot for another app.",
            engine.evictions_total,
        ),
    ];
    for (name, help, v) in counters {
        family(&mut out, name, "counter", help);
        sample(&mut out, name, v);
    }
    family(
        &mut out,
        "infsh_tasks_queued",
        "gauge",
        "Tasks waiting for a worker.",
    );
    sample(&mut out, "infsh_tasks_queued", m.tasks_queued);
    family(
        &mut out,
        "infsh_tasks_running",
        "gauge",
        "Tasks running now.",
    );
    sample(&mut out, "infsh_tasks_running", m.tasks_running);
    family(
        &mut out,
        "infsh_tasks_waiting_for_slot",
        "gauge",
        "Tasks whose app waits for a slot to free up.",
    );
    sample(
        &mut out,
        "infsh_tasks_waiting_for_slot",
        engine.tasks_waiting_for_slot,
    );

    family(
        &mut out,
        "infsh_task_duration_seconds",
        "summary",
        "Durations of completed tasks, per app.",
    );
    for (app, count, sum) in &m.task_seconds {
        let app = label(app);
        let _ = writeln!(
            out,
            "infsh_task_duration_seconds_count{{app=\"{app}\"}} {count}"
        );
        let _ = writeln!(
            out,
            "infsh_task_duration_seconds_sum{{app=\"{app}\"}} {sum}"
        );
    }

    let per_app: [(&str, &str, PerAppValue); 3] = [
        ("infsh_app_replicas", "Worker processes per app.", |a| {
            a.replicas
        }),
        ("infsh_app_busy", "Calls running per app.", |a| a.busy),
        ("infsh_app_queued", "Tasks waiting per app.", |a| a.queued),
    ];
    for (name, help, value) in per_app {
        family(&mut out, name, "gauge", help);
        for a in apps {
            let _ = writeln!(out, "{name}{{app=\"{}\"}} {}", label(&a.id), value(a));
        }
    }
    family(
        &mut out,
        "infsh_slot_replicas",
        "gauge",
        "Replicas placed on each slot of the worker layout.",
    );
    for slot in &engine.slots {
        let _ = writeln!(
            out,
            "infsh_slot_replicas{{slot=\"{}\"}} {}",
            label(&slot.name),
            slot.replicas.len()
        );
    }
    let per_gpu: [(&str, &str, PerGpuValue); 3] = [
        (
            "infsh_gpu_memory_used_bytes",
            "GPU memory in use (NVML).",
            |g| g.vram_used_gb.map(|gb| (gb * BYTES_PER_GB).round()),
        ),
        (
            "infsh_gpu_memory_total_bytes",
            "GPU memory, detected or declared.",
            |g| g.vram_total_gb.map(|gb| (gb * BYTES_PER_GB).round()),
        ),
        (
            "infsh_gpu_utilization_percent",
            "GPU busy percentage over the last sample (NVML).",
            |g| g.utilization_percent.map(f64::from),
        ),
    ];
    for (name, help, value) in per_gpu {
        family(&mut out, name, "gauge", help);
        for gpu in engine.slots.iter().flat_map(|s| &s.gpus) {
            if let Some(v) = value(gpu) {
                let _ = writeln!(out, "{name}{{gpu=\"{}\"}} {v}", gpu.index);
            }
        }
    }
    family(
        &mut out,
        "infsh_app_state",
        "gauge",
        "1 for the app's current worker state, 0 for the others.",
    );
    for a in apps {
        for s in AppState::ALL {
            let _ = writeln!(
                out,
                "infsh_app_state{{app=\"{}\",state=\"{}\"}} {}",
                label(&a.id),
                s.as_str(),
                u8::from(a.state == s)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use infsh_engine::SlotView;

    fn gpu(index: u32, total: Option<f64>, used: Option<f64>, util: Option<u32>) -> GpuView {
        GpuView {
            index,
            name: format!("GPU {index}"),
            vendor: "nvidia".into(),
            vram_total_gb: total,
            vram_used_gb: used,
            utilization_percent: util,
        }
    }

    /// Two GPU slots: one NVML-read GPU holding a replica, and a pair whose
    /// first GPU has a declared size and whose second has nothing known.
    fn engine() -> EngineView {
        EngineView {
            name: "box".into(),
            inventory: "nvml".into(),
            draining: false,
            cpu_slots: None,
            slots: vec![
                SlotView {
                    id: 0,
                    kind: "gpu".into(),
                    name: "gpus [0]".into(),
                    gpus: vec![gpu(0, Some(80.0), Some(12.5), Some(40))],
                    replicas: vec!["ns/a#0".into()],
                    running_tasks: 1,
                },
                SlotView {
                    id: 1,
                    kind: "gpu".into(),
                    name: "gpus [2, 3]".into(),
                    gpus: vec![gpu(2, Some(24.0), None, None), gpu(3, None, None, None)],
                    replicas: vec![],
                    running_tasks: 0,
                },
            ],
            evictions_total: 4,
            tasks_waiting_for_slot: 2,
        }
    }

    #[test]
    fn renders_the_worker_layout() {
        let text = render_metrics(&MetricsSnapshot::default(), &[], &engine());
        for expected in [
            "# TYPE infsh_evictions_total counter\ninfsh_evictions_total 4\n",
            "# TYPE infsh_tasks_waiting_for_slot gauge\ninfsh_tasks_waiting_for_slot 2\n",
            "# TYPE infsh_slot_replicas gauge\ninfsh_slot_replicas{slot=\"gpus [0]\"} 1\ninfsh_slot_replicas{slot=\"gpus [2, 3]\"} 0\n",
            "# TYPE infsh_gpu_memory_used_bytes gauge\ninfsh_gpu_memory_used_bytes{gpu=\"0\"} 12500000000\n# HELP",
            "# TYPE infsh_gpu_memory_total_bytes gauge\ninfsh_gpu_memory_total_bytes{gpu=\"0\"} 80000000000\ninfsh_gpu_memory_total_bytes{gpu=\"2\"} 24000000000\n# HELP",
            "# TYPE infsh_gpu_utilization_percent gauge\ninfsh_gpu_utilization_percent{gpu=\"0\"} 40\n# HELP",
        ] {
            assert!(text.contains(expected), "{expected}\nnot in:\n{text}");
        }
        // An unknown reading is left out, not shown as 0.
        assert!(!text.contains("{gpu=\"3\"}"), "{text}");
        // No layout (no GPU, CPU apps unbounded): the families, no samples.
        let bare = EngineView {
            slots: vec![],
            evictions_total: 0,
            tasks_waiting_for_slot: 0,
            ..engine()
        };
        let text = render_metrics(&MetricsSnapshot::default(), &[], &bare);
        assert!(
            text.contains("# TYPE infsh_slot_replicas gauge\n# HELP"),
            "{text}"
        );
        assert!(!text.contains("infsh_gpu_memory_total_bytes{"), "{text}");
        assert!(text.contains("infsh_evictions_total 0\n"), "{text}");
    }

    #[test]
    fn renders_valid_exposition() {
        let m = MetricsSnapshot {
            tasks_submitted: 3,
            tasks_completed: 2,
            task_seconds: vec![("ns/a\"b".into(), 2, 0.5)],
            ..Default::default()
        };
        let apps = vec![AppReadiness {
            id: "ns/a".into(),
            state: AppState::Ready,
            replicas: 1,
            busy: 0,
            queued: 0,
            last_error: None,
        }];
        let text = render_metrics(&m, &apps, &engine());
        assert!(text.contains("infsh_tasks_submitted_total 3\n"));
        assert!(text.contains("infsh_task_duration_seconds_count{app=\"ns/a\\\"b\"} 2\n"));
        assert!(text.contains("infsh_app_state{app=\"ns/a\",state=\"ready\"} 1\n"));
        assert!(text.contains("infsh_app_state{app=\"ns/a\",state=\"idle\"} 0\n"));
        for (name, value) in [
            ("infsh_app_replicas", 1),
            ("infsh_app_busy", 0),
            ("infsh_app_queued", 0),
        ] {
            assert!(
                text.contains(&format!(
                    "# TYPE {name} gauge\n{name}{{app=\"ns/a\"}} {value}\n"
                )),
                "{name}"
            );
        }
        for line in text.lines() {
            if line.starts_with('#') {
                assert!(
                    line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                    "{line}"
                );
                continue;
            }
            let (_, value) = line.rsplit_once(' ').expect(line);
            value.parse::<f64>().expect(line);
        }
    }
}
