//! Answers of the operations endpoints: `GET /health` and `GET /ready`.

use infsh_engine::{AppReadiness, AppState};
use serde::Serialize;
use utoipa::ToSchema;

use super::apps::app_state_schema;

/// `GET /health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthDto {
    /// Always `ok` while the process serves.
    pub status: String,
}

/// `GET /ready`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadyDto {
    /// `ready`, or `degraded` when some app is `unhealthy`.
    pub status: String,
    pub apps: Vec<AppReadinessDto>,
}

/// Worker state of one app.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppReadinessDto {
    pub id: String,
    #[schema(schema_with = app_state_schema)]
    pub state: AppState,
    pub replicas: usize,
    pub busy: usize,
    pub queued: usize,
    pub last_error: Option<String>,
}

impl AppReadinessDto {
    pub fn from_readiness(r: &AppReadiness) -> AppReadinessDto {
        AppReadinessDto {
            id: r.id.clone(),
            state: r.state,
            replicas: r.replicas,
            busy: r.busy,
            queued: r.queued,
            last_error: r.last_error.clone(),
        }
    }
}
