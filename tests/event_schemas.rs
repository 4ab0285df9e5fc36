//! Event schemas through the API (docs/EVENTS.md): `ListEventTypes` and `GetEventType` serve each type's
//! schema and example, and with `--validate-payloads` every example is accepted while a payload off its
//! schema is refused naming the JSON path and the rule, with nothing stored. On both databases.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use common::{assert_status, authed, Backend, TestServer};
use kit_webhooks::{definitions, proto};
use tonic::Code;

on_both_databases!(
    event_types_carry_their_schema_and_example,
    payloads_are_checked_against_their_schema_when_asked,
);

async fn event_types_carry_their_schema_and_example(backend: Backend) {
    let server = TestServer::start_without_daemon(backend).await;
    let mut events = server.events().await;
    let listed = events
        .list_event_types(authed(&server.admin_key, proto::ListEventTypesRequest {}))
        .await
        .expect("list")
        .into_inner()
        .event_types;
    assert_eq!(listed.len(), 25, "22 publishable, 2 operational, test.ping");
    for event_type in &listed {
        let schema: serde_json::Value =
            serde_json::from_str(&event_type.schema_json).expect("a schema");
        let example: serde_json::Value =
            serde_json::from_str(&event_type.example_json).expect("an example");
        let definition = definitions::of(&event_type.name).expect("defined");
        assert_eq!(schema, definition.schema);
        assert_eq!(example, definition.example);
        assert!(!event_type.fires_when.is_empty());
    }
    let one = events
        .get_event_type(authed(
            &server.publisher_key,
            proto::GetEventTypeRequest {
                name: "offer.revised".into(),
            },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        (one.name.as_str(), one.category.as_str()),
        ("offer.revised", "offer")
    );
    assert!(one.schema_json.contains("revision"));
    assert_status(
        events
            .get_event_type(authed(
                &server.admin_key,
                proto::GetEventTypeRequest {
                    name: "offer.eaten".into(),
                },
            ))
            .await,
        Code::NotFound,
        "offer.eaten",
    );
    assert_status(
        events
            .get_event_type(authed(
                &server.admin_key,
                proto::GetEventTypeRequest::default(),
            ))
            .await,
        Code::InvalidArgument,
        "name",
    );
    server.stop().await;
}

async fn payloads_are_checked_against_their_schema_when_asked(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.embedded_daemon = None;
        config.validate_payloads = true;
    })
    .await;
    let mut events = server.events().await;
    let publish = |event_type: &str, data: &serde_json::Value| {
        authed(
            &server.publisher_key,
            proto::PublishEventRequest {
                account_id: "default".into(),
                r#type: event_type.into(),
                data_json: data.to_string(),
                idempotency_key: String::new(),
            },
        )
    };
    let stored = || async {
        common::count(
            server.server.store.reader(),
            "SELECT COUNT(*) AS n FROM events",
        )
        .await
    };
    // Every example is accepted.
    for event in kit_webhooks::catalogue::EVENT_TYPES {
        let example = &definitions::of(event.name).expect("defined").example;
        events
            .publish_event(publish(event.name, example))
            .await
            .unwrap_or_else(|status| panic!("{}'s example refused: {status:?}", event.name));
    }
    assert_eq!(stored().await, 22);
    // Off the schema: refused, naming where and which rule, never the value; nothing stored.
    let mut wrong = definitions::of("interview.scheduled")
        .expect("defined")
        .example
        .clone();
    wrong["interview"]["starts_at"] = "next tuesday-ish".into();
    let refused = events
        .publish_event(publish("interview.scheduled", &wrong))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let message = refused.message();
    assert!(message.starts_with("data_json: "), "{message}");
    assert!(message.contains("/interview/starts_at"), "{message}");
    assert!(message.contains("format"), "{message}");
    assert!(!message.contains("tuesday"), "{message}");
    let mut missing = definitions::of("offer.accepted")
        .expect("defined")
        .example
        .clone();
    missing.as_object_mut().expect("object").remove("offer");
    assert_status(
        events
            .publish_event(publish("offer.accepted", &missing))
            .await,
        Code::InvalidArgument,
        "\"offer\"",
    );
    assert_eq!(stored().await, 22, "nothing stored for a refused payload");
    // Without the switch, the same payload is accepted as before.
    let server = {
        let mut server = server;
        server.config.validate_payloads = false;
        server.restart().await
    };
    server
        .events()
        .await
        .publish_event(authed(
            &server.publisher_key,
            proto::PublishEventRequest {
                account_id: "default".into(),
                r#type: "interview.scheduled".into(),
                data_json: wrong.to_string(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("accepted without --validate-payloads");
    server.stop().await;
}
