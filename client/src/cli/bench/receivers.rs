//! The benchmark's receivers: plain hyper HTTP/1.1 servers on loopback that answer 200 (after an optional
//! latency), verify every signature, and record when each (event, webhook) pair first arrived.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use kit_webhooks::signature;
use tokio::net::TcpListener;

/// What the receivers saw, shared by all of them.
#[derive(Default)]
pub struct Tally {
    /// Secrets by webhook index (the URL path is `/wh/<index>`).
    pub secrets: Mutex<HashMap<usize, String>>,
    /// First receipt of each (event id, webhook index).
    pub first_seen: Mutex<HashMap<(String, usize), Instant>>,
    pub requests: AtomicU64,
    pub duplicates: AtomicU64,
    pub bad_signatures: AtomicU64,
    /// Requests of the raw-ceiling run (no signature, not tallied above).
    pub ceiling_requests: AtomicU64,
}

impl Tally {
    pub fn unique(&self) -> usize {
        self.first_seen.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Starts `count` receivers; returns their base URLs.
pub async fn start(
    count: usize,
    latency: Duration,
    tally: Arc<Tally>,
) -> anyhow::Result<Vec<String>> {
    let mut urls = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        urls.push(format!("http://{}", listener.local_addr()?));
        let tally = tally.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors, most likely: give connections time to close.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let tally = tally.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let tally = tally.clone();
                        async move { Ok::<_, Infallible>(receive(request, &tally, latency).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }
    Ok(urls)
}

async fn receive(
    request: Request<Incoming>,
    tally: &Tally,
    latency: Duration,
) -> Response<Empty<Bytes>> {
    let path = request.uri().path().to_owned();
    let signed = signature::SignedHeaders::read(|name| {
        request.headers().get(name).and_then(|v| v.to_str().ok())
    });
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let now = Instant::now();
    if path == "/ceiling" {
        tally.ceiling_requests.fetch_add(1, Ordering::Relaxed);
    } else if let Some(index) = path
        .strip_prefix("/wh/")
        .and_then(|i| i.parse::<usize>().ok())
    {
        tally.requests.fetch_add(1, Ordering::Relaxed);
        let secret = tally
            .secrets
            .lock()
            .ok()
            .and_then(|s| s.get(&index).cloned())
            .unwrap_or_default();
        let verified = signed.verify(&secret, &body);
        if verified.is_err() {
            tally.bad_signatures.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut seen) = tally.first_seen.lock() {
            if seen.insert((signed.id, index), now).is_some() {
                tally.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Response::new(Empty::new())
}
