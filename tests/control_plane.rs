//! The control plane end to end: a real server on a real port over a real database, called through the
//! generated tonic clients, on SQLite and (with `KIT_TEST_DATABASE_URL`) PostgreSQL.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use common::{assert_status, authed, Backend, TestServer};
use kit_webhooks::proto::{self, DeliveryStatus, WebhookStatus};
use kit_webhooks_server::{
    core::Role,
    store::entity::{attempt, delivery, event, webhook},
};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use tonic::Code;

on_both_databases!(
    webhook_lifecycle,
    update_changes_only_masked_fields,
    pagination_walks_every_page_once,
    bad_input_is_rejected_with_the_field_named,
    roles_and_keys_are_enforced,
    accounts_never_see_each_other,
    publish_fans_out_by_subscription_and_status,
    publish_is_idempotent_per_account,
    delete_takes_the_delivery_history,
    test_ping_retry_and_replay,
    events_and_catalogue_are_readable,
    health_and_reflection_answer,
);

fn create_request(url: &str, events: &[&str]) -> proto::CreateWebhookRequest {
    proto::CreateWebhookRequest {
        url: url.into(),
        description: "test hook".into(),
        events: events.iter().map(|s| s.to_string()).collect(),
        rate_limit_per_second: 0,
        headers: Vec::new(),
        ordering: 0,
    }
}

async fn create(server: &TestServer, key: &str, events: &[&str]) -> proto::Webhook {
    server
        .webhooks()
        .await
        .create_webhook(authed(
            key,
            create_request("https://hooks.example.com/kit", events),
        ))
        .await
        .expect("create webhook")
        .into_inner()
        .webhook
        .expect("webhook in reply")
}

async fn publish(
    server: &TestServer,
    account: &str,
    event_type: &str,
    key: &str,
) -> proto::PublishEventResponse {
    let data = r#"{"candidate_id": 9007199254740993}"#;
    server
        .publish_keyed(account, event_type, data, key)
        .await
        .expect("publish")
}

async fn webhook_lifecycle(backend: Backend) {
    let server = TestServer::start(backend).await;
    let key = server.admin_key.clone();
    let mut client = server.webhooks().await;

    let created = client
        .create_webhook(authed(
            &key,
            create_request(
                "https://hooks.example.com/kit",
                &["interview.*", "offer.accepted"],
            ),
        ))
        .await
        .expect("create")
        .into_inner();
    let hook = created.webhook.expect("webhook");
    assert!(hook.id.starts_with("wh_"));
    assert_eq!(hook.status(), WebhookStatus::Active);
    assert_eq!(hook.account_id, "default");
    assert_eq!(hook.rate_limit_per_second, 100);
    assert_eq!(hook.events, vec!["interview.*", "offer.accepted"]);
    assert!(created.secret.starts_with("whsec_"));
    let raw = base64_decode(&created.secret["whsec_".len()..]);
    assert_eq!(raw.len(), 32, "secret is 32 random bytes");

    let got = client
        .get_webhook(authed(
            &key,
            proto::GetWebhookRequest {
                id: hook.id.clone(),
            },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, hook);

    let secret = client
        .get_webhook_secret(authed(
            &key,
            proto::GetWebhookSecretRequest {
                id: hook.id.clone(),
            },
        ))
        .await
        .expect("secret")
        .into_inner()
        .secret;
    assert_eq!(secret, created.secret);

    let paused = client
        .pause_webhook(authed(
            &key,
            proto::PauseWebhookRequest {
                id: hook.id.clone(),
            },
        ))
        .await
        .expect("pause")
        .into_inner();
    assert_eq!(paused.status(), WebhookStatus::Paused);

    // An auto-disabled webhook (set the way the delivery policy sets it) is re-enabled by resume,
    // with its counter and reason reset.
    let mut row: webhook::ActiveModel = webhook::Entity::find_by_id(hook.id.clone())
        .one(server.server.store.writer())
        .await
        .expect("read")
        .expect("row")
        .into();
    row.status = Set(kit_webhooks_server::core::webhook::Status::Disabled);
    row.failure_count = Set(25);
    row.disabled_reason = Set("failing for 5 days".into());
    row.update(server.server.store.writer())
        .await
        .expect("disable");
    assert_status(
        client
            .pause_webhook(authed(
                &key,
                proto::PauseWebhookRequest {
                    id: hook.id.clone(),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "disabled",
    );
    let resumed = client
        .resume_webhook(authed(
            &key,
            proto::ResumeWebhookRequest {
                id: hook.id.clone(),
            },
        ))
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(resumed.status(), WebhookStatus::Active);
    assert_eq!(resumed.failure_count, 0);
    assert_eq!(resumed.disabled_reason, "");

    let rotated = client
        .rotate_secret(authed(
            &key,
            proto::RotateSecretRequest {
                id: hook.id.clone(),
                grace_period_seconds: Some(3600),
            },
        ))
        .await
        .expect("rotate")
        .into_inner();
    assert_ne!(rotated.secret, created.secret);
    assert!(rotated
        .webhook
        .expect("webhook")
        .previous_secret_expires_at
        .is_some());
    let stored = webhook::Entity::find_by_id(hook.id.clone())
        .one(server.server.store.reader())
        .await
        .expect("read")
        .expect("row");
    // Stored sealed (`core::sealing`): opened with the server's keys, it is the old secret.
    let previous = stored
        .previous_secret
        .expect("old secret kept for the grace");
    assert!(!previous.contains(&created.secret));
    assert_eq!(
        server
            .server
            .secrets
            .open(&hook.id, &previous)
            .expect("opens"),
        created.secret,
        "old secret kept for the grace"
    );
    // A second rotation with a grace would end the first one's early: refused, naming until when.
    let during_grace = client
        .rotate_secret(authed(
            &key,
            proto::RotateSecretRequest {
                id: hook.id.clone(),
                grace_period_seconds: Some(60),
            },
        ))
        .await;
    assert_status(
        during_grace,
        Code::FailedPrecondition,
        "previous secret is still accepted until",
    );
    let rotated_again = client
        .rotate_secret(authed(
            &key,
            proto::RotateSecretRequest {
                id: hook.id.clone(),
                grace_period_seconds: Some(0),
            },
        ))
        .await
        .expect("rotate without grace")
        .into_inner();
    assert!(rotated_again
        .webhook
        .expect("webhook")
        .previous_secret_expires_at
        .is_none());
    // Unset: the old secret is accepted for a day.
    let before = std::time::SystemTime::now();
    let rotated_default = client
        .rotate_secret(authed(
            &key,
            proto::RotateSecretRequest {
                id: hook.id.clone(),
                grace_period_seconds: None,
            },
        ))
        .await
        .expect("rotate with the default grace")
        .into_inner();
    let until = rotated_default
        .webhook
        .expect("webhook")
        .previous_secret_expires_at
        .expect("the old secret is still accepted");
    let day_later = before
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        + 24 * 3600;
    assert!(
        (until.seconds - day_later).abs() <= 5,
        "accepted until {until:?}, a day from now"
    );

    client
        .delete_webhook(authed(
            &key,
            proto::DeleteWebhookRequest {
                id: hook.id.clone(),
            },
        ))
        .await
        .expect("delete");
    assert_status(
        client
            .get_webhook(authed(
                &key,
                proto::GetWebhookRequest {
                    id: hook.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
        &hook.id,
    );
    server.stop().await;
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

async fn update_changes_only_masked_fields(backend: Backend) {
    let server = TestServer::start(backend).await;
    let key = server.admin_key.clone();
    let mut client = server.webhooks().await;
    let hook = create(&server, &key, &["interview.*"]).await;

    let updated = client
        .update_webhook(authed(
            &key,
            proto::UpdateWebhookRequest {
                id: hook.id.clone(),
                url: "https://other.example.com/new".into(),
                description: "should not change".into(),
                events: vec!["offer.*".into()],
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["url".into(), "events".into()],
                }),
                rate_limit_per_second: 0,
                headers: Vec::new(),
                ..Default::default()
            },
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.url, "https://other.example.com/new");
    assert_eq!(updated.events, vec!["offer.*"]);
    assert_eq!(
        updated.description, "test hook",
        "description was not in the mask"
    );
    let ms = |t: &Option<prost_types::Timestamp>| {
        kit_webhooks_server::core::time::to_ms(t.as_ref().expect("timestamp"))
    };
    assert!(ms(&updated.updated_at) >= ms(&hook.updated_at));

    let updated = client
        .update_webhook(authed(
            &key,
            proto::UpdateWebhookRequest {
                id: hook.id.clone(),
                description: String::new(),
                rate_limit_per_second: 7,
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["description".into(), "rate_limit_per_second".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("clear description")
        .into_inner();
    assert_eq!(updated.description, "");
    assert_eq!(updated.rate_limit_per_second, 7);
    assert_eq!(updated.url, "https://other.example.com/new");

    // A bad field anywhere in the request changes nothing at all.
    let before = client
        .get_webhook(authed(
            &key,
            proto::GetWebhookRequest {
                id: hook.id.clone(),
            },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_status(
        client
            .update_webhook(authed(
                &key,
                proto::UpdateWebhookRequest {
                    id: hook.id.clone(),
                    url: "https://fine.example.com".into(),
                    events: vec!["nope.*".into()],
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["url".into(), "events".into()],
                    }),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "events",
    );
    assert_status(
        client
            .update_webhook(authed(
                &key,
                proto::UpdateWebhookRequest {
                    id: hook.id.clone(),
                    update_mask: None,
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "update_mask",
    );
    assert_status(
        client
            .update_webhook(authed(
                &key,
                proto::UpdateWebhookRequest {
                    id: hook.id.clone(),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["secret".into()],
                    }),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "unknown field `secret`",
    );
    let after = client
        .get_webhook(authed(
            &key,
            proto::GetWebhookRequest {
                id: hook.id.clone(),
            },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(before, after);
    server.stop().await;
}

async fn pagination_walks_every_page_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let key = server.admin_key.clone();
    let mut client = server.webhooks().await;
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(create(&server, &key, &["review.submitted"]).await.id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_webhooks(authed(
                &key,
                proto::ListWebhooksRequest {
                    page_size: 3,
                    page_token: token.clone(),
                },
            ))
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        assert!(page.webhooks.len() <= 3);
        seen.extend(page.webhooks.into_iter().map(|w| w.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every webhook once, oldest first");

    // Deliveries page newest first.
    let hook = created[0].clone();
    let mut published = Vec::new();
    for _ in 0..5 {
        publish(&server, "default", "review.submitted", "").await;
        published.push(());
    }
    let first = client
        .list_deliveries(authed(
            &key,
            proto::ListDeliveriesRequest {
                webhook_id: hook.clone(),
                page_size: 2,
                ..Default::default()
            },
        ))
        .await
        .expect("list deliveries")
        .into_inner();
    assert_eq!(first.deliveries.len(), 2);
    let second = client
        .list_deliveries(authed(
            &key,
            proto::ListDeliveriesRequest {
                webhook_id: hook.clone(),
                page_size: 10,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("second page")
        .into_inner();
    assert_eq!(second.deliveries.len(), 3);
    assert!(second.next_page_token.is_empty());
    assert!(
        first.deliveries[1].id > second.deliveries[0].id,
        "newest first"
    );

    assert_status(
        client
            .list_webhooks(authed(
                &key,
                proto::ListWebhooksRequest {
                    page_size: 3,
                    page_token: "bm9wZQ".into(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    // A deliveries token is not a webhooks token.
    assert_status(
        client
            .list_webhooks(authed(
                &key,
                proto::ListWebhooksRequest {
                    page_size: 3,
                    page_token: first.next_page_token.clone(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    server.stop().await;
}

async fn bad_input_is_rejected_with_the_field_named(backend: Backend) {
    let server = TestServer::start(backend).await;
    let key = server.admin_key.clone();
    let mut client = server.webhooks().await;
    let long = "x".repeat(501);
    let cases: Vec<(proto::CreateWebhookRequest, &str)> = vec![
        (
            create_request("http://hooks.example.com", &["offer.*"]),
            "url",
        ),
        (create_request("https://", &["offer.*"]), "url"),
        (create_request("/relative/path", &["offer.*"]), "url"),
        (
            create_request("ftp://hooks.example.com", &["offer.*"]),
            "url",
        ),
        (create_request("", &["offer.*"]), "url"),
        (create_request("https://hooks.example.com", &[]), "events"),
        (
            create_request("https://hooks.example.com", &["offer.nope"]),
            "events",
        ),
        (
            create_request("https://hooks.example.com", &["nope.*"]),
            "events",
        ),
        (
            create_request("https://hooks.example.com", &["*"]),
            "events",
        ),
        (
            create_request("https://hooks.example.com", &["test.ping"]),
            "events",
        ),
        (
            create_request("https://hooks.example.com", &["offer.*", "offer.*"]),
            "events",
        ),
        (
            proto::CreateWebhookRequest {
                description: long,
                ..create_request("https://hooks.example.com", &["offer.*"])
            },
            "description",
        ),
        (
            // PostgreSQL's text cannot hold NUL: refused up front, on SQLite too.
            proto::CreateWebhookRequest {
                description: "a\0b".into(),
                ..create_request("https://hooks.example.com", &["offer.*"])
            },
            "description",
        ),
        (
            // The URL parser would drop the line break silently; the URL stored must be the one given.
            create_request("https://hooks.example.com/a\nb", &["offer.*"]),
            "url",
        ),
        (
            proto::CreateWebhookRequest {
                rate_limit_per_second: 10_000_000,
                ..create_request("https://hooks.example.com", &["offer.*"])
            },
            "rate_limit_per_second",
        ),
    ];
    for (request, field) in cases {
        assert_status(
            client.create_webhook(authed(&key, request)).await,
            Code::InvalidArgument,
            field,
        );
    }
    // 500 characters (not bytes) is fine.
    client
        .create_webhook(authed(
            &key,
            proto::CreateWebhookRequest {
                description: "é".repeat(500),
                ..create_request("https://hooks.example.com", &["offer.*"])
            },
        ))
        .await
        .expect("500-character description");
    let count = webhook::Entity::find()
        .count(server.server.store.reader())
        .await
        .expect("count");
    assert_eq!(count, 1, "no rejected create wrote anything");

    assert_status(
        client
            .get_webhook(authed(
                &key,
                proto::GetWebhookRequest {
                    id: "not-an-id".into(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        client
            .get_webhook(authed(&key, proto::GetWebhookRequest { id: String::new() }))
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        client
            .get_delivery(authed(
                &key,
                proto::GetDeliveryRequest {
                    id: "wh_01JD0000000000000000000000".into(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        client
            .get_webhook(authed(
                &key,
                proto::GetWebhookRequest {
                    id: "wh_01JD0000000000000000000000".into(),
                },
            ))
            .await,
        Code::NotFound,
        "wh_01JD0000000000000000000000",
    );
    let hook = create(&server, &key, &["offer.*"]).await;
    assert_status(
        client
            .rotate_secret(authed(
                &key,
                proto::RotateSecretRequest {
                    id: hook.id.clone(),
                    grace_period_seconds: Some(604_801),
                },
            ))
            .await,
        Code::InvalidArgument,
        "grace_period_seconds",
    );
    assert_status(
        client
            .list_deliveries(authed(
                &key,
                proto::ListDeliveriesRequest {
                    webhook_id: hook.id.clone(),
                    event_type: "nope".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "event_type",
    );
    assert_status(
        client
            .list_deliveries(authed(
                &key,
                proto::ListDeliveriesRequest {
                    webhook_id: hook.id.clone(),
                    status: 42,
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "status",
    );
    assert_status(
        client
            .replay_deliveries(authed(
                &key,
                proto::ReplayDeliveriesRequest {
                    webhook_id: hook.id.clone(),
                    since: None,
                    until: None,
                },
            ))
            .await,
        Code::InvalidArgument,
        "since",
    );

    let mut events = server.events().await;
    let publisher = server.publisher_key.clone();
    let good = proto::PublishEventRequest {
        account_id: "default".into(),
        r#type: "offer.accepted".into(),
        data_json: "{}".into(),
        idempotency_key: String::new(),
    };
    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(256 * 1024));
    let cases: Vec<(proto::PublishEventRequest, &str)> = vec![
        (
            proto::PublishEventRequest {
                account_id: String::new(),
                ..good.clone()
            },
            "account_id",
        ),
        (
            proto::PublishEventRequest {
                account_id: "has space".into(),
                ..good.clone()
            },
            "account_id",
        ),
        (
            proto::PublishEventRequest {
                r#type: String::new(),
                ..good.clone()
            },
            "type",
        ),
        (
            proto::PublishEventRequest {
                r#type: "offer.eaten".into(),
                ..good.clone()
            },
            "type",
        ),
        (
            proto::PublishEventRequest {
                r#type: "test.ping".into(),
                ..good.clone()
            },
            "type",
        ),
        (
            proto::PublishEventRequest {
                data_json: String::new(),
                ..good.clone()
            },
            "data_json",
        ),
        (
            proto::PublishEventRequest {
                data_json: "[1, 2]".into(),
                ..good.clone()
            },
            "data_json",
        ),
        (
            proto::PublishEventRequest {
                data_json: "42".into(),
                ..good.clone()
            },
            "data_json",
        ),
        (
            proto::PublishEventRequest {
                data_json: "{\"a\":".into(),
                ..good.clone()
            },
            "data_json",
        ),
        (
            proto::PublishEventRequest {
                data_json: big,
                ..good.clone()
            },
            "data_json",
        ),
        (
            proto::PublishEventRequest {
                idempotency_key: "k".repeat(256),
                ..good.clone()
            },
            "idempotency_key",
        ),
        (
            // PostgreSQL cannot store NUL: refused up front on both databases, not by a failed commit.
            proto::PublishEventRequest {
                idempotency_key: "key\0".into(),
                ..good.clone()
            },
            "idempotency_key",
        ),
        (
            // No receiver's parser should have to recurse 40,000 levels.
            proto::PublishEventRequest {
                data_json: format!("{{\"a\":{}{}}}", "[".repeat(40_000), "]".repeat(40_000)),
                ..good.clone()
            },
            "data_json",
        ),
    ];
    for (request, field) in cases {
        assert_status(
            events.publish_event(authed(&publisher, request)).await,
            Code::InvalidArgument,
            field,
        );
    }
    let count = event::Entity::find()
        .count(server.server.store.reader())
        .await
        .expect("count");
    assert_eq!(count, 0, "no rejected publish wrote anything");
    events
        .publish_event(authed(&publisher, good.clone()))
        .await
        .expect("the good request passes");
    assert_status(
        events
            .get_event(authed(
                &publisher,
                proto::GetEventRequest {
                    id: "evt_bad".into(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "id",
    );
    // A ULID's text past its 128 bits is no id: INVALID_ARGUMENT, not NOT_FOUND.
    assert_status(
        events
            .get_event(authed(
                &publisher,
                proto::GetEventRequest {
                    id: "evt_ZZZZZZZZZZZZZZZZZZZZZZZZZZ".into(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "id",
    );
    // A huge value is quoted cut short, so the answer stays INVALID_ARGUMENT (a status larger than the
    // client's metadata limit would reach it as RESOURCE_EXHAUSTED).
    for (id, r#type) in [
        ("x".repeat(200_000), "offer.accepted".to_owned()),
        (String::new(), "y".repeat(200_000)),
    ] {
        let status = if id.is_empty() {
            events
                .publish_event(authed(
                    &publisher,
                    proto::PublishEventRequest {
                        r#type,
                        ..good.clone()
                    },
                ))
                .await
                .map(|_| ())
        } else {
            events
                .get_event(authed(&publisher, proto::GetEventRequest { id }))
                .await
                .map(|_| ())
        }
        .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().len() < 300,
            "{} bytes",
            status.message().len()
        );
    }
    // A message larger than the call takes is refused on its length, before it is read, naming the field
    // and the limit (not tonic's OUT_OF_RANGE).
    let status = events
        .publish_event(authed(
            &publisher,
            proto::PublishEventRequest {
                data_json: format!("{{\"blob\":\"{}\"}}", "x".repeat(1024 * 1024)),
                ..good.clone()
            },
        ))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().starts_with("data_json:")
            && status.message().contains("--max-payload-bytes"),
        "{}",
        status.message()
    );
    let status = client
        .create_webhook(authed(
            &key,
            proto::CreateWebhookRequest {
                description: "d".repeat(2 * 1024 * 1024),
                ..create_request("https://hooks.example.com", &["offer.*"])
            },
        ))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().starts_with("request: is "),
        "{}",
        status.message()
    );
    assert_status(
        events
            .list_events(authed(
                &publisher,
                proto::ListEventsRequest {
                    page_token: "!!".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    server.stop().await;
}

async fn roles_and_keys_are_enforced(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut webhooks = server.webhooks().await;
    let mut events = server.events().await;
    let list = proto::ListWebhooksRequest::default();

    assert_status(
        webhooks
            .list_webhooks(tonic::Request::new(list.clone()))
            .await,
        Code::Unauthenticated,
        "authorization",
    );
    assert_status(
        webhooks
            .list_webhooks(authed("kit_not-a-real-key", list.clone()))
            .await,
        Code::Unauthenticated,
        "unknown API key",
    );
    let mut basic = tonic::Request::new(list.clone());
    basic
        .metadata_mut()
        .insert("authorization", "Basic abc".parse().expect("ascii"));
    assert_status(
        webhooks.list_webhooks(basic).await,
        Code::Unauthenticated,
        "Bearer",
    );

    assert_status(
        webhooks
            .list_webhooks(authed(&server.publisher_key, list.clone()))
            .await,
        Code::PermissionDenied,
        "admin",
    );
    let daemon = server.key(Role::Daemon, None).await;
    assert_status(
        webhooks.list_webhooks(authed(&daemon, list.clone())).await,
        Code::PermissionDenied,
        "admin",
    );
    let publish = proto::PublishEventRequest {
        account_id: "default".into(),
        r#type: "offer.accepted".into(),
        data_json: "{}".into(),
        idempotency_key: String::new(),
    };
    assert_status(
        events
            .publish_event(authed(&server.admin_key, publish.clone()))
            .await,
        Code::PermissionDenied,
        "publisher",
    );
    assert_status(
        events.publish_event(authed(&daemon, publish.clone())).await,
        Code::PermissionDenied,
        "publisher",
    );
    let mut delivery = kit_webhooks::proto::delivery_service_client::DeliveryServiceClient::new(
        server.channel().await,
    );
    assert_status(
        delivery
            .report_delivery(authed(
                &server.admin_key,
                proto::ReportDeliveryRequest::default(),
            ))
            .await,
        Code::PermissionDenied,
        "daemon",
    );

    // A key created by `keys create` works at once, and is stored only as a hash.
    let other_admin = server.key(Role::Admin, Some("acme")).await;
    webhooks
        .list_webhooks(authed(&other_admin, list.clone()))
        .await
        .expect("new key works");
    let stored = kit_webhooks_server::store::entity::api_key::Entity::find()
        .all(server.server.store.reader())
        .await
        .expect("keys");
    assert!(stored
        .iter()
        .all(|row| row.key_hash != other_admin && !row.key_hash.contains("kwk_")));
    assert!(kit_webhooks_server::keys::create(
        &server.server.store,
        Role::Admin,
        None,
        None,
        kit_webhooks_server::keys::CLI
    )
    .await
    .is_err());
    server.stop().await;
}

async fn accounts_never_see_each_other(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.key(Role::Admin, Some("acme")).await;
    let mut client = server.webhooks().await;
    let mine = create(&server, &server.admin_key, &["offer.*"]).await;
    let published = publish(&server, "default", "offer.accepted", "").await;
    assert_eq!(published.deliveries_queued, 1);
    let delivery = client
        .list_deliveries(authed(
            &server.admin_key,
            proto::ListDeliveriesRequest {
                webhook_id: mine.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .deliveries
        .remove(0);

    let id = mine.id.clone();
    assert_status(
        client
            .get_webhook(authed(&acme, proto::GetWebhookRequest { id: id.clone() }))
            .await,
        Code::NotFound,
        &id,
    );
    assert_status(
        client
            .get_webhook_secret(authed(
                &acme,
                proto::GetWebhookSecretRequest { id: id.clone() },
            ))
            .await,
        Code::NotFound,
        &id,
    );
    assert_status(
        client
            .update_webhook(authed(
                &acme,
                proto::UpdateWebhookRequest {
                    id: id.clone(),
                    url: "https://evil.example.com".into(),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["url".into()],
                    }),
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
        &id,
    );
    assert_status(
        client
            .pause_webhook(authed(&acme, proto::PauseWebhookRequest { id: id.clone() }))
            .await,
        Code::NotFound,
        &id,
    );
    assert_status(
        client
            .resume_webhook(authed(
                &acme,
                proto::ResumeWebhookRequest { id: id.clone() },
            ))
            .await,
        Code::NotFound,
        &id,
    );
    assert_status(
        client
            .rotate_secret(authed(
                &acme,
                proto::RotateSecretRequest {
                    id: id.clone(),
                    grace_period_seconds: Some(0),
                },
            ))
            .await,
        Code::NotFound,
        &id,
    );
    assert_status(
        client
            .send_test_ping(authed(
                &acme,
                proto::SendTestPingRequest {
                    id: id.clone(),
                    wait: false,
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
        &id,
    );
    assert_status(
        client
            .delete_webhook(authed(
                &acme,
                proto::DeleteWebhookRequest { id: id.clone() },
            ))
            .await,
        Code::NotFound,
        &id,
    );
    assert_status(
        client
            .list_deliveries(authed(
                &acme,
                proto::ListDeliveriesRequest {
                    webhook_id: id.clone(),
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
        &id,
    );
    assert_status(
        client
            .get_delivery(authed(
                &acme,
                proto::GetDeliveryRequest {
                    id: delivery.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
        &delivery.id,
    );
    assert_status(
        client
            .retry_delivery(authed(
                &acme,
                proto::RetryDeliveryRequest {
                    id: delivery.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
        &delivery.id,
    );
    let listed = client
        .list_webhooks(authed(&acme, proto::ListWebhooksRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.webhooks.is_empty());

    let mut events = server.events().await;
    let event_id = published.event.expect("event").id;
    assert_status(
        events
            .get_event(authed(
                &acme,
                proto::GetEventRequest {
                    id: event_id.clone(),
                },
            ))
            .await,
        Code::NotFound,
        &event_id,
    );
    let theirs = events
        .list_events(authed(
            &acme,
            proto::ListEventsRequest {
                account_id: "default".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list events")
        .into_inner();
    assert!(theirs.events.is_empty());
    let own = events
        .list_events(authed(
            &server.admin_key,
            proto::ListEventsRequest::default(),
        ))
        .await
        .expect("own events")
        .into_inner();
    assert_eq!(own.events.len(), 1);

    // Nothing changed for the owner.
    let still = client
        .get_webhook(authed(
            &server.admin_key,
            proto::GetWebhookRequest { id: id.clone() },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(still, mine);
    server.stop().await;
}

async fn publish_fans_out_by_subscription_and_status(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_key.clone();
    let acme = server.key(Role::Admin, Some("acme")).await;
    let mut client = server.webhooks().await;
    let category = create(&server, &admin, &["interview.*"]).await;
    let exact = create(&server, &admin, &["interview.scheduled", "offer.accepted"]).await;
    let other_type = create(&server, &admin, &["interview.cancelled"]).await;
    let other_category = create(&server, &admin, &["offer.*"]).await;
    let paused = create(&server, &admin, &["interview.*"]).await;
    client
        .pause_webhook(authed(
            &admin,
            proto::PauseWebhookRequest {
                id: paused.id.clone(),
            },
        ))
        .await
        .expect("pause");
    let disabled = create(&server, &admin, &["interview.*"]).await;
    let mut row: webhook::ActiveModel = webhook::Entity::find_by_id(disabled.id.clone())
        .one(server.server.store.writer())
        .await
        .expect("read")
        .expect("row")
        .into();
    row.status = Set(kit_webhooks_server::core::webhook::Status::Disabled);
    row.update(server.server.store.writer())
        .await
        .expect("disable");
    let other_account = create(&server, &acme, &["interview.*"]).await;

    let reply = publish(&server, "default", "interview.scheduled", "").await;
    assert_eq!(reply.deliveries_queued, 2);
    let event = reply.event.expect("event");
    assert_eq!(
        event.data_json, r#"{"candidate_id": 9007199254740993}"#,
        "data kept verbatim"
    );

    let count_for = |id: String| {
        let db = server.server.store.reader().clone();
        async move {
            delivery::Entity::find()
                .filter(delivery::Column::WebhookId.eq(id))
                .count(&db)
                .await
                .expect("count")
        }
    };
    assert_eq!(count_for(category.id.clone()).await, 1);
    assert_eq!(count_for(exact.id.clone()).await, 1);
    for hook in [
        &other_type,
        &other_category,
        &paused,
        &disabled,
        &other_account,
    ] {
        assert_eq!(
            count_for(hook.id.clone()).await,
            0,
            "{} must get nothing",
            hook.description
        );
    }
    let listed = client
        .list_deliveries(authed(
            &admin,
            proto::ListDeliveriesRequest {
                webhook_id: category.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    let queued = &listed.deliveries[0];
    assert_eq!(queued.status(), DeliveryStatus::Pending);
    assert_eq!(queued.event_id, event.id);
    assert_eq!(queued.event_type, "interview.scheduled");
    assert_eq!(queued.attempt_count, 0);
    assert!(queued.next_attempt_at.is_some());

    // Filters.
    let none = client
        .list_deliveries(authed(
            &admin,
            proto::ListDeliveriesRequest {
                webhook_id: category.id.clone(),
                status: DeliveryStatus::Failed as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("list failed")
        .into_inner();
    assert!(none.deliveries.is_empty());
    let by_type = client
        .list_deliveries(authed(
            &admin,
            proto::ListDeliveriesRequest {
                webhook_id: category.id.clone(),
                event_type: "interview.scheduled".into(),
                status: DeliveryStatus::Pending as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("list by type")
        .into_inner();
    assert_eq!(by_type.deliveries.len(), 1);

    // An account with no webhooks: the event is stored, nothing queued.
    let lonely = publish(&server, "nobody", "offer.accepted", "").await;
    assert_eq!(lonely.deliveries_queued, 0);
    assert!(lonely.event.is_some());
    server.stop().await;
}

async fn publish_is_idempotent_per_account(backend: Backend) {
    let server = TestServer::start(backend).await;
    create(&server, &server.admin_key, &["offer.*"]).await;
    let first = publish(&server, "default", "offer.accepted", "order-42").await;
    assert_eq!(first.deliveries_queued, 1);
    let again = publish(&server, "default", "offer.accepted", "order-42").await;
    assert_eq!(again.deliveries_queued, 0);
    assert_eq!(again.event, first.event, "the original event comes back");
    let db = server.server.store.reader();
    assert_eq!(event::Entity::find().count(db).await.expect("count"), 1);
    assert_eq!(delivery::Entity::find().count(db).await.expect("count"), 1);

    // The same request spelled differently (spacing, key order) is the same request.
    let respelled = r#"{ "candidate_id":9007199254740993 }"#;
    let respelled = server
        .publish_keyed("default", "offer.accepted", respelled, "order-42")
        .await
        .expect("the same request again");
    assert_eq!(respelled.event, first.event);
    // The key reused for another event: refused, naming the key and the event it belongs to.
    let first_id = first.event.clone().expect("event").id;
    for (event_type, data_json) in [
        ("offer.accepted", r#"{"candidate_id": 7}"#),
        ("offer.declined", r#"{"candidate_id": 9007199254740993}"#),
    ] {
        let refused = server
            .publish_keyed("default", event_type, data_json, "order-42")
            .await
            .expect_err("a reused key for another event is refused");
        assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
        assert!(
            refused.message().contains("order-42") && refused.message().contains(&first_id),
            "{}",
            refused.message()
        );
    }
    let db = server.server.store.reader();
    assert_eq!(event::Entity::find().count(db).await.expect("count"), 1);

    let elsewhere = publish(&server, "acme", "offer.accepted", "order-42").await;
    assert_ne!(
        elsewhere.event.expect("event").id,
        first.event.expect("event").id,
        "keys are per account"
    );

    // Concurrent retries of one call: one event, one fan-out.
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut client = server.events().await;
        let key = server.publisher_key.clone();
        calls.push(tokio::spawn(async move {
            client
                .publish_event(authed(
                    &key,
                    proto::PublishEventRequest {
                        account_id: "default".into(),
                        r#type: "offer.revised".into(),
                        data_json: "{}".into(),
                        idempotency_key: "race".into(),
                    },
                ))
                .await
                .expect("publish")
                .into_inner()
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut queued = 0;
    for call in calls {
        let reply = call.await.expect("task");
        ids.insert(reply.event.expect("event").id);
        queued += reply.deliveries_queued;
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(queued, 1);
    server.stop().await;
}

async fn delete_takes_the_delivery_history(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_key.clone();
    let doomed = create(&server, &admin, &["job_posting.*"]).await;
    let kept = create(&server, &admin, &["job_posting.*"]).await;
    for _ in 0..3 {
        publish(&server, "default", "job_posting.published", "").await;
    }
    // Give one of the doomed webhook's deliveries an attempt, as a daemon report would.
    let db = server.server.store.writer();
    let victim = delivery::Entity::find()
        .filter(delivery::Column::WebhookId.eq(doomed.id.clone()))
        .one(db)
        .await
        .expect("read")
        .expect("delivery");
    attempt::ActiveModel {
        id: Set("att_01JD0000000000000000000000".into()),
        delivery_id: Set(victim.id.clone()),
        number: Set(1),
        started_at: Set(0),
        duration_ms: Set(5),
        request_headers: Set("{}".into()),
        response_status: Set(500),
        response_headers: Set("{}".into()),
        response_body: Set("oops".into()),
        error_kind: Set("status".into()),
        error: Set("HTTP 500".into()),
    }
    .insert(db)
    .await
    .expect("attempt");

    let mut client = server.webhooks().await;
    let reply = client
        .delete_webhook(authed(
            &admin,
            proto::DeleteWebhookRequest {
                id: doomed.id.clone(),
            },
        ))
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(reply.deliveries_deleted, 3);
    let db = server.server.store.reader();
    assert_eq!(
        delivery::Entity::find()
            .filter(delivery::Column::WebhookId.eq(doomed.id.clone()))
            .count(db)
            .await
            .expect("count"),
        0
    );
    assert_eq!(
        attempt::Entity::find().count(db).await.expect("count"),
        0,
        "attempts went too"
    );
    assert!(webhook::Entity::find_by_id(doomed.id.clone())
        .one(db)
        .await
        .expect("read")
        .is_none());
    assert_eq!(
        delivery::Entity::find()
            .filter(delivery::Column::WebhookId.eq(kept.id.clone()))
            .count(db)
            .await
            .expect("count"),
        3,
        "the other webhook keeps its history"
    );
    assert_eq!(
        event::Entity::find().count(db).await.expect("count"),
        3,
        "events stay"
    );
    assert_status(
        client
            .delete_webhook(authed(
                &admin,
                proto::DeleteWebhookRequest {
                    id: doomed.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
        &doomed.id,
    );
    server.stop().await;
}

async fn test_ping_retry_and_replay(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_key.clone();
    let mut client = server.webhooks().await;
    let hook = create(&server, &admin, &["offer.*"]).await;
    client
        .pause_webhook(authed(
            &admin,
            proto::PauseWebhookRequest {
                id: hook.id.clone(),
            },
        ))
        .await
        .expect("pause");
    let ping = client
        .send_test_ping(authed(
            &admin,
            proto::SendTestPingRequest {
                id: hook.id.clone(),
                wait: false,
                ..Default::default()
            },
        ))
        .await
        .expect("ping works in any status")
        .into_inner()
        .delivery
        .expect("delivery");
    assert_eq!(ping.event_type, "test.ping");
    assert_eq!(ping.status(), DeliveryStatus::Pending);
    assert_eq!(ping.webhook_id, hook.id);
    assert_status(
        client
            .retry_delivery(authed(
                &admin,
                proto::RetryDeliveryRequest {
                    id: ping.id.clone(),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "pending",
    );
    client
        .resume_webhook(authed(
            &admin,
            proto::ResumeWebhookRequest {
                id: hook.id.clone(),
            },
        ))
        .await
        .expect("resume");

    // Three failed deliveries, as the delivery policy leaves them; one older than the replay window.
    for _ in 0..3 {
        publish(&server, "default", "offer.accepted", "").await;
    }
    let db = server.server.store.writer();
    let rows = delivery::Entity::find()
        .filter(delivery::Column::EventType.eq("offer.accepted"))
        .all(db)
        .await
        .expect("deliveries");
    let window_start = kit_webhooks_server::core::time::now_ms() - 60_000;
    for (index, row) in rows.iter().enumerate() {
        let mut active: delivery::ActiveModel = row.clone().into();
        active.status = Set(kit_webhooks_server::core::event::DeliveryStatus::Failed);
        active.next_attempt_at = Set(None);
        active.completed_at = Set(Some(1));
        active.update(db).await.expect("fail it");
        if index == 0 {
            let mut old: event::ActiveModel = event::Entity::find_by_id(row.event_id.clone())
                .one(db)
                .await
                .expect("read")
                .expect("event")
                .into();
            old.created_at = Set(window_start - 1);
            old.update(db).await.expect("age the event");
        }
    }
    let since = kit_webhooks_server::core::time::to_timestamp(window_start);
    let replayed = client
        .replay_deliveries(authed(
            &admin,
            proto::ReplayDeliveriesRequest {
                webhook_id: hook.id.clone(),
                since: Some(since),
                until: None,
            },
        ))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replayed.deliveries_requeued, 2);
    let again = client
        .replay_deliveries(authed(
            &admin,
            proto::ReplayDeliveriesRequest {
                webhook_id: hook.id.clone(),
                since: Some(since),
                until: None,
            },
        ))
        .await
        .expect("replay again")
        .into_inner();
    assert_eq!(again.deliveries_requeued, 0, "nothing is re-queued twice");

    let retried = client
        .retry_delivery(authed(
            &admin,
            proto::RetryDeliveryRequest {
                id: rows[0].id.clone(),
            },
        ))
        .await
        .expect("retry a failed delivery")
        .into_inner();
    assert_eq!(retried.status(), DeliveryStatus::Pending);
    assert!(retried.completed_at.is_none());
    let shown = client
        .get_delivery(authed(
            &admin,
            proto::GetDeliveryRequest {
                id: rows[0].id.clone(),
            },
        ))
        .await
        .expect("get delivery")
        .into_inner();
    assert_eq!(shown.status(), DeliveryStatus::Pending);
    server.stop().await;
}

async fn events_and_catalogue_are_readable(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut events = server.events().await;
    let catalogue = events
        .list_event_types(authed(
            &server.publisher_key,
            proto::ListEventTypesRequest {},
        ))
        .await
        .expect("catalogue")
        .into_inner()
        .event_types;
    assert_eq!(
        catalogue.len(),
        25,
        "22 publishable types, 2 operational ones and test.ping"
    );
    let categories: std::collections::BTreeSet<_> = catalogue
        .iter()
        .filter(|t| t.name != "test.ping")
        .map(|t| t.category.clone())
        .collect();
    assert_eq!(categories.len(), 7, "6 categories and operational");
    assert!(catalogue
        .iter()
        .any(|t| t.name == "code_assignment.auto_submitted" && t.category == "code_assignment"));

    let a = publish(&server, "default", "interview.scheduled", "")
        .await
        .event
        .expect("event");
    let b = publish(&server, "acme", "offer.accepted", "")
        .await
        .event
        .expect("event");
    let got = events
        .get_event(authed(
            &server.publisher_key,
            proto::GetEventRequest { id: a.id.clone() },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, a);
    let all = events
        .list_events(authed(
            &server.publisher_key,
            proto::ListEventsRequest::default(),
        ))
        .await
        .expect("list")
        .into_inner()
        .events;
    assert_eq!(
        all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![b.id.clone(), a.id.clone()],
        "newest first"
    );
    let typed = events
        .list_events(authed(
            &server.publisher_key,
            proto::ListEventsRequest {
                r#type: "offer.accepted".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list by type")
        .into_inner()
        .events;
    assert_eq!(typed, vec![b.clone()]);
    let acme_only = server.events_of("acme").await;
    assert_eq!(acme_only, vec![b]);
    server.stop().await;
}

async fn health_and_reflection_answer(backend: Backend) {
    let server = TestServer::start(backend).await;
    let channel = server.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in [
        "",
        "kit.webhooks.v1.WebhookService",
        "kit.webhooks.v1.EventService",
        "kit.webhooks.v1.DeliveryService",
    ] {
        let reply = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of `{service}`: {e}"))
            .into_inner();
        assert_eq!(
            reply.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
    }

    use tonic_reflection::pb::{v1, v1alpha};
    let mut v1_client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = v1_client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let reply = stream.message().await.expect("reply").expect("a message");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("unexpected reflection reply");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for wanted in [
        "kit.webhooks.v1.WebhookService",
        "kit.webhooks.v1.EventService",
        "kit.webhooks.v1.DeliveryService",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "kit.webhooks.v1.WebhookService".into(),
            ),
        ),
    };
    let mut stream = alpha
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let reply = stream.message().await.expect("reply").expect("a message");
    assert!(
        matches!(
            reply.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref files))
                if !files.file_descriptor_proto.is_empty()
        ),
        "v1alpha serves the contract's descriptors: {:?}",
        reply.message_response
    );
    server.stop().await;
}
