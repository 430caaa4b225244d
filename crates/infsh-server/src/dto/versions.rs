//! App versions as the API shows them (`GET /apps/{ns}/{name}/versions`).

use infsh_engine::VersionView;
use serde::Serialize;
use utoipa::ToSchema;

use super::time::iso8601;

/// One deployed version of an app.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppVersionDto {
    /// The content hash of its package (hex SHA-256): what `@VERSION`
    /// names (any prefix of at least 4 digits that only it has).
    pub id: String,
    /// The first 12 digits of `id`, as the CLI shows it.
    pub short_id: String,
    /// `namespace/name`.
    pub app_id: String,
    /// `building`, `ready` or `failed`.
    #[schema(example = "ready")]
    pub status: String,
    /// Whether runs naming the app without a version get this one.
    pub current: bool,
    /// Why the build or the import failed (the traceback included).
    pub error: Option<String>,
    pub size_bytes: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&VersionView> for AppVersionDto {
    fn from(v: &VersionView) -> AppVersionDto {
        AppVersionDto {
            id: v.id.clone(),
            short_id: v.short.clone(),
            app_id: v.app.clone(),
            status: v.status.as_str().to_string(),
            current: v.current,
            error: v.error.clone(),
            size_bytes: v.size_bytes,
            created_at: iso8601(v.created_at_ms),
            updated_at: iso8601(v.updated_at_ms),
        }
    }
}
