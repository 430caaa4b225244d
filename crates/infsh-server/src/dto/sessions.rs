//! Sessions as the API shows them: the official client's `AppSessionDTO`
//! fields (`id`, `app_id`, `app_version_id`, `worker_id`, `status`,
//! `expires_at`, `ended_at`, `task_id`, `call_count`, `last_call_at`,
//! `idle_timeout`), plus `reason` (why it ended or expired).

use infsh_engine::{SessionStatus, SessionView};
use serde::Serialize;
use utoipa::ToSchema;

use super::time::iso8601;

/// A session (`GET /sessions/{id}`): one replica of its app leased to it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppSessionDto {
    /// `sess_…`.
    pub id: String,
    /// The app, `namespace/name`.
    pub app_id: String,
    /// The deployed version the session runs (its content hash; a
    /// session keeps it across a switch); null for an app of `--apps`.
    pub app_version_id: Option<String>,
    /// The replica leased to it (`namespace/name#0`, as `GET /workers`
    /// names it); null until its first call was dispatched.
    pub worker_id: Option<String>,
    /// `active`, `ended` or `expired`.
    #[schema(example = "active")]
    pub status: String,
    /// Why it ended or expired; null while active.
    pub reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// When it expires unless a call or a keepalive comes first (once
    /// over: when it ended).
    pub expires_at: String,
    pub ended_at: Option<String>,
    /// The task that opened it.
    pub task_id: String,
    pub call_count: u64,
    pub last_call_at: Option<String>,
    /// Seconds without a call after which it expires.
    pub idle_timeout: u64,
}

impl From<&SessionView> for AppSessionDto {
    fn from(v: &SessionView) -> AppSessionDto {
        AppSessionDto {
            id: v.id.clone(),
            app_id: v.app.split('@').next().unwrap_or(&v.app).to_string(),
            app_version_id: v.app.split_once('@').map(|(_, hash)| hash.to_string()),
            worker_id: v.worker.clone(),
            status: match v.status {
                SessionStatus::Active => "active",
                SessionStatus::Ended => "ended",
                SessionStatus::Expired => "expired",
            }
            .into(),
            reason: v.reason.clone(),
            created_at: iso8601(v.created_at_ms),
            updated_at: iso8601(v.updated_at_ms),
            expires_at: iso8601(v.expires_at_ms),
            ended_at: v.ended_at_ms.map(iso8601),
            task_id: v.task_id.clone(),
            call_count: v.call_count,
            last_call_at: v.last_call_at_ms.map(iso8601),
            idle_timeout: v.idle_timeout_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_session_reads_as_the_clients_app_session_dto() {
        let view = SessionView {
            id: "sess_1".into(),
            app: "ns/a".into(),
            worker: Some("ns/a#0".into()),
            status: SessionStatus::Ended,
            reason: Some("ended by DELETE /sessions/{id}".into()),
            created_at_ms: 0,
            updated_at_ms: 1000,
            expires_at_ms: 2000,
            ended_at_ms: Some(2000),
            idle_timeout_secs: 60,
            call_count: 3,
            last_call_at_ms: None,
            task_id: "t1".into(),
        };
        assert_eq!(
            serde_json::to_value(AppSessionDto::from(&view)).unwrap(),
            json!({
                "id": "sess_1", "app_id": "ns/a", "app_version_id": null,
                "worker_id": "ns/a#0", "status": "ended",
                "reason": "ended by DELETE /sessions/{id}",
                "created_at": "1970-01-01T00:00:00.000Z",
                "updated_at": "1970-01-01T00:00:01.000Z",
                "expires_at": "1970-01-01T00:00:02.000Z",
                "ended_at": "1970-01-01T00:00:02.000Z",
                "task_id": "t1", "call_count": 3, "last_call_at": null,
                "idle_timeout": 60
            })
        );
    }
}
