//! Test harness: a real server on a free port over a real database (a fresh SQLite file, or a fresh
//! PostgreSQL database when `KIT_TEST_DATABASE_URL` is set), and authenticated gRPC clients for it.

#![allow(dead_code)]

pub mod flags;
pub mod monitoring;
pub mod node;
pub mod python;
pub mod receiver;
pub mod signals;

use kit_webhooks::proto::{
    event_service_client::EventServiceClient, webhook_service_client::WebhookServiceClient,
};
use kit_webhooks_server::{core::Role, keys, Config, RunningServer};
use sea_orm::{ConnectionTrait, Database};
use tonic::{metadata::MetadataValue, transport::Channel, Request};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` once per database: `sqlite::name` always, `postgres::name` against
/// `KIT_TEST_DATABASE_URL` (skipped, with a note, when it is unset).
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if std::env::var("KIT_TEST_DATABASE_URL").is_err() {
                        eprintln!("KIT_TEST_DATABASE_URL is not set: skipping the PostgreSQL run");
                        return;
                    }
                    super::$name(super::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A database of its own for one test.
pub struct TestDatabase {
    pub url: String,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the server-level URL and the database name, to drop it afterwards.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("kit-webhooks.db").display());
                TestDatabase {
                    url,
                    _dir: Some(dir),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                let base = std::env::var("KIT_TEST_DATABASE_URL").expect("KIT_TEST_DATABASE_URL");
                let name = format!("kit_test_{:016x}", rand::random::<u64>());
                let admin = Database::connect(&base)
                    .await
                    .expect("connect to KIT_TEST_DATABASE_URL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let _ = admin.close().await;
                let mut url = url::Url::parse(&base).expect("KIT_TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                TestDatabase {
                    url: url.to_string(),
                    _dir: None,
                    postgres: Some((base, name)),
                }
            }
        }
    }

    /// Drops a PostgreSQL test database (SQLite files go with their temp dir).
    pub async fn drop_database(&self) {
        if let Some((base, name)) = &self.postgres {
            if let Ok(admin) = Database::connect(base).await {
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                let _ = admin.close().await;
            }
        }
    }
}

/// The `n` column of the one row `sql` returns (a `COUNT(*) AS n`, typically), read on `db`.
pub async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        sql,
    ))
    .await
    .expect("query")
    .expect("a row")
    .try_get::<i64>("", "n")
    .expect("n")
}

/// A running server with the keys a test needs.
pub struct TestServer {
    pub server: RunningServer,
    /// What it was started with (and restarts with).
    pub config: Config,
    pub db: TestDatabase,
    pub key_file: std::path::PathBuf,
    /// The admin key of account `default`, read from the key file the first start wrote.
    pub admin_key: String,
    /// The publisher key from the same file.
    pub publisher_key: String,
    _key_dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server without an embedded daemon (the test plays the daemon, or stores directly), allowed
    /// to deliver over plain HTTP.
    pub async fn start_without_daemon(backend: Backend) -> TestServer {
        Self::start_with(backend, |config| {
            config.allow_http = true;
            config.embedded_daemon = None;
        })
        .await
    }

    /// Starts a server, letting the test adjust its configuration first.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let db = TestDatabase::new(backend).await;
        let key_dir = tempfile::tempdir().expect("temp dir");
        let key_file = key_dir.path().join("kit-webhooks.keys");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            database_url: db.url.clone(),
            key_file: Some(key_file.clone()),
            // Many tests run at once against one PostgreSQL server (100 connections by default).
            database_max_connections: 3,
            // Tests that play the daemon hold leases they never report: a restart need not wait long.
            shutdown_grace: std::time::Duration::from_secs(3),
            ..Config::default()
        };
        adjust(&mut config);
        let server = kit_webhooks_server::start(config.clone())
            .await
            .expect("server starts");
        let text = std::fs::read_to_string(&key_file).expect("the first start writes the key file");
        TestServer {
            admin_key: kit_webhooks::key_file::read(&text, kit_webhooks::key_file::ADMIN_KEY)
                .expect("admin key in key file"),
            publisher_key: kit_webhooks::key_file::read(
                &text,
                kit_webhooks::key_file::PUBLISHER_KEY,
            )
            .expect("publisher key in key file"),
            server,
            config,
            db,
            key_file,
            _key_dir: key_dir,
        }
    }

    /// Shuts the server down cleanly and starts a new one on the same address, database and settings.
    pub async fn restart(self) -> TestServer {
        self.restart_after(async {}).await
    }

    /// [`restart`](Self::restart), running `between` while the server is down.
    pub async fn restart_after(self, between: impl std::future::Future<Output = ()>) -> TestServer {
        let mut config = self.config.clone();
        config.listen = self.server.addr;
        self.server.shutdown().await.expect("server stops cleanly");
        between.await;
        let server = kit_webhooks_server::start(config.clone())
            .await
            .expect("server restarts");
        TestServer {
            server,
            config,
            ..self
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.server.url())
            .expect("url")
            .connect()
            .await
            .expect("connect to the server")
    }

    pub async fn webhooks(&self) -> WebhookServiceClient<Channel> {
        WebhookServiceClient::new(self.channel().await)
    }

    pub async fn events(&self) -> EventServiceClient<Channel> {
        EventServiceClient::new(self.channel().await)
    }

    /// A new key of `role` (admins of `account`).
    pub async fn key(&self, role: Role, account: Option<&str>) -> String {
        keys::create(&self.server.store, role, account, None, keys::CLI)
            .await
            .expect("create key")
            .1
    }

    pub async fn stop(self) {
        self.server.shutdown().await.expect("server stops cleanly");
        self.db.drop_database().await;
    }
}

/// The repository root, whichever crate's tests ask (the workspace's lock file is there).
pub fn root() -> &'static std::path::Path {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .unwrap_or(crate_dir)
}

/// A binary of the workspace, as `cargo test --workspace` builds it beside the test executables (which are in
/// `target/<profile>/deps/`).
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let test = std::env::current_exe().expect("the test's path");
    let profile_dir = test
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run the suite with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// `message` with `authorization: Bearer key`.
pub fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {key}").parse().expect("ascii key");
    request.metadata_mut().insert("authorization", value);
    request
}

/// Asserts that `result` failed with `code` and a message mentioning `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    needle: &str,
) {
    match result {
        Ok(value) => panic!("expected {code:?} mentioning `{needle}`, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "unexpected code; message: {}",
                status.message()
            );
            assert!(
                status.message().contains(needle),
                "message `{}` does not mention `{needle}`",
                status.message()
            );
        }
    }
}

/// Delivery settings for tests: `http://` allowed, loopback allow-listed, an embedded daemon trusting
/// `ca_file`, retries on a millisecond schedule, short timeouts.
pub fn fast_delivery(config: &mut Config, ca_file: Option<std::path::PathBuf>) {
    config.allow_http = true;
    config.request_timeout = std::time::Duration::from_secs(2);
    config.lease_margin = std::time::Duration::from_secs(1);
    config.retry.schedule = vec![std::time::Duration::from_millis(20); 4];
    config.embedded_daemon = Some(kit_webhooks_daemon::Options {
        max_in_flight: 64,
        allow_networks: vec!["127.0.0.0/8".parse().expect("cidr")],
        ca_file,
        ..Default::default()
    });
}

impl TestServer {
    /// Creates a webhook of account `default` and returns it with its secret.
    pub async fn create_webhook(
        &self,
        url: &str,
        events: &[&str],
    ) -> (kit_webhooks::proto::Webhook, String) {
        self.create_webhook_as(&self.admin_key, url, events).await
    }

    /// Creates a webhook as the admin key `key` (of any account) and returns it with its secret.
    pub async fn create_webhook_as(
        &self,
        key: &str,
        url: &str,
        events: &[&str],
    ) -> (kit_webhooks::proto::Webhook, String) {
        let reply = self
            .webhooks()
            .await
            .create_webhook(authed(
                key,
                kit_webhooks::proto::CreateWebhookRequest {
                    url: url.into(),
                    events: events.iter().map(|e| e.to_string()).collect(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create webhook")
            .into_inner();
        (reply.webhook.expect("webhook"), reply.secret)
    }

    /// Publishes an event for account `default` with `data`.
    pub async fn publish(
        &self,
        event_type: &str,
        data: &str,
    ) -> kit_webhooks::proto::PublishEventResponse {
        self.publish_to("default", event_type, data).await
    }

    /// Publishes an event for `account` with `data`.
    pub async fn publish_to(
        &self,
        account: &str,
        event_type: &str,
        data: &str,
    ) -> kit_webhooks::proto::PublishEventResponse {
        self.publish_keyed(account, event_type, data, "")
            .await
            .expect("publish")
    }

    /// `PublishEvent` for `account` with `data` and idempotency key `key` (none if empty), as the server
    /// answered it.
    pub async fn publish_keyed(
        &self,
        account: &str,
        event_type: &str,
        data: &str,
        key: &str,
    ) -> Result<kit_webhooks::proto::PublishEventResponse, tonic::Status> {
        self.events()
            .await
            .publish_event(authed(
                &self.publisher_key,
                kit_webhooks::proto::PublishEventRequest {
                    account_id: account.into(),
                    r#type: event_type.into(),
                    data_json: data.into(),
                    idempotency_key: key.into(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// The events of `account`, as its publisher lists them (the first page).
    pub async fn events_of(&self, account: &str) -> Vec<kit_webhooks::proto::Event> {
        self.events()
            .await
            .list_events(authed(
                &self.publisher_key,
                kit_webhooks::proto::ListEventsRequest {
                    account_id: account.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list events")
            .into_inner()
            .events
    }

    /// Pauses webhook `id` as its admin and returns it as it now stands.
    pub async fn pause(&self, id: &str) -> kit_webhooks::proto::Webhook {
        self.webhooks()
            .await
            .pause_webhook(authed(
                &self.admin_key,
                kit_webhooks::proto::PauseWebhookRequest { id: id.into() },
            ))
            .await
            .expect("pause")
            .into_inner()
    }

    /// Resumes webhook `id` as its admin and returns it as it now stands.
    pub async fn resume(&self, id: &str) -> kit_webhooks::proto::Webhook {
        self.webhooks()
            .await
            .resume_webhook(authed(
                &self.admin_key,
                kit_webhooks::proto::ResumeWebhookRequest { id: id.into() },
            ))
            .await
            .expect("resume")
            .into_inner()
    }

    pub async fn get_webhook(&self, id: &str) -> kit_webhooks::proto::Webhook {
        self.webhooks()
            .await
            .get_webhook(authed(
                &self.admin_key,
                kit_webhooks::proto::GetWebhookRequest { id: id.into() },
            ))
            .await
            .expect("get webhook")
            .into_inner()
    }

    pub async fn deliveries(&self, webhook_id: &str) -> Vec<kit_webhooks::proto::Delivery> {
        self.webhooks()
            .await
            .list_deliveries(authed(
                &self.admin_key,
                kit_webhooks::proto::ListDeliveriesRequest {
                    webhook_id: webhook_id.into(),
                    page_size: 500,
                    ..Default::default()
                },
            ))
            .await
            .expect("list deliveries")
            .into_inner()
            .deliveries
    }

    pub async fn get_delivery(&self, id: &str) -> kit_webhooks::proto::Delivery {
        self.webhooks()
            .await
            .get_delivery(authed(
                &self.admin_key,
                kit_webhooks::proto::GetDeliveryRequest { id: id.into() },
            ))
            .await
            .expect("get delivery")
            .into_inner()
    }

    /// Polls the delivery until `done` holds, failing the test after `timeout`.
    pub async fn wait_delivery(
        &self,
        id: &str,
        timeout: std::time::Duration,
        done: impl Fn(&kit_webhooks::proto::Delivery) -> bool,
    ) -> kit_webhooks::proto::Delivery {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let delivery = self.get_delivery(id).await;
            if done(&delivery) {
                return delivery;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "delivery never reached the expected state: {delivery:#?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
