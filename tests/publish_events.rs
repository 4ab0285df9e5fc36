//! `PublishEvents`: a publisher with many events sends them in one call, and each is validated, deduplicated
//! and answered on its own, exactly as `PublishEvent` would; every event answered OK is stored, with its
//! deliveries, when the call returns. A real server and receiver, on SQLite and PostgreSQL.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::Duration;

use common::{
    authed, fast_delivery,
    receiver::{always, Receiver, Reply},
    Backend, TestServer,
};
use kit_webhooks::proto;
use tonic::Code;

on_both_databases!(
    each_event_of_a_call_is_answered_as_a_publish_would_be,
    a_call_is_refused_whole_only_for_what_concerns_the_call
);

const WAIT: Duration = Duration::from_secs(20);

fn event(account: &str, event_type: &str, data: &str, key: &str) -> proto::PublishEventRequest {
    proto::PublishEventRequest {
        account_id: account.into(),
        r#type: event_type.into(),
        data_json: data.into(),
        idempotency_key: key.into(),
    }
}

async fn publish_events(
    server: &TestServer,
    key: &str,
    events: Vec<proto::PublishEventRequest>,
) -> Result<Vec<proto::PublishEventResult>, tonic::Status> {
    server
        .events()
        .await
        .publish_events(authed(key, proto::PublishEventsRequest { events }))
        .await
        .map(|reply| reply.into_inner().results)
}

async fn each_event_of_a_call_is_answered_as_a_publish_would_be(backend: Backend) {
    let receiver = Receiver::http(always(Reply::ok())).await;
    let server = TestServer::start_with(backend, |config| fast_delivery(config, None)).await;
    server
        .create_webhook(&receiver.url("/"), &["offer.*"])
        .await;
    let first = server
        .publish_keyed("default", "offer.accepted", r#"{"n":0}"#, "k1")
        .await
        .expect("publish");
    let first_id = first.event.expect("event").id;

    let results = publish_events(
        &server,
        &server.publisher_key,
        vec![
            event("default", "offer.accepted", r#"{"n":1}"#, ""),
            event("default", "offer.nope", r#"{"n":2}"#, ""),
            // The key of the single publish, the same request: its event, nothing queued.
            event("default", "offer.accepted", r#"{"n":0}"#, "k1"),
            // The same key with other data.
            event("default", "offer.accepted", r#"{"n":3}"#, "k1"),
            event("default", "offer.accepted", r#"{"n":4}"#, "k2"),
            // A key repeated within the call answers with its first event.
            event("default", "offer.accepted", r#"{"n":4}"#, "k2"),
            event("", "offer.accepted", r#"{"n":6}"#, ""),
            event("default", "offer.accepted", "[1]", ""),
        ],
    )
    .await
    .expect("the call");
    assert_eq!(results.len(), 8);
    let code = |n: usize| Code::from(results[n].code);
    let published = |n: usize| results[n].published.clone().expect("published");
    let id = |n: usize| published(n).event.expect("event").id;
    assert_eq!(code(0), Code::Ok);
    assert_eq!(published(0).deliveries_queued, 1);
    assert_eq!(code(1), Code::InvalidArgument);
    assert!(
        results[1].message.starts_with("events[1].type:"),
        "{}",
        results[1].message
    );
    assert!(results[1].published.is_none());
    assert_eq!((code(2), id(2)), (Code::Ok, first_id.clone()));
    assert_eq!(published(2).deliveries_queued, 0);
    assert_eq!(code(3), Code::AlreadyExists, "{}", results[3].message);
    assert!(results[3].message.contains("k1"), "{}", results[3].message);
    assert_eq!((code(4), published(4).deliveries_queued), (Code::Ok, 1));
    assert_eq!((code(5), id(5)), (Code::Ok, id(4)));
    assert_eq!(published(5).deliveries_queued, 0);
    assert_eq!(code(6), Code::InvalidArgument);
    assert!(
        results[6].message.starts_with("events[6].account_id:"),
        "{}",
        results[6].message
    );
    assert_eq!(code(7), Code::InvalidArgument);
    assert!(
        results[7].message.starts_with("events[7].data_json:"),
        "{}",
        results[7].message
    );

    // Stored when the call returned: the account's events are the three new ones, each read back.
    let listed = server.events_of("default").await;
    let mut listed: Vec<String> = listed.into_iter().map(|e| e.id).collect();
    listed.sort();
    let mut expected = vec![first_id, id(0), id(4)];
    expected.sort();
    assert_eq!(listed, expected);
    // And delivered: one request per new event, each carrying its own data.
    let received = receiver.wait_for(3, WAIT).await;
    let mut bodies: Vec<String> = received
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies.len(), 3);
    for n in [0, 1, 4] {
        assert!(
            bodies
                .iter()
                .any(|body| body.contains(&format!(r#""n":{n}"#))),
            "event {n} was not delivered: {bodies:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 3, "nothing else was delivered");
    server.stop().await;
}

async fn a_call_is_refused_whole_only_for_what_concerns_the_call(backend: Backend) {
    let server = TestServer::start(backend).await;
    let refused = |result: Result<Vec<proto::PublishEventResult>, tonic::Status>| {
        result.expect_err("refused as a whole")
    };

    let empty = refused(publish_events(&server, &server.publisher_key, vec![]).await);
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(
        empty.message().starts_with("events:"),
        "{}",
        empty.message()
    );

    let many = vec![event("default", "offer.accepted", "{}", ""); 1001];
    let many = refused(publish_events(&server, &server.publisher_key, many).await);
    assert_eq!(many.code(), Code::InvalidArgument);
    assert!(
        many.message().contains("1001") && many.message().contains("1000"),
        "{}",
        many.message()
    );

    // In all no more bytes than one publish may carry: 300 events of 1 KiB are more than 256 KiB.
    let data = format!(r#"{{"notes":"{}"}}"#, "x".repeat(1000));
    let large = vec![event("default", "offer.accepted", &data, ""); 300];
    let large = refused(publish_events(&server, &server.publisher_key, large).await);
    assert_eq!(large.code(), Code::InvalidArgument);
    assert!(
        large.message().starts_with("events:"),
        "{}",
        large.message()
    );

    let admin = refused(
        publish_events(
            &server,
            &server.admin_key,
            vec![event("default", "offer.accepted", "{}", "")],
        )
        .await,
    );
    assert_eq!(admin.code(), Code::PermissionDenied);

    // Nothing of the refused calls was stored.
    let listed = server
        .events()
        .await
        .list_events(authed(
            &server.publisher_key,
            proto::ListEventsRequest::default(),
        ))
        .await
        .expect("list")
        .into_inner()
        .events;
    assert!(listed.is_empty(), "{listed:?}");
    server.stop().await;
}
