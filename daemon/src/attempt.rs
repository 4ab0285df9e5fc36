//! One attempt's life in the daemon, from its lease to its report: wait for the webhook's rate limit, its
//! account's and host's shares and a request slot (`limiter`, `lanes`), send it (`sender`), report it
//! (`reporter`). Each runs as a task of its own, so that a slow or rate-limited endpoint holds up nothing else.
//!
//! A busy daemon holds thousands of these at once (its leases waiting for a slot, its requests waiting for an
//! answer), so their size is its memory: the HTTP exchange, which only the sending stage needs, is boxed for
//! that stage, and the stages are functions of their own so that each one's state overlaps the others'
//! instead of adding to them.

use std::sync::Arc;

use kit_webhooks::proto;

use crate::{
    lanes::{Lanes, SLOW_AFTER},
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
    pub async fn run(self: Arc<Self>, task: proto::DeliveryTask, generation: u64) {
        let Some((report, webhook_id)) = self.send(task, generation).await else {
            return;
        };
        self.metrics.attempted(&report);
        log_attempt(&report, &webhook_id);
        let delivery_id = report.delivery_id.clone();
        self.reporter.report(report).await;
        self.leases.finished(&delivery_id);
    }

    /// Waits for the task's turn and sends it; returns its report and its webhook, or nothing if its stream
    /// ended first.
    async fn send(
        &self,
        mut task: proto::DeliveryTask,
        generation: u64,
    ) -> Option<(proto::ReportDeliveryRequest, String)> {
        let (limits, lanes, metrics) = (&self.limits, &self.lanes, &self.metrics);
        if limits
            .until_ready(&task.webhook_id, task.rate_limit_per_second)
            .await
        {
            metrics.rate_limited_waits.increment(1);
        }
        // Account, then host, then a request slot: a task waiting for its account's or host's share holds none
        // of the daemon's slots meanwhile.
        let _account = limits.account_slot(&task.account_id).await;
        let url = task.url.parse::<http::Uri>();
        // Host first: a task waiting on a busy host must not sit on one of the daemon's slots. A URL that does
        // not parse has no host to share a limit with; the send reports it.
        let _host = match &url {
            Ok(url) => limits.host_slot(url).await,
            Err(_) => None,
        };
        // Never closed, so this cannot fail; if it did, sending anyway is harmless.
        let mut slot = lanes.slot(&task.webhook_id).await;
        metrics.leases_ready.decrement(1.0);
        if !self
            .leases
            .start(generation, &task.delivery_id, &task.lease_id)
        {
            tracing::debug!(delivery = %task.delivery_id, webhook = %task.webhook_id, attempt = task.attempt_number, "its stream ended before it was sent; dropped");
            return None;
        }
        metrics.requests_in_flight.increment(1.0);
        // Sending does not need it: moved out for the attempt's log line, not copied.
        let webhook_id = std::mem::take(&mut task.webhook_id);
        // Boxed, so that its state (the HTTP exchange's, several KiB) is allocated only once a slot is taken:
        // the tasks waiting for one, often most of the daemon's leases, stay small.
        let mut sending = Box::pin(self.sender.send(task, url));
        let report = match tokio::time::timeout(SLOW_AFTER, &mut sending).await {
            Ok(report) => {
                lanes.answered(&webhook_id);
                report
            }
            Err(_) => {
                if let Some(slot) = &mut slot {
                    lanes.unanswered(&webhook_id, slot);
                }
                sending.await
            }
        };
        drop(slot);
        metrics.requests_in_flight.decrement(1.0);
        Some((report, webhook_id))
    }
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
