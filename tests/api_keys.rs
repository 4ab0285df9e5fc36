//! API keys with a life (README, "Secrets, keys and the audit log"): an id inside the key, a list that never
//! shows a key, revocation refused everywhere within a second (another replica, another process), expiry,
//! and an admin managing only its own account's keys, on both databases.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::{Duration, Instant};

use common::{assert_status, authed, workspace_bin, Backend, TestServer};
use kit_webhooks::proto::{
    self, api_key_service_client::ApiKeyServiceClient, webhook_service_client::WebhookServiceClient,
};
use kit_webhooks_server::core::Role;
use tonic::{transport::Channel, Code};

on_both_databases!(
    an_admin_manages_its_own_keys,
    a_revoked_key_is_refused_everywhere_within_a_second,
    an_expired_key_is_refused,
);

/// The id a `kwk_live_<id>_…` key names: `key_` and a 26-character ULID.
fn id_of(key: &str) -> &str {
    let rest = key.strip_prefix("kwk_live_").expect("a kwk_live_ key");
    assert_eq!(rest.as_bytes()[30], b'_', "{key}");
    &rest[..30]
}

async fn keys(url: String) -> ApiKeyServiceClient<Channel> {
    ApiKeyServiceClient::connect(url).await.expect("connect")
}

/// Whether `key` may list webhooks on the server at `url`, or the refusal's message.
async fn works(url: &str, key: &str) -> Result<(), String> {
    WebhookServiceClient::connect(url.to_owned())
        .await
        .expect("connect")
        .list_webhooks(authed(key, proto::ListWebhooksRequest::default()))
        .await
        .map(|_| ())
        .map_err(|status| {
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            status.message().to_owned()
        })
}

/// Runs `kit-webhooks-server ARGS --database-url URL` and returns its stdout.
fn server_command(url: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(workspace_bin("kit-webhooks-server"))
        .args(args)
        .args(["--database-url", url])
        .output()
        .expect("run kit-webhooks-server");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

async fn an_admin_manages_its_own_keys(backend: Backend) {
    let server = TestServer::start_without_daemon(backend).await;
    let url = server.server.url();
    let mut client = keys(url.clone()).await;
    // The key file's keys carry their ids.
    let first_admin = id_of(&server.admin_key).to_owned();
    assert!(first_admin.starts_with("key_"), "{first_admin}");

    let created = client
        .create_api_key(authed(
            &server.admin_key,
            proto::CreateApiKeyRequest {
                expires_in: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
            },
        ))
        .await
        .expect("create")
        .into_inner();
    let record = created.api_key.expect("the key's record");
    assert_eq!(id_of(&created.key), record.id);
    assert_eq!(
        (record.role.as_str(), record.account_id.as_str()),
        ("admin", "default")
    );
    let expires = record.expires_at.expect("an expiry").seconds;
    let now = kit_webhooks::signature::unix_now();
    assert!(
        (now + 3590..=now + 3610).contains(&expires),
        "{expires} vs {now}"
    );
    works(&url, &created.key).await.expect("the new key works");

    // Too short a life, or a negative one, is refused, naming the field.
    for seconds in [30, -5] {
        assert_status(
            client
                .create_api_key(authed(
                    &server.admin_key,
                    proto::CreateApiKeyRequest {
                        expires_in: Some(prost_types::Duration { seconds, nanos: 0 }),
                    },
                ))
                .await,
            Code::InvalidArgument,
            "expires_in",
        );
    }

    // The list names the account's keys (not the publisher's, which belongs to none), never a key; the
    // first admin key has been used, so it has a last use.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let listed = client
            .list_api_keys(authed(
                &server.admin_key,
                proto::ListApiKeysRequest::default(),
            ))
            .await
            .expect("list")
            .into_inner()
            .api_keys;
        let used = listed
            .iter()
            .any(|k| k.id == first_admin && k.last_used_at.is_some());
        if used || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ids: Vec<&str> = listed.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, [first_admin.as_str(), record.id.as_str()]);
    assert!(listed[0].last_used_at.is_some(), "{listed:?}");
    assert!(!format!("{listed:?}").contains(&created.key));

    // Another account neither sees nor revokes them.
    let other = server.key(Role::Admin, Some("other")).await;
    let theirs = client
        .list_api_keys(authed(&other, proto::ListApiKeysRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .api_keys;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].id, id_of(&other));
    assert_status(
        client
            .revoke_api_key(authed(
                &other,
                proto::RevokeApiKeyRequest {
                    id: record.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
        &record.id,
    );
    assert_status(
        client
            .revoke_api_key(authed(
                &server.admin_key,
                proto::RevokeApiKeyRequest {
                    id: "nonsense".into(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "id",
    );
    works(&url, &created.key).await.expect("still works");

    // `keys list` on the command line: every key with its role and account, never a key.
    let text = server_command(&server.db.url, &["keys", "list"]);
    for key in [
        &server.admin_key,
        &server.publisher_key,
        &created.key,
        &other,
    ] {
        assert!(text.contains(id_of(key)), "{text}");
        assert!(!text.contains(key.as_str()), "{text}");
    }
    assert!(text.starts_with("ID "), "{text}");
    assert!(text.contains("publisher"), "{text}");
    server.stop().await;
}

async fn a_revoked_key_is_refused_everywhere_within_a_second(backend: Backend) {
    let a = TestServer::start_without_daemon(backend).await;
    // A second replica on the same database (PostgreSQL's shape; on SQLite a second process reading the
    // same file, as `keys revoke` below is).
    let mut config = a.config.clone();
    config.listen = "127.0.0.1:0".parse().expect("address");
    let b = kit_webhooks_server::start(config)
        .await
        .expect("the second replica starts");
    let (a_url, b_url) = (a.server.url(), b.url());

    for how in ["rpc on the other replica", "keys revoke"] {
        let key = a.key(Role::Admin, Some("default")).await;
        // Both replicas have looked it up, so both hold it in their cache.
        works(&a_url, &key).await.expect("works on A");
        works(&b_url, &key).await.expect("works on B");
        let revoked_at = match how {
            "rpc on the other replica" => {
                let revoked = keys(b_url.clone())
                    .await
                    .revoke_api_key(authed(
                        &a.admin_key,
                        proto::RevokeApiKeyRequest {
                            id: id_of(&key).into(),
                        },
                    ))
                    .await
                    .expect("revoke")
                    .into_inner();
                assert!(revoked.revoked_at.is_some());
                // The replica that revoked forgets it at once.
                let refusal = works(&b_url, &key).await.expect_err("refused on B at once");
                assert!(
                    refusal.contains("revoked") && refusal.contains(id_of(&key)),
                    "{refusal}"
                );
                Instant::now()
            }
            _ => {
                server_command(&a.db.url, &["keys", "revoke", id_of(&key)]);
                Instant::now()
            }
        };
        for url in [&a_url, &b_url] {
            while works(url, &key).await.is_ok() {
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(1),
                    "{how}: {url} still takes the key a second after it was revoked"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Revoking again changes nothing.
        server_command(&a.db.url, &["keys", "revoke", id_of(&key)]);
        assert!(works(&a_url, &key).await.is_err());
    }
    // The other keys are untouched.
    works(&b_url, &a.admin_key)
        .await
        .expect("the admin key works");
    b.shutdown().await.expect("B stops");
    a.stop().await;
}

async fn an_expired_key_is_refused(backend: Backend) {
    let server = TestServer::start_without_daemon(backend).await;
    let url = server.server.url();
    // It expires 4 s after it was made, which is after `before`.
    let before = Instant::now();
    let key = server_command(
        &server.db.url,
        &[
            "keys",
            "create",
            "--role",
            "admin",
            "--account",
            "default",
            "--expires-in",
            "4s",
        ],
    );
    let key = key.trim();
    if before.elapsed() < Duration::from_secs(3) {
        works(&url, key).await.expect("works before it expires");
    }
    while works(&url, key).await.is_ok() {
        assert!(
            before.elapsed() < Duration::from_secs(6),
            "still taken well after it expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        before.elapsed() >= Duration::from_secs(4),
        "refused before it expired"
    );
    let refusal = works(&url, key).await.expect_err("expired");
    assert!(
        refusal.contains("expired") && refusal.contains(id_of(key)),
        "{refusal}"
    );
    // The list shows when.
    let text = server_command(&server.db.url, &["keys", "list"]);
    let line = text
        .lines()
        .find(|line| line.starts_with(id_of(key)))
        .expect("its line");
    let columns: Vec<&str> = line.split_whitespace().collect();
    // id, role, account, created, last used, expires, revoked.
    assert_eq!(columns.len(), 7, "{line}");
    assert!(
        columns[4] != "-" && columns[5] != "-" && columns[6] == "-",
        "{line}"
    );
    server.stop().await;
}
