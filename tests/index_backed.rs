//! Every query on the delivery path is index-backed.
//!
//! On PostgreSQL that is checked by what it counts: the server's sessions plan with `enable_seqscan` off, so a
//! query that no index can serve still runs, as a sequential scan, and nothing else would notice it until the
//! table is large. The test runs the whole life of a webhook's deliveries through the API and the embedded
//! daemon and asserts that none of it read the growing tables (`events`, `deliveries`, `attempts`) whole.
//!
//! SQLite keeps no such counters, so there the same run records every statement the server's connections
//! prepare (SQLite's statement trace, installed on each of them), and each is then planned with
//! `EXPLAIN QUERY PLAN`: none may scan a growing table, only search it through an index.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]
// SQLite's statement trace is a C callback.
#![allow(unsafe_code)]

mod common;

use std::time::Duration;

use common::{
    authed, count, fast_delivery,
    receiver::{always, Receiver, Reply},
    Backend, TestServer,
};
use kit_webhooks::proto::{self, DeliveryStatus};
use sea_orm::{
    sqlx::{self, Connection},
    ConnectionTrait, Database, DatabaseConnection, Statement,
};

const WAIT: Duration = Duration::from_secs(20);
/// The tables that grow with traffic; `webhooks` and `api_keys` stay small.
const GROWING: [&str; 3] = ["events", "deliveries", "attempts"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_delivery_path_reads_no_growing_table_whole() {
    if std::env::var("KIT_TEST_DATABASE_URL").is_err() {
        eprintln!("KIT_TEST_DATABASE_URL is not set: skipping the PostgreSQL run");
        return;
    }
    let server = TestServer::start_with(Backend::Postgres, with_quick_retries).await;
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

    delivery_path(&server).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_delivery_path_searches_growing_tables_by_index() {
    let server = TestServer::start_with(Backend::Sqlite, with_quick_retries).await;
    let store = &server.server.store;
    trace_statements(store.writer().get_sqlite_connection_pool()).await;
    trace_statements(store.reader().get_sqlite_connection_pool()).await;

    delivery_path(&server).await;

    server
        .server
        .shutdown()
        .await
        .expect("server stops cleanly");
    let statements: Vec<String> = traced::STATEMENTS
        .lock()
        .expect("statements")
        .iter()
        .cloned()
        .collect();
    // A run that recorded nothing would pass whatever the plans: the claim's read must be among them.
    assert!(
        statements
            .iter()
            .any(|sql| sql.contains("next_attempt_at <=")),
        "the trace recorded no claim: {statements:?}"
    );
    let mut db = sqlx::SqliteConnection::connect(&server.db.url)
        .await
        .expect("open the database");
    let mut scans = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for sql in &statements {
        // Unbound parameters plan as NULL; SQLite (with no statistics gathered) plans the same whatever
        // their values.
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&mut db)
                .await
                .unwrap_or_else(|err| panic!("cannot plan `{sql}`: {err}"));
        for (_, _, _, detail) in plan {
            used.insert(detail.clone());
            let scanned = GROWING.iter().any(|table| {
                detail == format!("SCAN {table}") || detail.starts_with(&format!("SCAN {table} "))
            });
            if scanned {
                scans.push(format!("{detail} in `{sql}`"));
            }
        }
    }
    let _ = db.close().await;
    assert!(
        scans.is_empty(),
        "statements that read a growing table whole: {scans:#?}"
    );
    // Held deliveries are let go through their index.
    let expected = "SEARCH deliveries USING INDEX deliveries_held_by_webhook (webhook_id=?)";
    assert!(
        used.contains(expected),
        "no plan did `{expected}`: {used:#?}"
    );
}

/// Records every statement each connection of `pool` prepares from now on (all of its connections: they are
/// opened here if they were not yet, and SQLite keeps the trace for the connection's life).
async fn trace_statements(pool: &sqlx::SqlitePool) {
    let mut held = Vec::new();
    for _ in 0..pool.options().get_max_connections() {
        let mut connection = pool.acquire().await.expect("a connection");
        {
            let mut handle = connection.lock_handle().await.expect("the raw handle");
            // SAFETY: the handle is a live connection, locked for this call; the callback only reads the
            // statement it is given, during the callback.
            let code = unsafe {
                libsqlite3_sys::sqlite3_trace_v2(
                    handle.as_raw_handle().as_ptr(),
                    libsqlite3_sys::SQLITE_TRACE_STMT as std::ffi::c_uint,
                    Some(traced::record),
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(code, libsqlite3_sys::SQLITE_OK, "installing the trace");
        }
        held.push(connection);
    }
}

mod traced {
    use std::{
        collections::BTreeSet,
        ffi::{c_int, c_uint, c_void, CStr},
        sync::Mutex,
    };

    /// Every statement text the traced connections prepared.
    pub static STATEMENTS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

    /// SQLite's trace callback: for `SQLITE_TRACE_STMT`, `statement` is the statement starting to run.
    pub unsafe extern "C" fn record(
        kind: c_uint,
        _context: *mut c_void,
        statement: *mut c_void,
        _text: *mut c_void,
    ) -> c_int {
        if kind == libsqlite3_sys::SQLITE_TRACE_STMT as c_uint {
            // SAFETY: SQLite passes the running statement; its text lives as long as the statement.
            let sql = unsafe { libsqlite3_sys::sqlite3_sql(statement.cast()) };
            if !sql.is_null() {
                // SAFETY: a NUL-terminated string owned by the statement, copied before returning.
                let sql = unsafe { CStr::from_ptr(sql) }
                    .to_string_lossy()
                    .into_owned();
                if let Ok(mut statements) = STATEMENTS.lock() {
                    statements.insert(sql);
                }
            }
        }
        0
    }
}

/// The server's retries 20 ms apart, so that the failing webhook's deliveries fail within the test.
fn with_quick_retries(config: &mut kit_webhooks_server::Config) {
    fast_delivery(config, None);
    config.retry.schedule = vec![Duration::from_millis(20); 2];
    // Low enough that a burst to a slow endpoint reaches it (`delivery_path`).
    config.max_in_flight_per_webhook = 2;
}

/// The whole life of a webhook's deliveries, through the API and the embedded daemon: delivered, failed
/// after retries, held while paused and sent on resume, retried and replayed, held behind a lease cap and
/// let go, listed, deleted with their webhook.
async fn delivery_path(server: &TestServer) {
    let ok = Receiver::http(always(Reply::ok())).await;
    let failing = Receiver::http(always(Reply::status(500))).await;
    let (hook, _) = server
        .create_webhook(&ok.url("/"), &["application.*"])
        .await;
    let (bad, _) = server
        .create_webhook(&failing.url("/"), &["application.*"])
        .await;
    for _ in 0..4 {
        server.publish("application.submitted", "{}").await;
    }
    // A keyed event, then its key again: the second publish looks the first up by its key.
    for _ in 0..2 {
        server
            .publish_keyed("default", "application.submitted", "{}", "once")
            .await
            .expect("publish with a key");
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
    // A slow webhook at its lease cap: the claims hold its backlog, its reports let it go.
    let slow = Receiver::http(always(Reply::ok().delay(Duration::from_millis(200)))).await;
    server
        .create_webhook(&slow.url("/"), &["interview.*"])
        .await;
    futures::future::join_all((0..6).map(|_| server.publish("interview.scheduled", "{}"))).await;
    slow.wait_for(6, WAIT).await;
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
