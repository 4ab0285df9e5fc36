//! The daemon as a separate process, the way SREs run it as a sidecar: it delivers, it survives `kill -9`
//! and server restarts without losing an event, and it stops gracefully on SIGTERM.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    collections::HashSet,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    receiver::{always, Receiver, Reply},
    signals::{exit_within, terminate},
    Backend, TestServer,
};
use kit_webhooks::proto::DeliveryStatus;
use kit_webhooks_server::{
    core::Role,
    store::entity::{delivery, event},
};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

on_both_databases!(
    kill_9_mid_stream_loses_nothing,
    sigterm_finishes_in_flight_deliveries,
    a_second_sigterm_or_the_grace_ends_the_daemon_at_once,
    server_restarts_and_crashes_lose_nothing,
    a_graceful_server_restart_sends_nothing_twice,
    an_ordered_webhook_keeps_its_order_through_kill_9,
);

const WAIT: Duration = Duration::from_secs(60);

fn spawn_daemon(server: &str, token: &str) -> Child {
    spawn_daemon_with(server, token, &[])
}

fn spawn_daemon_with(server: &str, token: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kit-webhooks-daemon"))
        .args([
            "--server",
            server,
            "--token",
            token,
            "--allow-network",
            "127.0.0.0/8",
            "--max-in-flight",
            "8",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kit-webhooks-daemon")
}

async fn server_for_daemons(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |config| {
        common::fast_delivery(config, None);
        config.embedded_daemon = None;
    })
    .await
}

/// Waits until every one of `event_ids` reached the receiver at least once.
async fn wait_all_received(receiver: &Receiver, event_ids: &HashSet<String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen: HashSet<String> = receiver
            .requests()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        let missing = event_ids.difference(&seen).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} events never arrived",
            event_ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_all_succeeded(server: &TestServer, expected: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let done = delivery::Entity::find()
            .filter(delivery::Column::Status.eq("succeeded"))
            .count(server.server.store.reader())
            .await
            .expect("count");
        if done == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {expected} deliveries succeeded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish_many(server: &TestServer, n: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for i in 0..n {
        let reply = server
            .publish("interview.completed", &format!(r#"{{"n": {i}}}"#))
            .await;
        ids.insert(reply.event.expect("event").id);
    }
    ids
}

async fn kill_9_mid_stream_loses_nothing(backend: Backend) {
    let receiver = Receiver::http(always(Reply::ok().delay(Duration::from_millis(100)))).await;
    let server = server_for_daemons(backend).await;
    server
        .create_webhook(&receiver.url("/"), &["interview.*"])
        .await;
    let token = server.key(Role::Daemon, None).await;
    let ids = publish_many(&server, 60).await;

    let mut first = spawn_daemon(&server.server.url(), &token);
    receiver.wait_for(10, WAIT).await;
    first.kill().expect("kill -9");
    let _ = first.wait();
    let before = receiver.requests().len();
    assert!(
        before < 60,
        "the first daemon must die mid-stream (it had sent {before})"
    );

    let mut second = spawn_daemon(&server.server.url(), &token);
    wait_all_received(&receiver, &ids).await;
    wait_all_succeeded(&server, 60).await;
    let _ = second.kill();
    let _ = second.wait();
    server.stop().await;
}

/// An ordered webhook whose endpoint fails now and then, and whose daemon is killed mid-sequence: the
/// receiver sees every event, one request at a time, in the order they were published; a delivery may
/// come again (retried, or resent after the kill), never one ahead of its turn.
async fn an_ordered_webhook_keeps_its_order_through_kill_9(backend: Backend) {
    let flaky = |_: &common::receiver::Received, n: usize| match n % 7 {
        3 => Reply::status(503),
        _ => Reply::ok().delay(Duration::from_millis(60)),
    };
    let receiver = Receiver::http(std::sync::Arc::new(flaky)).await;
    let server = server_for_daemons(backend).await;
    let created = server
        .webhooks()
        .await
        .create_webhook(common::authed(
            &server.admin_key,
            kit_webhooks::proto::CreateWebhookRequest {
                url: receiver.url("/"),
                events: vec!["interview.*".into()],
                ordering: kit_webhooks::proto::Ordering::Ordered as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        created.webhook.expect("webhook").ordering(),
        kit_webhooks::proto::Ordering::Ordered
    );
    let token = server.key(Role::Daemon, None).await;
    let ids = publish_many(&server, 30).await;

    let mut first = spawn_daemon(&server.server.url(), &token);
    receiver.wait_for(8, WAIT).await;
    first.kill().expect("kill -9");
    let _ = first.wait();
    let mut second = spawn_daemon(&server.server.url(), &token);
    wait_all_received(&receiver, &ids).await;
    wait_all_succeeded(&server, 30).await;
    let _ = second.kill();
    let _ = second.wait();

    let sequence: Vec<u64> = receiver
        .requests()
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
            body["data"]["n"].as_u64().expect("n")
        })
        .collect();
    assert_eq!(sequence.first(), Some(&0), "{sequence:?}");
    for pair in sequence.windows(2) {
        assert!(
            pair[1] == pair[0] || pair[1] == pair[0] + 1,
            "{} came after {}: {sequence:?}",
            pair[1],
            pair[0]
        );
    }
    assert_eq!(sequence.last(), Some(&29), "{sequence:?}");
    assert!(
        sequence.len() > 30,
        "the failures were retried: {sequence:?}"
    );
    assert_eq!(receiver.busiest(), 1, "one request at a time");
    server.stop().await;
}

async fn sigterm_finishes_in_flight_deliveries(backend: Backend) {
    let receiver = Receiver::http(always(Reply::ok().delay(Duration::from_millis(1500)))).await;
    let server = server_for_daemons(backend).await;
    server
        .create_webhook(&receiver.url("/"), &["interview.*"])
        .await;
    let token = server.key(Role::Daemon, None).await;
    publish_many(&server, 5).await;
    let mut daemon = spawn_daemon(&server.server.url(), &token);
    receiver.wait_for(5, WAIT).await;
    let status = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = daemon.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the daemon did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "clean exit");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "it waited for the in-flight requests"
    );
    // Every in-flight attempt was reported before the daemon left: all succeeded on their first attempt.
    let rows = delivery::Entity::find()
        .all(server.server.store.reader())
        .await
        .expect("deliveries");
    assert_eq!(rows.len(), 5);
    for row in rows {
        assert_eq!(row.status, delivery::DeliveryStatus::Succeeded, "{row:?}");
        assert_eq!(row.attempt_count, 1);
    }
    server.stop().await;
}

/// A daemon stopping while its endpoint does not answer: `/readyz` turns 503 at once, and it waits for the
/// request; a second SIGTERM ends it at once (exit code 1), and without one it exits 0 when
/// `--shutdown-grace` is over. Either way the delivery is not lost: the server puts it back in the queue when
/// the daemon's stream ends.
async fn a_second_sigterm_or_the_grace_ends_the_daemon_at_once(backend: Backend) {
    let hanging = Receiver::http(always(Reply::ok().delay(Duration::from_secs(120)))).await;
    let server = TestServer::start_with(backend, |config| {
        common::fast_delivery(config, None);
        config.embedded_daemon = None;
        // Longer than the test waits: the request is in flight when the daemon is told to stop.
        config.request_timeout = Duration::from_secs(60);
    })
    .await;
    server
        .create_webhook(&hanging.url("/"), &["interview.*"])
        .await;
    let token = server.key(Role::Daemon, None).await;
    publish_many(&server, 1).await;
    for (round, (grace, second_signal)) in [("60s", true), ("1s", false)].into_iter().enumerate() {
        let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], common::monitoring::free_port()));
        let mut daemon = spawn_daemon_with(
            &server.server.url(),
            &token,
            &[
                "--shutdown-grace",
                grace,
                "--metrics-listen",
                &metrics.to_string(),
            ],
        );
        hanging.wait_for(round + 1, WAIT).await;
        common::monitoring::wait_for_status(metrics, "/readyz", 200, WAIT);
        terminate(&daemon);
        let asked = Instant::now();
        let body = common::monitoring::wait_for_status(metrics, "/readyz", 503, WAIT);
        assert!(body.contains("stopping"), "{body}");
        if second_signal {
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                daemon.try_wait().expect("wait").is_none(),
                "it waits for the request"
            );
            terminate(&daemon);
            let exit = exit_within(&mut daemon, Duration::from_secs(3));
            assert_eq!(exit.code(), Some(1), "a second SIGTERM exits at once");
        } else {
            let exit = exit_within(&mut daemon, Duration::from_secs(10));
            assert!(exit.success(), "the grace over, a clean exit: {exit}");
            assert!(
                asked.elapsed() >= Duration::from_millis(900),
                "it waited the grace"
            );
        }
    }
    // Neither stop reported the attempt: each time the stream ended, the server put the delivery back in the
    // queue (the second daemon got it again), to be sent again. The server sees the last stream end a moment
    // after the process exits, so the hand-back is waited for.
    let deadline = Instant::now() + WAIT;
    let rows = loop {
        let rows = delivery::Entity::find()
            .all(server.server.store.reader())
            .await
            .expect("deliveries");
        assert_eq!(rows.len(), 1);
        if rows[0].status == delivery::DeliveryStatus::Pending || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        rows[0].status,
        delivery::DeliveryStatus::Pending,
        "{:?}",
        rows[0]
    );
    assert_eq!(rows[0].attempt_count, 0);
    server.stop().await;
}

async fn server_restarts_and_crashes_lose_nothing(backend: Backend) {
    let receiver = Receiver::http(always(Reply::ok().delay(Duration::from_millis(50)))).await;
    let first = server_for_daemons(backend).await;
    first
        .create_webhook(&receiver.url("/"), &["interview.*"])
        .await;
    let token = first.key(Role::Daemon, None).await;
    let mut ids = publish_many(&first, 40).await;
    let url = first.server.url();
    let mut daemon = spawn_daemon(&url, &token);
    receiver.wait_for(5, WAIT).await;

    // What a crashed server leaves behind: a lease it never released, long expired.
    let db = first.server.store.writer();
    let orphan_event = event::ActiveModel {
        id: Set("evt_01JD0000000000000000000000".into()),
        account_id: Set("default".into()),
        r#type: Set("interview.completed".into()),
        data_json: Set("{}".into()),
        idempotency_key: Set(None),
        created_at: Set(kit_webhooks_server::core::time::now_ms()),
    }
    .insert(db)
    .await
    .expect("event");
    let hook_id = delivery::Entity::find()
        .one(db)
        .await
        .expect("read")
        .expect("a delivery")
        .webhook_id;
    delivery::ActiveModel {
        id: Set("dlv_01JD0000000000000000000000".into()),
        webhook_id: Set(hook_id),
        account_id: Set("default".into()),
        event_id: Set(orphan_event.id.clone()),
        event_type: Set("interview.completed".into()),
        status: Set(delivery::DeliveryStatus::Sending),
        attempt_count: Set(0),
        next_attempt_at: Set(Some(0)),
        lease_id: Set(Some("lse_01JD0000000000000000000000".into())),
        lease_owner: Set(Some("dst_01JD0000000000000000000000".into())),
        lease_expires_at: Set(Some(1)),
        created_at: Set(0),
        completed_at: Set(None),
        ordered: Set(false),
        test: Set(false),
    }
    .insert(db)
    .await
    .expect("orphaned lease");
    ids.insert(orphan_event.id);

    // Restart mid-stream: a new server on the same address and database.
    let restarted = first.restart().await;
    // The daemon reconnects by itself; events published after the restart flow too.
    ids.extend(publish_many(&restarted, 5).await);
    wait_all_received(&receiver, &ids).await;
    wait_all_succeeded(&restarted, 46).await;
    let orphan = restarted
        .get_delivery("dlv_01JD0000000000000000000000")
        .await;
    assert_eq!(
        orphan.status(),
        DeliveryStatus::Succeeded,
        "the crashed server's lease expired and was delivered"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
    restarted.stop().await;
}

/// A rolling restart: the server stops (gracefully) while its daemon is sending, and a new one takes over the
/// database. What the daemon had started is finished and recorded once; what it had not started is
/// handed back and sent once, by the next server's stream. Nothing arrives twice.
async fn a_graceful_server_restart_sends_nothing_twice(backend: Backend) {
    let receiver = Receiver::http(always(Reply::ok().delay(Duration::from_millis(400)))).await;
    let first = server_for_daemons(backend).await;
    first
        .create_webhook(&receiver.url("/"), &["interview.*"])
        .await;
    let token = first.key(Role::Daemon, None).await;
    let ids = publish_many(&first, 40).await;
    let mut daemon = spawn_daemon(&first.server.url(), &token);
    // Eight requests in flight (the daemon's slots), the other leases held ready.
    receiver.wait_for(8, WAIT).await;
    let restarted = first.restart().await;
    wait_all_received(&receiver, &ids).await;
    wait_all_succeeded(&restarted, 40).await;
    let mut times: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for request in receiver.requests() {
        *times
            .entry(request.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    let rows = delivery::Entity::find()
        .all(restarted.server.store.reader())
        .await
        .expect("deliveries");
    for row in rows {
        assert_eq!(
            row.attempt_count, 1,
            "one attempt each, every one recorded: {row:?}"
        );
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    restarted.stop().await;
}

/// Settings no server accepts are refused at start, with the reason, instead of retrying forever.
#[test]
fn settings_no_server_accepts_are_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_kit-webhooks-daemon"))
        .args(["--server", "http://127.0.0.1:1", "--token", "kit_x"])
        .args(["--max-in-flight", "99000", "--prefetch", "2048"])
        .output()
        .expect("run the daemon");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--max-in-flight (99000) + --prefetch (2048)"),
        "{stderr}"
    );
}
