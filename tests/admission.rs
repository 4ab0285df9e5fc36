//! Admission: a call without a known key is refused on its headers, before its body is read, and the request
//! bytes the server holds at once are bounded, so neither a keyless client nor a flood of large publishes can
//! exhaust its memory. (The full-scale figures: `server/tests/admission_load.rs`, docs/SECURITY.md.)

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;
#[path = "common/stalled.rs"]
mod stalled;

use std::time::Duration;

use common::{authed, Backend, TestServer};
use kit_webhooks::proto;
use tonic::Code;

/// Opens `n` stalled `PublishEvent` streams and returns, for each, the `grpc-status` it was answered with
/// while its body was still open (`None`: not answered within 5 s).
async fn answers_to_stalled_publishes(
    addr: std::net::SocketAddr,
    n: usize,
    authorization: Option<&str>,
) -> Vec<Option<String>> {
    let stalled = stalled::stalled_publishes(&addr.to_string(), n, authorization).await;
    let answered = stalled.responses.into_iter().map(|response| async move {
        match tokio::time::timeout(Duration::from_secs(5), response).await {
            Ok(Ok(response)) => Some(
                response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned(),
            ),
            Ok(Err(err)) => Some(format!("stream error: {err}")),
            Err(_) => None,
        }
    });
    futures::future::join_all(answered).await
}

async fn keyless_calls_are_refused_before_their_body(backend: Backend) {
    let server = TestServer::start_without_daemon(backend).await;
    let addr = server.server.addr;

    let statuses = answers_to_stalled_publishes(addr, 200, None).await;
    let unauthenticated = (Code::Unauthenticated as i32).to_string();
    assert!(
        statuses
            .iter()
            .all(|s| s.as_deref() == Some(unauthenticated.as_str())),
        "every keyless stream is answered UNAUTHENTICATED while its body is still open: {:?}",
        statuses
            .iter()
            .filter(|s| s.as_deref() != Some(unauthenticated.as_str()))
            .take(3)
            .collect::<Vec<_>>()
    );
    let statuses = answers_to_stalled_publishes(addr, 20, Some("Bearer kit_not_a_key")).await;
    assert!(
        statuses
            .iter()
            .all(|s| s.as_deref() == Some(unauthenticated.as_str())),
        "an unknown key is refused the same way: {statuses:?}"
    );

    // The server goes on serving a client with a key.
    let mut events = server.events().await;
    let published = tokio::time::timeout(
        Duration::from_secs(5),
        events.publish_event(authed(
            &server.publisher_key,
            proto::PublishEventRequest {
                account_id: "default".into(),
                r#type: "application.submitted".into(),
                data_json: r#"{"application_id":1}"#.into(),
                idempotency_key: String::new(),
            },
        )),
    )
    .await
    .expect("answered in time");
    assert!(published.is_ok(), "{published:?}");
    // Health checks stay open without a key.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health check without a key");
    server.stop().await;
}

async fn request_bytes_beyond_the_budget_are_refused(backend: Backend) {
    // A budget of four largest publishes: twenty at once cannot all be held.
    let server = TestServer::start_with(backend, |config| {
        config.embedded_daemon = None;
        config.max_bytes_in_flight = 4 * config.max_publish_message_bytes();
    })
    .await;
    let data_json = format!(r#"{{"blob":"{}"}}"#, "x".repeat(250 * 1024));
    let channel = server.channel().await;
    // The `i`th large publish, on its own client over the shared connection.
    let publish = |i: usize| {
        let mut events = proto::event_service_client::EventServiceClient::new(channel.clone());
        let request = authed(
            &server.publisher_key,
            proto::PublishEventRequest {
                account_id: "default".into(),
                r#type: "application.submitted".into(),
                data_json: data_json.clone(),
                idempotency_key: format!("big-{i}"),
            },
        );
        async move { events.publish_event(request).await.map(|_| ()) }
    };
    let calls = (0..20).map(&publish);
    let results = futures::future::join_all(calls).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(accepted >= 1, "some publishes fit in the budget");
    assert!(
        refused
            .iter()
            .all(|status| status.code() == Code::ResourceExhausted
                && status.message().contains("--max-bytes-in-flight")),
        "the others are refused RESOURCE_EXHAUSTED, naming the limit: {refused:?}"
    );
    assert!(
        !refused.is_empty(),
        "twenty largest publishes exceed a budget of four"
    );

    // Once they are answered, the whole budget is free again: the refused ones go through on retry.
    for i in 0..20 {
        publish(i).await.expect("one at a time, every publish fits");
    }
    server.stop().await;
}

on_both_databases!(
    keyless_calls_are_refused_before_their_body,
    request_bytes_beyond_the_budget_are_refused,
);
