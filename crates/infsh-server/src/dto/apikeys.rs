//! API keys created at run time, as `POST /apikeys`, `POST /apikeys/list`
//! and `DELETE /apikeys/{id}` show them. The key itself only in the answer
//! that created it; the stored digest never.

use infsh_store::ApiKeyRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::time::iso8601;

/// `POST /apikeys`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// A label (`ci`); not unique.
    pub name: String,
    /// What the key may do: `apps:read`, `apps:execute`, `files:read`,
    /// `files:write`, `tasks:read`, `tasks:write`, `engines:read`,
    /// `engines:write`, `apikeys:write`.
    pub scopes: Vec<String>,
    /// Seconds until it expires; absent: never.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub expires_in_seconds: Option<u64>,
    /// Its team (admin keys only; default `default`). A key with
    /// `apikeys:write` makes keys of its own team.
    #[serde(default)]
    pub team: Option<String>,
}

/// A key created at run time.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ApiKeyDto {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub team: String,
    /// ISO-8601 UTC.
    pub created_at: String,
    /// ISO-8601 UTC; null: never.
    pub expires_at: Option<String>,
    /// ISO-8601 UTC; null: not revoked.
    pub revoked_at: Option<String>,
    /// The key: only in the answer of `POST /apikeys`, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl ApiKeyDto {
    pub fn from_record(r: &ApiKeyRecord) -> ApiKeyDto {
        ApiKeyDto {
            id: r.id.clone(),
            name: r.name.clone(),
            scopes: r.scopes.clone(),
            team: r.team.clone(),
            created_at: iso8601(r.created_at_ms),
            expires_at: r.expires_at_ms.map(iso8601),
            revoked_at: r.revoked_at_ms.map(iso8601),
            key: None,
        }
    }
}
