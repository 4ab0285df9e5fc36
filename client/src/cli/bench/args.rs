//! What a bench run is asked to do: the shape of the system it measures (webhooks, accounts, receivers and
//! hosts, noisy neighbours), how it publishes, the started daemon's window, and what it reports.

use std::{path::PathBuf, time::Duration};

use super::receivers;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Events to publish.
    #[arg(long, default_value_t = 4000)]
    pub events: usize,
    /// Webhooks, all subscribed to every event (the fan-out), of one account.
    #[arg(long, default_value_t = 10)]
    pub webhooks: usize,
    /// Accounts, each with --webhooks-per-account webhooks (instead of one with --webhooks); each event is
    /// published to one of them, drawn uniformly (or by Zipf's law, --skew), and goes to its webhooks only.
    #[arg(long, default_value_t = 1)]
    pub accounts: usize,
    /// With --accounts: the webhooks of each account.
    #[arg(long, default_value_t = 2)]
    pub webhooks_per_account: usize,
    /// With --accounts: the exponent of Zipf's law for the accounts' shares of the events; 0 for uniform.
    #[arg(long, default_value_t = 0.0)]
    pub skew: f64,
    /// Noisy neighbours: accounts besides --accounts whose endpoints answer late (--slow-latency), each on a
    /// receiver of its own. Events are drawn for them as for the others; their deliveries are counted apart
    /// and not waited for, and every other figure is the other accounts'.
    #[arg(long, default_value_t = 0)]
    pub slow_accounts: usize,
    /// With --slow-accounts: the webhooks of each slow account [default: --webhooks-per-account].
    #[arg(long)]
    pub slow_webhooks_per_account: Option<usize>,
    /// With --slow-accounts: how long their endpoints take to answer, or `hang` for never (the server's
    /// request timeout, 15 s, ends each attempt).
    #[arg(long, default_value = "hang", value_parser = receivers::parse_answer)]
    pub slow_latency: receivers::Answer,
    /// Receivers on loopback the webhooks are spread over.
    #[arg(long, default_value_t = 4)]
    pub receivers: usize,
    /// Put the receivers on distinct loopback addresses (127.0.0.2, 127.0.0.3, …): one host each, with its own
    /// connection pool and share in the daemon, as endpoints of many customers are.
    #[arg(long)]
    pub hosts: bool,
    /// How long each receiver takes to answer.
    #[arg(long, default_value = "0ms", value_parser = kit_webhooks::duration::parse_duration)]
    pub latency: Duration,
    /// Size of each event's data.
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// Events per second to publish at; 0 for as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Events per publish call: 1 calls `PublishEvent`, more `PublishEvents` (at most 1,000, and within the
    /// size of one publish).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Publish calls in flight at once (when not rate-limited).
    #[arg(long, default_value_t = 64)]
    pub publishers: usize,
    /// Deliveries in flight in the daemon, and requests in flight in the raw-ceiling run.
    #[arg(long, default_value_t = 128)]
    pub concurrency: u32,
    /// Receivers serve HTTPS with a certificate from a CA made for the run, which the started daemon trusts
    /// (`--ca-file`); the raw ceiling is measured over HTTPS too, with keep-alive.
    #[arg(long)]
    pub tls: bool,
    /// With --tls, the receivers offer HTTP/2 as well as HTTP/1.1 (by ALPN, as most HTTPS endpoints do): the
    /// daemon, and the raw-ceiling client, then send a host's requests as streams of one connection.
    #[arg(long, requires = "tls")]
    pub http2: bool,
    /// Leases the started daemon holds ready beyond --concurrency (its --prefetch).
    #[arg(long, default_value_t = 2048)]
    pub prefetch: u32,
    /// Requests the started daemon sends at once to one host (its --max-connections-per-host).
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_host: u32,
    /// Deliveries already in the database before the run (half succeeded, half held for a paused webhook).
    #[arg(long, default_value_t = 0)]
    pub backlog: usize,
    /// How long ago the backlog's succeeded half was published: older than the server's retention (30d),
    /// it is pruned while the run goes (the cost of retention).
    #[arg(long, default_value = "0s", value_parser = kit_webhooks::duration::parse_duration)]
    pub backlog_age: Duration,
    /// Benchmark an existing deployment at this URL instead of starting one. Its daemons must reach this
    /// machine's loopback (`--allow-http`, `--allow-network 127.0.0.0/8`).
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// With --target: an admin key of the account the bench creates its webhooks in.
    #[arg(long, env = "KIT_BENCH_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// With --target: the account of --admin-key, which the bench publishes its events to. A server the
    /// bench starts gets an account of its own for each run.
    #[arg(long, default_value = "default")]
    pub account: String,
    /// With --target: a publisher key.
    #[arg(long, env = "KIT_BENCH_PUBLISHER_KEY", hide_env_values = true)]
    pub publisher_key: Option<String>,
    /// Database of the started server [default: a temporary SQLite file].
    #[arg(long)]
    pub database_url: Option<String>,
    /// The key that seals the started server's webhook secrets [default: one per --database-url in the
    /// temporary directory, made on first use, so that a database is benchmarked again with its key].
    #[arg(long, value_name = "PATH")]
    pub secrets_key_file: Option<std::path::PathBuf>,
    /// How long the raw-ceiling run lasts; 0s skips it.
    #[arg(long, default_value = "3s", value_parser = kit_webhooks::duration::parse_duration)]
    pub ceiling_duration: Duration,
    /// Give up waiting for deliveries after this long.
    #[arg(long, default_value = "300s", value_parser = kit_webhooks::duration::parse_duration)]
    pub timeout: Duration,
    /// After the last receipt, keep the started system idle this long and report the daemon's resident
    /// memory before and after: what it gives back once its connections and per-endpoint state are idle.
    #[arg(long, default_value = "0s", value_parser = kit_webhooks::duration::parse_duration)]
    pub linger: Duration,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Run the started server and daemon with their metrics on (`--metrics-listen` on free loopback ports),
    /// each scraped once a second during the run: the cost of being watched.
    #[arg(long)]
    pub metrics: bool,
}
