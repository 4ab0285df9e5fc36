//! Retention (`--retention`, default 30 days): a background task prunes, once a minute, the history older than
//! the retention (`Store::prune_batch` says what goes and what stays), batch after batch, resting after each
//! batch nine times as long as it took: it takes at most a tenth of the writer connection's time and of the
//! database's, however busy they are, so that deliveries hardly notice it (docs/PERFORMANCE.md, "The
//! retention round"), and it still prunes thousands of events a second when the system is quiet.
//! `kit-webhooks-server prune` runs a pass once, taking half.

use std::time::Duration;

use sea_orm::DbErr;
use tokio_util::sync::CancellationToken;

use crate::{
    core::time,
    metrics::Metrics,
    store::{retention::Pruned, Store},
};

/// How long history is kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// Events looked at per batch: a transaction of a few milliseconds (docs/PERFORMANCE.md, "The retention
/// round").
const BATCH: u64 = 25;
/// The share of the time the background task prunes; it rests the rest.
pub const BACKGROUND_SHARE: f64 = 0.1;
/// The share of the time `kit-webhooks-server prune` prunes: a one-off purge goes faster, and still leaves
/// running servers half.
pub const PURGE_SHARE: f64 = 0.5;
/// Between two passes.
const PASS_EVERY: Duration = Duration::from_secs(60);

/// Prunes the history older than `retention`, a pass now and then one a minute, until `shutdown`.
pub async fn run(store: Store, retention: Duration, metrics: Metrics, shutdown: CancellationToken) {
    loop {
        let before = time::now_ms() - retention.as_millis().min(i64::MAX as u128) as i64;
        let pass = pass(&store, before, BACKGROUND_SHARE, &shutdown, |batch| {
            metrics.pruned(batch)
        });
        match pass.await {
            Ok(pruned) if pruned.events > 0 => tracing::info!(
                events = pruned.events,
                deliveries = pruned.deliveries,
                attempts = pruned.attempts,
                "pruned history older than the retention"
            ),
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "pruning old history failed; trying again later")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PASS_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Prunes every event created before `before` (Unix ms) that may go, oldest first, one batch at a time,
/// pruning `share` of the time (1 for no rest); `each` sees every batch's count. Stops early when `stop` is
/// cancelled.
pub async fn pass(
    store: &Store,
    before: i64,
    share: f64,
    stop: &CancellationToken,
    mut each: impl FnMut(&Pruned),
) -> Result<Pruned, DbErr> {
    let mut total = Pruned::default();
    let mut after: Option<String> = None;
    while !stop.is_cancelled() {
        let started = std::time::Instant::now();
        let (batch, last) = store.prune_batch(before, after.as_deref(), BATCH).await?;
        tracing::debug!(events = batch.events, deliveries = batch.deliveries, took = ?started.elapsed(), "pruned a batch");
        each(&batch);
        total.events += batch.events;
        total.deliveries += batch.deliveries;
        total.attempts += batch.attempts;
        total.examined += batch.examined;
        if batch.examined < BATCH {
            break;
        }
        after = last;
        let took = started.elapsed();
        tokio::time::sleep(took.mul_f64((1.0 / share.clamp(0.01, 1.0)) - 1.0)).await;
    }
    Ok(total)
}
