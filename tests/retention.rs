//! Retention on both databases: a pass prunes the events older than its cutoff whose deliveries are all
//! finished, with their deliveries and attempts, and keeps, whole, every event with a delivery still waiting
//! (retrying, held behind a paused webhook) or leased, and every event newer than the cutoff.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{
    authed,
    receiver::{always, Receiver, Reply},
    Backend, TestServer,
};
use kit_webhooks::proto::{DeliveryStatus, GetEventRequest};
use kit_webhooks_server::{core::time, retention, store::entity};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

on_both_databases!(a_pass_prunes_finished_old_events_and_keeps_the_rest);

const WAIT: Duration = Duration::from_secs(30);

async fn event_ids(server: &TestServer) -> BTreeSet<String> {
    entity::event::Entity::find()
        .all(server.server.store.reader())
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.id)
        .collect()
}

async fn a_pass_prunes_finished_old_events_and_keeps_the_rest(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        common::fast_delivery(config, None);
        // The hanging endpoint's request stays in flight through the test.
        config.request_timeout = Duration::from_secs(120);
        // The test runs the passes itself.
        config.retention = Duration::ZERO;
    })
    .await;
    let ok = Receiver::http(always(Reply::ok())).await;
    let failing = Receiver::http(always(Reply::status(500))).await;
    let later = Receiver::http(always(Reply::status(503).header("retry-after", "3600"))).await;
    let hanging = Receiver::http(always(Reply::ok().delay(Duration::from_secs(120)))).await;
    let (ok_hook, _) = server
        .create_webhook(&ok.url("/"), &["application.*", "review.*"])
        .await;
    let (failing_hook, _) = server.create_webhook(&failing.url("/"), &["offer.*"]).await;
    let (later_hook, _) = server
        .create_webhook(&later.url("/"), &["interview.*", "review.*"])
        .await;
    server
        .create_webhook(&hanging.url("/"), &["job_posting.*"])
        .await;

    let id = |reply: kit_webhooks::proto::PublishEventResponse| reply.event.expect("event").id;
    // Finished: delivered, failed for good, and sent nowhere.
    let delivered = id(server.publish("application.submitted", "{}").await);
    let failed = id(server.publish("offer.accepted", "{}").await);
    let unsent: Vec<String> = {
        let mut ids = Vec::new();
        // More than a batch, so that a pass goes on from batch to batch.
        for _ in 0..230 {
            ids.push(id(server.publish("code_assignment.submitted", "{}").await));
        }
        ids
    };
    // Not finished: retrying later then held behind the paused webhook, leased, and one of each.
    let held = id(server.publish("interview.scheduled", "{}").await);
    let leased = id(server.publish("job_posting.published", "{}").await);
    let mixed = id(server.publish("review.submitted", "{}").await);

    ok.wait_for(2, WAIT).await;
    later.wait_for(2, WAIT).await;
    hanging.wait_for(1, WAIT).await;
    let failed_delivery = server.deliveries(&failing_hook.id).await;
    server
        .wait_delivery(&failed_delivery[0].id, WAIT, |d| {
            d.status() == DeliveryStatus::Failed
        })
        .await;
    server.pause(&later_hook.id).await;

    let cutoff = time::now_ms() + 1;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Newer than the cutoff: kept, though delivered.
    let newer = id(server.publish("application.advanced", "{}").await);
    ok.wait_for(3, WAIT).await;

    // The attempts of the two finished deliveries, by their deliveries.
    let delivered_delivery = server
        .deliveries(&ok_hook.id)
        .await
        .into_iter()
        .find(|d| d.event_id == delivered)
        .expect("the delivered delivery");
    let finished = [delivered_delivery.id.clone(), failed_delivery[0].id.clone()];
    let attempts_of_finished = || async {
        entity::attempt::Entity::find()
            .filter(entity::attempt::Column::DeliveryId.is_in(finished.clone()))
            .count(server.server.store.reader())
            .await
            .expect("attempts")
    };
    assert_eq!(attempts_of_finished().await, 6);
    let mut batches = 0;
    let pruned = retention::pass(
        &server.server.store,
        cutoff,
        1.0,
        &Default::default(),
        |_| batches += 1,
    )
    .await
    .expect("a pass");
    assert_eq!(pruned.events, 2 + 230, "{pruned:?}");
    assert_eq!(pruned.deliveries, 2, "{pruned:?}");
    // One attempt delivered, five failed (the first and four retries).
    assert_eq!(pruned.attempts, 1 + 5, "{pruned:?}");
    assert!(batches >= 3, "{batches} batches");
    assert_eq!(attempts_of_finished().await, 0);

    let left = event_ids(&server).await;
    let expected: BTreeSet<String> = [&held, &leased, &mixed, &newer]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(left, expected);
    // The kept mixed event keeps its delivered delivery too: an event goes whole or not at all.
    let ok_deliveries: BTreeSet<String> = server
        .deliveries(&ok_hook.id)
        .await
        .into_iter()
        .map(|d| d.event_id)
        .collect();
    assert_eq!(
        ok_deliveries,
        [mixed.clone(), newer.clone()].into_iter().collect()
    );
    // What went is gone for the API too.
    for gone in [&delivered, &failed, &unsent[0]] {
        let status = server
            .events()
            .await
            .get_event(authed(
                &server.publisher_key,
                GetEventRequest { id: gone.clone() },
            ))
            .await
            .expect_err("pruned");
        assert_eq!(status.code(), tonic::Code::NotFound);
    }

    // A second pass finds nothing more; the held and leased deliveries are untouched.
    let again = retention::pass(
        &server.server.store,
        cutoff,
        1.0,
        &Default::default(),
        |_| {},
    )
    .await
    .expect("a pass");
    assert_eq!((again.events, again.deliveries), (0, 0));
    let later_deliveries = server.deliveries(&later_hook.id).await;
    assert_eq!(later_deliveries.len(), 2);
    assert!(later_deliveries
        .iter()
        .all(|d| d.status() == DeliveryStatus::Pending));
    server.stop().await;
}
