//! Retention (`--retention`, default 30 days): a background task prunes, once a minute, the history older than
//! the retention (`Store::prune_batch` says what goes and what stays), batch after batch, resting after each
//! batch nine times as long as it took: it takes at most a tenth of the writer connection's time and of the
//! database's, however busy they are, so that deliveries hardly notice it (docs/PERFORMANCE.md, "The
//! retention round"), and it still prunes thousands of events a second when the system is quiet.
//! `kit-webhooks-server prune` runs a pass once, taking half.
//!
//! The audit log has a retention of its own (`--audit-retention`, default 365 days): it outlives the
//! history it describes. Admin changes are few, so its expired entries go in one statement per pass.

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
/// How long audit entries are kept by default.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(365 * 86_400);
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

/// Prunes the history older than `retention` and the audit entries older than `audit_retention` (either
/// zero: kept), a pass now and then one a minute, until `shutdown`.
pub async fn run(
    store: Store,
    retention: Duration,
    audit_retention: Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        if !audit_retention.is_zero() {
            match store.prune_audit_entries(ago(audit_retention)).await {
                Ok(0) => {}
                Ok(entries) => tracing::info!(
                    entries,
                    "pruned audit entries older than the audit retention"
                ),
                Err(err) => {
                    tracing::warn!(error = %err, "pruning old audit entries failed; trying again later")
                }
            }
        }
        if !retention.is_zero() {
            prune_history(&store, retention, &metrics, &shutdown).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(PASS_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Unix ms `age` ago.
fn ago(age: Duration) -> i64 {
    time::now_ms() - age.as_millis().min(i64::MAX as u128) as i64
}

/// One background pass over the history older than `retention`.
async fn prune_history(
    store: &Store,
    retention: Duration,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) {
    let pass = pass(store, ago(retention), BACKGROUND_SHARE, shutdown, |batch| {
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
