//! The API for browsers: gRPC-Web on the same listener as gRPC (HTTP/1.1 or HTTP/2, `application/grpc-web`),
//! translated to gRPC before admission (`super::admission`), so that a page calls `WebhookService` and
//! `EventService` with the same key check, limits and answers as any other client. No REST duplicate, no proxy.
//!
//! Cross-origin calls are refused unless the page's origin is listed (`--cors-origin`): a page served by this
//! server needs none, and the key travels in a header, never a cookie, so no origin gets credentials.

use std::task::{Context, Poll};

use futures::future::Either;
use http::{header, HeaderName, HeaderValue, Method, Request, Response};
use tonic::body::Body;
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};
use tower_layer::Layer;
use tower_service::Service;

/// The request headers a gRPC-Web client sends besides the simple ones.
const REQUEST_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
];
/// The response headers a gRPC-Web client must read: the call's outcome in a trailers-only answer.
const RESPONSE_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// `origin` (`scheme://host[:port]`, nothing after) as a header value, or why it is not one.
pub fn parse_origin(origin: &str) -> anyhow::Result<HeaderValue> {
    let parsed = url::Url::parse(origin)
        .map_err(|err| anyhow::anyhow!("--cors-origin `{origin}`: {err}"))?;
    let bare = matches!(parsed.scheme(), "http" | "https")
        && parsed.host_str().is_some()
        && parsed.path() == "/"
        && parsed.query().is_none()
        && !origin.ends_with('/');
    anyhow::ensure!(
        bare,
        "--cors-origin `{origin}` must be an origin: http(s)://host[:port], with no path"
    );
    Ok(HeaderValue::from_str(origin)?)
}

/// The CORS answers for `origins` (checked by `Config::validate`; one that does not parse is left out).
fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| parse_origin(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::POST])
        .allow_headers(REQUEST_HEADERS.map(HeaderName::from_static))
        .expose_headers(RESPONSE_HEADERS.map(HeaderName::from_static))
        .max_age(std::time::Duration::from_secs(3600))
        .vary([header::ORIGIN])
}

/// What browsers need, for browsers' requests only: CORS and gRPC-Web translation for gRPC-Web calls and CORS
/// preflights; everything else (gRPC from daemons and services, the console's own page) passes straight
/// through. tonic-web alone would answer `400` to any other HTTP/1.1 request, keeping a browser from the
/// page, and CORS on every call would add its headers to every gRPC answer.
#[derive(Clone)]
pub struct BrowserLayer {
    cors: CorsLayer,
}

impl BrowserLayer {
    /// CORS for `origins` (see [`cors`]).
    pub fn new(origins: &[String]) -> Self {
        BrowserLayer {
            cors: cors(origins),
        }
    }
}

impl<S: Clone> Layer<S> for BrowserLayer {
    type Service = Browser<S>;

    fn layer(&self, inner: S) -> Browser<S> {
        Browser {
            web: self
                .cors
                .layer(tonic_web::GrpcWebLayer::new().layer(inner.clone())),
            plain: inner,
        }
    }
}

/// See [`BrowserLayer`].
#[derive(Clone)]
pub struct Browser<S> {
    web: Cors<tonic_web::GrpcWebService<S>>,
    plain: S,
}

type WebFuture<S> = <Cors<tonic_web::GrpcWebService<S>> as Service<Request<Body>>>::Future;

impl<S> Service<Request<Body>> for Browser<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone,
    Cors<tonic_web::GrpcWebService<S>>:
        Service<Request<Body>, Response = Response<Body>, Error = S::Error>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<WebFuture<S>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.plain.poll_ready(cx) {
            Poll::Ready(Ok(())) => self.web.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let grpc_web = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc-web"));
        if grpc_web || request.method() == Method::OPTIONS {
            Either::Left(self.web.call(request))
        } else {
            Either::Right(self.plain.call(request))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_a_scheme_a_host_and_maybe_a_port() {
        for origin in ["https://console.kit.example", "http://localhost:5173"] {
            assert!(parse_origin(origin).is_ok(), "{origin}");
        }
        for origin in [
            "https://console.kit.example/",
            "https://console.kit.example/app",
            "ftp://console.kit.example",
            "console.kit.example",
            "*",
        ] {
            assert!(parse_origin(origin).is_err(), "{origin}");
        }
    }
}
