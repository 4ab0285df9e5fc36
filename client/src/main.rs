//! `kit-webhooks`: the admin CLI of Kit Webhooks.

mod cli;

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};
use cli::{connection::ConnectionArgs, output::Format};

#[derive(Parser)]
#[command(
    name = "kit-webhooks",
    version,
    about = "Manage Kit Webhooks: webhooks, deliveries and events",
    after_help = "Examples:\n  \
        kit-webhooks webhooks create --url https://example.com/hooks --events 'application.*,offer.accepted'\n  \
        kit-webhooks webhooks ping wh_01J…\n  \
        kit-webhooks deliveries list --webhook wh_01J… --status failed\n  \
        kit-webhooks listen --port 9000 --secret whsec_…\n\n\
        The key comes from --token, KIT_WEBHOOKS_TOKEN, or the kit-webhooks.keys file the server wrote."
)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// `table` for people, `json` for scripts.
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, inspect and manage webhooks.
    #[command(
        subcommand,
        after_help = "Examples:\n  kit-webhooks webhooks list\n  \
        kit-webhooks webhooks create --url https://example.com/hooks --events 'offer.*'"
    )]
    Webhooks(WebhooksCommand),
    /// Inspect, retry and replay deliveries.
    #[command(
        subcommand,
        after_help = "Examples:\n  kit-webhooks deliveries list --webhook wh_01J… --status failed\n  \
        kit-webhooks deliveries show dlv_01J…"
    )]
    Deliveries(DeliveriesCommand),
    /// Publish and read events.
    #[command(
        subcommand,
        after_help = "Examples:\n  kit-webhooks events publish --account default --type offer.accepted --data '{}'\n  \
        kit-webhooks events list --limit 10"
    )]
    Events(EventsCommand),
    /// The account's own admin API keys.
    #[command(
        subcommand,
        after_help = "Examples:\n  kit-webhooks keys list\n  kit-webhooks keys create --expires-in 90d\n  \
        kit-webhooks keys revoke key_01J…"
    )]
    Keys(KeysCommand),
    /// The account's audit log: who changed what, and when.
    #[command(
        subcommand,
        after_help = "Examples:\n  kit-webhooks audit list --limit 20\n  \
        kit-webhooks audit list --target wh_01J… --since 7d -o json"
    )]
    Audit(AuditCommand),
    /// The catalogue of event types, by category.
    #[command(
        after_help = "Examples:\n  kit-webhooks event-types\n  kit-webhooks event-types -o json"
    )]
    EventTypes,
    /// Measure end-to-end delivery throughput and latency against the raw ceiling of this machine.
    #[command(
        after_help = "Examples:\n  kit-webhooks bench --events 5000 --webhooks 10 --json bench.json\n  \
        kit-webhooks bench --events 20000 --webhooks 1 --rate 1000\n  \
        kit-webhooks bench --database-url postgres://postgres@127.0.0.1:5432/bench\n\n\
        Starts kit-webhooks-server and kit-webhooks-daemon from this binary's directory\n\
        (cargo build --release --workspace)."
    )]
    Bench(Box<cli::bench::BenchArgs>),
    /// Run a local endpoint that verifies signatures and prints each delivery.
    #[command(
        after_help = "Examples:\n  kit-webhooks listen --port 9000 --secret whsec_…\n  \
        kit-webhooks listen --port 9000 --forward-to http://127.0.0.1:3000/webhooks\n\n\
        Point a webhook at http://127.0.0.1:9000/ (the server needs --allow-http, its daemon\n\
        --allow-network 127.0.0.0/8). Valid requests get 204 (with --forward-to, the application's\n\
        answer), invalid ones 401 and are not forwarded."
    )]
    Listen {
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// The webhook's signing secret [default: each delivery's webhook's secret, looked up on the server
        /// with the admin key].
        #[arg(long, env = "KIT_WEBHOOKS_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Also pass each verified request on to this local application (http://…), headers and body
        /// unchanged, and answer the sender with the application's status and body.
        #[arg(long, value_name = "URL")]
        forward_to: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Create a webhook; prints its id and signing secret.
    #[command(
        after_help = "Examples:\n  kit-webhooks webhooks create --url https://example.com/hooks --events 'interview.*,offer.accepted'\n  \
        kit-webhooks webhooks create --url https://example.com/hooks --events 'offer.*' --header 'Authorization: Bearer s3cr3t'"
    )]
    Create {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Event types and/or `category.*`, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// Requests per second at most [default: the server's, 100].
        #[arg(long)]
        rate_limit: Option<u32>,
        /// A header sent with every request, `'Name: value'`; repeatable.
        #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = cli::commands::parse_header)]
        headers: Vec<(String, String)>,
        /// `ordered`: one delivery at a time, in publish order (a failing one holds the rest back).
        #[arg(long, value_enum, default_value = "unordered")]
        ordering: cli::commands::Ordering,
    },
    /// List the account's webhooks.
    #[command(after_help = "Example:\n  kit-webhooks webhooks list --limit 20 -o json")]
    List {
        /// Show at most N (and fetch no more pages than needed).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Show one webhook.
    #[command(after_help = "Example:\n  kit-webhooks webhooks get wh_01J… -o json")]
    Get { id: String },
    /// Change a webhook's URL, description, events or rate limit (only the flags given).
    #[command(
        after_help = "Example:\n  kit-webhooks webhooks update wh_01J… --events 'offer.*' --description 'offers only'"
    )]
    Update {
        id: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        #[arg(long)]
        rate_limit: Option<u32>,
        /// The whole new set of headers, `'Name: value'`; repeatable.
        #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = cli::commands::parse_header)]
        headers: Vec<(String, String)>,
        /// Remove every header of the webhook.
        #[arg(long, conflicts_with = "headers")]
        no_headers: bool,
        /// `ordered` or `unordered`, for deliveries created from now on.
        #[arg(long, value_enum)]
        ordering: Option<cli::commands::Ordering>,
    },
    /// Stop deliveries (events firing meanwhile are not queued).
    #[command(after_help = "Example:\n  kit-webhooks webhooks pause wh_01J…")]
    Pause { id: String },
    /// Re-enable a paused or auto-disabled webhook (resets its failure counter).
    #[command(after_help = "Example:\n  kit-webhooks webhooks resume wh_01J…")]
    Resume { id: String },
    /// Delete a webhook with its whole delivery history.
    #[command(after_help = "Example:\n  kit-webhooks webhooks delete wh_01J…")]
    Delete { id: String },
    /// Generate a new signing secret; the old one keeps signing beside it during --grace.
    #[command(
        after_help = "Examples:\n  kit-webhooks webhooks rotate-secret wh_01J…\n  \
        kit-webhooks webhooks rotate-secret wh_01J… --grace 0s   # a leaked secret: stop accepting it now\n\n\
        While an earlier rotation's old secret is still accepted, a rotation with a grace is refused;\n\
        --grace 0s ends both at once."
    )]
    RotateSecret {
        id: String,
        /// How long the old secret stays valid (at most 7d).
        #[arg(long, default_value = "24h")]
        grace: kit_webhooks::duration::DurationArg,
    },
    /// Print the webhook's current signing secret.
    #[command(after_help = "Example:\n  kit-webhooks webhooks secret wh_01J… > secret.txt")]
    Secret { id: String },
    /// Send a test.ping and wait for the outcome (exit code 1 if the endpoint did not answer 2xx).
    #[command(
        after_help = "Example:\n  kit-webhooks webhooks ping wh_01J… && echo the endpoint answers"
    )]
    Ping { id: String },
    /// Print the account's webhook changes as they happen (webhooks changed, paused, resumed, disabled or
    /// deleted; each delivery attempt's outcome), until interrupted.
    #[command(
        after_help = "Examples:\n  kit-webhooks webhooks watch\n  kit-webhooks webhooks watch wh_01J… -o json"
    )]
    Watch {
        /// Only this webhook's changes.
        id: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// List a webhook's deliveries, newest first.
    #[command(
        after_help = "Example:\n  kit-webhooks deliveries list --webhook wh_01J… --status failed"
    )]
    List {
        #[arg(long)]
        webhook: String,
        /// pending, sending, succeeded or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        event_type: Option<String>,
        /// Show at most N (and fetch no more pages than needed).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Show a delivery with every attempt (request headers, response, timing, error).
    #[command(after_help = "Example:\n  kit-webhooks deliveries show dlv_01J…")]
    Show { id: String },
    /// Send a finished delivery again now.
    #[command(after_help = "Example:\n  kit-webhooks deliveries retry dlv_01J…")]
    Retry { id: String },
    /// Re-queue every failed delivery of a webhook whose event was created in a window.
    #[command(
        after_help = "Examples:\n  kit-webhooks deliveries replay --webhook wh_01J… --since 72h\n  \
        kit-webhooks deliveries replay --webhook wh_01J… --since 2026-11-20T00:00:00Z --until 2026-11-23T00:00:00Z\n\n\
        TIME is RFC 3339, or a duration meaning that long ago (72h, 3d)."
    )]
    Replay {
        #[arg(long)]
        webhook: String,
        #[arg(long, value_name = "TIME", value_parser = cli::commands::parse_time)]
        since: std::time::SystemTime,
        #[arg(long, value_name = "TIME", value_parser = cli::commands::parse_time)]
        until: Option<std::time::SystemTime>,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List the account's keys: id, created, last used, expiry, revocation (never the key).
    #[command(after_help = "Example:\n  kit-webhooks keys list -o json")]
    List,
    /// Create an admin key for the account and print it: it is shown only now.
    #[command(after_help = "Example:\n  kit-webhooks keys create --expires-in 90d > ci.key")]
    Create {
        /// The key stops working this long from now (`90d`); by default it does not expire.
        #[arg(long)]
        expires_in: Option<kit_webhooks::duration::DurationArg>,
    },
    /// Revoke a key by its id (`key_…`): every server refuses it within a second.
    #[command(after_help = "Example:\n  kit-webhooks keys revoke key_01J…")]
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// List the account's audit entries, newest first.
    #[command(after_help = "Examples:\n  kit-webhooks audit list --limit 20\n  \
        kit-webhooks audit list --target wh_01J… --since 7d -o json\n\n\
        TIME is RFC 3339, or a duration meaning that long ago (72h, 3d).")]
    List {
        /// Only the entries about this id (`wh_…`, `dlv_…`, `key_…`).
        #[arg(long)]
        target: Option<String>,
        #[arg(long, value_name = "TIME", value_parser = cli::commands::parse_time)]
        since: Option<std::time::SystemTime>,
        #[arg(long, value_name = "TIME", value_parser = cli::commands::parse_time)]
        until: Option<std::time::SystemTime>,
        /// Show at most N (and fetch no more pages than needed).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
}

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Publish an event (needs the publisher key).
    #[command(
        after_help = "Examples:\n  kit-webhooks events publish --account default --type application.submitted --data '{\"application_id\": 7}'\n  \
        kit-webhooks events publish --account default --type offer.accepted --data @offer.json --idempotency-key offer-42"
    )]
    Publish {
        #[arg(long)]
        account: String,
        #[arg(long = "type")]
        event_type: String,
        /// A JSON object, `@FILE`, or `-` for stdin.
        #[arg(long)]
        data: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List events, newest first.
    #[command(after_help = "Examples:\n  kit-webhooks events list --limit 10\n  \
        kit-webhooks events list --type offer.accepted --account default -o json")]
    List {
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long)]
        account: Option<String>,
        /// Show at most N (and fetch no more pages than needed).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Show one event.
    #[command(after_help = "Example:\n  kit-webhooks events get evt_01J…")]
    Get { id: String },
    /// Publish a type's example (fresh ids) for the admin key's account, wait for its deliveries, and print
    /// each outcome (needs the admin key).
    #[command(
        after_help = "Examples:\n  kit-webhooks events trigger interview.scheduled\n  \
        kit-webhooks events trigger offer.revised --set offer.salary.amount=185000 --set candidate.name='Ada Lovelace'\n\n\
        docs/EVENTS.md shows each type's fields; --set takes a dotted path and a JSON value (or text)."
    )]
    Trigger {
        #[arg(value_name = "TYPE")]
        event_type: String,
        /// Change a field of the example: `path.to.field=value`; repeatable.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Send it to this webhook only, as a test delivery (like a ping: tried once, never counted against
        /// the webhook, whatever it subscribes to), instead of publishing it to the account.
        #[arg(long, value_name = "ID")]
        webhook: Option<String>,
    },
}

fn main() {
    // A usage error is clap's whole message (what is missing, "a similar subcommand exists", the possible
    // values) and exit code 2; failures at run time are one line below.
    let cli = Cli::parse();
    // Not for the commands that serve HTTP (`bench`'s receivers, `listen`): a socket written after its peer
    // closed it (a vectored write, as hyper and rustls make) would raise SIGPIPE and end them silently.
    if !matches!(cli.command, Command::Bench(_) | Command::Listen { .. }) {
        quiet_on_closed_stdout();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            std::process::exit(1);
        }
    };
    runtime.block_on(entry(cli));
}

/// A closed stdout (`kit-webhooks events list | head`) ends the process quietly, as it ends `cat`, instead of
/// making the next print panic: SIGPIPE goes back to its default, which Rust's runtime had set to ignore.
#[allow(unsafe_code)]
fn quiet_on_closed_stdout() {
    // SAFETY: `signal` with `SIG_DFL` changes only the process's disposition of SIGPIPE; called from `main`
    // before the runtime starts, while no other thread exists.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn entry(cli: Cli) {
    if let Err(err) = run(cli).await {
        // One line, whatever went wrong, in the CLI's words.
        eprintln!("error: {}", cli::words::error_line(&err));
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    use cli::commands;
    match cli.command {
        Command::Webhooks(command) => {
            commands::webhooks(&cli.connection, cli.output, command).await
        }
        Command::Deliveries(command) => {
            commands::deliveries(&cli.connection, cli.output, command).await
        }
        Command::Events(command) => commands::events(&cli.connection, cli.output, command).await,
        Command::Keys(command) => cli::account::keys(&cli.connection, cli.output, command).await,
        Command::Audit(command) => cli::account::audit(&cli.connection, cli.output, command).await,
        Command::EventTypes => commands::event_types(&cli.connection, cli.output).await,
        Command::Bench(args) => cli::bench::run(*args, cli.output == Format::Json).await,
        Command::Listen {
            port,
            host,
            secret,
            forward_to,
        } => {
            let forward = forward_to
                .as_deref()
                .map(cli::listen::Forward::to)
                .transpose()?;
            let secrets = match secret {
                Some(secret) => cli::listen::Secrets::Fixed(secret),
                None => cli::listen::Secrets::from_server(
                    cli.connection
                        .client(cli::connection::KeyRole::Admin)
                        .await?,
                ),
            };
            cli::listen::run(SocketAddr::new(host, port), secrets, forward, cli.output).await
        }
    }
}

/// Reads `--data`: inline JSON, `@FILE`, or `-` for stdin.
pub fn read_data(data: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    if data == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading stdin")?;
        return Ok(text);
    }
    if let Some(path) = data.strip_prefix('@') {
        let path = PathBuf::from(path);
        return std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()));
    }
    Ok(data.to_owned())
}
