//! A webhook's own headers (README, The CLI: `--header`): sent with every request as given, refused when they
//! would clash with the system's or break HTTP, shown masked on the webhook and in each attempt, stored
//! sealed, replaced and removed by `UpdateWebhook` and the CLI. On both databases.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::Duration;

use common::{
    assert_status, authed, fast_delivery,
    receiver::{always, Receiver, Reply},
    workspace_bin, Backend, TestServer,
};
use kit_webhooks::proto;
use kit_webhooks_server::store::entity::webhook;
use sea_orm::EntityTrait;
use tonic::Code;

on_both_databases!(custom_headers_are_sent_checked_and_masked);

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "Bearer gw-s3cr3t-token-9876";

fn header(name: &str, value: &str) -> proto::Header {
    proto::Header {
        name: name.into(),
        value: value.into(),
    }
}

async fn custom_headers_are_sent_checked_and_masked(backend: Backend) {
    let receiver = Receiver::http(always(Reply::ok())).await;
    let server = TestServer::start_with(backend, |config| fast_delivery(config, None)).await;
    let admin = &server.admin_key;
    let mut client = server.webhooks().await;
    let create = |headers: Vec<proto::Header>| {
        authed(
            admin,
            proto::CreateWebhookRequest {
                url: receiver.url("/"),
                events: vec!["interview.*".into()],
                headers,
                ..Default::default()
            },
        )
    };

    // Refused: what the system sets, what would break HTTP, too many, twice; nothing is created.
    let refusals = [
        (vec![header("Kit-Attempt", "9")], "set by Kit Webhooks"),
        (
            vec![header("webhook-signature", "v1,forged")],
            "set by Kit Webhooks",
        ),
        (
            vec![header("Content-Type", "text/plain")],
            "set by Kit Webhooks",
        ),
        (vec![header("Host", "evil.example")], "set by Kit Webhooks"),
        (vec![header("User-Agent", "me")], "set by Kit Webhooks"),
        (vec![header("X-A", "one\r\nX-Injected: 1")], "no CR or LF"),
        (vec![header("Bad Name", "x")], "not a header name"),
        (vec![header("X-A", "1"), header("x-a", "2")], "twice"),
        (
            (0..21).map(|i| header(&format!("x-{i}"), "v")).collect(),
            "at most 20",
        ),
    ];
    for (headers, needle) in refusals {
        let refused = client.create_webhook(create(headers)).await;
        assert_status(refused, Code::InvalidArgument, needle);
    }
    let listed = client
        .list_webhooks(authed(admin, proto::ListWebhooksRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .webhooks;
    assert!(listed.is_empty(), "a refused webhook was stored");

    let created = client
        .create_webhook(create(vec![
            header("Authorization", TOKEN),
            header("X-Tenant", "acme"),
        ]))
        .await
        .expect("create")
        .into_inner();
    let hook = created.webhook.expect("webhook");
    // Shown with the credential masked.
    let shown: Vec<(&str, &str)> = hook
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(shown, [("authorization", "****9876"), ("x-tenant", "acme")]);
    // Stored sealed.
    let row = webhook::Entity::find_by_id(hook.id.clone())
        .one(server.server.store.reader())
        .await
        .expect("read")
        .expect("row");
    assert!(row.headers.starts_with("sealed:v1:"), "{}", row.headers);
    assert!(!row.headers.contains("s3cr3t"));

    // Sent as given, beside a valid signature.
    server.publish("interview.scheduled", "{}").await;
    let received = receiver.wait_for(1, WAIT).await;
    assert_eq!(received[0].header("authorization"), TOKEN);
    assert_eq!(received[0].header("x-tenant"), "acme");
    received[0].verify(&created.secret).expect("signed");
    // The attempt shows them, masked.
    let delivery = server.deliveries(&hook.id).await.remove(0);
    let delivery = server
        .wait_delivery(&delivery.id, WAIT, |d| !d.attempts.is_empty())
        .await;
    let sent = &delivery.attempts[0].request_headers;
    assert_eq!(
        sent.get("authorization").map(String::as_str),
        Some("****9876")
    );
    assert_eq!(sent.get("x-tenant").map(String::as_str), Some("acme"));
    assert!(!format!("{delivery:?}").contains("s3cr3t"));

    // Replaced as a whole through UpdateWebhook; the next request carries the new set only.
    let updated = client
        .update_webhook(authed(
            admin,
            proto::UpdateWebhookRequest {
                id: hook.id.clone(),
                headers: vec![header("X-Api-Key", "key-0123456789abcdef")],
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["headers".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.headers.len(), 1);
    assert_eq!(updated.headers[0].value, "****cdef");
    server.publish("interview.scheduled", "{}").await;
    let received = receiver.wait_for(2, WAIT).await;
    assert_eq!(received[1].header("x-api-key"), "key-0123456789abcdef");
    assert!(!received[1].headers.contains_key("authorization"));
    assert!(!received[1].headers.contains_key("x-tenant"));

    // The CLI: `--header` replaces, `--no-headers` removes; JSON shows them masked.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(workspace_bin("kit-webhooks"))
            .args([
                "--server",
                &server.server.url(),
                "--token",
                admin,
                "-o",
                "json",
            ])
            .args(args)
            .output()
            .expect("run kit-webhooks");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("JSON")
    };
    let shown = cli(&[
        "webhooks",
        "update",
        &hook.id,
        "--header",
        "X-Session-Token: abcdefghijklmnop",
        "--header",
        "X-Region:eu",
    ]);
    assert_eq!(
        shown["headers"],
        serde_json::json!([
            {"name": "x-region", "value": "eu"},
            {"name": "x-session-token", "value": "****mnop"},
        ])
    );
    let shown = cli(&["webhooks", "update", &hook.id, "--no-headers"]);
    assert_eq!(shown["headers"], serde_json::json!([]));
    server.publish("interview.scheduled", "{}").await;
    let received = receiver.wait_for(3, WAIT).await;
    assert!(!received[2].headers.contains_key("x-region"));

    // The audit log says the headers changed, never what they hold.
    let entries = proto::audit_service_client::AuditServiceClient::connect(server.server.url())
        .await
        .expect("connect")
        .list_audit_entries(authed(
            admin,
            proto::ListAuditEntriesRequest {
                target_id: hook.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("audit")
        .into_inner()
        .entries;
    let text = format!("{entries:?}");
    assert!(text.contains(r#"\"headers\":\"(changed)\""#), "{text}");
    assert!(!text.contains("s3cr3t") && !text.contains("abcdefghijklmnop"));
    server.stop().await;
}
