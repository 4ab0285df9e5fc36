//! A leased delivery as the daemon's task: the one place that decides what a daemon is told to send.

use kit_webhooks::proto;

use crate::{
    core::{event::envelope, headers, sealing::Keyring, Error},
    store::leases::LeasedDelivery,
};

/// The request body of `lease`'s event ([`envelope`]).
pub fn body(lease: &LeasedDelivery) -> Vec<u8> {
    envelope(
        &lease.event_id,
        &lease.event_type,
        lease.event.created_at,
        &lease.event.account_id,
        &lease.event.data_json,
    )
}

/// The daemon's task for a leased delivery: its event's `body`, every secret valid `now` (the current one
/// first, then one still in its rotation grace) and the webhook's own headers, opened with `ring`: the one
/// place what is sealed is opened for sending.
pub fn task(
    lease: LeasedDelivery,
    body: bytes::Bytes,
    timeout_ms: u32,
    now: i64,
    ring: &Keyring,
) -> Result<proto::DeliveryTask, Error> {
    let hook = &lease.webhook;
    let mut secrets = vec![ring.open(&hook.id, &hook.secret)?];
    if let (Some(previous), Some(until)) = (&hook.previous_secret, hook.previous_secret_expires_at)
    {
        if until > now {
            secrets.push(ring.open(&hook.id, previous)?);
        }
    }
    let headers = headers::open(ring, &hook.id, &hook.headers)?;
    Ok(proto::DeliveryTask {
        headers,
        attempt_number: (lease.attempt_count + 1).max(1) as u32,
        url: hook.url.clone(),
        rate_limit_per_second: hook.rate_limit_per_second.max(1) as u32,
        body,
        secrets,
        timeout_ms,
        delivery_id: lease.delivery_id,
        lease_id: lease.lease_id,
        webhook_id: lease.webhook_id,
        event_id: lease.event_id,
        event_type: lease.event_type,
        account_id: lease.event.account_id.clone(),
    })
}
