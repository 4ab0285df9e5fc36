//! A small run of `kit-webhooks bench`, so the harness keeps working: it starts the real server and daemon
//! binaries (built beside it by `cargo test --workspace`), delivers every event to its receivers with valid
//! signatures, and writes its figures as JSON. Benchmarks proper are not part of the suite.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::{Backend, TestDatabase, TestServer};
use serde_json::Value;

on_both_databases!(
    bench_smoke_run_delivers_everything,
    bench_targets_a_running_deployment
);

async fn bench_smoke_run_delivers_everything(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let figures = run_bench(&db.url, 1000, &[]).await;
    assert_eq!(figures["metrics"], false);
    assert_eq!(figures["deliveries_expected"], 600);
    assert_eq!(figures["deliveries_received"], 600);
    assert_eq!(figures["duplicates"], 0);
    assert_eq!(figures["bad_signatures"], 0);
    assert_eq!(figures["backlog"], 1000);
    for field in [
        "raw_ceiling_per_second",
        "raw_ceiling_before_per_second",
        "raw_ceiling_after_per_second",
        "deliveries_per_second",
        "ratio_to_ceiling",
        "publish_calls_per_second",
    ] {
        assert!(
            figures[field].as_f64().expect(field) > 0.0,
            "{field}: {figures}"
        );
    }
    assert!(
        figures["latency_ms"]["p99"].as_f64().expect("p99")
            >= figures["latency_ms"]["p50"].as_f64().expect("p50")
    );
    assert!(
        figures["server"]["peak_rss_mib"]
            .as_f64()
            .expect("server RSS")
            > 0.0
    );
    assert!(figures["daemon"]["cpu_seconds"].as_f64().is_some());
    // The SQLite writer connection's thread, found by its name: part of the server's CPU, on SQLite only.
    let writer = &figures["server_writer_cpu_seconds"];
    match backend {
        Backend::Sqlite => {
            let server = figures["server"]["cpu_seconds"]
                .as_f64()
                .expect("server CPU");
            let writer = writer.as_f64().expect("the SQLite writer thread's CPU");
            assert!((0.0..=server).contains(&writer), "{figures}");
        }
        Backend::Postgres => assert!(writer.is_null(), "{figures}"),
    }
    // Where the machine's CPU went, per delivery: the processes' parts and the rest make the whole.
    let cost = &figures["cost_per_delivery_us"];
    let machine = cost["machine"].as_f64().expect("the machine's cost");
    let parts: f64 = ["server", "daemon", "postgres", "rest"]
        .iter()
        .filter_map(|part| cost[part].as_f64())
        .sum();
    assert!(machine > 0.0 && (parts - machine).abs() < 1e-6, "{figures}");
    assert!(
        cost["server"].is_f64() && cost["daemon"].is_f64(),
        "{figures}"
    );
    assert_eq!(
        cost["postgres"].is_f64(),
        matches!(backend, Backend::Postgres),
        "{figures}"
    );
    assert!(
        figures["ceiling_cost_per_request_us"]
            .as_f64()
            .expect("a raw request's cost")
            > 0.0
    );

    // Again on the same database, as an SRE re-running it against their PostgreSQL would: the server finds
    // keys already there, and the first run's webhooks (their receivers gone) must get none of this run's
    // events. This time with the processes' metrics served and scraped.
    let again = run_bench(&db.url, 0, &["--metrics"]).await;
    assert_eq!(again["metrics"], true);
    assert_eq!(again["deliveries_received"], 600, "{again}");
    assert_eq!(again["duplicates"], 0);
    assert_eq!(again["bad_signatures"], 0);
    assert_eq!(again["attempts_per_delivery"], 1.0, "{again}");
    assert_eq!(again["tls"], false);
    assert_eq!(again["tls_handshakes_per_delivery"], Value::Null);

    // Over HTTPS: receivers with the run's CA, which the daemon trusts; the ceiling over HTTPS too; the
    // daemon keeps its connections, so far fewer handshakes than deliveries.
    let tls = run_bench(&db.url, 0, &["--tls"]).await;
    assert_eq!(tls["tls"], true);
    assert_eq!(tls["deliveries_received"], 600, "{tls}");
    assert_eq!(tls["bad_signatures"], 0);
    assert!(tls["raw_ceiling_per_second"].as_f64().expect("ceiling") > 0.0);
    let handshakes = tls["tls_handshakes_per_delivery"]
        .as_f64()
        .expect("handshakes per delivery");
    assert!(handshakes > 0.0 && handshakes < 0.5, "{tls}");
    assert_eq!(
        tls["http2_requests"], 0,
        "the receivers offered HTTP/1.1 only"
    );

    // The production shape, small: 20 accounts of 2 webhooks, each event to one account's webhooks only,
    // each receiver a host of its own, over HTTPS with HTTP/2 offered (every delivery then comes in it), the
    // accounts drawn by Zipf's law; published 8 events a call.
    let shaped = run_bench(
        &db.url,
        0,
        &[
            "--accounts",
            "20",
            "--webhooks-per-account",
            "2",
            "--skew",
            "1",
            "--hosts",
            "--tls",
            "--http2",
            "--batch",
            "8",
        ],
    )
    .await;
    assert_eq!(shaped["accounts"], 20);
    assert_eq!(
        shaped["batch"], 8,
        "published with PublishEvents, 8 at a time"
    );
    assert_eq!(shaped["hosts"], true);
    assert_eq!(shaped["deliveries_expected"], 400, "{shaped}");
    assert_eq!(shaped["deliveries_received"], 400, "{shaped}");
    assert!(
        shaped["http2_requests"].as_u64().expect("HTTP/2 requests") >= 400,
        "{shaped}"
    );
    assert_eq!(shaped["duplicates"], 0);
    assert_eq!(shaped["bad_signatures"], 0);

    // Noisy neighbours, small: two more accounts of three webhooks whose endpoints never answer. The daemon's
    // own shares hold (eight of its sixteen slots per account), so without its slow lane the two would take
    // every slot until the 15 s request timeout; the others' deliveries all arrive, and promptly.
    let noisy = run_bench(
        &db.url,
        0,
        &[
            "--accounts",
            "20",
            "--webhooks-per-account",
            "2",
            "--slow-accounts",
            "2",
            "--slow-webhooks-per-account",
            "3",
            "--slow-latency",
            "hang",
            "--hosts",
            "--linger",
            "1s",
        ],
    )
    .await;
    let expected = noisy["deliveries_expected"].as_u64().expect("expected");
    let slow = noisy["slow_deliveries"].as_u64().expect("slow deliveries");
    assert_eq!(noisy["slow_accounts"], 2);
    assert_eq!(noisy["deliveries_received"], expected, "{noisy}");
    assert_eq!(expected % 2, 0);
    assert_eq!(slow % 3, 0);
    assert_eq!(
        expected / 2 + slow / 3,
        200,
        "every event went to one account: {noisy}"
    );
    assert!(slow > 0, "some events went to the slow accounts: {noisy}");
    let sent = noisy["slow_requests"].as_u64().expect("slow requests");
    assert!(sent > 0 && sent <= slow, "{noisy}");
    let max = noisy["latency_ms"]["max"].as_f64().expect("max latency");
    assert!(
        max < 10_000.0,
        "the others waited for the slow ones: {noisy}"
    );

    let stored = deliveries_stored(&db.url).await;
    assert_eq!(
        stored,
        1000 + 600 + 600 + 600 + 400 + expected as i64 + slow as i64,
        "backlog and five runs' own deliveries"
    );
    db.drop_database().await;
}

async fn deliveries_stored(database_url: &str) -> i64 {
    let db = sea_orm::Database::connect(database_url)
        .await
        .expect("connect");
    let n = common::count(&db, "SELECT COUNT(*) AS n FROM deliveries").await;
    let _ = db.close().await;
    n
}

/// A small started-system bench run on `database_url` (3 webhooks × 200 events), with `backlog` deliveries
/// of history seeded first and `extra` arguments; returns its JSON figures.
async fn run_bench(database_url: &str, backlog: usize, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let url = database_url.to_owned();
    let json_path = json.clone();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kit-webhooks"))
            .args([
                "bench",
                "--events",
                "200",
                "--webhooks",
                "3",
                "--receivers",
                "2",
                "--concurrency",
                "16",
            ])
            .args([
                "--publishers",
                "8",
                "--ceiling-duration",
                "200ms",
                "--timeout",
                "60s",
            ])
            .args(["--backlog", &backlog.to_string(), "--database-url", &url])
            .args(&extra)
            .arg("--json")
            .arg(&json_path)
            .output()
            .expect("run kit-webhooks bench")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("end to end") && table.contains("raw ceiling"),
        "{table}"
    );
    serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON file")).expect("JSON")
}

/// `--target`: an SRE benchmarks their own deployment (here a server with its embedded daemon).
async fn bench_targets_a_running_deployment(backend: Backend) {
    let server =
        TestServer::start_with(backend, |config| common::fast_delivery(config, None)).await;
    let (url, admin, publisher) = (
        server.server.url(),
        server.admin_key.clone(),
        server.publisher_key.clone(),
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kit-webhooks"))
            .args([
                "bench",
                "--events",
                "100",
                "--webhooks",
                "2",
                "--concurrency",
                "8",
                "--ceiling-duration",
                "200ms",
            ])
            .args(["--timeout", "60s", "--output", "json", "--target", &url])
            .args(["--admin-key", &admin, "--publisher-key", &publisher])
            .output()
            .expect("run kit-webhooks bench")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(figures["deliveries_received"], 200);
    assert_eq!(figures["bad_signatures"], 0);
    assert!(
        figures["server"].is_null() && figures["cost_per_delivery_us"]["server"].is_null(),
        "a deployment's processes are not measured: {figures}"
    );
    server.stop().await;
}

/// After `cargo install`, `kit-webhooks` sits apart from the server and the daemon: bench finds them on `PATH`,
/// and says where it looked when they are nowhere.
#[tokio::test]
async fn bench_finds_the_system_on_path() {
    let built = std::path::Path::new(env!("CARGO_BIN_EXE_kit-webhooks"));
    let installed = tempfile::tempdir().expect("temp dir");
    let cli = installed.path().join("kit-webhooks");
    std::fs::copy(built, &cli).expect("copy the CLI alone");
    let target_dir = built.parent().expect("target dir").to_path_buf();
    let run = move |path: std::ffi::OsString| {
        Command::new(&cli)
            .args([
                "bench",
                "--events",
                "20",
                "--webhooks",
                "1",
                "--receivers",
                "1",
            ])
            .args(["--ceiling-duration", "0s", "--timeout", "60s"])
            .env("PATH", path)
            .output()
            .expect("run the installed kit-webhooks")
    };
    let system_path = std::env::var_os("PATH").unwrap_or_default();
    let mut with_system = vec![target_dir.clone()];
    with_system.extend(std::env::split_paths(&system_path));
    let path = std::env::join_paths(with_system).expect("PATH");
    let found = {
        let run = run.clone();
        tokio::task::spawn_blocking(move || run(path))
            .await
            .expect("join")
    };
    assert!(
        found.status.success(),
        "bench with the system on PATH: {}",
        String::from_utf8_lossy(&found.stderr)
    );
    let nowhere =
        tokio::task::spawn_blocking(move || run(std::ffi::OsString::from("/nonexistent")))
            .await
            .expect("join");
    assert!(!nowhere.status.success());
    let stderr = String::from_utf8_lossy(&nowhere.stderr);
    assert!(
        stderr.contains("kit-webhooks-server not found beside this binary or on PATH")
            && stderr.contains("/nonexistent"),
        "{stderr}"
    );
}
