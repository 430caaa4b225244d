//! Who may read a stored file's bytes (`GET /files/{id}[/{name}]`, issue
//! 15; docs/security.md "File access"). In order:
//!
//! 1. a server without API keys: anyone (the whole API is open);
//! 2. a file registered `public: true`: anyone;
//! 3. a request with `?sig=`: the signature decides (file_urls.rs); a
//!    tampered one is 403 `invalid_signature`, an expired one 403
//!    `signature_expired`;
//! 4. a request with `Authorization`: an admin key, or a run-time key with
//!    `files:read` of the file's team;
//! 5. anything else: 401, never the bytes.
//!
//! An unknown file and another team's answer the same 404, and only after
//! the request showed a right to some file (a signature or a key), so an
//! anonymous caller learns nothing about which ids exist.

use std::time::SystemTime;

use axum::http::{header, HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::file_urls::SigError;
use crate::problem::Problem;
use crate::scoped_keys::require_scope;
use crate::scopes::Scope;
use crate::state::ServerState;

/// `?sig=` of a download URL.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// The expiring signature the API put in the file's `uri` (needed for
    /// a private file when no key is sent).
    pub sig: Option<String>,
}

/// 403 for a signature that does not open the file.
pub fn signature_problem(e: SigError) -> Problem {
    let code = match e {
        SigError::Expired(_) => "signature_expired",
        SigError::Malformed | SigError::BadSignature => "invalid_signature",
    };
    let problem = Problem::new(StatusCode::FORBIDDEN, code, e.to_string());
    match e {
        SigError::Expired(at) => problem.with("expired_at", at),
        _ => problem,
    }
}

/// The 401 for a private file asked for with neither a signature nor a key.
fn private_file(id: &str) -> Problem {
    Problem::unauthorized(
        format!(
            "file \"{id}\" is private: use the signed URL the API handed out (its `uri`, with ?sig=) \
             or send Authorization: Bearer <key>"
        ),
        false,
    )
}

/// Ok when this request may read file `id`'s bytes; the problem otherwise.
pub async fn check_download(
    state: &ServerState,
    id: &str,
    sig: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Problem> {
    if !state.file_urls.private() {
        return Ok(());
    }
    if state.engine.file_is_public(id).await? {
        return Ok(());
    }
    if let Some(sig) = sig {
        return state
            .file_urls
            .verify(id, sig, SystemTime::now())
            .map_err(signature_problem);
    }
    if !headers.contains_key(header::AUTHORIZATION) {
        return Err(private_file(id));
    }
    let principal = require_scope(&state.keys, &state.engine, headers, Scope::FilesRead).await?;
    crate::teams::check_file(state, &principal, id).await
}
