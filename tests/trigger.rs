//! `kit-webhooks events trigger` (`TriggerEvent`): a type's example, fresh ids and `--set` changes applied,
//! published for the admin key's account, delivered signed to the webhooks that subscribe to it, each outcome
//! printed; a payload off the schema refused naming its path. On both databases.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::Duration;

use common::{
    assert_status, authed, fast_delivery,
    receiver::{always, Receiver, Reply},
    workspace_bin, Backend, TestServer,
};
use kit_webhooks::{definitions, proto};
use tonic::Code;

on_both_databases!(
    trigger_publishes_an_example_and_prints_each_outcome,
    trigger_to_one_webhook_sends_a_test_delivery,
);

const WAIT: Duration = Duration::from_secs(30);

/// `kit-webhooks ARGS` with the server's admin key.
fn admin_cli(server: &TestServer, args: &[&str]) -> std::process::Output {
    std::process::Command::new(workspace_bin("kit-webhooks"))
        .args([
            "--server",
            &server.server.url(),
            "--token",
            &server.admin_key,
        ])
        .args(args)
        .output()
        .expect("run kit-webhooks")
}

async fn trigger_publishes_an_example_and_prints_each_outcome(backend: Backend) {
    let receiver = Receiver::http(always(Reply::ok())).await;
    let server = TestServer::start_with(backend, |config| fast_delivery(config, None)).await;
    let (first, _) = server
        .create_webhook(&receiver.url("/a"), &["interview.*"])
        .await;
    let (second, _) = server
        .create_webhook(&receiver.url("/b"), &["interview.scheduled"])
        .await;
    server
        .create_webhook(&receiver.url("/offers"), &["offer.*"])
        .await;
    let cli = |args: &[&str]| admin_cli(&server, args);

    let output = cli(&[
        "events",
        "trigger",
        "interview.scheduled",
        "--set",
        "candidate.name=Ada Lovelace",
        "--set",
        "interview.kind=\"phone\"",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("published evt_")
            && lines[0].ends_with("(interview.scheduled) to 2 webhooks"),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
    for hook in [&first.id, &second.id] {
        let line = lines
            .iter()
            .find(|l| l.contains(hook.as_str()))
            .expect("a line per webhook");
        assert!(line.contains("HTTP 200"), "{text}");
    }
    // What arrived: the example, with fresh ids and the changes, matching the schema.
    let received = receiver.wait_for(2, WAIT).await;
    let example = &definitions::of("interview.scheduled")
        .expect("defined")
        .example;
    for request in &received {
        assert_ne!(request.path, "/offers");
        let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON");
        assert_eq!(body["type"], "interview.scheduled");
        let data = &body["data"];
        assert_eq!(data["candidate"]["name"], "Ada Lovelace");
        assert_eq!(data["interview"]["kind"], "phone");
        assert_ne!(
            data["interview"]["id"], example["interview"]["id"],
            "fresh ids"
        );
        assert!(data["interview"]["id"]
            .as_str()
            .expect("id")
            .starts_with("int_"));
        assert_eq!(
            data["job_posting"]["title"],
            example["job_posting"]["title"]
        );
        kit_webhooks_server::core::payload::check("interview.scheduled", &data.to_string())
            .expect("still the documented shape");
    }

    // JSON output for scripts; a type nobody subscribes to is published to none.
    let output = cli(&["-o", "json", "events", "trigger", "job_posting.closed"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(shown["event"]["type"], "job_posting.closed");
    assert_eq!(shown["deliveries"], serde_json::json!([]));
    // An unknown type, or a change that breaks the schema: refused, nothing sent.
    let output = cli(&["events", "trigger", "interview.eaten", "--set", "a=1"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("interview.eaten"));
    let output = cli(&[
        "events",
        "trigger",
        "interview.scheduled",
        "--set",
        "occurred_at=yesterday",
    ]);
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("/occurred_at"), "{said}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 2);

    // Through gRPC: an admin's call only.
    let mut events = server.events().await;
    assert_status(
        events
            .trigger_event(authed(
                &server.publisher_key,
                proto::TriggerEventRequest {
                    r#type: "interview.scheduled".into(),
                    data_json: String::new(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "admin",
    );
    assert_status(
        events
            .trigger_event(authed(
                &server.admin_key,
                proto::TriggerEventRequest {
                    r#type: "test.ping".into(),
                    data_json: String::new(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "type",
    );
    server.stop().await;
}

/// `events trigger TYPE --webhook ID` (`SendTestPing` with a type): the example goes to that webhook only,
/// whatever it subscribes to and even paused, as a test delivery: tried once, shown as a test, never counted
/// against the webhook. Operational types can be tried too; a publishable-only check does not apply.
async fn trigger_to_one_webhook_sends_a_test_delivery(backend: Backend) {
    let failing = Receiver::http(always(Reply::status(500))).await;
    let receiver = Receiver::http(always(Reply::ok())).await;
    let server = TestServer::start_with(backend, |config| fast_delivery(config, None)).await;
    let (target, secret) = server
        .create_webhook(&receiver.url("/target"), &["job_posting.*"])
        .await;
    server
        .create_webhook(&receiver.url("/other"), &["offer.*"])
        .await;
    let (broken, _) = server
        .create_webhook(&failing.url("/broken"), &["offer.*"])
        .await;
    let cli = |args: &[&str]| admin_cli(&server, args);

    server.pause(&target.id).await;
    let output = cli(&[
        "events",
        "trigger",
        "offer.accepted",
        "--webhook",
        &target.id,
        "--set",
        "offer.salary.amount=90000",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("offer.accepted test delivery dlv_") && text.contains("HTTP 200"),
        "{text}"
    );
    let received = receiver.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/target", "that webhook only");
    received[0].verify(&secret).expect("signed with its secret");
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).expect("JSON");
    assert_eq!(body["type"], "offer.accepted");
    assert_eq!(body["data"]["offer"]["salary"]["amount"], 90000);
    let delivery = &server.deliveries(&target.id).await[0];
    assert!(delivery.test, "shown as a test: {delivery:?}");
    assert_eq!(delivery.event_type, "offer.accepted");

    // An operational type, to a failing endpoint: tried once, failed, and the webhook is not counted.
    let output = cli(&[
        "-o",
        "json",
        "events",
        "trigger",
        "webhook.disabled",
        "--webhook",
        &broken.id,
    ]);
    assert!(!output.status.success(), "a 500 is not an acknowledgement");
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(shown["test"], true);
    assert_eq!(shown["status"], "failed");
    assert_eq!(shown["attempt_count"], 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(failing.requests().len(), 1, "never retried");
    let broken = server.get_webhook(&broken.id).await;
    assert_eq!(broken.failure_count, 0, "never counted against the webhook");

    // Through gRPC: unknown types and data without a type are refused, naming the field.
    let mut webhooks = server.webhooks().await;
    let send = |event_type: &str, data_json: &str| proto::SendTestPingRequest {
        id: target.id.clone(),
        event_type: event_type.into(),
        data_json: data_json.into(),
        ..Default::default()
    };
    assert_status(
        webhooks
            .send_test_ping(authed(&server.admin_key, send("offer.eaten", "")))
            .await,
        Code::InvalidArgument,
        "event_type",
    );
    assert_status(
        webhooks
            .send_test_ping(authed(&server.admin_key, send("", "{}")))
            .await,
        Code::InvalidArgument,
        "data_json",
    );
    assert_status(
        webhooks
            .send_test_ping(authed(
                &server.admin_key,
                send("offer.accepted", r#"{"offer": 1}"#),
            ))
            .await,
        Code::InvalidArgument,
        "/offer",
    );
    server.stop().await;
}
