//! Handlers, one file per resource. Each handler parses its request into
//! engine types, calls the engine, and renders DTOs (`dto/`); failures go
//! through problem.rs. Every handler carries a `#[utoipa::path]`, gathered
//! here into [`Operations`] for the OpenAPI document (openapi/).

use std::sync::OnceLock;

use serde_json::Value;
use utoipa::OpenApi;

use crate::openapi::document;

pub mod apikeys;
pub mod apps;
pub mod byte_range;
pub mod engine_files;
pub mod engine_link;
pub mod engine_versions;
pub mod engines;
pub mod file_records;
pub mod file_uri;
pub mod files;
pub mod ops;
pub mod runs;
pub mod sessions;
pub mod stream;
pub mod stream_delta;
pub mod task_delete;
pub mod task_status;
pub mod tasks;
pub mod versions;

/// Every documented operation (and, through them, the DTO schemas): the
/// part of the fixed document that comes from the handlers.
#[derive(OpenApi)]
#[openapi(paths(
    runs::run_app,
    runs::run_alias,
    runs::run_function,
    sessions::list_sessions,
    sessions::get_session,
    sessions::keepalive_session,
    sessions::end_session,
    tasks::list_tasks,
    tasks::get_task,
    tasks::cancel_task,
    task_status::task_status,
    task_delete::delete_task,
    task_delete::task_files,
    task_delete::delete_task_files,
    stream::stream_task,
    files::create_files,
    files::upload_file,
    files::download_file,
    files::download_named_file,
    file_records::list_files,
    file_records::delete_file,
    apps::list_apps,
    apps::get_app,
    apps::drain_app,
    apps::undrain_app,
    versions::deploy_version,
    versions::list_versions,
    versions::activate_version,
    versions::remove_version,
    engines::list_engines,
    engines::list_workers,
    engines::drain_engine,
    engines::undrain_engine,
    ops::health,
    ops::ready,
    ops::metrics,
    ops::openapi_json,
    apikeys::create_key,
    apikeys::list_keys,
    apikeys::revoke_key,
))]
pub struct Operations;

/// The fixed document (docs/openapi.json), computed once. Handlers get it
/// through `ServerState::openapi`: `GET /openapi.json` is one of the
/// operations it lists.
pub fn fixed_document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| document::build(Operations::openapi()))
}
