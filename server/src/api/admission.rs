//! Admission: what a call must pass before the server reads its body.
//!
//! Every call to a Kit service carries `authorization: Bearer <key>`; this layer checks it on the request's
//! headers, so a caller without a known key is answered `UNAUTHENTICATED` without a byte of its message read
//! (a handler would only run once tonic had buffered the whole message). The caller it admits travels to the
//! handler as a [`Principal`](super::auth::Principal) in the request's extensions, where `auth::require` checks the role.
//!
//! A message larger than its service takes ([`MessageLimits`]) is refused `INVALID_ARGUMENT` as soon as its
//! length prefix is read. The bodies of admitted calls are counted against one server-wide budget of bytes
//! ([`Budget`]), from the first frame read until the call is answered: past it a call is answered
//! `RESOURCE_EXHAUSTED`. That also bounds the writer's queue in bytes, since every write in it belongs to a
//! call being answered. A call's first [`FREE_BYTES`] are not counted, so that small calls (reads, pings,
//! ordinary publishes) are served even while large ones have the budget taken.
//!
//! The standard gRPC health and reflection services stay open: probes and tools call them without a key.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{body::Body, Status};
use tower_layer::Layer;
use tower_service::Service;

use super::auth::Authenticator;

/// The prefix of every method of the Kit services (those that need a key).
const KIT_SERVICES: &str = "/kit.webhooks.v1.";
/// A gRPC message's prefix: a compression flag and its length (big-endian `u32`).
const MESSAGE_PREFIX_BYTES: usize = 5;
/// The bytes of each call not counted against the budget: what a small call holds is bounded by the calls
/// open at once (256 per connection) instead.
pub const FREE_BYTES: usize = 4 * 1024;

/// The largest message each service takes. The same numbers configure tonic's decoders (`crate::start`),
/// which would otherwise answer a larger one `OUT_OF_RANGE`, naming no field.
#[derive(Clone, Copy, Debug)]
pub struct MessageLimits {
    /// `EventService` (its `PublishEvent`: the payload limit and the envelope around it).
    pub events: usize,
    /// The payload limit itself, for the message that names it.
    pub payload: usize,
}

impl MessageLimits {
    /// `WebhookService`: a webhook's fields are a few KiB at most.
    pub const WEBHOOKS: usize = 1024 * 1024;
    /// `DeliveryService`: a report batch at its most reports, each with a stored body and capped headers.
    pub const DELIVERIES: usize = 32 * 1024 * 1024;

    fn for_path(&self, path: &str) -> usize {
        let service = path.strip_prefix(KIT_SERVICES).unwrap_or(path);
        if service.starts_with("EventService/") {
            self.events
        } else if service.starts_with("DeliveryService/") {
            Self::DELIVERIES
        } else {
            Self::WEBHOOKS
        }
    }

    /// Why a message of `declared` bytes to `path` is refused.
    fn refusal(&self, path: &str, declared: usize) -> Status {
        let limit = self.for_path(path);
        let message = if path.ends_with("/PublishEvent") {
            format!(
                "data_json: the request is {declared} bytes, more than a publish takes ({limit}: data_json at most {} bytes, --max-payload-bytes)",
                self.payload
            )
        } else if path.ends_with("/PublishEvents") {
            format!(
                "events: the request is {declared} bytes, more than a call takes ({limit}, as one publish: --max-payload-bytes and its envelope); split it"
            )
        } else {
            format!("request: is {declared} bytes; this call takes at most {limit}")
        };
        Status::invalid_argument(message)
    }
}

/// Request bytes the server holds at once, across all calls.
#[derive(Clone)]
pub struct Budget(Arc<Semaphore>);

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        Budget(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }
}

/// The tower layer that admits calls ([`Admit`]).
#[derive(Clone)]
pub struct AdmissionLayer {
    auth: Arc<Authenticator>,
    budget: Budget,
    limits: MessageLimits,
}

impl AdmissionLayer {
    pub fn new(auth: Arc<Authenticator>, budget: Budget, limits: MessageLimits) -> Self {
        AdmissionLayer {
            auth,
            budget,
            limits,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit {
            inner,
            auth: self.auth.clone(),
            budget: self.budget.clone(),
            limits: self.limits,
        }
    }
}

/// Authenticates each call on its headers and counts its body against the budget (see the module's doc).
#[derive(Clone)]
pub struct Admit<S> {
    inner: S,
    auth: Arc<Authenticator>,
    budget: Budget,
    limits: MessageLimits,
}

impl<S> Service<http::Request<Body>> for Admit<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone is not ready; the one `poll_ready` readied serves this call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !request.uri().path().starts_with(KIT_SERVICES) {
            return Box::pin(inner.call(request));
        }
        let auth = self.auth.clone();
        let budget = self.budget.clone();
        let limits = self.limits;
        Box::pin(async move {
            let principal = match auth.authenticate(request.headers()).await {
                Ok(principal) => principal,
                Err(err) => return Ok(Status::from(err).into_http()),
            };
            let held = Held::default();
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(principal);
            let path = parts.uri.path().to_owned();
            let body = Body::new(Counted {
                inner: body,
                budget,
                held: held.clone(),
                prefix: Vec::with_capacity(MESSAGE_PREFIX_BYTES),
                free: FREE_BYTES,
                limit: limits.for_path(&path),
                refusal: move |declared| limits.refusal(&path, declared),
            });
            let response = inner.call(http::Request::from_parts(parts, body)).await;
            // The call is answered: its bytes go back to the budget.
            drop(held);
            response
        })
    }
}

/// The budget's bytes one call holds, shared by its body and the future that answers it.
type Held = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

/// A call's body, each frame counted against the budget as it is read, and its first message's length checked
/// against the call's limit as soon as its prefix is in.
struct Counted<R> {
    inner: Body,
    budget: Budget,
    held: Held,
    /// The first bytes of the body, until the message prefix is complete.
    prefix: Vec<u8>,
    /// Bytes still to be read before the budget counts them.
    free: usize,
    limit: usize,
    refusal: R,
}

impl<R: Fn(usize) -> Status> Counted<R> {
    /// Reads the message prefix out of the body's first bytes; refuses a message longer than the limit.
    fn check_length(&mut self, data: &[u8]) -> Result<(), Status> {
        if self.prefix.len() >= MESSAGE_PREFIX_BYTES {
            return Ok(());
        }
        let wanted = MESSAGE_PREFIX_BYTES - self.prefix.len();
        self.prefix
            .extend_from_slice(&data[..wanted.min(data.len())]);
        if self.prefix.len() < MESSAGE_PREFIX_BYTES {
            return Ok(());
        }
        let declared = u32::from_be_bytes([
            self.prefix[1],
            self.prefix[2],
            self.prefix[3],
            self.prefix[4],
        ]);
        let declared = declared as usize;
        if declared > self.limit {
            return Err((self.refusal)(declared));
        }
        Ok(())
    }

    fn reserve(&self, bytes: usize) -> Result<(), Status> {
        let exhausted = || {
            Status::resource_exhausted(
                "the server holds as many request bytes as it allows (--max-bytes-in-flight); try again shortly",
            )
        };
        let bytes = u32::try_from(bytes).map_err(|_| exhausted())?;
        let permit = self
            .budget
            .0
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| exhausted())?;
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(all) => all.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

impl<R: Fn(usize) -> Status + Unpin> HttpBody for Counted<R> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        if let Some(data) = frame.data_ref() {
            let counted = data.len().saturating_sub(self.free);
            self.free = self.free.saturating_sub(data.len());
            let checked = self.check_length(data).and_then(|()| match counted {
                0 => Ok(()),
                n => self.reserve(n),
            });
            if let Err(status) = checked {
                return Poll::Ready(Some(Err(status)));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    fn counted(budget: usize, data: Vec<u8>) -> Counted<impl Fn(usize) -> Status + Unpin> {
        Counted {
            inner: Body::new(Full::new(Bytes::from(data))),
            budget: Budget::new(budget),
            held: Held::default(),
            prefix: Vec::new(),
            free: FREE_BYTES,
            limit: 1 << 20,
            refusal: |declared| Status::invalid_argument(format!("{declared}")),
        }
    }

    fn message(len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; MESSAGE_PREFIX_BYTES + len];
        bytes[1..5].copy_from_slice(&(len as u32).to_be_bytes());
        bytes
    }

    #[tokio::test]
    async fn a_small_call_is_served_with_the_budget_taken_and_a_large_one_is_not() {
        let small = counted(0, message(100)).collect().await;
        assert!(small.is_ok(), "within the free bytes");
        let large = counted(0, message(64 * 1024)).collect().await;
        assert_eq!(
            large.err().map(|s| s.code()),
            Some(tonic::Code::ResourceExhausted)
        );
        let fits = counted(1 << 20, message(64 * 1024)).collect().await;
        assert!(fits.is_ok());
    }

    #[tokio::test]
    async fn a_message_over_its_limit_is_refused_on_its_prefix() {
        let mut body = counted(1 << 30, message(2 << 20));
        body.limit = 1 << 20;
        let refused = body.collect().await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(refused.message(), (2 << 20).to_string());
    }
}
