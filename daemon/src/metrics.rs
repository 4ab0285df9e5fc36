//! The daemon's metrics (docs/OPERATIONS.md lists each with its type, labels and the alerts worth setting).
//!
//! Handles are registered once at start ([`Metrics::register`]), so recording on the delivery path is an
//! atomic add with no name lookup. Labels are bounded: an attempt's outcome class and a report's result,
//! never a webhook, an account or a URL. Without `--metrics-listen` no recorder is installed and every
//! handle is a no-op.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use kit_webhooks::proto::ReportDeliveryRequest;

/// An attempt's outcome classes, the values of the `outcome` label.
const OUTCOMES: [&str; 9] = [
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "timeout",
    "connect_error",
    "tls_error",
    "blocked",
    "other",
];

#[derive(Clone)]
pub(crate) struct Metrics {
    /// In the order of [`OUTCOMES`].
    attempts: Vec<Counter>,
    pub(crate) attempt_duration: Histogram,
    pub(crate) requests_in_flight: Gauge,
    pub(crate) requests_slow: Gauge,
    pub(crate) leases_ready: Gauge,
    pub(crate) rate_limited_waits: Counter,
    pub(crate) reports_sent: Counter,
    pub(crate) report_duration: Histogram,
    pub(crate) stream_open: Gauge,
    pub(crate) stream_reconnects: Counter,
    pub(crate) connections_open: Gauge,
}

impl Metrics {
    /// Registers every metric with the process's recorder and describes it for the scrape's `# HELP` lines.
    pub(crate) fn register() -> Metrics {
        use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        describe_counter!("kit_webhooks_daemon_attempts_total", "Delivery attempts made, by outcome: the response's status class, or why there was none (timeout, connect_error, tls_error, blocked by the address guard, other).");
        describe_histogram!("kit_webhooks_daemon_attempt_duration_seconds", Unit::Seconds, "How long an attempt's HTTP exchange took, from the request to the end of the read response (or the failure).");
        describe_gauge!(
            "kit_webhooks_daemon_requests_in_flight",
            "HTTP requests being made now (at most --max-in-flight plus --max-slow-in-flight)."
        );
        describe_gauge!("kit_webhooks_daemon_requests_slow", "HTTP requests in the slow lane now: unanswered past 250 ms, or to a webhook that was (at most --max-slow-in-flight).");
        describe_gauge!("kit_webhooks_daemon_leases_ready", "Leased deliveries received and not started yet: waiting for their endpoint's rate limit, their account's or host's share, or a request slot.");
        describe_counter!(
            "kit_webhooks_daemon_rate_limited_waits_total",
            "Deliveries that waited for their webhook's rate limit before they could be sent."
        );
        describe_counter!(
            "kit_webhooks_daemon_reports_sent_total",
            "Attempt reports the server recorded or refused (a refused one is logged)."
        );
        describe_histogram!(
            "kit_webhooks_daemon_report_duration_seconds",
            Unit::Seconds,
            "How long a ReportDeliveries call took to be answered, retries included."
        );
        describe_gauge!(
            "kit_webhooks_daemon_stream_open",
            "1 while the daemon's delivery stream to its server is open, else 0."
        );
        describe_counter!("kit_webhooks_daemon_stream_reconnects_total", "Delivery streams opened after the first (the server ended the stream, failed, or could not be reached).");
        describe_gauge!(
            "kit_webhooks_daemon_connections_open",
            "Connections open to endpoints: in use or idle in the pool."
        );
        Metrics {
            attempts: OUTCOMES
                .iter()
                .map(
                    |outcome| counter!("kit_webhooks_daemon_attempts_total", "outcome" => *outcome),
                )
                .collect(),
            attempt_duration: histogram!("kit_webhooks_daemon_attempt_duration_seconds"),
            requests_in_flight: gauge!("kit_webhooks_daemon_requests_in_flight"),
            requests_slow: gauge!("kit_webhooks_daemon_requests_slow"),
            leases_ready: gauge!("kit_webhooks_daemon_leases_ready"),
            rate_limited_waits: counter!("kit_webhooks_daemon_rate_limited_waits_total"),
            reports_sent: counter!("kit_webhooks_daemon_reports_sent_total"),
            report_duration: histogram!("kit_webhooks_daemon_report_duration_seconds"),
            stream_open: gauge!("kit_webhooks_daemon_stream_open"),
            stream_reconnects: counter!("kit_webhooks_daemon_stream_reconnects_total"),
            connections_open: gauge!("kit_webhooks_daemon_connections_open"),
        }
    }

    /// Counts an attempt by its outcome and times it.
    pub(crate) fn attempted(&self, report: &ReportDeliveryRequest) {
        let class = outcome(report);
        if let Some(counter) = OUTCOMES
            .iter()
            .position(|o| *o == class)
            .and_then(|i| self.attempts.get(i))
        {
            counter.increment(1);
        }
        self.attempt_duration
            .record(f64::from(report.duration_ms) / 1000.0);
    }
}

/// The outcome class of an attempt: the response's status class, or the kind of failure without one.
fn outcome(report: &ReportDeliveryRequest) -> &'static str {
    match (report.response_status, report.error_kind.as_str()) {
        (200..=299, _) => "2xx",
        (300..=399, _) => "3xx",
        (400..=499, _) => "4xx",
        (500..=599, _) => "5xx",
        (_, "timeout") => "timeout",
        (_, "connect" | "dns") => "connect_error",
        (_, "tls") => "tls_error",
        (_, "blocked_address") => "blocked",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_is_classed_by_its_status_or_its_failure() {
        let report = |status, kind: &str| ReportDeliveryRequest {
            response_status: status,
            error_kind: kind.into(),
            ..Default::default()
        };
        assert_eq!(outcome(&report(204, "")), "2xx");
        assert_eq!(outcome(&report(301, "redirect")), "3xx");
        assert_eq!(outcome(&report(410, "status")), "4xx");
        assert_eq!(outcome(&report(503, "status")), "5xx");
        assert_eq!(outcome(&report(0, "timeout")), "timeout");
        assert_eq!(outcome(&report(0, "dns")), "connect_error");
        assert_eq!(outcome(&report(0, "tls")), "tls_error");
        assert_eq!(outcome(&report(0, "blocked_address")), "blocked");
        assert_eq!(outcome(&report(0, "protocol")), "other");
    }
}
