//! The answer of `DELETE /sessions/{id}`.

use serde::Serialize;
use utoipa::ToSchema;

/// `DELETE /sessions/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionDto {
    pub session_id: String,
    /// Always `ended`.
    pub status: String,
}
