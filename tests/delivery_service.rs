//! `DeliveryService` at the protocol level, as any daemon implementation sees it: leases go to one stream at
//! a time, are bound to their stream, and a report on a lease that has ended changes nothing.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::{collections::HashSet, time::Duration};

use common::{assert_status, authed, Backend, TestServer};
use kit_webhooks::proto::{self, delivery_service_client::DeliveryServiceClient, DeliveryStatus};
use kit_webhooks_server::{core::Role, store::entity::attempt};
use sea_orm::{EntityTrait, PaginatorTrait};
use tonic::{Code, Streaming};

on_both_databases!(
    each_delivery_goes_to_one_stream_and_returns_when_it_ends,
    reports_need_a_live_lease_and_valid_fields,
    an_attempts_request_headers_are_shown_completed_from_its_task,
    a_new_stream_takes_over_the_started_leases_and_returns_the_rest,
);

async fn open(
    server: &TestServer,
    key: &str,
    max_in_flight: u32,
) -> Streaming<proto::DeliveryTask> {
    DeliveryServiceClient::new(server.channel().await)
        .stream_deliveries(authed(
            key,
            proto::StreamDeliveriesRequest {
                daemon_id: "test".into(),
                max_in_flight,
                ..Default::default()
            },
        ))
        .await
        .expect("open stream")
        .into_inner()
}

/// A server without a daemon, a webhook (unreachable, never sent to) with `n` deliveries pending, and a daemon
/// key for the test to play the daemon with.
async fn with_pending(backend: Backend, n: usize) -> (TestServer, String) {
    let server = TestServer::start_without_daemon(backend).await;
    let daemon = server.key(Role::Daemon, None).await;
    server
        .create_webhook("http://127.0.0.1:9/", &["offer.*"])
        .await;
    for _ in 0..n {
        server.publish("offer.accepted", "{}").await;
    }
    (server, daemon)
}

async fn take(stream: &mut Streaming<proto::DeliveryTask>, n: usize) -> Vec<proto::DeliveryTask> {
    let mut tasks = Vec::new();
    while tasks.len() < n {
        let task = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a task in time")
            .expect("stream ok")
            .expect("stream open");
        tasks.push(task);
    }
    tasks
}

async fn each_delivery_goes_to_one_stream_and_returns_when_it_ends(backend: Backend) {
    let server = TestServer::start_without_daemon(backend).await;
    let daemon = server.key(Role::Daemon, None).await;
    let (hook, secret) = server
        .create_webhook("http://127.0.0.1:9/", &["offer.*"])
        .await;
    for _ in 0..6 {
        server.publish("offer.accepted", "{}").await;
    }
    let mut a = open(&server, &daemon, 3).await;
    let mut b = open(&server, &daemon, 3).await;
    let from_a = take(&mut a, 3).await;
    let from_b = take(&mut b, 3).await;
    let ids: HashSet<_> = from_a
        .iter()
        .chain(&from_b)
        .map(|t| t.delivery_id.clone())
        .collect();
    assert_eq!(ids.len(), 6, "six deliveries, each leased once");
    let task = &from_a[0];
    assert_eq!(task.webhook_id, hook.id);
    assert_eq!(task.url, "http://127.0.0.1:9/");
    assert_eq!(task.secrets, vec![secret]);
    assert_eq!(task.attempt_number, 1);
    assert!(task.lease_id.starts_with("lse_"));
    assert_eq!(task.timeout_ms, 15_000);
    assert_eq!(task.rate_limit_per_second, 100);
    let body: serde_json::Value = serde_json::from_slice(&task.body).expect("JSON body");
    assert_eq!(body["id"], task.event_id.as_str());
    // Full streams get nothing more while their tasks are unreported.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), a.message())
            .await
            .is_err()
    );

    let sending = server.get_delivery(&task.delivery_id).await;
    assert_eq!(sending.status(), DeliveryStatus::Sending);

    // Stream `a` ends: its three leases come back at once, with no attempt counted, and go to `b`'s successor.
    drop(a);
    drop(b);
    let mut c = open(&server, &daemon, 10).await;
    let again = take(&mut c, 6).await;
    let again_ids: HashSet<_> = again.iter().map(|t| t.delivery_id.clone()).collect();
    assert_eq!(again_ids, ids);
    assert!(
        again.iter().all(|t| t.attempt_number == 1),
        "a released lease is not a failed attempt"
    );
    server.stop().await;
}

/// A daemon whose server died reconnects: it names its previous stream and the one lease it is still
/// sending. That lease passes to its new stream (its report is recorded), and the others come back at once,
/// not when they expire.
async fn a_new_stream_takes_over_the_started_leases_and_returns_the_rest(backend: Backend) {
    use kit_webhooks_server::{
        core::{id, time},
        store::leases::LeaseCaps,
    };
    let (server, daemon) = with_pending(backend, 3).await;
    // The leases of a stream whose server died: nobody releases them, and they expire in an hour.
    let previous = id::new(id::Kind::Stream);
    let now = time::now_ms();
    let leased = server
        .server
        .store
        .claim_due(
            &previous,
            10,
            LeaseCaps {
                per_webhook: 100,
                per_account: 1_000,
            },
            now,
            now + 3_600_000,
        )
        .await
        .expect("claim")
        .leased;
    assert_eq!(leased.len(), 3);
    let started = &leased[0];

    let mut client = DeliveryServiceClient::new(server.channel().await);
    let request = |started: Vec<proto::StartedLease>| {
        authed(
            &daemon,
            proto::StreamDeliveriesRequest {
                daemon_id: "test".into(),
                max_in_flight: 10,
                previous_stream_id: previous.clone(),
                started,
            },
        )
    };
    assert_status(
        client
            .stream_deliveries(request(vec![proto::StartedLease {
                delivery_id: "dlv_nope".into(),
                lease_id: started.lease_id.clone(),
            }]))
            .await,
        Code::InvalidArgument,
        "started.delivery_id",
    );
    let response = client
        .stream_deliveries(request(vec![proto::StartedLease {
            delivery_id: started.delivery_id.clone(),
            lease_id: started.lease_id.clone(),
        }]))
        .await
        .expect("open stream");
    let name = response
        .metadata()
        .get("kit-stream-id")
        .and_then(|v| v.to_str().ok())
        .expect("the stream is named")
        .to_owned();
    assert!(name.starts_with("dst_") && name != previous);
    let mut stream = response.into_inner();
    let again: HashSet<_> = take(&mut stream, 2)
        .await
        .into_iter()
        .map(|t| t.delivery_id)
        .collect();
    let returned: HashSet<_> = leased[1..].iter().map(|l| l.delivery_id.clone()).collect();
    assert_eq!(again, returned, "the leases not started came back at once");
    // A stream renews its leases only up to their maximum age: an older one is left to expire.
    let store = &server.server.store;
    let far = now + 7_200_000;
    assert_eq!(
        store
            .renew_leases(&name, far, now - 60_000)
            .await
            .expect("renew"),
        3
    );
    assert_eq!(
        store
            .renew_leases(&name, far, now + 60_000)
            .await
            .expect("renew"),
        0
    );
    client
        .report_delivery(authed(
            &daemon,
            proto::ReportDeliveryRequest {
                delivery_id: started.delivery_id.clone(),
                lease_id: started.lease_id.clone(),
                attempt_number: 1,
                response_status: 204,
                ..Default::default()
            },
        ))
        .await
        .expect("the started lease's report is recorded");
    assert_eq!(
        server.get_delivery(&started.delivery_id).await.status(),
        DeliveryStatus::Succeeded
    );
    server.stop().await;
}

async fn reports_need_a_live_lease_and_valid_fields(backend: Backend) {
    let (server, daemon) = with_pending(backend, 1).await;
    let mut client = DeliveryServiceClient::new(server.channel().await);
    let mut stream = open(&server, &daemon, 1).await;
    let task = take(&mut stream, 1).await.remove(0);
    let report = proto::ReportDeliveryRequest {
        delivery_id: task.delivery_id.clone(),
        lease_id: task.lease_id.clone(),
        attempt_number: 1,
        duration_ms: 12,
        response_status: 200,
        ..Default::default()
    };
    assert_status(
        client
            .report_delivery(authed(
                &daemon,
                proto::ReportDeliveryRequest {
                    lease_id: "nope".into(),
                    ..report.clone()
                },
            ))
            .await,
        Code::InvalidArgument,
        "lease_id",
    );
    assert_status(
        client
            .report_delivery(authed(
                &daemon,
                proto::ReportDeliveryRequest {
                    attempt_number: 2,
                    ..report.clone()
                },
            ))
            .await,
        Code::InvalidArgument,
        "attempt_number",
    );
    assert_status(
        client
            .report_delivery(authed(
                &daemon,
                proto::ReportDeliveryRequest {
                    lease_id: "lse_01JD0000000000000000000000".into(),
                    ..report.clone()
                },
            ))
            .await,
        Code::FailedPrecondition,
        "has ended",
    );
    assert_status(
        client
            .report_delivery(authed(&server.publisher_key, report.clone()))
            .await,
        Code::PermissionDenied,
        "daemon",
    );

    // The stream ends before the report: the report is refused and changes nothing.
    drop(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_status(
        client
            .report_delivery(authed(&daemon, report.clone()))
            .await,
        Code::FailedPrecondition,
        "has ended",
    );
    let delivery = server.get_delivery(&task.delivery_id).await;
    assert_eq!(delivery.status(), DeliveryStatus::Pending);
    assert_eq!(delivery.attempt_count, 0);
    assert_eq!(
        attempt::Entity::find()
            .count(server.server.store.reader())
            .await
            .expect("count"),
        0
    );

    // With the lease live, the report is recorded.
    let mut stream = open(&server, &daemon, 1).await;
    let task = take(&mut stream, 1).await.remove(0);
    client
        .report_delivery(authed(
            &daemon,
            proto::ReportDeliveryRequest {
                lease_id: task.lease_id.clone(),
                ..report.clone()
            },
        ))
        .await
        .expect("report");
    let delivery = server.get_delivery(&task.delivery_id).await;
    assert_eq!(delivery.status(), DeliveryStatus::Succeeded);
    assert_eq!(delivery.attempts.len(), 1);
    assert_eq!(delivery.attempts[0].duration_ms, 12);
    // The batch form answers each report on its own.
    server.publish("offer.accepted", "{}").await;
    let task = take(&mut stream, 1).await.remove(0);
    let batch = client
        .report_deliveries(authed(
            &daemon,
            proto::ReportDeliveriesRequest {
                reports: vec![
                    proto::ReportDeliveryRequest {
                        delivery_id: task.delivery_id.clone(),
                        lease_id: task.lease_id.clone(),
                        ..report.clone()
                    },
                    // Refused before the store, between two that reach it: each answer stays in its place.
                    proto::ReportDeliveryRequest {
                        delivery_id: "bogus".into(),
                        ..report.clone()
                    },
                    proto::ReportDeliveryRequest {
                        lease_id: "lse_01JD0000000000000000000000".into(),
                        ..report.clone()
                    },
                ],
            },
        ))
        .await
        .expect("report batch")
        .into_inner()
        .results;
    let codes: Vec<Code> = batch.iter().map(|r| Code::from(r.code)).collect();
    assert_eq!(
        codes,
        [Code::Ok, Code::InvalidArgument, Code::FailedPrecondition]
    );
    assert!(batch[1].message.contains("delivery_id"));
    assert!(batch[2].message.contains("has ended"));
    assert_eq!(
        server.get_delivery(&task.delivery_id).await.status(),
        DeliveryStatus::Succeeded
    );

    // A second report on the same lease is refused: the lease went with the first.
    assert_status(
        client
            .report_delivery(authed(
                &daemon,
                proto::ReportDeliveryRequest {
                    lease_id: task.lease_id.clone(),
                    ..report
                },
            ))
            .await,
        Code::FailedPrecondition,
        "has ended",
    );
    server.stop().await;
}

async fn an_attempts_request_headers_are_shown_completed_from_its_task(backend: Backend) {
    let (server, daemon) = with_pending(backend, 3).await;
    let mut client = DeliveryServiceClient::new(server.channel().await);
    let mut stream = open(&server, &daemon, 3).await;
    let tasks = take(&mut stream, 3).await;
    let report = |task: &proto::DeliveryTask| proto::ReportDeliveryRequest {
        delivery_id: task.delivery_id.clone(),
        lease_id: task.lease_id.clone(),
        attempt_number: 1,
        response_status: 200,
        ..Default::default()
    };
    let reports = vec![
        // Only what the task does not determine, as this project's daemon reports.
        proto::ReportDeliveryRequest {
            user_agent: "test-daemon/1".into(),
            signed_at: 1_700_000_000,
            signature: "v1,c2lnbmF0dXJl".into(),
            ..report(&tasks[0])
        },
        // Every header, as a daemon may: what it reported stands.
        proto::ReportDeliveryRequest {
            request_headers: [
                ("content-type", "application/json; charset=utf-8"),
                ("user-agent", "other-daemon"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..report(&tasks[1])
        },
        // No request made (it failed before one was built).
        proto::ReportDeliveryRequest {
            response_status: 0,
            error_kind: "signing".into(),
            error: "bad secret".into(),
            ..report(&tasks[2])
        },
    ];
    let results = client
        .report_deliveries(authed(&daemon, proto::ReportDeliveriesRequest { reports }))
        .await
        .expect("reports")
        .into_inner()
        .results;
    assert!(results.iter().all(|r| r.code == 0), "{results:?}");

    let shown = |delivery: proto::Delivery| -> Vec<(String, String)> {
        delivery.attempts[0]
            .request_headers
            .clone()
            .into_iter()
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let task = &tasks[0];
    assert_eq!(
        shown(server.get_delivery(&task.delivery_id).await),
        pairs(&[
            ("content-type", "application/json"),
            ("kit-attempt", "1"),
            ("kit-delivery-id", &task.delivery_id),
            ("kit-event-type", &task.event_type),
            ("user-agent", "test-daemon/1"),
            ("webhook-id", &task.event_id),
            ("webhook-signature", "v1,c2lnbmF0dXJl"),
            ("webhook-timestamp", "1700000000"),
        ])
    );
    let task = &tasks[1];
    assert_eq!(
        shown(server.get_delivery(&task.delivery_id).await),
        pairs(&[
            ("content-type", "application/json; charset=utf-8"),
            ("kit-attempt", "1"),
            ("kit-delivery-id", &task.delivery_id),
            ("kit-event-type", &task.event_type),
            ("user-agent", "other-daemon"),
            ("webhook-id", &task.event_id),
        ])
    );
    assert!(shown(server.get_delivery(&tasks[2].delivery_id).await).is_empty());
    server.stop().await;
}
