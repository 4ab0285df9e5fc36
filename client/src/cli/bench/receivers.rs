//! The benchmark's receivers: hyper HTTP/1.1 servers on loopback (HTTPS with `--tls`) that answer 200 (after an
//! optional latency), verify every signature, and record when each (event, webhook) pair first arrived. The
//! slow accounts' receivers (`--slow-accounts`) only count what they are sent, and answer late or never.
//!
//! They share the machine with the system under test, so a receipt is recorded without allocating: the
//! headers are read in place, each webhook's secret is parsed once, and an event id is kept as its ULID's
//! number (docs/PERFORMANCE.md, step 48).

use std::{
    collections::HashMap,
    convert::Infallible,
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kit_webhooks::{
    signature::{self, Secret},
    sync::lock,
};
use tokio::net::TcpListener;

use super::tls::BenchTls;

/// An event id as a map key: the ULID of an `evt_…` id as a number, anything else as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKey {
    Ulid(u128),
    Other(String),
}

impl EventKey {
    pub fn of(id: &str) -> Self {
        id.strip_prefix("evt_")
            .and_then(|ulid| ulid::Ulid::from_string(ulid).ok())
            .map_or_else(
                || EventKey::Other(id.to_owned()),
                |ulid| EventKey::Ulid(ulid.0),
            )
    }
}

/// What the receivers saw, shared by all of them.
#[derive(Default)]
pub struct Tally {
    /// Secrets by webhook index (the URL path is `/wh/<index>`).
    pub secrets: RwLock<HashMap<usize, Secret>>,
    /// First receipt of each (event, webhook index).
    pub first_seen: Mutex<HashMap<(EventKey, usize), Instant>>,
    pub requests: AtomicU64,
    pub duplicates: AtomicU64,
    pub bad_signatures: AtomicU64,
    /// Requests of the raw-ceiling run (no signature, not tallied above).
    pub ceiling_requests: AtomicU64,
    /// TLS handshakes completed (`--tls`), the raw ceiling's included.
    pub tls_handshakes: AtomicU64,
    /// Delivery requests (the raw ceiling's not counted) that came in HTTP/2 (`--http2`).
    pub http2_requests: AtomicU64,
    /// Requests the slow accounts' receivers were sent (attempts, not deliveries: they may never answer).
    pub slow_requests: AtomicU64,
}

/// When a receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    After(Duration),
    /// Never: the sender's timeout ends the request.
    Never,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::After(latency) => write!(f, "{}ms", latency.as_millis()),
            Answer::Never => f.write_str("hang"),
        }
    }
}

/// `hang`, or a duration (`250ms`, `3s`).
pub fn parse_answer(text: &str) -> Result<Answer, String> {
    match text {
        "hang" => Ok(Answer::Never),
        _ => kit_webhooks::duration::parse_duration(text).map(Answer::After),
    }
}

/// What a receiver does with a delivery: checks and tallies it, or (a slow account's) only counts it.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub answer: Answer,
    pub slow: bool,
}

impl Tally {
    pub fn unique(&self) -> usize {
        lock(&self.first_seen).len()
    }
}

/// The addresses of `count` receivers: all 127.0.0.1, or with `distinct` one loopback address each
/// (127.0.0.2, 127.0.0.3, …), so that each is a host of its own for the daemon.
pub fn hosts(count: usize, distinct: bool) -> Vec<IpAddr> {
    (0..count)
        .map(|n| match distinct {
            false => IpAddr::V4(Ipv4Addr::LOCALHOST),
            // 127.0.0.0/8 is loopback whole; .0, .1 and .255 of each /24 are left out.
            true => {
                let n = n as u32;
                let (high, low) = (n / 253, n % 253 + 2);
                IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + (high << 8) + low))
            }
        })
        .collect()
}

/// Starts a receiver on each of `hosts`, serving HTTPS with the host's certificate of `tls`; returns their
/// base URLs.
pub async fn start(
    hosts: &[IpAddr],
    behaviour: Behaviour,
    tally: Arc<Tally>,
    tls: Option<&BenchTls>,
) -> anyhow::Result<Vec<String>> {
    let mut urls = Vec::with_capacity(hosts.len());
    let scheme = if tls.is_some() { "https" } else { "http" };
    for host in hosts {
        let listener = TcpListener::bind((*host, 0)).await?;
        urls.push(format!("{scheme}://{}", listener.local_addr()?));
        let tally = tally.clone();
        let acceptor = match tls {
            Some(tls) => Some(tokio_rustls::TlsAcceptor::from(tls.server(*host)?)),
            None => None,
        };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors, most likely: give connections time to close.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (tally, acceptor) = (tally.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service = {
                        let tally = tally.clone();
                        service_fn(move |request| {
                            let tally = tally.clone();
                            async move { Ok::<_, Infallible>(receive(request, &tally, behaviour).await) }
                        })
                    };
                    let http = hyper::server::conn::http1::Builder::new();
                    let Some(acceptor) = acceptor else {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        return;
                    };
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    tally.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        // hyper's default stream limit (200 at once), as a hyper endpoint would have.
                        let http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                        let _ = http2.serve_connection(TokioIo::new(stream), service).await;
                        return;
                    }
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
    }
    Ok(urls)
}

async fn receive(
    request: Request<Incoming>,
    tally: &Tally,
    behaviour: Behaviour,
) -> Response<Empty<Bytes>> {
    let (head, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let now = Instant::now();
    let path = head.uri.path();
    if behaviour.slow {
        tally.slow_requests.fetch_add(1, Ordering::Relaxed);
    } else if path == "/ceiling" {
        tally.ceiling_requests.fetch_add(1, Ordering::Relaxed);
    } else if let Some(index) = path
        .strip_prefix("/wh/")
        .and_then(|i| i.parse::<usize>().ok())
    {
        tally.requests.fetch_add(1, Ordering::Relaxed);
        if head.version == hyper::Version::HTTP_2 {
            tally.http2_requests.fetch_add(1, Ordering::Relaxed);
        }
        let header = |name| {
            head.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        let id = header(signature::WEBHOOK_ID);
        let verified = tally.secrets.read().ok().and_then(|secrets| {
            let secret = secrets.get(&index)?;
            secret
                .verify(
                    id,
                    header(signature::WEBHOOK_TIMESTAMP),
                    header(signature::WEBHOOK_SIGNATURE),
                    &body,
                    signature::unix_now(),
                    signature::DEFAULT_TOLERANCE_SECONDS,
                )
                .ok()
        });
        if verified.is_none() {
            tally.bad_signatures.fetch_add(1, Ordering::Relaxed);
        }
        let key = (EventKey::of(id), index);
        if lock(&tally.first_seen).insert(key, now).is_some() {
            tally.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }
    match behaviour.answer {
        Answer::After(latency) if !latency.is_zero() => tokio::time::sleep(latency).await,
        Answer::After(_) => {}
        Answer::Never => std::future::pending().await,
    }
    Response::new(Empty::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// Posts `body` to `url` signed with `secret` as event `id`.
    async fn post(url: &str, id: &str, secret: &str, body: &'static [u8]) {
        let now = signature::unix_now();
        let signed = signature::signature_header(&[secret.into()], id, now, body).unwrap();
        let request = hyper::Request::post(url)
            .header(signature::WEBHOOK_ID, id)
            .header(signature::WEBHOOK_TIMESTAMP, now.to_string())
            .header(signature::WEBHOOK_SIGNATURE, signed)
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }

    #[tokio::test]
    async fn receivers_verify_every_signature_and_count_each_receipt_once() {
        let tally = Arc::new(Tally::default());
        let prompt = Behaviour {
            answer: Answer::After(Duration::ZERO),
            slow: false,
        };
        let urls = start(&hosts(1, false), prompt, tally.clone(), None)
            .await
            .unwrap();
        tally
            .secrets
            .write()
            .unwrap()
            .insert(0, Secret::parse(SECRET).unwrap());
        let hook = format!("{}/wh/0", urls[0]);
        let event = "evt_01JDQ2Z8V5KX3YB1M6R0T4N7PA";
        post(&hook, event, SECRET, b"{}").await;
        post(&hook, event, SECRET, b"{}").await;
        post(&hook, "custom-id", SECRET, b"{}").await;
        post(&hook, "evt_other", "whsec_b3RoZXItc2VjcmV0", b"{}").await;

        assert_eq!(tally.requests.load(Ordering::Relaxed), 4);
        assert_eq!(tally.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(tally.bad_signatures.load(Ordering::Relaxed), 1);
        let seen = tally.first_seen.lock().unwrap();
        assert!(seen.contains_key(&(EventKey::of(event), 0)));
        assert!(seen.contains_key(&(EventKey::Other("custom-id".into()), 0)));
        assert_eq!(seen.len(), 3);
        assert!(matches!(EventKey::of(event), EventKey::Ulid(_)));
    }
}
