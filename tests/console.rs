//! The web console in a real browser: headless Chromium, driven by Playwright
//! (`console/tests/console.test.mjs`), against a real server on SQLite with its embedded daemon delivering to
//! a real receiver. Between the script's two phases the test publishes an event through the API, as a Kit
//! service would, and the second phase finds its delivery in the Deliveries tab; a third pages through 55
//! webhooks. The console's Node.js packages
//! and Debian's Chromium are installed on first use when missing (as `.ci/run` does beforehand); where that is
//! not possible the test fails, saying what to install, rather than skip.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::{path::PathBuf, process::Command};

use common::{
    receiver::{Receiver, Reply},
    Backend, TestServer,
};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test]
async fn an_admin_does_everything_in_the_console() {
    let chromium = std::env::var("KIT_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    let console = common::root().join("console");
    let script = console.join("tests/console.test.mjs");
    tokio::task::spawn_blocking({
        let (console, chromium) = (console.clone(), chromium.clone());
        move || install(&console, &chromium)
    })
    .await
    .expect("join");
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        common::fast_delivery(config, None);
        config.request_timeout = std::time::Duration::from_secs(15);
    })
    .await;
    // The published event's delivery (the second request) is answered late: the Deliveries tab opens while
    // it is in flight, and only its watch (`WatchWebhooks` over gRPC-Web, no polling) shows it succeed.
    let receiver = Receiver::http(std::sync::Arc::new(
        |_: &common::receiver::Received, n: usize| match n {
            1 => Reply::status(204).delay(std::time::Duration::from_secs(6)),
            _ => Reply::status(204),
        },
    ))
    .await;
    let run = {
        let (url, key, hook_url) = (
            server.server.url(),
            server.admin_key.clone(),
            receiver.url("/kit"),
        );
        move |phase: &'static str, previous_secret: String| {
            let (url, key, hook_url, chromium, script) = (
                url.clone(),
                key.clone(),
                hook_url.clone(),
                chromium.clone(),
                script.clone(),
            );
            tokio::task::spawn_blocking(move || {
                browse(
                    &script,
                    phase,
                    &url,
                    &key,
                    &hook_url,
                    &chromium,
                    &previous_secret,
                )
            })
        }
    };

    let first = run("first", String::new()).await.expect("join");
    let secret = first["secret"].as_str().expect("secret").to_owned();
    let pings = receiver
        .wait_for(1, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(pings[0].header("kit-event-type"), "test.ping");

    let published = server
        .publish("application.submitted", r#"{"application_id": 7}"#)
        .await;
    assert_eq!(
        published.deliveries_queued, 1,
        "the console's webhook gets it"
    );

    run("second", secret).await.expect("join");
    let webhooks = server
        .webhooks()
        .await
        .list_webhooks(common::authed(
            &server.admin_key,
            kit_webhooks::proto::ListWebhooksRequest::default(),
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(webhooks.webhooks.is_empty(), "deleted in the console");

    // Past 50 webhooks, the list goes by pages.
    for n in 0..55 {
        server
            .create_webhook(&format!("https://hooks{n}.example.com/kit"), &["offer.*"])
            .await;
    }
    run("pages", String::new()).await.expect("join");
    server.stop().await;
}

/// Installs the console's locked Node.js packages and Debian's Chromium, each unless it is there.
fn install(console: &std::path::Path, chromium: &str) {
    common::node::install(console, &["playwright-core", "esbuild"]);
    if !std::path::Path::new(chromium).exists() {
        common::node::run(
            Command::new("sh").args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
            ]),
            "installing Debian's chromium (as root; or install it yourself)",
        );
    }
}

/// Runs one phase of the browser script; its JSON line.
fn browse(
    script: &PathBuf,
    phase: &str,
    url: &str,
    key: &str,
    hook_url: &str,
    chromium: &str,
    previous_secret: &str,
) -> Value {
    let output = Command::new("node")
        .arg(script)
        .arg(phase)
        .env("KIT_CONSOLE_URL", url)
        .env("KIT_ADMIN_KEY", key)
        .env("KIT_RECEIVER_URL", hook_url)
        .env("KIT_CHROMIUM", chromium)
        .env("KIT_PREVIOUS_SECRET", previous_secret)
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "the {phase} phase failed in the browser:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON line")
}
