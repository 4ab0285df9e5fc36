//! Operational events: a webhook disabled (a `410 Gone`, or failing past the threshold) makes a
//! `webhook.disabled` event for its account, delivered to the account's other webhooks that subscribe to
//! it (never to the disabled one, nor to another account, nor to a webhook that does not subscribe); resuming
//! it makes a `webhook.enabled` one. Publishers cannot publish either. On both databases.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::Duration;

use common::{
    assert_status, authed, fast_delivery,
    receiver::{always, Receiver, Reply},
    Backend, TestServer,
};
use kit_webhooks::proto;
use tonic::Code;

on_both_databases!(the_account_hears_when_a_webhook_is_disabled_and_enabled);

const WAIT: Duration = Duration::from_secs(30);

async fn the_account_hears_when_a_webhook_is_disabled_and_enabled(backend: Backend) {
    // Gone at first, back after.
    let gone = Receiver::http(std::sync::Arc::new(
        |_: &common::receiver::Received, n: usize| match n {
            0 => Reply::status(410),
            _ => Reply::ok(),
        },
    ))
    .await;
    let receiver = Receiver::http(always(Reply::ok())).await;
    let server = TestServer::start_with(backend, |config| fast_delivery(config, None)).await;
    // The one that will go, subscribed to operational events itself; one listening to the whole category;
    // one to the single type; one to other events; and one of another account, listening too.
    let (doomed, _) = server
        .create_webhook(&gone.url("/doomed"), &["offer.*", "operational.*"])
        .await;
    let (_, ops_secret) = server
        .create_webhook(&receiver.url("/ops"), &["operational.*"])
        .await;
    server
        .create_webhook(&receiver.url("/disabled-only"), &["webhook.disabled"])
        .await;
    server
        .create_webhook(&receiver.url("/offers"), &["job_posting.*"])
        .await;
    let other_key = server
        .key(kit_webhooks_server::core::Role::Admin, Some("other"))
        .await;
    server
        .create_webhook_as(
            &other_key,
            &receiver.url("/other-account"),
            &["operational.*"],
        )
        .await;

    // The 410 disables the first webhook; the account hears of it.
    server.publish("offer.accepted", "{}").await;
    let heard = receiver.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard_paths: Vec<_> = receiver.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(heard.len(), 2, "{heard_paths:?}");
    let mut paths: Vec<_> = heard.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/disabled-only", "/ops"]);
    assert_eq!(
        gone.requests().len(),
        1,
        "the disabled one never hears of itself"
    );
    let ops_request = heard.iter().find(|r| r.path == "/ops").expect("ops");
    ops_request.verify(&ops_secret).expect("signed");
    let body: serde_json::Value = serde_json::from_slice(&ops_request.body).expect("JSON");
    assert_eq!(body["type"], "webhook.disabled");
    let data = &body["data"];
    assert_eq!(data["webhook_id"], doomed.id.as_str());
    assert_eq!(data["url"], gone.url("/doomed").as_str());
    assert_eq!(data["reason"], "gone");
    assert_eq!(data["message"], "the endpoint answered 410 Gone");
    assert_eq!(data["failure_count"], 1);
    let failures = data["last_failures"].as_array().expect("last_failures");
    assert_eq!(failures.len(), 1, "{data}");
    assert_eq!(failures[0]["response_status"], 410);
    assert_eq!(failures[0]["event_type"], "offer.accepted");
    kit_webhooks_server::core::payload::check("webhook.disabled", &data.to_string())
        .expect("the documented shape");
    let doomed_now = server.get_webhook(&doomed.id).await;
    assert_eq!(doomed_now.status(), proto::WebhookStatus::Disabled);

    // Resumed: `webhook.enabled` goes to the webhooks subscribed to it, the resumed one included (beside the
    // retry of the delivery the 410 left held).
    server.resume(&doomed.id).await;
    let at_doomed = gone.wait_for(3, WAIT).await;
    let at_ops = receiver.wait_for(3, WAIT).await;
    let bodies: Vec<serde_json::Value> = at_doomed
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect();
    let types: Vec<_> = bodies
        .iter()
        .map(|b| b["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(types[0], "offer.accepted");
    assert!(types.contains(&"webhook.enabled"), "{types:?}");
    let body = bodies
        .iter()
        .find(|b| b["type"] == "webhook.enabled")
        .expect("enabled");
    assert_eq!(body["data"]["webhook_id"], doomed.id.as_str());
    assert_eq!(
        body["data"]["was_disabled_because"],
        "the endpoint answered 410 Gone"
    );
    let third: serde_json::Value = serde_json::from_slice(&at_ops[2].body).expect("JSON");
    assert_eq!(third["type"], "webhook.enabled");
    assert_eq!(at_ops[2].path, "/ops");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.requests().len(),
        3,
        "nothing else, nothing to the other account"
    );

    // Operational events are Kit Webhooks' own: a publisher cannot publish them.
    let mut events = server.events().await;
    assert_status(
        events
            .publish_event(authed(
                &server.publisher_key,
                proto::PublishEventRequest {
                    account_id: "default".into(),
                    r#type: "webhook.disabled".into(),
                    data_json: "{}".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "sent by Kit Webhooks itself",
    );
    server.stop().await;
}
