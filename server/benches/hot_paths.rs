//! Benchmarks of the delivery pipeline's hot pieces, each on a real SQLite file: signing a request,
//! publishing (fan-out to 10 webhooks, in groups as the publish group commit makes them), claiming leases,
//! and recording a group of attempt reports. Run with `cargo bench -p kit-webhooks-server`.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kit_webhooks::signature;
use kit_webhooks_server::{
    core::{policy::RetryPolicy, secret, time},
    store::{
        entity::event,
        events::new_event,
        leases::{AttemptReport, Claim, LeaseCaps, LeasedDelivery, ReadyReport},
        webhooks::new_webhook,
        writes::{WriteRules, Writes},
        Store,
    },
};

const WEBHOOKS: usize = 10;
const GROUP: usize = 64;
/// Caps that never bind: the benches measure the work of a lease, not a webhook's limit.
const CAPS: LeaseCaps = LeaseCaps {
    per_webhook: 1_000,
    per_account: 10_000,
};

struct Fixture {
    store: Store,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    let ring = kit_webhooks_server::core::sealing::Keyring::generate();
    let actor = kit_webhooks_server::core::audit::Actor::cli("bench");
    for _ in 0..WEBHOOKS {
        store
            .insert_webhook(
                new_webhook(
                    "bench",
                    "https://hooks.example.com/",
                    "",
                    &["interview.*".to_string()],
                    100,
                ),
                &ring,
                &actor,
            )
            .await
            .expect("webhook");
    }
    Fixture { store, _dir: dir }
}

fn event() -> event::Model {
    new_event(
        "bench",
        "interview.scheduled",
        format!(r#"{{"notes":"{}"}}"#, "x".repeat(1000)),
        None,
    )
}

fn signing(c: &mut Criterion) {
    let secrets = vec![secret::new_signing_secret()];
    let body = vec![b'x'; 1024];
    let mut group = c.benchmark_group("signing");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign 1 KiB", |b| {
        b.iter(|| {
            signature::signature_header(
                &secrets,
                "evt_01JD0000000000000000000000",
                1_700_000_000,
                &body,
            )
        })
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fixture = rt.block_on(fixture());
    let mut group = c.benchmark_group("fan-out");
    group.throughput(Throughput::Elements((GROUP * WEBHOOKS) as u64));
    group.bench_function("publish 64 events × 10 webhooks in one group", |b| {
        b.to_async(&rt).iter_batched(
            || (0..GROUP).map(|_| event()).collect::<Vec<_>>(),
            |events| async { fixture.store.publish_events(events).await.expect("publish") },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn leases(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fixture = rt.block_on(fixture());
    let policy = &RetryPolicy::default();
    let fixture = &fixture;
    let mut group = c.benchmark_group("leases");
    group.throughput(Throughput::Elements(GROUP as u64));
    // Each iteration publishes a backlog outside the timed part, then claims (or reports) it inside.
    group.bench_function("claim 64 due deliveries", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                backlog(&fixture.store).await;
                let now = time::now_ms();
                let started = Instant::now();
                let leased = fixture
                    .store
                    .claim_due("dst_bench", GROUP as u64, CAPS, now + 1, now + 60_000)
                    .await
                    .expect("claim")
                    .leased;
                timed += started.elapsed();
                fixture
                    .store
                    .record_attempts(reports(&leased), policy, now)
                    .await
                    .expect("report");
            }
            timed
        })
    });
    group.bench_function("record 64 reports in one group", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                backlog(&fixture.store).await;
                let now = time::now_ms();
                let leased = fixture
                    .store
                    .claim_due("dst_bench", GROUP as u64, CAPS, now + 1, now + 60_000)
                    .await
                    .expect("claim")
                    .leased;
                let started = Instant::now();
                fixture
                    .store
                    .record_attempts(reports(&leased), policy, now)
                    .await
                    .expect("report");
                timed += started.elapsed();
            }
            timed
        })
    });
    group.finish();
}

/// Enough due deliveries for one claim of [`GROUP`].
async fn backlog(store: &Store) {
    store
        .publish_events((0..GROUP / WEBHOOKS + 1).map(|_| event()).collect())
        .await
        .expect("backlog");
}

/// Reports as the writer takes them: made ready (attempt rows built) by the caller, as `Writer::report` does.
fn reports(leased: &[LeasedDelivery]) -> Vec<ReadyReport> {
    leased
        .iter()
        .map(|l| report(&l.delivery_id, &l.lease_id).into())
        .collect()
}

fn report(delivery_id: &str, lease_id: &str) -> AttemptReport {
    AttemptReport {
        delivery_id: delivery_id.into(),
        lease_id: lease_id.into(),
        attempt_number: 1,
        started_at: time::now_ms(),
        duration_ms: 3,
        // What the daemon sends and a hyper receiver answers.
        request_headers: BTreeMap::from(
            [
                ("content-type", "application/json"),
                ("user-agent", "KitWebhooks/0.1.0"),
                ("webhook-id", "evt_01KB0000000000000000000000"),
                ("webhook-timestamp", "1764216000"),
                (
                    "webhook-signature",
                    "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
                ),
                ("kit-event-type", "interview.scheduled"),
                ("kit-delivery-id", delivery_id),
                ("kit-attempt", "1"),
            ]
            .map(|(name, value)| (name.to_string(), value.to_string())),
        ),
        response_status: 200,
        response_headers: BTreeMap::from([
            ("content-length".to_string(), "0".to_string()),
            (
                "date".to_string(),
                "Thu, 27 Nov 2026 04:00:00 GMT".to_string(),
            ),
        ]),
        response_body: String::new(),
        error_kind: String::new(),
        error: String::new(),
    }
}

/// One writer cycle as a busy server runs them (`KIT_BENCH_LOG=kit_webhooks_server=debug` shows the real
/// ones): the fan-out of [`CYCLE_EVENTS`] events, the reports of the deliveries the previous cycle leased,
/// and one claim leasing what is due, all in one transaction.
fn writer_cycle(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fixture = rt.block_on(fixture());
    let rules = &WriteRules {
        retry: RetryPolicy::default(),
        caps: CAPS,
        lease_ttl_ms: 60_000,
    };
    let fixture = &fixture;
    let mut group = c.benchmark_group("writer");
    group.throughput(Throughput::Elements((CYCLE_EVENTS * WEBHOOKS) as u64));
    group.bench_function("cycle: publish 9 × 10, record 90, lease 90", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut leased: Vec<LeasedDelivery> = Vec::new();
            let started = Instant::now();
            for _ in 0..iters {
                let writes = Writes {
                    events: (0..CYCLE_EVENTS).map(|_| event()).collect(),
                    reports: reports(&leased),
                    claims: vec![Claim::new("dst_bench", (CYCLE_EVENTS * WEBHOOKS) as u64)],
                };
                let mut written = fixture
                    .store
                    .commit_writes(writes, rules, time::now_ms())
                    .await;
                leased = match written.claimed.pop() {
                    Some(Ok(claimed)) => claimed.leased,
                    other => panic!("claim failed: {other:?}"),
                };
            }
            started.elapsed()
        })
    });
    group.finish();
}

const CYCLE_EVENTS: usize = 9;

criterion_group!(benches, signing, fan_out, leases, writer_cycle);
criterion_main!(benches);
