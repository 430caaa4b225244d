//! Hosted apps: `GET /apps` (every app with its state),
//! `GET /apps/{namespace}/{name}` (its functions with their input and
//! output schemas, i.e. `functions_schema.json`, and its setup schema), and
//! `POST /apps/{namespace}/{name}/drain` / `.../undrain` (hold the app's
//! tasks in its queue, or let them start again). The detail may start the
//! app's first worker to discover its functions.

use axum::extract::State;
use axum::Json;
use infsh_core::AppRef;
use infsh_engine::EngineError;

use crate::dto::{
    AppDetailDto, AppDetailEnvelope, AppDrainDto, AppDrainEnvelope, AppDto, AppListEnvelope,
    Envelope,
};
use crate::extract::ApiPath;
use crate::problem::Problem;
use crate::state::ServerState;

/// List hosted apps, sorted by id: this node's and those of remote
/// engines (with their content hash and hosting engines; `conflict` marks an
/// engine whose hash is not the one served).
#[utoipa::path(
    get, path = "/apps", tag = "apps",
    responses(
        (status = 200, description = "Every hosted app", body = AppListEnvelope),
        crate::openapi::responses::AuthErrors,
    ),
    security(("bearer" = []))
)]
pub async fn list_apps(
    State(state): State<ServerState>,
) -> Result<Json<Envelope<Vec<AppDto>>>, Problem> {
    let mut apps: Vec<AppDto> = state
        .engine
        .apps()
        .iter()
        .map(AppDto::from_summary)
        .collect();
    for remote in state.engine.remote_apps().await? {
        // A run goes to this node's own workers when it hosts the app: the
        // local entry stays, naming the engines beside it.
        match apps.iter_mut().find(|a| a.id == remote.summary.id) {
            Some(local) => local.add_engines(&remote),
            None => apps.push(AppDto::from_remote(&remote)),
        }
    }
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(Envelope::new(apps)))
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
        crate::openapi::responses::AppErrors,
    ),
    security(("bearer" = []))
)]
pub async fn get_app(
    State(state): State<ServerState>,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
) -> Result<Json<Envelope<AppDetailDto>>, Problem> {
    // A path naming no possible app is an app that does not exist.
    let app = AppRef::new(&namespace, &name).map_err(|_| unknown_app(&state, &namespace, &name))?;
    let detail = state.engine.app(&app).await?;
    Ok(Json(Envelope::new(AppDetailDto::from_detail(&detail))))
}

/// Stop starting the app's tasks: new runs are accepted and queued, running
/// tasks finish, reads keep working. Idempotent.
#[utoipa::path(
    post, path = "/apps/{namespace}/{name}/drain", tag = "apps",
    params(
        ("namespace" = String, Path, description = "App namespace"),
        ("name" = String, Path, description = "App name"),
    ),
    responses(
        (status = 200, description = "The app, now draining", body = AppDrainEnvelope),
        crate::openapi::responses::DrainAppErrors,
    ),
    security(("bearer" = []))
)]
pub async fn drain_app(
    State(state): State<ServerState>,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
) -> Result<Json<Envelope<AppDrainDto>>, Problem> {
    let app = AppRef::new(&namespace, &name).map_err(|_| unknown_app(&state, &namespace, &name))?;
    state.engine.drain_app(&app).await?;
    Ok(Json(Envelope::new(AppDrainDto {
        id: format!("{namespace}/{name}"),
        draining: true,
    })))
}

/// Let the app's queued tasks start again. Idempotent.
#[utoipa::path(
    post, path = "/apps/{namespace}/{name}/undrain", tag = "apps",
    params(
        ("namespace" = String, Path, description = "App namespace"),
        ("name" = String, Path, description = "App name"),
    ),
    responses(
        (status = 200, description = "The app, taking tasks again", body = AppDrainEnvelope),
        crate::openapi::responses::DrainAppErrors,
    ),
    security(("bearer" = []))
)]
pub async fn undrain_app(
    State(state): State<ServerState>,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
) -> Result<Json<Envelope<AppDrainDto>>, Problem> {
    let app = AppRef::new(&namespace, &name).map_err(|_| unknown_app(&state, &namespace, &name))?;
    state.engine.undrain_app(&app).await?;
    Ok(Json(Envelope::new(AppDrainDto {
        id: format!("{namespace}/{name}"),
        draining: false,
    })))
}

/// The 404 of a path `/apps/{namespace}/{name}...` that no app reference
/// can spell (`..`, a control character...): no such app, as for any other
/// name that is not hosted, rather than a 400 about the name's spelling.
pub(crate) fn unknown_app(state: &ServerState, namespace: &str, name: &str) -> Problem {
    EngineError::UnknownApp {
        app: format!("{namespace}/{name}"),
        available: state.engine.apps().into_iter().map(|a| a.id).collect(),
    }
    .into()
}
