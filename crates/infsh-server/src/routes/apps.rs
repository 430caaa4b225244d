//! Hosted apps: `GET /apps` (every app with its state) and
//! `GET /apps/{namespace}/{name}` (its functions with their input and
//! output schemas, i.e. `functions_schema.json`, and its setup schema).
//! The detail may start the app's first worker to discover its functions.

use axum::extract::State;
use axum::Json;

use crate::dto::{AppDetailDto, AppDetailEnvelope, AppDto, AppListEnvelope, Envelope};
use crate::extract::ApiPath;
use crate::problem::Problem;
use crate::state::AppState;

/// List hosted apps, sorted by id.
#[utoipa::path(
    get, path = "/apps", tag = "apps",
    responses(
        (status = 200, description = "Every hosted app", body = AppListEnvelope),
        crate::openapi::AuthErrors,
    ),
    security(("bearer" = []))
)]
pub async fn list_apps(State(state): State<AppState>) -> Json<Envelope<Vec<AppDto>>> {
    Json(Envelope::new(
        state
            .engine
            .apps()
            .iter()
            .map(AppDto::from_summary)
            .collect(),
    ))
}

/// One app with its functions' schemas.
#[utoipa::path(
    get, path = "/apps/{namespace}/{name}", tag = "apps",
    params(
        ("namespace" = String, Path, description = "App namespace"),
        ("name" = String, Path, description = "App name"),
    ),
    responses(
        (status = 200, description = "The app, its functions and their schemas", body = AppDetailEnvelope),
        crate::openapi::AppErrors,
    ),
    security(("bearer" = []))
)]
pub async fn get_app(
    State(state): State<AppState>,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
) -> Result<Json<Envelope<AppDetailDto>>, Problem> {
    let detail = state.engine.app(&format!("{namespace}/{name}")).await?;
    Ok(Json(Envelope::new(AppDetailDto::from_detail(&detail))))
}
