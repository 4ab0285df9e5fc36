//! The monitoring listener of the server and the daemon (`--metrics-listen ADDR`): Prometheus scrapes
//! `GET /metrics`, and probes ask `GET /healthz` (the process is alive and answering) and `GET /readyz` (it
//! can do its work now; each process says what that means through [`Probe`]).
//!
//! It is plain HTTP/1.1 on an address of its own, apart from the API: a scrape or a probe needs no key and
//! never queues behind API calls, and the address can stay inside the cluster while the API is exposed.
//!
//! Metrics are recorded through the `metrics` facade wherever they happen; [`install`] puts the Prometheus
//! recorder behind the facade, once per process. Without it (no `--metrics-listen`) every record is a no-op,
//! so a process that is not watched pays nothing for it.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Buckets of every `*_seconds` histogram: from half a millisecond (a commit, a report) to the longest a
/// delivery request may take.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of the histograms that count things (`*_writes`): powers of two up to a writer cycle's largest.
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];
/// How often recorded histogram samples are folded into their buckets between scrapes, which bounds the
/// memory they take when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// The content type of Prometheus' text exposition format.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `/readyz` answers: ready, or not and why (the reason is the body of the 503, for whoever looks).
pub type Readiness = Result<(), String>;

/// A process's side of the probes and the scrape.
pub trait Probe: Send + Sync + 'static {
    /// Whether the process can do its work now.
    fn ready(&self) -> impl Future<Output = Readiness> + Send;

    /// Brings up to date, just before a scrape renders them, the gauges that are read rather than recorded
    /// (the server's due deliveries come from the database): nobody pays for them unless someone scrapes.
    fn before_scrape(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Puts the Prometheus recorder behind the `metrics` facade, the first time it is called in the process, and
/// returns its handle (the same one every time: a server and its embedded daemon share it).
pub fn install() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = crate::sync::lock(&HANDLE);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_writes".into()), COUNT_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| anyhow::anyhow!("another metrics recorder is installed in this process"))?;
    // A thread, not a task: the recorder outlives any one runtime (tests start several in a process).
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .context("starting the metrics upkeep thread")?;
    *installed = Some(handle.clone());
    Ok(handle)
}

/// Installs the recorder, binds `addr` and serves the three paths until `stop` is cancelled. Returns the
/// bound address (useful with port 0). Call it from within the tokio runtime.
pub fn serve<P: Probe>(
    addr: SocketAddr,
    probe: Arc<P>,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let metrics = install()?;
    let bind = || -> std::io::Result<TcpListener> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    };
    let listener = bind().with_context(|| format!("binding --metrics-listen {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "metrics and health on http://{bound}/metrics, /healthz, /readyz");
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        tracing::warn!(error = %err, "accepting a monitoring connection failed");
                        continue;
                    }
                },
                _ = stop.cancelled() => return,
            };
            let (probe, metrics) = (probe.clone(), metrics.clone());
            let service = hyper::service::service_fn(move |request| {
                let (probe, metrics) = (probe.clone(), metrics.clone());
                async move { Ok::<_, Infallible>(answer(&request, &*probe, &metrics).await) }
            });
            tokio::spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                // A scraper that hangs up early is no concern of ours.
                let _ = connection.await;
            });
        }
    });
    Ok(bound)
}

/// The answer to one request.
async fn answer<P: Probe>(
    request: &Request<Incoming>,
    probe: &P,
    metrics: &PrometheusHandle,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match request.uri().path() {
        "/metrics" => {
            probe.before_scrape().await;
            let mut response = text(StatusCode::OK, metrics.render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(EXPOSITION),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match probe.ready().await {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz and /readyz are served here\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
