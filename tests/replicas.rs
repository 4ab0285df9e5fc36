//! Several server replicas on one PostgreSQL database (docs/ARCHITECTURE.md, Processes): an event published
//! to one replica is delivered at once by a daemon streaming from another, woken by PostgreSQL's `NOTIFY`,
//! not at that replica's next idle poll.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::Duration;

use common::{
    authed, fast_delivery,
    receiver::{always, Receiver, Reply},
    Backend, TestServer,
};
use kit_webhooks::proto::{self, event_service_client::EventServiceClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_one_replica_wakes_the_streams_of_another() {
    if std::env::var("KIT_TEST_DATABASE_URL").is_err() {
        eprintln!("KIT_TEST_DATABASE_URL is not set: skipping the PostgreSQL run");
        return;
    }
    // Replica A takes the publishes and has no daemon.
    let a = TestServer::start_without_daemon(Backend::Postgres).await;
    // Replica B, on the same database, has the daemon. Its streams look for due deliveries on their own only
    // every 30 s (a third of its lease TTL caps the idle poll), far beyond the wait below: only a wake-up
    // from A can have them deliver in time.
    let mut config = a.config.clone();
    config.listen = "127.0.0.1:0".parse().expect("address");
    fast_delivery(&mut config, None);
    config.request_timeout = Duration::from_secs(90);
    config.idle_poll = Duration::from_secs(60);
    let b = kit_webhooks_server::start(config)
        .await
        .expect("the second replica starts");

    let receiver = Receiver::http(always(Reply::ok())).await;
    a.create_webhook(&receiver.url("/"), &["application.*"])
        .await;
    let publish = |server: String, id: &'static str| {
        let key = a.publisher_key.clone();
        async move {
            EventServiceClient::connect(server)
                .await
                .expect("connect")
                .publish_event(authed(
                    &key,
                    proto::PublishEventRequest {
                        account_id: "default".into(),
                        r#type: "application.submitted".into(),
                        data_json: format!(r#"{{"n":"{id}"}}"#),
                        ..Default::default()
                    },
                ))
                .await
                .expect("published")
        }
    };

    // Through B first: delivered, B's stream is open and idle again, its claim parked in B.
    publish(b.url(), "through B").await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    // Then through A, whose commit B's writer never sees.
    publish(a.server.url(), "through A").await;
    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    let last = String::from_utf8(received[1].body.clone()).expect("utf-8");
    assert!(last.contains("through A"), "{last}");

    b.shutdown().await.expect("B stops cleanly");
    a.stop().await;
}
