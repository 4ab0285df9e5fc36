//! `kit-webhooks bench`: how many signed deliveries per second the pipeline sustains, how fast an event
//! reaches its endpoint, and what that costs, measured against the raw ceiling of the same machine in the
//! same run, while checking that every delivery arrived with a valid signature.
//!
//! By default it starts its own system under test (`kit-webhooks-server` and `kit-webhooks-daemon`, the
//! binaries beside this one, on a temporary SQLite file or `--database-url`), its own receivers on loopback,
//! creates `--webhooks` webhooks spread over the receivers, publishes `--events` events, and waits until every
//! delivery has been received.

mod ceiling;
mod processes;
mod receivers;

use std::{
    io::IsTerminal,
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use kit_webhooks::signature::Secret;
use kit_webhooks_client::{Client, NewWebhook};
use serde::Serialize;
use tokio::sync::Semaphore;

use self::{
    processes::Usage,
    receivers::{EventKey, Tally},
};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Events to publish.
    #[arg(long, default_value_t = 2000)]
    pub events: usize,
    /// Webhooks, all subscribed to every event (the fan-out).
    #[arg(long, default_value_t = 10)]
    pub webhooks: usize,
    /// Receivers on loopback the webhooks are spread over.
    #[arg(long, default_value_t = 4)]
    pub receivers: usize,
    /// How long each receiver takes to answer.
    #[arg(long, default_value = "0ms", value_parser = kit_webhooks::duration::parse_duration)]
    pub latency: Duration,
    /// Size of each event's data.
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// Events per second to publish at; 0 for as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Publish calls in flight at once (when not rate-limited).
    #[arg(long, default_value_t = 16)]
    pub publishers: usize,
    /// Deliveries in flight in the daemon, and requests in flight in the raw-ceiling run.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u32,
    /// Leases the started daemon holds ready beyond --concurrency (its --prefetch).
    #[arg(long, default_value_t = 2048)]
    pub prefetch: u32,
    /// Requests the started daemon sends at once to one host (its --max-connections-per-host).
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_host: u32,
    /// Deliveries already in the database before the run (half succeeded, half held for a paused webhook).
    #[arg(long, default_value_t = 0)]
    pub backlog: usize,
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
    /// How long the raw-ceiling run lasts; 0s skips it.
    #[arg(long, default_value = "3s", value_parser = kit_webhooks::duration::parse_duration)]
    pub ceiling_duration: Duration,
    /// Give up waiting for deliveries after this long.
    #[arg(long, default_value = "300s", value_parser = kit_webhooks::duration::parse_duration)]
    pub timeout: Duration,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The figures of one run.
#[derive(Debug, Serialize)]
pub struct Figures {
    pub events: usize,
    pub webhooks: usize,
    pub deliveries_expected: usize,
    pub backlog: usize,
    pub deliveries_received: usize,
    pub duplicates: u64,
    pub bad_signatures: u64,
    pub payload_bytes: usize,
    pub concurrency: u32,
    pub prefetch: u32,
    pub max_connections_per_host: u32,
    pub database: String,
    /// The mean of the ceiling measured before the run and after it.
    pub raw_ceiling_per_second: f64,
    pub raw_ceiling_before_per_second: f64,
    pub raw_ceiling_after_per_second: f64,
    pub deliveries_per_second: f64,
    pub ratio_to_ceiling: f64,
    pub publish_calls_per_second: f64,
    pub latency_ms: Latency,
    pub attempts_per_delivery: f64,
    pub elapsed_seconds: f64,
    pub server: Option<Usage>,
    pub daemon: Option<Usage>,
    /// How busy the whole machine was from the first publish to the last receipt (1.0: every core, all the
    /// time), where `/proc/stat` tells.
    pub machine_busy: Option<f64>,
    /// CPU seconds this machine's PostgreSQL processes used over the same span (PostgreSQL runs only).
    pub postgres_cpu_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

pub async fn run(args: BenchArgs, json_output: bool) -> anyhow::Result<()> {
    let figures = measure(&args).await?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json_output {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        print_table(&figures);
    }
    if figures.deliveries_received < figures.deliveries_expected || figures.bad_signatures > 0 {
        bail!(
            "{} of {} deliveries received, {} with a bad signature",
            figures.deliveries_received,
            figures.deliveries_expected,
            figures.bad_signatures
        );
    }
    Ok(())
}

pub async fn measure(args: &BenchArgs) -> anyhow::Result<Figures> {
    if args.events == 0 || args.webhooks == 0 || args.receivers == 0 {
        bail!("--events, --webhooks and --receivers must be at least 1");
    }
    let tally = Arc::new(Tally::default());
    let receivers = receivers::start(args.receivers, args.latency, tally.clone()).await?;
    // The ceiling is measured before the system under test starts and again after it has stopped: on a
    // shared machine it drifts (by a third within minutes on the 2-core machines of docs/PERFORMANCE.md), and
    // the mean of the two brackets the run it is compared with. `--ceiling-duration 0s` skips it (the memory
    // run's 10,000 connections would need twice as many file descriptors in this one process).
    let measure_ceiling = |when: &'static str| {
        let receivers = &receivers;
        async move {
            if args.ceiling_duration.is_zero() {
                return Ok::<_, anyhow::Error>(0.0);
            }
            progress_note(when);
            ceiling::measure(
                receivers,
                args.concurrency as usize,
                args.payload_bytes,
                args.ceiling_duration,
            )
            .await
        }
    };
    let ceiling_before = measure_ceiling("measuring the raw ceiling").await?;

    // The system under test.
    let dir = tempfile::tempdir()?;
    let system = match &args.target {
        Some(server_url) => Target::existing(server_url, args)?,
        None => Target::start(args, dir.path())?,
    };
    let Target {
        ref server_url,
        ref admin_key,
        ref publisher_key,
        ref account,
        ref server,
        ref daemon,
        ref database,
    } = system;

    let admin = Client::connect(server_url, admin_key).await?;
    for index in 0..args.webhooks {
        let url = format!("{}/wh/{index}", receivers[index % receivers.len()]);
        // The bench sends far more than the default 100 requests/s to one endpoint.
        let webhook = NewWebhook {
            rate_limit_per_second: Some(100_000),
            ..NewWebhook::new(url, ["interview.*"]).description(format!("bench {index}"))
        };
        let (_, secret) = admin.create_webhook(webhook).await?;
        let secret = Secret::parse(&secret)
            .map_err(|err| anyhow::anyhow!("webhook {index}'s secret: {err}"))?;
        tally
            .secrets
            .write()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .insert(index, secret);
    }

    let publisher = Client::connect(server_url, publisher_key).await?;
    let data = payload(args.payload_bytes);
    let expected = args.events * args.webhooks;
    // Room for every receipt up front: the map does not grow (and copy itself) while receivers record.
    tally
        .first_seen
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .reserve(expected);
    let published_at = Arc::new(std::sync::Mutex::new(
        std::collections::HashMap::with_capacity(args.events),
    ));
    let machine_before = processes::machine_ticks();
    let postgres_before = processes::postgres_cpu_seconds();
    let started = Instant::now();
    let progress = Progress::start(expected, tally.clone());
    let slots = Arc::new(Semaphore::new(args.publishers.max(1)));
    let mut calls = Vec::with_capacity(args.events);
    for n in 0..args.events {
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(n as f64 / f64::from(args.rate));
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = slots.clone().acquire_owned().await?;
        let (publisher, data, published_at, account) = (
            publisher.clone(),
            data.clone(),
            published_at.clone(),
            account.clone(),
        );
        calls.push(tokio::spawn(async move {
            let sent = Instant::now();
            let reply = publisher
                .publish_event(&account, "interview.scheduled", &data, None)
                .await;
            drop(permit);
            let reply = reply?;
            if let (Some(event), Ok(mut map)) = (reply.event, published_at.lock()) {
                map.insert(EventKey::of(&event.id), sent);
            }
            Ok::<_, kit_webhooks_client::Error>(())
        }));
    }
    for call in calls {
        call.await??;
    }
    let publish_seconds = started.elapsed().as_secs_f64();

    let deadline = Instant::now() + args.timeout;
    while tally.unique() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    progress.stop();
    let machine_busy = machine_before.zip(processes::machine_ticks()).and_then(
        |((busy0, all0), (busy1, all1))| {
            (all1 > all0).then(|| (busy1 - busy0) as f64 / (all1 - all0) as f64)
        },
    );
    let postgres_cpu =
        (database == "postgresql").then(|| processes::postgres_cpu_seconds() - postgres_before);
    let server_usage = server.as_ref().and_then(|p| processes::usage(p.0.id()));
    let daemon_usage = daemon.as_ref().and_then(|p| processes::usage(p.0.id()));
    let database = database.clone();
    drop(system);
    let ceiling_after = measure_ceiling("measuring the raw ceiling again").await?;
    let ceiling = (ceiling_before + ceiling_after) / 2.0;

    let first_seen = tally
        .first_seen
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .clone();
    let published_at = published_at
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .clone();
    let last = first_seen.values().max().copied().unwrap_or(started);
    let elapsed = last.duration_since(started).as_secs_f64().max(1e-9);
    let mut latencies: Vec<f64> = first_seen
        .iter()
        .filter_map(|((event, _), at)| {
            published_at
                .get(event)
                .map(|sent| at.duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let received = first_seen.len();
    let deliveries_per_second = received as f64 / elapsed;
    Ok(Figures {
        events: args.events,
        webhooks: args.webhooks,
        deliveries_expected: expected,
        backlog: args.backlog,
        deliveries_received: received,
        duplicates: tally.duplicates.load(Ordering::Relaxed),
        bad_signatures: tally.bad_signatures.load(Ordering::Relaxed),
        payload_bytes: args.payload_bytes,
        concurrency: args.concurrency,
        prefetch: args.prefetch,
        max_connections_per_host: args.max_connections_per_host,
        database,
        raw_ceiling_per_second: ceiling,
        raw_ceiling_before_per_second: ceiling_before,
        raw_ceiling_after_per_second: ceiling_after,
        deliveries_per_second,
        ratio_to_ceiling: if ceiling > 0.0 {
            deliveries_per_second / ceiling
        } else {
            0.0
        },
        publish_calls_per_second: args.events as f64 / publish_seconds.max(1e-9),
        latency_ms: Latency {
            p50: percentile(&latencies, 0.50),
            p90: percentile(&latencies, 0.90),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or(0.0),
        },
        attempts_per_delivery: tally.requests.load(Ordering::Relaxed) as f64
            / received.max(1) as f64,
        elapsed_seconds: elapsed,
        server: server_usage,
        daemon: daemon_usage,
        machine_busy,
        postgres_cpu_seconds: postgres_cpu,
    })
}

/// The system under test: started here (server and daemon processes), or an existing deployment.
struct Target {
    server_url: String,
    admin_key: String,
    publisher_key: String,
    /// The account of `admin_key`: events are published to it.
    account: String,
    // Fields drop in this order: the daemon is stopped before the server it streams from, so it does not
    // log a lost stream at the end of every run.
    daemon: Option<processes::Process>,
    server: Option<processes::Process>,
    database: String,
}

impl Target {
    /// `kit-webhooks-server` and `kit-webhooks-daemon`, the binaries beside this one, on `--database-url` or a
    /// SQLite file in `dir`.
    fn start(args: &BenchArgs, dir: &std::path::Path) -> anyhow::Result<Target> {
        let database_url = args
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("bench.db").display()));
        let listen = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.to_string()
        };
        let server_bin = processes::sibling("kit-webhooks-server")?;
        let daemon_bin = processes::sibling("kit-webhooks-daemon")?;
        if args.backlog > 0 {
            progress_note("seeding the backlog");
            processes::seed_backlog(&server_bin, &database_url, args.backlog)?;
        }
        // An account of this run's own, so that on a database used before (PostgreSQL's, typically) the
        // events fan out to this run's webhooks only, not to earlier runs' long-gone receivers.
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let account = format!("bench-{}", since_epoch.as_millis());
        let admin_key = processes::create_key(&server_bin, &database_url, "admin", Some(&account))?;
        let publisher_key = processes::create_key(&server_bin, &database_url, "publisher", None)?;
        let daemon_key = processes::create_key(&server_bin, &database_url, "daemon", None)?;
        let server = processes::start_server(
            &server_bin,
            &listen,
            &database_url,
            dir,
            // One webhook may use the daemon's whole window (the fan-out 1 runs need it).
            (args.concurrency + args.prefetch).max(16),
        )?;
        let server_url = format!("http://{listen}");
        let daemon = processes::start_daemon(
            &daemon_bin,
            &server_url,
            &daemon_key,
            args.concurrency,
            args.prefetch,
            args.max_connections_per_host,
        )?;
        Ok(Target {
            server_url,
            admin_key,
            publisher_key,
            account,
            server: Some(server),
            daemon: Some(daemon),
            database: if database_url.starts_with("postgres") {
                "postgresql"
            } else {
                "sqlite"
            }
            .into(),
        })
    }

    /// A running deployment (`--target`): its daemons must be able to reach this machine's loopback
    /// receivers, and its CPU and memory are not measured.
    fn existing(server_url: &str, args: &BenchArgs) -> anyhow::Result<Target> {
        if args.backlog > 0 || args.database_url.is_some() {
            bail!(
                "--backlog and --database-url apply to a server the bench starts, not to --target"
            );
        }
        let (Some(admin_key), Some(publisher_key)) = (&args.admin_key, &args.publisher_key) else {
            bail!("--target needs --admin-key and --publisher-key");
        };
        Ok(Target {
            server_url: server_url.to_owned(),
            admin_key: admin_key.clone(),
            publisher_key: publisher_key.clone(),
            account: args.account.clone(),
            server: None,
            daemon: None,
            database: "deployment".into(),
        })
    }
}

/// A JSON object of about `bytes` bytes.
fn payload(bytes: usize) -> String {
    let filler = "x".repeat(bytes.saturating_sub(40));
    format!(r#"{{"candidate_id":9007199254740993,"notes":"{filler}"}}"#)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn print_table(f: &Figures) {
    let usage = |u: &Option<Usage>| match u {
        Some(u) => format!(
            "{:.2} s CPU, {:.1} MiB peak RSS",
            u.cpu_seconds, u.peak_rss_mib
        ),
        None => "-".into(),
    };
    super::output::fields(&[
        (
            "database",
            format!("{} ({} deliveries of history)", f.database, f.backlog),
        ),
        (
            "events × webhooks",
            format!(
                "{} × {} = {} deliveries",
                f.events, f.webhooks, f.deliveries_expected
            ),
        ),
        (
            "received",
            format!(
                "{} ({} duplicates, {} bad signatures)",
                f.deliveries_received, f.duplicates, f.bad_signatures
            ),
        ),
        (
            "raw ceiling",
            if f.raw_ceiling_per_second > 0.0 {
                format!(
                    "{:.0} requests/s (before the run {:.0}, after it {:.0})",
                    f.raw_ceiling_per_second,
                    f.raw_ceiling_before_per_second,
                    f.raw_ceiling_after_per_second
                )
            } else {
                "not measured".into()
            },
        ),
        (
            "end to end",
            if f.raw_ceiling_per_second > 0.0 {
                format!(
                    "{:.0} deliveries/s ({:.1} % of the ceiling)",
                    f.deliveries_per_second,
                    f.ratio_to_ceiling * 100.0
                )
            } else {
                format!("{:.0} deliveries/s", f.deliveries_per_second)
            },
        ),
        (
            "publish",
            format!("{:.0} calls/s", f.publish_calls_per_second),
        ),
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
        ("server", usage(&f.server)),
        ("daemon", usage(&f.daemon)),
        (
            "postgres",
            f.postgres_cpu_seconds.map_or("-".into(), |s| {
                format!("{s:.2} s CPU (this machine's postgres processes)")
            }),
        ),
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

fn progress_note(text: &str) {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K{text}…");
    }
}

/// A progress bar on stderr (when it is a terminal) while deliveries arrive.
struct Progress(Option<tokio::task::JoinHandle<()>>);

impl Progress {
    fn start(expected: usize, tally: Arc<Tally>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        Progress(Some(tokio::spawn(async move {
            loop {
                let done = tally.unique();
                let width = 30;
                let filled = (done * width / expected.max(1)).min(width);
                eprint!(
                    "\r\x1b[2K[{}{}] {done}/{expected} deliveries",
                    "#".repeat(filled),
                    "-".repeat(width - filled)
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })))
    }

    fn stop(self) {
        if let Some(task) = self.0 {
            task.abort();
            eprint!("\r\x1b[2K");
        }
    }
}
