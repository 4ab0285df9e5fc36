//! The writer's cycle at the storage level, on SQLite and PostgreSQL: writes of different kinds share one
//! transaction, and when that transaction fails, each kind is committed on its own (and a kind that fails
//! again, write by write), so a failing write does not take the others down with it. A cycle's new deliveries
//! are handed to the claims of the same cycle, and a standing claim waits for the next publish.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::collections::BTreeMap;

use common::{Backend, TestServer};
use kit_webhooks_server::{
    core::{policy::DeliveryDecision, time},
    store::{
        entity::{
            delivery::{self, DeliveryStatus},
            event,
        },
        events::new_event,
        leases::{AttemptReport, Claim, LeaseCaps, LeasedDelivery},
        sql::{batch::Batch, write_txn::WriteTxn},
        writes::{WriteRules, Writes, Written},
    },
    writer::Writer,
};
use sea_orm::{EntityTrait, IntoActiveModel};

on_both_databases!(
    one_cycle_publishes_records_and_leases,
    a_failing_publish_does_not_fail_the_reports_of_its_cycle,
    a_claim_takes_the_due_range_first_then_the_new_deliveries_of_its_cycle,
    an_account_at_its_lease_cap_is_passed_over,
    two_claims_of_one_cycle_share_the_counts,
    the_lease_counts_follow_the_cycles_and_a_stream_that_ends,
    a_standing_claim_waits_for_the_next_publish,
    a_failed_cycle_leaves_nothing_and_the_next_one_commits,
    an_event_the_database_refuses_fails_no_other_publish,
);

/// Caps that bind only where a test lowers one.
const CAPS: LeaseCaps = LeaseCaps {
    per_webhook: 100,
    per_account: 1_000,
};

fn rules(server: &TestServer) -> WriteRules {
    WriteRules {
        retry: server.config.retry.clone(),
        caps: CAPS,
        lease_ttl_ms: 60_000,
    }
}

/// [`rules`] with one webhook's leases capped at `per_webhook`.
fn capped_per_webhook(server: &TestServer, per_webhook: u64) -> WriteRules {
    WriteRules {
        caps: LeaseCaps {
            per_webhook,
            ..CAPS
        },
        ..rules(server)
    }
}

fn claim(room: u64) -> Claim {
    Claim::new("dst_test", room)
}

/// One cycle that publishes `event` beside a claim with room for ten, under `rules`.
async fn publish_beside_a_claim(
    server: &TestServer,
    event: &event::Model,
    rules: &WriteRules,
) -> Written {
    let writes = Writes {
        events: vec![event.clone()],
        reports: Vec::new(),
        claims: vec![claim(10)],
    };
    server
        .server
        .store
        .commit_writes(writes, rules, time::now_ms())
        .await
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

async fn status_of(server: &TestServer, delivery_id: &str) -> DeliveryStatus {
    delivery::Entity::find_by_id(delivery_id.to_owned())
        .one(server.server.store.writer())
        .await
        .expect("read delivery")
        .expect("delivery row")
        .status
}

/// The delivery rows of event `event_id`.
async fn deliveries_of(server: &TestServer, event_id: &str) -> Vec<delivery::Model> {
    use sea_orm::{ColumnTrait, QueryFilter};
    delivery::Entity::find()
        .filter(delivery::Column::EventId.eq(event_id))
        .all(server.server.store.writer())
        .await
        .expect("read deliveries")
}

/// A server without a daemon, and one webhook subscribed to `application.*`.
async fn start_with_a_webhook(backend: Backend) -> TestServer {
    let server = TestServer::start_without_daemon(backend).await;
    server
        .create_webhook("http://127.0.0.1:9/", &["application.*"])
        .await;
    server
}

/// [`start_with_a_webhook`], and `deliveries` pending for it.
async fn start_with_pending(backend: Backend, deliveries: usize) -> TestServer {
    let server = start_with_a_webhook(backend).await;
    for _ in 0..deliveries {
        server.publish("application.submitted", "{}").await;
    }
    server
}

/// Publishes one event to the webhook and leases its delivery to stream `dst_test`.
async fn lease_one(server: &TestServer) -> LeasedDelivery {
    server.publish("application.submitted", "{}").await;
    let now = time::now_ms();
    let mut leased = server
        .server
        .store
        .claim_due("dst_test", 10, CAPS, now, now + 60_000)
        .await
        .expect("claim")
        .leased;
    assert_eq!(leased.len(), 1);
    leased.remove(0)
}

async fn one_cycle_publishes_records_and_leases(backend: Backend) {
    let server = start_with_a_webhook(backend).await;
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
                reports: vec![ok_report(&first.delivery_id, &first.lease_id).into()],
                claims: vec![claim(10)],
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
    assert_eq!(
        status_of(&server, &first.delivery_id).await,
        DeliveryStatus::Succeeded
    );
    assert_eq!(
        status_of(&server, &claimed.leased[0].delivery_id).await,
        DeliveryStatus::Sending
    );
    server.stop().await;
}

async fn a_failing_publish_does_not_fail_the_reports_of_its_cycle(backend: Backend) {
    let server = start_with_a_webhook(backend).await;
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
                reports: vec![ok_report(&leased.delivery_id, &leased.lease_id).into()],
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
    assert_eq!(
        status_of(&server, &leased.delivery_id).await,
        DeliveryStatus::Succeeded
    );
    server.stop().await;
}

/// Makes the database itself refuse any event with idempotency key `poison`: a failure that validation
/// did not catch, as a constraint, a trigger or a full disk would cause.
async fn poison_events(server: &TestServer) {
    use sea_orm::ConnectionTrait;
    let db = server.server.store.writer();
    let statements: &[&str] = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => &[
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.idempotency_key = 'poison' THEN RAISE EXCEPTION 'injected failure'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ],
        _ => &["CREATE TRIGGER refuse_poison BEFORE INSERT ON events \
                WHEN NEW.idempotency_key = 'poison' BEGIN SELECT RAISE(ABORT, 'injected failure'); END"],
    };
    for sql in statements {
        db.execute_unprepared(sql)
            .await
            .expect("install the trigger");
    }
}

async fn an_event_the_database_refuses_fails_no_other_publish(backend: Backend) {
    let server = start_with_a_webhook(backend).await;
    poison_events(&server).await;
    let channel = server.channel().await;
    // Many publishes at once, so that the writer gathers them into shared cycles, a few of them refused.
    let calls = (0..120).map(|i| {
        let mut events =
            kit_webhooks::proto::event_service_client::EventServiceClient::new(channel.clone());
        let key = if i % 40 == 7 {
            "poison".to_owned()
        } else {
            format!("key-{i}")
        };
        let request = common::authed(
            &server.publisher_key,
            kit_webhooks::proto::PublishEventRequest {
                account_id: "default".into(),
                r#type: "application.submitted".into(),
                data_json: "{}".into(),
                idempotency_key: key.clone(),
            },
        );
        async move { (key, events.publish_event(request).await) }
    });
    let results = futures::future::join_all(calls).await;
    for (key, result) in &results {
        match (key.as_str(), result) {
            ("poison", Err(status)) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}")
            }
            ("poison", Ok(_)) => panic!("the refused event was acknowledged"),
            (key, Err(status)) => panic!("{key} failed beside the refused event: {status:?}"),
            (_, Ok(_)) => {}
        }
    }
    let stored = common::count(
        server.server.store.writer(),
        "SELECT COUNT(*) AS n FROM events",
    )
    .await;
    assert_eq!(
        stored, 117,
        "every other event is stored, the refused ones are not"
    );
    server.stop().await;
}

async fn a_claim_takes_the_due_range_first_then_the_new_deliveries_of_its_cycle(backend: Backend) {
    let server = start_with_a_webhook(backend).await;
    // An older delivery, due and pending (no stream was claiming when it was published).
    let older = server
        .publish("application.submitted", "{}")
        .await
        .event
        .expect("event");
    let store = &server.server.store;

    // Room for two, and two new events: the older delivery goes first, then the first new one is handed
    // over as it is stored; the second does not fit and stays pending.
    let (second, third) = (
        new_event("default", "application.submitted", "{}", None),
        new_event("default", "application.submitted", "{}", None),
    );
    let written = store
        .commit_writes(
            Writes {
                events: vec![second.clone(), third.clone()],
                reports: Vec::new(),
                claims: vec![claim(2)],
            },
            &rules(&server),
            time::now_ms(),
        )
        .await;
    let claimed = written.claimed[0].as_ref().expect("claimed");
    let leased: Vec<&str> = claimed.leased.iter().map(|l| l.event_id.as_str()).collect();
    assert_eq!(leased, [older.id.as_str(), second.id.as_str()]);
    assert!(claimed.more_due, "a new delivery was left pending");
    let published: Vec<(u32, u32)> = written
        .published
        .iter()
        .map(|p| {
            let p = p.as_ref().expect("published");
            (p.deliveries_queued, p.deliveries_pending)
        })
        .collect();
    assert_eq!(published, [(1, 0), (1, 1)]);

    // What the claim got is what the rows say: leased to the stream under the lease it was given.
    let handed = &deliveries_of(&server, &second.id).await[0];
    assert_eq!(handed.status, DeliveryStatus::Sending);
    assert_eq!(handed.lease_owner.as_deref(), Some("dst_test"));
    assert_eq!(
        handed.lease_id.as_deref(),
        Some(claimed.leased[1].lease_id.as_str())
    );
    assert_eq!(handed.id, claimed.leased[1].delivery_id);
    assert_eq!(
        deliveries_of(&server, &third.id).await[0].status,
        DeliveryStatus::Pending
    );

    // The webhook's cap counts handed-over deliveries too: at 2 leases and a cap of 2, a new event's
    // delivery stays pending however much room the claim has.
    let fourth = new_event("default", "application.submitted", "{}", None);
    let capped = WriteRules {
        caps: LeaseCaps {
            per_webhook: 2,
            ..CAPS
        },
        ..rules(&server)
    };
    let written = publish_beside_a_claim(&server, &fourth, &capped).await;
    let claimed = written.claimed[0].as_ref().expect("claimed");
    assert!(claimed.leased.is_empty(), "the webhook is at its cap");
    // Not more due: no read could lease it before a report frees the webhook's room, which the writer
    // knows from what the cycle left at its cap.
    assert!(!claimed.more_due);
    let held_back = &deliveries_of(&server, &fourth.id).await[0];
    assert_eq!(held_back.status, DeliveryStatus::Pending);
    let at_cap = written
        .at_cap
        .as_ref()
        .expect("the cycle counted the leases");
    assert!(at_cap.webhooks.contains(&held_back.webhook_id));
    let published = written.published[0].as_ref().expect("published");
    assert_eq!(
        published.deliveries_pending, 0,
        "behind a cap: no claim is told, the report that frees room will be"
    );
    server.stop().await;
}

/// One cycle of `reports` and a claim with room for ten, under `rules`: what the claim leased.
async fn report_and_claim(
    server: &TestServer,
    reports: Vec<AttemptReport>,
    rules: &WriteRules,
) -> Vec<LeasedDelivery> {
    let writes = Writes {
        events: Vec::new(),
        reports: reports.into_iter().map(Into::into).collect(),
        claims: vec![claim(10)],
    };
    let written = server
        .server
        .store
        .commit_writes(writes, rules, time::now_ms())
        .await;
    for recorded in &written.recorded {
        recorded.as_ref().expect("recorded");
    }
    written
        .claimed
        .into_iter()
        .next()
        .expect("one claim")
        .expect("claimed")
        .leased
}

/// The lease counts a cycle goes by follow the leases and reports of the cycles before it (SQLite's writer
/// keeps them from one cycle to the next), and leases a stream's end returns outside the cycles are counted
/// again.
async fn the_lease_counts_follow_the_cycles_and_a_stream_that_ends(backend: Backend) {
    let server = start_with_pending(backend, 4).await;
    let capped = capped_per_webhook(&server, 2);

    let first = report_and_claim(&server, Vec::new(), &capped).await;
    assert_eq!(first.len(), 2, "the webhook's cap");
    // The report ends one lease: one more goes out, no more.
    let report = ok_report(&first[0].delivery_id, &first[0].lease_id);
    let second = report_and_claim(&server, vec![report], &capped).await;
    assert_eq!(second.len(), 1, "one lease ended, one taken");
    let third = report_and_claim(&server, Vec::new(), &capped).await;
    assert!(third.is_empty(), "two leases out again: {third:?}");

    // The stream ends: its two leases return to pending outside the cycles, and the next claim takes both.
    let returned = server
        .server
        .store
        .release_leases("dst_test")
        .await
        .expect("release");
    assert_eq!(returned, 2);
    let after = report_and_claim(&server, Vec::new(), &capped).await;
    assert_eq!(after.len(), 2, "no lease out: the cap's room is whole");
    server.stop().await;
}

/// SQLite's writer connection is busy while a stream ends and a cycle waits for it after: the cycle goes by
/// counts taken once the connection is its own, so it finds the stream's leases returned and leases the
/// webhook's deliveries again (counts taken before the wait still held them: the webhook looked at its cap).
/// SQLite only: PostgreSQL counts the leases in every cycle, and its writers do not queue for one connection.
#[tokio::test]
async fn a_cycle_goes_by_the_counts_of_its_turn_at_the_writer() {
    use sea_orm::TransactionTrait;

    let server = start_with_pending(Backend::Sqlite, 2).await;
    let capped = capped_per_webhook(&server, 2);
    let leased = report_and_claim(&server, Vec::new(), &capped).await;
    assert_eq!(leased.len(), 2, "the webhook at its cap");

    let (returned, leased) = {
        let store = &server.server.store;
        let busy = store.writer().begin().await.expect("the writer connection");
        // Each polled once: queued for the connection, the stream's end first.
        let mut release = std::pin::pin!(store.release_leases("dst_test"));
        assert!(futures::poll!(release.as_mut()).is_pending());
        let mut cycle = std::pin::pin!(report_and_claim(&server, Vec::new(), &capped));
        assert!(futures::poll!(cycle.as_mut()).is_pending());
        busy.commit().await.expect("commit");
        tokio::join!(release, cycle)
    };
    assert_eq!(returned.expect("release"), 2);
    assert_eq!(
        leased.len(),
        2,
        "the stream's leases returned before the cycle's turn"
    );
    server.stop().await;
}

/// Two streams' claims in one cycle: the second goes by the counts the first left (its leases in), on either
/// database, and the cycle commits as one (a cycle committed kind by kind would not say what it left at
/// cap).
async fn two_claims_of_one_cycle_share_the_counts(backend: Backend) {
    let server = start_with_pending(backend, 3).await;
    let capped = capped_per_webhook(&server, 2);
    let writes = Writes {
        events: Vec::new(),
        reports: Vec::new(),
        claims: vec![Claim::new("dst_first", 1), Claim::new("dst_second", 10)],
    };
    let written = server
        .server
        .store
        .commit_writes(writes, &capped, time::now_ms())
        .await;
    let leased: Vec<usize> = written
        .claimed
        .iter()
        .map(|claimed| claimed.as_ref().expect("claimed").leased.len())
        .collect();
    assert_eq!(
        leased,
        [1, 1],
        "the webhook's cap of 2 is shared by both claims"
    );
    let at_cap = written
        .at_cap
        .expect("committed as one cycle, which counted the leases");
    assert_eq!(at_cap.webhooks.len(), 1);
    server.stop().await;
}

/// An account whose webhooks together hold its share of leases is left out of the due range, however old its
/// deliveries, and its new deliveries are not handed off; another account's are leased.
async fn an_account_at_its_lease_cap_is_passed_over(backend: Backend) {
    let server = start_with_a_webhook(backend).await;
    for _ in 0..2 {
        server
            .create_webhook("http://127.0.0.1:9/", &["application.*"])
            .await;
    }
    let other = server
        .key(kit_webhooks_server::core::Role::Admin, Some("other"))
        .await;
    server
        .create_webhook_as(&other, "http://127.0.0.1:9/", &["application.*"])
        .await;
    // Six deliveries of `default` (two events to three webhooks), then one of `other`.
    for _ in 0..2 {
        server.publish("application.submitted", "{}").await;
    }
    server
        .publish_to("other", "application.submitted", "{}")
        .await;
    let caps = LeaseCaps {
        per_webhook: 100,
        per_account: 2,
    };
    let store = &server.server.store;
    let accounts_of = |claimed: &[LeasedDelivery]| {
        let mut accounts: Vec<String> =
            claimed.iter().map(|l| l.event.account_id.clone()).collect();
        accounts.sort();
        accounts
    };

    // Room for ten: `default` gets its two, `other` its one.
    let now = time::now_ms();
    let claimed = store
        .claim_due("dst_test", 10, caps, now, now + 60_000)
        .await
        .expect("claim");
    assert_eq!(
        accounts_of(&claimed.leased),
        ["default", "default", "other"]
    );
    assert!(
        !claimed.more_due,
        "only the capped account's deliveries remain, for a report to free its room"
    );

    // Room for one, with `default`'s four older deliveries at the head of the due range: the claim reads
    // past them, to `other`'s new one.
    server
        .publish_to("other", "application.submitted", "{}")
        .await;
    let now = time::now_ms();
    let claimed = store
        .claim_due("dst_test", 1, caps, now, now + 60_000)
        .await
        .expect("claim");
    assert_eq!(accounts_of(&claimed.leased), ["other"]);
    // The metrics count what is at its cap by the same rule: both accounts; or, with one lease a webhook's
    // cap, the three webhooks holding leases (two of `default`'s, one each, and `other`'s, two).
    assert_eq!(store.count_at_lease_cap(caps).await.expect("count"), (0, 2));
    let one_each = LeaseCaps {
        per_webhook: 1,
        per_account: 100,
    };
    assert_eq!(
        store.count_at_lease_cap(one_each).await.expect("count"),
        (3, 0)
    );

    // A cycle's new deliveries of an account at its cap stay pending, whatever room the claim has.
    let fresh = new_event("default", "application.submitted", "{}", None);
    let capped = WriteRules {
        caps,
        ..rules(&server)
    };
    let written = publish_beside_a_claim(&server, &fresh, &capped).await;
    let claimed = written.claimed[0].as_ref().expect("claimed");
    assert!(claimed.leased.is_empty(), "both accounts are at their cap");
    assert!(!claimed.more_due);
    let at_cap = written
        .at_cap
        .as_ref()
        .expect("the cycle counted the leases");
    let mut accounts: Vec<&String> = at_cap.accounts.iter().collect();
    accounts.sort();
    assert_eq!(accounts, ["default", "other"]);
    let statuses: Vec<DeliveryStatus> = deliveries_of(&server, &fresh.id)
        .await
        .into_iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(statuses, [DeliveryStatus::Pending; 3]);
    server.stop().await;
}

async fn a_standing_claim_waits_for_the_next_publish(backend: Backend) {
    let server = start_with_a_webhook(backend).await;
    let metrics = kit_webhooks_server::metrics::Metrics::register();
    let writer = Writer::spawn(server.server.store.clone(), rules(&server), metrics.writer);
    let quiet = std::time::Duration::from_millis(300);

    // Nothing is due: the claim is parked, not answered.
    let mut standing = writer.standing_claim(claim(10)).await;
    assert!(
        tokio::time::timeout(quiet, standing.answer())
            .await
            .is_err(),
        "a claim that finds nothing due waits"
    );

    // The next publish hands it its delivery, in the publishing cycle: nothing is left pending.
    let event = new_event("default", "application.submitted", "{}", None);
    let published = writer.publish(event.clone()).await.expect("published");
    assert_eq!(
        (published.deliveries_queued, published.deliveries_pending),
        (1, 0)
    );
    let answer = tokio::time::timeout(quiet, standing.answer())
        .await
        .expect("answered by the publish")
        .expect("claimed");
    let claimed = answer.claimed;
    assert_eq!(claimed.leased.len(), 1);
    assert_eq!(claimed.leased[0].event_id, event.id);
    assert_eq!(
        status_of(&server, &claimed.leased[0].delivery_id).await,
        DeliveryStatus::Sending
    );

    // Answered with room to spare, the claim is parked again at once: the next publish hands it its delivery
    // too, without the stream asking again.
    assert!(answer.parked_again, "parked again with 9 of its 10 left");
    let next = new_event("default", "application.submitted", "{}", None);
    let published = writer.publish(next.clone()).await.expect("published");
    assert_eq!(published.deliveries_pending, 0);
    let again = tokio::time::timeout(quiet, standing.answer())
        .await
        .expect("answered by the second publish")
        .expect("claimed");
    assert_eq!(again.claimed.leased.len(), 1);
    assert_eq!(again.claimed.leased[0].event_id, next.id);
    // Taken back with an answer it has not read: the answer comes with it, so no lease is lost on the way.
    let third = new_event("default", "application.submitted", "{}", None);
    let published = writer.publish(third.clone()).await.expect("published");
    assert_eq!(published.deliveries_pending, 0);
    let unread = standing
        .withdraw()
        .await
        .expect("answered before it was taken back")
        .expect("claimed");
    assert_eq!(unread.leased.len(), 1);
    assert_eq!(unread.leased[0].event_id, third.id);

    // A parked claim taken back gets nothing, and the next publish leaves its delivery pending.
    let parked = writer.park_claim(claim(10));
    assert!(parked.withdraw().await.is_none(), "it was still parked");
    let published = writer
        .publish(new_event("default", "application.submitted", "{}", None))
        .await
        .expect("published");
    assert_eq!(published.deliveries_pending, 1);

    // A standing claim that finds something due is answered at once.
    let standing = writer.standing_claim(claim(10)).await;
    let answer = standing.withdraw().await;
    let leased = answer.map(|a| a.expect("claimed").leased.len());
    assert_eq!(
        leased,
        Some(1),
        "the pending delivery, leased by the claim's cycle"
    );
    server.stop().await;
}

/// A cycle's writes are all or nothing. On SQLite a cycle sends its writes late, with the statement after them
/// or its commit, so there the duplicate below fails the commit; the connection, rolled back, serves the next
/// cycle.
async fn a_failed_cycle_leaves_nothing_and_the_next_one_commits(backend: Backend) {
    let server = TestServer::start(backend).await;
    let store = &server.server.store;
    let first = new_event("default", "application.submitted", "{}", None);
    let insert = |event: &kit_webhooks_server::store::entity::event::Model| {
        let mut batch = Batch::new(store.backend());
        batch.insert_rows([event.clone().into_active_model()]);
        batch
    };

    let failed = {
        let cycle = WriteTxn::begin(store.writer()).await.expect("begin");
        cycle.write(insert(&first)).await.expect("the first insert");
        // The same id again: PostgreSQL refuses it now, SQLite at the commit.
        match cycle.write(insert(&first)).await {
            Err(err) => Err(err),
            Ok(()) => cycle.commit().await,
        }
        // Dropped here if not committed, as the writer drops a cycle that failed.
    };
    assert!(failed.is_err(), "a duplicate key must fail the cycle");
    assert!(
        store
            .find_event(None, &first.id)
            .await
            .expect("read")
            .is_none(),
        "the failed cycle's first insert was rolled back"
    );

    let second = new_event("default", "application.submitted", "{}", None);
    let cycle = WriteTxn::begin(store.writer()).await.expect("begin again");
    cycle.write(insert(&second)).await.expect("insert");
    cycle.commit().await.expect("commit");
    assert!(store
        .find_event(None, &second.id)
        .await
        .expect("read")
        .is_some());
    server.stop().await;
}
