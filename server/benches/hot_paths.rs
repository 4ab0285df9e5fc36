//! Benchmarks of the delivery pipeline's hot pieces, each on a real SQLite file: signing a request,
//! publishing (fan-out to 10 webhooks, in groups as the publish group commit makes them), claiming leases,
//! and recording a group of attempt reports. Run with `cargo bench -p kit-webhooks-server`.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kit_webhooks::signature;
use kit_webhooks_server::{
    core::{policy::RetryPolicy, secret, time},
    store::{
        entity::event,
        events::new_event,
        leases::{AttemptReport, LeasedDelivery},
        webhooks::new_webhook,
        Store,
    },
};

const WEBHOOKS: usize = 10;
const GROUP: usize = 64;

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
    for _ in 0..WEBHOOKS {
        store
            .insert_webhook(new_webhook(
                "bench",
                "https://hooks.example.com/",
                "",
                &["interview.*".to_string()],
                100,
            ))
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
                    .claim_due("dst_bench", GROUP as u64, 1_000, now + 1, now + 60_000)
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
                    .claim_due("dst_bench", GROUP as u64, 1_000, now + 1, now + 60_000)
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

fn reports(leased: &[LeasedDelivery]) -> Vec<AttemptReport> {
    leased
        .iter()
        .map(|l| report(&l.delivery_id, &l.lease_id))
        .collect()
}

fn report(delivery_id: &str, lease_id: &str) -> AttemptReport {
    AttemptReport {
        delivery_id: delivery_id.into(),
        lease_id: lease_id.into(),
        attempt_number: 1,
        started_at: time::now_ms(),
        duration_ms: 3,
        request_headers: HashMap::from([("webhook-id".to_string(), "evt_1".to_string())]),
        response_status: 200,
        response_headers: HashMap::new(),
        response_body: String::new(),
        error_kind: String::new(),
        error: String::new(),
    }
}

criterion_group!(benches, signing, fan_out, leases);
criterion_main!(benches);
