//! Operational events: what Kit Webhooks tells an account about its own webhooks. A webhook disabled (it
//! kept failing, or answered 410) makes a `webhook.disabled` event, and a disabled webhook resumed a
//! `webhook.enabled` one, in the transaction that changes the webhook, so that the change and the news of
//! it commit together. Each is fanned out like a published event ([`publish_in`]) to the account's active
//! webhooks that subscribe to it: a disabled webhook is no longer active, so it never hears of itself.

use kit_webhooks::catalogue::{WEBHOOK_DISABLED, WEBHOOK_ENABLED};
use sea_orm::{ConnectionTrait, DbErr};
use serde_json::{json, Value};

use super::{
    entity::webhook,
    events::{new_event, publish_in},
    sql::{json_rows::statement, write_txn::WriteTxn},
};
use crate::core::time;

/// How many failed attempts a `webhook.disabled` event lists.
const LAST_FAILURES: u64 = 3;
/// How many of the webhook's newest deliveries are searched for them: bounded, whatever its history.
const SEARCHED_DELIVERIES: u64 = 50;

/// Tells `hook`'s account that it was disabled (`hook` as it is now, disabled; `gone` when for a 410).
/// Returns how many deliveries were queued.
pub async fn webhook_disabled(
    txn: &WriteTxn,
    hook: &webhook::Model,
    gone: bool,
    now: i64,
) -> Result<u32, DbErr> {
    let last_failures = last_failures(txn, &hook.id).await?;
    let data = disabled_data(hook, gone, last_failures, now);
    tell(txn, hook, WEBHOOK_DISABLED, data).await
}

/// Tells `hook`'s account that it was enabled again (`hook` as it is now, active), having been disabled
/// because of `reason`. Returns how many deliveries were queued.
pub async fn webhook_enabled(
    txn: &WriteTxn,
    hook: &webhook::Model,
    reason: &str,
    now: i64,
) -> Result<u32, DbErr> {
    tell(txn, hook, WEBHOOK_ENABLED, enabled_data(hook, reason, now)).await
}

async fn tell(
    txn: &WriteTxn,
    hook: &webhook::Model,
    event_type: &str,
    data: Value,
) -> Result<u32, DbErr> {
    let event = new_event(hook.account_id.clone(), event_type, data.to_string(), None);
    let published = publish_in(txn, std::slice::from_ref(&event), None).await?;
    let queued = published.first().map_or(0, |p| p.deliveries_queued);
    tracing::info!(webhook = %hook.id, event = %event.id, event_type, deliveries = queued, "account told");
    Ok(queued)
}

/// The `data` of a `webhook.disabled` event (catalogue/webhook.disabled.json).
fn disabled_data(hook: &webhook::Model, gone: bool, last_failures: Vec<Value>, now: i64) -> Value {
    json!({
        "webhook_id": hook.id,
        "url": hook.url,
        "description": hook.description,
        "reason": if gone { "gone" } else { "failing" },
        "message": hook.disabled_reason,
        "failure_count": hook.failure_count.max(0),
        "failing_since": hook.failing_since.map(time::rfc3339),
        "disabled_at": time::rfc3339(now),
        "last_failures": last_failures,
    })
}

/// The `data` of a `webhook.enabled` event (catalogue/webhook.enabled.json).
fn enabled_data(hook: &webhook::Model, reason: &str, now: i64) -> Value {
    json!({
        "webhook_id": hook.id,
        "url": hook.url,
        "description": hook.description,
        "enabled_at": time::rfc3339(now),
        "was_disabled_because": reason,
    })
}

/// The webhook's last failed attempts, newest first, among its newest deliveries.
async fn last_failures(txn: &WriteTxn, webhook_id: &str) -> Result<Vec<Value>, DbErr> {
    let sql = "SELECT a.delivery_id, d.event_type, a.started_at, a.response_status, a.error_kind, a.error \
               FROM attempts a JOIN (SELECT id, event_type FROM deliveries WHERE webhook_id = ? \
               ORDER BY id DESC LIMIT CAST(? AS BIGINT)) d ON d.id = a.delivery_id \
               WHERE a.response_status < 200 OR a.response_status >= 300 \
               ORDER BY a.started_at DESC LIMIT CAST(? AS BIGINT)";
    let values = vec![
        webhook_id.into(),
        (SEARCHED_DELIVERIES as i64).into(),
        (LAST_FAILURES as i64).into(),
    ];
    let rows = txn
        .query_all_raw(statement(txn.get_database_backend(), sql, values))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(json!({
                "delivery_id": row.try_get::<String>("", "delivery_id")?,
                "event_type": row.try_get::<String>("", "event_type")?,
                "attempted_at": time::rfc3339(row.try_get::<i64>("", "started_at")?),
                "response_status": row.try_get::<i32>("", "response_status")?.max(0),
                "error_kind": row.try_get::<String>("", "error_kind")?,
                "error": row.try_get::<String>("", "error")?,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{core::payload, store::webhooks::new_webhook};

    #[test]
    fn the_events_match_their_schemas() {
        let mut hook = new_webhook("acct", "https://example.com/h", "d", &[], 10);
        hook.disabled_reason = "the endpoint answered 410 Gone".into();
        hook.failure_count = 1;
        hook.failing_since = Some(1_700_000_000_000);
        let failure = json!({
            "delivery_id": "dlv_1", "event_type": "offer.accepted", "attempted_at": time::rfc3339(0),
            "response_status": 410, "error_kind": "status", "error": "410 Gone",
        });
        let data = disabled_data(&hook, true, vec![failure], 1_700_000_100_000);
        payload::check(WEBHOOK_DISABLED, &data.to_string()).expect("webhook.disabled");
        hook.failing_since = None;
        let data = disabled_data(&hook, false, Vec::new(), 1_700_000_100_000);
        payload::check(WEBHOOK_DISABLED, &data.to_string()).expect("no failures, never failing");
        let data = enabled_data(&hook, "the endpoint answered 410 Gone", 1_700_000_200_000);
        payload::check(WEBHOOK_ENABLED, &data.to_string()).expect("webhook.enabled");
    }
}
