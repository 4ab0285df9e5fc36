//! Webhook signing secrets sealed at rest (README, "Secrets, keys and the audit log"): no secret's bytes in
//! the stored files (the SQLite files, a PostgreSQL dump), a wrong or missing key stops the start, a database
//! from before sealing is sealed in place, and `secrets rotate-key` reseals every secret while deliveries go
//! on, on both databases.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::{path::Path, time::Duration};

use base64::{engine::general_purpose::STANDARD, Engine};
use common::{
    authed, fast_delivery,
    receiver::{always, Receiver, Reply},
    workspace_bin, Backend, TestServer,
};
use kit_webhooks::proto;
use kit_webhooks_server::{core::sealing::sealed_with, store::entity::webhook};
use sea_orm::{ConnectionTrait, EntityTrait};

on_both_databases!(
    no_secret_is_stored_in_clear,
    a_wrong_or_missing_key_stops_the_start,
    a_database_from_before_sealing_is_sealed_in_place,
    the_key_rotates_while_deliveries_go_on,
);

const WAIT: Duration = Duration::from_secs(30);

async fn start(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |config| fast_delivery(config, None)).await
}

/// What a secret looks like in bytes, every way it could be stored: as given, its base64 part, and the
/// 32 raw bytes it stands for.
fn forms(secret: &str) -> Vec<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").expect("a whsec_ secret");
    vec![
        secret.as_bytes().to_vec(),
        encoded.as_bytes().to_vec(),
        STANDARD.decode(encoded).expect("base64"),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Every byte the database keeps: the SQLite file with its WAL and shared memory, or a `pg_dump` of the
/// PostgreSQL database.
fn stored_bytes(server: &TestServer) -> Vec<u8> {
    match kit_webhooks_server::store::sqlite_path(&server.db.url) {
        Some(db) => {
            let dir = db.parent().expect("the database's directory");
            let name = db.file_name().expect("name").to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            let mut files = 0;
            for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
                if entry.file_name().to_string_lossy().starts_with(&name) {
                    bytes.extend(std::fs::read(entry.path()).expect("read a database file"));
                    files += 1;
                }
            }
            assert!(files >= 2, "the database file and its WAL");
            bytes
        }
        None => {
            let dump = std::process::Command::new("pg_dump")
                .arg(&server.db.url)
                .output()
                .expect("run pg_dump");
            assert!(
                dump.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&dump.stderr)
            );
            assert!(contains(&dump.stdout, b"COPY public.webhooks"));
            dump.stdout
        }
    }
}

async fn no_secret_is_stored_in_clear(backend: Backend) {
    let receiver = Receiver::http(always(Reply::ok())).await;
    let server = start(backend).await;
    let mut secrets = Vec::new();
    let mut hooks = Vec::new();
    for _ in 0..3 {
        let (hook, secret) = server
            .create_webhook(&receiver.url("/"), &["interview.*"])
            .await;
        secrets.push(secret);
        hooks.push(hook);
    }
    // A rotation with a grace keeps the old secret beside the new one.
    let rotated = server
        .webhooks()
        .await
        .rotate_secret(authed(
            &server.admin_key,
            proto::RotateSecretRequest {
                id: hooks[0].id.clone(),
                grace_period_seconds: Some(3600),
            },
        ))
        .await
        .expect("rotate")
        .into_inner();
    secrets.push(rotated.secret.clone());
    // Sealed secrets still sign: every delivery verifies with its webhook's secret, the rotated one with
    // both.
    server.publish("interview.scheduled", r#"{"n":1}"#).await;
    let received = receiver.wait_for(3, WAIT).await;
    for request in &received {
        assert!(
            secrets.iter().any(|secret| request.verify(secret).is_ok()),
            "a delivery signed with none of the secrets"
        );
    }
    // An admin still reads the secret back.
    let shown = server
        .webhooks()
        .await
        .get_webhook_secret(authed(
            &server.admin_key,
            proto::GetWebhookSecretRequest {
                id: hooks[1].id.clone(),
            },
        ))
        .await
        .expect("reveal")
        .into_inner()
        .secret;
    assert_eq!(shown, secrets[1]);

    let stored = stored_bytes(&server);
    for secret in &secrets {
        for form in forms(secret) {
            assert!(
                !contains(&stored, &form),
                "a form of secret {secret} is in the stored bytes"
            );
        }
    }
    // API keys are stored hashed: neither key of the key file is there either.
    for key in [&server.admin_key, &server.publisher_key] {
        assert!(!contains(&stored, key.as_bytes()));
    }
    // What is stored instead: sealed values, under the server's key.
    let rows = webhook::Entity::find()
        .all(server.server.store.reader())
        .await
        .expect("webhooks");
    for row in &rows {
        assert_eq!(
            sealed_with(&row.secret),
            Some(server.server.secrets.current_id())
        );
    }
    server.stop().await;
}

/// Starts a second server on `server`'s database with `adjust`ed settings, expecting it to refuse, and
/// returns its error.
async fn refused_start(
    server: &TestServer,
    adjust: impl FnOnce(&mut kit_webhooks_server::Config),
) -> String {
    let mut config = server.config.clone();
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.embedded_daemon = None;
    adjust(&mut config);
    match kit_webhooks_server::start(config).await {
        Ok(_) => panic!("a server started with the wrong secrets key"),
        Err(err) => format!("{err:#}"),
    }
}

fn generate_key(path: &Path) {
    let status = std::process::Command::new(workspace_bin("kit-webhooks-server"))
        .args(["secrets", "generate-key", "--out"])
        .arg(path)
        .status()
        .expect("run secrets generate-key");
    assert!(status.success());
}

async fn a_wrong_or_missing_key_stops_the_start(backend: Backend) {
    let server = start(backend).await;
    let (hook, _) = server
        .create_webhook("https://example.com/hooks", &["interview.*"])
        .await;
    let held = server.server.secrets.current_id().to_owned();
    let dir = tempfile::tempdir().expect("dir");

    // Another key: refused, naming the key the database needs.
    let other = dir.path().join("other.key");
    generate_key(&other);
    let error = refused_start(&server, |config| {
        config.secrets_key_files = vec![other.clone()]
    })
    .await;
    assert!(error.contains(&held), "{error}");
    assert!(error.contains("--secrets-key-file"), "{error}");
    // No key file where the default looks (a key file elsewhere): refused, not a new key.
    let error = refused_start(&server, |config| {
        config.key_file = Some(dir.path().join("elsewhere.keys"))
    })
    .await;
    assert!(error.contains(&held), "{error}");
    assert!(!dir.path().join("elsewhere.secrets-key").exists());
    // A file that is no key.
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key\n").expect("write");
    let error = refused_start(&server, |config| {
        config.secrets_key_files = vec![garbage.clone()]
    })
    .await;
    assert!(
        error.contains("garbage.key") && error.contains("base64"),
        "{error}"
    );

    // The refused starts changed nothing: the secret still opens.
    server
        .webhooks()
        .await
        .get_webhook_secret(authed(
            &server.admin_key,
            proto::GetWebhookSecretRequest { id: hook.id },
        ))
        .await
        .expect("the secret still opens");
    server.stop().await;
}

async fn a_database_from_before_sealing_is_sealed_in_place(backend: Backend) {
    let receiver = Receiver::http(always(Reply::ok())).await;
    let server = start(backend).await;
    let (hook, _) = server
        .create_webhook(&receiver.url("/"), &["interview.*"])
        .await;
    // Make it the database of a version without sealing: a secret in clear, no key recorded, no key file.
    let clear = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=";
    let db = server.server.store.writer();
    db.execute_unprepared(&format!(
        "UPDATE webhooks SET secret = '{clear}' WHERE id = '{}'",
        hook.id
    ))
    .await
    .expect("write a clear secret");
    db.execute_unprepared("DELETE FROM sealing_keys")
        .await
        .expect("forget the key");
    let key_file = server.config.default_secrets_key_file();
    let old_key = std::fs::read_to_string(&key_file).expect("the first start's key");
    std::fs::remove_file(&key_file).expect("remove the key file");

    // The next start writes a new key and seals the clear secret with it.
    let server = server.restart().await;
    let new_key = std::fs::read_to_string(&key_file).expect("a new key file");
    assert_ne!(new_key, old_key);
    let row = webhook::Entity::find_by_id(hook.id.clone())
        .one(server.server.store.reader())
        .await
        .expect("read")
        .expect("row");
    assert_eq!(
        sealed_with(&row.secret),
        Some(server.server.secrets.current_id())
    );
    assert!(!row.secret.contains(clear));
    // It is the same secret: deliveries verify with it.
    server.publish("interview.scheduled", "{}").await;
    let received = receiver.wait_for(1, WAIT).await;
    received[0]
        .verify(clear)
        .expect("signed with the secret that was in clear");
    server.stop().await;
}

async fn the_key_rotates_while_deliveries_go_on(backend: Backend) {
    let receiver = Receiver::http(always(Reply::ok())).await;
    let mut server = start(backend).await;
    let mut secrets = Vec::new();
    for _ in 0..5 {
        let (hook, secret) = server
            .create_webhook(&receiver.url("/"), &["interview.*"])
            .await;
        secrets.push((hook.id, secret));
    }
    let old_key = server.config.default_secrets_key_file();
    let old_id = server.server.secrets.current_id().to_owned();
    let dir = tempfile::tempdir().expect("dir");
    let new_key = dir.path().join("new.key");
    generate_key(&new_key);

    // Step 2 of the README: the server seals with the new key and opens both.
    server.config.secrets_key_files = vec![new_key.clone(), old_key.clone()];
    let server = server.restart().await;
    let new_id = server.server.secrets.current_id().to_owned();
    assert_ne!(new_id, old_id);
    // A webhook made now is sealed with the new key already.
    let (late, late_secret) = server
        .create_webhook(&receiver.url("/"), &["interview.*"])
        .await;
    secrets.push((late.id, late_secret));

    // Step 3, while events are published and delivered.
    let publishing = {
        let (url, key) = (server.server.url(), server.publisher_key.clone());
        tokio::spawn(async move {
            let mut client = proto::event_service_client::EventServiceClient::connect(url)
                .await
                .expect("connect");
            for n in 0..20 {
                client
                    .publish_event(authed(
                        &key,
                        proto::PublishEventRequest {
                            account_id: "default".into(),
                            r#type: "interview.scheduled".into(),
                            data_json: format!(r#"{{"n":{n}}}"#),
                            idempotency_key: String::new(),
                        },
                    ))
                    .await
                    .expect("publish during the rotation");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let rotate = {
        let (url, new_key, old_key) = (server.db.url.clone(), new_key.clone(), old_key.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(workspace_bin("kit-webhooks-server"))
                .args([
                    "secrets",
                    "rotate-key",
                    "--database-url",
                    &url,
                    "--new-key-file",
                ])
                .arg(&new_key)
                .arg("--secrets-key-file")
                .arg(&old_key)
                .output()
                .expect("run secrets rotate-key")
        })
    };
    let output = rotate.await.expect("join");
    assert!(
        output.status.success(),
        "rotate-key: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "resealed the secrets of 5 webhooks\n"
    );
    publishing.await.expect("publisher");
    let received = receiver.wait_for(20 * secrets.len(), WAIT).await;
    for request in &received {
        assert!(
            secrets
                .iter()
                .any(|(_, secret)| request.verify(secret).is_ok()),
            "a delivery during the rotation signed with none of the secrets"
        );
    }
    // Every secret is under the new key, and the database records only it.
    let rows = webhook::Entity::find()
        .all(server.server.store.reader())
        .await
        .expect("webhooks");
    assert!(rows
        .iter()
        .all(|row| sealed_with(&row.secret) == Some(new_id.as_str())));
    assert_eq!(
        server.server.store.sealing_key_ids().await.expect("ids"),
        vec![new_id.clone()]
    );

    // Step 4: the old key is no longer needed; alone, it is refused, naming the new key.
    let error = refused_start(&server, |config| {
        config.secrets_key_files = vec![old_key.clone()]
    })
    .await;
    assert!(error.contains(&new_id), "{error}");
    let mut server = server;
    server.config.secrets_key_files = vec![new_key.clone()];
    let server = server.restart().await;
    server
        .publish("interview.scheduled", r#"{"after":true}"#)
        .await;
    let received = receiver
        .wait_for(20 * secrets.len() + secrets.len(), WAIT)
        .await;
    for request in &received[20 * secrets.len()..] {
        let body = String::from_utf8_lossy(&request.body);
        assert!(body.contains("after"), "{body}");
        assert!(secrets
            .iter()
            .any(|(_, secret)| request.verify(secret).is_ok()));
    }
    server.stop().await;
}
