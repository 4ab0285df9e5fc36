//! `kit-webhooks bench`: how many signed deliveries per second the pipeline sustains, how fast an event
//! reaches its endpoint, and what that costs, measured against the raw ceiling of the same machine in the
//! same run, while checking that every delivery arrived with a valid signature.
//!
//! By default it starts its own system under test (`kit-webhooks-server` and `kit-webhooks-daemon`, the
//! binaries beside this one, on a temporary SQLite file or `--database-url`), its own receivers on loopback,
//! creates `--webhooks` webhooks spread over the receivers, publishes `--events` events, and waits until every
//! delivery has been received.

mod args;
mod ceiling;
mod figures;
mod processes;
mod progress;
mod receivers;
mod shape;
mod spent;
mod target;
mod tls;

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use kit_webhooks::sync::lock;
use kit_webhooks::{proto, signature::Secret};
use kit_webhooks_client::{Client, NewWebhook};
use tokio::sync::Semaphore;

pub use self::args::BenchArgs;
pub use self::figures::{Figures, Latency};
use self::{
    ceiling::Ceiling,
    figures::{percentile, print_table, Cost},
    progress::Progress,
    receivers::{EventKey, Tally},
    spent::{Counters, Spent},
    target::Target,
};

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
    let shape = shape::Shape::of(args)?;
    let tally = Arc::new(Tally::default());
    let dir = tempfile::tempdir()?;
    let Endpoints {
        tls,
        receivers,
        slow_receivers,
    } = start_receivers(args, &shape, dir.path(), &tally).await?;
    // The ceiling is measured before the system under test starts and again after it has stopped: on a
    // shared machine it drifts within minutes, and the mean of the two brackets the run it is compared with.
    let client_tls = tls.as_ref().map(|tls| &tls.client);
    let ceiling_before =
        measure_ceiling(args, &receivers, client_tls, "measuring the raw ceiling").await?;

    let system = match &args.target {
        Some(server_url) => Target::existing(server_url, args)?,
        None => Target::start(
            args,
            shape.all_accounts(),
            dir.path(),
            tls.as_ref().map(|tls| tls.ca_file.as_path()),
        )?,
    };
    let handshakes_before = tally.tls_handshakes.load(Ordering::Relaxed);
    create_webhooks(&system, &shape, (&receivers, &slow_receivers), &tally).await?;

    let (draws, deliveries) = shape.draw_events(args.events);
    let expected = deliveries.expected;
    // Room for every receipt up front: the map does not grow (and copy itself) while receivers record.
    lock(&tally.first_seen).reserve(expected);
    let counters = Counters::read(&system);
    let started = Instant::now();
    let progress = Progress::start(expected, tally.clone());
    let published = publish(&system, &draws, args, started).await?;
    let deadline = Instant::now() + args.timeout;
    while tally.unique() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    progress.stop();
    let spent = counters
        .spent(args, &system, &tally, handshakes_before)
        .await;
    drop(system);
    let ceiling_after = measure_ceiling(
        args,
        &receivers,
        client_tls,
        "measuring the raw ceiling again",
    )
    .await?;
    Ok(figures(
        args,
        &tally,
        (&published, deliveries),
        started,
        (ceiling_before, ceiling_after),
        spent,
    ))
}

/// The run's receivers, over HTTPS with the run's CA (`--tls`).
struct Endpoints {
    tls: Option<tls::BenchTls>,
    /// The base URLs of the well-behaved accounts' receivers.
    receivers: Vec<String>,
    /// The base URL of each slow account's receiver.
    slow_receivers: Vec<String>,
}

async fn start_receivers(
    args: &BenchArgs,
    shape: &shape::Shape,
    dir: &std::path::Path,
    tally: &Arc<Tally>,
) -> anyhow::Result<Endpoints> {
    // The slow accounts' receivers come after the others: each a host of its own with --hosts.
    let mut hosts = receivers::hosts(args.receivers + shape.slow_accounts, args.hosts);
    let tls = args
        .tls
        .then(|| tls::BenchTls::new(dir, &hosts, args.http2))
        .transpose()?;
    let slow_hosts = hosts.split_off(args.receivers);
    let prompt = receivers::Behaviour {
        answer: receivers::Answer::After(args.latency),
        slow: false,
    };
    let slow = receivers::Behaviour {
        answer: args.slow_latency,
        slow: true,
    };
    Ok(Endpoints {
        receivers: receivers::start(&hosts, prompt, tally.clone(), tls.as_ref()).await?,
        slow_receivers: receivers::start(&slow_hosts, slow, tally.clone(), tls.as_ref()).await?,
        tls,
    })
}

/// The raw ceiling over `receivers` (0 with `--ceiling-duration 0s`, which skips it: the memory run's 10,000
/// connections would need twice as many file descriptors in this one process).
async fn measure_ceiling(
    args: &BenchArgs,
    receivers: &[String],
    tls: Option<&rustls::ClientConfig>,
    when: &str,
) -> anyhow::Result<Ceiling> {
    if args.ceiling_duration.is_zero() {
        return Ok(Ceiling::default());
    }
    progress::note(when);
    ceiling::measure(
        receivers,
        args.concurrency as usize,
        args.payload_bytes,
        args.ceiling_duration,
        tls.cloned().map(|tls| (tls, args.http2)),
    )
    .await
}

/// Webhooks the bench creates at once: one at a time, over a connection per account, the idle-daemon
/// scenario's 20,000 took a third of its run.
const CREATING_AT_ONCE: usize = 32;

/// Creates each account's webhooks, spread over the receivers (a slow account's on its own receiver), and
/// gives the receivers their secrets. One connection serves every account, each call made with its account's
/// admin key.
async fn create_webhooks(
    system: &Target,
    shape: &shape::Shape,
    (receivers, slow_receivers): (&[String], &[String]),
    tally: &Tally,
) -> anyhow::Result<()> {
    let Some((_, first_key)) = system.accounts.first() else {
        return Ok(());
    };
    let connection = Client::connect(&system.server_url, first_key).await?;
    let admins = system
        .accounts
        .iter()
        .map(|(_, key)| connection.with_token(key))
        .collect::<Result<Vec<_>, _>>()?;
    futures::stream::iter(0..shape.webhooks())
        .map(|index| {
            let account = shape.account_of(index);
            let receiver = match shape.slow(account) {
                Some(slow) => &slow_receivers[slow],
                None => &receivers[index % receivers.len()],
            };
            // The bench sends far more than the default 100 requests/s to one endpoint.
            let webhook = NewWebhook {
                rate_limit_per_second: Some(100_000),
                ..NewWebhook::new(format!("{receiver}/wh/{index}"), ["interview.*"])
                    .description(format!("bench {index}"))
            };
            let admin = admins.get(account).context("an account's admin");
            async move {
                let (_, secret) = admin?.create_webhook(webhook).await?;
                let secret = Secret::parse(&secret)
                    .map_err(|err| anyhow::anyhow!("webhook {index}'s secret: {err}"))?;
                Ok::<_, anyhow::Error>((index, secret))
            }
        })
        .buffer_unordered(CREATING_AT_ONCE)
        .try_for_each(|(index, secret)| {
            let noted = tally
                .secrets
                .write()
                .map(|mut secrets| {
                    secrets.insert(index, secret);
                })
                .map_err(|_| anyhow::anyhow!("lock"));
            futures::future::ready(noted)
        })
        .await
}

/// When each event was published, and how long publishing them all took.
struct Published {
    at: HashMap<EventKey, Instant>,
    seconds: f64,
}

/// Publishes an event to each account of `draws`, `--publishers` calls at a time (at `--rate` a second, if
/// set).
async fn publish(
    system: &Target,
    draws: &[usize],
    args: &BenchArgs,
    started: Instant,
) -> anyhow::Result<Published> {
    let publisher = Client::connect(&system.server_url, &system.publisher_key).await?;
    let data = payload(args.payload_bytes);
    let published_at = Arc::new(Mutex::new(HashMap::with_capacity(args.events)));
    let slots = Arc::new(Semaphore::new(args.publishers.max(1)));
    let batch = args.batch.max(1);
    let mut calls = Vec::with_capacity(args.events / batch + 1);
    for (n, accounts) in draws.chunks(batch).enumerate() {
        if args.rate > 0 {
            let first = n * batch;
            let due = started + Duration::from_secs_f64(first as f64 / f64::from(args.rate));
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = slots.clone().acquire_owned().await?;
        let events: Vec<_> = accounts
            .iter()
            .map(|account| proto::PublishEventRequest {
                account_id: system.accounts[*account].0.clone(),
                r#type: "interview.scheduled".into(),
                data_json: data.clone(),
                idempotency_key: String::new(),
            })
            .collect();
        let (publisher, published_at) = (publisher.clone(), published_at.clone());
        calls.push(tokio::spawn(async move {
            let sent = Instant::now();
            let replies = publish_call(&publisher, events).await;
            drop(permit);
            for reply in replies? {
                if let Some(event) = reply?.event {
                    lock(&published_at).insert(EventKey::of(&event.id), sent);
                }
            }
            Ok::<_, kit_webhooks_client::Error>(())
        }));
    }
    for call in calls {
        call.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let at = lock(&published_at).clone();
    Ok(Published { at, seconds })
}

/// One publishing call: `PublishEvent` for a single event (round 1's calls), `PublishEvents` for more.
async fn publish_call(
    publisher: &Client,
    mut events: Vec<proto::PublishEventRequest>,
) -> Result<
    Vec<Result<proto::PublishEventResponse, kit_webhooks_client::Error>>,
    kit_webhooks_client::Error,
> {
    if events.len() > 1 {
        return publisher.publish_events(events).await;
    }
    let Some(event) = events.pop() else {
        return Ok(Vec::new());
    };
    let reply = publisher
        .publish_event(&event.account_id, &event.r#type, &event.data_json, None)
        .await;
    Ok(vec![reply])
}

/// With `--linger`: the daemon's resident memory (MiB) as the run ended and after lingering idle.
async fn linger(args: &BenchArgs, system: &Target) -> Option<figures::Idle> {
    let pid = system.daemon.as_ref()?.0.id();
    if args.linger.is_zero() {
        return None;
    }
    let at_end = processes::rss_mib(pid)?;
    progress::note(&format!("lingering idle for {:?}", args.linger));
    tokio::time::sleep(args.linger).await;
    Some(figures::Idle {
        linger_seconds: args.linger.as_secs_f64(),
        daemon_rss_at_end_mib: at_end,
        daemon_rss_after_mib: processes::rss_mib(pid)?,
    })
}

/// The run's figures from what the receivers saw.
fn figures(
    args: &BenchArgs,
    tally: &Tally,
    (published, deliveries): (&Published, shape::Deliveries),
    started: Instant,
    (ceiling_before, ceiling_after): (Ceiling, Ceiling),
    spent: Spent,
) -> Figures {
    let ceiling = (ceiling_before.per_second + ceiling_after.per_second) / 2.0;
    let first_seen = lock(&tally.first_seen).clone();
    let last = first_seen.values().max().copied().unwrap_or(started);
    let elapsed = last.duration_since(started).as_secs_f64().max(1e-9);
    let mut latencies: Vec<f64> = first_seen
        .iter()
        .filter_map(|((event, _), at)| {
            published
                .at
                .get(event)
                .map(|sent| at.duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let received = first_seen.len();
    let deliveries_per_second = received as f64 / elapsed;
    Figures {
        events: args.events,
        webhooks: args.webhooks,
        accounts: args.accounts,
        webhooks_per_account: args.webhooks_per_account,
        hosts: args.hosts,
        slow_accounts: args.slow_accounts,
        slow_webhooks_per_account: (args.slow_accounts > 0).then(|| shape::slow_per_account(args)),
        slow_latency: (args.slow_accounts > 0).then(|| args.slow_latency.to_string()),
        slow_deliveries: deliveries.slow,
        slow_requests: tally.slow_requests.load(Ordering::Relaxed),
        deliveries_expected: deliveries.expected,
        backlog: args.backlog,
        deliveries_received: received,
        duplicates: tally.duplicates.load(Ordering::Relaxed),
        bad_signatures: tally.bad_signatures.load(Ordering::Relaxed),
        payload_bytes: args.payload_bytes,
        concurrency: args.concurrency,
        prefetch: args.prefetch,
        max_connections_per_host: args.max_connections_per_host,
        metrics: args.metrics,
        tls: args.tls,
        http2: args.http2,
        http2_requests: tally.http2_requests.load(Ordering::Relaxed),
        tls_handshakes_per_delivery: spent
            .tls_handshakes
            .map(|n| n as f64 / received.max(1) as f64),
        database: spent.database,
        raw_ceiling_per_second: ceiling,
        raw_ceiling_before_per_second: ceiling_before.per_second,
        raw_ceiling_after_per_second: ceiling_after.per_second,
        ceiling_cost_per_request_us: ceiling_before
            .machine_us_per_request
            .zip(ceiling_after.machine_us_per_request)
            .map(|(before, after)| (before + after) / 2.0),
        cost_per_delivery_us: Cost::per_delivery(
            received,
            spent.machine_cpu,
            [spent.server_cpu, spent.daemon_cpu, spent.postgres_cpu],
        ),
        deliveries_per_second,
        ratio_to_ceiling: if ceiling > 0.0 {
            deliveries_per_second / ceiling
        } else {
            0.0
        },
        publish_calls_per_second: args.events as f64 / published.seconds.max(1e-9),
        batch: args.batch.max(1),
        latency_ms: Latency {
            p50: percentile(&latencies, 0.50),
            p90: percentile(&latencies, 0.90),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or(0.0),
        },
        attempts_per_delivery: tally.requests.load(Ordering::Relaxed) as f64
            / received.max(1) as f64,
        elapsed_seconds: elapsed,
        server: spent.server,
        server_writer_cpu_seconds: spent.server_writer_cpu,
        daemon: spent.daemon,
        daemon_idle: spent.daemon_idle,
        machine_busy: spent.machine_busy,
        postgres_cpu_seconds: spent.postgres_cpu,
    }
}

/// A JSON object of about `bytes` bytes.
fn payload(bytes: usize) -> String {
    let filler = "x".repeat(bytes.saturating_sub(40));
    format!(r#"{{"candidate_id":9007199254740993,"notes":"{filler}"}}"#)
}
