//! The server's metrics (docs/OPERATIONS.md lists each with its type, labels and the alerts worth setting).
//!
//! What happens on the delivery path is counted where it happens, through handles registered once at start
//! ([`Metrics::register`]): recording is an atomic add, with no name lookup per delivery. What is a state
//! rather than an event (deliveries due, the oldest one's age, leases, webhooks and accounts at their lease
//! cap, webhooks by status) is read from the
//! database just before a scrape renders it ([`Metrics::read_state`]), so it is true across replicas and
//! costs nothing while nobody scrapes. Labels are bounded: categories, outcomes, statuses and method names,
//! never a webhook, an account or a URL.
//!
//! Without `--metrics-listen` no recorder is installed and every handle is a no-op.

use metrics::{Counter, Gauge, Histogram};
use sea_orm::{ActiveEnum, Iterable};

use crate::{
    core::{policy::DeliveryDecision, time, webhook::Status as WebhookStatus},
    store::{leases::LeaseCaps, retention::Pruned, Store},
};

/// The handles of the server's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// By category, in the catalogue's order of categories.
    events_published: Vec<(&'static str, Counter)>,
    deliveries_created: Counter,
    succeeded: Counter,
    failed: Counter,
    retries_scheduled: Counter,
    auto_disabled: Counter,
    pruned_events: Counter,
    pruned_deliveries: Counter,
    pub writer: WriterMetrics,
    due: Gauge,
    oldest_due_age: Gauge,
    leases_held: Gauge,
    webhooks_at_lease_cap: Gauge,
    accounts_at_lease_cap: Gauge,
    streams_open: Gauge,
    webhooks: Vec<(WebhookStatus, Gauge)>,
}

/// The writer's cycles: how many, how long each commit took, how many writes it carried.
#[derive(Clone)]
pub struct WriterMetrics {
    pub(crate) cycles: Counter,
    pub(crate) duration: Histogram,
    pub(crate) writes: Histogram,
}

impl Metrics {
    /// Registers every metric with the process's recorder (a no-op one unless `--metrics-listen` installed
    /// it first) and describes it for the scrape's `# HELP` lines.
    pub fn register() -> Metrics {
        use metrics::{counter, gauge, histogram};
        describe();
        let categories = kit_webhooks::catalogue::categories();
        Metrics {
            events_published: categories
                .map(|category| {
                    let counter =
                        counter!("kit_webhooks_events_published_total", "category" => category);
                    (category, counter)
                })
                .collect(),
            deliveries_created: counter!("kit_webhooks_deliveries_created_total"),
            succeeded: counter!("kit_webhooks_deliveries_completed_total", "outcome" => "succeeded"),
            failed: counter!("kit_webhooks_deliveries_completed_total", "outcome" => "failed"),
            retries_scheduled: counter!("kit_webhooks_delivery_retries_scheduled_total"),
            auto_disabled: counter!("kit_webhooks_webhooks_auto_disabled_total"),
            pruned_events: counter!("kit_webhooks_pruned_events_total"),
            pruned_deliveries: counter!("kit_webhooks_pruned_deliveries_total"),
            writer: WriterMetrics {
                cycles: counter!("kit_webhooks_writer_cycles_total"),
                duration: histogram!("kit_webhooks_writer_cycle_duration_seconds"),
                writes: histogram!("kit_webhooks_writer_cycle_writes"),
            },
            due: gauge!("kit_webhooks_deliveries_due"),
            oldest_due_age: gauge!("kit_webhooks_oldest_due_delivery_age_seconds"),
            leases_held: gauge!("kit_webhooks_leases_held"),
            webhooks_at_lease_cap: gauge!("kit_webhooks_webhooks_at_lease_cap"),
            accounts_at_lease_cap: gauge!("kit_webhooks_accounts_at_lease_cap"),
            streams_open: gauge!("kit_webhooks_streams_open"),
            webhooks: WebhookStatus::iter()
                .map(|status| {
                    (
                        status,
                        gauge!("kit_webhooks_webhooks", "status" => status.to_value()),
                    )
                })
                .collect(),
        }
    }

    /// An event of `event_type` was published, with `deliveries` created for it.
    pub fn published(&self, event_type: &str, deliveries: u64) {
        let category = kit_webhooks::catalogue::event_type(event_type).map(|t| t.category);
        if let Some((_, counter)) = self
            .events_published
            .iter()
            .find(|(c, _)| Some(*c) == category)
        {
            counter.increment(1);
        }
        self.deliveries_created.increment(deliveries);
    }

    /// A test ping created its delivery.
    pub fn pinged(&self) {
        self.deliveries_created.increment(1);
    }

    /// An attempt was recorded with this decision for its delivery.
    pub fn recorded(&self, decision: &DeliveryDecision, disabled_webhook: bool) {
        match decision {
            DeliveryDecision::Succeeded => self.succeeded.increment(1),
            DeliveryDecision::Failed => self.failed.increment(1),
            DeliveryDecision::RetryAt(_) => self.retries_scheduled.increment(1),
        }
        if disabled_webhook {
            self.auto_disabled.increment(1);
        }
    }

    /// Retention pruned a batch.
    pub fn pruned(&self, batch: &Pruned) {
        self.pruned_events.increment(batch.events);
        self.pruned_deliveries.increment(batch.deliveries);
    }

    /// Reads the gauges that are states: this server's open streams, and from the database the due
    /// deliveries, the lag, the leases, the webhooks and accounts at their lease `caps`, and the webhooks by
    /// status. A failed read leaves the last values.
    pub async fn read_state(&self, store: &Store, streams_open: usize, caps: LeaseCaps) {
        self.streams_open.set(streams_open as f64);
        let now = time::now_ms();
        match store.delivery_gauges(now).await {
            Ok(gauges) => {
                self.due.set(gauges.due as f64);
                let age_ms = gauges
                    .oldest_due_at
                    .map_or(0, |due_at| (now - due_at).max(0));
                self.oldest_due_age.set(age_ms as f64 / 1000.0);
                self.leases_held.set(gauges.sending as f64);
            }
            Err(err) => tracing::warn!(error = %err, "reading the delivery gauges failed"),
        }
        match store.count_at_lease_cap(caps).await {
            Ok((webhooks, accounts)) => {
                self.webhooks_at_lease_cap.set(webhooks as f64);
                self.accounts_at_lease_cap.set(accounts as f64);
            }
            Err(err) => tracing::warn!(error = %err, "counting what is at its lease cap failed"),
        }
        match store.count_webhooks_by_status().await {
            Ok(counts) => {
                for (status, gauge) in &self.webhooks {
                    let count = counts
                        .iter()
                        .find(|(s, _)| s == status)
                        .map_or(0, |(_, n)| *n);
                    gauge.set(count as f64);
                }
            }
            Err(err) => tracing::warn!(error = %err, "counting webhooks by status failed"),
        }
    }
}

/// Describes every metric for the scrape's `# HELP` lines.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("kit_webhooks_events_published_total", "Events accepted by PublishEvent, by category of their type (a repeated idempotency key is not counted again).");
    describe_counter!("kit_webhooks_deliveries_created_total", "Deliveries created: one per subscribed active webhook of each published event, and one per test ping.");
    describe_counter!(
        "kit_webhooks_deliveries_completed_total",
        "Deliveries that reached a final outcome: succeeded, or failed with no retry left."
    );
    describe_counter!(
        "kit_webhooks_delivery_retries_scheduled_total",
        "Failed attempts after which a later attempt was scheduled."
    );
    describe_counter!("kit_webhooks_webhooks_auto_disabled_total", "Webhooks disabled by the server: failing past the auto-disable rule, or answered 410 Gone.");
    describe_counter!(
        "kit_webhooks_pruned_events_total",
        "Events deleted by retention, with their deliveries and attempts."
    );
    describe_counter!(
        "kit_webhooks_pruned_deliveries_total",
        "Deliveries deleted by retention, with their attempts."
    );
    describe_counter!("kit_webhooks_writer_cycles_total", "Transactions of the delivery path's writer (publishes, reports and claims committed together).");
    describe_histogram!(
        "kit_webhooks_writer_cycle_duration_seconds",
        Unit::Seconds,
        "How long a writer cycle's transaction took."
    );
    describe_histogram!(
        "kit_webhooks_writer_cycle_writes",
        Unit::Count,
        "Writes one writer cycle carried: events, reports and claims."
    );
    describe_gauge!("kit_webhooks_deliveries_due", "Deliveries due now and not leased yet, across every server of the database; an ordered webhook's once the delivery before them has finished (read at scrape).");
    describe_gauge!("kit_webhooks_oldest_due_delivery_age_seconds", Unit::Seconds, "How long the oldest due delivery has been due: the delivery lag (read at scrape; 0 when none is due).");
    describe_gauge!("kit_webhooks_leases_held", "Deliveries leased to daemons and not reported yet, across every server of the database (read at scrape).");
    describe_gauge!("kit_webhooks_webhooks_at_lease_cap", "Webhooks holding --max-in-flight-per-webhook leases: their due deliveries wait for a report (read at scrape).");
    describe_gauge!("kit_webhooks_accounts_at_lease_cap", "Accounts whose webhooks together hold --max-leases-per-account leases: their due deliveries wait for a report (read at scrape).");
    describe_gauge!(
        "kit_webhooks_streams_open",
        "Daemon delivery streams open on this server."
    );
    describe_gauge!(
        "kit_webhooks_webhooks",
        "Webhooks by status, across every account (read at scrape)."
    );
}
