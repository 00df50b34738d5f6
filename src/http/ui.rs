//! The dashboard at `/ui`: one hand-written page (HTML, CSS, JavaScript) compiled into the
//! binary, served by every node without a token.
//!
//! The page holds no data: its script polls the JSON API of the node that served it
//! (`/admin/status`, `/v1/licenses`, `/healthz`) with a token the operator pastes (kept in
//! the tab's `sessionStorage`), and a follower forwards those calls to the leader, so the page
//! shows the leader's view wherever it was loaded from. The assets are public on purpose: they
//! hold nothing that a token protects, and the routes that do hold data keep their roles.
//!
//! Every asset is sent with a Content-Security-Policy that allows only this node's own
//! scripts, styles and API (no inline script, no other origin), may not be framed, and sends
//! no referrer.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

/// The page.
pub const INDEX_HTML: &str = include_str!("ui/index.html");
/// Its script.
pub const APP_JS: &str = include_str!("ui/app.js");
/// Its style sheet.
pub const STYLE_CSS: &str = include_str!("ui/style.css");

/// What the browser may load and run for the dashboard: this node only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes (`/ui`, `/ui/app.js`, `/ui/style.css`), without their access layer.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/ui",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        // The assets change with the binary: revalidate rather than keep an old page.
        (header::CACHE_CONTROL, "no-cache"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
