//! The web playground: a static page (crates/infsh-server/src/web/, plain ES
//! modules and CSS, no build step) embedded in the binary and served at `/`,
//! its assets under `/_playground/…` (a prefix no API route can take).
//!
//! These routes are public on purpose: the page and its scripts hold no data.
//! Everything the page shows (apps, tasks, engines) it fetches from the API
//! with the key the user typed, so with keys on a visitor without one sees an
//! empty shell asking for a key. They are not API operations and stay out of
//! the OpenAPI document.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use crate::problem::Problem;

#[derive(RustEmbed)]
#[folder = "src/web/"]
struct Assets;

/// Where the assets are served; index.html refers to them by this prefix.
pub const ASSET_PREFIX: &str = "/_playground";

/// The page loads only its own scripts and styles and talks only to this
/// server; images and media may come from anywhere an input URL points
/// (a preview) or from `blob:` (a file chosen before upload).
const CSP: &str = "default-src 'self'; img-src * data: blob:; media-src * data: blob:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The playground's routes, to merge beside the public API routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/_playground/{*path}", get(asset))
}

async fn index() -> Response {
    serve("index.html").unwrap_or_else(|| missing("index.html"))
}

async fn asset(Path(path): Path<String>) -> Response {
    serve(&path).unwrap_or_else(|| missing(&path))
}

fn serve(path: &str) -> Option<Response> {
    let file = Assets::get(path)?;
    let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    // The assets change with the binary: revalidate each time, so an
    // upgraded server never runs an old script against a new API.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    Some(response)
}

fn missing(path: &str) -> Response {
    Problem::not_found(
        "route",
        format!("no playground asset {ASSET_PREFIX}/{path}"),
    )
    .into_response()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_known_content_type() {
        let names: Vec<_> = Assets::iter().collect();
        assert!(names.iter().any(|n| n == "index.html"), "{names:?}");
        for name in names {
            assert_ne!(
                content_type(&name),
                "application/octet-stream",
                "{name} would be served without a type"
            );
        }
    }
}
