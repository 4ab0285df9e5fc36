//! The raw ceiling: the same receivers, hit directly by a plain hyper client with the same concurrency and
//! body size (over HTTPS with keep-alive, trusting the run's CA, with `--tls`): what the machine can do with
//! no pipeline at all, measured in the same run as the pipeline.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{
        connect::{Connect, HttpConnector},
        Client,
    },
    rt::TokioExecutor,
};

use super::processes;

/// The longest one raw-ceiling request may take (well past any `--latency`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What one raw-ceiling run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ceiling {
    pub per_second: f64,
    /// The whole machine's CPU per request (µs), where `/proc/stat` tells: the bench's client and receivers,
    /// the kernel's loopback work, and whatever else ran meanwhile.
    pub machine_us_per_request: Option<f64>,
}

/// Requests per second over `duration` with `concurrency` requests in flight, spread over `receivers`
/// (`https://` ones with `tls`, offering HTTP/2 too when its flag is set, as the daemon does).
pub async fn measure(
    receivers: &[String],
    concurrency: usize,
    body_bytes: usize,
    duration: Duration,
    tls: Option<(rustls::ClientConfig, bool)>,
) -> anyhow::Result<Ceiling> {
    let machine_before = processes::machine_ticks();
    let (requests, seconds) = send(receivers, concurrency, body_bytes, duration, tls).await?;
    let machine_us_per_request = processes::machine_since(machine_before)
        .filter(|_| requests > 0)
        .map(|machine| machine.cpu_seconds * 1e6 / requests as f64);
    Ok(Ceiling {
        per_second: requests as f64 / seconds.max(1e-9),
        machine_us_per_request,
    })
}

/// The ceiling's requests: how many were answered, in how many seconds.
async fn send(
    receivers: &[String],
    concurrency: usize,
    body_bytes: usize,
    duration: Duration,
    tls: Option<(rustls::ClientConfig, bool)>,
) -> anyhow::Result<(u64, f64)> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_max_idle_per_host(concurrency);
    let load = Load {
        receivers,
        concurrency,
        body_bytes,
        duration,
    };
    match tls {
        None => load.run(builder.build(connector)).await,
        Some((tls, http2)) => {
            connector.enforce_http(false);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_only()
                .enable_http1();
            let connector = match http2 {
                true => https.enable_http2().wrap_connector(connector),
                false => https.wrap_connector(connector),
            };
            load.run(builder.build(connector)).await
        }
    }
}

/// What the ceiling run sends, whichever client (plain or HTTPS) sends it.
struct Load<'a> {
    receivers: &'a [String],
    concurrency: usize,
    body_bytes: usize,
    duration: Duration,
}

impl Load<'_> {
    async fn run<C: Connect + Clone + Send + Sync + 'static>(
        self,
        client: Client<C, Full<Bytes>>,
    ) -> anyhow::Result<(u64, f64)> {
        let Load {
            receivers,
            concurrency,
            body_bytes,
            duration,
        } = self;
        let body = Bytes::from(vec![b'x'; body_bytes]);
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = started + duration;
        let mut workers = Vec::with_capacity(concurrency);
        for worker in 0..concurrency {
            let (client, body, done) = (client.clone(), body.clone(), done.clone());
            let url = format!("{}/ceiling", receivers[worker % receivers.len()]);
            workers.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let request = hyper::Request::post(url.as_str())
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))?;
                    // A receiver that cannot accept (out of file descriptors) must fail the run, not hang it.
                    let exchange = async {
                        let response = client.request(request).await?;
                        response.into_body().collect().await?;
                        Ok::<_, anyhow::Error>(())
                    };
                    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                        .await
                        .map_err(|_| {
                            anyhow::anyhow!(
                                "a raw-ceiling request got no answer within {REQUEST_TIMEOUT:?} \
                                 (too many connections for the open-file limit?)"
                            )
                        })??;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        for worker in workers {
            worker.await??;
        }
        Ok((
            done.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64(),
        ))
    }
}
