//! Retention (`--retention`, default 30 days): a background task prunes, once a minute, the history older than
//! the retention (`Store::prune_batch` says what goes and what stays), batch after batch with a pause between
//! them, so that the delivery path never waits long for the writer connection. `kit-webhooks-server prune`
//! runs the same passes once.

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
const BATCH: u64 = 100;
/// Between two batches of a pass: the writer's cycles and the claims run in between.
pub const BETWEEN_BATCHES: Duration = Duration::from_millis(10);
/// Between two passes.
const PASS_EVERY: Duration = Duration::from_secs(60);

/// Prunes the history older than `retention`, a pass now and then one a minute, until `shutdown`.
pub async fn run(store: Store, retention: Duration, metrics: Metrics, shutdown: CancellationToken) {
    loop {
        let before = time::now_ms() - retention.as_millis().min(i64::MAX as u128) as i64;
        let pass = pass(&store, before, BETWEEN_BATCHES, &shutdown, |batch| {
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

/// Prunes every event created before `before` (Unix ms) that may go, oldest first, one batch at a time with
/// `pause` between batches; `each` sees every batch's count. Stops early when `stop` is cancelled.
pub async fn pass(
    store: &Store,
    before: i64,
    pause: Duration,
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
        tokio::time::sleep(pause).await;
    }
    Ok(total)
}
