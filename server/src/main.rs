//! `kit-webhooks-server`: serve the control plane, migrate a database, or create API keys.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kit_webhooks::duration::{DurationArg, DurationList};
use kit_webhooks_server::{
    config,
    core::{
        event::DEFAULT_MAX_PAYLOAD_BYTES,
        policy::{
            RetryPolicy, DEFAULT_AUTO_DISABLE_AFTER, DEFAULT_AUTO_DISABLE_MIN_FAILURES,
            DEFAULT_RETRY_SCHEDULE,
        },
        sealing::SealingKey,
        Role,
    },
    keys,
    store::{DEFAULT_DATABASE_URL, DEFAULT_MAX_CONNECTIONS},
    Config, Store,
};

// mimalloc rather than glibc's malloc: the hot paths allocate and free many small buffers across threads,
// where glibc spends measurable time consolidating (`malloc_consolidate` in the profile). With the crate's
// `override` feature it serves SQLite's own `malloc` calls too (its page cache, its statements' values;
// docs/PERFORMANCE.md, step 15).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kit-webhooks-server",
    version,
    about = "The Kit Webhooks control plane"
)]
struct Cli {
    /// How log lines are written: `text`, or `json` (one object per line) for a log pipeline.
    #[arg(
        long,
        global = true,
        env = "KIT_WEBHOOKS_LOG_FORMAT",
        default_value_t = kit_webhooks::logging::Format::Text
    )]
    log_format: kit_webhooks::logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API (migrates the database first).
    Serve(Box<ServeArgs>),
    /// Bring a database's schema up to date, then exit.
    Migrate {
        #[arg(long, env = "KIT_WEBHOOKS_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
    },
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the keys that seal webhook signing secrets at rest.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Delete events older than `--older-than` whose deliveries are all finished, with their deliveries and
    /// attempts, now (a running server's `--retention` does the same once a minute).
    Prune {
        #[arg(long, env = "KIT_WEBHOOKS_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        /// How old an event must be to go (`30d`, `12h`; `0s` for every finished event).
        #[arg(long)]
        older_than: DurationArg,
    },
    /// Fill a database with synthetic delivery history, for benchmarks (`kit-webhooks bench --backlog`).
    #[command(hide = true)]
    SeedBacklog {
        #[arg(long, env = "KIT_WEBHOOKS_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        /// Deliveries to add: half succeeded, half pending for a paused webhook.
        #[arg(long)]
        deliveries: usize,
        /// How long ago the succeeded half was published.
        #[arg(long, default_value = "0s")]
        age: DurationArg,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (only the key) on stdout. It is stored hashed: save it now.
    Create {
        #[arg(long, env = "KIT_WEBHOOKS_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        /// admin (one account's webhooks), publisher (publishes events) or daemon (delivers).
        #[arg(long, value_parser = role_parser())]
        role: Role,
        /// The account of an admin key. Repeated, one admin key per account, printed one per line in the
        /// order given: all of them or none.
        #[arg(long)]
        account: Vec<String>,
        /// The key stops working this long from now (`90d`, `12h`); by default it does not expire.
        #[arg(long)]
        expires_in: Option<DurationArg>,
    },
    /// List every key: id, role, account, created, last used, expiry, revocation (never the key).
    List {
        #[arg(long, env = "KIT_WEBHOOKS_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
    },
    /// Revoke a key by its id (`key_…`, also inside the key: `kwk_live_<id>_…`). Every server refuses it
    /// within a second.
    Revoke {
        #[arg(long, env = "KIT_WEBHOOKS_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        id: String,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Write a new random key (base64 of 32 bytes) to a new file readable by its owner only.
    GenerateKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Reseal every webhook secret with the key of --new-key-file, while servers run. Every server must
    /// already hold the new key (docs/SECURITY.md gives the order); afterwards the old one opens nothing.
    RotateKey {
        #[arg(long, env = "KIT_WEBHOOKS_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        /// The key to seal with from now on.
        #[arg(long)]
        new_key_file: PathBuf,
        /// The key (or keys) the secrets are sealed with now.
        #[arg(long = "secrets-key-file", value_name = "PATH", required = true)]
        secrets_key_files: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KIT_WEBHOOKS_LISTEN", default_value_t = config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// `sqlite://FILE` (created if missing) or `postgres://…`.
    #[arg(long, env = "KIT_WEBHOOKS_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// Most PostgreSQL connections this server opens.
    #[arg(long, env = "KIT_WEBHOOKS_DATABASE_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    database_max_connections: u32,
    /// Also admit `http://` webhook URLs (development only).
    #[arg(long, env = "KIT_WEBHOOKS_ALLOW_HTTP")]
    allow_http: bool,
    /// Also let pages from this origin call the API from a browser (gRPC-Web); repeatable. By default only
    /// pages served by this server do.
    #[arg(
        long = "cors-origin",
        value_name = "ORIGIN",
        env = "KIT_WEBHOOKS_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// Where the first start writes its API keys [default: beside the SQLite file].
    #[arg(long, env = "KIT_WEBHOOKS_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The key that seals webhook signing secrets at rest (base64 of 32 bytes); repeat it during a key
    /// rotation, the key to seal with first [default: beside the key file, written on first start].
    #[arg(
        long = "secrets-key-file",
        value_name = "PATH",
        env = "KIT_WEBHOOKS_SECRETS_KEY_FILE",
        value_delimiter = ','
    )]
    secrets_key_files: Vec<PathBuf>,
    /// Largest accepted `data_json`, in bytes.
    #[arg(long, env = "KIT_WEBHOOKS_MAX_PAYLOAD_BYTES", default_value_t = DEFAULT_MAX_PAYLOAD_BYTES)]
    max_payload_bytes: usize,
    /// Refuse a published `data_json` that does not match its event type's JSON Schema (docs/EVENTS.md).
    #[arg(long, env = "KIT_WEBHOOKS_VALIDATE_PAYLOADS")]
    validate_payloads: bool,
    /// Request bytes held at once across all calls; a call past it is answered RESOURCE_EXHAUSTED.
    #[arg(long, env = "KIT_WEBHOOKS_MAX_BYTES_IN_FLIGHT", default_value_t = config::DEFAULT_MAX_BYTES_IN_FLIGHT)]
    max_bytes_in_flight: usize,
    /// Waits between attempts: one more attempt than entries. Units: ms, s, m, h, d.
    #[arg(long, env = "KIT_WEBHOOKS_RETRY_SCHEDULE", default_value_t = DurationList(DEFAULT_RETRY_SCHEDULE.to_vec()))]
    retry_schedule: DurationList,
    /// Time limit of one delivery request.
    #[arg(long, env = "KIT_WEBHOOKS_REQUEST_TIMEOUT", default_value_t = DurationArg(config::DEFAULT_REQUEST_TIMEOUT))]
    request_timeout: DurationArg,
    /// Disable a webhook failing for this long with no 2xx ...
    #[arg(long, env = "KIT_WEBHOOKS_AUTO_DISABLE_AFTER", default_value_t = DurationArg(DEFAULT_AUTO_DISABLE_AFTER))]
    auto_disable_after: DurationArg,
    /// ... and at least this many consecutive failed attempts.
    #[arg(long, env = "KIT_WEBHOOKS_AUTO_DISABLE_MIN_FAILURES", default_value_t = DEFAULT_AUTO_DISABLE_MIN_FAILURES)]
    auto_disable_min_failures: u32,
    /// Leases one webhook may hold at once.
    #[arg(long, env = "KIT_WEBHOOKS_MAX_IN_FLIGHT_PER_WEBHOOK", default_value_t = config::DEFAULT_MAX_IN_FLIGHT_PER_WEBHOOK)]
    max_in_flight_per_webhook: u32,
    /// Leases one account's webhooks may hold at once, across all daemons (the embedded daemon's
    /// --max-in-flight-per-account is its share of request slots).
    #[arg(long, env = "KIT_WEBHOOKS_MAX_LEASES_PER_ACCOUNT", default_value_t = config::DEFAULT_MAX_LEASES_PER_ACCOUNT)]
    max_leases_per_account: u32,
    /// On SIGTERM, wait at most this long for daemons to report what they are sending.
    #[arg(long, env = "KIT_WEBHOOKS_SHUTDOWN_GRACE", default_value_t = DurationArg(config::DEFAULT_SHUTDOWN_GRACE))]
    shutdown_grace: DurationArg,
    /// Prune events older than this, with their deliveries and attempts, once all their deliveries are
    /// finished; `0` keeps everything.
    #[arg(long, env = "KIT_WEBHOOKS_RETENTION", default_value_t = DurationArg(kit_webhooks_server::retention::DEFAULT_RETENTION))]
    retention: DurationArg,
    /// Prune audit entries older than this; `0` keeps them all.
    #[arg(long, env = "KIT_WEBHOOKS_AUDIT_RETENTION", default_value_t = DurationArg(kit_webhooks_server::retention::DEFAULT_AUDIT_RETENTION))]
    audit_retention: DurationArg,
    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` on this address (docs/OPERATIONS.md).
    #[arg(long, value_name = "ADDR", env = "KIT_WEBHOOKS_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Also run a delivery daemon in this process (it connects to this server over gRPC).
    #[arg(long, env = "KIT_WEBHOOKS_WITH_DAEMON")]
    with_daemon: bool,
    #[command(flatten)]
    daemon: kit_webhooks_daemon::Options,
}

/// `--role`: one of the roles' stored names, offered as the flag's possible values.
fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    use clap::builder::TypedValueParser;
    use sea_orm::{ActiveEnum, Iterable};
    clap::builder::PossibleValuesParser::new(Role::iter().map(|role| role.to_value()))
        .try_map(|name| Role::try_from_value(&name).map_err(|err| err.to_string()))
}

fn main() {
    // Before the runtime's threads exist.
    kit_webhooks_daemon::allocator::keep_freed_memory();
    match kit_webhooks_daemon::allocator::runtime() {
        Ok(runtime) => runtime.block_on(entry()),
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            std::process::exit(1);
        }
    }
}

async fn entry() {
    let cli = Cli::parse();
    kit_webhooks::logging::init("info,sqlx=warn,sea_orm=warn", cli.log_format);
    if let Err(err) = run(cli).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = serve_config(*args);
            // Installed before anything starts, so an early SIGTERM still means a clean stop.
            let signal = kit_webhooks::shutdown_signal(config.shutdown_grace);
            let server = kit_webhooks_server::start_with_signal(config, async move {
                signal.await;
                tracing::info!("shutting down");
            })
            .await?;
            server.wait().await
        }
        Command::Prune {
            database_url,
            older_than,
        } => prune(&database_url, older_than).await,
        Command::Migrate { database_url } => {
            let store = Store::connect(&database_url).await.context("connecting")?;
            store.migrate().await.context("migrating")?;
            store.close().await;
            eprintln!("database is up to date");
            Ok(())
        }
        Command::SeedBacklog {
            database_url,
            deliveries,
            age,
        } => {
            let store = Store::connect(&database_url).await.context("connecting")?;
            store.migrate().await.context("migrating")?;
            let age_ms = age.0.as_millis().min(i64::MAX as u128) as i64;
            store
                .seed_backlog(deliveries, age_ms)
                .await
                .context("seeding")?;
            store.close().await;
            Ok(())
        }
        Command::Keys(command) => manage_keys(command).await,
        Command::Secrets(SecretsCommand::GenerateKey { out }) => {
            anyhow::ensure!(!out.exists(), "{} exists already", out.display());
            keys::write_private(&out, &SealingKey::generate())
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote a new secrets key to {}", out.display());
            Ok(())
        }
        Command::Secrets(SecretsCommand::RotateKey {
            database_url,
            new_key_file,
            secrets_key_files,
        }) => {
            let store = open(&database_url).await?;
            let resealed =
                kit_webhooks_server::secrets::rotate_key(&store, &new_key_file, &secrets_key_files)
                    .await?;
            store.close().await;
            println!("resealed the secrets of {resealed} webhooks");
            Ok(())
        }
    }
}

/// The server's configuration from `serve`'s flags.
fn serve_config(args: ServeArgs) -> Config {
    Config {
        listen: args.listen,
        database_url: args.database_url,
        database_max_connections: args.database_max_connections,
        allow_http: args.allow_http,
        max_payload_bytes: args.max_payload_bytes,
        validate_payloads: args.validate_payloads,
        max_bytes_in_flight: args.max_bytes_in_flight,
        cors_origins: args.cors_origins,
        key_file: args.key_file,
        secrets_key_files: args.secrets_key_files,
        request_timeout: args.request_timeout.0,
        retry: RetryPolicy {
            schedule: args.retry_schedule.0,
            auto_disable_after: args.auto_disable_after.0,
            auto_disable_min_failures: args.auto_disable_min_failures,
        },
        max_in_flight_per_webhook: args.max_in_flight_per_webhook,
        max_leases_per_account: args.max_leases_per_account,
        shutdown_grace: args.shutdown_grace.0,
        retention: args.retention.0,
        audit_retention: args.audit_retention.0,
        metrics_listen: args.metrics_listen,
        embedded_daemon: args.with_daemon.then_some(args.daemon),
        ..Config::default()
    }
}

/// A database brought up to date, for a command.
async fn open(database_url: &str) -> anyhow::Result<Store> {
    let store = Store::connect(database_url).await.context("connecting")?;
    store.migrate().await.context("migrating")?;
    Ok(store)
}

/// `keys create`, `keys list`, `keys revoke`.
async fn manage_keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            database_url,
            role,
            account,
            expires_in,
        } => {
            let store = open(&database_url).await?;
            let expires_at = expires_in.map(|d| {
                kit_webhooks_server::core::time::now_ms()
                    + d.0.as_millis().min(i64::MAX as u128) as i64
            });
            let accounts: Vec<Option<&str>> = match account.as_slice() {
                [] => vec![None],
                accounts => accounts.iter().map(|a| Some(a.as_str())).collect(),
            };
            // All or none: a bad account or a failed write anywhere in the list makes no key at all.
            for (_, key) in
                keys::create_many(&store, role, &accounts, expires_at, keys::CLI).await?
            {
                println!("{key}");
            }
            store.close().await;
        }
        KeysCommand::List { database_url } => {
            let store = open(&database_url).await?;
            print!("{}", keys::table(&keys::list_all(&store).await?));
            store.close().await;
        }
        KeysCommand::Revoke { database_url, id } => {
            let store = open(&database_url).await?;
            let revoked = store.revoke_api_key(None, &id, keys::CLI).await;
            store.close().await;
            revoked?.with_context(|| format!("no API key {id}"))?;
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

/// `prune`: one pass of the retention rule over the history older than `older_than`, now.
async fn prune(database_url: &str, older_than: DurationArg) -> anyhow::Result<()> {
    let store = Store::connect(database_url).await.context("connecting")?;
    store.migrate().await.context("migrating")?;
    let before = kit_webhooks_server::core::time::now_ms()
        - older_than.0.as_millis().min(i64::MAX as u128) as i64;
    let pruned = kit_webhooks_server::retention::pass(
        &store,
        before,
        kit_webhooks_server::retention::PURGE_SHARE,
        &Default::default(),
        |_| {},
    )
    .await
    .context("pruning")?;
    store.close().await;
    println!(
        "pruned {} events, {} deliveries, {} attempts",
        pruned.events, pruned.deliveries, pruned.attempts
    );
    Ok(())
}
