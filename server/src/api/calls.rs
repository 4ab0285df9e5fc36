//! Counts and times every gRPC call, by method and gRPC status code (`kit_webhooks_rpcs_total`,
//! `kit_webhooks_rpc_duration_seconds`), whoever answers it: a service, admission or tonic itself.
//!
//! A call's code is known only at its end: in the response headers when the call fails before answering
//! (trailers-only), else in the trailers after the last message. So the response body is wrapped, and the
//! call is recorded when the trailers pass, or as `Cancelled` if the body is dropped before (the client went
//! away). A stream (`StreamDeliveries`) is timed over its whole life. The method label is the service and
//! method of the path, except for a method nobody serves (`Unimplemented`), which is `unknown`: a client
//! cannot grow the label set by calling made-up paths. Without `--metrics-listen` the layer passes calls
//! through untouched: a call's labels are strings built per call, work nobody would read.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::{body::Body, Code, Status};
use tower_layer::Layer;
use tower_service::Service;

const GRPC_STATUS: &str = "grpc-status";

/// Counts calls when `recording` (the server serves metrics), else passes them through.
#[derive(Clone, Copy)]
pub struct CallsLayer {
    pub recording: bool,
}

impl<S> Layer<S> for CallsLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Calls<S> {
        Calls {
            inner,
            recording: self.recording,
        }
    }
}

#[derive(Clone)]
pub struct Calls<S> {
    inner: S,
    recording: bool,
}

impl<S> Service<http::Request<Body>> for Calls<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let is_grpc = self.recording
            && request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
        let call = is_grpc.then(|| Call {
            method: method(request.uri().path()),
            started: Instant::now(),
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let Some(call) = call else {
                return Ok(response);
            };
            // Trailers-only: the call failed before any message; its code is in the headers.
            if let Some(code) = code_in(response.headers()) {
                call.end(code);
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(Timed {
                    inner: body,
                    call: Some(call),
                })
            }))
        })
    }
}

/// `Service/Method` of a gRPC path (`/kit.webhooks.v1.EventService/PublishEvent` → `EventService/PublishEvent`).
fn method(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let service = service.rsplit('.').next().unwrap_or(service);
    match parts.next() {
        Some(method) => format!("{service}/{method}"),
        None => "unknown".to_owned(),
    }
}

fn code_in(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get(GRPC_STATUS)?.to_str().ok()?;
    Some(Code::from(value.parse::<i32>().ok()?))
}

/// A call being answered: recorded once, when it ends.
struct Call {
    method: String,
    started: Instant,
}

impl Call {
    fn end(self, code: Code) {
        let method = match code {
            Code::Unimplemented => "unknown".to_owned(),
            _ => self.method,
        };
        metrics::histogram!("kit_webhooks_rpc_duration_seconds", "method" => method.clone())
            .record(self.started.elapsed());
        metrics::counter!("kit_webhooks_rpcs_total", "method" => method, "code" => code_name(code))
            .increment(1);
    }
}

/// A response body that records its call when its trailers pass (or it is dropped first).
struct Timed {
    inner: Body,
    call: Option<Call>,
}

impl Timed {
    fn end(&mut self, code: Code) {
        if let Some(call) = self.call.take() {
            call.end(code);
        }
    }
}

impl HttpBody for Timed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = code_in(trailers).unwrap_or(Code::Unknown);
                    self.end(code);
                }
            }
            Some(Err(status)) => self.end(status.code()),
            // A gRPC response always ends with trailers; one that does not is not a well-formed call.
            None => self.end(Code::Unknown),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.end(Code::Cancelled);
    }
}

/// The code's name as gRPC's own metrics spell it (`OK`, `InvalidArgument`, …).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_method_label_is_service_and_method() {
        assert_eq!(
            method("/kit.webhooks.v1.EventService/PublishEvent"),
            "EventService/PublishEvent"
        );
        assert_eq!(method("/grpc.health.v1.Health/Check"), "Health/Check");
        assert_eq!(method("/nothing"), "unknown");
    }
}
