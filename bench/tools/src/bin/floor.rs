//! The floor: the least an HTTP server can do for one request. A minimal
//! axum server (tokio multi-thread runtime, as `infsh serve` uses) that
//! answers any GET or POST with the fixed correct reply of the benchmark's
//! app, without reading the body. `floor PORT` (loopback only).

use axum::http::header::CONTENT_TYPE;
use axum::routing::any;
use axum::Router;

const BODY: &str = r#"{"text":"HELLO WORLD"}"#;

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: floor PORT");
    let app = Router::new().fallback(any(|| async {
        ([(CONTENT_TYPE, "application/json")], BODY)
    }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    eprintln!("floor listening on http://127.0.0.1:{port}");
    axum::serve(listener, app).await.expect("serve");
}
