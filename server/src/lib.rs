//! The Kit Webhooks control plane: a tonic gRPC server over SeaORM storage.
//!
//! Layout (svix-server's shape): [`api`] is the gRPC layer, [`core`] the domain rules, [`store`] the database.
//! [`start`] runs the whole server on a bound socket; `main.rs` wraps it in the `kit-webhooks-server` command.

pub mod api;
pub mod config;
pub mod core;
pub mod keys;
pub mod store;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use kit_webhooks::proto;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;

pub use config::Config;
pub use store::Store;

use api::{auth::Authenticator, AppState};

/// A server running in this process.
pub struct RunningServer {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    pub store: Store,
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
    let store = Store::connect(&config.database_url)
        .await
        .with_context(|| format!("connecting to {}", config.database_url))?;
    store.migrate().await.context("migrating the database")?;
    let key_file = config.key_file_path();
    if keys::bootstrap(&store, &key_file).await? {
        tracing::info!(
            key_file = %key_file.display(),
            "new database: created an admin key (account `{}`) and a publisher key",
            keys::DEFAULT_ACCOUNT
        );
    }

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState {
        auth: Authenticator::new(store.clone()),
        store: store.clone(),
        config,
        deliveries_changed: Default::default(),
        attempt_recorded: Default::default(),
    });

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<proto::webhook_service_server::WebhookServiceServer<api::webhooks::WebhookApi>>()
        .await;
    health_reporter
        .set_serving::<proto::event_service_server::EventServiceServer<api::events::EventApi>>()
        .await;
    health_reporter
        .set_serving::<proto::delivery_service_server::DeliveryServiceServer<api::deliveries::DeliveryApi>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(proto::webhook_service_server::WebhookServiceServer::new(
            api::webhooks::WebhookApi::new(state.clone()),
        ))
        .add_service(proto::event_service_server::EventServiceServer::new(
            api::events::EventApi::new(state.clone()),
        ))
        .add_service(proto::delivery_service_server::DeliveryServiceServer::new(
            api::deliveries::DeliveryApi::new(state.clone()),
        ));

    let (tx, rx) = oneshot::channel::<()>();
    let stop = async move {
        tokio::select! {
            _ = rx => {}
            _ = signal => {}
        }
    };
    tracing::info!(%addr, "Kit Webhooks server listening");
    let task_store = store.clone();
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop)
            .await
            .context("gRPC server failed")?;
        task_store.close().await;
        tracing::info!("server stopped");
        Ok(())
    });
    Ok(RunningServer {
        addr,
        store,
        shutdown: Some(tx),
        task,
    })
}
