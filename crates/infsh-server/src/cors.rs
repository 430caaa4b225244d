//! `--cors-origin ORIGIN` (repeatable): lets browser apps on those origins
//! call the API. Preflights (`OPTIONS` with `Access-Control-Request-*`) are
//! answered before authentication (a browser sends them without the key);
//! the real request still needs its key. Other origins get no CORS headers,
//! so browsers keep refusing them; non-browser clients are unaffected.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The layer for these origins; None when there are none.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    let list: Vec<HeaderValue> = origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if list.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::RANGE,
                header::CACHE_CONTROL,
            ])
            .expose_headers([
                header::CONTENT_RANGE,
                header::CONTENT_LENGTH,
                header::RETRY_AFTER,
                HeaderName::from_static("server-timing"),
            ])
            .max_age(Duration::from_secs(3600)),
    )
}
