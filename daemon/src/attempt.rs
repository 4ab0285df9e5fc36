//! One attempt's life in the daemon, from its lease to its report: wait for the webhook's rate limit, its
//! account's and host's shares and a request slot (`limiter`, `lanes`), send it (`sender`), report it
//! (`reporter`). Each runs as a task of its own, so that a slow or rate-limited endpoint holds up nothing else.
//!
//! A busy daemon holds thousands of these at once (its leases waiting for a slot, its requests waiting for an
//! answer), so their size is its memory: the HTTP exchange, which only the sending stage needs, is boxed for
//! that stage, and the stages are functions of their own so that each one's state overlaps the others'
//! instead of adding to them. Two rules of how Rust lays out a future keep values from being held twice: an
//! `async fn` keeps its arguments for its whole life (so the task comes boxed), and a local that was
//! borrowed keeps its room until its scope ends, even once moved on (so such locals live in blocks that end
//! before the next wait).

use std::sync::Arc;

use kit_webhooks::proto;
use tokio::sync::OwnedSemaphorePermit;

use crate::{
    lanes::{Lanes, Slot, SLOW_AFTER},
    leases::Leases,
    limiter::EndpointLimits,
    metrics::Metrics,
    reporter::Reporter,
    sender::Sender,
};

/// What an attempt uses of the daemon: shared by all of them.
pub(crate) struct Attempts {
    pub sender: Arc<Sender>,
    pub limits: Arc<EndpointLimits>,
    pub reporter: Reporter,
    /// The request slots (`--max-in-flight`, `--max-slow-in-flight`).
    pub lanes: Arc<Lanes>,
    pub leases: Arc<Leases>,
    pub metrics: Arc<Metrics>,
}

impl Attempts {
    /// Sends `task` once and reports it. The request slot is taken only once the endpoint's rate limit lets
    /// the task go, and given back as soon as the response is in, before the report is committed. A task whose
    /// stream (`generation`) has ended by the time it has a slot is dropped unsent (`leases`).
    ///
    /// The task comes boxed: an `async fn` keeps its arguments for its whole life, so a task passed by value
    /// would be held inline (here and in [`Attempts::send`]) for as long as its request is outstanding, long
    /// after its fields have moved into the request. Boxed, it is freed as the request is built.
    pub async fn run(self: Arc<Self>, task: Box<proto::DeliveryTask>, generation: u64) {
        // In a block: a local that was borrowed keeps its room in the future until its scope ends, so the
        // report, moved into its recording, would otherwise be held a second time while that is awaited.
        let (recorded, delivery_id) = {
            let Some((report, webhook_id)) = self.send(task, generation).await else {
                return;
            };
            self.metrics.attempted(&report);
            log_attempt(&report, &webhook_id);
            let delivery_id = report.delivery_id.clone();
            (self.reporter.report(report), delivery_id)
        };
        recorded.await;
        self.leases.finished(&delivery_id);
    }

    /// Waits for the task's turn and sends it; returns its report and its webhook, or nothing if its stream
    /// ended first.
    async fn send(
        &self,
        task: Box<proto::DeliveryTask>,
        generation: u64,
    ) -> Option<(proto::ReportDeliveryRequest, String)> {
        let Turn {
            url,
            mut slot,
            shares: _shares,
        } = self.turn(&task, generation).await?;
        self.metrics.requests_in_flight.increment(1.0);
        // In a block, so that the task takes no room in this future while the response is awaited.
        let (webhook_id, mut sending) = {
            // Out of its box, which is freed here rather than when this function ends.
            let mut task = {
                let boxed = task;
                *boxed
            };
            // Sending does not need it: moved out for the attempt's log line, not copied.
            let webhook_id = std::mem::take(&mut task.webhook_id);
            // Boxed, so that its state (the HTTP exchange's) is allocated only once a slot is taken: the tasks
            // waiting for one, often most of the daemon's leases, stay small.
            (webhook_id, Box::pin(self.sender.send(task, url)))
        };
        // Answered in time, the common case, returns here: what it holds is not kept while a late response is
        // awaited below. The slot and shares are given back as this function returns.
        if let Ok(report) = tokio::time::timeout(SLOW_AFTER, &mut sending).await {
            self.lanes.answered(&webhook_id);
            self.metrics.requests_in_flight.decrement(1.0);
            return Some((report, webhook_id));
        }
        if let Some(slot) = &mut slot {
            self.lanes.unanswered(&webhook_id, slot);
        }
        let report = sending.await;
        self.metrics.requests_in_flight.decrement(1.0);
        Some((report, webhook_id))
    }

    /// Waits for `task`'s turn: its webhook's rate limit, its account's and host's shares, and a request
    /// slot, in that order. Nothing if its stream (`generation`) ended meanwhile.
    async fn turn(&self, task: &proto::DeliveryTask, generation: u64) -> Option<Turn> {
        let (limits, lanes, metrics) = (&self.limits, &self.lanes, &self.metrics);
        if limits
            .until_ready(&task.webhook_id, task.rate_limit_per_second)
            .await
        {
            metrics.rate_limited_waits.increment(1);
        }
        // Account, then host, then a request slot: a task waiting for its account's or host's share holds none
        // of the daemon's slots meanwhile.
        let account = limits.account_slot(&task.account_id).await;
        let url = task.url.parse::<http::Uri>();
        // Host first: a task waiting on a busy host must not sit on one of the daemon's slots. A URL that does
        // not parse has no host to share a limit with; the send reports it.
        let host = match &url {
            Ok(url) => limits.host_slot(url).await,
            Err(_) => None,
        };
        // Never closed, so this cannot fail; if it did, sending anyway is harmless.
        let slot = lanes.slot(&task.webhook_id).await;
        metrics.leases_ready.decrement(1.0);
        if !self
            .leases
            .start(generation, &task.delivery_id, &task.lease_id)
        {
            tracing::debug!(delivery = %task.delivery_id, webhook = %task.webhook_id, attempt = task.attempt_number, "its stream ended before it was sent; dropped");
            return None;
        }
        Some(Turn {
            url,
            slot,
            shares: (account, host),
        })
    }
}

/// What a task holds once it is its turn to be sent: its URL, parsed, its request slot, and its account's
/// and host's shares, all given back once its response is in.
struct Turn {
    url: Result<http::Uri, http::uri::InvalidUri>,
    slot: Option<Slot>,
    shares: (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>),
}

/// The attempt's log line, with the delivery, webhook and attempt as fields: a failure at INFO (what an SRE
/// looks for when an endpoint misbehaves), a success at DEBUG (one per delivery would drown the rest).
fn log_attempt(report: &proto::ReportDeliveryRequest, webhook_id: &str) {
    if report.error.is_empty() {
        tracing::debug!(
            delivery = %report.delivery_id,
            webhook = %webhook_id,
            attempt = report.attempt_number,
            status = report.response_status,
            duration_ms = report.duration_ms,
            "attempt succeeded"
        );
    } else {
        tracing::info!(
            delivery = %report.delivery_id,
            webhook = %webhook_id,
            attempt = report.attempt_number,
            status = report.response_status,
            error_kind = %report.error_kind,
            error = %report.error,
            duration_ms = report.duration_ms,
            "attempt failed"
        );
    }
}
