//! infsh serve's HTTP API: routes → the engine. Compatible with the
//! inference.sh API as its official Python client speaks it
//! (docs/client-wire-notes.md); every endpoint, shape and error is listed in
//! docs/http-api.md, and the OpenAPI document is docs/openapi.json.
//!
//! This file assembles the router and serves it:
//! - path normalization BEFORE routing: repeated slashes collapse (`//apps/run`,
//!   sent when a client's base URL ends in `/`), a trailing slash is dropped,
//!   and a leading `/v1` is stripped, so every route also answers under
//!   `/v1/` (the seed's `POST /v1/run` is `POST /run`);
//! - authenticated routes behind auth.rs, public ones (`/health`,
//!   `GET /files/{id}`, the signed upload `PUT`, the playground page at `/`
//!   and its assets under `/_playground/`) outside it;
//! - the body limit, problem-JSON fallbacks for unknown routes (404) and
//!   methods (405), panics as 500 problems;
//! - graceful shutdown that also ends streams and `wait=true` runs, which
//!   would otherwise keep connections open forever;
//! - the connection limits (limits.rs): the accept loop and connection
//!   timeouts in listener/, `--rate-limit` on the run routes
//!   (rate_limit.rs), the stream caps (stream_slots.rs).
//!
//! CONTRACT NOTE: the CLI's `serve` command calls exactly [`ServerConfig`]
//! and [`serve`]; keep them stable.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Uri;
use axum::routing::{delete, get, post, put};
use axum::Router;
use infsh_engine::Engine;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

mod auth;
mod body_limits;
mod client_id;
mod cors;
mod disk_metrics;
mod dto;
mod engine_auth;
mod extract;
mod file_access;
mod file_urls;
/// The bodies of the cargo-fuzz targets in `fuzz/` (feature `fuzzing`; not
/// an API).
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod limit_metrics;
mod limits;
mod listener;
mod openapi;
mod playground;
mod problem;
mod rate_limit;
mod routes;
mod scoped_keys;
mod scopes;
mod state;
mod stream_slots;
mod teams;
mod tokens;

#[doc(hidden)]
pub use file_urls::file_signature;
pub use limits::Limits;
pub use listener::fd_limit::{default_max_connections, raise_fd_limit, FdLimits};
pub use state::{StreamTiming, DEFAULT_DELTA_WINDOW};
#[doc(hidden)]
pub use tokens::upload_token;

use limit_metrics::LimitMetrics;
use rate_limit::RunLimiter;
use routes::{
    apikeys, apps, engine_files, engine_link, engine_versions, engines, file_records, files, ops,
    runs, sessions, stream, task_delete, task_status, tasks, versions,
};
use state::ServerState;
use stream_slots::StreamSlots;

/// The fixed OpenAPI document exactly as committed in docs/openapi.json.
pub fn openapi_fixed_json() -> String {
    openapi::document::committed_json(routes::fixed_document())
}

/// HTTP-level settings (the engine has its own).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Accepted Bearer keys. Empty: no auth (allowed on loopback binds only,
    /// unless `insecure`).
    pub api_keys: Vec<String>,
    /// Allow serving without keys on a non-loopback bind.
    pub insecure: bool,
    /// Largest accepted request body of any kind: a cap over
    /// [`Limits::max_json_bytes`] and [`Limits::max_upload_bytes`]
    /// (`--max-body-mib`; `usize::MAX` for none).
    pub max_body_bytes: usize,
    /// How long a signed upload URL stays valid.
    pub upload_token_ttl: Duration,
    /// How long a signed file download URL (`?sig=`) stays valid
    /// (`--file-url-ttl`, default 7 days).
    pub file_url_ttl: Duration,
    /// Key for signing upload tokens and file URLs (`--signing-secret`, or
    /// persisted in the data dir by the CLI; API nodes sharing a store need
    /// the same). Empty: a random one for this process.
    pub signing_key: Vec<u8>,
    /// Answer `wait` runs with a `Server-Timing` header: where the task's
    /// time went inside the server, stage by stage (`StageTimes`).
    pub server_timing: bool,
    /// Keys remote engines present on `/engine/...` (and only there).
    /// Empty: those routes are not served. The engine must also have
    /// [`Engine::enable_fleet`] called.
    pub engine_keys: Vec<String>,
    /// Connection timeouts and caps, run rate and stream caps.
    pub limits: Limits,
    /// Browser origins allowed to call the API (`--cors-origin`, cors.rs).
    /// Empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// A task stream sends a delta client at most one delta line per this
    /// long (`--stream-delta-window-ms`, [`state::DEFAULT_DELTA_WINDOW`]):
    /// [`StreamTiming::delta_window`] of [`serve`] and [`router`] (the
    /// `*_with_timing` variants take the whole timing instead).
    pub stream_delta_window: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("refusing to serve without API keys on non-loopback address {0}; pass --api-key/INFSH_API_KEYS or --insecure")]
    KeysRequired(std::net::SocketAddr),
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the API on `listener` until `shutdown` resolves, then stops
/// accepting and returns (the caller then shuts the engine down).
///
/// Open task streams and `wait=true` runs end when `shutdown` resolves (a
/// stream just ends; the client reconciles with `GET /tasks/{id}`), so the
/// graceful shutdown does not wait on tasks.
pub async fn serve(
    engine: Engine,
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let timing = StreamTiming::with_delta_window(config.stream_delta_window);
    serve_with_timing(engine, config, timing, listener, shutdown).await
}

/// [`serve`] with other stream heartbeat/snapshot intervals (tests).
#[doc(hidden)]
pub async fn serve_with_timing(
    engine: Engine,
    config: ServerConfig,
    timing: StreamTiming,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = listener.local_addr()?;
    if config.api_keys.is_empty() && !config.insecure && !addr.ip().is_loopback() {
        return Err(ServerError::KeysRequired(addr));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = config.limits.clone();
    let metrics = Arc::new(LimitMetrics::default());
    let app = build(engine, config, timing, stop_rx, metrics.clone());
    tracing::info!(%addr, "serving the HTTP API");
    listener::serve(listener, app, limits, metrics, shutdown, stop_tx).await;
    Ok(())
}

/// The full router (for tests and embedding). Streams and waits it serves
/// end only with their tasks: use [`serve`] for graceful shutdown.
pub fn router(engine: Engine, config: ServerConfig) -> Router {
    let timing = StreamTiming::with_delta_window(config.stream_delta_window);
    router_with_timing(engine, config, timing)
}

/// [`router`] with other stream heartbeat/snapshot intervals (tests).
#[doc(hidden)]
pub fn router_with_timing(engine: Engine, config: ServerConfig, timing: StreamTiming) -> Router {
    // Nobody can send: routers built here never signal shutdown.
    let (_tx, rx) = watch::channel(false);
    build(engine, config, timing, rx, Arc::default())
}

fn build(
    engine: Engine,
    config: ServerConfig,
    timing: StreamTiming,
    shutdown: watch::Receiver<bool>,
    limit_metrics: Arc<LimitMetrics>,
) -> Router {
    let limits = &config.limits;
    let body_limits = body_limits::BodyLimits::new(limits, config.max_body_bytes);
    let signer = tokens::UploadSigner::new(&config.signing_key, config.upload_token_ttl);
    let keys = Arc::new(auth::ApiKeys::new(&config.api_keys));
    let file_urls = file_urls::FileUrls::new(
        signer.key(),
        config.file_url_ttl,
        &engine.config().public_url,
        // Without keys the whole API is open: files too.
        !keys.is_open(),
    );
    let state = ServerState {
        engine,
        keys,
        signer: Arc::new(signer),
        file_urls: Arc::new(file_urls),
        timing,
        shutdown,
        openapi: routes::fixed_document(),
        server_timing: config.server_timing,
        stream_slots: Arc::new(StreamSlots::new(
            limits.streams_per_task,
            limits.streams_per_client,
            limit_metrics.clone(),
        )),
        limit_metrics: limit_metrics.clone(),
        body_limits,
    };
    let run_limiter = Arc::new(RunLimiter::new(limits.runs_per_minute, limit_metrics));

    // Only the routes added before `route_layer` are rate limited.
    let authenticated = Router::new()
        .route("/apps/run", post(runs::run_app))
        .route("/run", post(runs::run_alias))
        .route(
            "/apps/{namespace}/{name}/functions/{function}/run",
            post(runs::run_function),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            run_limiter,
            rate_limit::limit_runs,
        ))
        .route("/sessions", get(sessions::list_sessions))
        .route(
            "/sessions/{id}",
            get(sessions::get_session).delete(sessions::end_session),
        )
        .route(
            "/sessions/{id}/keepalive",
            post(sessions::keepalive_session),
        )
        .route("/tasks", get(tasks::list_tasks))
        .route(
            "/tasks/{id}",
            get(tasks::get_task).delete(task_delete::delete_task),
        )
        .route("/tasks/{id}/status", get(task_status::task_status))
        .route(
            "/tasks/{id}/files",
            get(task_delete::task_files).delete(task_delete::delete_task_files),
        )
        .route("/tasks/{id}/cancel", post(tasks::cancel_task))
        .route("/tasks/{id}/stream", get(stream::stream_task))
        .route(
            "/files",
            post(files::create_files).get(file_records::list_files),
        )
        .route("/apps", get(apps::list_apps))
        .route("/apps/{namespace}/{name}", get(apps::get_app))
        .route("/apps/{namespace}/{name}/drain", post(apps::drain_app))
        .route("/apps/{namespace}/{name}/undrain", post(apps::undrain_app))
        .route(
            "/apps/{namespace}/{name}/versions",
            post(versions::deploy_version).get(versions::list_versions),
        )
        .route(
            "/apps/{namespace}/{name}/versions/{id}/current",
            put(versions::activate_version),
        )
        .route(
            "/apps/{namespace}/{name}/versions/{id}",
            delete(versions::remove_version),
        )
        .route("/engines", get(engines::list_engines))
        .route("/engines/{name}/drain", post(engines::drain_engine))
        .route("/engines/{name}/undrain", post(engines::undrain_engine))
        .route("/workers", get(engines::list_workers))
        .route("/openapi.json", get(ops::openapi_json))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/apikeys", post(apikeys::create_key))
        .route("/apikeys/list", post(apikeys::list_keys))
        .route("/apikeys/{id}", delete(apikeys::revoke_key))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(scoped_keys::KeyAuth {
                keys: state.keys.clone(),
                engine: state.engine.clone(),
            }),
            scoped_keys::require_key,
        ));

    // Remote engines: their own keys, never a client's.
    let engine_link = if config.engine_keys.is_empty() {
        Router::new()
    } else {
        let keys = Arc::new(engine_auth::EngineKeys(auth::ApiKeys::new(
            &config.engine_keys,
        )));
        Router::new()
            .route("/engine/register", post(engine_link::register))
            .route("/engine/claim", post(engine_link::claim))
            .route("/engine/heartbeat", post(engine_link::heartbeat))
            .route("/engine/tasks/{id}/report", post(engine_link::report))
            .route("/engine/files", post(engine_files::upload))
            .route(
                "/engine/versions/{namespace}/{name}/{hash}/package",
                get(engine_versions::package),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                keys,
                engine_auth::require_engine_key,
            ))
    };

    // No API key: liveness, and files whose id or token is the capability.
    let public = Router::new()
        .route("/health", get(ops::health))
        .route(
            "/files/{id}",
            get(files::download_file)
                .put(files::upload_file)
                // Checks the key itself: the route is the public download's.
                .delete(file_records::delete_file),
        )
        .route("/files/{id}/{filename}", get(files::download_named_file))
        // The web playground's page and assets: they hold no data (the page
        // fetches everything from the API with the user's key).
        .merge(playground::routes());

    let routes = authenticated
        .merge(engine_link)
        .merge(public)
        .fallback(problem::route_not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        // Bodies read whole (JSON) stop at the JSON limit; uploads stream
        // and check theirs as they go (routes/files.rs).
        .layer(DefaultBodyLimit::max(
            usize::try_from(body_limits.json.bytes).unwrap_or(usize::MAX),
        ))
        .layer(axum::Extension(body_limits))
        .layer(CatchPanicLayer::custom(problem::panic_response))
        .with_state(state);

    // Routing happens inside `routes`, after the URI was normalized here
    // (a layer on `routes` itself would run after routing).
    let app = Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::map_request(normalize_request));
    // Outside auth: a browser's preflight carries no key.
    let app = match cors::layer(&config.cors_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(TraceLayer::new_for_http())
}

async fn normalize_request(mut req: Request) -> Request {
    if let Some(path) = normalize_path(req.uri().path()) {
        let mut parts = req.uri().clone().into_parts();
        let pq = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// The routed form of `path`, or None when it is already normal:
/// repeated slashes collapsed, trailing slash dropped, `/v1` prefix removed.
/// (`fuzzing::check_normalized` states its promises.)
fn normalize_path(path: &str) -> Option<String> {
    let mut out = String::with_capacity(path.len() + 1);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(seg);
    }
    let out = if out == "/v1" {
        String::new()
    } else if let Some(rest) = out.strip_prefix("/v1/") {
        format!("/{rest}")
    } else {
        out
    };
    let out = if out.is_empty() { "/".to_string() } else { out };
    (out != path).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize_path("/apps/run"), None);
        assert_eq!(normalize_path("//apps/run").as_deref(), Some("/apps/run"));
        assert_eq!(normalize_path("/apps//run/").as_deref(), Some("/apps/run"));
        assert_eq!(normalize_path("/v1/run").as_deref(), Some("/run"));
        assert_eq!(normalize_path("//v1//tasks/x").as_deref(), Some("/tasks/x"));
        assert_eq!(normalize_path("/v1").as_deref(), Some("/"));
        assert_eq!(normalize_path("/v1x/run"), None);
        assert_eq!(normalize_path("/"), None);
        assert_eq!(normalize_path("").as_deref(), Some("/"));
    }
}
