//! Keys created at run time: who a request is ([`Principal`]), found from
//! its Bearer key. Admin keys (`--api-key`, `INFSH_API_KEYS`,
//! `--api-keys-file`) are in memory (auth.rs); other keys are looked up in
//! the store by their SHA-256 digest (so every API node sharing the store
//! knows them), the stored digest compared again in constant time. A
//! revoked or expired key is 401; a key without the route's scope 403
//! `insufficient_scope` naming it (scopes.rs has the table).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use infsh_engine::{api_key_digest, Engine};
use infsh_store::now_ms;
use subtle::ConstantTimeEq;

use crate::auth::{presented_token, ApiKeys};
use crate::problem::Problem;
use crate::scopes::{needs, Needs, Scope};

/// Who sent an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An admin key, or any request of a server without keys: every scope,
    /// every team.
    Admin,
    Key(ScopedKey),
}

/// A key created at run time, as a request presented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedKey {
    pub id: String,
    pub scopes: Vec<Scope>,
    pub team: String,
}

impl ScopedKey {
    /// Ok when the key may call `method path` (the matched route).
    pub fn allows(&self, method: &Method, path: &str) -> Result<(), Problem> {
        match needs(method, path) {
            Needs::Scope(s) if self.scopes.contains(&s) => Ok(()),
            Needs::Scope(s) => Err(Problem::insufficient_scope(Some(s.as_str()))),
            Needs::Admin => Err(Problem::insufficient_scope(None)),
        }
    }
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Key(k) => k.scopes.contains(&scope),
        }
    }
}

/// The auth middleware's state: the admin keys and the engine (for the
/// stored keys).
pub struct KeyAuth {
    pub keys: Arc<ApiKeys>,
    pub engine: Engine,
}

impl KeyAuth {
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Problem> {
        if self.keys.is_open() {
            return Ok(Principal::Admin);
        }
        let token = presented_token(headers)?;
        if self.keys.matches(token) {
            return Ok(Principal::Admin);
        }
        let digest = api_key_digest(token);
        let invalid = || Problem::unauthorized("invalid API key", true);
        let Some(record) = self.engine.api_key_by_digest(&digest).await? else {
            return Err(invalid());
        };
        if !bool::from(record.key_hash.as_bytes().ct_eq(digest.as_bytes())) {
            return Err(invalid());
        }
        if record.revoked_at_ms.is_some() {
            return Err(Problem::unauthorized("API key revoked", true));
        }
        if record.expires_at_ms.is_some_and(|at| at <= now_ms()) {
            return Err(Problem::unauthorized("API key expired", true));
        }
        Ok(Principal::Key(ScopedKey {
            id: record.id,
            // A scope this build does not know gives nothing.
            scopes: record
                .scopes
                .iter()
                .filter_map(|s| Scope::parse(s))
                .collect(),
            team: record.team,
        }))
    }
}

/// For a handler on a public route that checks keys itself (the file
/// record and delete on `/files/{id}`, the download URL): the request's
/// key must be an admin key or a run-time key with `scope`.
pub async fn require_scope(
    keys: &Arc<ApiKeys>,
    engine: &Engine,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Principal, Problem> {
    let auth = KeyAuth {
        keys: keys.clone(),
        engine: engine.clone(),
    };
    match auth.authenticate(headers).await? {
        Principal::Key(key) if !key.scopes.contains(&scope) => {
            Err(Problem::insufficient_scope(Some(scope.as_str())))
        }
        p => Ok(p),
    }
}

/// Middleware guarding the authenticated routes: an admin key (flags,
/// environment, keys file) passes; so does a key created at run time
/// (scoped_keys.rs) that is neither revoked nor expired and has the scope
/// the matched route needs (scopes.rs). Attaches the request's
/// [`ClientId`] for the per-client limits and its [`Principal`] for the
/// handlers that care (the key routes).
pub async fn require_key(
    State(auth): State<Arc<KeyAuth>>,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = match auth.authenticate(req.headers()).await {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    if let Principal::Key(key) = &principal {
        let path = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        if let Err(p) = key.allows(req.method(), &path) {
            return p.into_response();
        }
    }
    let client = auth.keys.client_id(&req);
    req.extensions_mut().insert(client);
    req.extensions_mut().insert(principal);
    next.run(req).await
}
