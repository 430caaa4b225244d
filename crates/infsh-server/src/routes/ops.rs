//! Operations endpoints: `GET /health` (liveness, no auth), `GET /ready`
//! (per-app worker state from `Engine::readiness`), `GET /metrics`
//! (Prometheus text exposition 0.0.4 from `Engine::metrics` and readiness).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::Json;
use infsh_engine::{AppReadiness, AppState, MetricsSnapshot};

use crate::dto::{AppReadinessDto, Envelope, HealthDto, HealthEnvelope, ReadyDto, ReadyEnvelope};
use crate::state::ServerState;

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
        crate::openapi::AuthErrors,
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
        crate::openapi::AuthErrors,
    ),
    security(("bearer" = []))
)]
pub async fn metrics(State(state): State<ServerState>) -> impl IntoResponse {
    let text = render_metrics(&state.engine.metrics(), &state.engine.readiness());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
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

/// The exposition text; names are prefixed `infsh_`.
pub fn render_metrics(m: &MetricsSnapshot, apps: &[AppReadiness]) -> String {
    let mut out = String::new();
    let counters: [(&str, &str, u64); 7] = [
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

    family(
        &mut out,
        "infsh_app_replicas",
        "gauge",
        "Worker processes per app.",
    );
    for a in apps {
        let _ = writeln!(
            out,
            "infsh_app_replicas{{app=\"{}\"}} {}",
            label(&a.id),
            a.replicas
        );
    }
    family(
        &mut out,
        "infsh_app_busy",
        "gauge",
        "Calls running per app.",
    );
    for a in apps {
        let _ = writeln!(out, "infsh_app_busy{{app=\"{}\"}} {}", label(&a.id), a.busy);
    }
    family(
        &mut out,
        "infsh_app_queued",
        "gauge",
        "Tasks waiting per app.",
    );
    for a in apps {
        let _ = writeln!(
            out,
            "infsh_app_queued{{app=\"{}\"}} {}",
            label(&a.id),
            a.queued
        );
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
        let text = render_metrics(&m, &apps);
        assert!(text.contains("infsh_tasks_submitted_total 3\n"));
        assert!(text.contains("infsh_task_duration_seconds_count{app=\"ns/a\\\"b\"} 2\n"));
        assert!(text.contains("infsh_app_state{app=\"ns/a\",state=\"ready\"} 1\n"));
        assert!(text.contains("infsh_app_state{app=\"ns/a\",state=\"idle\"} 0\n"));
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
