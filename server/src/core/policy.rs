//! The delivery policy: what one reported attempt means for its delivery and its webhook.
//!
//! Pure rules, no I/O: `store::leases` applies the [`Decision`] in the same transaction that records the
//! attempt.

use std::time::Duration;

use rand::Rng;

/// The default retry schedule (docs/ARCHITECTURE.md, Defaults): the waits after attempts 1..=7 (8 attempts,
/// about 27.6 hours).
pub const DEFAULT_RETRY_SCHEDULE: &[Duration] = &[
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// Jitter applied to every scheduled wait: ±20 %.
const JITTER: f64 = 0.2;
/// `Retry-After` is honoured within these bounds.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A webhook failing this long with no `2xx` ...
pub const DEFAULT_AUTO_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);
/// ... and at least this many consecutive failed attempts is disabled.
pub const DEFAULT_AUTO_DISABLE_MIN_FAILURES: u32 = 20;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Waits after each failed attempt; one more attempt than there are waits.
    pub schedule: Vec<Duration>,
    /// A webhook failing for this long with no `2xx` ...
    pub auto_disable_after: Duration,
    /// ... and at least this many consecutive failed attempts is disabled.
    pub auto_disable_min_failures: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            schedule: DEFAULT_RETRY_SCHEDULE.to_vec(),
            auto_disable_after: DEFAULT_AUTO_DISABLE_AFTER,
            auto_disable_min_failures: DEFAULT_AUTO_DISABLE_MIN_FAILURES,
        }
    }
}

/// What one attempt's outcome is, as the daemon saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// 1 for the first attempt.
    pub attempt_number: u32,
    /// HTTP status, 0 when no response arrived.
    pub status: u32,
    /// The `Retry-After` response header, if any.
    pub retry_after: Option<String>,
    /// A test delivery (a ping, or an example sent to one webhook).
    pub is_test: bool,
    /// When the attempt started (Unix ms).
    pub started_at: i64,
}

/// The webhook's failure bookkeeping before this attempt.
#[derive(Debug, Clone, Copy)]
pub struct WebhookHealth {
    pub failure_count: u32,
    /// When the current run of failures began (Unix ms).
    pub failing_since: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryDecision {
    Succeeded,
    /// Try again at this time (Unix ms).
    RetryAt(i64),
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookDecision {
    /// Leave the webhook alone (test pings).
    Unchanged,
    /// A success: clear the failure run.
    Healthy,
    /// One more failure in the run.
    Failing {
        failure_count: u32,
        failing_since: i64,
    },
    /// Disable the webhook, with the reason shown to admins.
    Disable {
        failure_count: u32,
        failing_since: i64,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub delivery: DeliveryDecision,
    pub webhook: WebhookDecision,
}

pub fn is_success(status: u32) -> bool {
    (200..300).contains(&status)
}

impl RetryPolicy {
    /// The most attempts one delivery gets.
    pub fn max_attempts(&self) -> u32 {
        self.schedule.len() as u32 + 1
    }

    pub fn decide(&self, outcome: &Outcome, health: WebhookHealth, now: i64) -> Decision {
        if is_success(outcome.status) {
            let webhook = if outcome.is_test {
                WebhookDecision::Unchanged
            } else {
                WebhookDecision::Healthy
            };
            return Decision {
                delivery: DeliveryDecision::Succeeded,
                webhook,
            };
        }
        // A test delivery is a one-off check: never retried, never counted against the webhook.
        if outcome.is_test {
            return Decision {
                delivery: DeliveryDecision::Failed,
                webhook: WebhookDecision::Unchanged,
            };
        }
        let delivery = match self
            .schedule
            .get(outcome.attempt_number.saturating_sub(1) as usize)
        {
            None => DeliveryDecision::Failed,
            Some(&scheduled) => {
                let wait = self
                    .retry_after(outcome)
                    .unwrap_or_else(|| jittered(scheduled));
                DeliveryDecision::RetryAt(now + wait.as_millis() as i64)
            }
        };
        let failure_count = health.failure_count.saturating_add(1);
        let failing_since = health.failing_since.unwrap_or(outcome.started_at);
        let webhook = if outcome.status == 410 {
            WebhookDecision::Disable {
                failure_count,
                failing_since,
                reason: "the endpoint answered 410 Gone".into(),
            }
        } else if failure_count >= self.auto_disable_min_failures
            && now.saturating_sub(failing_since) >= self.auto_disable_after.as_millis() as i64
        {
            WebhookDecision::Disable {
                failure_count,
                failing_since,
                reason: format!(
                    "no successful delivery for {} and {failure_count} consecutive failed attempts",
                    crate::core::time::human_duration(Duration::from_millis(
                        now.saturating_sub(failing_since) as u64
                    )),
                ),
            }
        } else {
            WebhookDecision::Failing {
                failure_count,
                failing_since,
            }
        };
        Decision { delivery, webhook }
    }

    /// The wait an endpoint asked for with `Retry-After` on 429 or 503, clamped to sane bounds.
    fn retry_after(&self, outcome: &Outcome) -> Option<Duration> {
        if outcome.status != 429 && outcome.status != 503 {
            return None;
        }
        let value = outcome.retry_after.as_deref()?.trim();
        let wait = match value.parse::<u64>() {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(_) => {
                let at = httpdate::parse_http_date(value).ok()?;
                at.duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
            }
        };
        Some(wait.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER))
    }
}

fn jittered(wait: Duration) -> Duration {
    let factor = rand::rng().random_range((1.0 - JITTER)..=(1.0 + JITTER));
    wait.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(attempt_number: u32, status: u32) -> Outcome {
        Outcome {
            attempt_number,
            status,
            retry_after: None,
            is_test: false,
            started_at: 1_000,
        }
    }

    const FRESH: WebhookHealth = WebhookHealth {
        failure_count: 0,
        failing_since: None,
    };

    #[test]
    fn success_resets_and_failures_follow_the_schedule() {
        let policy = RetryPolicy::default();
        let decision = policy.decide(&outcome(3, 204), FRESH, 2_000);
        assert_eq!(decision.delivery, DeliveryDecision::Succeeded);
        assert_eq!(decision.webhook, WebhookDecision::Healthy);

        let DeliveryDecision::RetryAt(at) = policy.decide(&outcome(1, 500), FRESH, 2_000).delivery
        else {
            panic!("first failure retries");
        };
        assert!(
            (2_000 + 4_000..=2_000 + 6_000).contains(&at),
            "5 s ± 20 %: {at}"
        );
        assert_eq!(
            policy.decide(&outcome(8, 500), FRESH, 2_000).delivery,
            DeliveryDecision::Failed
        );
        assert_eq!(policy.max_attempts(), 8);
    }

    #[test]
    fn retry_after_is_honoured_and_clamped() {
        let policy = RetryPolicy::default();
        let mut o = outcome(1, 429);
        o.retry_after = Some("120".into());
        assert_eq!(
            policy.decide(&o, FRESH, 0).delivery,
            DeliveryDecision::RetryAt(120_000)
        );
        o.retry_after = Some("999999".into());
        assert_eq!(
            policy.decide(&o, FRESH, 0).delivery,
            DeliveryDecision::RetryAt(3_600_000)
        );
        o.status = 500;
        assert_ne!(
            policy.decide(&o, FRESH, 0).delivery,
            DeliveryDecision::RetryAt(3_600_000),
            "only 429/503"
        );
    }

    #[test]
    fn gone_disables_and_long_failure_runs_disable() {
        let policy = RetryPolicy::default();
        assert!(matches!(
            policy.decide(&outcome(1, 410), FRESH, 0).webhook,
            WebhookDecision::Disable { .. }
        ));
        let five_days = 5 * 24 * 3600 * 1000;
        let long_run = WebhookHealth {
            failure_count: 19,
            failing_since: Some(0),
        };
        assert!(matches!(
            policy.decide(&outcome(2, 500), long_run, five_days).webhook,
            WebhookDecision::Disable { .. }
        ));
        // Many failures in a short time are not enough; neither is a long time with few failures.
        assert!(matches!(
            policy.decide(&outcome(2, 500), long_run, 1000).webhook,
            WebhookDecision::Failing { .. }
        ));
        let few = WebhookHealth {
            failure_count: 3,
            failing_since: Some(0),
        };
        assert!(matches!(
            policy.decide(&outcome(2, 500), few, five_days).webhook,
            WebhookDecision::Failing { .. }
        ));
    }

    #[test]
    fn test_deliveries_are_tried_once_and_never_count() {
        let policy = RetryPolicy::default();
        let mut o = outcome(1, 500);
        o.is_test = true;
        let decision = policy.decide(&o, FRESH, 0);
        assert_eq!(decision.delivery, DeliveryDecision::Failed);
        assert_eq!(decision.webhook, WebhookDecision::Unchanged);
    }
}
