//! `examples/python/example.py` runs against a real server: stubs generated from `proto/` by grpcio-tools
//! create a webhook, publish an event and read the delivery, so the contract stays usable outside Rust; the
//! webhook points at the endpoint the example starts itself, which gets the event signed.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::process::Command;

use common::{Backend, TestServer};
use serde_json::Value;

on_both_databases!(python_example_runs_against_the_server);

async fn python_example_runs_against_the_server(backend: Backend) {
    // As the README's start command runs it: http:// endpoints on this machine allowed.
    let server =
        TestServer::start_with(backend, |config| common::fast_delivery(config, None)).await;
    let python = common::python::python();
    let script = common::root().join("examples/python/example.py");
    let server_addr = server.server.addr.to_string();
    let (admin, publisher) = (server.admin_key.clone(), server.publisher_key.clone());
    // A blocking child process: keep it off the runtime's worker threads.
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(["--server", &server_addr])
            .env("KIT_WEBHOOKS_ADMIN_KEY", admin)
            .env("KIT_WEBHOOKS_PUBLISHER_KEY", publisher)
            .output()
            .expect("run the Python example")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "example failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert!(result["webhook_id"]
        .as_str()
        .expect("webhook id")
        .starts_with("wh_"));
    assert_eq!(result["secret_prefix"], "whsec_");
    assert_eq!(result["deliveries_queued"], 1);
    assert_eq!(result["delivery_event_id"], result["event_id"]);
    assert_eq!(
        result["delivery_status"], "DELIVERY_STATUS_SUCCEEDED",
        "{result}"
    );
    assert_eq!(result["received"]["event_type"], "application.submitted");
    assert_eq!(result["received"]["signature_valid"], true, "{result}");
    assert_eq!(
        result["received"]["data"]["application_id"],
        9007199254740993_u64
    );
    let event = server
        .get_delivery(result["delivery_id"].as_str().expect("delivery id"))
        .await;
    assert_eq!(event.event_type, "application.submitted");
    server.stop().await;
}
