//! `kit-webhooks keys` as an admin uses it, from the key file's directory with no token typed: list the
//! account's keys, create one that expires (printed once, on stdout alone), revoke it, and see it refused.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::{Backend, TestServer};
use serde_json::Value;

on_both_databases!(an_admin_lists_creates_and_revokes_its_keys);

const BIN: &str = env!("CARGO_BIN_EXE_kit-webhooks");

/// Runs the CLI in the key file's directory, pointed at `server`, with `token` if given (else the key
/// file's admin key).
fn cli(server: &TestServer, token: Option<&str>, args: &[&str]) -> Output {
    let dir = server.key_file.parent().expect("key dir");
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env("KIT_WEBHOOKS_SERVER", server.server.url())
        .env_remove("KIT_WEBHOOKS_TOKEN")
        .env_remove("KIT_WEBHOOKS_KEY_FILE");
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    command.args(args).output().expect("run kit-webhooks")
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

async fn an_admin_lists_creates_and_revokes_its_keys(backend: Backend) {
    let server = TestServer::start_without_daemon(backend).await;
    let created = cli(&server, None, &["keys", "create", "--expires-in", "30d"]);
    // Only the key on stdout, so that `> file` keeps just it; the rest on stderr.
    let key = ok(&created).trim().to_owned();
    assert!(key.starts_with("kwk_live_key_"), "{key}");
    let id = &key["kwk_live_".len().."kwk_live_".len() + 30];
    let said = String::from_utf8_lossy(&created.stderr);
    assert!(
        said.contains(id) && said.contains("shown only now"),
        "{said}"
    );
    // The new key works, and the table names both keys, never a key.
    ok(&cli(&server, Some(&key), &["webhooks", "list"]));
    let table = ok(&cli(&server, None, &["keys", "list"]));
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(id) && !table.contains(&key), "{table}");
    assert_eq!(table.lines().count(), 3, "a header and two keys: {table}");
    let listed: Value =
        serde_json::from_str(&ok(&cli(&server, None, &["-o", "json", "keys", "list"])))
            .expect("JSON");
    let mine = listed
        .as_array()
        .expect("an array")
        .iter()
        .find(|k| k["id"] == id)
        .expect("the new key");
    assert_eq!(mine["role"], "admin");
    assert!(
        mine["expires_at"].is_string() && mine["revoked_at"].is_null(),
        "{mine}"
    );

    let revoked = ok(&cli(&server, None, &["keys", "revoke", id]));
    assert!(
        revoked.starts_with(&format!("revoked {id} at ")),
        "{revoked}"
    );
    let refused = cli(&server, Some(&key), &["webhooks", "list"]);
    assert!(!refused.status.success());
    let reason = String::from_utf8_lossy(&refused.stderr);
    assert!(
        reason.contains("revoked") && reason.contains(id),
        "{reason}"
    );
    // A key of another account is not this admin's to revoke.
    let other = server
        .key(kit_webhooks_server::core::Role::Admin, Some("other"))
        .await;
    let other_id = &other["kwk_live_".len().."kwk_live_".len() + 30];
    let refused = cli(&server, None, &["keys", "revoke", other_id]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not found"));
    ok(&cli(&server, Some(&other), &["webhooks", "list"]));
    server.stop().await;
}
