//! The web dashboard: a static page (HTML, CSS, vanilla JS under `assets/`) compiled into the binary
//! and served at `/` on the admin HTTP port. The page itself holds no secret, so it is served
//! without the token; everything it shows comes from `/api`, which the page calls with the token
//! the operator types in (kept in the tab's sessionStorage). The event stream is read with
//! `fetch()` and the same `Authorization` header, so the token never travels in a URL.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const DEVICE_JS: &str = include_str!("../assets/device.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const FAVICON_SVG: &str = include_str!("../assets/favicon.svg");

/// Every asset with its path and content type (the tests walk this list).
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", INDEX_HTML),
    ("/assets/app.js", "text/javascript; charset=utf-8", APP_JS),
    (
        "/assets/device.js",
        "text/javascript; charset=utf-8",
        DEVICE_JS,
    ),
    ("/assets/app.css", "text/css; charset=utf-8", APP_CSS),
    ("/assets/favicon.svg", "image/svg+xml", FAVICON_SVG),
];

/// Only our own origin: the page loads nothing from elsewhere, and no other site may frame the
/// admin page (it holds the token while open).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // Small files: revalidate every time, so a new server binary shows its new page at once.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The dashboard's routes, without authentication (see the module comment).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut r = Router::new();
    for &(path, content_type, body) in ASSETS {
        r = r.route(path, get(move || async move { asset(content_type, body) }));
    }
    r.route(
        "/index.html",
        get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
    )
}
