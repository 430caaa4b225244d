//! Router tier, the web playground: the page at `/` and its assets under
//! `/_playground/` are served without a key (they hold no data) with their
//! types and a strict CSP, while the API the page reads stays behind the
//! key; an unknown asset is a 404 problem; the API's own routes are where
//! they were.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;

fn with_key() -> Setup {
    let mut setup = Setup::new(&["multi-fn"]);
    setup.server.api_keys = vec!["k1".into()];
    setup
}

async fn get_text(server: &TestServer, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = server
        .send(Request::get(uri).body(Body::empty()).unwrap())
        .await;
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, read_text(resp).await)
}

#[tokio::test]
async fn the_page_and_its_assets_need_no_key_but_the_apps_do() {
    let server = start(with_key()).await;
    bounded(async {
        let (status, headers, page) = get_text(&server, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(
            page.contains(r#"<script type="module" src="/_playground/app.js">"#),
            "{page}"
        );
        // The page is a shell: no app is named in it.
        assert!(!page.contains("multi-fn"), "{page}");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self';"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        // `/v1/` is the page too, as every route answers under `/v1`.
        assert_eq!(get_text(&server, "/v1/").await.0, StatusCode::OK);

        for (asset, ty) in [
            ("/_playground/app.js", "text/javascript; charset=utf-8"),
            ("/_playground/form.js", "text/javascript; charset=utf-8"),
            ("/_playground/style.css", "text/css; charset=utf-8"),
        ] {
            let (status, headers, body) = get_text(&server, asset).await;
            assert_eq!(status, StatusCode::OK, "{asset}");
            assert_eq!(headers[header::CONTENT_TYPE], ty, "{asset}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{asset}");
            assert!(!body.is_empty(), "{asset}");
        }

        // What the page shows comes from the API, which wants the key.
        let (status, headers, body) = server.get("/apps").await;
        assert_problem(status, &headers, &body, 401, "unauthorized");
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_asset_is_a_404_problem_and_the_api_is_unmoved() {
    let server = start(Setup::new(&["multi-fn"])).await;
    bounded(async {
        let (status, headers, body) = server.get("/_playground/nope.js").await;
        assert_problem(status, &headers, &body, 404, "not_found");
        assert_eq!(body["detail"], "no playground asset /_playground/nope.js");
        assert_eq!(body["resource"], "route");
        // A path out of the asset folder finds nothing either.
        let (status, _, body) = server.get("/_playground/../Cargo.toml").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        // The API's routes are where they were.
        let (status, _, body) = server.get("/apps").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"][0]["id"], "tests/multi-fn");
        let (status, headers, body) = server.post("/", serde_json::json!({})).await;
        assert_problem(status, &headers, &body, 405, "method_not_allowed");
    })
    .await;
    server.stop().await;
}

/// The app cards' data: inf.yml's `category` and `images` come through
/// `GET /apps` and the detail (null when inf.yml has none).
#[tokio::test]
async fn apps_carry_their_category_and_images() {
    let mut setup = Setup::new(&["multi-fn"]);
    setup.tweak = Box::new(|config, _| {
        let yml = std::fs::read_to_string(fixture("multi-fn").join("inf.yml")).unwrap();
        let yml = yml.replace("name: multi-fn", "name: carded")
            + "category: image\nimages:\n  card: https://example.com/card.png\n";
        copy_fixture_as(&config.apps_dir, "multi-fn", "carded", &yml);
    });
    let server = start(setup).await;
    bounded(async {
        let (status, _, body) = server.get("/apps").await;
        assert_eq!(status, StatusCode::OK);
        let apps = body["data"].as_array().unwrap();
        let carded = apps.iter().find(|a| a["id"] == "tests/carded").unwrap();
        assert_eq!(carded["category"], "image");
        assert_eq!(
            carded["images"],
            serde_json::json!({"card": "https://example.com/card.png"})
        );
        let plain = apps.iter().find(|a| a["id"] == "tests/multi-fn").unwrap();
        assert_eq!(plain["category"], serde_json::Value::Null);
        assert_eq!(plain["images"], serde_json::Value::Null);
        let (status, _, body) = server.get("/apps/tests/carded").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["category"], "image");
    })
    .await;
    server.stop().await;
}
