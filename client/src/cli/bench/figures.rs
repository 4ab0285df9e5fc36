//! What a run measured, and how it is shown.

use serde::Serialize;

use super::processes::Usage;

/// The figures of one run.
#[derive(Debug, Serialize)]
pub struct Figures {
    pub events: usize,
    pub webhooks: usize,
    /// Accounts (`--accounts`): with more than one, `webhooks_per_account` each, and `webhooks` is unused.
    pub accounts: usize,
    pub webhooks_per_account: usize,
    /// Whether each receiver was a host of its own (`--hosts`).
    pub hosts: bool,
    /// Noisy neighbours (`--slow-accounts`): accounts besides the others, `slow_webhooks_per_account`
    /// webhooks each, whose endpoints answer after `slow_latency` (or `hang`: never). Every other figure
    /// counts the other accounts' deliveries only.
    pub slow_accounts: usize,
    pub slow_webhooks_per_account: Option<usize>,
    pub slow_latency: Option<String>,
    /// Deliveries to the slow accounts (their events × their webhooks), and the requests their endpoints
    /// were sent.
    pub slow_deliveries: usize,
    pub slow_requests: u64,
    pub deliveries_expected: usize,
    pub backlog: usize,
    pub deliveries_received: usize,
    pub duplicates: u64,
    pub bad_signatures: u64,
    pub payload_bytes: usize,
    pub concurrency: u32,
    pub prefetch: u32,
    pub max_connections_per_host: u32,
    /// Whether the started processes served metrics, scraped every second (`--metrics`).
    pub metrics: bool,
    /// Whether the receivers served HTTPS (`--tls`), the raw ceiling's included.
    pub tls: bool,
    /// Whether the receivers offered HTTP/2 (`--http2`), and how many delivery requests came in it.
    pub http2: bool,
    pub http2_requests: u64,
    /// TLS handshakes per delivery received (`--tls`): how well the daemon keeps its connections.
    pub tls_handshakes_per_delivery: Option<f64>,
    pub database: String,
    /// The mean of the ceiling measured before the run and after it.
    pub raw_ceiling_per_second: f64,
    pub raw_ceiling_before_per_second: f64,
    pub raw_ceiling_after_per_second: f64,
    /// The whole machine's CPU per raw-ceiling request, µs (the mean of the two ceiling runs): the same
    /// exchange with no pipeline, to set a delivery's cost against.
    pub ceiling_cost_per_request_us: Option<f64>,
    pub deliveries_per_second: f64,
    pub ratio_to_ceiling: f64,
    /// Events published per second (in calls of `batch` events).
    pub publish_calls_per_second: f64,
    pub batch: usize,
    pub latency_ms: Latency,
    pub attempts_per_delivery: f64,
    pub elapsed_seconds: f64,
    pub server: Option<Usage>,
    /// CPU seconds of the server's SQLite writer thread over the whole run (SQLite runs of a started
    /// server only): the serial path's own work.
    pub server_writer_cpu_seconds: Option<f64>,
    pub daemon: Option<Usage>,
    /// With `--linger`: the daemon's memory once idle.
    pub daemon_idle: Option<Idle>,
    /// How busy the whole machine was from the first publish to the last receipt (1.0: every core, all the
    /// time), where `/proc/stat` tells.
    pub machine_busy: Option<f64>,
    /// CPU seconds this machine's PostgreSQL processes used over the same span (PostgreSQL runs only).
    pub postgres_cpu_seconds: Option<f64>,
    /// Where the machine's CPU went from the first publish to the last receipt, per delivery received.
    pub cost_per_delivery_us: Option<Cost>,
}

/// The machine's CPU per delivery (µs) over a run, and each part of the system's share of it. The ratio to
/// the ceiling is, near enough, the ceiling's cost per request over `machine` (each as busy as the other):
/// this says which process a better ratio has to come from.
#[derive(Debug, Serialize)]
pub struct Cost {
    pub machine: f64,
    /// Started processes only (not with `--target`).
    pub server: Option<f64>,
    pub daemon: Option<f64>,
    /// PostgreSQL runs only.
    pub postgres: Option<f64>,
    /// The rest: the bench's publishers, receivers and checks, and the kernel's work beside them.
    pub rest: f64,
}

impl Cost {
    /// The cost of `received` deliveries, from the CPU seconds the machine and the server, the daemon and
    /// PostgreSQL (in that order) used over the run.
    pub fn per_delivery(
        received: usize,
        machine_cpu: Option<f64>,
        [server, daemon, postgres]: [Option<f64>; 3],
    ) -> Option<Cost> {
        let us = |seconds: f64| seconds * 1e6 / received as f64;
        let machine = us(machine_cpu.filter(|_| received > 0)?);
        let parts = [server, daemon, postgres].map(|part| part.map(us));
        Some(Cost {
            machine,
            rest: machine - parts.iter().flatten().sum::<f64>(),
            server: parts[0],
            daemon: parts[1],
            postgres: parts[2],
        })
    }
}

/// The daemon's resident memory as the run ended and after lingering idle (`--linger`).
#[derive(Debug, Serialize)]
pub struct Idle {
    pub linger_seconds: f64,
    pub daemon_rss_at_end_mib: f64,
    pub daemon_rss_after_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The value at quantile `q` of `sorted`.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The figures as a table for people.
pub fn print_table(f: &Figures) {
    let usage = |u: &Option<Usage>| match u {
        Some(u) => format!(
            "{:.2} s CPU, {:.1} MiB peak RSS",
            u.cpu_seconds, u.peak_rss_mib
        ),
        None => "-".into(),
    };
    crate::cli::output::fields(&[
        ("database", database(f)),
        ("events", events(f)),
        (
            "received",
            format!(
                "{} ({} duplicates, {} bad signatures)",
                f.deliveries_received, f.duplicates, f.bad_signatures
            ),
        ),
        ("slow accounts", slow_accounts(f)),
        ("raw ceiling", ceiling(f)),
        ("end to end", throughput(f)),
        ("publish", publish(f)),
        (
            "publish → receipt",
            format!(
                "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                f.latency_ms.p50, f.latency_ms.p90, f.latency_ms.p99, f.latency_ms.max
            ),
        ),
        (
            "attempts per delivery",
            format!("{:.3}", f.attempts_per_delivery),
        ),
        ("TLS handshakes per delivery", handshakes(f)),
        ("server", usage(&f.server)),
        (
            "server writer",
            f.server_writer_cpu_seconds.map_or("-".into(), |s| {
                format!("{s:.2} s CPU (the SQLite writer connection's thread)")
            }),
        ),
        ("daemon", usage(&f.daemon)),
        ("daemon idle", daemon_idle(f)),
        (
            "postgres",
            f.postgres_cpu_seconds.map_or("-".into(), |s| {
                format!("{s:.2} s CPU (this machine's postgres processes)")
            }),
        ),
        ("cost per delivery", cost(f)),
        (
            "machine",
            f.machine_busy.map_or("-".into(), |b| {
                format!(
                    "{:.0} % busy, every core, first publish to last receipt",
                    b * 100.0
                )
            }),
        ),
    ]);
}

fn cost(f: &Figures) -> String {
    let Some(cost) = &f.cost_per_delivery_us else {
        return "-".into();
    };
    let part = |name: &str, us: Option<f64>| us.map(|us| format!("{name} {us:.0}, "));
    let parts: String = [
        part("server", cost.server),
        part("daemon", cost.daemon),
        part("postgres", cost.postgres),
    ]
    .into_iter()
    .flatten()
    .collect();
    let ceiling = f
        .ceiling_cost_per_request_us
        .map_or(String::new(), |us| format!("; a raw request {us:.0} µs"));
    format!(
        "{:.0} µs of the machine's CPU ({parts}the rest {:.0}){ceiling}",
        cost.machine, cost.rest
    )
}

fn database(f: &Figures) -> String {
    let metrics = if f.metrics {
        ", metrics scraped every second"
    } else {
        ""
    };
    format!(
        "{} ({} deliveries of history{metrics})",
        f.database, f.backlog
    )
}

fn handshakes(f: &Figures) -> String {
    f.tls_handshakes_per_delivery
        .map_or("- (plain HTTP)".into(), |h| match f.http2 {
            true => format!("{h:.4} ({} requests in HTTP/2)", f.http2_requests),
            false => format!("{h:.4}"),
        })
}

fn daemon_idle(f: &Figures) -> String {
    f.daemon_idle.as_ref().map_or("-".into(), |idle| {
        format!(
            "{:.1} MiB resident as the run ended, {:.1} MiB after {:.0} s idle",
            idle.daemon_rss_at_end_mib, idle.daemon_rss_after_mib, idle.linger_seconds
        )
    })
}

fn publish(f: &Figures) -> String {
    match f.batch {
        0 | 1 => format!("{:.0} calls/s", f.publish_calls_per_second),
        batch => format!(
            "{:.0} events/s, in calls of {batch} (PublishEvents)",
            f.publish_calls_per_second
        ),
    }
}

fn events(f: &Figures) -> String {
    if f.accounts == 1 {
        return format!(
            "{} × {} webhooks = {} deliveries",
            f.events, f.webhooks, f.deliveries_expected
        );
    }
    format!(
        "{} to {} accounts of {} webhooks: {} deliveries",
        f.events, f.accounts, f.webhooks_per_account, f.deliveries_expected
    )
}

fn slow_accounts(f: &Figures) -> String {
    let (Some(webhooks), Some(latency)) = (f.slow_webhooks_per_account, &f.slow_latency) else {
        return "none".into();
    };
    let answering = match latency.as_str() {
        "hang" => "never answering".to_owned(),
        after => format!("answering after {after}"),
    };
    format!(
        "{} × {webhooks} webhooks {answering}: {} deliveries, {} requests sent (apart from every figure here)",
        f.slow_accounts, f.slow_deliveries, f.slow_requests
    )
}

fn ceiling(f: &Figures) -> String {
    if f.raw_ceiling_per_second <= 0.0 {
        return "not measured".into();
    }
    format!(
        "{:.0} requests/s{} (before the run {:.0}, after it {:.0})",
        f.raw_ceiling_per_second,
        if f.tls { " over HTTPS" } else { "" },
        f.raw_ceiling_before_per_second,
        f.raw_ceiling_after_per_second
    )
}

fn throughput(f: &Figures) -> String {
    if f.raw_ceiling_per_second <= 0.0 {
        return format!("{:.0} deliveries/s", f.deliveries_per_second);
    }
    format!(
        "{:.0} deliveries/s ({:.1} % of the ceiling)",
        f.deliveries_per_second,
        f.ratio_to_ceiling * 100.0
    )
}
