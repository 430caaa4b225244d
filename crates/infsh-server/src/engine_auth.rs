//! Engine keys: the `/engine/...` routes (remote engines connecting out to
//! this API node, routes/engine_link.rs) take ONLY the keys given with
//! `--engine-key`/`INFSH_ENGINE_KEYS`, and client routes never take them
//! (the two key sets are disjoint: the CLI refuses a key in both). A
//! refused engine request is logged here as well as on the engine.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::ApiKeys;
use crate::problem::Problem;

/// The accepted engine keys (never empty: without keys the routes are
/// not mounted).
#[derive(Debug, Clone)]
pub struct EngineKeys(pub ApiKeys);

impl EngineKeys {
    /// The 401 for a request without an accepted engine key.
    pub fn check(&self, req: &Request) -> Result<(), Problem> {
        self.0.check(req.headers()).map_err(|p| {
            let detail = p
                .detail
                .replace("API key", "engine key")
                .replace("<key>", "<engine key>");
            Problem::unauthorized(
                detail,
                p.detail != "missing API key: send Authorization: Bearer <key>",
            )
        })
    }
}

pub async fn require_engine_key(
    State(keys): State<Arc<EngineKeys>>,
    req: Request,
    next: Next,
) -> Response {
    match keys.check(&req) {
        Ok(()) => next.run(req).await,
        Err(p) => {
            tracing::warn!(path = %req.uri().path(), detail = %p.detail, "refused an engine request");
            p.into_response()
        }
    }
}
