//! The audit log (README, "Secrets, keys and the audit log"): an entry for each admin change, with the key
//! that made it and the changed fields, never a secret; none for a change that was refused; read newest
//! first by target and time window, through gRPC and the CLI; one account never sees another's; pruned
//! after `--audit-retention`. On both databases.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::Duration;

use common::{
    assert_status, authed, fast_delivery,
    receiver::{always, Receiver, Reply},
    Backend, TestServer,
};
use kit_webhooks::proto::{self, audit_service_client::AuditServiceClient};
use kit_webhooks_server::core::Role;
use tonic::Code;

on_both_databases!(
    every_admin_change_is_recorded_without_secrets,
    old_entries_go_after_the_audit_retention,
);

const WAIT: Duration = Duration::from_secs(30);

/// Every entry of `key`'s account matching `request`, following pages of `page_size`.
async fn entries(
    server: &TestServer,
    key: &str,
    request: proto::ListAuditEntriesRequest,
) -> Vec<proto::AuditEntry> {
    let mut client = AuditServiceClient::connect(server.server.url())
        .await
        .expect("connect");
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_audit_entries(authed(
                key,
                proto::ListAuditEntriesRequest {
                    page_token,
                    ..request.clone()
                },
            ))
            .await
            .expect("list audit entries")
            .into_inner();
        all.extend(page.entries);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

async fn every_admin_change_is_recorded_without_secrets(backend: Backend) {
    // Answers 500 to the first request (so that a delivery fails and can be replayed), then 200.
    let receiver = Receiver::http(always(Reply::status(500))).await;
    let server = TestServer::start_with(backend, |config| {
        fast_delivery(config, None);
        config.retry.schedule = Vec::new();
    })
    .await;
    let admin = &server.admin_key;
    let admin_id = &admin["kwk_live_".len().."kwk_live_".len() + 30];
    let mut client = server.webhooks().await;
    let mut secrets = Vec::new();

    let (hook, secret) = server
        .create_webhook(&receiver.url("/"), &["interview.*"])
        .await;
    secrets.push(secret);
    let id = || hook.id.clone();
    client
        .update_webhook(authed(
            admin,
            proto::UpdateWebhookRequest {
                id: id(),
                description: "ATS hooks".into(),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["description".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("update");
    let rotated = client
        .rotate_secret(authed(
            admin,
            proto::RotateSecretRequest {
                id: id(),
                grace_period_seconds: Some(3600),
            },
        ))
        .await
        .expect("rotate")
        .into_inner();
    secrets.push(rotated.secret);
    // Refused changes record nothing: a second rotation during the grace, an unknown field.
    assert_status(
        client
            .rotate_secret(authed(
                admin,
                proto::RotateSecretRequest {
                    id: id(),
                    grace_period_seconds: Some(60),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "still accepted",
    );
    assert!(client
        .update_webhook(authed(
            admin,
            proto::UpdateWebhookRequest {
                id: id(),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["secret".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .is_err());
    let revealed = client
        .get_webhook_secret(authed(admin, proto::GetWebhookSecretRequest { id: id() }))
        .await
        .expect("reveal")
        .into_inner()
        .secret;
    secrets.push(revealed);
    // A delivery that fails once, retried, then replayed.
    server.publish("interview.scheduled", "{}").await;
    receiver.wait_for(1, WAIT).await;
    let queued = server.deliveries(&hook.id).await;
    let delivery = server
        .wait_delivery(&queued[0].id, WAIT, |d| {
            d.status == proto::DeliveryStatus::Failed as i32
        })
        .await;
    client
        .retry_delivery(authed(
            admin,
            proto::RetryDeliveryRequest {
                id: delivery.id.clone(),
            },
        ))
        .await
        .expect("retry");
    server
        .wait_delivery(&delivery.id, WAIT, |d| {
            d.status == proto::DeliveryStatus::Failed as i32 && d.attempt_count == 2
        })
        .await;
    client
        .replay_deliveries(authed(
            admin,
            proto::ReplayDeliveriesRequest {
                webhook_id: id(),
                since: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 0,
                }),
                until: None,
            },
        ))
        .await
        .expect("replay");
    client
        .pause_webhook(authed(admin, proto::PauseWebhookRequest { id: id() }))
        .await
        .expect("pause");
    client
        .resume_webhook(authed(admin, proto::ResumeWebhookRequest { id: id() }))
        .await
        .expect("resume");
    let mut keys = proto::api_key_service_client::ApiKeyServiceClient::connect(server.server.url())
        .await
        .expect("connect");
    let new_key = keys
        .create_api_key(authed(admin, proto::CreateApiKeyRequest::default()))
        .await
        .expect("create key")
        .into_inner();
    let new_key_id = new_key.api_key.expect("record").id;
    keys.revoke_api_key(authed(
        admin,
        proto::RevokeApiKeyRequest {
            id: new_key_id.clone(),
        },
    ))
    .await
    .expect("revoke key");
    client
        .delete_webhook(authed(admin, proto::DeleteWebhookRequest { id: id() }))
        .await
        .expect("delete");

    let all = entries(&server, admin, proto::ListAuditEntriesRequest::default()).await;
    let actions: Vec<(&str, &str)> = all
        .iter()
        .rev()
        .filter(|entry| entry.key_id != "cli")
        .map(|entry| (entry.action.as_str(), entry.target_id.as_str()))
        .collect();
    let hook_id = hook.id.as_str();
    assert_eq!(
        actions,
        [
            ("webhook.create", hook_id),
            ("webhook.update", hook_id),
            ("webhook.rotate_secret", hook_id),
            ("webhook.reveal_secret", hook_id),
            ("delivery.retry", delivery.id.as_str()),
            ("delivery.replay", hook_id),
            ("webhook.pause", hook_id),
            ("webhook.resume", hook_id),
            ("api_key.create", new_key_id.as_str()),
            ("api_key.revoke", new_key_id.as_str()),
            ("webhook.delete", hook_id),
        ],
        "{all:#?}"
    );
    // The first start's admin key made them all, at the time each happened, newest first.
    let mine: Vec<&proto::AuditEntry> = all.iter().filter(|e| e.key_id != "cli").collect();
    assert!(
        mine.iter().all(|entry| entry.key_id == admin_id),
        "{all:#?}"
    );
    let times: Vec<i64> = mine
        .iter()
        .map(|entry| entry.time.as_ref().expect("time").seconds)
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "{times:?}");
    // What changed, with the new values.
    let changes = |action: &str| -> serde_json::Value {
        let entry = all.iter().find(|e| e.action == action).expect(action);
        serde_json::from_str(&entry.changes_json).expect("a JSON object")
    };
    assert_eq!(
        changes("webhook.update"),
        serde_json::json!({"description": "ATS hooks"})
    );
    assert_eq!(changes("webhook.create")["url"], receiver.url("/"));
    assert_eq!(
        changes("webhook.create")["events"],
        serde_json::json!(["interview.*"])
    );
    assert_eq!(
        changes("webhook.pause"),
        serde_json::json!({"status": "paused"})
    );
    assert_eq!(changes("webhook.rotate_secret")["secret"], "(changed)");
    assert_eq!(changes("delivery.replay")["deliveries_requeued"], 1);
    assert_eq!(changes("webhook.delete")["deliveries_deleted"], 1);
    // No entry holds a secret or a key.
    let text = format!("{all:?}");
    for secret in &secrets {
        let encoded = secret.strip_prefix("whsec_").expect("whsec_");
        assert!(!text.contains(encoded), "a secret in the audit log");
    }
    assert!(!text.contains(&new_key.key) && !text.contains(admin.as_str()));

    // By target, and by time window.
    let about_delivery = entries(
        &server,
        admin,
        proto::ListAuditEntriesRequest {
            target_id: delivery.id.clone(),
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(about_delivery.len(), 1);
    assert_eq!(about_delivery[0].action, "delivery.retry");
    let last = mine[0].time;
    let since_last = entries(
        &server,
        admin,
        proto::ListAuditEntriesRequest {
            since: last,
            ..Default::default()
        },
    )
    .await;
    assert!(since_last.iter().any(|e| e.action == "webhook.delete"));
    assert!(since_last.len() < all.len());
    let until_first = entries(
        &server,
        admin,
        proto::ListAuditEntriesRequest {
            until: mine.last().and_then(|e| e.time),
            ..Default::default()
        },
    )
    .await;
    assert!(until_first.iter().all(|e| e.action != "webhook.delete"));
    // Page after page, the same entries as in one go.
    let paged = entries(
        &server,
        admin,
        proto::ListAuditEntriesRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(paged, all);

    // Another account sees none of it: only its own key's creation (by the command line).
    let other = server.key(Role::Admin, Some("other")).await;
    let theirs = entries(&server, &other, Default::default()).await;
    assert_eq!(theirs.len(), 1, "{theirs:#?}");
    assert_eq!(
        (theirs[0].action.as_str(), theirs[0].key_id.as_str()),
        ("api_key.create", "cli")
    );
    assert_eq!(
        theirs[0].target_id,
        other["kwk_live_".len().."kwk_live_".len() + 30]
    );
    // A publisher key reads no audit log.
    let mut audit = AuditServiceClient::connect(server.server.url())
        .await
        .expect("connect");
    assert_status(
        audit
            .list_audit_entries(authed(&server.publisher_key, Default::default()))
            .await,
        Code::PermissionDenied,
        "admin",
    );

    // The CLI shows the same, as JSON for scripts.
    let output = std::process::Command::new(common::workspace_bin("kit-webhooks"))
        .args(["--server", &server.server.url(), "--token", admin])
        .args(["-o", "json", "audit", "list", "--target", hook_id])
        .output()
        .expect("run kit-webhooks audit list");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(listed.len(), 8, "{listed:#?}");
    assert_eq!(listed[0]["action"], "webhook.delete");
    assert_eq!(listed[0]["key_id"], admin_id);
    server.stop().await;
}

async fn old_entries_go_after_the_audit_retention(backend: Backend) {
    let mut server = TestServer::start_without_daemon(backend).await;
    let admin = server.admin_key.clone();
    server
        .create_webhook("https://example.com/hooks", &["interview.*"])
        .await;
    // The first start's admin key, and the webhook.
    assert_eq!(entries(&server, &admin, Default::default()).await.len(), 2);
    // A restart with a retention shorter than the entry's age prunes it at once.
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.config.audit_retention = Duration::from_millis(10);
    let server = server.restart().await;
    let deadline = std::time::Instant::now() + WAIT;
    while !entries(&server, &admin, Default::default())
        .await
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The webhook itself stays.
    let webhooks = server
        .webhooks()
        .await
        .list_webhooks(authed(&admin, proto::ListWebhooksRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .webhooks;
    assert_eq!(webhooks.len(), 1);
    server.stop().await;
}
