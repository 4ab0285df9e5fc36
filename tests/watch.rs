//! `WatchWebhooks` and `kit-webhooks webhooks watch`: an admin sees the account's webhook changes as they
//! happen (a pause, each delivery's attempt, a disable, a deletion) and nothing of another account's. On both
//! databases.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use common::{
    assert_status, authed, fast_delivery,
    receiver::{always, Receiver, Reply},
    workspace_bin, Backend, TestServer,
};
use futures::StreamExt;
use kit_webhooks::proto::{self, webhook_change::Change};
use tonic::Code;

on_both_databases!(a_watcher_sees_a_pause_a_delivery_and_a_disable);

const WAIT: Duration = Duration::from_secs(30);

async fn next_change(changes: &mut tonic::Streaming<proto::WebhookChange>) -> proto::WebhookChange {
    tokio::time::timeout(WAIT, changes.next())
        .await
        .expect("a change in time")
        .expect("the watch goes on")
        .expect("a change")
}

/// A watch, once it is open (its first message, which carries no change).
async fn opened(
    call: Result<tonic::Response<tonic::Streaming<proto::WebhookChange>>, tonic::Status>,
) -> tonic::Streaming<proto::WebhookChange> {
    let mut changes = call.expect("watch").into_inner();
    let first = next_change(&mut changes).await;
    assert_eq!(first.change, None, "{first:?}");
    assert!(first.at.is_some());
    changes
}

async fn a_watcher_sees_a_pause_a_delivery_and_a_disable(backend: Backend) {
    let ok = Receiver::http(always(Reply::ok())).await;
    let gone = Receiver::http(always(Reply::status(410))).await;
    let server = TestServer::start_with(backend, |config| fast_delivery(config, None)).await;
    let (hook, _) = server.create_webhook(&ok.url("/"), &["interview.*"]).await;
    let (doomed, _) = server.create_webhook(&gone.url("/"), &["offer.*"]).await;
    let other_key = server
        .key(kit_webhooks_server::core::Role::Admin, Some("other"))
        .await;

    // The CLI watches the whole account, as JSON lines; gRPC watchers see the account, and one webhook.
    let mut cli = Command::new(workspace_bin("kit-webhooks"))
        .args([
            "--server",
            &server.server.url(),
            "--token",
            &server.admin_key,
        ])
        .args(["-o", "json", "webhooks", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kit-webhooks webhooks watch");
    let (line_sender, cli_lines) = std::sync::mpsc::channel();
    let stdout = BufReader::new(cli.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = line_sender.send(line);
        }
    });
    // It says so on stderr once it watches: nothing after that is missed.
    let (said_sender, said) = std::sync::mpsc::channel();
    let mut stderr = BufReader::new(cli.stderr.take().expect("stderr"));
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = stderr.read_line(&mut line);
        let _ = said_sender.send(line);
    });
    let said = said.recv_timeout(WAIT).expect("the CLI says it watches");
    assert!(
        said.starts_with("watching the account's webhooks"),
        "{said}"
    );
    let mut webhooks = server.webhooks().await;
    let watch = |key: &str, webhook_id: &str| {
        authed(
            key,
            proto::WatchWebhooksRequest {
                webhook_id: webhook_id.into(),
            },
        )
    };
    let mut all = opened(webhooks.watch_webhooks(watch(&server.admin_key, "")).await).await;
    let mut one = opened(
        webhooks
            .watch_webhooks(watch(&server.admin_key, &doomed.id))
            .await,
    )
    .await;
    let mut other = opened(webhooks.watch_webhooks(watch(&other_key, "")).await).await;
    // Another account's webhook, or one that does not exist: not found.
    assert_status(
        webhooks
            .watch_webhooks(watch(&other_key, &hook.id))
            .await
            .map(|_| ()),
        Code::NotFound,
        "webhook",
    );
    // A pause.
    server.pause(&hook.id).await;
    let change = next_change(&mut all).await;
    let Some(Change::Webhook(paused)) = change.change else {
        panic!("{change:?}")
    };
    assert_eq!(paused.id, hook.id);
    assert_eq!(paused.status(), proto::WebhookStatus::Paused);
    assert!(change.at.is_some());
    // A watch reads a webhook's state as it sends the change: the CLI must have printed the pause before the
    // resume commits, or it prints the webhook as it then stands, active.
    let paused_line = cli_lines.recv_timeout(WAIT).expect("a line for the pause");
    server.resume(&hook.id).await;
    let change = next_change(&mut all).await;
    assert!(
        matches!(&change.change, Some(Change::Webhook(w)) if w.status() == proto::WebhookStatus::Active)
    );

    // A delivery and its attempt.
    server.publish("interview.scheduled", "{}").await;
    let change = next_change(&mut all).await;
    let Some(Change::Delivery(delivery)) = change.change else {
        panic!("{change:?}")
    };
    assert_eq!(delivery.webhook_id, hook.id);
    assert_eq!(delivery.status(), proto::DeliveryStatus::Succeeded);
    assert_eq!(delivery.attempts.len(), 1);
    assert_eq!(delivery.attempts[0].response_status, 200);

    // A disable: the 410's attempt, then the webhook, disabled, on both watches of it.
    server.publish("offer.accepted", "{}").await;
    for changes in [&mut all, &mut one] {
        let change = next_change(changes).await;
        let Some(Change::Delivery(delivery)) = change.change else {
            panic!("{change:?}")
        };
        assert_eq!(delivery.webhook_id, doomed.id);
        // Waiting for its retry, held while the webhook is disabled.
        assert_eq!(delivery.status(), proto::DeliveryStatus::Pending);
        assert_eq!(delivery.attempts[0].response_status, 410);
        let change = next_change(changes).await;
        let Some(Change::Webhook(disabled)) = change.change else {
            panic!("{change:?}")
        };
        assert_eq!(disabled.id, doomed.id);
        assert_eq!(disabled.status(), proto::WebhookStatus::Disabled);
        assert_eq!(disabled.disabled_reason, "the endpoint answered 410 Gone");
    }

    // A deletion.
    webhooks
        .delete_webhook(authed(
            &server.admin_key,
            proto::DeleteWebhookRequest {
                id: hook.id.clone(),
            },
        ))
        .await
        .expect("delete");
    let change = next_change(&mut all).await;
    assert_eq!(
        change.change,
        Some(Change::DeletedWebhookId(hook.id.clone()))
    );

    // Another account saw none of it.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.next())
            .await
            .is_err(),
        "another account's watch stays quiet"
    );

    // The CLI printed the same changes as they came, one JSON object per line.
    let lines: Vec<String> = std::iter::once(paused_line)
        .chain((0..3).map(|_| cli_lines.recv_timeout(WAIT).expect("a line per change")))
        .collect();
    let _ = cli.kill();
    let _ = cli.wait();
    let kinds: Vec<(String, String)> = lines
        .iter()
        .map(|line| {
            let change: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            let kind = change["kind"].as_str().expect("kind").to_owned();
            let status = change[&kind]["status"].as_str().unwrap_or("").to_owned();
            (kind, status)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("webhook".into(), "paused".into()),
            ("webhook".into(), "active".into()),
            ("delivery".into(), "succeeded".into()),
            ("delivery".into(), "pending".into()),
        ],
        "{lines:?}"
    );
    server.stop().await;
}
