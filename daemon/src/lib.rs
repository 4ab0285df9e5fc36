//! The Kit Webhooks delivery daemon. It owns no state: it opens `StreamDeliveries` on a server, sends each
//! leased task (waiting for its endpoint's rate limit, signing, connecting only to vetted addresses) and
//! reports every attempt (in batches, with `ReportDeliveries`).
//!
//! - [`address`]: which IP addresses deliveries may reach (the SSRF rule).
//! - [`allocator`]: when freed memory goes back to the system (mimalloc's purge delay; collected as the
//!   runtime's threads go idle), for this process and the server's.
//! - `attempt`: one attempt's life, from its lease (waiting for its limits and a slot) to its report.
//! - [`connector`]: connects to vetted addresses only.
//! - `lanes`: the request slots, a prompt lane and a slow one, so late endpoints cannot crowd out the rest.
//! - `leases`: which leases the daemon works on, across its streams.
//! - [`limiter`]: per-endpoint rate limits, and each host's and account's share of the requests.
//! - `registry`: per-endpoint state (limits, marks) that is dropped once idle.
//! - `metrics`: what the daemon counts, and `probe`: what its `/readyz` answers (`--metrics-listen`).
//! - `options`: how a daemon delivers ([`Options`], its flags), whichever process it runs in.
//! - [`sender`]: signs and sends one task, and describes the outcome.
//! - `origins`: what each HTTPS origin speaks, and the HTTP/2 connection its requests share if it does.
//! - `reporter`: reports attempts to the server, batched and retried.
//!
//! [`spawn`] runs a daemon in this process (the server's `--with-daemon` uses it too); `main.rs` wraps it in
//! the `kit-webhooks-daemon` command.

pub mod address;
pub mod allocator;
mod attempt;
pub mod connector;
mod lanes;
mod leases;
mod limiter;
mod metrics;
mod options;
mod origins;
mod probe;
mod registry;
mod reporter;
pub mod sender;

pub use options::Options;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use kit_webhooks::proto::{self, delivery_service_client::DeliveryServiceClient};
use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{
    metadata::MetadataValue,
    service::interceptor::InterceptedService,
    transport::{Channel, ClientTlsConfig, Endpoint},
    Code, Request, Status,
};

use crate::{
    address::AddressGuard, attempt::Attempts, lanes::Lanes, leases::Leases,
    limiter::EndpointLimits, metrics::Metrics, reporter::Reporter, sender::Sender,
};

/// The first and the longest wait between reconnection attempts.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often idle per-endpoint state (rate limiters, shares, slow marks) is dropped, busy or not.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How long a report is retried while the server is unreachable; past this its lease has lapsed anyway.
pub(crate) const REPORT_PATIENCE: Duration = Duration::from_secs(120);

/// How long a stopping daemon waits for its requests in flight by default: longer than a request may take
/// at the server's default timeout (15 s), with time to report it.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A daemon's whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `http://host:port` or `https://…` of a Kit Webhooks server.
    pub server: String,
    /// A `daemon` API key.
    pub token: String,
    /// A name for logs and the server's lease records.
    pub daemon_id: String,
    pub options: Options,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (`kit_webhooks::monitoring`), if anywhere. A daemon
    /// inside the server has none: the server's listener serves its metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// Once stopping, the longest it waits for the requests in flight to finish and be reported; those
    /// still running then are abandoned, and sent again.
    pub shutdown_grace: Duration,
}

/// A daemon running in this process.
pub struct Daemon {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    /// Graceful stop: take no new tasks, finish and report the requests started, then end the stream (its
    /// tasks not started go back to the queue).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await.context("daemon task panicked")?
    }

    /// Waits for the daemon to end (after [`Daemon::stop_token`] is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("daemon task panicked")?
    }

    /// The token that stops the daemon gracefully when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// Starts a daemon in the background.
pub fn spawn(config: Config) -> anyhow::Result<Daemon> {
    config.options.validate()?;
    // Before any metric is registered, so that the handles record into it.
    if config.metrics_listen.is_some() {
        kit_webhooks::monitoring::install()?;
    }
    let metrics = Arc::new(Metrics::register());
    // One crypto provider for the whole process (ring); a second `install_default` is harmlessly refused.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let extra_roots = match &config.options.ca_file {
        Some(path) => {
            use rustls::pki_types::{pem::PemObject, CertificateDer};
            CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading --ca-file {}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("parsing --ca-file {}", path.display()))?
        }
        None => Vec::new(),
    };
    let sender = Sender::new(
        AddressGuard::new(config.options.allow_networks.clone()),
        extra_roots,
        config.options.per_host() as usize,
        metrics.connections_open.clone(),
    )?;
    let channel = endpoint(&config.server)?.connect_lazy();
    let token: MetadataValue<_> = format!("Bearer {}", config.token)
        .parse()
        .context("the token must be printable ASCII")?;
    let service = InterceptedService::new(channel, Auth(token));
    let client = DeliveryServiceClient::new(service.clone());
    let stop = CancellationToken::new();
    let lanes = Arc::new(Lanes::new(
        config.options.max_in_flight,
        config.options.max_slow(),
        metrics.requests_slow.clone(),
    ));
    let limits = Arc::new(EndpointLimits::new(
        config.options.per_host(),
        config.options.per_account(),
    ));
    let leases = Arc::new(Leases::default());
    // The monitoring listener answers until the daemon has ended, its grace included.
    let ended = CancellationToken::new();
    if let Some(listen) = config.metrics_listen {
        let probe = probe::DaemonProbe {
            leases: leases.clone(),
            stop: stop.clone(),
        };
        kit_webhooks::monitoring::serve(listen, Arc::new(probe), ended.clone())?;
    }
    let worker = Worker {
        config,
        client,
        stop: stop.clone(),
        in_flight: TaskTracker::new(),
        attempts: Arc::new(Attempts {
            sender: Arc::new(sender),
            limits,
            reporter: Reporter::spawn(service, metrics.clone()),
            lanes,
            leases,
            metrics,
        }),
    };
    let task = tokio::spawn(async move {
        let result = worker.run().await;
        ended.cancel();
        result
    });
    Ok(Daemon { stop, task })
}

fn endpoint(server: &str) -> anyhow::Result<Endpoint> {
    let mut endpoint = Endpoint::from_shared(server.to_owned())
        .with_context(|| format!("`{server}` is not a server URL"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if server.starts_with("https://") {
        endpoint = endpoint.tls_config(ClientTlsConfig::new().with_enabled_roots())?;
    }
    Ok(endpoint)
}

#[derive(Clone)]
pub(crate) struct Auth(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Client = DeliveryServiceClient<InterceptedService<Channel, Auth>>;

struct Worker {
    config: Config,
    client: Client,
    stop: CancellationToken,
    in_flight: TaskTracker,
    /// What each attempt uses: the sender, limits, request slots, leases, reporter and metrics.
    attempts: Arc<Attempts>,
}

/// How following a stream ended.
#[derive(Debug, PartialEq, Eq)]
enum Followed {
    /// The server ended it, or it failed: open another.
    Ended,
    /// The daemon was asked to stop, and has finished what was in flight.
    Stopped,
}

/// The stream name in `metadata`, if the server gave one.
fn stream_id(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get(kit_webhooks::STREAM_ID_METADATA)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

impl Worker {
    async fn run(self) -> anyhow::Result<()> {
        self.sweep_idle();
        let mut backoff = FIRST_BACKOFF;
        while !self.stop.is_cancelled() {
            let options = &self.config.options;
            let (previous_stream_id, started) = self.attempts.leases.previous();
            let request = proto::StreamDeliveriesRequest {
                daemon_id: self.config.daemon_id.clone(),
                max_in_flight: options.max_in_flight.saturating_add(options.prefetch),
                previous_stream_id,
                started,
            };
            let mut client = self.client.clone();
            let opened = tokio::select! {
                opened = client.stream_deliveries(request) => opened,
                _ = self.stop.cancelled() => break,
            };
            match opened {
                Ok(response) => {
                    backoff = FIRST_BACKOFF;
                    if self.follow(response).await == Followed::Stopped {
                        return Ok(());
                    }
                }
                Err(status)
                    if status.code() == Code::Unauthenticated
                        || status.code() == Code::PermissionDenied =>
                {
                    anyhow::bail!("the server refused the daemon's key: {}", status.message());
                }
                // The same request would be refused again: retrying forever would deliver nothing.
                Err(status) if status.code() == Code::InvalidArgument => {
                    anyhow::bail!(
                        "the server refused the delivery stream: {}",
                        status.message()
                    );
                }
                Err(status) => {
                    if let Some(stream) = stream_id(status.metadata()) {
                        self.attempts.leases.renamed(stream);
                    }
                    tracing::warn!(
                        server = %self.config.server,
                        error = %status.message(),
                        retry_in = ?backoff,
                        "cannot open the delivery stream"
                    );
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.cancelled() => break,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        self.finish_in_flight().await;
        Ok(())
    }

    /// Drops idle per-endpoint state every [`SWEEP_EVERY`] until the daemon stops, so that a daemon that has
    /// gone quiet gives back what its busy time made.
    fn sweep_idle(&self) {
        let (limits, lanes, sender, stop) = (
            self.attempts.limits.clone(),
            self.attempts.lanes.clone(),
            self.attempts.sender.clone(),
            self.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(SWEEP_EVERY) => {}
                    _ = stop.cancelled() => return,
                }
                limits.prune();
                lanes.prune();
                sender.prune();
            }
        });
    }

    /// Starts the tasks of an open stream until it ends (then the caller reconnects) or the daemon stops.
    async fn follow(
        &self,
        response: tonic::Response<tonic::Streaming<proto::DeliveryTask>>,
    ) -> Followed {
        let generation = self.attempts.leases.opened(stream_id(response.metadata()));
        if generation > 1 {
            self.attempts.metrics.stream_reconnects.increment(1);
        }
        self.attempts.metrics.stream_open.set(1.0);
        tracing::info!(server = %self.config.server, "delivery stream open");
        let mut stream = response.into_inner();
        let followed = loop {
            tokio::select! {
                // Stop taking tasks first; the stream stays open until in-flight ones are reported.
                biased;
                _ = self.stop.cancelled() => break Followed::Stopped,
                message = stream.message() => match message {
                    Ok(Some(task)) => self.start(task, generation),
                    Ok(None) => {
                        tracing::warn!("the server ended the delivery stream; reconnecting");
                        break Followed::Ended;
                    }
                    Err(status) => {
                        tracing::warn!(code = ?status.code(), error = %status.message(), "delivery stream failed; reconnecting");
                        break Followed::Ended;
                    }
                }
            }
        };
        self.attempts.leases.closed();
        self.attempts.metrics.stream_open.set(0.0);
        if followed == Followed::Stopped {
            // Requests started are finished and reported while the stream stays open; tasks not started go
            // back to the queue when it ends, for another daemon to send.
            self.finish_in_flight().await;
        }
        followed
    }

    /// Waits for the requests started to finish and be reported, at most the shutdown grace; those still
    /// running then are abandoned, and sent again (the server returns the stream's leases to the queue).
    async fn finish_in_flight(&self) {
        self.in_flight.close();
        if !self.in_flight.is_empty() {
            tracing::info!(
                tasks = self.in_flight.len(),
                grace = ?self.config.shutdown_grace,
                "finishing in-flight deliveries before exiting"
            );
        }
        let grace = self.config.shutdown_grace;
        if tokio::time::timeout(grace, self.in_flight.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.in_flight.len(),
                "shutdown grace over: exiting with deliveries unreported; they will be sent again"
            );
        }
    }

    /// Sends one task on its own tokio task (`attempt`).
    fn start(&self, task: proto::DeliveryTask, generation: u64) {
        self.attempts.metrics.leases_ready.increment(1.0);
        self.in_flight
            .spawn(self.attempts.clone().run(Box::new(task), generation));
    }
}
