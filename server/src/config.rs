//! Server configuration: what `serve` reads from flags and environment.
//!
//! Each default is written once, here or beside the rule it belongs to (`core::policy`, `core::event`,
//! `store`): `Config::default` and the flags of `main.rs` both use these constants, and a test holds the
//! README's table to `--help` (`server/tests/readme_flags.rs`).

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    time::Duration,
};

use crate::{
    core::{event::DEFAULT_MAX_PAYLOAD_BYTES, policy::RetryPolicy},
    store::DEFAULT_DATABASE_URL,
};

pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7400));
/// The time limit of one delivery request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Leases one webhook may hold at once.
pub const DEFAULT_MAX_IN_FLIGHT_PER_WEBHOOK: u32 = 16;
/// Leases one account's webhooks may hold at once: sixteen webhooks at their cap, a ninth of what a daemon
/// stream asks for by default.
pub const DEFAULT_MAX_LEASES_PER_ACCOUNT: u32 = 256;
const DEFAULT_LEASE_MARGIN: Duration = Duration::from_secs(30);
const DEFAULT_IDLE_POLL: Duration = Duration::from_secs(1);
/// 32 MiB: over a hundred publishes of the largest payload at once, thousands of ordinary ones. What the
/// server holds for a call is a few times its request bytes (the decoded message, the stored row, the
/// answer), which this keeps within the memory target of docs/SECURITY.md.
pub const DEFAULT_MAX_BYTES_IN_FLIGHT: usize = 32 * 1024 * 1024;
/// Long enough for a request at the default timeout (15 s) to finish and be reported. A supervisor must
/// give the process a little more before it kills it (deploy/kubernetes sets 45 s).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// What a `PublishEventRequest` may carry besides its `data_json` (type, account, idempotency key, framing).
const PUBLISH_ENVELOPE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// PostgreSQL pool size.
    pub database_max_connections: u32,
    /// Admit `http://` webhook URLs (development only).
    pub allow_http: bool,
    pub max_payload_bytes: usize,
    /// Refuse a published `data_json` that does not match its type's JSON Schema (`core::payload`).
    pub validate_payloads: bool,
    /// Request bytes the server holds at once across all calls; a call past it is answered
    /// `RESOURCE_EXHAUSTED` (`crate::api::admission`).
    pub max_bytes_in_flight: usize,
    /// Origins (`https://console.example.com`) whose pages may call the API from a browser (gRPC-Web); none
    /// by default: a page served by this server itself needs none.
    pub cors_origins: Vec<String>,
    /// Where the first start writes its keys; `None` for beside the SQLite file (or the working directory).
    pub key_file: Option<PathBuf>,
    /// The files of the keys that seal webhook secrets: the first seals, all open (`crate::secrets`); none
    /// for the one beside the key file.
    pub secrets_key_files: Vec<PathBuf>,
    /// The time limit of one delivery request.
    pub request_timeout: Duration,
    /// Retry schedule and auto-disable rule.
    pub retry: RetryPolicy,
    /// Leases one webhook may hold at once, so a slow endpoint never takes every slot.
    pub max_in_flight_per_webhook: u32,
    /// Leases one account's webhooks may hold at once, so an account with many slow webhooks never takes
    /// every slot either (`store::leases::in_flight`).
    pub max_leases_per_account: u32,
    /// How much longer than the request timeout a lease lasts unrenewed. Only matters when a server dies
    /// holding leases: they go back to the queue this long after its last renewal.
    pub lease_margin: Duration,
    /// The longest a stopping server waits for its daemons to report the deliveries they were sending
    /// (it stops as soon as none is left).
    pub shutdown_grace: Duration,
    /// History older than this is pruned (`crate::retention`); zero keeps everything.
    pub retention: Duration,
    /// Audit entries older than this are pruned; zero keeps them all.
    pub audit_retention: Duration,
    /// Where the monitoring listener serves `/metrics`, `/healthz` and `/readyz`; none by default.
    pub metrics_listen: Option<SocketAddr>,
    /// Run a delivery daemon inside the server process (it connects over gRPC like any other).
    pub embedded_daemon: Option<kit_webhooks_daemon::Options>,
    /// The longest an idle delivery stream waits before looking for due deliveries again: the backstop for
    /// a wake-up it missed (`crate::replicas`). At most a third of the lease TTL is used, so that a stream
    /// renews its leases in time.
    pub idle_poll: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN,
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_max_connections: crate::store::DEFAULT_MAX_CONNECTIONS,
            allow_http: false,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            validate_payloads: false,
            max_bytes_in_flight: DEFAULT_MAX_BYTES_IN_FLIGHT,
            cors_origins: Vec::new(),
            key_file: None,
            secrets_key_files: Vec::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            max_in_flight_per_webhook: DEFAULT_MAX_IN_FLIGHT_PER_WEBHOOK,
            max_leases_per_account: DEFAULT_MAX_LEASES_PER_ACCOUNT,
            lease_margin: DEFAULT_LEASE_MARGIN,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            retention: crate::retention::DEFAULT_RETENTION,
            audit_retention: crate::retention::DEFAULT_AUDIT_RETENTION,
            metrics_listen: None,
            embedded_daemon: None,
            idle_poll: DEFAULT_IDLE_POLL,
        }
    }
}

impl Config {
    /// The largest `PublishEventRequest` the server decodes: the payload limit and its envelope.
    pub fn max_publish_message_bytes(&self) -> usize {
        self.max_payload_bytes
            .saturating_add(PUBLISH_ENVELOPE_BYTES)
    }

    /// The longest a call may take, from its first byte to its answer: longer than the longest wait a call
    /// makes on purpose (`PingWebhook` waits for the attempt, up to the request timeout and a margin).
    pub fn call_timeout(&self) -> Duration {
        self.request_timeout + Duration::from_secs(30)
    }

    /// The most leases one webhook, and one account, may hold.
    pub fn lease_caps(&self) -> crate::store::leases::LeaseCaps {
        crate::store::leases::LeaseCaps {
            per_webhook: u64::from(self.max_in_flight_per_webhook),
            per_account: u64::from(self.max_leases_per_account),
        }
    }

    /// How long a lease lasts without renewal: the request timeout plus the margin.
    pub fn lease_ttl(&self) -> Duration {
        self.request_timeout + self.lease_margin
    }

    /// Refuses settings that would break delivery guarantees.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.request_timeout.is_zero(),
            "--request-timeout must be more than 0"
        );
        // A lease that could expire while its request is still running would hand the delivery out twice.
        anyhow::ensure!(
            self.lease_margin >= Duration::from_secs(1),
            "the lease margin must be at least 1s beyond --request-timeout"
        );
        anyhow::ensure!(
            self.max_in_flight_per_webhook > 0,
            "--max-in-flight-per-webhook must be at least 1"
        );
        anyhow::ensure!(
            self.max_leases_per_account > 0,
            "--max-leases-per-account must be at least 1"
        );
        anyhow::ensure!(
            self.max_payload_bytes > 0,
            "--max-payload-bytes must be at least 1"
        );
        if let Some(daemon) = &self.embedded_daemon {
            daemon.validate()?;
        }
        for origin in &self.cors_origins {
            crate::api::web::parse_origin(origin)?;
        }
        // A publish of the largest payload must fit in the budget, or it could never be accepted.
        anyhow::ensure!(
            self.max_bytes_in_flight >= self.max_publish_message_bytes(),
            "--max-bytes-in-flight ({}) must hold at least one publish of --max-payload-bytes ({} with its envelope)",
            self.max_bytes_in_flight,
            self.max_publish_message_bytes()
        );
        Ok(())
    }

    /// The secrets key file used when none is given: beside the key file (`x.keys` → `x.secrets-key`).
    pub fn default_secrets_key_file(&self) -> PathBuf {
        self.key_file_path().with_extension("secrets-key")
    }

    /// The key file: as configured, else beside the SQLite database (`x.db` → `x.keys`), else
    /// `kit-webhooks.keys` in the working directory.
    pub fn key_file_path(&self) -> PathBuf {
        if let Some(path) = &self.key_file {
            return path.clone();
        }
        match crate::store::sqlite_path(&self.database_url) {
            Some(db) => db.with_extension("keys"),
            None => PathBuf::from(kit_webhooks::key_file::DEFAULT_FILE_NAME),
        }
    }
}
