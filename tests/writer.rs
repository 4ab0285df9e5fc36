//! The writer's cycle at the storage level, on SQLite and PostgreSQL: writes of different kinds share one
//! transaction, and when that transaction fails, each kind is committed on its own, so a failing write does
//! not take the others down with it.

mod common;

use std::collections::BTreeMap;

use common::{Backend, TestServer};
use kit_webhooks_server::{
    core::{policy::DeliveryDecision, time},
    store::{
        entity::delivery,
        events::new_event,
        leases::{AttemptReport, Claim, LeasedDelivery},
        writes::{WriteRules, Writes},
    },
};
use sea_orm::EntityTrait;

on_both_databases!(
    one_cycle_publishes_records_and_leases,
    a_failing_publish_does_not_fail_the_reports_of_its_cycle,
);

fn rules(server: &TestServer) -> WriteRules {
    WriteRules {
        retry: server.config.retry.clone(),
        per_webhook_cap: 100,
        lease_ttl_ms: 60_000,
    }
}

/// A `200 OK` report of the first attempt on `lease`.
fn ok_report(delivery_id: &str, lease_id: &str) -> AttemptReport {
    AttemptReport {
        delivery_id: delivery_id.into(),
        lease_id: lease_id.into(),
        attempt_number: 1,
        started_at: time::now_ms(),
        duration_ms: 3,
        request_headers: BTreeMap::new(),
        response_status: 200,
        response_headers: BTreeMap::new(),
        response_body: String::new(),
        error_kind: String::new(),
        error: String::new(),
    }
}

async fn status_of(server: &TestServer, delivery_id: &str) -> String {
    delivery::Entity::find_by_id(delivery_id.to_owned())
        .one(server.server.store.writer())
        .await
        .expect("read delivery")
        .expect("delivery row")
        .status
}

/// Creates a webhook, publishes one event to it and leases its delivery to stream `dst_test`.
async fn lease_one(server: &TestServer) -> LeasedDelivery {
    server
        .create_webhook("http://127.0.0.1:9/", &["application.*"])
        .await;
    server.publish("application.submitted", "{}").await;
    let now = time::now_ms();
    let mut leased = server
        .server
        .store
        .claim_due("dst_test", 10, 100, now, now + 60_000)
        .await
        .expect("claim")
        .leased;
    assert_eq!(leased.len(), 1);
    leased.remove(0)
}

async fn one_cycle_publishes_records_and_leases(backend: Backend) {
    let server = TestServer::start_without_daemon(backend).await;
    let first = lease_one(&server).await;
    let store = &server.server.store;

    // One cycle: a new event, the report of the first delivery, and a claim that leases the new event's
    // delivery, published earlier in the same transaction.
    let event = new_event("default", "application.submitted", "{}", None);
    let event_id = event.id.clone();
    let written = store
        .commit_writes(
            Writes {
                events: vec![event],
                reports: vec![ok_report(&first.delivery_id, &first.lease_id)],
                claims: vec![Claim {
                    owner: "dst_test".into(),
                    room: 10,
                }],
            },
            &rules(&server),
            time::now_ms(),
        )
        .await;
    let published = written.published[0].as_ref().expect("published");
    assert_eq!(published.deliveries_queued, 1);
    let recorded = written.recorded[0].as_ref().expect("recorded");
    assert!(matches!(
        recorded.decision.delivery,
        DeliveryDecision::Succeeded
    ));
    let claimed = written.claimed[0].as_ref().expect("claimed");
    assert_eq!(
        claimed.leased.len(),
        1,
        "the new event's delivery is leased"
    );
    assert_eq!(claimed.leased[0].event_id, event_id);
    assert!(!claimed.more_due, "nothing else is due");
    assert_eq!(status_of(&server, &first.delivery_id).await, "succeeded");
    assert_eq!(
        status_of(&server, &claimed.leased[0].delivery_id).await,
        "sending"
    );
    server.stop().await;
}

async fn a_failing_publish_does_not_fail_the_reports_of_its_cycle(backend: Backend) {
    let server = TestServer::start_without_daemon(backend).await;
    let leased = lease_one(&server).await;
    let store = &server.server.store;

    // The same event id again: its insert fails, and with it the combined transaction.
    let duplicate = store
        .find_event(None, &leased.event_id)
        .await
        .expect("read event")
        .expect("event row");
    let written = store
        .commit_writes(
            Writes {
                events: vec![duplicate],
                reports: vec![ok_report(&leased.delivery_id, &leased.lease_id)],
                claims: Vec::new(),
            },
            &rules(&server),
            time::now_ms(),
        )
        .await;
    assert!(
        written.published[0].is_err(),
        "a second event with the same id is refused"
    );
    let recorded = written.recorded[0]
        .as_ref()
        .expect("the report of the same cycle is still recorded");
    assert!(matches!(
        recorded.decision.delivery,
        DeliveryDecision::Succeeded
    ));
    assert_eq!(status_of(&server, &leased.delivery_id).await, "succeeded");
    server.stop().await;
}
