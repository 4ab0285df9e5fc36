//! The Kit Webhooks control plane: a tonic gRPC server over SeaORM storage.
//!
//! Layout (svix-server's shape), each module depending only on those before it: [`core`] the domain rules,
//! [`store`] the database, [`writer`] the one committer of the delivery path's writes, [`streams`] the daemon
//! streams open here, [`state`] what everything shares, [`dispatch`] the worker that feeds the streams, and
//! [`api`] the gRPC layer. [`idle`] closes silent connections, [`replicas`] wakes the streams of servers that
//! share a database. [`metrics`] counts what happens and [`probe`] answers the monitoring listener's
//! questions (`--metrics-listen`); [`retention`] prunes old history; [`secrets`] holds the keys that seal
//! signing secrets. [`start`] runs the whole server on a
//! bound socket; `main.rs` wraps it in the `kit-webhooks-server` command. docs/ARCHITECTURE.md follows a
//! delivery through all of them.

pub mod api;
pub mod config;
pub mod core;
pub mod dispatch;
pub mod idle;
pub mod keys;
pub mod metrics;
pub mod probe;
pub mod replicas;
pub mod retention;
pub mod secrets;
pub mod state;
pub mod store;
pub mod streams;
pub mod watch;
pub mod writer;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use futures::StreamExt;
use kit_webhooks::proto;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use store::Store;

use api::auth::{Authenticator, Principal};
use core::Role;
use state::AppState;

/// Calls one HTTP/2 connection may have open at once (a daemon needs its stream and a few report calls).
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// A server running in this process.
pub struct RunningServer {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    pub store: Store,
    /// The keys its webhooks' secrets are sealed with.
    pub secrets: core::sealing::Keyring,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting calls, lets running ones finish, and waits for the server to end.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.context("server task panicked")?
    }

    /// Waits for the server to end on its own (or because `signal` given to [`start_with_signal`] fired).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task panicked")?
    }
}

/// Waits, after the streams were told to end, until the leases they kept have all been reported (or passed
/// to the daemons' next streams), at most `shutdown_grace`. A lease left then waits for its daemon's next
/// stream, on another server or this one restarted, or expires.
async fn drain(state: &AppState) {
    let deadline = tokio::time::Instant::now() + state.config.shutdown_grace;
    let mut outstanding = 0;
    while tokio::time::Instant::now() < deadline {
        outstanding = 0;
        if state.streams.open_count() == 0 {
            for owner in state.streams.kept() {
                outstanding += state.store.count_leases(&owner).await.unwrap_or(1);
            }
            if outstanding == 0 {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tracing::warn!(leases = outstanding, "shutdown grace over with deliveries still unreported; their daemons report them to the next server");
}

/// Connects to the database, migrates it, creates the first keys if it is new, binds `config.listen` and
/// serves until [`RunningServer::shutdown`].
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    start_with_signal(config, futures::future::pending()).await
}

/// As [`start`], also stopping when `signal` completes (SIGINT/SIGTERM in `main`).
pub async fn start_with_signal(
    config: Config,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningServer> {
    config.validate()?;
    // Before any metric is registered, so that the handles record into it.
    if config.metrics_listen.is_some() {
        kit_webhooks::monitoring::install()?;
    }
    let (store, secrets) = open_store(&config).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (admission, auth, message_limits, embedded) = admission(&config, &store);
    let metrics = metrics::Metrics::register();
    let state = Arc::new(AppState {
        writer: writer::Writer::spawn(store.clone(), write_rules(&config), metrics.writer.clone()),
        metrics,
        secrets: secrets.clone(),
        store: store.clone(),
        config,
        deliveries_changed: Default::default(),
        attempt_recorded: Default::default(),
        streams: Default::default(),
        watchers: Default::default(),
        shutdown: Default::default(),
    });
    start_background_tasks(&state).await?;
    let router = tonic::transport::Server::builder()
        // Browsers speak gRPC-Web, over HTTP/1.1 as well as HTTP/2 (`api::web`).
        .accept_http1(true)
        // What one connection may hold: streams at once, and (tonic's default windows, 64 KiB) unread bytes.
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .timeout(state.config.call_timeout())
        // Outermost first: a browser's call gets CORS and becomes gRPC, then admission as for any call.
        .layer(api::web::BrowserLayer::new(&state.config.cors_origins))
        .layer(api::calls::CallsLayer {
            recording: state.config.metrics_listen.is_some(),
        })
        .layer(admission);
    let router = add_services(router, &state, auth, message_limits).await?;
    let daemon = match embedded {
        Some((options, token)) => Some(spawn_embedded_daemon(
            addr,
            options,
            token,
            state.config.shutdown_grace,
        )?),
        None => None,
    };

    let (tx, rx) = oneshot::channel::<()>();
    let asked = CancellationToken::new();
    let monitoring_ended = serve_monitoring(&state, &asked)?;
    let stop = stopping(state.clone(), daemon, {
        let asked = asked.clone();
        async move {
            tokio::select! {
                _ = rx => {}
                _ = signal => {}
            }
            asked.cancel();
        }
    });
    tracing::info!(%addr, "Kit Webhooks server listening");
    let task_store = store.clone();
    // No Nagle: small stream messages and replies must leave at once, not wait for a delayed ACK.
    // A connection whose client is gone or silent is closed after a while (`idle`).
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(|accepted| accepted.map(|stream| idle::IdleTimeout::new(stream, idle::IDLE_TIMEOUT)));
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, stop)
            .await
            .context("gRPC server failed")?;
        monitoring_ended.cancel();
        task_store.close().await;
        tracing::info!("server stopped");
        Ok(())
    });
    Ok(RunningServer {
        addr,
        store,
        secrets,
        shutdown: Some(tx),
        task,
    })
}

/// The server's shutdown, once `asked`: the embedded daemon finishes and reports what it has in flight
/// while the server still listens; then every other stream ends, keeping its leases, and the server goes on
/// recording reports until their daemons have reported them all (or the grace is over), then stops.
async fn stopping(
    state: Arc<AppState>,
    daemon: Option<kit_webhooks_daemon::Daemon>,
    asked: impl Future<Output = ()>,
) {
    asked.await;
    if let Some(daemon) = daemon {
        if let Err(err) = daemon.shutdown().await {
            tracing::error!(error = %err, "embedded daemon failed");
        }
    }
    state.shutdown.cancel();
    drain(&state).await;
}

/// The layer that authenticates calls and bounds their bytes, its authenticator, the calls' message limits,
/// and, with `--with-daemon`, the embedded daemon's options and its key (which lives in this process's
/// memory only).
fn admission(
    config: &Config,
    store: &Store,
) -> (
    api::admission::AdmissionLayer,
    Arc<Authenticator>,
    api::admission::MessageLimits,
    Option<(kit_webhooks_daemon::Options, String)>,
) {
    let mut auth = Authenticator::new(store.clone());
    // The embedded daemon's key lives in this process's memory only.
    let embedded = config.embedded_daemon.clone().map(|options| {
        let key_id = "embedded";
        let key = core::secret::new_api_key(key_id);
        let daemon = Principal {
            key_id: key_id.into(),
            role: Role::Daemon,
            account_id: None,
            expires_at: None,
        };
        auth.add_in_memory_key(&key, daemon);
        (options, key)
    });
    let message_limits = api::admission::MessageLimits {
        events: config.max_publish_message_bytes(),
        payload: config.max_payload_bytes,
    };
    let auth = Arc::new(auth);
    let admission = api::admission::AdmissionLayer::new(
        auth.clone(),
        api::admission::Budget::new(config.max_bytes_in_flight),
        message_limits,
    );
    (admission, auth, message_limits, embedded)
}

/// With `--metrics-listen`, serves the monitoring listener (`probe`) until the returned token is cancelled;
/// `asked` is cancelled as soon as the server is asked to stop.
fn serve_monitoring(
    state: &Arc<AppState>,
    asked: &CancellationToken,
) -> anyhow::Result<CancellationToken> {
    let ended = CancellationToken::new();
    if let Some(listen) = state.config.metrics_listen {
        let probe = probe::ServerProbe {
            state: state.clone(),
            stopping: asked.clone(),
        };
        kit_webhooks::monitoring::serve(listen, Arc::new(probe), ended.clone())?;
    }
    Ok(ended)
}

/// Connects to the database, migrates it, on a new database writes the first keys, and opens the keys that
/// seal its secrets.
async fn open_store(config: &Config) -> anyhow::Result<(Store, core::sealing::Keyring)> {
    let store = Store::connect_with(&config.database_url, config.database_max_connections)
        .await
        .with_context(|| format!("connecting to {}", store::redacted(&config.database_url)))?;
    store.migrate().await.context("migrating the database")?;
    let key_file = config.key_file_path();
    if keys::bootstrap(&store, &key_file).await? {
        tracing::info!(
            key_file = %key_file.display(),
            "new database: created an admin key (account `{}`) and a publisher key",
            keys::DEFAULT_ACCOUNT
        );
    }
    let secrets = secrets::open(
        &store,
        &config.secrets_key_files,
        &config.default_secrets_key_file(),
    )
    .await?;
    Ok((store, secrets))
}

fn write_rules(config: &Config) -> store::writes::WriteRules {
    store::writes::WriteRules {
        retry: config.retry.clone(),
        caps: config.lease_caps(),
        lease_ttl_ms: config.lease_ttl().as_millis() as i64,
    }
}

/// Returns expired leases to the queue, then starts the lease sweeper, the WAL checkpointer, retention and
/// the replica wake-ups.
async fn start_background_tasks(state: &Arc<AppState>) -> anyhow::Result<()> {
    let store = &state.store;
    // Leases left behind by a server that died come back before the first stream opens.
    let expired = store.expire_leases(core::time::now_ms()).await?;
    if expired > 0 {
        tracing::warn!(leases = expired, "returned expired leases to the queue");
    }
    tokio::spawn(dispatch::sweep_expired_leases(state.clone()));
    tokio::spawn(store.clone().checkpoint_wal(state.shutdown.clone()));
    if !state.config.retention.is_zero() || !state.config.audit_retention.is_zero() {
        tokio::spawn(retention::run(
            store.clone(),
            state.config.retention,
            state.config.audit_retention,
            state.metrics.clone(),
            state.shutdown.clone(),
        ));
    }
    tokio::spawn(replicas::run(
        store.clone(),
        state.config.database_url.clone(),
        state.deliveries_changed.clone(),
        state.shutdown.clone(),
    ));
    Ok(())
}

/// The services, each with its message limit, with health and reflection beside them, and the console.
async fn add_services<L>(
    mut server: tonic::transport::Server<L>,
    state: &Arc<AppState>,
    auth: Arc<Authenticator>,
    message_limits: api::admission::MessageLimits,
) -> anyhow::Result<tonic::transport::server::Router<L>>
where
    L: Clone,
{
    use proto::{
        api_key_service_server::ApiKeyServiceServer, audit_service_server::AuditServiceServer,
        delivery_service_server::DeliveryServiceServer, event_service_server::EventServiceServer,
        webhook_service_server::WebhookServiceServer,
    };
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<WebhookServiceServer<api::webhooks::WebhookApi>>()
        .await;
    health_reporter
        .set_serving::<EventServiceServer<api::events::EventApi>>()
        .await;
    health_reporter
        .set_serving::<DeliveryServiceServer<api::deliveries::DeliveryApi>>()
        .await;
    health_reporter
        .set_serving::<ApiKeyServiceServer<api::keys::ApiKeyApi>>()
        .await;
    health_reporter
        .set_serving::<AuditServiceServer<api::audit::AuditApi>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = tonic::service::Routes::default()
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(
            WebhookServiceServer::new(api::webhooks::WebhookApi::new(state.clone()))
                .max_decoding_message_size(api::admission::MessageLimits::WEBHOOKS),
        )
        .add_service(
            EventServiceServer::new(api::events::EventApi::new(state.clone()))
                .max_decoding_message_size(message_limits.events),
        )
        .add_service(
            DeliveryServiceServer::new(api::deliveries::DeliveryApi::new(state.clone()))
                .max_decoding_message_size(api::admission::MessageLimits::DELIVERIES),
        )
        .add_service(
            ApiKeyServiceServer::new(api::keys::ApiKeyApi::new(state.clone(), auth))
                .max_decoding_message_size(api::admission::MessageLimits::WEBHOOKS),
        )
        .add_service(
            AuditServiceServer::new(api::audit::AuditApi::new(state.clone()))
                .max_decoding_message_size(api::admission::MessageLimits::WEBHOOKS),
        );
    // The console's page beside the services, on the same listener (`api::console`).
    let routes =
        tonic::service::Routes::from(routes.into_axum_router().merge(api::console::routes()));
    Ok(server.add_routes(routes))
}

/// The daemon inside this process, streaming from this server at `addr` with the in-memory `token`, stopping
/// within the server's own grace. Its metrics go to the server's listener.
fn spawn_embedded_daemon(
    addr: SocketAddr,
    options: kit_webhooks_daemon::Options,
    token: String,
    shutdown_grace: std::time::Duration,
) -> anyhow::Result<kit_webhooks_daemon::Daemon> {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    kit_webhooks_daemon::spawn(kit_webhooks_daemon::Config {
        server: format!("http://{target}"),
        token,
        daemon_id: "embedded".into(),
        options,
        metrics_listen: None,
        shutdown_grace,
    })
}
