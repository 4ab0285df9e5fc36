//! Fair shares of the delivery daemon and of the server's leases: endpoints that answer late or never, however
//! many and whoever's, do not hold up the deliveries of other webhooks, accounts and hosts. A real server with its embedded daemon,
//! real receivers on loopback, on SQLite and PostgreSQL.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::{Duration, Instant};

use common::{
    count, fast_delivery,
    receiver::{always, Receiver, Reply},
    Backend, TestServer,
};

on_both_databases!(
    a_slow_endpoint_does_not_delay_another,
    one_accounts_dead_endpoints_do_not_slow_another_account,
    many_accounts_dead_endpoints_do_not_take_the_prompt_slots,
    one_accounts_many_webhooks_hold_at_most_its_share_of_the_leases,
);

const WAIT: Duration = Duration::from_secs(20);

/// `n` receivers, each a host of its own, that never answer within a test.
async fn dead_hosts(n: usize) -> Vec<Receiver> {
    let mut dead = Vec::with_capacity(n);
    for _ in 0..n {
        dead.push(Receiver::http(always(Reply::ok().delay(Duration::from_secs(60)))).await);
    }
    dead
}

/// `webhooks` webhooks of the test's account spread over the `dead` hosts, and `events` events to all of them.
async fn dead_webhooks(server: &TestServer, dead: &[Receiver], webhooks: usize, events: usize) {
    for n in 0..webhooks {
        server
            .create_webhook(
                &dead[n % dead.len()].url(&format!("/hook/{n}")),
                &["offer.*"],
            )
            .await;
    }
    for _ in 0..events {
        server.publish("offer.accepted", "{}").await;
    }
}

/// The requests the `dead` hosts have been sent between them.
fn sent_to(dead: &[Receiver]) -> usize {
    dead.iter().map(|host| host.requests().len()).sum()
}

/// Waits until the `dead` hosts have been sent at least `n` requests between them.
async fn wait_until_sent(dead: &[Receiver], n: usize) {
    let deadline = Instant::now() + WAIT;
    while sent_to(dead) < n {
        assert!(
            Instant::now() < deadline,
            "the dead endpoints were sent {} requests, not {n}",
            sent_to(dead)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Another account, with a webhook at `healthy`: each of its five deliveries arrives within a second of its
/// publish, whatever the dead endpoints hold.
async fn another_account_is_served_at_once(server: &TestServer, healthy: &Receiver) {
    let other_admin = server
        .key(kit_webhooks_server::core::Role::Admin, Some("other"))
        .await;
    server
        .create_webhook_as(&other_admin, &healthy.url("/"), &["offer.*"])
        .await;
    for n in 0..5 {
        let published = Instant::now();
        server.publish_to("other", "offer.accepted", "{}").await;
        healthy.wait_for(n + 1, WAIT).await;
        let latency = published.elapsed();
        assert!(
            latency < Duration::from_secs(1),
            "the other account's delivery {n} took {latency:?}"
        );
    }
}

/// Twenty webhooks of one account point at hosts that never answer, with enough leases to fill every request
/// slot of the daemon; another account's deliveries still go out at once, because one account (and one
/// host) holds at most its share of the slots.
async fn one_accounts_dead_endpoints_do_not_slow_another_account(backend: Backend) {
    let dead = dead_hosts(4).await;
    let healthy = Receiver::http(always(Reply::ok())).await;
    let server = TestServer::start_with(backend, |config| {
        fast_delivery(config, None);
        config.request_timeout = Duration::from_secs(5);
        config.lease_margin = Duration::from_secs(5);
    })
    .await;
    // Five webhooks on each of four dead hosts, so that no host's share alone binds them. Twenty events to
    // twenty webhooks: 400 deliveries, 16 leases per webhook, far more than 64 slots.
    dead_webhooks(&server, &dead, 20, 20).await;
    for host in &dead {
        host.wait_for(4, WAIT).await;
    }

    another_account_is_served_at_once(&server, &healthy).await;
    server.stop().await;
}

async fn a_slow_endpoint_does_not_delay_another(backend: Backend) {
    let slow = Receiver::http(always(Reply::ok().delay(Duration::from_millis(1500)))).await;
    let fast = Receiver::http(always(Reply::ok())).await;
    let server = TestServer::start_with(backend, |config| {
        fast_delivery(config, None);
        config.request_timeout = Duration::from_secs(5);
    })
    .await;
    server
        .create_webhook(&slow.url("/"), &["interview.*"])
        .await;
    server.create_webhook(&fast.url("/"), &["offer.*"]).await;
    for _ in 0..40 {
        server.publish("interview.scheduled", "{}").await;
    }
    slow.wait_for(16, WAIT).await;
    let published = Instant::now();
    server.publish("offer.accepted", "{}").await;
    fast.wait_for(1, WAIT).await;
    let took = published.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "the fast endpoint waited {took:?} behind the slow one"
    );
    assert!(
        slow.requests().len() <= 16,
        "at most 16 in flight to one endpoint, got {}",
        slow.requests().len()
    );
    server.stop().await;
}

/// Six accounts' endpoints never answer, each account on a host of its own: together their shares (half the
/// daemon's eight slots each) are three times the slots. Their requests move to the slow lane once
/// unanswered for a quarter second, and their webhooks' next requests start there, so another account's
/// deliveries still go out at once; each dead account still has at most its share outstanding.
async fn many_accounts_dead_endpoints_do_not_take_the_prompt_slots(backend: Backend) {
    let dead = dead_hosts(6).await;
    let healthy = Receiver::http(always(Reply::ok())).await;
    let server = TestServer::start_with(backend, |config| {
        fast_delivery(config, None);
        config.request_timeout = Duration::from_secs(10);
        config.lease_margin = Duration::from_secs(5);
        if let Some(daemon) = config.embedded_daemon.as_mut() {
            daemon.max_in_flight = 8;
            daemon.max_slow_in_flight = Some(64);
            // The account's share binds, not its host's.
            daemon.max_connections_per_host = Some(8);
        }
    })
    .await;
    for (n, host) in dead.iter().enumerate() {
        let account = format!("dead-{n}");
        let admin = server
            .key(kit_webhooks_server::core::Role::Admin, Some(&account))
            .await;
        for hook in 0..2 {
            server
                .create_webhook_as(&admin, &host.url(&format!("/hook/{hook}")), &["offer.*"])
                .await;
        }
        // Five events to two webhooks: ten deliveries, more than the account's share of four.
        for _ in 0..5 {
            server.publish_to(&account, "offer.accepted", "{}").await;
        }
    }
    // The first wave takes every prompt slot; a quarter second later it has moved to the slow lane.
    wait_until_sent(&dead, 8).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    another_account_is_served_at_once(&server, &healthy).await;
    for (n, host) in dead.iter().enumerate() {
        host.wait_for(4, WAIT).await;
        assert_eq!(host.busiest(), 4, "dead account {n}: its share, not more");
    }
    server.stop().await;
}

/// Ten webhooks of one account point at hosts that never answer: each under its own cap (16), together they
/// would hold 160 leases, more than the daemon's share for one account (32 of its 64 slots). The server lends
/// the account at most `max_leases_per_account` (24 here): that many requests go out to its endpoints, the
/// rest of its deliveries stay pending, and another account's deliveries still go out at once.
async fn one_accounts_many_webhooks_hold_at_most_its_share_of_the_leases(backend: Backend) {
    let dead = dead_hosts(4).await;
    let healthy = Receiver::http(always(Reply::ok())).await;
    let server = TestServer::start_with(backend, |config| {
        fast_delivery(config, None);
        config.request_timeout = Duration::from_secs(10);
        config.lease_margin = Duration::from_secs(5);
        config.max_leases_per_account = 24;
    })
    .await;
    // Ten events to ten webhooks: 100 deliveries.
    dead_webhooks(&server, &dead, 10, 10).await;
    wait_until_sent(&dead, 24).await;
    // Time for more to go out, were more leased.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sent_to(&dead),
        24,
        "the account's share of leases, not more"
    );
    let db = server.server.store.reader();
    let status = |status: &str| {
        format!("SELECT COUNT(*) AS n FROM deliveries WHERE account_id = 'default' AND status = '{status}'")
    };
    assert_eq!(count(db, &status("sending")).await, 24);
    assert_eq!(count(db, &status("pending")).await, 76);

    another_account_is_served_at_once(&server, &healthy).await;
    server.stop().await;
}
