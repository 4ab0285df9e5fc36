//! Operations, checked as an SRE would: the real server (the README's start command), a separate real
//! daemon, both with `--metrics-listen`, and `kit-webhooks bench` publishing to them. Their `/metrics`
//! pages show what the run did and the delivery lag coming back to 0, and an account at its lease cap; the
//! daemon's `/readyz` follows its stream to the server; its JSON log names the delivery of a failed attempt; docs/OPERATIONS.md lists
//! exactly the metrics they export.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{
    monitoring::{free_port, get, scrape, wait_for_status},
    receiver::{always, Receiver, Reply},
    Backend, TestDatabase,
};
use serde_json::Value;

on_both_databases!(
    a_bench_run_moves_both_metrics_pages_and_the_lag_returns_to_0,
    the_lag_readiness_and_logs_follow_the_daemon_and_its_server,
    an_account_at_its_lease_cap_shows_on_the_servers_page,
    an_ordered_webhooks_queue_behind_a_failing_endpoint_is_not_lag,
);

const WAIT: Duration = Duration::from_secs(60);
const CLI: &str = env!("CARGO_BIN_EXE_kit-webhooks");

/// A loopback address with a free port.
fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The server binary in its own directory, as `serve` with `args` (its keys file lands there).
struct Server {
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Child,
    api: String,
    metrics: SocketAddr,
}

impl Server {
    /// `serve` with `extra` arguments, on `db` (the README's default SQLite file in the directory, or the
    /// PostgreSQL test database), listening on free ports, with its monitoring listener.
    fn start(db: &TestDatabase, backend: Backend, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let (listen, metrics) = (free_addr(), free_addr());
        let mut args: Vec<String> = vec!["serve".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--listen".into(), listen.to_string()]);
        args.extend(["--metrics-listen".into(), metrics.to_string()]);
        if let Backend::Postgres = backend {
            args.extend(["--database-url".into(), db.url.clone()]);
        }
        let child = spawn_server(dir.path(), &args);
        let server = Server {
            dir,
            args,
            child,
            api: format!("http://{listen}"),
            metrics,
        };
        wait_for_status(server.metrics, "/readyz", 200, WAIT);
        server
    }

    fn restart(&mut self) {
        self.child = spawn_server(self.dir.path(), &self.args);
        wait_for_status(self.metrics, "/readyz", 200, WAIT);
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("kit-webhooks.keys")
    }

    fn key(&self, name: &str) -> String {
        let keys = std::fs::read_to_string(self.key_file()).expect("key file");
        kit_webhooks::key_file::read(&keys, name).expect("a key")
    }

    /// A daemon key, created with `kit-webhooks-server keys create` on the server's database.
    fn daemon_key(&self, db: &TestDatabase, backend: Backend) -> String {
        let mut command = Command::new(common::workspace_bin("kit-webhooks-server"));
        command
            .current_dir(self.dir.path())
            .args(["keys", "create", "--role", "daemon"]);
        if let Backend::Postgres = backend {
            command.args(["--database-url", &db.url]);
        }
        let out = succeeded(command.output().expect("keys create"));
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    /// The CLI against this server, as its admin (the key file's keys), with JSON output.
    /// Publishes `n` `interview.completed` events to the default account with the CLI.
    fn publish_interviews(&self, n: usize) {
        for n in 0..n {
            self.cli(&[
                "events",
                "publish",
                "--account",
                "default",
                "--type",
                "interview.completed",
                "--data",
                &format!(r#"{{"n": {n}}}"#),
            ]);
        }
    }

    fn cli(&self, args: &[&str]) -> Value {
        let out = Command::new(CLI)
            .args(["--server", &self.api, "--key-file"])
            .arg(self.key_file())
            .args(["--output", "json"])
            .args(args)
            .output()
            .expect("kit-webhooks");
        serde_json::from_slice(&succeeded(out).stdout).expect("JSON output")
    }
}

fn spawn_server(dir: &Path, args: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log file");
    Command::new(common::workspace_bin("kit-webhooks-server"))
        .current_dir(dir)
        .args(args)
        .env_remove("KIT_WEBHOOKS_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start kit-webhooks-server")
}

fn succeeded(out: Output) -> Output {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A separate daemon binary with its monitoring listener and JSON logs in `log`.
struct Daemon {
    child: Child,
    metrics: SocketAddr,
    log: PathBuf,
}

impl Daemon {
    fn start(server: &Server, token: &str, log: PathBuf) -> Daemon {
        let metrics = free_addr();
        let child = Command::new(common::workspace_bin("kit-webhooks-daemon"))
            .args(["--server", &server.api, "--token", token])
            .args(["--allow-network", "127.0.0.0/8", "--log-format", "json"])
            .args(["--metrics-listen", &metrics.to_string()])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start kit-webhooks-daemon");
        Daemon {
            child,
            metrics,
            log,
        }
    }
}

/// Sends SIGTERM and waits for a clean exit.
fn terminate(child: &mut Child) {
    common::signals::terminate(child);
    let exit = common::signals::exit_within(child, WAIT);
    assert!(exit.success(), "exit after SIGTERM: {exit}");
}

/// Waits until the server's lag gauges are 0: nothing due, nothing leased.
/// Waits until `series` reads `expected` on the page at `metrics`, failing the test after `WAIT`.
fn wait_value(metrics: SocketAddr, series: &str, expected: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = scrape(metrics).value(series);
        if value == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {value:?}, never {expected}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_lag_zero(metrics: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = scrape(metrics);
        let due = page.value("kit_webhooks_deliveries_due");
        let age = page.value("kit_webhooks_oldest_due_delivery_age_seconds");
        let leased = page.value("kit_webhooks_leases_held");
        if (due, age, leased) == (Some(0.0), Some(0.0), Some(0.0)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lag never returned to 0: due {due:?}, age {age:?}, leased {leased:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn a_bench_run_moves_both_metrics_pages_and_the_lag_returns_to_0(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    // The README's start command, with the monitoring listener it turns on.
    let readme = [
        "--with-daemon",
        "--allow-http",
        "--allow-network",
        "127.0.0.0/8",
    ];
    let mut server = Server::start(&db, backend, &readme);
    let token = server.daemon_key(&db, backend);
    let mut daemon = Daemon::start(&server, &token, server.dir.path().join("daemon.log"));
    wait_for_status(daemon.metrics, "/readyz", 200, WAIT);
    assert_eq!(get(daemon.metrics, "/healthz"), Some((200, "ok\n".into())));
    let before = scrape(server.metrics);
    assert_eq!(before.sum("kit_webhooks_events_published_total"), 0.0);
    assert_eq!(before.value("kit_webhooks_streams_open"), Some(2.0));

    let (admin, publisher) = (
        server.key(kit_webhooks::key_file::ADMIN_KEY),
        server.key(kit_webhooks::key_file::PUBLISHER_KEY),
    );
    let json = server.dir.path().join("bench.json");
    let out = Command::new(CLI)
        .args([
            "bench",
            "--events",
            "2000",
            "--webhooks",
            "2",
            "--target",
            &server.api,
        ])
        .args(["--admin-key", &admin, "--publisher-key", &publisher])
        .args(["--ceiling-duration", "0s", "--timeout", "120s", "--json"])
        .arg(&json)
        .output()
        .expect("kit-webhooks bench");
    succeeded(out);
    let figures: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("bench JSON")).expect("JSON");
    assert_eq!(figures["deliveries_received"], 4000, "{figures}");

    // The server's page: what was published, created, delivered and called.
    wait_lag_zero(server.metrics);
    let page = scrape(server.metrics);
    assert_eq!(
        page.value(r#"kit_webhooks_events_published_total{category="interview"}"#),
        Some(2000.0),
        "{page:?}"
    );
    assert_eq!(page.sum("kit_webhooks_events_published_total"), 2000.0);
    assert_eq!(
        page.value("kit_webhooks_deliveries_created_total"),
        Some(4000.0)
    );
    assert_eq!(
        page.value(r#"kit_webhooks_deliveries_completed_total{outcome="succeeded"}"#),
        Some(4000.0)
    );
    assert_eq!(
        page.value(r#"kit_webhooks_rpcs_total{method="EventService/PublishEvent",code="OK"}"#),
        Some(2000.0)
    );
    assert_eq!(
        page.value(
            r#"kit_webhooks_rpc_duration_seconds_count{method="EventService/PublishEvent"}"#
        ),
        Some(2000.0)
    );
    let cycles = page
        .value("kit_webhooks_writer_cycles_total")
        .expect("cycles");
    assert!(cycles > 0.0);
    assert_eq!(
        page.value("kit_webhooks_writer_cycle_duration_seconds_count"),
        Some(cycles)
    );
    assert!(
        page.value("kit_webhooks_writer_cycle_writes_sum")
            .expect("writes")
            >= 2000.0
    );
    assert_eq!(
        page.value(r#"kit_webhooks_webhooks{status="active"}"#),
        Some(2.0)
    );
    assert_eq!(page.value("kit_webhooks_streams_open"), Some(2.0));

    // The daemons' pages: the embedded one's on the server's, the separate one's on its own. Every
    // delivery was attempted once, by one of them, and every attempt reported.
    let daemon_page = scrape(daemon.metrics);
    let ok = r#"kit_webhooks_daemon_attempts_total{outcome="2xx"}"#;
    let separate = daemon_page.value(ok).expect("the daemon's 2xx attempts");
    let embedded = page.value(ok).expect("the embedded daemon's 2xx attempts");
    assert!(
        separate > 0.0,
        "the separate daemon delivered: {daemon_page:?}"
    );
    assert_eq!(separate + embedded, 4000.0);
    assert_eq!(
        daemon_page.value("kit_webhooks_daemon_reports_sent_total"),
        Some(separate)
    );
    assert_eq!(
        daemon_page.value("kit_webhooks_daemon_attempt_duration_seconds_count"),
        Some(separate)
    );
    assert_eq!(
        daemon_page.value("kit_webhooks_daemon_stream_open"),
        Some(1.0)
    );
    assert_eq!(
        daemon_page.value("kit_webhooks_daemon_requests_in_flight"),
        Some(0.0)
    );
    assert_eq!(
        daemon_page.value("kit_webhooks_daemon_leases_ready"),
        Some(0.0)
    );

    // A failed call is counted under its code.
    let missing = Command::new(CLI)
        .args(["--server", &server.api, "--key-file"])
        .arg(server.key_file())
        .args(["events", "get", "evt_01M94P65QCYC75149KART0KMT8"])
        .output()
        .expect("kit-webhooks");
    assert!(!missing.status.success());
    let page = scrape(server.metrics);
    assert_eq!(
        page.value(r#"kit_webhooks_rpcs_total{method="EventService/GetEvent",code="NotFound"}"#),
        Some(1.0),
        "{page:?}"
    );

    // docs/OPERATIONS.md documents exactly the metrics the two pages export, each with its type.
    let guide = std::fs::read_to_string(common::root().join("docs/OPERATIONS.md")).expect("guide");
    let exported: BTreeSet<(String, String)> = page
        .families()
        .into_iter()
        .chain(daemon_page.families())
        .collect();
    for (name, kind) in &exported {
        assert!(
            guide
                .lines()
                .any(|line| line.starts_with(&format!("| `{name}` | {kind} |"))),
            "docs/OPERATIONS.md has no row `| `{name}` | {kind} |`"
        );
    }
    // The metric tables' rows: "| `name` | type | …".
    let documented: BTreeSet<String> = guide
        .lines()
        .filter_map(|line| {
            let mut cells = line.split(" | ");
            let name = cells.next()?.strip_prefix("| `")?.strip_suffix('`')?;
            ["counter", "gauge", "histogram"]
                .contains(&cells.next()?)
                .then(|| name.to_owned())
        })
        .collect();
    let names: BTreeSet<String> = exported.into_iter().map(|(name, _)| name).collect();
    assert_eq!(documented, names, "documented metrics, exported metrics");

    terminate(&mut daemon.child);
    terminate(&mut server.child);
    db.drop_database().await;
}

async fn the_lag_readiness_and_logs_follow_the_daemon_and_its_server(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    // No embedded daemon: deliveries wait for a separate one. One retry, soon.
    let mut server = Server::start(&db, backend, &["--allow-http", "--retry-schedule", "200ms"]);
    let ok = Receiver::http(always(Reply::ok())).await;
    let failing = Receiver::http(always(Reply::status(500))).await;
    for url in [ok.url("/"), failing.url("/")] {
        server.cli(&[
            "webhooks",
            "create",
            "--url",
            &url,
            "--events",
            "interview.*",
        ]);
    }
    let failing_webhook = server.cli(&["webhooks", "list"]);
    let failing_webhook = failing_webhook
        .as_array()
        .expect("a list")
        .iter()
        .find(|w| w["url"] == failing.url("/"))
        .expect("the failing webhook")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Published with no daemon connected: everything is due, and the lag grows.
    server.publish_interviews(10);
    std::thread::sleep(Duration::from_millis(1100));
    let page = scrape(server.metrics);
    assert_eq!(
        page.value("kit_webhooks_deliveries_due"),
        Some(20.0),
        "{page:?}"
    );
    assert!(
        page.value("kit_webhooks_oldest_due_delivery_age_seconds")
            .expect("age")
            >= 1.0
    );
    assert_eq!(page.value("kit_webhooks_streams_open"), Some(0.0));

    // A daemon connects: it is ready, and the lag returns to 0.
    let token = server.daemon_key(&db, backend);
    let mut daemon = Daemon::start(&server, &token, server.dir.path().join("daemon.log"));
    wait_for_status(daemon.metrics, "/readyz", 200, WAIT);
    wait_lag_zero(server.metrics);
    ok.wait_for(10, WAIT).await;
    failing.wait_for(20, WAIT).await;

    // A failed attempt's JSON log line names its delivery, webhook and attempt.
    let deliveries = server.cli(&["deliveries", "list", "--webhook", &failing_webhook]);
    let ids: BTreeSet<&str> = deliveries
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| d["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 10);
    let log = std::fs::read_to_string(&daemon.log).expect("daemon log");
    let failed: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("each line a JSON object"))
        .filter(|line| line["message"] == "attempt failed")
        .collect();
    assert_eq!(failed.len(), 20, "two attempts of each:\n{log}");
    for line in &failed {
        assert!(
            ids.contains(line["delivery"].as_str().expect("delivery")),
            "{line}"
        );
        assert_eq!(line["webhook"], failing_webhook.as_str(), "{line}");
        assert!(line["attempt"] == 1 || line["attempt"] == 2, "{line}");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["status"], 500);
        assert!(
            line["timestamp"].is_string() && line["target"].is_string(),
            "{line}"
        );
    }
    // The receiver saw the requests before the daemon counted their answers and reported them: waited for.
    wait_value(
        daemon.metrics,
        r#"kit_webhooks_daemon_attempts_total{outcome="5xx"}"#,
        20.0,
    );
    wait_value(
        server.metrics,
        r#"kit_webhooks_deliveries_completed_total{outcome="failed"}"#,
        10.0,
    );
    wait_value(
        server.metrics,
        "kit_webhooks_delivery_retries_scheduled_total",
        10.0,
    );

    // The server stops: the daemon is alive but not ready; the server returns: ready again.
    terminate(&mut server.child);
    let body = wait_for_status(daemon.metrics, "/readyz", 503, WAIT);
    assert!(body.contains("no delivery stream open"), "{body}");
    assert_eq!(get(daemon.metrics, "/healthz").map(|(s, _)| s), Some(200));
    server.restart();
    wait_for_status(daemon.metrics, "/readyz", 200, WAIT);
    let daemon_page = scrape(daemon.metrics);
    assert_eq!(
        daemon_page.value("kit_webhooks_daemon_stream_open"),
        Some(1.0)
    );
    assert!(
        daemon_page
            .value("kit_webhooks_daemon_stream_reconnects_total")
            .expect("reconnects")
            >= 1.0
    );

    terminate(&mut daemon.child);
    terminate(&mut server.child);
    db.drop_database().await;
}

/// An account whose endpoints never answer has more deliveries than it may hold leases for: the server's page
/// shows the account, and the webhook holding two of its three leases, at their caps, and the rest due.
async fn an_account_at_its_lease_cap_shows_on_the_servers_page(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let caps = [
        "--max-in-flight-per-webhook",
        "2",
        "--max-leases-per-account",
        "3",
    ];
    let mut args = vec![
        "--with-daemon",
        "--allow-http",
        "--allow-network",
        "127.0.0.0/8",
    ];
    args.extend(caps);
    args.extend(["--shutdown-grace", "1s"]);
    let mut server = Server::start(&db, backend, &args);
    let dead = Receiver::http(always(Reply::ok().delay(Duration::from_secs(60)))).await;
    for path in ["/a", "/b"] {
        server.cli(&[
            "webhooks",
            "create",
            "--url",
            &dead.url(path),
            "--events",
            "interview.*",
        ]);
    }
    // Three events to two webhooks: six deliveries, three of them leased and sent.
    server.publish_interviews(3);
    dead.wait_for(3, WAIT).await;
    wait_value(server.metrics, "kit_webhooks_accounts_at_lease_cap", 1.0);
    let page = scrape(server.metrics);
    assert_eq!(
        page.value("kit_webhooks_leases_held"),
        Some(3.0),
        "{page:?}"
    );
    assert_eq!(
        page.value("kit_webhooks_webhooks_at_lease_cap"),
        Some(1.0),
        "{page:?}"
    );
    assert_eq!(
        page.value("kit_webhooks_deliveries_due"),
        Some(3.0),
        "{page:?}"
    );
    assert_eq!(
        dead.requests().len(),
        3,
        "the account's three leases, not more"
    );

    terminate(&mut server.child);
    db.drop_database().await;
}

/// An ordered webhook whose endpoint fails holds its later deliveries until the failed one is retried: they
/// are the endpoint's backlog, not the platform's lag, so the due count and the lag stay 0, as a claim sees
/// them (it leases none of them either).
async fn an_ordered_webhooks_queue_behind_a_failing_endpoint_is_not_lag(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let args = [
        "--with-daemon",
        "--allow-http",
        "--allow-network",
        "127.0.0.0/8",
    ];
    let mut server = Server::start(&db, backend, &args);
    // The first attempt fails and asks for its retry in five minutes.
    let failing = Receiver::http(always(Reply::status(503).header("retry-after", "300"))).await;
    server.cli(&[
        "webhooks",
        "create",
        "--url",
        &failing.url("/"),
        "--events",
        "interview.*",
        "--ordering",
        "ordered",
    ]);
    server.publish_interviews(4);
    failing.wait_for(1, WAIT).await;
    // The failed attempt recorded: nothing leased, the first delivery waiting for its retry, three behind it.
    wait_value(server.metrics, "kit_webhooks_leases_held", 0.0);
    let retries = "kit_webhooks_delivery_retries_scheduled_total";
    wait_value(server.metrics, retries, 1.0);
    // Long enough for the three behind it to have been due a while, were they counted.
    std::thread::sleep(Duration::from_millis(1_500));
    let page = scrape(server.metrics);
    assert_eq!(
        page.value("kit_webhooks_deliveries_due"),
        Some(0.0),
        "{page:?}"
    );
    assert_eq!(
        page.value("kit_webhooks_oldest_due_delivery_age_seconds"),
        Some(0.0),
        "{page:?}"
    );
    assert_eq!(
        failing.requests().len(),
        1,
        "one request at a time, in order"
    );

    terminate(&mut server.child);
    db.drop_database().await;
}
