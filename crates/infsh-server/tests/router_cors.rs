//! Router tier, `--cors-origin`: a listed origin's preflight is answered
//! without a key and its requests carry `Access-Control-Allow-Origin`;
//! another origin gets no CORS headers; the key is still required.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request};
use common::*;

const APP: &str = "https://app.example.com";

#[tokio::test]
async fn listed_origins_get_cors_and_others_do_not() {
    bounded(async {
        let mut setup = Setup::new(&["multi-fn"]);
        setup.server.api_keys = vec!["k1".into()];
        setup.server.cors_origins = vec![format!("{APP}/"), "http://localhost:3000".into()];
        let s = start(setup).await;
        let preflight = |origin: &str| {
            Request::builder()
                .method(Method::OPTIONS)
                .uri("/apps/run")
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .header(
                    header::ACCESS_CONTROL_REQUEST_HEADERS,
                    "authorization, content-type",
                )
                .body(Body::empty())
                .unwrap()
        };
        // A listed origin's preflight: answered, no key needed.
        let resp = s.send(preflight(APP)).await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        let methods = h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
        assert!(
            methods.contains("POST") && methods.contains("DELETE"),
            "{methods}"
        );
        let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        assert!(allowed.contains("authorization"), "{allowed}");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "3600");
        // Another origin: no CORS headers (the browser refuses).
        let resp = s.send(preflight("https://evil.example")).await;
        assert!(resp
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());

        // The real request still needs the key, and carries the header.
        let req = |key: bool| {
            let mut r = Request::get("/tasks").header(header::ORIGIN, APP);
            if key {
                r = r.header(header::AUTHORIZATION, "Bearer k1");
            }
            r.body(Body::empty()).unwrap()
        };
        let (st, h, b) = read_json(s.send(req(false)).await).await;
        assert_problem(st, &h, &b, 401, "unauthorized");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        let (st, h, b) = read_json(s.send(req(true)).await).await;
        assert_eq!(st, 200, "{b}");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        s.stop().await;
    })
    .await;
}

#[tokio::test]
async fn without_cors_origins_there_are_no_cors_headers() {
    bounded(async {
        let s = start(Setup::new(&["multi-fn"])).await;
        let req = Request::get("/tasks")
            .header(header::ORIGIN, APP)
            .body(Body::empty())
            .unwrap();
        let resp = s.send(req).await;
        assert_eq!(resp.status(), 200);
        assert!(resp
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
        s.stop().await;
    })
    .await;
}
