//! `POST /apikeys`, `POST /apikeys/list`, `DELETE /apikeys/{id}`: keys
//! created at run time (the platform's routes). All need `apikeys:write`
//! (admin keys have it). A scoped key manages its own team's keys only, and
//! cannot give a key a scope it lacks itself: no key can mint a stronger one.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use infsh_engine::NewApiKey;
use infsh_store::now_ms;

use crate::dto::{ApiKeyDto, ApiKeyEnvelope, ApiKeyListEnvelope, CreateKeyBody, Envelope};
use crate::extract::{ApiJson, ApiPath};
use crate::openapi::responses::KeyErrors;
use crate::problem::Problem;
use crate::scoped_keys::Principal;
use crate::scopes::Scope;
use crate::state::ServerState;

/// The team of keys made without one.
pub use crate::teams::DEFAULT_TEAM;
/// The longest `expires_in_seconds` (100 years): its end must fit a timestamp.
const MAX_EXPIRY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Create a key. The answer holds the key once; only its digest is stored.
#[utoipa::path(
    post, path = "/apikeys", tag = "apikeys",
    request_body = CreateKeyBody,
    responses(
        (status = 201, description = "The key, with `key` (shown this once)", body = ApiKeyEnvelope),
        KeyErrors,
    ),
    security(("bearer" = []))
)]
pub async fn create_key(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<CreateKeyBody>,
) -> Result<(StatusCode, Json<Envelope<ApiKeyDto>>), Problem> {
    let name = body.name.trim();
    if name.is_empty() {
        return Err(Problem::bad_request("name: must not be empty"));
    }
    let mut scopes: Vec<Scope> = Vec::new();
    for s in &body.scopes {
        let Some(scope) = Scope::parse(s.trim()) else {
            let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            return Err(Problem::bad_request(format!(
                "unknown scope \"{s}\"; scopes are: {}",
                known.join(", ")
            )));
        };
        if !principal.has(scope) {
            return Err(Problem::insufficient_scope(Some(scope.as_str())));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let team = match (&principal, body.team.as_deref().map(str::trim)) {
        (Principal::Admin, Some(t)) if !t.is_empty() => t.to_string(),
        (Principal::Admin, _) => DEFAULT_TEAM.to_string(),
        (Principal::Key(k), None) => k.team.clone(),
        (Principal::Key(k), Some(t)) if t == k.team => k.team.clone(),
        (Principal::Key(_), Some(_)) => return Err(Problem::insufficient_scope(None)),
    };
    let expires_at_ms = match body.expires_in_seconds {
        None => None,
        Some(0) => {
            return Err(Problem::bad_request(
                "expires_in_seconds: must be at least 1",
            ))
        }
        Some(s) => Some(now_ms() + Duration::from_secs(s).min(MAX_EXPIRY).as_millis() as i64),
    };
    let created = state
        .engine
        .create_api_key(NewApiKey {
            name: name.to_string(),
            scopes: scopes.iter().map(|s| s.as_str().to_string()).collect(),
            team,
            expires_at_ms,
        })
        .await?;
    let mut dto = ApiKeyDto::from_record(&created.record);
    dto.key = Some(created.key);
    Ok((StatusCode::CREATED, Json(Envelope::new(dto))))
}

/// Every key (a scoped key: its team's), oldest first; never the keys.
#[utoipa::path(
    post, path = "/apikeys/list", tag = "apikeys",
    responses(
        (status = 200, description = "The keys", body = ApiKeyListEnvelope),
        KeyErrors,
    ),
    security(("bearer" = []))
)]
pub async fn list_keys(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Envelope<Vec<ApiKeyDto>>>, Problem> {
    let keys = state.engine.list_api_keys().await?;
    let visible = keys
        .iter()
        .filter(|k| match &principal {
            Principal::Admin => true,
            Principal::Key(me) => me.team == k.team,
        })
        .map(ApiKeyDto::from_record)
        .collect();
    Ok(Json(Envelope::new(visible)))
}

/// Revoke a key: from now on it gets 401 `API key revoked`, on every node.
#[utoipa::path(
    delete, path = "/apikeys/{id}", tag = "apikeys",
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "The key, revoked", body = ApiKeyEnvelope),
        KeyErrors,
    ),
    security(("bearer" = []))
)]
pub async fn revoke_key(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<ApiKeyDto>>, Problem> {
    if let Principal::Key(me) = &principal {
        // Another team's key is unknown to this one (404, not 403).
        let keys = state.engine.list_api_keys().await?;
        if !keys.iter().any(|k| k.id == id && k.team == me.team) {
            return Err(infsh_engine::EngineError::UnknownApiKey(id).into());
        }
    }
    let record = state.engine.revoke_api_key(&id).await?;
    Ok(Json(Envelope::new(ApiKeyDto::from_record(&record))))
}
