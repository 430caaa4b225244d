//! Extractors whose rejections are problem JSON (never axum's plain text):
//! [`ApiJson`] for JSON bodies, [`ApiQuery`] for query strings, [`ApiPath`]
//! for path parameters. The mapping itself lives in problem.rs.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::body_limits::{declared_length, too_large, BodyLimits};
use crate::problem::Problem;

/// A JSON body: 415 without a JSON content type, 400 on bad syntax or
/// shape, 413 over the body limit.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        // The router puts the limit in every request (lib.rs); a declared
        // length past it is refused before a byte of the body is read.
        let limit = req.extensions().get::<BodyLimits>().map(|l| l.json);
        if let Some(limit) = limit {
            if declared_length(req.headers()).is_some_and(|n| n > limit.bytes) {
                return Err(too_large("JSON body", limit));
            }
        }
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            // Chunked (or lying) bodies trip the same limit while read
            // (`DefaultBodyLimit` is set to it), and are not read further.
            Err(JsonRejection::BytesRejection(r))
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE && limit.is_some() =>
            {
                Err(too_large("JSON body", limit.expect("checked")))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A query string: 400 when it does not parse.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Query(v) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(v))
    }
}

/// Path parameters: 400 when one does not decode (`%FF` is not UTF-8).
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Path(v) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(v))
    }
}
