//! The `kit-webhooks` binary against a real server, as an admin uses it: no token typed (the key file the
//! server wrote is found in the working directory), tables and JSON, `listen` verifying real deliveries,
//! and clear one-line errors.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{monitoring::free_port, Backend, TestServer};
use kit_webhooks_server::store::entity::{delivery, event};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::Value;

on_both_databases!(
    a_long_list_stops_quietly_at_a_closed_pipe_and_takes_a_limit,
    listen_forwards_verified_requests_to_the_application,
    readme_quick_start_needs_no_token_and_no_secret,
    quick_start_flow_with_listen,
    webhook_lifecycle_in_json,
    replay_requeues_exactly_the_failed_deliveries_in_the_window,
);

const BIN: &str = env!("CARGO_BIN_EXE_kit-webhooks");

/// Runs the CLI in the key file's directory, pointed at `server`.
fn cli(server: &TestServer, args: &[&str]) -> Output {
    let dir = server.key_file.parent().expect("key dir");
    Command::new(BIN)
        .current_dir(dir)
        .env("KIT_WEBHOOKS_SERVER", server.server.url())
        .env_remove("KIT_WEBHOOKS_TOKEN")
        .env_remove("KIT_WEBHOOKS_KEY_FILE")
        .args(args)
        .output()
        .expect("run kit-webhooks")
}

#[track_caller]
fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kit-webhooks failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

#[track_caller]
fn json(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).expect("JSON output")
}

/// Asserts a failure with a one-line reason mentioning every `needle`.
#[track_caller]
fn fails(output: &Output, needles: &[&str]) {
    assert!(
        !output.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "`{stderr}` does not mention `{needle}`"
        );
    }
}

/// Asserts a usage error as clap writes it, whole: exit code 2, and every `needle` on stderr.
#[track_caller]
fn usage_error(output: &Output, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "`{stderr}` does not mention `{needle}`"
        );
    }
}

/// POSTs `body` to `listen` on `port` with a signature no secret made; the raw HTTP response.
fn post_forged(port: u16, body: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "POST /hooks HTTP/1.1\r\nhost: x\r\nwebhook-id: evt_1\r\nwebhook-timestamp: {}\r\n\
         webhook-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        kit_webhooks::signature::unix_now(),
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

struct Listener {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Listener {
    /// `listen` in `dir`, pointed at `server`, with `--secret` when given, and `extra` arguments.
    fn start(
        dir: &Path,
        server: &TestServer,
        port: u16,
        secret: Option<&str>,
        extra: &[&str],
    ) -> Listener {
        let mut args = vec![
            "listen".to_string(),
            "--port".into(),
            port.to_string(),
            "--output".into(),
            "json".into(),
        ];
        if let Some(secret) = secret {
            args.extend(["--secret".to_string(), secret.to_string()]);
        }
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .env("KIT_WEBHOOKS_SERVER", server.server.url())
            .env_remove("KIT_WEBHOOKS_TOKEN")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start listen");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Listener { child, lines };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("listen never accepted connections");
    }

    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("listen printed a request");
        serde_json::from_str(&line).expect("a JSON line")
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The README's quick start: `listen` first, then create a webhook and ping it, nothing typed but commands.
async fn readme_quick_start_needs_no_token_and_no_secret(backend: Backend) {
    let server =
        TestServer::start_with(backend, |config| common::fast_delivery(config, None)).await;
    let dir = server.key_file.parent().expect("dir").to_owned();
    let port = free_port();
    let listener = Listener::start(&dir, &server, port, None, &[]);
    let created = ok(&cli(
        &server,
        &[
            "webhooks",
            "create",
            "--url",
            &format!("http://127.0.0.1:{port}/"),
            "--events",
            "application.*",
        ],
    ));
    let id = created
        .lines()
        .find_map(|line| line.strip_prefix("id"))
        .map(|rest| rest.trim().to_owned())
        .expect("the id is printed");
    assert!(
        created.contains("whsec_"),
        "the secret is printed: {created}"
    );
    let ping = cli(&server, &["webhooks", "ping", &id]);
    let seen = listener.next();
    assert_eq!(seen["verified"], true, "{seen}");
    let ping = ok(&ping);
    assert!(ping.contains("HTTP 204"), "{ping}");
    assert_eq!(seen["event_type"], "test.ping");
    assert_eq!(seen["body"]["data"]["webhook_id"], id.as_str());
    server.stop().await;
}

async fn quick_start_flow_with_listen(backend: Backend) {
    let server =
        TestServer::start_with(backend, |config| common::fast_delivery(config, None)).await;
    let dir = server.key_file.parent().expect("dir").to_owned();
    let port = free_port();
    let created = json(&cli(
        &server,
        &[
            "webhooks",
            "create",
            "--url",
            &format!("http://127.0.0.1:{port}/hooks"),
            "--events",
            "application.*,offer.accepted",
            "--output",
            "json",
        ],
    ));
    let id = created["webhook"]["id"].as_str().expect("id").to_owned();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert_eq!(
        created["webhook"]["events"],
        serde_json::json!(["application.*", "offer.accepted"])
    );
    let listener = Listener::start(&dir, &server, port, Some(&secret), &[]);

    let ping = ok(&cli(&server, &["webhooks", "ping", &id]));
    assert!(ping.contains("HTTP 204"), "{ping}");
    let seen = listener.next();
    assert_eq!(seen["verified"], true);
    assert_eq!(seen["event_type"], "test.ping");

    std::fs::write(dir.join("data.json"), r#"{"application_id": 7}"#).expect("write data");
    let published = ok(&cli(
        &server,
        &[
            "events",
            "publish",
            "--account",
            "default",
            "--type",
            "application.submitted",
            "--data",
            "@data.json",
        ],
    ));
    assert!(published.contains("1 deliveries queued"), "{published}");
    let seen = listener.next();
    assert_eq!(seen["verified"], true);
    assert_eq!(seen["event_type"], "application.submitted");
    assert_eq!(seen["body"]["data"]["application_id"], 7);
    let delivery_id = seen["delivery_id"]
        .as_str()
        .expect("delivery id")
        .to_owned();

    let listed = json(&cli(
        &server,
        &["deliveries", "list", "--webhook", &id, "--output", "json"],
    ));
    assert_eq!(listed.as_array().expect("array").len(), 2);
    let table = ok(&cli(&server, &["deliveries", "list", "--webhook", &id]));
    assert!(
        table.starts_with("ID")
            && table.contains("test.ping")
            && table.contains("application.submitted"),
        "{table}"
    );
    // The receiver answered before the daemon's report is committed: wait for the attempt to be on record.
    server
        .wait_delivery(&delivery_id, Duration::from_secs(20), |d| {
            d.attempt_count == 1
        })
        .await;
    let shown = ok(&cli(&server, &["deliveries", "show", &delivery_id]));
    assert!(
        shown.contains("attempt 1")
            && shown.contains("HTTP 204")
            && shown.contains("webhook-signature"),
        "{shown}"
    );

    // A tampered body is refused with 401 and reported as not verified.
    let response = post_forged(port, r#"{"tampered":true}"#);
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    let seen = listener.next();
    assert_eq!(seen["verified"], false);
    assert!(seen["error"]
        .as_str()
        .expect("why")
        .contains("no signature matches"));
    server.stop().await;
}

async fn webhook_lifecycle_in_json(backend: Backend) {
    let server = TestServer::start(backend).await;
    let created = json(&cli(
        &server,
        &[
            "webhooks",
            "create",
            "--url",
            "https://hooks.example.com/kit",
            "--events",
            "interview.*",
            "--description",
            "first",
            "-o",
            "json",
        ],
    ));
    let id = created["webhook"]["id"].as_str().expect("id").to_owned();
    let updated = json(&cli(
        &server,
        &[
            "webhooks",
            "update",
            &id,
            "--events",
            "offer.*,review.submitted",
            "-o",
            "json",
        ],
    ));
    assert_eq!(
        updated["events"],
        serde_json::json!(["offer.*", "review.submitted"])
    );
    assert_eq!(
        updated["description"], "first",
        "only the flags given change"
    );
    assert_eq!(
        json(&cli(&server, &["webhooks", "pause", &id, "-o", "json"]))["status"],
        "paused"
    );
    assert_eq!(
        json(&cli(&server, &["webhooks", "resume", &id, "-o", "json"]))["status"],
        "active"
    );
    // Rotation keeps the old secret for a day unless told otherwise, and will not cut an earlier grace short.
    let rotated = json(&cli(
        &server,
        &["webhooks", "rotate-secret", &id, "-o", "json"],
    ));
    assert_ne!(rotated["secret"], created["secret"]);
    assert!(rotated["webhook"]["previous_secret_expires_at"].is_string());
    fails(
        &cli(&server, &["webhooks", "rotate-secret", &id]),
        &["FAILED_PRECONDITION", "still accepted until"],
    );
    let revoked = ok(&cli(
        &server,
        &["webhooks", "rotate-secret", &id, "--grace", "0s"],
    ));
    assert!(revoked.contains("no longer accepted"), "{revoked}");
    let rotated = json(&cli(
        &server,
        &["webhooks", "rotate-secret", &id, "-o", "json"],
    ));
    let secret = ok(&cli(&server, &["webhooks", "secret", &id]));
    assert_eq!(secret.trim(), rotated["secret"].as_str().expect("secret"));
    let listed = json(&cli(&server, &["webhooks", "list", "-o", "json"]));
    assert_eq!(listed.as_array().expect("array").len(), 1);
    let types = ok(&cli(&server, &["event-types"]));
    assert!(
        types.contains("interview.*") && types.contains("interview.no_show"),
        "{types}"
    );
    assert!(ok(&cli(&server, &["webhooks", "delete", &id])).contains("deleted"));

    // Bad input: a clear one-line reason and a non-zero exit.
    fails(
        &cli(
            &server,
            &[
                "webhooks",
                "create",
                "--url",
                "ftp://example.com",
                "--events",
                "offer.*",
            ],
        ),
        &["INVALID_ARGUMENT", "url"],
    );
    fails(
        &cli(
            &server,
            &[
                "webhooks",
                "create",
                "--url",
                "https://example.com",
                "--events",
                "offer.nope",
            ],
        ),
        &["events", "offer.nope"],
    );
    fails(
        &cli(&server, &["webhooks", "get", "not-an-id"]),
        &["INVALID_ARGUMENT", "id"],
    );
    fails(
        &cli(&server, &["webhooks", "get", &id]),
        &["NOT_FOUND", &id],
    );
    fails(
        &cli(&server, &["webhooks", "update", &id]),
        &["nothing to change"],
    );
    usage_error(
        &cli(
            &server,
            &["webhooks", "rotate-secret", &id, "--grace", "3y"],
        ),
        &["--grace", "3y"],
    );
    fails(
        &cli(
            &server,
            &[
                "events",
                "publish",
                "--account",
                "default",
                "--type",
                "offer.accepted",
                "--data",
                "[1]",
            ],
        ),
        &["--data", "object"],
    );
    fails(
        &cli(
            &server,
            &[
                "events",
                "publish",
                "--account",
                "default",
                "--type",
                "offer.accepted",
                "--data",
                "@missing.json",
            ],
        ),
        &["missing.json"],
    );
    fails(
        &cli(&server, &["webhooks", "list", "--token", "kit_wrong"]),
        &["UNAUTHENTICATED"],
    );
    fails(
        &cli(&server, &["webhooks", "list", "--key-file", "nowhere.keys"]),
        &["no API key"],
    );
    fails(
        &cli(
            &server,
            &["webhooks", "list", "--server", "http://127.0.0.1:1"],
        ),
        &["cannot reach the server"],
    );

    // Every command explains itself.
    for args in [
        vec!["--help"],
        vec!["webhooks", "create", "--help"],
        vec!["webhooks", "rotate-secret", "--help"],
        vec!["deliveries", "replay", "--help"],
        vec!["events", "publish", "--help"],
        vec!["listen", "--help"],
    ] {
        let help = ok(&cli(&server, &args));
        assert!(
            help.contains("Usage") && help.contains("Example"),
            "{args:?}: {help}"
        );
    }
    server.stop().await;
}

async fn replay_requeues_exactly_the_failed_deliveries_in_the_window(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (hook, _) = server
        .create_webhook("https://hooks.example.com/kit", &["offer.*"])
        .await;
    let (other, _) = server
        .create_webhook("https://other.example.com/kit", &["offer.*"])
        .await;
    for _ in 0..4 {
        server.publish("offer.accepted", "{}").await;
    }
    // Fail every delivery; one event of `hook` is from before the window, one of its deliveries succeeded.
    let db = server.server.store.writer();
    let now = kit_webhooks_server::core::time::now_ms();
    let rows = delivery::Entity::find().all(db).await.expect("deliveries");
    let mine: Vec<_> = rows
        .iter()
        .filter(|d| d.webhook_id == hook.id)
        .cloned()
        .collect();
    for row in &rows {
        let mut active: delivery::ActiveModel = row.clone().into();
        active.status = Set(if row.id == mine[1].id {
            delivery::DeliveryStatus::Succeeded
        } else {
            delivery::DeliveryStatus::Failed
        });
        active.next_attempt_at = Set(None);
        active.update(db).await.expect("update");
    }
    let mut old: event::ActiveModel = event::Entity::find_by_id(mine[0].event_id.clone())
        .one(db)
        .await
        .expect("read")
        .expect("event")
        .into();
    old.created_at = Set(now - 3 * 3600 * 1000);
    old.update(db).await.expect("age the event");

    let reply = json(&cli(
        &server,
        &[
            "deliveries",
            "replay",
            "--webhook",
            &hook.id,
            "--since",
            "1h",
            "-o",
            "json",
        ],
    ));
    assert_eq!(
        reply["deliveries_requeued"], 2,
        "four deliveries: one too old, one succeeded, two replayed"
    );
    let pending: Vec<String> = delivery::Entity::find()
        .filter(delivery::Column::Status.eq("pending"))
        .all(server.server.store.reader())
        .await
        .expect("read")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(pending.len(), 2);
    assert!(
        pending
            .iter()
            .all(|id| mine[2..].iter().any(|d| &d.id == id)),
        "exactly the failed ones in the window"
    );
    let again = ok(&cli(
        &server,
        &[
            "deliveries",
            "replay",
            "--webhook",
            &hook.id,
            "--since",
            "1h",
        ],
    ));
    assert!(again.contains("re-queued 0"), "nothing twice: {again}");
    let untouched = server.deliveries(&other.id).await;
    assert!(
        untouched
            .iter()
            .all(|d| d.status() == kit_webhooks::proto::DeliveryStatus::Failed),
        "other webhooks untouched"
    );
    usage_error(
        &cli(
            &server,
            &[
                "deliveries",
                "replay",
                "--webhook",
                &hook.id,
                "--since",
                "last tuesday",
            ],
        ),
        &["--since"],
    );
    server.stop().await;
}

/// A mistyped command gets clap's whole message: what is missing, a similar name, the usage.
#[test]
fn usage_errors_say_everything_clap_knows() {
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env_remove("KIT_WEBHOOKS_TOKEN")
            .output()
            .expect("run kit-webhooks")
    };
    usage_error(
        &run(&["webhooks", "create", "--url", "https://x.example.com/"]),
        &["required arguments were not provided", "--events", "Usage"],
    );
    usage_error(&run(&["webhooks", "craete"]), &["similar", "create"]);
    usage_error(
        &run(&["webhooks", "list", "--output", "yaml"]),
        &["yaml", "table", "json"],
    );
}

/// `kit-webhooks events list | head`: the reader goes away after a line; the CLI ends quietly (no panic), and
/// `--limit` prints only what was asked.
async fn a_long_list_stops_quietly_at_a_closed_pipe_and_takes_a_limit(backend: Backend) {
    use kit_webhooks_server::store::events::new_event;
    let server = TestServer::start(backend).await;
    // Far more output than a pipe holds.
    let rows: Vec<event::ActiveModel> = (0..2000)
        .map(|n| {
            let data = format!(r#"{{"application_id": {n}}}"#);
            new_event("default", "application.submitted", data, None).into()
        })
        .collect();
    event::Entity::insert_many(rows)
        .exec_without_returning(server.server.store.writer())
        .await
        .expect("insert events");
    let dir = server.key_file.parent().expect("key dir").to_path_buf();
    let url = server.server.url();
    let (first_line, status, stderr) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .current_dir(&dir)
            .env("KIT_WEBHOOKS_SERVER", &url)
            .env_remove("KIT_WEBHOOKS_TOKEN")
            .args(["events", "list"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kit-webhooks");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first_line = String::new();
        stdout.read_line(&mut first_line).expect("a first line");
        drop(stdout);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr)
            .expect("stderr");
        (first_line, child.wait().expect("wait"), stderr)
    })
    .await
    .expect("join");
    assert!(first_line.contains("ID"), "{first_line}");
    assert!(stderr.is_empty(), "quiet at a closed pipe: {stderr}");
    assert_ne!(status.code(), Some(101), "no panic");

    let limited = ok(&cli(&server, &["events", "list", "--limit", "3"]));
    assert_eq!(
        limited.lines().count(),
        1 + 3,
        "a header and three events: {limited}"
    );
    let limited = json(&cli(
        &server,
        &["events", "list", "--limit", "5", "-o", "json"],
    ));
    assert_eq!(limited.as_array().expect("array").len(), 5);
    server.stop().await;
}

/// `listen --forward-to`: the application under development gets each verified delivery with its headers and
/// body unchanged, and its answer is what the server records; a forged request never reaches it.
async fn listen_forwards_verified_requests_to_the_application(backend: Backend) {
    use common::receiver::{always, Receiver, Reply};
    let server =
        TestServer::start_with(backend, |config| common::fast_delivery(config, None)).await;
    let app = Receiver::http(always(Reply::status(202).body("queued by the app"))).await;
    let dir = server.key_file.parent().expect("dir").to_owned();
    let port = free_port();
    let created = json(&cli(
        &server,
        &[
            "webhooks",
            "create",
            "--url",
            &format!("http://127.0.0.1:{port}/hooks"),
            "--events",
            "application.*",
            "-o",
            "json",
        ],
    ));
    let id = created["webhook"]["id"].as_str().expect("id").to_owned();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let app_url = app.url("/webhooks");
    let listener = Listener::start(
        &dir,
        &server,
        port,
        Some(&secret),
        &["--forward-to", &app_url],
    );

    let ping = ok(&cli(&server, &["webhooks", "ping", &id]));
    assert!(
        ping.contains("HTTP 202"),
        "the application's answer: {ping}"
    );
    let seen = listener.next();
    assert_eq!(seen["verified"], true);
    assert_eq!(seen["forwarded_status"], 202);
    let got = app.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].path, "/webhooks");
    assert_eq!(got[0].header("kit-event-type"), "test.ping");
    assert!(got[0].header("webhook-signature").starts_with("v1,"));
    let signed = kit_webhooks::signature::SignedHeaders::read(|name| {
        Some(got[0].header(name)).filter(|value| !value.is_empty())
    });
    assert_eq!(
        signed.verify(&secret, &got[0].body),
        Ok(()),
        "the application verifies what it got, headers and body unchanged"
    );

    // A forged request is refused and not forwarded.
    let response = post_forged(port, r#"{"forged":true}"#);
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    let seen = listener.next();
    assert_eq!(seen["verified"], false);
    assert!(seen["forwarded_status"].is_null());
    assert_eq!(app.requests().len(), 1, "the forged request stayed out");
    server.stop().await;
}

/// `kit-webhooks PATH --help`.
fn help_of(path: &[String]) -> String {
    let output = Command::new(BIN)
        .args(path)
        .arg("--help")
        .output()
        .expect("run kit-webhooks");
    assert!(output.status.success(), "{path:?} --help");
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Every command of the CLI with its `--help`, found by walking the tree as a user would.
fn command_tree() -> Vec<(Vec<String>, String)> {
    fn walk(path: Vec<String>, found: &mut Vec<(Vec<String>, String)>) {
        let text = help_of(&path);
        let commands: Vec<String> = text
            .lines()
            .skip_while(|line| !line.starts_with("Commands:"))
            .skip(1)
            .take_while(|line| !line.trim().is_empty())
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| *name != "help")
            .map(str::to_owned)
            .collect();
        for command in commands {
            let mut next = path.clone();
            next.push(command);
            walk(next, found);
        }
        found.push((path, text));
    }
    let mut found = Vec::new();
    walk(Vec::new(), &mut found);
    found
}

/// Every command's `--help` ends with at least one example.
#[test]
fn every_command_shows_an_example() {
    let tree = command_tree();
    assert!(tree.len() >= 20, "walked only {tree:?}");
    for (path, text) in &tree {
        assert!(
            text.contains("Example"),
            "`{}` has no example:\n{text}",
            path.join(" ")
        );
    }
}

/// The README's CLI table and quick start against the binary: every command they show exists with every flag
/// they give it, and every command of the CLI has a row in the table.
#[test]
fn the_readme_shows_the_cli_as_it_is() {
    let tree = command_tree();
    let help: std::collections::HashMap<String, &String> = tree
        .iter()
        .map(|(path, text)| (path.join(" "), text))
        .collect();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = |heading: &str| -> String {
        readme
            .split("\n## ")
            .find(|part| part.starts_with(heading))
            .unwrap_or_else(|| panic!("no `## {heading}` in the README"))
            .to_owned()
    };
    // Each shown use: the words of one command with its flags.
    let mut uses: Vec<Vec<String>> = Vec::new();
    for row in section("The CLI").lines().filter(|l| l.starts_with("| `")) {
        let cell = row
            .trim_start_matches("| ")
            .split(" | ")
            .next()
            .unwrap_or_default();
        let mut group: Option<String> = None;
        for shown in cell.split(" / ") {
            let words: Vec<String> = shown
                .trim_matches('`')
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            let words = match (&group, words.first().map(String::as_str)) {
                (_, Some("webhooks" | "deliveries" | "events" | "keys" | "audit")) => {
                    group = words.first().cloned();
                    words
                }
                (Some(group), Some(first)) if !help.contains_key(first) => {
                    std::iter::once(group.clone()).chain(words).collect()
                }
                _ => words,
            };
            uses.push(words);
        }
    }
    let table_rows = uses.len();
    for line in section("Quick start").lines() {
        if let Some(command) = line.trim().strip_prefix("kit-webhooks ") {
            let command = command.split('#').next().unwrap_or_default();
            uses.push(command.split_whitespace().map(str::to_owned).collect());
        }
    }
    assert!(table_rows >= 15 && uses.len() > table_rows, "{uses:?}");
    let mut documented = std::collections::HashSet::new();
    for words in &uses {
        let path: Vec<&str> = words
            .iter()
            .map(String::as_str)
            .take_while(|word| !word.starts_with('-') && !word.starts_with('['))
            .take(2)
            .filter(|word| word.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .collect();
        let (path, text) = (1..=path.len())
            .rev()
            .map(|n| path[..n].join(" "))
            .find_map(|path| help.get(&path).map(|text| (path, *text)))
            .unwrap_or_else(|| {
                panic!(
                    "the README shows `{}`, which is no command",
                    words.join(" ")
                )
            });
        documented.insert(path.clone());
        for flag in words.iter().filter_map(|word| {
            let flag = word.trim_start_matches('[');
            flag.starts_with("--")
                .then(|| flag.trim_end_matches(']').to_owned())
        }) {
            let flag = flag.split('=').next().unwrap_or_default().to_owned();
            assert!(
                text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n")),
                "the README gives `{path}` the flag `{flag}`, which its --help does not have"
            );
        }
    }
    for (path, text) in &tree {
        let is_leaf = !text.contains("Commands:");
        if is_leaf && !path.is_empty() {
            assert!(
                documented.contains(&path.join(" ")),
                "`{}` has no row in the README's CLI table",
                path.join(" ")
            );
        }
    }
}
