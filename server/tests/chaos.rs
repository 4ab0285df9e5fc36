//! The chaos run: the real server and two real daemons deliver a steady stream of publishes to receivers that
//! fail 10 % of requests and hang on 2 %, while the processes are stopped and killed and, on PostgreSQL, the
//! database sessions terminated, at random moments. Then everything must have settled:
//!
//! - every publish that was acknowledged is stored, and every (event, webhook) pair has exactly one delivery;
//! - every delivery is terminal (succeeded, or failed after its last attempt): none stuck;
//! - in the graceful phase (SIGTERM only) no delivery reached its receiver twice; in the crash phase (SIGKILL,
//!   terminated sessions) the duplicates are counted and no more than the requests in flight at the kills.
//!
//! A short run is part of `cargo test` (SQLite, and PostgreSQL when `KIT_TEST_DATABASE_URL` is set). A soak
//! run: `cargo test --release -p kit-webhooks-server --test chaos -- --seconds 600 --seed 7`.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    collections::{HashMap, HashSet},
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{
    authed,
    receiver::{Receiver, Reply},
    Backend, TestDatabase,
};
use kit_webhooks::proto::{
    event_service_client::EventServiceClient, webhook_service_client::WebhookServiceClient,
    CreateWebhookRequest, PublishEventRequest,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tonic::transport::Channel;

const SERVER: &str = env!("CARGO_BIN_EXE_kit-webhooks-server");
const WEBHOOKS: usize = 3;
const DAEMONS: usize = 2;
/// Each daemon's request slots: the most one kill can leave half-sent.
const DAEMON_SLOTS: usize = 16;
/// Attempts per delivery: at a 12 % failure rate, one failing all of them is a once-in-10^8 event.
const RETRIES: &str = "100ms,100ms,100ms,200ms,200ms,200ms,400ms,400ms";
const ATTEMPTS: i64 = 9;

struct Args {
    seconds: u64,
    seed: u64,
}

fn args() -> Args {
    Args {
        seconds: common::flags::value("--seconds").unwrap_or(20),
        seed: common::flags::value("--seed").unwrap_or_else(rand::random),
    }
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        run(Backend::Sqlite, &args).await;
        if std::env::var("KIT_TEST_DATABASE_URL").is_ok() {
            run(Backend::Postgres, &args).await;
        } else {
            eprintln!("KIT_TEST_DATABASE_URL is not set: skipping the PostgreSQL chaos run");
        }
    });
}

/// The daemon binary: built beside the server's by `cargo test --workspace`; built here otherwise.
fn daemon_bin() -> PathBuf {
    let bin = Path::new(SERVER).with_file_name("kit-webhooks-daemon");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "kit-webhooks-daemon",
                "--bin",
                "kit-webhooks-daemon",
            ])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the daemon failed");
    }
    bin
}

/// A process the run stops and starts again, with its log kept in the run's directory.
struct Process {
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn start(bin: PathBuf, args: Vec<String>, log: PathBuf) -> Process {
        let mut process = Process {
            bin,
            args,
            log,
            child: None,
        };
        process.restart();
        process
    }

    fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(&self.bin)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn");
        self.child = Some(child);
    }

    /// Sends `signal` (`TERM` or `KILL`) and waits for the process to exit.
    async fn stop(&mut self, signal: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "{} did not exit on SIG{signal}",
                self.bin.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What the receivers answered, by delivery id: each 2xx counts as one receipt.
type Receipts = Arc<Mutex<HashMap<String, usize>>>;

/// A receiver that fails 10 % of requests and hangs on 2 % (past the request timeout), deterministically
/// for a given seed, delivery and attempt.
async fn flaky_receiver(seed: u64, receipts: Receipts) -> Receiver {
    Receiver::http(Arc::new(move |request, _| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (
            seed,
            request.header("kit-delivery-id"),
            request.header("kit-attempt"),
        )
            .hash(&mut hasher);
        match hasher.finish() % 100 {
            0..10 => Reply::status(500),
            10..12 => Reply::ok().delay(Duration::from_secs(10)),
            _ => {
                let mut receipts = receipts.lock().expect("receipts");
                *receipts
                    .entry(request.header("kit-delivery-id").to_owned())
                    .or_default() += 1;
                Reply::ok()
            }
        }
    }))
    .await
}

/// The acknowledged publishes, by idempotency key.
type Acknowledged = Arc<Mutex<HashMap<String, String>>>;

/// Publishes one event after another, each with an idempotency key, retrying a failed call with the same
/// key as a real client would, until `stop`.
async fn publish_steadily(
    channel: Channel,
    key: String,
    phase: Phase,
    acknowledged: Acknowledged,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut events = EventServiceClient::new(channel);
    for n in 0u64.. {
        let idempotency_key = format!("chaos-{phase:?}-{n}");
        loop {
            let request = authed(
                &key,
                PublishEventRequest {
                    account_id: "default".into(),
                    r#type: "interview.scheduled".into(),
                    data_json: format!(r#"{{"n":{n}}}"#),
                    idempotency_key: idempotency_key.clone(),
                },
            );
            let call = tokio::time::timeout(Duration::from_secs(10), events.publish_event(request));
            match call.await {
                Ok(Ok(response)) => {
                    let id = response.into_inner().event.expect("event").id;
                    acknowledged
                        .lock()
                        .expect("acknowledged")
                        .insert(idempotency_key, id);
                    break;
                }
                Ok(Err(status)) => {
                    // The connection failed under the call (a server going away ends its streams with
                    // GOAWAY, which tonic reports as INTERNAL): with its idempotency key, the call is safe
                    // to send again, as it is after UNAVAILABLE.
                    let transport = std::error::Error::source(&status)
                        .is_some_and(|source| source.is::<tonic::transport::Error>());
                    assert!(
                        transport
                            || matches!(
                                status.code(),
                                tonic::Code::Unavailable
                                    | tonic::Code::Unknown
                                    | tonic::Code::Cancelled
                            ),
                        "a publish failed for good: {status:?}"
                    )
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pause = tokio::time::sleep(Duration::from_millis(15));
        tokio::select! {
            _ = pause => {}
            _ = stop.notified() => return,
        }
    }
}

/// One phase's disruptions: graceful ones only, or crashes too.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    Graceful,
    Crashes,
}

#[derive(Default, Debug)]
struct Disruptions {
    server_stops: usize,
    server_kills: usize,
    daemon_stops: usize,
    daemon_kills: usize,
    sessions_terminated: usize,
}

struct System {
    server: Process,
    daemons: Vec<Process>,
    port: u16,
    db: DatabaseConnection,
}

async fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl System {
    /// One random disruption of `phase`, and the restart after it.
    async fn disrupt(&mut self, rng: &mut StdRng, phase: Phase, done: &mut Disruptions) {
        let signal = match phase {
            Phase::Graceful => "TERM",
            Phase::Crashes if rng.random_bool(0.5) => "KILL",
            Phase::Crashes => "TERM",
        };
        let postgres = self.db.get_database_backend() == DbBackend::Postgres;
        match rng.random_range(
            0..if phase == Phase::Crashes && postgres {
                3
            } else {
                2
            },
        ) {
            0 => {
                self.server.stop(signal).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
                self.server.restart();
                wait_listening(self.port).await;
                match signal {
                    "KILL" => done.server_kills += 1,
                    _ => done.server_stops += 1,
                }
            }
            1 => {
                let daemon = &mut self.daemons[rng.random_range(0..DAEMONS)];
                daemon.stop(signal).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
                daemon.restart();
                match signal {
                    "KILL" => done.daemon_kills += 1,
                    _ => done.daemon_stops += 1,
                }
            }
            _ => {
                let _ = self
                    .db
                    .execute_unprepared(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    )
                    .await;
                done.sessions_terminated += 1;
            }
        }
    }
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    common::count(db, sql).await
}

/// Waits until no delivery is waiting or being sent; returns how many still are when time is up.
async fn settle(db: &DatabaseConnection) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open = count(
            db,
            "SELECT COUNT(*) AS n FROM deliveries WHERE status NOT IN ('succeeded', 'failed')",
        )
        .await;
        if open == 0 || Instant::now() >= deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The receipts beyond the first of each delivery.
fn duplicates(receipts: &Receipts) -> usize {
    receipts
        .lock()
        .expect("receipts")
        .values()
        .map(|n| n.saturating_sub(1))
        .sum()
}

async fn run(backend: Backend, args: &Args) {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(args.seed);
    println!(
        "chaos run on {backend:?}, seed {}, {} s",
        args.seed, args.seconds
    );
    let database = TestDatabase::new(backend).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("kit.keys");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let receipts = Receipts::default();
    let receiver = flaky_receiver(args.seed, receipts.clone()).await;
    let server_args: Vec<String> = [
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--database-url",
        &database.url,
        "--key-file",
        &key_file.display().to_string(),
        "--database-max-connections",
        "4",
        "--allow-http",
        "--request-timeout",
        "2s",
        "--retry-schedule",
        RETRIES,
        "--shutdown-grace",
        "5s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = Process::start(
        PathBuf::from(SERVER),
        server_args,
        dir.path().join("server.log"),
    );
    wait_listening(port).await;
    // After the server's first start: it creates the SQLite file.
    let db = Database::connect(&database.url).await.expect("connect");
    let mut system = System {
        server,
        daemons: Vec::new(),
        port,
        db,
    };
    while !key_file.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let keys = std::fs::read_to_string(&key_file).expect("key file");
    let admin =
        kit_webhooks::key_file::read(&keys, kit_webhooks::key_file::ADMIN_KEY).expect("admin key");
    let publisher = kit_webhooks::key_file::read(&keys, kit_webhooks::key_file::PUBLISHER_KEY)
        .expect("publisher key");
    let out = Command::new(SERVER)
        .args([
            "keys",
            "create",
            "--database-url",
            &database.url,
            "--role",
            "daemon",
        ])
        .output()
        .expect("keys create");
    let daemon_key = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let url = format!("http://127.0.0.1:{port}");
    let channel = Channel::from_shared(url.clone())
        .expect("url")
        .connect_lazy();
    let mut webhooks = WebhookServiceClient::new(channel.clone());
    for n in 0..WEBHOOKS {
        webhooks
            .create_webhook(authed(
                &admin,
                CreateWebhookRequest {
                    url: receiver.url(&format!("/hook/{n}")),
                    events: vec!["interview.*".into()],
                    ..Default::default()
                },
            ))
            .await
            .expect("create webhook");
    }
    for n in 0..DAEMONS {
        let args = [
            "--server",
            &url,
            "--token",
            &daemon_key,
            "--allow-network",
            "127.0.0.0/8",
            "--max-in-flight",
            &DAEMON_SLOTS.to_string(),
            "--prefetch",
            "64",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        system.daemons.push(Process::start(
            daemon_bin(),
            args,
            dir.path().join(format!("daemon-{n}.log")),
        ));
    }

    let acknowledged = Acknowledged::default();
    let mut report = Vec::new();
    for phase in [Phase::Graceful, Phase::Crashes] {
        let stop = Arc::new(tokio::sync::Notify::new());
        let publishing = tokio::spawn(publish_steadily(
            channel.clone(),
            publisher.clone(),
            phase,
            acknowledged.clone(),
            stop.clone(),
        ));
        let mut done = Disruptions::default();
        let until = Instant::now() + Duration::from_secs(args.seconds / 2);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(rng.random_range(800..2000))).await;
            system.disrupt(&mut rng, phase, &mut done).await;
        }
        // No more publishes, and the phase's deliveries finish before the next phase's disruptions, so
        // that each phase's duplicates are its own.
        stop.notify_one();
        publishing.await.expect("publisher");
        let stuck = settle(&system.db).await;
        let dups = duplicates(&receipts) - report.iter().map(|(_, _, d, _)| d).sum::<usize>();
        println!("  {phase:?}: {done:?}, stuck {stuck}, duplicates {dups}");
        report.push((phase, done, dups, stuck));
    }
    let stuck = settle(&system.db).await;

    // What was acknowledged is stored; each (event, webhook) pair has one delivery; all are terminal.
    let acknowledged: HashSet<String> = acknowledged
        .lock()
        .expect("acknowledged")
        .values()
        .cloned()
        .collect();
    let stored: HashSet<String> = system
        .db
        .query_all_raw(Statement::from_string(
            system.db.get_database_backend(),
            "SELECT id FROM events",
        ))
        .await
        .expect("events")
        .iter()
        .map(|row| row.try_get::<String>("", "id").expect("id"))
        .collect();
    let missing = acknowledged.difference(&stored).count();
    let not_one = count(
        &system.db,
        "SELECT COUNT(*) AS n FROM (SELECT event_id, webhook_id FROM deliveries \
         GROUP BY event_id, webhook_id HAVING COUNT(*) <> 1) AS pairs",
    )
    .await;
    let deliveries = count(&system.db, "SELECT COUNT(*) AS n FROM deliveries").await;
    let failed_early = count(
        &system.db,
        &format!("SELECT COUNT(*) AS n FROM deliveries WHERE status = 'failed' AND attempt_count < {ATTEMPTS}"),
    )
    .await;
    let succeeded = count(
        &system.db,
        "SELECT COUNT(*) AS n FROM deliveries WHERE status = 'succeeded'",
    )
    .await;
    let received: HashSet<String> = receipts.lock().expect("receipts").keys().cloned().collect();
    let succeeded_unreceived = system
        .db
        .query_all_raw(Statement::from_string(
            system.db.get_database_backend(),
            "SELECT id FROM deliveries WHERE status = 'succeeded'",
        ))
        .await
        .expect("deliveries")
        .iter()
        .filter(|row| !received.contains(&row.try_get::<String>("", "id").expect("id")))
        .count();
    println!(
        "  {} events acknowledged, {deliveries} deliveries, {succeeded} succeeded, {stuck} stuck, {:.0} s",
        acknowledged.len(),
        started.elapsed().as_secs_f64()
    );

    system.server.stop("TERM").await;
    for daemon in &mut system.daemons {
        daemon.stop("TERM").await;
    }
    let logs = dir.keep();
    let context = format!("(seed {}, logs in {})", args.seed, logs.display());
    assert_eq!(missing, 0, "acknowledged events missing {context}");
    assert!(!acknowledged.is_empty(), "nothing was published {context}");
    assert_eq!(
        deliveries,
        acknowledged.len() as i64 * WEBHOOKS as i64,
        "one delivery per event and webhook {context}"
    );
    assert_eq!(
        not_one, 0,
        "(event, webhook) pairs without exactly one delivery {context}"
    );
    assert_eq!(stuck, 0, "deliveries never finished {context}");
    assert_eq!(
        failed_early, 0,
        "deliveries failed before their last attempt {context}"
    );
    assert_eq!(
        succeeded_unreceived, 0,
        "succeeded without a 2xx receipt {context}"
    );
    for (phase, done, dups, stuck) in &report {
        assert_eq!(*stuck, 0, "{phase:?} left deliveries stuck {context}");
        match phase {
            Phase::Graceful => {
                assert_eq!(*dups, 0, "graceful stops duplicated deliveries {context}")
            }
            Phase::Crashes => {
                let in_flight_at_kills =
                    (done.daemon_kills + done.server_kills * DAEMONS) * DAEMON_SLOTS;
                assert!(
                    *dups <= in_flight_at_kills,
                    "{dups} duplicates, {in_flight_at_kills} in flight at the kills {context}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(logs);
    database.drop_database().await;
}
