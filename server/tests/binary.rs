//! The `kit-webhooks-server` binary as an operator runs it: `migrate`, `keys create`, and a first `serve` on
//! an empty SQLite file that writes its keys, answers health checks and stops cleanly on SIGTERM.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_kit-webhooks-server");

/// Waits until something listens on `port` of loopback (at most 30 s).
fn wait_listening(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn keys_create_prints_only_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    let out = Command::new(BIN)
        .args([
            "keys",
            "create",
            "--database-url",
            &db,
            "--role",
            "admin",
            "--account",
            "acme",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the key: {stdout:?}");
    assert!(lines[0].starts_with("kwk_live_key_") && lines[0].len() > 40);

    let out = Command::new(BIN)
        .args(["keys", "create", "--database-url", &db, "--role", "admin"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--account"));

    let out = Command::new(BIN)
        .args(["keys", "create", "--database-url", &db, "--role", "root"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "unknown roles are refused");

    // One admin key per account, one per line; a bad account anywhere makes none of them.
    let keys_of = |accounts: &[&str]| {
        let mut args = vec!["keys", "create", "--database-url", &db, "--role", "admin"];
        for account in accounts {
            args.extend(["--account", account]);
        }
        Command::new(BIN).args(&args).output().expect("run")
    };
    let listed = || {
        let out = Command::new(BIN)
            .args(["keys", "list", "--database-url", &db])
            .output()
            .expect("run");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .lines()
            .count()
    };
    let out = keys_of(&["beta", "gamma"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 2, "{stdout:?}");
    let before = listed();
    let out = keys_of(&["delta", "not an account id!", "epsilon"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no key printed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("account"));
    assert_eq!(listed(), before, "no key made");
}

#[test]
fn migrate_creates_the_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.db");
    let out = Command::new(BIN)
        .args([
            "migrate",
            "--database-url",
            &format!("sqlite://{}", path.display()),
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(path.exists());
    // Running it again is a no-op, not an error.
    let again = Command::new(BIN)
        .args([
            "migrate",
            "--database-url",
            &format!("sqlite://{}", path.display()),
        ])
        .output()
        .expect("run");
    assert!(again.status.success());
}

#[test]
fn first_serve_writes_a_private_key_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("KIT_WEBHOOKS_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let key_file = dir.path().join("kit-webhooks.keys");
    let started = Instant::now();
    // The key file is written before the port is bound; waiting for both also rules out a stranger that
    // grabbed the port first.
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || !key_file.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        dir.path().join("kit-webhooks.db").exists(),
        "default SQLite file in the working directory"
    );
    let text = std::fs::read_to_string(&key_file).expect("key file beside the database");
    assert!(text.contains("KIT_WEBHOOKS_ADMIN_KEY=kwk_live_key_"));
    assert!(text.contains("KIT_WEBHOOKS_PUBLISHER_KEY=kwk_live_key_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "readable by its owner only");
        // The database and its WAL hold the signing secrets: owner only too.
        for name in [
            "kit-webhooks.db",
            "kit-webhooks.db-wal",
            "kit-webhooks.db-shm",
        ] {
            let mode = std::fs::metadata(dir.path().join(name))
                .expect("stat")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{name} readable by its owner only");
        }
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "clean exit on SIGTERM");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read");
    assert!(
        stderr.contains(
            &key_file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string()
        ),
        "logs where the keys are: {stderr}"
    );

    // A second start keeps the keys it made (no new file contents).
    let port = free_port();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("KIT_WEBHOOKS_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_listening(port);
    assert_eq!(std::fs::read_to_string(&key_file).expect("key file"), text);
    let _ = child.kill();
    let _ = child.wait();
}

/// A database URL is never shown with its password, not even when connecting to it fails.
#[test]
fn a_failed_connection_does_not_show_the_password() {
    let port = free_port();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--database-url",
            &format!("postgres://kit:s3cret-pw@127.0.0.1:{port}/kit"),
        ])
        .output()
        .expect("run");
    assert!(!out.status.success(), "nothing listens on {port}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connecting to postgres://kit:***@127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
}

/// A key file that exists already (say, created by an operator with the usual umask) is made private when
/// the first start writes keys into it.
#[test]
fn an_existing_key_file_is_made_private() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = dir.path().join("kit.keys");
        std::fs::write(&key_file, "").expect("create");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let port = free_port();
        let mut child = Command::new(BIN)
            .current_dir(dir.path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--key-file", &key_file.display().to_string()])
            .env_remove("KIT_WEBHOOKS_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        wait_listening(port);
        let _ = child.kill();
        let _ = child.wait();
        assert!(std::fs::read_to_string(&key_file)
            .expect("read")
            .contains("KIT_WEBHOOKS_ADMIN_KEY"));
        let mode = std::fs::metadata(&key_file)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}

/// The README's start command, as the README writes it (`serve --with-daemon …`), run on a fresh directory
/// with free ports for its API and its monitoring listener, `extra` arguments and `env`, its stderr in a log
/// file; the keys its first start wrote.
struct ReadmeSystem {
    child: std::process::Child,
    dir: tempfile::TempDir,
    url: String,
    /// Where its `--metrics-listen` serves.
    metrics: std::net::SocketAddr,
    admin: String,
    publisher: String,
}

/// The arguments of the README's start command (after `cargo run … --`).
fn readme_start_arguments() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let line = readme
        .lines()
        .find(|line| line.contains("cargo run --release -p kit-webhooks-server -- serve"))
        .expect("the README's start command");
    let arguments = line
        .split_once(" -- ")
        .expect("`--` before the arguments")
        .1;
    arguments.split_whitespace().map(str::to_owned).collect()
}

impl ReadmeSystem {
    fn start(extra: &[&str], env: &[(&str, &str)]) -> ReadmeSystem {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut arguments = readme_start_arguments();
        assert_eq!(arguments[..2], ["serve", "--with-daemon"], "{arguments:?}");
        // Its monitoring listener moves to a free port, as tests run side by side.
        let at = arguments
            .iter()
            .position(|a| a == "--metrics-listen")
            .expect("the start command serves metrics");
        arguments[at + 1] = metrics.to_string();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = Command::new(BIN)
            .current_dir(dir.path())
            .args(&arguments)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env_remove("KIT_WEBHOOKS_DATABASE_URL")
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn");
        wait_listening(port);
        let keys = std::fs::read_to_string(dir.path().join("kit-webhooks.keys")).expect("key file");
        let read = |name| kit_webhooks::key_file::read(&keys, name).expect("a key");
        ReadmeSystem {
            url: format!("http://127.0.0.1:{port}"),
            metrics,
            admin: read(kit_webhooks::key_file::ADMIN_KEY),
            publisher: read(kit_webhooks::key_file::PUBLISHER_KEY),
            child,
            dir,
        }
    }

    async fn create_webhook(&self, url: String, events: &str) -> kit_webhooks::proto::Webhook {
        kit_webhooks::proto::webhook_service_client::WebhookServiceClient::connect(self.url.clone())
            .await
            .expect("connect")
            .create_webhook(authed(
                &self.admin,
                kit_webhooks::proto::CreateWebhookRequest {
                    url,
                    events: vec![events.into()],
                    ..Default::default()
                },
            ))
            .await
            .expect("create webhook")
            .into_inner()
            .webhook
            .expect("webhook")
    }

    async fn publish(&self, event_type: &str) {
        kit_webhooks::proto::event_service_client::EventServiceClient::connect(self.url.clone())
            .await
            .expect("connect")
            .publish_event(authed(
                &self.publisher,
                kit_webhooks::proto::PublishEventRequest {
                    account_id: "default".into(),
                    r#type: event_type.into(),
                    data_json: "{}".into(),
                    idempotency_key: String::new(),
                },
            ))
            .await
            .expect("publish");
    }

    /// The log once `found` finds what it looks for in it (or after 10 s, for the caller to say what is
    /// missing).
    fn log_when(&self, found: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let logged = std::fs::read_to_string(self.dir.path().join("server.log")).expect("log");
            if found(&logged) || std::time::Instant::now() > deadline {
                return logged;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM; whether it then exited cleanly.
    fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait").success()
    }
}

/// The README's start command: `serve --with-daemon` on a fresh directory delivers a published event to a
/// local receiver, with nothing set up beforehand but the keys the first start writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_start_command_delivers_to_a_local_receiver() {
    use receiver::{always, Receiver, Reply};

    let receiver = Receiver::http(always(Reply::ok())).await;
    let gone = Receiver::http(always(Reply::status(410))).await;
    let system = ReadmeSystem::start(&[], &[]);
    system
        .create_webhook(receiver.url("/kit"), "application.*")
        .await;
    let gone_hook = system
        .create_webhook(gone.url("/kit"), "application.*")
        .await;
    system.publish("application.submitted").await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].header("kit-event-type"), "application.submitted");
    gone.wait_for(1, Duration::from_secs(20)).await;
    // Its metrics page, which the start command turns on, counts the event.
    let page = monitoring::scrape(system.metrics);
    assert_eq!(
        page.value(r#"kit_webhooks_events_published_total{category="application"}"#),
        Some(1.0),
        "{page:?}"
    );
    // An SRE sees the disabling in the log, with the webhook and the reason; no colour codes in a file.
    let logged = system.log_when(|logged| logged.contains("webhook disabled"));
    let line = logged
        .lines()
        .find(|line| line.contains("webhook disabled"))
        .unwrap_or_else(|| panic!("no `webhook disabled` line in {logged}"));
    assert!(
        line.contains("WARN") && line.contains(&gone_hook.id) && line.contains("410"),
        "{line}"
    );
    assert!(
        !logged.contains('\x1b'),
        "colour codes in a log file: {logged}"
    );
    assert!(
        system.stop(),
        "clean exit on SIGTERM with the embedded daemon"
    );
}

/// `--log-format json`: every line an object a log pipeline can index, and an attempt's line carries its
/// delivery, webhook and attempt number as fields.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_delivery_on_every_attempt() {
    use receiver::{always, Receiver, Reply};

    let receiver = Receiver::http(always(Reply::ok())).await;
    let system = ReadmeSystem::start(
        &["--log-format", "json"],
        &[("RUST_LOG", "info,kit_webhooks_daemon=debug")],
    );
    let hook = system.create_webhook(receiver.url("/kit"), "offer.*").await;
    system.publish("offer.accepted").await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    let logged = system.log_when(|logged| logged.contains("attempt succeeded"));
    let lines: Vec<serde_json::Value> = logged
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "no `{key}` in {line}");
        }
    }
    let attempt = lines
        .into_iter()
        .find(|line| line["message"] == "attempt succeeded")
        .unwrap_or_else(|| panic!("no attempt line in {logged}"));
    assert!(
        attempt["delivery"]
            .as_str()
            .expect("delivery")
            .starts_with("dlv_"),
        "{attempt}"
    );
    assert_eq!(attempt["webhook"], hook.id, "{attempt}");
    assert_eq!(attempt["attempt"], 1, "{attempt}");
    assert!(system.stop());
}

fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request
}

#[path = "../../tests/common/receiver.rs"]
mod receiver;

#[path = "../../tests/common/monitoring.rs"]
mod monitoring;

#[path = "../../tests/common/signals.rs"]
mod signals;

use monitoring::free_port;

/// SIGTERM on the README system while its embedded daemon waits for an endpoint that does not answer: it
/// stops taking work at once (`/readyz` answers 503) and waits for the request; a second SIGTERM ends it at
/// once (exit code 1), and without one it exits 0 when `--shutdown-grace` is over, the lease left to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_or_the_grace_ends_the_server_at_once() {
    use receiver::{always, Receiver, Reply};

    let hanging = Receiver::http(always(Reply::ok().delay(Duration::from_secs(120)))).await;
    for (round, (grace, second_signal)) in [("60s", true), ("1s", false)].into_iter().enumerate() {
        let mut system = ReadmeSystem::start(&["--shutdown-grace", grace], &[]);
        let metrics = system.metrics;
        system.create_webhook(hanging.url("/"), "offer.*").await;
        system.publish("offer.accepted").await;
        hanging.wait_for(round + 1, Duration::from_secs(20)).await;
        monitoring::wait_for_status(metrics, "/readyz", 200, Duration::from_secs(10));
        signals::terminate(&system.child);
        let asked = std::time::Instant::now();
        let body = monitoring::wait_for_status(metrics, "/readyz", 503, Duration::from_secs(5));
        assert!(body.contains("shutting down"), "{body}");
        if second_signal {
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                system.child.try_wait().expect("wait").is_none(),
                "it waits for the request in flight"
            );
            signals::terminate(&system.child);
            let exit = signals::exit_within(&mut system.child, Duration::from_secs(3));
            assert_eq!(exit.code(), Some(1), "a second SIGTERM exits at once");
        } else {
            let exit = signals::exit_within(&mut system.child, Duration::from_secs(10));
            assert!(exit.success(), "the grace over, a clean exit: {exit}");
            assert!(
                asked.elapsed() >= Duration::from_millis(900),
                "it waited the grace"
            );
            let logged = system.log_when(|logged| logged.contains("shutdown grace over"));
            assert!(logged.contains("shutdown grace over"), "{logged}");
        }
    }
}

/// `prune --older-than`: a one-off purge by the retention rule, on the README system's database once it
/// has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_the_finished_history_at_once() {
    use receiver::{always, Receiver, Reply};

    let receiver = Receiver::http(always(Reply::ok())).await;
    let system = ReadmeSystem::start(&[], &[]);
    system.create_webhook(receiver.url("/"), "offer.*").await;
    system.publish("offer.accepted").await;
    system.publish("application.submitted").await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    let dir = system.dir.path().to_owned();
    let database = format!("sqlite://{}", dir.join("kit-webhooks.db").display());
    let ReadmeSystem { mut child, dir, .. } = system;
    signals::terminate(&child);
    assert!(signals::exit_within(&mut child, Duration::from_secs(30)).success());
    let prune = |older_than: &str| {
        let out = Command::new(BIN)
            .args([
                "prune",
                "--older-than",
                older_than,
                "--database-url",
                &database,
            ])
            .output()
            .expect("prune");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    assert_eq!(prune("1d"), "pruned 0 events, 0 deliveries, 0 attempts\n");
    // The delivered event with its delivery and attempt, and the one that went nowhere.
    assert_eq!(prune("0s"), "pruned 2 events, 1 deliveries, 1 attempts\n");
    drop(dir);
}
