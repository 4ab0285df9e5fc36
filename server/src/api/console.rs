//! The web console at `/` of the API's listener: Kit's Integrations › Webhooks page (`console/`), compiled into
//! the binary from `console/dist` (built from the console's sources and committed, so that running the server
//! needs no Node.js). A browser gets the page; gRPC and gRPC-Web calls go to the services beside it. The page
//! loads nothing from anywhere else, which its content security policy also says.

use axum::{
    http::{header, HeaderValue},
    response::IntoResponse,
    routing::get,
    Router,
};

const INDEX: &str = include_str!("../../../console/dist/index.html");
const SCRIPT: &str = include_str!("../../../console/dist/app.js");
const STYLE: &str = include_str!("../../../console/dist/app.css");

/// Everything the page may load or call: this server only.
const POLICY: &str =
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; \
                      base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The console's routes, to sit beside the gRPC services.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/index.html",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            // The page and its script change together with the binary: always revalidate.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
}
