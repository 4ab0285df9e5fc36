//! How a daemon delivers, whichever process it runs in: the flags of `kit-webhooks-daemon` that the server's
//! `serve --with-daemon` takes too, their defaults, and the shares of the request slots derived from them.

use std::path::PathBuf;

/// Large enough that a busy stream's claims and report groups are large: the server's writer cycle costs less
/// per delivery the more it carries (docs/PERFORMANCE.md, step 31).
const DEFAULT_PREFETCH: u32 = 2048;
/// HTTP requests in flight at once by default, across all endpoints.
const DEFAULT_MAX_IN_FLIGHT: u32 = 256;
/// The slow lane's size by default, in slots of --max-in-flight.
const SLOW_LANE_FACTOR: u32 = 4;
/// The most connections kept to one host, whatever `--max-in-flight`: bounds the daemon's memory.
const MAX_DEFAULT_CONNECTIONS_PER_HOST: u32 = 256;
/// How a daemon delivers, whichever process it runs in (flags of `kit-webhooks-daemon` and of the server's
/// `serve --with-daemon`).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// HTTP requests in flight at once, across all endpoints.
    #[arg(long, env = "KIT_WEBHOOKS_MAX_IN_FLIGHT", default_value_t = DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: u32,
    /// HTTP requests in the slow lane at once: those unanswered after 250 ms, which give their slot of
    /// --max-in-flight back, and every request to a webhook whose latest request was one, until one is
    /// answered in time. Waiting costs memory rather than CPU, so this may be larger; endpoints that answer
    /// late or never hold these, not the slots of those that answer [default: 4 × --max-in-flight].
    #[arg(long, env = "KIT_WEBHOOKS_MAX_SLOW_IN_FLIGHT")]
    pub max_slow_in_flight: Option<u32>,
    /// Leased deliveries kept ready beyond those being sent, so a free request slot never waits for the
    /// server's next claim and report commits (the stream asks for `max-in-flight + prefetch` leases).
    #[arg(long, env = "KIT_WEBHOOKS_PREFETCH", default_value_t = DEFAULT_PREFETCH)]
    pub prefetch: u32,
    /// HTTP requests outstanding at once to one host (scheme, host and port); the rest wait their turn.
    /// Each outstanding HTTP/1.1 request holds a connection, so this bounds sockets and memory per host
    /// [default: a quarter of --max-in-flight, at most 256].
    #[arg(long, env = "KIT_WEBHOOKS_MAX_CONNECTIONS_PER_HOST")]
    pub max_connections_per_host: Option<u32>,
    /// HTTP requests outstanding at once for one account's webhooks; the rest wait their turn, so that one
    /// account's slow or dead endpoints hold at most this many of the daemon's slots [default: half of
    /// --max-in-flight: more than one webhook's leases (--max-in-flight-per-webhook on the server), so that
    /// one slow endpoint does not hold up its account's others].
    #[arg(long, env = "KIT_WEBHOOKS_MAX_IN_FLIGHT_PER_ACCOUNT")]
    pub max_in_flight_per_account: Option<u32>,
    /// Also deliver to addresses in this network (CIDR, e.g. 127.0.0.0/8); repeatable. By default only
    /// globally routable addresses are reached.
    #[arg(
        long = "allow-network",
        value_name = "CIDR",
        env = "KIT_WEBHOOKS_ALLOW_NETWORKS",
        value_delimiter = ','
    )]
    pub allow_networks: Vec<ipnet::IpNet>,
    /// Extra trusted CA certificates (PEM) for endpoints' TLS, besides the system and webpki roots.
    #[arg(long, value_name = "PEM", env = "KIT_WEBHOOKS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            prefetch: DEFAULT_PREFETCH,
            max_slow_in_flight: None,
            max_connections_per_host: None,
            max_in_flight_per_account: None,
            allow_networks: Vec::new(),
            ca_file: None,
        }
    }
}

impl Options {
    /// A share of the request slots, at least one.
    fn share(&self, divisor: u32) -> u32 {
        (self.max_in_flight / divisor).max(1)
    }

    /// Requests in the slow lane at once (`--max-slow-in-flight` or its default).
    pub fn max_slow(&self) -> u32 {
        self.max_slow_in_flight
            .unwrap_or_else(|| self.max_in_flight.saturating_mul(SLOW_LANE_FACTOR))
            .max(1)
    }

    /// Requests outstanding at once to one host (`--max-connections-per-host` or its default).
    pub fn per_host(&self) -> u32 {
        self.max_connections_per_host
            .unwrap_or_else(|| self.share(4).min(MAX_DEFAULT_CONNECTIONS_PER_HOST))
            .max(1)
    }

    /// Requests outstanding at once for one account (`--max-in-flight-per-account` or its default).
    pub fn per_account(&self) -> u32 {
        self.max_in_flight_per_account
            .unwrap_or_else(|| self.share(2))
            .max(1)
    }

    /// Refuses settings no server accepts: a stream asks for `max-in-flight + prefetch` leases, and a server
    /// refuses a stream that asks for more than [`kit_webhooks::MAX_STREAM_IN_FLIGHT`].
    pub fn validate(&self) -> anyhow::Result<()> {
        let asked = u64::from(self.max_in_flight) + u64::from(self.prefetch);
        anyhow::ensure!(
            asked <= u64::from(kit_webhooks::MAX_STREAM_IN_FLIGHT),
            "--max-in-flight ({}) + --prefetch ({}) is {asked}; a server lends a stream at most {} leases",
            self.max_in_flight,
            self.prefetch,
            kit_webhooks::MAX_STREAM_IN_FLIGHT
        );
        Ok(())
    }
}
