//! `kit-webhooks-daemon`: delivers a Kit Webhooks server's deliveries. Run as many as needed.

use clap::Parser;
use kit_webhooks::duration::DurationArg;
use kit_webhooks_daemon::{Config, Options};

// mimalloc rather than glibc's malloc: every delivery allocates and frees a few dozen small buffers (the task,
// its headers, hyper's request and response, the report), where glibc spent much of the daemon's CPU
// (docs/PERFORMANCE.md, step 17).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kit-webhooks-daemon",
    version,
    about = "The Kit Webhooks delivery daemon"
)]
struct Cli {
    /// The server's gRPC address.
    #[arg(
        long,
        env = "KIT_WEBHOOKS_SERVER",
        default_value = "http://127.0.0.1:7400"
    )]
    server: String,
    /// A `daemon` API key (`kit-webhooks-server keys create --role daemon`).
    #[arg(long, env = "KIT_WEBHOOKS_TOKEN", hide_env_values = true)]
    token: String,
    /// A name for this daemon in the server's logs [default: daemon-<pid>].
    #[arg(long, env = "KIT_WEBHOOKS_DAEMON_ID")]
    daemon_id: Option<String>,
    /// How log lines are written: `text`, or `json` (one object per line) for a log pipeline.
    #[arg(long, env = "KIT_WEBHOOKS_LOG_FORMAT", default_value_t = kit_webhooks::logging::Format::Text)]
    log_format: kit_webhooks::logging::Format,
    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` on this address (docs/OPERATIONS.md).
    #[arg(long, value_name = "ADDR", env = "KIT_WEBHOOKS_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// On SIGTERM, wait at most this long for the requests in flight to finish and be reported; a second
    /// SIGTERM exits at once.
    #[arg(long, env = "KIT_WEBHOOKS_SHUTDOWN_GRACE", default_value_t = DurationArg(kit_webhooks_daemon::DEFAULT_SHUTDOWN_GRACE))]
    shutdown_grace: DurationArg,
    #[command(flatten)]
    options: Options,
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
    kit_webhooks::logging::init("info", cli.log_format);
    // Installed before anything starts, so an early SIGTERM still means a clean stop.
    let signal = kit_webhooks::shutdown_signal(cli.shutdown_grace.0);
    let config = Config {
        server: cli.server,
        token: cli.token,
        daemon_id: cli
            .daemon_id
            .unwrap_or_else(|| format!("daemon-{}", std::process::id())),
        options: cli.options,
        metrics_listen: cli.metrics_listen,
        shutdown_grace: cli.shutdown_grace.0,
    };
    let daemon = match kit_webhooks_daemon::spawn(config) {
        Ok(daemon) => daemon,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    };
    let stop = daemon.stop_token();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("stopping: finishing in-flight deliveries");
        stop.cancel();
    });
    if let Err(err) = daemon.wait().await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
