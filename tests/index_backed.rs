//! Every query on the delivery path is index-backed, checked on PostgreSQL by what it counts: the server's
//! sessions plan with `enable_seqscan` off, so a query that no index can serve still runs, as a sequential
//! scan, and nothing else would notice it until the table is large. This test runs the whole life of a
//! webhook's deliveries through the API and the embedded daemon and asserts that none of it read the growing
//! tables (`events`, `deliveries`, `attempts`) whole. SQLite keeps no such counters; its plans are in
//! docs/PERFORMANCE.md.

mod common;

use std::time::Duration;

use common::{
    authed, count, fast_delivery,
    receiver::{always, Receiver, Reply},
    Backend, TestServer,
};
use kit_webhooks::proto::{self, DeliveryStatus};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

const WAIT: Duration = Duration::from_secs(20);
/// The tables that grow with traffic; `webhooks` and `api_keys` stay small.
const GROWING: [&str; 3] = ["events", "deliveries", "attempts"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_delivery_path_reads_no_growing_table_whole() {
    if std::env::var("KIT_TEST_DATABASE_URL").is_err() {
        eprintln!("KIT_TEST_DATABASE_URL is not set: skipping the PostgreSQL run");
        return;
    }
    let ok = Receiver::http(always(Reply::ok())).await;
    let failing = Receiver::http(always(Reply::status(500))).await;
    let server = TestServer::start_with(Backend::Postgres, |config| {
        fast_delivery(config, None);
        config.retry.schedule = vec![Duration::from_millis(20); 2];
    })
    .await;
    // One session, so that "every other session" below means the server's.
    let mut options = sea_orm::ConnectOptions::new(server.db.url.clone());
    options.max_connections(1).min_connections(1);
    let stats = Database::connect(options)
        .await
        .expect("connect to the test database");
    // Building the indexes (the migrations) scanned the tables: count from a restart, once every session of
    // the first start has ended (a session hands its counts in as it ends).
    let mut before = Vec::new();
    let server = server
        .restart_after(async {
            before = sequential_scans(&stats).await;
        })
        .await;

    let (hook, _) = server
        .create_webhook(&ok.url("/"), &["application.*"])
        .await;
    let (bad, _) = server
        .create_webhook(&failing.url("/"), &["application.*"])
        .await;
    for _ in 0..5 {
        server.publish("application.submitted", "{}").await;
    }
    ok.wait_for(5, WAIT).await;
    for delivery in server.deliveries(&bad.id).await {
        server
            .wait_delivery(&delivery.id, WAIT, |d| d.status() == DeliveryStatus::Failed)
            .await;
    }
    let delivered = server.deliveries(&hook.id).await;
    assert_eq!(delivered.len(), 5);
    server.get_delivery(&delivered[0].id).await;

    // Held while paused, sent on resume; a retry and a replay go out again.
    server.pause(&hook.id).await;
    server.publish("application.submitted", "{}").await;
    server.resume(&hook.id).await;
    let mut webhooks = server.webhooks().await;
    webhooks
        .retry_delivery(authed(
            &server.admin_key,
            proto::RetryDeliveryRequest {
                id: delivered[0].id.clone(),
            },
        ))
        .await
        .expect("retry");
    webhooks
        .replay_deliveries(authed(
            &server.admin_key,
            proto::ReplayDeliveriesRequest {
                webhook_id: bad.id.clone(),
                since: Some(prost_types::Timestamp::default()),
                until: None,
            },
        ))
        .await
        .expect("replay");
    ok.wait_for(6, WAIT).await;
    server
        .events()
        .await
        .list_events(authed(
            &server.admin_key,
            proto::ListEventsRequest {
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("list events");
    webhooks
        .delete_webhook(authed(
            &server.admin_key,
            proto::DeleteWebhookRequest { id: bad.id.clone() },
        ))
        .await
        .expect("delete");

    server
        .server
        .shutdown()
        .await
        .expect("server stops cleanly");
    let after = sequential_scans(&stats).await;
    let _ = stats.close().await;
    server.db.drop_database().await;
    let read_whole: Vec<String> = after
        .iter()
        .zip(&before)
        .filter(|((_, a), (_, b))| a > b)
        .map(|((table, a), (_, b))| format!("{table}: {} sequential scans", a - b))
        .collect();
    assert!(
        read_whole.is_empty(),
        "queries without an index to serve them: {read_whole:?}"
    );
}

/// Sequential scans of each growing table so far, once no other session is connected to the database.
async fn sequential_scans(db: &DatabaseConnection) -> Vec<(String, i64)> {
    let others = "SELECT COUNT(*) AS n FROM pg_stat_activity \
                  WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let deadline = std::time::Instant::now() + WAIT;
    while count(db, others).await > 0 {
        if std::time::Instant::now() > deadline {
            let who = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT pid::text || ' ' || COALESCE(application_name, '') || ' ' || COALESCE(state, '') \
                     || ' ' || COALESCE(query, '') AS s FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                ))
                .await
                .expect("sessions");
            let who: Vec<String> = who.iter().filter_map(|r| r.try_get("", "s").ok()).collect();
            panic!("the server's sessions did not end: {who:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut scans = Vec::new();
    for table in GROWING {
        let sql = format!(
            "SELECT COALESCE(SUM(seq_scan), 0)::bigint AS n FROM pg_stat_user_tables WHERE relname = '{table}'"
        );
        scans.push((table.to_owned(), count(db, &sql).await));
    }
    scans
}
