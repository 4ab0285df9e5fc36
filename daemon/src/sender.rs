//! Sending one delivery: sign it (`kit_webhooks::signature`), POST it over a vetted connection, and describe
//! what happened as a `ReportDeliveryRequest`.
//!
//! The HTTP client is hyper 1.x with hyper-rustls: HTTP/1.1 and HTTP/2, keep-alive connections, redirects
//! never followed, and at most what an attempt keeps of a response read (`kit_webhooks::response`). The
//! connections are the daemon's own, kept per origin (`origins`).

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{
    future::{self, Either},
    FutureExt, TryFutureExt,
};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, client::conn::TrySendError};
use kit_webhooks::{proto, request, response, signature};

use crate::{
    address::AddressGuard,
    connector::{ConnectError, GuardedConnector},
    origins::{Lent, Origins, Route},
};

/// How long opening a TCP connection to an endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const USER_AGENT: &str = concat!("KitWebhooks/", env!("CARGO_PKG_VERSION"));

pub struct Sender {
    /// What each origin speaks, and the connections to it.
    origins: Origins,
}

/// Why a request has no response: an error kind for programs and a message for people.
pub(crate) type Failure = (&'static str, String);

/// A response's head, and the HTTP/1.1 connection it came on, to give back once its body is read.
type Answer = (http::Response<Incoming>, Option<Lent>);

/// Why a request on a connection at hand got no response: a failure, or the connection closed before taking
/// it (the request comes back, unsent; boxed, as this is rare and a request is large).
enum Unanswered {
    Failed(Failure),
    Unsent(Box<http::Request<Full<Bytes>>>),
}

impl Sender {
    /// A sender that reaches only addresses `guard` allows, trusts `extra_roots` beside the usual roots, and
    /// keeps up to `connections_per_host` idle connections to each origin: as many as it may open to one
    /// (the daemon's `--max-connections-per-host`), so that a host's connections survive the dips of a
    /// steady load instead of being closed and opened again. `connections_open` counts them.
    pub fn new(
        guard: AddressGuard,
        extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
        connections_per_host: usize,
        connections_open: metrics::Gauge,
    ) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // Native roots are a bonus: a machine without any still has webpki's.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        for cert in extra_roots {
            roots.add(cert)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(GuardedConnector::new(
                guard,
                CONNECT_TIMEOUT,
                connections_open,
            ));
        Ok(Sender {
            origins: Origins::new(https, connections_per_host),
        })
    }

    /// Forgets the origins and closes the connections idle for [`crate::origins::IDLE_TIMEOUT`] (the daemon's
    /// periodic sweep).
    pub fn prune(&self) {
        self.origins.prune();
    }

    /// Makes the task's one HTTP request to `url` (the task's URL, parsed) and reports how it went. Never
    /// fails: every failure is an attempt.
    ///
    /// The request is signed and built before the future is made, so that the future holds only what the
    /// exchange needs (the report, the response on its way), not the task it was built from: the future lives
    /// as long as its request is outstanding, and a busy daemon has thousands (`crate::attempt`).
    pub fn send(
        &self,
        mut task: proto::DeliveryTask,
        url: Result<http::Uri, http::uri::InvalidUri>,
    ) -> impl Future<Output = proto::ReportDeliveryRequest> + '_ {
        let started = std::time::SystemTime::now();
        let clock = std::time::Instant::now();
        let mut report = proto::ReportDeliveryRequest {
            delivery_id: task.delivery_id.clone(),
            lease_id: std::mem::take(&mut task.lease_id),
            attempt_number: task.attempt_number,
            started_at: Some(prost_types::Timestamp::from(started)),
            ..Default::default()
        };
        let timeout = Duration::from_millis(u64::from(task.timeout_ms.max(1)));
        match signed_request(&mut task, url, &mut report) {
            Ok(request) => Either::Left(self.exchange_into(request, timeout, report, clock)),
            Err((kind, text)) => {
                fail(&mut report, kind, text);
                Either::Right(future::ready(report))
            }
        }
    }

    /// Sends `request`, reads its response, and notes it (or why there is none) in `report`, with the time it
    /// took since `clock`. Chained rather than an `async fn`, whose arguments the future would hold for its
    /// whole life: the request moves straight into the exchange, held once.
    fn exchange_into(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
        mut report: proto::ReportDeliveryRequest,
        clock: std::time::Instant,
    ) -> impl Future<Output = proto::ReportDeliveryRequest> + '_ {
        let exchanged = self
            .exchange(request)
            .and_then(|(response, lent)| async move {
                let status = response.status();
                // Converted for the report before the body is read, rather than cloned to be converted later.
                let headers = header_map(response.headers());
                let body = read_limited(response.into_body(), response::MAX_BODY_BYTES).await;
                if let Some(lent) = lent {
                    lent.give_back();
                }
                Ok((status, headers, body))
            });
        tokio::time::timeout(timeout, exchanged).map(move |exchanged| {
            match exchanged {
                Err(_) => fail(
                    &mut report,
                    "timeout",
                    format!("no complete response within {timeout:?}"),
                ),
                Ok(Err((kind, text))) => fail(&mut report, kind, text),
                Ok(Ok((status, headers, body))) => {
                    report.response_status = u32::from(status.as_u16());
                    report.response_body = body.into();
                    if status.is_redirection() {
                        let location = headers.get("location").map_or("-", String::as_str);
                        fail(
                            &mut report,
                            "redirect",
                            format!(
                                "HTTP {status}: redirects are not followed (location: {location})"
                            ),
                        );
                    } else if !status.is_success() {
                        fail(&mut report, "status", format!("HTTP {status}"));
                    }
                    report.response_headers = response::capped_headers(headers);
                }
            }
            report.duration_ms = clock.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
            report
        })
    }

    /// Sends `request`; the future yields the response's head. A request to an origin with a connection at
    /// hand, nearly all of them, is sent as the future is polled, with no state beyond the connection's.
    fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<Answer, Failure>> + Send + '_ {
        match self.origins.known(request.uri()) {
            // A request the connection ends before taking it (the endpoint closed an idle connection, or sent
            // GOAWAY) goes out once more, on a connection made for it. Boxed: rare, and every request's
            // future would carry room for it.
            Some(route) => Either::Left(send_on(route, request).then(move |sent| match sent {
                Ok(answer) => Either::Left(future::ready(Ok(answer))),
                Err(Unanswered::Failed(failure)) => Either::Left(future::ready(Err(failure))),
                Err(Unanswered::Unsent(request)) => Either::Right(Box::pin(self.routed(*request))),
            })),
            None => Either::Right(self.routed(request)),
        }
    }

    /// Sends `request` once its origin's route is found (a connection made, if need be). Finding it is boxed,
    /// the request with it, and freed once found: a request holds its connecting's state (a TLS handshake's)
    /// only while it connects, and the future what sending needs.
    fn routed(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<Answer, Failure>> + Send + '_ {
        let found = Box::pin(async move {
            let route = self.origins.route(request.uri()).await;
            (route, request)
        });
        found.then(|(route, request)| {
            send_on(route, request).map(|sent| {
                sent.map_err(|unanswered| match unanswered {
                    Unanswered::Failed(failure) => failure,
                    Unanswered::Unsent(_) => (
                        "protocol",
                        "the connection closed before the request was sent".to_owned(),
                    ),
                })
            })
        })
    }
}

/// Sends `request` on `route`. Chained rather than an `async` block, which would hold the request twice.
fn send_on(
    route: Route,
    mut request: http::Request<Full<Bytes>>,
) -> impl Future<Output = Result<Answer, Unanswered>> + Send {
    match route {
        Route::Http2(mut stream) => Either::Left(Either::Left(
            stream.try_send_request(request).map(move |sent| {
                sent.map(|response| (response, None))
                    .map_err(|err| unanswered(err, None))
            }),
        )),
        Route::Http1(mut lent) => {
            let target = to_origin_form(&mut request);
            let sent = lent.send(request);
            Either::Left(Either::Right(sent.map(move |sent| match sent {
                Ok(response) => Ok((response, Some(lent))),
                Err(err) => Err(unanswered(err, Some(target))),
            })))
        }
        Route::Unreachable(kind, text) => {
            Either::Right(future::ready(Err(Unanswered::Failed((kind, text)))))
        }
    }
}

/// Why `err`'s request got no response; a request that comes back unsent gets its URL back (`target`, as
/// it was before [`to_origin_form`]).
fn unanswered(
    mut err: TrySendError<http::Request<Full<Bytes>>>,
    target: Option<http::Uri>,
) -> Unanswered {
    match err.take_message() {
        Some(mut request) => {
            if let Some(target) = target {
                *request.uri_mut() = target;
            }
            Unanswered::Unsent(Box::new(request))
        }
        None => Unanswered::Failed(classify(&err.into_error(), false)),
    }
}

/// Names `request`'s target by its path, with the host in a header, as HTTP/1.1 does; returns its URL as it
/// was, for a request that comes back unsent.
fn to_origin_form(request: &mut http::Request<Full<Bytes>>) -> http::Uri {
    let uri = std::mem::take(request.uri_mut());
    if let Some(host) = uri.host() {
        let host = match uri.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        if let Ok(host) = http::HeaderValue::try_from(host) {
            request.headers_mut().insert(http::header::HOST, host);
        }
    }
    if let Some(target) = uri.path_and_query() {
        *request.uri_mut() = http::Uri::from(target.clone());
    }
    uri
}

/// The task's request, signed now: its body moved in, its headers set. The signature headers the report
/// carries are noted in `report`; an error is the attempt's error kind and text.
fn signed_request(
    task: &mut proto::DeliveryTask,
    url: Result<http::Uri, http::uri::InvalidUri>,
    report: &mut proto::ReportDeliveryRequest,
) -> Result<http::Request<Full<Bytes>>, (&'static str, String)> {
    let timestamp = signature::unix_now();
    let signed = signature::signature_header(&task.secrets, &task.event_id, timestamp, &task.body)
        .map_err(|err| ("signing", err.to_string()))?;
    // The report carries only the headers the task does not determine; the server shows the rest as
    // `kit_webhooks::request` defines them, the same definition these requests are built from.
    let user_agent = http::HeaderValue::from_static(USER_AGENT);
    let signed_at = http::HeaderValue::from(timestamp);
    let signature = http::HeaderValue::try_from(signed.as_str());
    report.user_agent = USER_AGENT.to_owned();
    report.signed_at = timestamp;
    report.signature = signed;
    let task_headers = request::task_headers(
        std::mem::take(&mut task.event_id),
        std::mem::take(&mut task.event_type),
        std::mem::take(&mut task.delivery_id),
        task.attempt_number,
    );
    // The webhook's own headers go out as they are and are reported masked (a credential never leaves in a
    // report); none, the common case, costs nothing.
    let own_headers = std::mem::take(&mut task.headers);
    report.webhook_headers = own_headers
        .iter()
        .map(|(name, value)| (name.clone(), request::masked(name, value)))
        .collect();
    // The body moves into the request: no copy of the payload per delivery.
    let body = std::mem::take(&mut task.body);
    let request = url.map_err(http::Error::from).and_then(|url| {
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = url;
        let map = request.headers_mut();
        map.reserve(4 + task_headers.len() + own_headers.len());
        for (name, value) in own_headers {
            // Checked by the server when the webhook was saved: a token name, visible ASCII.
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes())?,
                http::HeaderValue::from_maybe_shared(Bytes::from(value))?,
            );
        }
        let (name, value) = request::CONTENT_TYPE;
        map.insert(
            http::HeaderName::from_static(name),
            http::HeaderValue::from_static(value),
        );
        map.insert(http::header::USER_AGENT, user_agent);
        map.insert(
            http::HeaderName::from_static(signature::WEBHOOK_TIMESTAMP),
            signed_at,
        );
        map.insert(
            http::HeaderName::from_static(signature::WEBHOOK_SIGNATURE),
            signature?,
        );
        for (name, value) in task_headers {
            // The task's strings become the header values as they are, without a copy.
            map.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_maybe_shared(Bytes::from(value))?,
            );
        }
        Ok(request)
    });
    request.map_err(|err| {
        (
            "invalid_url",
            format!("cannot build a request for `{}`: {err}", task.url),
        )
    })
}

fn fail(report: &mut proto::ReportDeliveryRequest, kind: &str, text: String) {
    report.error_kind = kind.to_owned();
    report.error = text;
}

/// Reads at most `limit` bytes of `body`; the rest is never read.
async fn read_limited(mut body: hyper::body::Incoming, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let take = data.len().min(limit - out.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
            _ => break,
        }
    }
    out
}

fn header_map(headers: &http::HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

/// An error kind for programs and a message for people; `connecting` says whether `err` came before the
/// request was sent (making the connection).
pub(crate) fn classify(err: &(dyn std::error::Error + 'static), connecting: bool) -> Failure {
    let mut source = Some(err);
    while let Some(cause) = source {
        if let Some(connect) = cause.downcast_ref::<ConnectError>() {
            let kind = match connect {
                ConnectError::Blocked { .. } => "blocked_address",
                ConnectError::Dns { .. } => "dns",
                ConnectError::Timeout { .. } => "timeout",
                ConnectError::NoHost => "invalid_url",
                ConnectError::Io { .. } => "connect",
            };
            return (kind, connect.to_string());
        }
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return ("tls", format!("TLS: {cause}"));
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if wraps_tls(io) {
                return ("tls", format!("TLS: {io}"));
            }
        }
        source = cause.source();
    }
    let kind = if connecting { "connect" } else { "protocol" };
    (kind, full_chain(err))
}

/// Whether `io` is a TLS failure, however deep: an `io::Error`'s `source()` skips the error it wraps, and the
/// TLS connector wraps tokio-rustls's `io::Error` (around rustls's) in one of its own.
fn wraps_tls(io: &std::io::Error) -> bool {
    match io.get_ref() {
        Some(inner) if inner.is::<rustls::Error>() => true,
        Some(inner) => inner
            .downcast_ref::<std::io::Error>()
            .is_some_and(wraps_tls),
        None => false,
    }
}

fn full_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
